"""Enhancing regions of a contrast signal and their statistics (issue 6, item 4).

``enhancing_regions`` labels the connected components (26-connectivity) of the voxels whose
contrast signal exceeds ``threshold_sigmas`` times the noise level; ``region_statistics``
gives one row per region (volume, centroid in RAS, mean and max signal, and against a
standard-dose reference the paper's c-bar and c^). Research software, not for diagnosis.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..io.imageio import image_to_array, same_grid
from .region_defaults import DEFAULT_MIN_VOLUME_MM3, DEFAULT_THRESHOLD_SIGMAS  # noqa: F401  (re-exported)

LARGE_LESION_MM3 = 1000.0
"""truth_problems compares region volumes with the truth for lesions of at least this volume (1000 voxels
at 1 mm); smaller ones are dominated by partial volume and are only required to be found."""
CONNECTIVITY_26 = np.ones((3, 3, 3), dtype=bool)
"""26-connectivity (faces, edges and corners) of regions and lesions: the one structure for ``ndimage.label``."""


def _check_image(image: sitk.Image, name: str) -> None:
    if not isinstance(image, sitk.Image):
        raise ValueError(f"{name} must be a SimpleITK image, not {type(image).__name__}.")
    if image.GetDimension() != 3:
        raise ValueError(f"{name} is {image.GetDimension()}-D; region analysis needs a 3-D volume.")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError(f"{name} has {image.GetNumberOfComponentsPerPixel()} components per voxel; "
                         "give a scalar volume.")


def _check_same_grid(reference: sitk.Image, other: sitk.Image, name: str) -> None:
    _check_image(other, name)
    if not same_grid(reference, other):
        raise ValueError(f"{name} is not on the grid of the contrast signal (size {other.GetSize()} vs "
                         f"{reference.GetSize()}, or spacing/origin/direction differ). Resample it onto the "
                         "contrast signal's grid first.")


def enhancing_regions(contrast_signal: sitk.Image, noise_sigma: float, brain_mask: sitk.Image | None = None,
                      threshold_sigmas: float = DEFAULT_THRESHOLD_SIGMAS,
                      min_volume_mm3: float = DEFAULT_MIN_VOLUME_MM3) -> sitk.Image:
    """uint16 label image on the grid of ``contrast_signal``: one label per enhancing region.

    A voxel enhances where ``contrast_signal > threshold_sigmas * noise_sigma`` (both in the
    units of the contrast signal) and, if given, ``brain_mask`` is non-zero. Regions are
    26-connected components of at least ``min_volume_mm3`` (mm^3); label 1 is the largest,
    then by volume descending (ties by first voxel in memory order). 0 is background.
    """
    _check_image(contrast_signal, "contrast_signal")
    if not np.isfinite(noise_sigma) or noise_sigma <= 0:
        raise ValueError(f"noise_sigma must be a positive number (the contrast signal's noise level), "
                         f"not {noise_sigma}.")
    if not np.isfinite(threshold_sigmas) or threshold_sigmas <= 0:
        raise ValueError(f"threshold_sigmas must be positive, not {threshold_sigmas}.")
    if not np.isfinite(min_volume_mm3) or min_volume_mm3 < 0:
        raise ValueError(f"min_volume_mm3 must be zero or positive, not {min_volume_mm3}.")
    y, _ = image_to_array(contrast_signal)
    above = np.asarray(y, dtype=np.float64) > threshold_sigmas * noise_sigma
    if brain_mask is not None:
        _check_same_grid(contrast_signal, brain_mask, "brain_mask")
        above &= sitk.GetArrayViewFromImage(brain_mask) != 0
    components, count = ndimage.label(above, structure=CONNECTIVITY_26)
    voxel_volume = float(np.prod(contrast_signal.GetSpacing()))
    out = np.zeros(components.shape, np.uint16)
    if count:
        sizes = np.bincount(components.ravel(), minlength=count + 1)[1:]
        keep = np.flatnonzero(sizes * voxel_volume >= min_volume_mm3) + 1
        if len(keep) > np.iinfo(np.uint16).max:
            raise ValueError(f"{len(keep)} regions exceed the uint16 label range; raise threshold_sigmas "
                             "or min_volume_mm3.")
        order = keep[np.argsort(-sizes[keep - 1], kind="stable")]
        lut = np.zeros(count + 1, np.uint16)
        lut[order] = np.arange(1, len(order) + 1, dtype=np.uint16)
        out = lut[components]
    image = sitk.GetImageFromArray(out)
    image.CopyInformation(contrast_signal)
    return image


def region_statistics(labels: sitk.Image, contrast_signal: sitk.Image, reference_contrast: sitk.Image | None = None,
                      low_dose: sitk.Image | None = None, pre_contrast: sitk.Image | None = None,
                      uncertainty: sitk.Image | None = None) -> list[dict]:
    """One dict per label > 0 (ascending label order).

    Keys: ``label``, ``voxels``, ``volume_mm3``, ``centroid_ras`` (x, y, z in mm, RAS as Slicer
    shows it), ``mean_contrast_signal``, ``max_contrast_signal``. With ``reference_contrast``
    (the standard-dose contrast x_SD - x_PC on the same grid and in the same units), also
    ``c_bar`` = sum_L y / sum_L y_ref and ``c_hat`` = max_L y / max_L y_ref (paper 001), NaN
    where the reference's sum or max is not positive. With ``low_dose`` and ``pre_contrast``,
    ``mean_low_dose`` and ``mean_pre_contrast`` (mean intensity in the region). With ``uncertainty`` (the contrast
    signal's spread, ``inference.uncertainty``), ``mean_uncertainty`` (in the contrast signal's units).
    """
    _check_image(labels, "labels")
    _check_same_grid(labels, contrast_signal, "contrast_signal")
    if labels.GetPixelID() not in (sitk.sitkUInt8, sitk.sitkUInt16, sitk.sitkUInt32, sitk.sitkUInt64,
                                   sitk.sitkInt8, sitk.sitkInt16, sitk.sitkInt32, sitk.sitkInt64):
        raise ValueError(f"labels must be an integer label image, not {labels.GetPixelIDTypeAsString()}.")
    extras = {}
    for name, image in (("reference_contrast", reference_contrast), ("low_dose", low_dose),
                        ("pre_contrast", pre_contrast), ("uncertainty", uncertainty)):
        if image is not None:
            _check_same_grid(labels, image, name)
            extras[name] = sitk.GetArrayViewFromImage(image)
    lab = sitk.GetArrayViewFromImage(labels).astype(np.int64)
    if lab.min(initial=0) < 0:
        raise ValueError("labels has negative values; give a label image with 0 as background.")
    y = sitk.GetArrayViewFromImage(contrast_signal)
    voxel_volume = float(np.prod(labels.GetSpacing()))
    rows = []
    boxes = ndimage.find_objects(lab)  # each label's bounding box: the work per region is its box, not the volume
    for label in np.unique(lab[lab > 0]):
        box = boxes[label - 1]
        region = lab[box] == label
        kji = np.argwhere(region) + [b.start for b in box]
        mean_ijk = kji.mean(axis=0)[::-1]
        lps = labels.TransformContinuousIndexToPhysicalPoint([float(v) for v in mean_ijk])
        values = y[box][region].astype(np.float64)
        row = {"label": int(label), "voxels": int(region.sum()), "volume_mm3": float(region.sum() * voxel_volume),
               "centroid_ras": (-float(lps[0]), -float(lps[1]), float(lps[2])),
               "mean_contrast_signal": float(values.mean()), "max_contrast_signal": float(values.max())}
        if "uncertainty" in extras:
            row["mean_uncertainty"] = float(extras["uncertainty"][box][region].astype(np.float64).mean())
        if "reference_contrast" in extras:
            ref = extras["reference_contrast"][box][region].astype(np.float64)
            row["c_bar"] = float(values.sum() / ref.sum()) if ref.sum() > 0 else float("nan")
            row["c_hat"] = float(values.max() / ref.max()) if ref.max() > 0 else float("nan")
        for name in ("low_dose", "pre_contrast"):
            if name in extras:
                row[f"mean_{name}"] = float(extras[name][box][region].astype(np.float64).mean())
        rows.append(row)
    return rows


def truth_problems(regions: np.ndarray, region_volumes: dict, truth_labels: np.ndarray, truth_volumes: dict,
                   large_mm3: float = LARGE_LESION_MM3, tolerance: float = 0.2) -> list[str]:
    """Compare enhancing regions with known lesions (phantom truth); returns the problems found, [] if none.

    regions: label array (0 = none) and ``region_volumes`` label -> volume (mm^3); truth_labels: label array
    on the same grid and ``truth_volumes`` truth label -> enhancing volume (mm^3) of the lesions to find.
    Each of them must lie in exactly one region, no region may hold two of them, and lesions of at least
    ``large_mm3`` need a region volume within ``tolerance`` (relative) of theirs (smaller ones are dominated
    by partial volume and only need to be found).
    """
    if regions.shape != truth_labels.shape:
        raise ValueError(f"regions {regions.shape} and truth_labels {truth_labels.shape} differ in shape.")
    problems, owner = [], {}
    for label, volume in sorted(truth_volumes.items()):
        hit = set(np.unique(regions[truth_labels == label]).tolist()) - {0}
        if len(hit) != 1:
            problems.append(f"lesion {label} lies in {len(hit)} regions, not 1")
            continue
        region = hit.pop()
        if region in owner:
            problems.append(f"lesions {owner[region]} and {label} share region {region}")
        owner.setdefault(region, label)
        found = float(region_volumes[region])
        if volume >= large_mm3 and abs(found - volume) > tolerance * volume:
            problems.append(f"lesion {label}: region volume {found:.0f} mm^3 vs {volume:.0f} mm^3 true "
                            f"({100 * (found / volume - 1):+.0f} %, limit {100 * tolerance:.0f} %)")
    return problems
