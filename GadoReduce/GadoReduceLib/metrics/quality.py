"""Image-quality and contrast-enhancement metrics for evaluating dose reduction.

All images are numpy arrays [k, j, i] of the same shape; masks are boolean arrays of that shape;
label images are integer arrays (0 = background, one positive label per lesion). Names follow the
paper: ``pre_contrast`` (x_PC), ``standard_dose`` (x_SD, the reference), and the evaluated image
(``image``, e.g. a prediction x~_SD or the low-dose x_LD).

Sources:
- PSNR_I / PSNR_B / PSNR_L, SSIM, MAE_CE and the relative enhancements c-bar / c^: Pinetz, Kobler
  et al. 2024 (paper 001, section 4, "Quantitative evaluation"; MAE_CE "as suggested in [9]").
- CNR, LBR, CEP: Bone et al. 2022, Invest. Radiol. (paper 002, "Performance metrics"); paper 003
  (Bone et al. 2021, ISBI) reports PSNR/SSIM only and does not define them.
- Dice / Jaccard of thresholded enhancement: Piening et al. (paper 004, "Experiments").
- Lesion detection by size, matched by centroid distance: paper 002: ``metrics_detection``.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats
from skimage.metrics import peak_signal_noise_ratio, structural_similarity


def _as_float(array, name: str) -> np.ndarray:
    out = np.asarray(array, dtype=np.float64)
    if out.ndim != 3:
        raise ValueError(f"{name} must be a 3D array [k, j, i], got shape {out.shape}; "
                         "pass a single volume")
    if not np.all(np.isfinite(out)):
        raise ValueError(f"{name} contains NaN or infinite values; clean or mask them first")
    return out


def _same_shape(reference: np.ndarray, **arrays) -> None:
    for name, arr in arrays.items():
        if arr is not None and np.shape(arr) != reference.shape:
            raise ValueError(f"{name} has shape {np.shape(arr)} but the reference has shape "
                             f"{reference.shape}; resample both onto the same grid first")


def _mask(mask, shape, name: str) -> np.ndarray:
    arr = np.asarray(mask)
    if arr.shape != tuple(shape):
        raise ValueError(f"{name} has shape {arr.shape} but the images have shape {tuple(shape)}; "
                         "resample the mask onto the image grid")
    if arr.dtype != bool:
        raise ValueError(f"{name} must be a boolean mask, got dtype {arr.dtype}; "
                         "pass e.g. labels > 0")
    if not arr.any():
        raise ValueError(f"{name} is empty (no voxel set); the metric is undefined on an empty region")
    return arr


def _labels(labels, shape, name: str = "lesion_labels") -> np.ndarray:
    arr = np.asarray(labels)
    if arr.shape != tuple(shape):
        raise ValueError(f"{name} has shape {arr.shape} but the images have shape {tuple(shape)}; "
                         "resample the label image onto the image grid (nearest neighbour)")
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must be an integer label image (one label per lesion), got "
                         f"dtype {arr.dtype}; use scipy.ndimage.label on a mask")
    if not (arr > 0).any():
        raise ValueError(f"{name} has no lesion (all labels <= 0); the per-lesion metric is undefined")
    return arr


# --------------------------------------------------------------------------- PSNR / SSIM / MAE

def psnr(image, reference, mask=None, data_range: float | None = None) -> float:
    """PSNR (dB) of ``image`` against ``reference`` over ``mask`` (all voxels when None).

    PSNR = 10 log10(peak^2 / MSE), MSE = mean over the region of (image - reference)^2,
    peak = ``data_range`` when given (e.g. a fixed intensity range shared by all cases), else the
    maximum of the reference over the evaluated region. Identical images give +inf.
    """
    ref = _as_float(reference, "reference")
    img = _as_float(image, "image")
    _same_shape(ref, image=img)
    region = np.ones(ref.shape, bool) if mask is None else _mask(mask, ref.shape, "mask")
    r, x = ref[region], img[region]
    peak = float(r.max()) if data_range is None else float(data_range)
    if not peak > 0:
        raise ValueError(f"PSNR peak is {peak} (<= 0); pass a positive data_range or a reference "
                         "with positive intensities in the region")
    if np.array_equal(r, x):
        return math.inf
    return float(peak_signal_noise_ratio(r, x, data_range=peak))


def psnr_image(image, reference, data_range: float | None = None) -> float:
    """PSNR_I (dB): PSNR over the entire image (paper 001, section 4). See ``psnr``."""
    return psnr(image, reference, None, data_range)


def psnr_brain(image, reference, brain_mask, data_range: float | None = None) -> float:
    """PSNR_B (dB): PSNR inside the brain mask (paper 001, section 4). See ``psnr``."""
    return psnr(image, reference, brain_mask, data_range)


def psnr_lesions(image, reference, lesion_labels, data_range: float | None = None) -> dict[int, float]:
    """PSNR_L (dB) of every lesion: {label: PSNR over that lesion's voxels} (paper 001, section 4).

    Peak per lesion = max of the reference in that lesion unless ``data_range`` is given.
    Paper 001 reports the mean over all lesions of the test set.
    """
    ref = _as_float(reference, "reference")
    labels = _labels(lesion_labels, ref.shape)
    return {int(lab): psnr(image, ref, labels == lab, data_range)
            for lab in np.unique(labels[labels > 0])}


def ssim(image, reference, mask=None, data_range: float | None = None) -> float:
    """SSIM (Wang et al. 2004; skimage, 3D 7-voxel uniform window) of ``image`` against ``reference``.

    ``data_range`` defaults to max - min of the reference. With ``mask``, the mean of the local
    SSIM map over the mask; otherwise skimage's mean over the volume (window-border voxels cropped).
    Every axis needs at least 7 voxels.
    """
    ref = _as_float(reference, "reference")
    img = _as_float(image, "image")
    _same_shape(ref, image=img)
    if min(ref.shape) < 7:
        raise ValueError(f"SSIM needs at least 7 voxels along every axis, got shape {ref.shape}; "
                         "evaluate on a larger crop")
    rng = float(ref.max() - ref.min()) if data_range is None else float(data_range)
    if not rng > 0:
        raise ValueError("SSIM data range is 0 (constant reference); pass a positive data_range")
    if mask is None:
        return float(structural_similarity(ref, img, data_range=rng))
    region = _mask(mask, ref.shape, "mask")
    _, ssim_map = structural_similarity(ref, img, data_range=rng, full=True)
    return float(ssim_map[region].mean())


def mae(image, reference, mask) -> float:
    """Mean absolute error over ``mask`` (same intensity unit as the images)."""
    ref = _as_float(reference, "reference")
    img = _as_float(image, "image")
    _same_shape(ref, image=img)
    region = _mask(mask, ref.shape, "mask")
    return float(np.abs(img[region] - ref[region]).mean())


def enhancing_mask(pre_contrast, standard_dose, brain_mask, threshold: float) -> np.ndarray:
    """Contrast-enhancing brain: brain voxels where standard_dose - pre_contrast > threshold.

    ``threshold`` is in image intensity units (e.g. a multiple of the subtraction's noise_sigma).
    """
    pc = _as_float(pre_contrast, "pre_contrast")
    sd = _as_float(standard_dose, "standard_dose")
    _same_shape(sd, pre_contrast=pc)
    brain = _mask(brain_mask, sd.shape, "brain_mask")
    return brain & ((sd - pc) > float(threshold))


def mae_ce(image, standard_dose, ce_mask) -> float:
    """MAE_CE: mean |image - standard_dose| in the contrast-enhancing brain ``ce_mask``
    (paper 001, section 4.3, after Pinetz et al. 2023 [9]); build the mask with ``enhancing_mask``."""
    return mae(image, standard_dose, ce_mask)


# --------------------------------------------------------------------------- relative enhancement

def relative_enhancement(image, pre_contrast, standard_dose, lesion_labels) -> dict[int, tuple[float, float]]:
    """Per lesion L: (c-bar, c^) of ``image`` (paper 001, section 4).

    c-bar(x) = sum_L (x - x_PC) / sum_L (x_SD - x_PC);  c^(x) = max_L (x - x_PC) / max_L (x_SD - x_PC).
    Both are 1 for x = x_SD and 0 for x = x_PC. A lesion whose reference enhancement
    (sum or max of x_SD - x_PC) is <= 0 raises ValueError, as the ratio is undefined there.
    """
    sd = _as_float(standard_dose, "standard_dose")
    pc = _as_float(pre_contrast, "pre_contrast")
    img = _as_float(image, "image")
    _same_shape(sd, pre_contrast=pc, image=img)
    labels = _labels(lesion_labels, sd.shape)
    out = {}
    for lab in np.unique(labels[labels > 0]):
        region = labels == lab
        ref_enh = sd[region] - pc[region]
        enh = img[region] - pc[region]
        if ref_enh.sum() <= 0 or ref_enh.max() <= 0:
            raise ValueError(f"lesion {int(lab)} has no reference enhancement (standard_dose - "
                             "pre_contrast <= 0 there); check the lesion labels and the image order")
        out[int(lab)] = (float(enh.sum() / ref_enh.sum()), float(enh.max() / ref_enh.max()))
    return out


# --------------------------------------------------------------------------- CNR / LBR / CEP

def _lesion_brain(image, lesion_mask, brain_mask):
    img = _as_float(image, "image")
    lesion = _mask(lesion_mask, img.shape, "lesion_mask")
    healthy = _mask(brain_mask, img.shape, "brain_mask") & ~lesion
    if not healthy.any():
        raise ValueError("brain_mask has no voxel outside lesion_mask; pass a healthy brain ROI")
    return img, lesion, healthy


def contrast_to_noise_ratio(image, lesion_mask, brain_mask) -> float:
    """CNR = (SI_lesion - SI_brain) / SD_brain (Bone et al. 2022, paper 002, "Performance metrics").

    SI = mean intensity, SD = standard deviation (population, ddof=0); lesion voxels of all lesions
    pooled; brain = ``brain_mask`` minus ``lesion_mask`` (the healthy brain ROI).
    """
    img, lesion, healthy = _lesion_brain(image, lesion_mask, brain_mask)
    sd_brain = float(img[healthy].std())
    if sd_brain <= 0:
        raise ValueError("the healthy brain ROI has zero standard deviation; CNR is undefined")
    return float((img[lesion].mean() - img[healthy].mean()) / sd_brain)


def lesion_to_brain_ratio(image, lesion_mask, brain_mask) -> float:
    """LBR = SI_lesion / SI_brain (paper 002); regions as in ``contrast_to_noise_ratio``."""
    img, lesion, healthy = _lesion_brain(image, lesion_mask, brain_mask)
    si_brain = float(img[healthy].mean())
    if si_brain == 0:
        raise ValueError("mean healthy brain intensity is 0; LBR is undefined")
    return float(img[lesion].mean() / si_brain)


def contrast_enhancement_percentage(image, pre_contrast, lesion_mask) -> float:
    """CEP (%) = 100 (SI_lesion - SI_lesion^pre) / SI_lesion^pre (paper 002), SI^pre the mean lesion
    intensity of the pre-contrast image."""
    img = _as_float(image, "image")
    pc = _as_float(pre_contrast, "pre_contrast")
    _same_shape(img, pre_contrast=pc)
    lesion = _mask(lesion_mask, img.shape, "lesion_mask")
    si_pre = float(pc[lesion].mean())
    if si_pre == 0:
        raise ValueError("mean pre-contrast lesion intensity is 0; CEP is undefined")
    return float(100.0 * (img[lesion].mean() - si_pre) / si_pre)


# --------------------------------------------------------------------------- Dice / Jaccard

def dice(mask_a, mask_b) -> float:
    """Dice = 2 |A & B| / (|A| + |B|) = 2 TP / (2 TP + FP + FN) of two boolean masks."""
    a = np.asarray(mask_a)
    b = _mask(mask_b, a.shape, "mask_b")
    a = _mask(a, b.shape, "mask_a")
    return float(2.0 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b)))


def jaccard(mask_a, mask_b) -> float:
    """Jaccard = |A & B| / |A | B| = TP / (TP + FP + FN) of two boolean masks."""
    a = np.asarray(mask_a)
    b = _mask(mask_b, a.shape, "mask_b")
    a = _mask(a, b.shape, "mask_a")
    return float(np.count_nonzero(a & b) / np.count_nonzero(a | b))


def top_percent_mask(difference, roi, percent: float) -> np.ndarray:
    """Boolean mask of the ``percent`` % of ``roi`` voxels with the largest |difference|
    (paper 004: "separate a specific percentage (1% - 30%) of the voxels with the highest
    intensities" of the absolute pre/post difference). Count = round(percent/100 * |roi|), at least 1;
    ties broken by voxel order (stable sort), so the count is exact."""
    diff = _as_float(difference, "difference")
    region = _mask(roi, diff.shape, "roi")
    if not 0 < percent <= 100:
        raise ValueError(f"percent must be in (0, 100], got {percent}")
    values = np.abs(diff[region])
    count = max(1, int(round(percent / 100.0 * values.size)))
    order = np.argsort(-values, kind="stable")[:count]
    selected = np.zeros(values.size, bool)
    selected[order] = True
    out = np.zeros(diff.shape, bool)
    out[region] = selected
    return out


def enhancement_overlap(image, pre_contrast, standard_dose, roi,
                        percents=tuple(range(1, 31))) -> dict[int, tuple[float, float]]:
    """{percent: (Dice, Jaccard)} between the top-percent masks of |standard_dose - pre_contrast|
    (reference) and |image - pre_contrast| inside ``roi``, for each threshold (paper 004, 1-30 %).

    Scale-free: only the ranking of enhancement inside the ROI matters. Paper 004 thresholds each
    2D slice; here the whole 3D ROI is ranked at once (one threshold per volume).
    """
    sd = _as_float(standard_dose, "standard_dose")
    pc = _as_float(pre_contrast, "pre_contrast")
    img = _as_float(image, "image")
    _same_shape(sd, pre_contrast=pc, image=img)
    out = {}
    for p in percents:
        ref_mask = top_percent_mask(sd - pc, roi, p)
        img_mask = top_percent_mask(img - pc, roi, p)
        out[p] = (dice(img_mask, ref_mask), jaccard(img_mask, ref_mask))
    return out


# --------------------------------------------------------------------------- paired tests

def paired_tests(method_a, method_b) -> dict[str, float]:
    """Two-sided paired t-test (scipy.stats.ttest_rel) and Wilcoxon signed-rank test
    (scipy.stats.wilcoxon) between per-case (or per-lesion) scores of two methods.

    Returns {"mean_difference", "t_statistic", "t_pvalue", "wilcoxon_statistic", "wilcoxon_pvalue"}
    with difference = a - b. All-equal scores give p = 1 for both tests.
    """
    a = np.asarray(method_a, dtype=np.float64).ravel()
    b = np.asarray(method_b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired tests need the same number of scores, got {a.size} and {b.size}; "
                         "pass one score per case for both methods, in the same order")
    if a.size < 2:
        raise ValueError(f"paired tests need at least 2 pairs, got {a.size}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("scores contain NaN or infinite values (e.g. PSNR of identical images); "
                         "drop or cap them before testing")
    diff = a - b
    if np.all(diff == 0):
        return {"mean_difference": 0.0, "t_statistic": 0.0, "t_pvalue": 1.0,
                "wilcoxon_statistic": 0.0, "wilcoxon_pvalue": 1.0}
    if np.all(diff == diff[0]):  # constant nonzero difference: t undefined (zero variance)
        t_stat, t_p = math.copysign(math.inf, diff[0]), 0.0
    else:
        t_stat, t_p = stats.ttest_rel(a, b)
    w = stats.wilcoxon(a, b)
    return {"mean_difference": float(diff.mean()), "t_statistic": float(t_stat),
            "t_pvalue": float(t_p), "wilcoxon_statistic": float(w.statistic),
            "wilcoxon_pvalue": float(w.pvalue)}
