"""Noise normalization of subtraction images and the contrast-signal target (paper 001, 3.1-3.2).

For a subtraction image z~ (post - pre, intensity-normalized) and the brain mask b:
- noise_sigma: robust sigma from the negative values of z~ in b (``noise_estimate``);
- local mean m and std s: Gaussian-weighted (kernel sigma KERNEL_SIGMA_MM, the paper's 16 voxels
  at 1 mm, given in mm so that it means the same at any spacing) over the voxels of b with
  |z~| <= CLIP_SIGMAS * noise_sigma (enhancing voxels and artefacts left out), computed as
  normalized convolutions m = G(z~ M) / G(M), s^2 = G(z~^2 M) / G(M) - m^2. Because the clipped
  samples come from a normal truncated at +-2 sigma, s is divided by that truncated normal's std
  ratio (0.880 for 2 sigma), so that s estimates the local noise std itself; the three sums are added up over
  blocks of about BLOCK_MM before the smoothing (``block_shrink``) and m, s interpolated back;
- normalized subtraction (eq. 1): z = (z~ - m) / s * sigma_LD (sigma_LD for low and standard dose);
- contrast mask (eq. 2): p = sigmoid(w z + b) with f(sigma_LD) = 0.01, f(4 sigma_LD) = 0.99;
- training target: y = p * z.
"""

from __future__ import annotations

import math

import numpy as np
import SimpleITK as sitk
from scipy.stats import norm

from .noise_estimate import estimate_noise_sigma

KERNEL_SIGMA_MM = 16.0
"""Gaussian kernel sigma (mm) of the local noise statistics (paper: 16 pixels at about 1 mm)."""
BLOCK_MM = 2.0
"""Preprocessing adds the local statistics' weighted sums over blocks of about this size (mm) before the Gaussian
smoothing (``local_statistics(shrink=...)``, :func:`block_shrink`): 1/8 of the kernel sigma. On a BraTS pair
(1 mm) that changes s by at most 0.6 % in the brain (99th percentile 0.25 %) and m by at most 1.5 % of the noise
sigma, for 5 times less time (3.6 s to 0.7 s on a 2-core EPYC; ``Testing/test_normalization_noise.py``)."""
CLIP_SIGMAS = 2.0
"""Voxels with |z~| above this many noise sigmas are left out of the local statistics."""
CONTRAST_MASK_LEVELS = ((1.0, 0.01), (4.0, 0.99))
"""(multiple of sigma_LD, value of the contrast mask f there): f(sigma) = 0.01, f(4 sigma) = 0.99."""
_MIN_WEIGHT = 1e-3


def truncated_std_ratio(clip: float = CLIP_SIGMAS) -> float:
    """Std of N(0, 1) truncated to [-clip, clip]: 0.880 for clip = 2."""
    mass = norm.cdf(clip) - norm.cdf(-clip)
    return math.sqrt(1.0 - 2.0 * clip * norm.pdf(clip) / mass)


def noise_sigma(subtraction: sitk.Image | np.ndarray, mask) -> float:
    """Noise sigma of a subtraction image from its negative values inside ``mask`` (image units)."""
    z = sitk.GetArrayViewFromImage(subtraction) if isinstance(subtraction, sitk.Image) else np.asarray(subtraction)
    m = sitk.GetArrayViewFromImage(mask) > 0 if isinstance(mask, sitk.Image) else np.asarray(mask) > 0
    return estimate_noise_sigma(z, m)


def block_shrink(spacing, block_mm: float = BLOCK_MM) -> int:
    """Voxels per block edge for blocks of about ``block_mm`` on a grid of ``spacing`` (mm; at least 1)."""
    return max(1, int(block_mm / min(float(v) for v in spacing) + 1e-6))


def local_statistics(subtraction: sitk.Image, mask: sitk.Image, sigma: float,
                     kernel_sigma_mm: float = KERNEL_SIGMA_MM, clip: float = CLIP_SIGMAS, shrink: int = 1
                     ) -> tuple[sitk.Image, sitk.Image]:
    """Local mean m and local noise std s (float32 images on the subtraction's grid).

    Computed everywhere; far from the brain (where the kernel sees no brain voxel) they fall back
    to the global values of the clipped brain voxels. ``shrink`` > 1: the three weighted sums are
    added up over blocks of shrink^3 voxels, smoothed on that coarse grid and m, s interpolated back
    (linear); with the 16-mm kernel at 1 mm and shrink 4 this changes s by about 1 % at one kernel
    sigma or more inside the image border (a few % at the border) for 64 times less smoothing work (the
    on-the-fly training sampler, whose patches lie 32 mm inside their windows); preprocessing uses blocks of
    :data:`BLOCK_MM` (``block_shrink``).
    """
    if not sigma > 0:
        raise ValueError(f"noise sigma must be positive, got {sigma}")
    z = sitk.GetArrayFromImage(subtraction).astype(np.float32)
    inside = (sitk.GetArrayViewFromImage(mask) > 0) & (np.abs(z) <= clip * sigma)
    if inside.sum() < 100:
        raise ValueError("Too few brain voxels within +-2 noise sigmas for the local noise statistics; "
                         "check the brain mask and the registration.")
    weight = inside.astype(np.float32)
    shrink = max(1, int(shrink))
    fine_shape = z.shape
    if shrink > 1:
        geometry_ref = _coarse_grid(subtraction, shrink)
        block = lambda a: _block_sum(a, shrink)  # noqa: E731
    else:
        geometry_ref = subtraction
        block = lambda a: a  # noqa: E731

    def smooth(array: np.ndarray) -> np.ndarray:
        image = sitk.GetImageFromArray(block(array))
        image.CopyInformation(geometry_ref)
        return sitk.GetArrayFromImage(sitk.SmoothingRecursiveGaussian(image, kernel_sigma_mm))

    g = smooth(weight)
    gz = smooth(z * weight)
    gz2 = smooth(z * z * weight)
    global_mean = float(z[inside].mean())
    global_var = float(z[inside].var())
    ok = g > _MIN_WEIGHT
    mean = np.where(ok, gz / np.maximum(g, _MIN_WEIGHT), global_mean)
    var = np.where(ok, gz2 / np.maximum(g, _MIN_WEIGHT) - mean * mean, global_var)
    var = np.maximum(var, 0.05 * global_var)  # guard against numerical zeros at the kernel's edge
    std = np.sqrt(var) / truncated_std_ratio(clip)
    out = []
    for array in (mean, std):
        image = sitk.GetImageFromArray(array.astype(np.float32))
        image.CopyInformation(geometry_ref)
        if shrink > 1:
            image = sitk.Resample(image, subtraction, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32,
                                  True)  # extrapolate: the fine grid reaches half a block beyond the coarse
            assert image.GetSize()[::-1] == fine_shape
        out.append(image)
    return out[0], out[1]


def _block_sum(array: np.ndarray, shrink: int) -> np.ndarray:
    """Means over blocks of shrink^3 voxels (the last block of an axis may be partial: zero padded)."""
    pad = [(0, (-n) % shrink) for n in array.shape]
    a = np.pad(array, pad) if any(p for _, p in pad) else array
    k, j, i = (n // shrink for n in a.shape)
    return a.reshape(k, shrink, j, shrink, i, shrink).mean(axis=(1, 3, 5), dtype=np.float32)


def _coarse_grid(image: sitk.Image, shrink: int) -> sitk.Image:
    """An empty image on the grid of blocks of shrink^3 voxels of ``image`` (block centres)."""
    size = [-(-n // shrink) for n in image.GetSize()]
    coarse = sitk.Image(size, sitk.sitkFloat32)
    spacing = np.array(image.GetSpacing())
    direction = np.array(image.GetDirection()).reshape(3, 3)
    coarse.SetSpacing(tuple(spacing * shrink))
    coarse.SetDirection(image.GetDirection())
    coarse.SetOrigin(tuple(np.array(image.GetOrigin()) + direction @ (spacing * (shrink - 1) / 2)))
    return coarse


def normalize_subtraction(subtraction: sitk.Image, local_mean: sitk.Image, local_std: sitk.Image,
                          sigma_ld: float) -> sitk.Image:
    """Eq. 1: z = (z~ - m) / s * sigma_LD (float32)."""
    return sitk.Cast((sitk.Cast(subtraction, sitk.sitkFloat32) - local_mean) / local_std * float(sigma_ld),
                     sitk.sitkFloat32)


def contrast_mask_parameters(sigma_ld: float) -> tuple[float, float]:
    """(w, b) of p = sigmoid(w z + b) with f(sigma_LD) = 0.01 and f(4 sigma_LD) = 0.99."""
    (k1, p1), (k2, p2) = CONTRAST_MASK_LEVELS
    logit = lambda p: math.log(p / (1.0 - p))  # noqa: E731
    w = (logit(p2) - logit(p1)) / ((k2 - k1) * sigma_ld)
    b = logit(p1) - w * k1 * sigma_ld
    return w, b


def contrast_signal(normalized_subtraction: sitk.Image, sigma_ld: float) -> tuple[sitk.Image, sitk.Image]:
    """Eq. 2 and the target: (y = p * z, p) as float32 images."""
    w, b = contrast_mask_parameters(sigma_ld)
    z = sitk.GetArrayViewFromImage(normalized_subtraction).astype(np.float64)
    p = 1.0 / (1.0 + np.exp(-(w * z + b)))
    out = []
    for array in (p * z, p):
        image = sitk.GetImageFromArray(array.astype(np.float32))
        image.CopyInformation(normalized_subtraction)
        out.append(image)
    return out[0], out[1]
