"""Noise level of subtraction images (contrast-enhanced minus pre-contrast).

Contrast enhancement only ever raises the signal, so the negative values of a subtraction image inside
the brain are noise (plus small registration/intensity residuals). For zero-mean Gaussian noise of
standard deviation sigma, |z| of the negative half is half-normal with median 0.6745 sigma, hence

    noise_sigma = median(-z[z < 0]) / 0.6745,

a robust (MAD-type) estimate that ignores the enhancing voxels entirely.
"""

from __future__ import annotations

import numpy as np

HALF_NORMAL_MEDIAN = 0.6744897501960817
"""Median of |N(0, 1)|: the 0.75 quantile of the standard normal distribution."""


def estimate_noise_sigma(subtraction_array: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Robust noise sigma (intensity units of the input) of a subtraction image from its negative values.

    subtraction_array: any shape (e.g. [k, j, i]); mask: boolean array of the same shape (e.g. the
    brain), or None for all voxels. Exact zeros (masked-out background) are ignored. Assumes the
    subtraction is centred at zero in non-enhancing tissue (intensity-normalized pair).
    """
    z = np.asarray(subtraction_array, dtype=np.float64)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != z.shape:
            raise ValueError(f"noise mask shape {mask.shape} differs from the subtraction image shape {z.shape}; "
                             "give a mask on the same grid")
        z = z[mask]
    z = z[np.isfinite(z)]
    negative = -z[z < 0]
    if negative.size < 10:
        raise ValueError(f"cannot estimate the noise level: only {negative.size} negative subtraction values "
                         "inside the mask; check that the mask covers the brain and the images are not clipped")
    return float(np.median(negative) / HALF_NORMAL_MEDIAN)
