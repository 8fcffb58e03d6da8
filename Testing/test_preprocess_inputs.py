"""Bad inputs to the preprocessing get clear ValueErrors (and exit status 2 from the CLI)."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from GadoReduceLib import cli
from GadoReduceLib.preprocessing import registration
from GadoReduceLib.io.imageio import write_image
from GadoReduceLib.preprocessing.preprocess import check_enhancement, check_inputs, overlap_fraction


def volume(rng, size=(40, 48, 32), spacing=(2.0, 2.0, 2.0), origin=(0.0, 0.0, 0.0)):
    image = sitk.GetImageFromArray(rng.normal(500, 50, size[::-1]).astype(np.float32))
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    return image


def test_valid_inputs_pass(rng):
    check_inputs(volume(rng), volume(rng), volume(rng))


@pytest.mark.parametrize("case, message", [
    ("2d", "2 dimensions"), ("4d", "4 dimensions"), ("vector", "components"), ("constant", "constant"),
    ("nan", "NaN or infinite"), ("inf", "NaN or infinite"), ("single_slice", "empty"), ("coarse", "7 mm"),
])
def test_bad_low_dose_is_refused(rng, case, message):
    good = volume(rng)
    array = sitk.GetArrayFromImage(good)
    if case == "2d":
        bad = sitk.GetImageFromArray(array[0])
    elif case == "4d":
        bad = sitk.JoinSeries([good, good])
    elif case == "vector":
        bad = sitk.Compose(good, good)
    elif case == "constant":
        bad = sitk.GetImageFromArray(np.full_like(array, 7.0))
    elif case in ("nan", "inf"):
        array[3, 4, 5] = np.nan if case == "nan" else np.inf
        bad = sitk.GetImageFromArray(array)
    elif case == "single_slice":
        bad = sitk.GetImageFromArray(array[:1])
    else:
        bad = volume(rng, spacing=(1.0, 1.0, 8.0))
    with pytest.raises(ValueError, match=message):
        check_inputs(good, bad)
    with pytest.raises(ValueError, match=message):  # as the standard dose
        check_inputs(good, good, bad)
    if case not in ("2d", "4d", "vector"):
        with pytest.raises(ValueError, match="pre-contrast image"):  # the message names the image
            check_inputs(bad, good)


def test_scans_that_do_not_overlap_are_refused(rng):
    pre = volume(rng)
    far = volume(rng, origin=(500.0, 0.0, 0.0))
    assert overlap_fraction(pre, far) == 0.0
    with pytest.raises(ValueError, match="do not overlap"):
        check_inputs(pre, far)
    half = volume(rng, origin=(40.0, 0.0, 0.0))  # shifted by half the 80 mm field of view
    assert overlap_fraction(pre, half) == pytest.approx(0.5)
    check_inputs(pre, half)


def test_only_a_low_dose_darker_than_the_pre_contrast_is_refused(rng):
    """Noise-level enhancement is what a 10 % low dose shows (a warning in preprocess, not an error); a subtraction
    that is clearly negative where it should be positive means swapped inputs."""
    pre = rng.normal(0, 1, (30, 30, 30)).astype(np.float32)
    mask = sitk.GetImageFromArray(np.ones((30, 30, 30), np.uint8))
    noise_only = sitk.GetImageFromArray(pre)
    assert check_enhancement(noise_only, mask, 1.0, "low-dose image") < 0.002
    darker = pre.copy()
    darker[10:16, 10:16, 10:16] -= 8.0
    with pytest.raises(ValueError, match="look swapped"):
        check_enhancement(sitk.GetImageFromArray(darker), mask, 1.0, "low-dose image")
    enhanced = pre.copy()
    enhanced[10:14, 10:14, 10:14] += 8.0  # 0.24 % of voxels enhance
    assert check_enhancement(sitk.GetImageFromArray(enhanced), mask, 1.0, "low-dose image") > 0.002


def test_unknown_and_unavailable_backends(rng):
    with pytest.raises(ValueError, match="Unknown registration backend"):
        registration.choose_backend("ants")
    with pytest.raises(ValueError, match="needs 3D Slicer with the SlicerElastix extension"):
        registration.register(volume(rng), volume(rng), backend="slicer")
    with pytest.raises(ValueError, match="does not exist"):
        registration.register(volume(rng), volume(rng), parameter_file="/nonexistent/params.txt", backend="itk")
    with pytest.raises(ValueError, match="not exist or is not executable"):
        registration.find_elastix_executable("/nonexistent/elastix")


def test_cli_reports_bad_input_in_one_line(rng, tmp_path, capsys):
    pre = write_image(volume(rng), tmp_path / "pre.nii.gz")
    array = sitk.GetArrayFromImage(volume(rng))
    array[0, 0, 0] = np.nan
    low = sitk.GetImageFromArray(array)
    low.SetSpacing((2.0, 2.0, 2.0))
    low = write_image(low, tmp_path / "low.nrrd")  # ITK reads NaN in NIfTI files as 0
    status = cli.main(["preprocess", "--pre", str(pre), "--low", str(low), "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2
    assert len(err) == 1 and "NaN or infinite" in err[0] and err[0].startswith("gadoreduce preprocess: error:")
    assert not (tmp_path / "out").exists()
