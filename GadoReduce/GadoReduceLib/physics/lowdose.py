"""Synthetic low-dose contrast-enhanced T1w images from a real pre-contrast / standard-dose pair.

Method (physics-based; per voxel, all inputs on one grid):

1. Brain mask: given, or the voxels non-zero in both images when the background is exactly zero
   (skull-stripped data such as BraTS), otherwise Otsu's threshold of the pre-contrast image.
2. Intensity normalization: the two scans may be scaled differently (arbitrary scanner units).
   Normal brain does not enhance (intact blood-brain barrier), so the factor ``k`` that maps the
   pre-contrast onto the standard-dose scale is the mode of the voxelwise log ratio post/pre in the
   brain (histogram peak; voxels darker than the 20th brain percentile excluded as noisy). The mode
   ignores the enhancing tail that would bias a mean. The low dose is synthesized on the standard-dose
   scale (it is a contrast-enhanced acquisition), so at dose 1 the standard-dose image is returned.
3. Native R1 per voxel: the white-matter level W of the scaled pre-contrast image (histogram mode above
   the brain median) is taken to have the tabulated white-matter T1 (agents.NATIVE_T1_S); other voxels
   get R1,pre by inverting the signal model for S_pre / W (equal M0 assumed), clipped to T1 0.25-5 s.
4. Relaxation change: dR1 = R1(S_post / S_pre) - R1,pre through physics.r1_from_signal_ratio.
5. Low dose: C is proportional to dose, so R1,low = R1,pre + dose dR1 and
   low = S_pre * S(R1,low) / S(R1,pre) (non-linear: saturation of the T1w signal). Voxels where the
   model is undefined (pre-contrast at noise level, non-positive post) use the linear blend
   pre + dose (post - pre).
6. Noise: a real low-dose scan has the noise of a standard acquisition; scaling the difference by the
   dose would shrink the noise. Near zero enhancement the synthetic subtraction is dose * (post - pre),
   so Gaussian noise with sigma_add = sigma_SD sqrt(1 - dose^2) is added (sigma_SD: noise of the
   standard-dose subtraction, noise_estimate.estimate_noise_sigma), giving the low-dose subtraction the
   noise level of the standard-dose one. Exactly-zero background stays zero. The noise is seeded by
   (seed, dose), so the same seed gives identical bytes and different doses independent noise.
   Caveats: sigma_SD includes registration and resolution residuals of the pair (large in BraTS
   cases whose pre-contrast scan was acquired with thick slices), so the added noise can exceed the
   thermal noise of one scan; and since the synthetic image carries (1 - dose) of the pre-contrast
   image, its own noise is higher than that of the standard-dose image, while its subtraction
   image (what GadoReduce's model consumes) has the right noise level.

The agent enters only the reported concentration estimate (dR1 / r1): the relaxation change is measured
from the pair itself. Field strength selects the sequence model and the white-matter T1. Synthetic data
for research and testing, not clinical evidence.
"""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import SimpleITK as sitk

from .agents import DEFAULT_AGENT, get_agent, native_t1
from ..io.imageio import Geometry, check_3d, zero_background
from ..preprocessing.noise_estimate import estimate_noise_sigma
from .signal import Sequence, default_sequence, r1_from_signal_ratio, signal

T1_CLIP_S = (0.25, 5.0)
"""Range (s) of native T1 values assigned to voxels from the pre-contrast intensity."""


def check_dose(dose: float) -> float:
    """The dose as a float in (0, 1] (fraction of the standard dose); ValueError otherwise."""
    try:
        d = float(dose)
    except (TypeError, ValueError):
        raise ValueError(f"dose must be a number, the fraction of the standard dose in (0, 1], got {dose!r}") from None
    if not (0.0 < d <= 1.0) or not np.isfinite(d):
        raise ValueError(f"dose {d:g} is outside (0, 1]: give the fraction of the standard dose, e.g. 0.33 "
                         "for a third (not a percentage)")
    return d


def check_same_grid(pre: sitk.Image, other: sitk.Image, name: str) -> None:
    check_3d(other, name)
    g_pre, g_other = Geometry.from_image(pre), Geometry.from_image(other)
    if not g_pre.is_close(g_other, atol=1e-3):
        raise ValueError(f"the {name} is not on the pre-contrast grid (size {g_other.size} vs {g_pre.size}, "
                         f"spacing {tuple(round(s, 4) for s in g_other.spacing)} vs "
                         f"{tuple(round(s, 4) for s in g_pre.spacing)}); register and resample it onto the "
                         "pre-contrast image first")


def default_brain_mask(pre: np.ndarray, post: np.ndarray) -> np.ndarray:
    """Boolean brain/foreground mask [k, j, i]: non-zero in both images if more than 5 % of the voxels are
    exactly zero (skull-stripped data), otherwise Otsu's threshold of the pre-contrast image."""
    if zero_background(pre * post):
        return (pre > 0) & (post > 0)
    otsu = sitk.OtsuThreshold(sitk.GetImageFromArray(pre.astype(np.float32)), 0, 1)
    return sitk.GetArrayFromImage(otsu).astype(bool)


def histogram_mode(values: np.ndarray, bins: int = 256) -> float:
    """Peak of a lightly smoothed histogram of ``values`` (robust location of the dominant population)."""
    lo, hi = np.percentile(values, [0.5, 99.5])
    if hi <= lo:
        return float(np.median(values))
    hist, edges = np.histogram(values, bins=bins, range=(lo, hi))
    hist = np.convolve(hist, np.ones(5) / 5, mode="same")
    centre = int(np.argmax(hist))
    return float(0.5 * (edges[centre] + edges[centre + 1]))


def white_matter_level(pre: np.ndarray, brain: np.ndarray) -> float:
    """White-matter intensity of a T1w image (array [k, j, i], brain mask): histogram mode of the brain voxels
    brighter than the brain median."""
    values = pre[(brain > 0) & (pre > 0)]
    if values.size < 100:
        raise ValueError("the brain mask holds almost no positive pre-contrast voxels; check the brain mask")
    return histogram_mode(values[values > np.median(values)])


def intensity_scale(pre: np.ndarray, post: np.ndarray, mask: np.ndarray) -> float:
    """Factor k with post ~ k pre in non-enhancing brain: mode of log(post/pre) over the mask voxels
    brighter than the 20th brain percentile of both images."""
    sel = mask & (pre > 0) & (post > 0)
    if sel.sum() < 100:
        raise ValueError("too few brain voxels with positive intensity in both images to normalize them; "
                         "check the brain mask and that the images are magnitude T1w scans")
    sel &= (pre > np.percentile(pre[sel], 20)) & (post > np.percentile(post[sel], 20))
    return float(np.exp(histogram_mode(np.log(post[sel] / pre[sel]), bins=400)))


def synthesize_low_dose(pre_contrast: sitk.Image, standard_dose: sitk.Image, dose: float,
                        brain_mask: sitk.Image | None = None, field_strength: float = 3.0,
                        agent: str = DEFAULT_AGENT, sequence: Sequence | None = None,
                        seed: int = 0) -> tuple[sitk.Image, dict]:
    """Synthetic low-dose T1w image at ``dose`` (fraction of the standard dose, (0, 1]); see module doc.

    pre_contrast, standard_dose: co-registered 3D images on one grid (any intensity scale);
    brain_mask: optional binary image on that grid; field_strength in tesla; agent: name, brand or alias;
    sequence: signal model (default: physics.default_sequence(field_strength)); seed: noise seed.
    Returns (float32 image on the pre-contrast grid, in standard-dose intensity units; parameter dict with
    the dose, agent, field strength, sequence, seed, intensity scale and noise sigmas).
    """
    dose = check_dose(dose)
    check_3d(pre_contrast, "pre-contrast image")
    check_same_grid(pre_contrast, standard_dose, "standard-dose image")
    agent_obj = get_agent(agent)
    sequence = sequence or default_sequence(field_strength)
    relaxivity = agent_obj.relaxivity(field_strength)
    t1_wm = native_t1("white_matter", field_strength)

    pre = sitk.GetArrayFromImage(pre_contrast).astype(np.float64)
    post = sitk.GetArrayFromImage(standard_dose).astype(np.float64)
    if brain_mask is not None:
        check_same_grid(pre_contrast, brain_mask, "brain mask")
        mask = sitk.GetArrayFromImage(brain_mask) > 0
    else:
        mask = default_brain_mask(pre, post)
    if mask.sum() < 100:
        raise ValueError("the brain mask is (almost) empty; give a mask covering the brain")

    k = intensity_scale(pre, post, mask)
    pre_s = pre * k
    sigma_sd = estimate_noise_sigma(post - pre_s, mask)

    wm_level = white_matter_level(pre_s, mask)
    valid = (pre_s > 3.0 * sigma_sd) & (post > 0)
    # The model is evaluated only where it is defined (1D arrays over the valid voxels, for speed).
    r1_pre = r1_from_signal_ratio(pre_s[valid] / wm_level, 1.0 / t1_wm, sequence)
    r1_pre = np.clip(r1_pre, 1.0 / T1_CLIP_S[1], 1.0 / T1_CLIP_S[0])
    r1_post = r1_from_signal_ratio(post[valid] / pre_s[valid], r1_pre, sequence)
    delta_r1 = r1_post - r1_pre
    r1_low = r1_pre + dose * delta_r1
    low = pre_s + dose * (post - pre_s)
    low[valid] = pre_s[valid] * signal(1.0, r1_low, sequence) / signal(1.0, r1_pre, sequence)

    sigma_add = sigma_sd * float(np.sqrt(max(0.0, 1.0 - dose ** 2)))
    rng = np.random.default_rng([int(seed), int(round(dose * 1e6))])
    noise = rng.standard_normal(low.shape)
    foreground = (pre != 0) | (post != 0)
    low = np.where(foreground, low + sigma_add * noise, 0.0).astype(np.float32)
    sigma_ld = estimate_noise_sigma(low - pre_s, mask)

    enhancing = mask[valid] & (delta_r1 > 0)
    conc = delta_r1[enhancing] / relaxivity if enhancing.any() else np.zeros(1)
    image = sitk.GetImageFromArray(low)
    image.CopyInformation(pre_contrast)
    params = {
        "dose": dose,
        "agent": agent_obj.name,
        "relaxivity_L_per_mmol_s": relaxivity,
        "field_strength_T": float(field_strength),
        "sequence": asdict(sequence),
        "seed": int(seed),
        "noise_seed": [int(seed), int(round(dose * 1e6))],
        "intensity_scale_pre_to_standard_dose": k,
        "white_matter_level": wm_level,
        "t1_white_matter_s": t1_wm,
        "brain_voxels": int(mask.sum()),
        "noise_sigma_standard_dose_subtraction": sigma_sd,
        "noise_sigma_added": sigma_add,
        "noise_sigma_low_dose_subtraction": sigma_ld,
        "concentration_estimate_p99_mM": float(np.percentile(conc, 99)),
        "intensity_units": "standard-dose image units (pre-contrast scaled by intensity_scale_pre_to_standard_dose)",
        "method": "signal-model inversion (lowdose.py): R1_low = R1_pre + dose*dR1, SPGR/MPRAGE signal, "
                  "Gaussian noise sigma_SD*sqrt(1-dose^2)",
        "note": "synthetic image for research and testing, not a clinical acquisition",
    }
    return image, params
