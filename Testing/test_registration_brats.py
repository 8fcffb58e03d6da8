"""Registration backends and the atlas brain mask on real BraTS pre/post-contrast pairs.

The BraTS pairs come co-registered, so moving the post-contrast scan by a rigid transform we choose
gives an exact ground truth for the registration error (TRE); the skull-stripped BraTS volumes give
the brain mask truth (their non-zero region)."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from GadoReduceLib.preprocessing import registration
from GadoReduceLib.preprocessing.brainmask import brain_mask, dice
from GadoReduceLib.io.regrid import downsample
from GadoReduceLib.preprocessing.registration import (RIGID_PARAMETER_FILE, parameter_file_path, register,
                                        target_registration_error, transform_from_parameter_text)

SUBJECT = "Brats18_2013_20_1"


def load(shared_data, subject, kind):
    return sitk.ReadImage(str(shared_data / "brats18" / subject / f"{subject}_{kind}.nii.gz"), sitk.sitkFloat32)


def test_shipped_parameter_files_are_elastix_text():
    for name, transform in ((registration.RIGID_PARAMETER_FILE, "EulerTransform"),
                            (registration.AFFINE_ATLAS_PARAMETER_FILE, "AffineTransform")):
        params = registration._parse_parameter_text(parameter_file_path(name).read_text())
        assert params["Transform"] == [transform]
        assert params["Metric"] == ["AdvancedMattesMutualInformation"]
        assert params["NumberOfResolutions"] == ["4"]
        assert params["WriteResultImage"] == ["false"]


def test_elastix_transform_text_converts_to_simpleitk():
    text = """(Transform "EulerTransform")
(NumberOfParameters 6)
(TransformParameters 0.1 -0.05 0.2 3.0 -4.0 5.5)
(InitialTransformParametersFileName "NoInitialTransform")
(CenterOfRotationPoint 10.0 -20.0 30.0)"""
    t = transform_from_parameter_text(text)
    reference = sitk.Euler3DTransform((10.0, -20.0, 30.0), 0.1, -0.05, 0.2, (3.0, -4.0, 5.5))
    points = np.array([[0.0, 0.0, 0.0], [50.0, -70.0, 20.0], [-30.0, 10.0, 90.0]])
    expected = np.array([reference.TransformPoint(p) for p in points])
    np.testing.assert_allclose(registration.transform_points(t, points), expected, atol=1e-9)
    affine = transform_from_parameter_text(text.replace("EulerTransform", "AffineTransform").replace(
        "(TransformParameters 0.1 -0.05 0.2 3.0 -4.0 5.5)", "(TransformParameters 1.1 0 0 0 0.9 0 0 0 1 1 2 3)"))
    np.testing.assert_allclose(affine.TransformPoint((10.0, -20.0, 30.0)), (11.0, -18.0, 33.0))
    with pytest.raises(ValueError, match="not supported"):
        transform_from_parameter_text(text.replace("EulerTransform", "BSplineTransform"))


@pytest.fixture(scope="module")
def moved_pair(shared_data):
    """BraTS t1 (fixed) and t1ce moved by 10 degrees and 10 mm (2 mm grid), and the true transform."""
    pre = downsample(load(shared_data, SUBJECT, "t1"), 2.0)
    post = downsample(load(shared_data, SUBJECT, "t1ce"), 2.0)
    centre = pre.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in pre.GetSize()])
    motion = sitk.Euler3DTransform(centre, np.deg2rad(10.0), np.deg2rad(-4.0), np.deg2rad(6.0), (10.0, -6.0, 4.0))
    moving = sitk.Resample(post, pre, motion, sitk.sitkBSpline, 0.0, sitk.sitkFloat32)
    # moving(x) = post(motion(x)); a registration fixed=pre finds x -> motion^-1(x)
    return pre, moving, motion.GetInverse(), sitk.Cast(pre > 0, sitk.sitkUInt8)


def test_rigid_registration_of_brats_pair_itk_and_executable(moved_pair):
    pytest.importorskip("itk")
    pre, moving, truth, brain = moved_pair
    before, _ = target_registration_error(sitk.Euler3DTransform(), truth, brain)
    assert before > 10.0
    itk_result = register(pre, moving, RIGID_PARAMETER_FILE, backend="itk")
    exe_result = register(pre, moving, RIGID_PARAMETER_FILE, backend="executable")
    assert (itk_result.backend, exe_result.backend) == ("itk", "executable")
    tre_itk, _ = target_registration_error(itk_result.transform, truth, brain)
    tre_exe, _ = target_registration_error(exe_result.transform, truth, brain)
    gap, _ = target_registration_error(itk_result.transform, exe_result.transform, brain)
    assert tre_itk <= 0.3
    assert abs(tre_exe - tre_itk) <= 0.1 and gap <= 0.1
    # the resampled image lies on the fixed grid and matches the fixed scan better than before
    assert itk_result.resampled.GetSize() == pre.GetSize()
    assert itk_result.metric < registration.mutual_information(pre, moving, brain)


@pytest.mark.parametrize("subject", [SUBJECT, "Brats18_TCIA01_378_1"])  # the second: worst affine fit of 13
def test_atlas_brain_mask_of_skull_stripped_brats(shared_data, subject):
    pytest.importorskip("itk")
    pre = load(shared_data, subject, "t1")
    result = brain_mask(pre, backend="itk")
    assert result.skull_stripped
    assert result.brain_mask.GetSize() == pre.GetSize()
    assert dice(result.brain_mask, pre > 0) >= 0.90
    assert dice(result.atlas_mask, pre > 0) >= 0.85  # the affine atlas alone, before using the non-zero region
