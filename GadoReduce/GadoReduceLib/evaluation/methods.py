"""The evaluated methods and metric settings, shared by the run (``evaluate``) and the report (``report``).

Methods: the baselines ``low_dose`` (registered x_LD) and ``linear_scaling`` (x_PC + (x_LD - x_PC) / d), the
model methods ``gadoreduce``, ``gadoreduce_fixed_condition`` (ablation) and ``gadoreduce_NAME`` (variants:
other model files, :func:`variant_method`) and the reference ``standard_dose``.
"""

from __future__ import annotations

import re

from ..inference.region_defaults import DEFAULT_THRESHOLD_SIGMAS

DEFAULT_DOSES = (0.1, 0.2, 0.33)
"""Low doses evaluated by default (fractions of the standard dose)."""
BASELINES = ("low_dose", "linear_scaling")
MODEL_METHODS = ("gadoreduce", "gadoreduce_fixed_condition")
REFERENCE = "standard_dose"
VARIANT_NAME = re.compile(r"[a-z0-9][a-z0-9_]{0,30}")
"""A variant's name: lower-case letters, digits and underscores (it becomes a column value and file name)."""


def check_variant_name(name: str) -> str:
    """``name`` when it is a valid variant name, else ValueError with an example."""
    if not VARIANT_NAME.fullmatch(name) or name in ("fixed_condition",):
        raise ValueError(f"variant name {name!r}: use lower-case letters, digits and underscores, e.g. "
                         "--variant multimodal=model.pt")
    return name


def variant_method(name: str) -> str:
    """The method name of a model variant: ``gadoreduce_NAME``."""
    return f"gadoreduce_{check_variant_name(name)}"


def parse_variants(values) -> dict:
    """{NAME: FILE} of ``--variant NAME=FILE`` options; ValueError for a malformed or repeated one."""
    variants = {}
    for value in values or []:
        name, sep, path = value.partition("=")
        if not sep or not path:
            raise ValueError(f"--variant {value}: write NAME=MODEL_FILE, e.g. --variant multimodal=model.pt")
        if check_variant_name(name) in variants:
            raise ValueError(f"--variant {name} is given twice; give each variant one model file")
        variants[name] = path
    return variants


OVERLAP_PERCENTS = (1, 5, 10, 20, 30)
"""Thresholds (% of brain voxels) of the enhancement overlap (paper 004 evaluates 1-30 %)."""
ENHANCING_SIGMAS = DEFAULT_THRESHOLD_SIGMAS
"""Enhancing = contrast above this many noise sigmas of the standard-dose subtraction (MAE_CE, detection)."""
