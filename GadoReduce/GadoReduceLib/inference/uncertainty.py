"""Uncertainty of the contrast signal (issue 18): the per-voxel spread over the passes of inference.

Every pass is one ensemble member (``model.files.LoadedModel.networks``) on one flip of the input
(``region_defaults.FLIPS``, flip test-time augmentation as in papers 002/003). The contrast signal is the mean of
the passes and its uncertainty their standard deviation (population, ddof 0), both in the contrast signal's units
(paper 001's y~ = gamma s_LD y^ / sigma_LD, each member with its own gamma). With one pass there is no spread and
no uncertainty map; identical members on unflipped inputs give exactly zero. A large spread marks voxels where the
members or the flips disagree: it is no error bar and no probability. :func:`calibration` measures how well it
ranks the actual error (Spearman correlation, error binned by uncertainty). Research software, not for diagnosis.
"""

from __future__ import annotations

import numpy as np

CALIBRATION_BINS = 10
"""Uncertainty bins (deciles of the brain's voxels) of the error-versus-uncertainty curve."""


class RunningMoments:
    """Mean and standard deviation of equally weighted arrays added one at a time (Welford's update: no list of
    passes is kept, and identical arrays give a spread of exactly 0). ``spread=False`` keeps the mean only."""

    def __init__(self, spread: bool = True):
        self.count = 0
        self.mean: np.ndarray | None = None
        self._m2: np.ndarray | None = None
        self._spread = spread

    def add(self, array: np.ndarray) -> None:
        """Add one pass (float32 array, the shape of the first)."""
        array = np.asarray(array, dtype=np.float32)
        self.count += 1
        if self.mean is None:
            self.mean = array.copy()
            self._m2 = np.zeros_like(self.mean) if self._spread else None
            return
        if array.shape != self.mean.shape:
            raise ValueError(f"pass of shape {array.shape} added to passes of shape {self.mean.shape}")
        delta = array - self.mean
        self.mean += delta / np.float32(self.count)
        if self._spread:
            delta *= array - self.mean
            self._m2 += delta

    def std(self) -> np.ndarray:
        """Population standard deviation of the passes so far (zeros after one pass)."""
        if self.mean is None:
            raise ValueError("no pass added yet")
        if not self._spread:
            raise ValueError("these moments keep the mean only (spread=False)")
        return np.sqrt(np.maximum(self._m2 / np.float32(self.count), 0.0)).astype(np.float32)


def passes(loaded, tta: int) -> int:
    """Forward passes of one prediction: ensemble members times flips."""
    return len(loaded.networks()) * int(tta)


def calibration(error: np.ndarray, uncertainty: np.ndarray, mask: np.ndarray, bins: int = CALIBRATION_BINS) -> dict:
    """How the absolute error rises with the uncertainty inside ``mask`` (arrays [k, j, i], same units).

    Returns {"spearman": rank correlation of |error| and uncertainty over the mask's voxels, "bins": one dict per
    uncertainty quantile bin (``bins`` bins of equal voxel count) with its mean uncertainty, mean |error| and
    voxel count}."""
    mask = np.asarray(mask, bool)
    if error.shape != uncertainty.shape or error.shape != mask.shape:
        raise ValueError(f"error {error.shape}, uncertainty {uncertainty.shape} and mask {mask.shape} must have "
                         "one shape")
    e = np.abs(error[mask]).astype(np.float64)
    u = uncertainty[mask].astype(np.float64)
    if e.size < bins:
        raise ValueError(f"the mask holds {e.size} voxels, fewer than the {bins} bins")
    order = np.argsort(u, kind="mergesort")
    rows = []
    for part in np.array_split(order, bins):
        rows.append({"mean_uncertainty": float(u[part].mean()), "mean_abs_error": float(e[part].mean()),
                     "voxels": int(part.size)})
    from scipy.stats import spearmanr
    return {"spearman": float(spearmanr(e, u).statistic), "bins": rows}
