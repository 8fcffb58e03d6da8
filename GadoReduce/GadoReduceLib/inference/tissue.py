"""Where the contrast signal may be non-zero: the tissue mask (issue 13, output only where there is tissue).

The network sees zero-padded background and can put a faint frame or haze there; contrast agent cannot be
outside the head. The contrast signal is therefore set to exactly 0 outside :func:`tissue_mask`:

- skull-stripped inputs (more than ``io.imageio.ZERO_BACKGROUND_FRACTION`` of the pre-contrast voxels exactly 0, e.g.
  BraTS): the brain mask itself, so that the synthetic standard dose equals the pre-contrast image outside it;
- whole-head inputs: the head (``brainmask.foreground_mask``: Otsu threshold, largest component, holes
  filled) dilated by ``TISSUE_MARGIN_MM``, together with the brain mask (scalp, dura and vessels keep their
  enhancement).
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from ..io.imageio import zero_background

TISSUE_MARGIN_MM = 3.0
"""Dilation of the head mask of whole-head scans (mm): partial-volume voxels at the skin stay in."""


def tissue_mask(pre_contrast: sitk.Image, brain_mask: sitk.Image) -> sitk.Image:
    """uint8 mask on ``pre_contrast``'s grid (see the module docstring); ``brain_mask`` on the same grid."""
    from ..preprocessing.brainmask import foreground_mask
    brain = sitk.Cast(brain_mask > 0, sitk.sitkUInt8)
    brain.CopyInformation(pre_contrast)
    if zero_background(sitk.GetArrayViewFromImage(pre_contrast)):
        return brain
    head = foreground_mask(pre_contrast)
    radius = [max(1, int(round(TISSUE_MARGIN_MM / s))) for s in pre_contrast.GetSpacing()]
    head = sitk.BinaryDilate(head, radius)
    head.CopyInformation(pre_contrast)
    return sitk.Cast(sitk.Or(head, brain), sitk.sitkUInt8)


def tissue_array(pre: np.ndarray, brain: np.ndarray, spacing) -> np.ndarray:
    """Boolean :func:`tissue_mask` of arrays [k, j, i] with voxel ``spacing`` (x, y, z mm)."""
    image = sitk.GetImageFromArray(np.asarray(pre, np.float32))
    image.SetSpacing(tuple(float(s) for s in spacing))
    mask = sitk.GetImageFromArray(np.asarray(brain).astype(np.uint8))
    mask.CopyInformation(image)
    return sitk.GetArrayFromImage(tissue_mask(image, mask)) > 0
