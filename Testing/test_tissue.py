"""Output only where there is tissue (inference/tissue.py): no frame or haze in the background of any output.

The BraTS test needs ../shared/data (skipped with a message when absent); it runs on a 2 mm copy of one
subject so that it takes seconds. Synthetic low doses for testing, not clinical evidence.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from GadoReduceLib.inference.tissue import tissue_array, tissue_mask

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def test_whole_head_tissue_is_the_head_and_skull_stripped_tissue_is_the_brain():
    shape = (40, 48, 48)
    k, j, i = np.ogrid[:shape[0], :shape[1], :shape[2]]
    r2 = ((k - 20) / 16.0) ** 2 + ((j - 24) / 20.0) ** 2 + ((i - 24) / 20.0) ** 2
    rng = np.random.default_rng(0)
    head = np.where(r2 < 1, 1.0, 0.0) + 0.01 * np.abs(rng.standard_normal(shape))  # noisy background, no zeros
    brain = r2 < 0.5
    tissue = tissue_array(head, brain, (1.0, 1.0, 1.0))
    assert tissue[r2 < 0.95].all() and not tissue[r2 > 1.6].any()  # the head (+3 mm), not the box
    stripped = np.where(brain, head, 0.0)
    assert np.array_equal(tissue_array(stripped, brain, (1.0, 1.0, 1.0)), brain)
    image = sitk.GetImageFromArray(stripped.astype(np.float32))
    mask = sitk.GetImageFromArray(brain.astype(np.uint8))
    assert np.array_equal(sitk.GetArrayFromImage(tissue_mask(image, mask)) > 0, brain)


@pytest.mark.skipif(not DATA.is_dir(), reason=f"needs the BraTS pairs in {DATA} (../shared/data)")
def test_skull_stripped_brats_synthetic_standard_dose_is_the_pre_contrast_outside_the_brain():
    from GadoReduceLib.io.cases import find_brats_pairs
    from GadoReduceLib.io.imageio import read_image
    from GadoReduceLib.physics.lowdose import synthesize_low_dose
    from GadoReduceLib.pipeline import Pipeline
    subject, t1, t1ce, _ = find_brats_pairs(DATA)[-1]

    def at_2mm(path):
        image = sitk.Cast(read_image(path), sitk.sitkFloat32)
        reference = sitk.Image([n // 2 for n in image.GetSize()], sitk.sitkFloat32)
        reference.SetSpacing([2 * s for s in image.GetSpacing()])
        reference.SetOrigin(image.TransformContinuousIndexToPhysicalPoint([0.5, 0.5, 0.5]))
        reference.SetDirection(image.GetDirection())
        return sitk.Resample(image, reference, sitk.Transform(), sitk.sitkLinear, 0.0)
    pre, sd = at_2mm(t1), at_2mm(t1ce)
    low, _ = synthesize_low_dose(pre, sd, 0.33, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 2 mm voxels: the voxel-size warning is kept in the record
        result = Pipeline(threads=2).predict_case(pre, low, 0.33, 3.0, "gadobutrol")
    brain = sitk.GetArrayFromImage(result.preprocessing.outputs()["brain_mask"]) > 0
    outside = ~brain
    assert outside.mean() > 0.3 and brain.mean() > 0.1
    pre_a = sitk.GetArrayFromImage(pre)
    synthetic = sitk.GetArrayFromImage(result.images["synthetic_standard_dose"])
    contrast = sitk.GetArrayFromImage(result.images["contrast_signal"])
    assert np.array_equal(synthetic[outside], pre_a[outside])  # exactly: 0 difference
    assert (contrast[outside] == 0).all()
    assert contrast[brain].max() > 0 and np.abs(synthetic - pre_a)[brain].max() > 0
