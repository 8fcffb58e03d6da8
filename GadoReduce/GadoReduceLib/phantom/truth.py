"""The truth of a generated phantom (``phantom.generate_phantom``): which lesions enhance, their labels and
volumes, and the region threshold at which the module's phantom checks compare regions with them.

Used by the module's self-test and sample data, the evaluation cases and the region threshold study.
Synthetic data: no clinical evidence.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

PHANTOM_THRESHOLD_SIGMAS = 12.0
"""Enhancing-region threshold (noise sigmas of the low-dose subtraction) for phantom checks of the module.
With the paper's 4 sigma, the phantom's normal enhancing structures (vessels, dura, choroid plexus) merge
with the lesions into one tree; at 12 sigma the measured standard dose (registered, minus the pre-contrast
scan) gives one region per enhancing lesion and the true volume within 20 % for all 20 large lesions of
phantoms 100-106 at 33 % (scripts/region_threshold_study.py; 16/20 at 15 sigma, 19/20 at 10 sigma)."""


def enhancing_lesions(entries) -> list[dict]:
    """The enhancing lesions among a phantom's lesion entries (``case.parameters["lesions"]`` or its sidecar's)."""
    return [entry for entry in entries if entry.get("type") != "non_enhancing"]


def without_non_enhancing(lesions: sitk.Image, entries, reference: sitk.Image) -> sitk.Image:
    """Phantom lesion labels (uint16) with the non-enhancing lesions of ``entries`` set to 0, on ``reference``'s
    grid."""
    keep = {entry["label"] for entry in enhancing_lesions(entries)}
    drop = [entry["label"] for entry in entries if entry["label"] not in keep]
    array = sitk.GetArrayFromImage(lesions)
    image = sitk.GetImageFromArray(np.where(np.isin(array, drop), 0, array).astype(np.uint16))
    image.CopyInformation(reference)
    return image


def phantom_lesions(case) -> sitk.Image:
    """The enhancing lesions of a generated phantom (``phantom.generate_phantom``) as a label image."""
    return without_non_enhancing(case.lesion_labels, case.parameters["lesions"], case.pre_contrast)


def phantom_truth_volumes(case, min_volume_mm3: float, min_diameter_mm: float = 0.0) -> dict:
    """Enhancing lesions of a generated phantom of at least ``min_volume_mm3`` enhancing volume and
    ``min_diameter_mm`` diameter: label -> enhancing volume (mm^3) (what ``regions.truth_problems`` checks)."""
    return {lesion["label"]: float(lesion["enhancing_volume_mm3"])
            for lesion in enhancing_lesions(case.parameters["lesions"])
            if lesion["enhancing_volume_mm3"] >= min_volume_mm3 and lesion["diameter_mm"] >= min_diameter_mm}
