"""A second low-dose simulator, built differently from the training one, for validation only (issue 13).

GadoReduce trains on low doses from ``training.simulate`` (voxelwise native T1 from the pre-contrast
intensity, Gaussian image-domain noise). A network can learn a simulator's habits instead of the physics, so
every validation also reports low doses made by this one, which differs in each step:

1. Native T1 from tissue classes, not from each voxel's intensity: the brain's pre-contrast intensities are
   split into three classes (CSF, grey matter, white matter) by 1D k-means, and each voxel gets the
   tabulated T1 of its class (``agents.native_t1``), interpolated linearly in intensity between class
   centres.
2. Concentration from the standard dose with a fixed 3D spoiled gradient echo at the case's field strength
   (``signal.default_sequence``), scaled by the dose; the low-dose signal follows from the same model.
3. A residual misregistration of 0.5 mm along the first axis as a Fourier phase ramp (band-limited shift).
4. Noise in the complex domain: two Gaussian channels, low-pass filtered in k-space (a Hann window over the
   outer half of k-space, as reconstruction filters do: spatially correlated noise), scaled so that the
   low-dose subtraction has the standard-dose subtraction's noise sigma (what the shifted image already
   carries is measured and the rest added; at least 20 % of it), then the magnitude (Rician).

Works on arrays on one grid in one intensity scale (pre-contrast and standard dose normalized together,
e.g. a ``training.simulate.PairCase``) and, through :func:`synthesize_low_dose_kspace`, on images like
``lowdose.synthesize_low_dose``. Synthetic data for validation, not clinical evidence.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from ..preprocessing.noise_estimate import estimate_noise_sigma
from .agents import DEFAULT_AGENT, get_agent, native_t1
from .lowdose import check_dose, default_brain_mask, intensity_scale
from .signal import default_sequence, r1_from_signal_ratio, signal

SHIFT_MM = 0.5
"""Residual misregistration of the low dose (mm, first array axis)."""
TISSUE_CLASSES = ("csf", "grey_matter", "white_matter")
NAME = "kspace"
"""Short name of this simulator in reports (the training simulator is "signal-model")."""


def _kmeans_1d(values: np.ndarray, k: int = 3, iterations: int = 30) -> np.ndarray:
    """Sorted centres of a 1D k-means of ``values`` (started at the 20/50/80th percentiles)."""
    centres = np.percentile(values, np.linspace(20, 80, k))
    for _ in range(iterations):
        labels = np.argmin(np.abs(values[:, None] - centres[None, :]), axis=1)
        new = np.array([values[labels == c].mean() if np.any(labels == c) else centres[c] for c in range(k)])
        if np.allclose(new, centres):
            break
        centres = new
    return np.sort(centres)


def native_t1_map(pre: np.ndarray, brain: np.ndarray, field_strength: float) -> np.ndarray:
    """T1 (s) per voxel from three intensity classes of the brain (see the module docstring)."""
    values = pre[(brain > 0) & (pre > 0)]
    if values.size < 100:
        raise ValueError("the brain mask holds almost no positive pre-contrast voxels; check the brain mask")
    sample = values[:: max(1, values.size // 200_000)].astype(np.float64)
    centres = _kmeans_1d(sample)
    t1 = np.array([native_t1(t, field_strength) for t in TISSUE_CLASSES])
    return np.interp(pre, centres, t1).astype(np.float32)  # T1w: brighter = shorter T1


def _correlated_noise(shape, rng: np.random.Generator) -> np.ndarray:
    """Unit-variance Gaussian noise low-pass filtered in k-space (Hann taper over the outer half)."""
    noise = rng.standard_normal(shape).astype(np.float32)
    spectrum = np.fft.rfftn(noise)
    window = np.ones(1, np.float32)
    for axis, n in enumerate(shape):
        f = np.abs(np.fft.rfftfreq(n) if axis == len(shape) - 1 else np.fft.fftfreq(n)) * 2  # 0..1
        taper = np.where(f < 0.5, 1.0, 0.5 * (1 + np.cos(np.pi * (f - 0.5) / 0.5))).astype(np.float32)
        window = window[..., None] * taper if axis else taper
    out = np.fft.irfftn(spectrum * window, s=shape, axes=tuple(range(len(shape)))).astype(np.float32)
    return out / max(float(out.std()), 1e-12)


def _fourier_shift(array: np.ndarray, voxels: float, axis: int = 0) -> np.ndarray:
    n = array.shape[axis]
    ramp = np.exp(-2j * np.pi * np.fft.fftfreq(n) * voxels).astype(np.complex64)
    shape = [1] * array.ndim
    shape[axis] = n
    return np.real(np.fft.ifft(np.fft.fft(array, axis=axis) * ramp.reshape(shape), axis=axis)).astype(np.float32)


def low_dose_kspace(pre: np.ndarray, standard_dose: np.ndarray, brain: np.ndarray, dose: float, sigma_sd: float,
                    spacing_mm: float = 1.0, field_strength: float = 3.0, seed: int = 0) -> np.ndarray:
    """Low dose (float32, the inputs' scale) from pre-contrast and standard dose arrays [k, j, i] on one grid
    and scale; sigma_sd: noise sigma of their subtraction; spacing_mm: along the first axis."""
    dose = check_dose(dose)
    pre = pre.astype(np.float32)
    sd = standard_dose.astype(np.float32)
    sequence = default_sequence(field_strength)
    t1 = native_t1_map(pre, brain, field_strength)
    r1_pre = 1.0 / t1
    valid = (pre > 3 * sigma_sd) & (sd > 0) & (brain > 0)
    low = pre + dose * (sd - pre)
    r1_post = r1_from_signal_ratio(sd[valid] / pre[valid], r1_pre[valid], sequence)
    r1_low = r1_pre[valid] + dose * (r1_post - r1_pre[valid])
    low[valid] = pre[valid] * signal(1.0, r1_low, sequence) / signal(1.0, r1_pre[valid], sequence)
    low = _fourier_shift(low, SHIFT_MM / spacing_mm)
    rng = np.random.default_rng([int(seed), int(round(dose * 1e6)), 2])
    # the noise already in the shifted image's subtraction (the standard dose's share, the shifted pre-contrast
    # noise and edges) is measured as preprocessing measures it, and the rest added: one correction step
    region = (brain > 0) & (pre != 0)
    noise_re, noise_im = _correlated_noise(low.shape, rng), _correlated_noise(low.shape, rng)

    def subtraction_sigma(scale: float) -> float:
        magnitude = np.sqrt((low + scale * noise_re) ** 2 + (scale * noise_im) ** 2)
        return estimate_noise_sigma(magnitude - pre, region)
    floor = 0.2 * sigma_sd
    guess = float(np.sqrt(max(sigma_sd ** 2 - estimate_noise_sigma(low - pre, region) ** 2, floor ** 2)))
    present = max(subtraction_sigma(guess) ** 2 - guess ** 2, 0.0)
    sigma_add = float(np.sqrt(max(sigma_sd ** 2 - present, floor ** 2)))
    real = low + sigma_add * noise_re
    imag = sigma_add * noise_im
    magnitude = np.sqrt(real * real + imag * imag)
    foreground = (pre != 0) | (sd != 0)
    return np.where(foreground, magnitude, 0.0).astype(np.float32)


def synthesize_low_dose_kspace(pre_contrast: sitk.Image, standard_dose: sitk.Image, dose: float,
                               brain_mask: sitk.Image | None = None, field_strength: float = 3.0,
                               agent: str = DEFAULT_AGENT, seed: int = 0) -> tuple[sitk.Image, dict]:
    """Like ``lowdose.synthesize_low_dose`` (same inputs, standard-dose intensity units) with this simulator."""
    from .lowdose import check_same_grid
    dose = check_dose(dose)
    check_same_grid(pre_contrast, standard_dose, "standard-dose image")
    pre = sitk.GetArrayFromImage(pre_contrast).astype(np.float32)
    post = sitk.GetArrayFromImage(standard_dose).astype(np.float32)
    mask = sitk.GetArrayFromImage(brain_mask) > 0 if brain_mask is not None else default_brain_mask(pre, post)
    k = intensity_scale(pre, post, mask)
    pre_s = pre * np.float32(k)
    sigma_sd = estimate_noise_sigma(post - pre_s, mask)
    low = low_dose_kspace(pre_s, post, mask, dose, sigma_sd, pre_contrast.GetSpacing()[2], field_strength, seed)
    image = sitk.GetImageFromArray(low)
    image.CopyInformation(pre_contrast)
    return image, {"dose": dose, "simulator": NAME, "agent": get_agent(agent).name, "seed": int(seed),
                   "field_strength_T": float(field_strength), "intensity_scale_pre_to_standard_dose": k,
                   "noise_sigma_standard_dose_subtraction": sigma_sd,
                   "note": "synthetic image for validation, not a clinical acquisition"}
