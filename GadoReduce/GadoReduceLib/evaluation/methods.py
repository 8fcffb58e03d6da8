"""The evaluated methods and metric settings, shared by the run (``evaluate``) and the report (``report``).

Methods: the baselines ``low_dose`` (registered x_LD) and ``linear_scaling`` (x_PC + (x_LD - x_PC) / d), the
model methods ``gadoreduce`` and ``gadoreduce_fixed_condition`` (ablation) and the reference ``standard_dose``.
"""

from __future__ import annotations

from ..inference.region_defaults import DEFAULT_THRESHOLD_SIGMAS

DEFAULT_DOSES = (0.1, 0.2, 0.33)
"""Low doses evaluated by default (fractions of the standard dose)."""
BASELINES = ("low_dose", "linear_scaling")
MODEL_METHODS = ("gadoreduce", "gadoreduce_fixed_condition")
REFERENCE = "standard_dose"
OVERLAP_PERCENTS = (1, 5, 10, 20, 30)
"""Thresholds (% of brain voxels) of the enhancement overlap (paper 004 evaluates 1-30 %)."""
ENHANCING_SIGMAS = DEFAULT_THRESHOLD_SIGMAS
"""Enhancing = contrast above this many noise sigmas of the standard-dose subtraction (MAE_CE, detection)."""
