"""Defaults of the enhancing-region analysis (``regions``) and of inference, in a module without heavy imports
so that the Slicer module's parameter node can use them at import time. Research software, not for diagnosis."""

DEFAULT_THRESHOLD_SIGMAS = 4.0
"""Region threshold in noise sigmas: the paper's contrast mask p = sigmoid(w z + b) is fitted to reach 0.99 at
4 sigma_LD (``noise.contrast_mask_parameters``), so above 4 sigma a voxel counts as enhancing."""
DEFAULT_MIN_VOLUME_MM3 = 10.0
"""Smallest enhancing region kept (mm^3)."""
DEFAULT_TTA = 1
"""Flip test-time augmentation passes by default (1 = none; :data:`FLIPS`): see the model card for the measured
gain and cost."""
UNCERTAINTY_TTA = 4
"""Flip passes a single model runs when an uncertainty map is asked for (``inference.uncertainty``): on the held-out
BraTS subjects the rank correlation of error and spread changed by at most 0.01 from 4 to 8 passes (docs/uncertainty.md)."""
FLIPS = ((), (2,), (1,), (0,), (1, 2), (0, 2), (0, 1), (0, 1, 2))
"""Flip test-time augmentation: the axes (k, j, i) flipped by each of up to 8 passes, in the order used."""
PRECISION_NAMES = ("fp32", "bf16", "fp16")
"""Forward-pass precisions of inference (fp16 on CUDA only); ``inference.predict.PRECISIONS`` maps them to dtypes."""
