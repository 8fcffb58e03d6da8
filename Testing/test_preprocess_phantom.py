"""The preprocessing chain on a digital phantom (head with skull and scalp, known motion up to
10 degrees / 10 mm, known noise): registration error, brain mask, noise level, LD/SD agreement,
outputs on the pre-contrast grid, the CLI with the elastix executable, and the failed-registration
warning. One phantom and one itk-elastix run are shared by the tests (module fixtures)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from GadoReduceLib import cli
from GadoReduceLib.preprocessing.brainmask import dice
from GadoReduceLib.demo import true_motion, true_subtraction_sigma
from GadoReduceLib.io.imageio import Geometry, write_image
from GadoReduceLib.phantom.generate import PhantomConfig, generate_phantom
from GadoReduceLib.preprocessing.preprocess import RegistrationWarning, preprocess
from GadoReduceLib.preprocessing.registration import target_registration_error

pytest.importorskip("itk")
SEED = 7  # its motions: LD 7.9/6.0/5.3 deg, 8.0 mm; SD 7.1 deg, 9.5/7.4 mm (drawn within 10 deg, 10 mm)


@pytest.fixture(scope="module")
def case():
    return generate_phantom(PhantomConfig(seed=SEED, doses=(0.1,), max_motion_deg=10.0, max_motion_mm=10.0))


@pytest.fixture(scope="module")
def result(case):
    with __import__("warnings").catch_warnings():
        __import__("warnings").simplefilter("error", RegistrationWarning)  # no QC warning expected
        return preprocess(case.pre_contrast, case.low_dose[0.1], case.standard_dose, backend="itk")


@pytest.mark.parametrize("scan, attr", [("low_dose_010", "low_dose"), ("standard_dose", "standard_dose")])
def test_rigid_registration_error_below_0_3_mm(case, result, scan, attr):
    motion = case.parameters["scans"][scan]["motion"]
    assert max(np.abs(motion["rotation_deg"])) > 5 and max(np.abs(motion["translation_mm"])) > 5  # real motion
    assert motion["brain_displacement_mm"]["mean"] > 10
    mean, worst = target_registration_error(getattr(result, attr).registration.transform,
                                            true_motion(case, scan), case.brain_mask)
    assert mean <= 0.3, f"mean TRE {mean:.3f} mm over the brain"
    assert worst <= 1.0


def test_brain_mask_of_head_with_skull(case, result):
    assert not result.brain.skull_stripped
    assert dice(result.brain_mask, case.brain_mask) >= 0.90
    assert dice(result.brain.head_mask, case.head_mask) >= 0.90


def test_noise_sigma_within_10_percent_of_truth(case, result):
    # truth from the sidecar's sigma, the g-factor map and the gains (see demo.true_subtraction_sigma)
    assert result.low_dose.noise_sigma == pytest.approx(true_subtraction_sigma(case, result, result.low_dose), rel=0.10)


@pytest.fixture(scope="module")
def non_enhancing(case):
    """Brain voxels whose true standard-dose enhancement is below 5 noise sigmas and that lie more than
    3 voxels from any lesion. Truth from the noise-free twin of the phantom (same seed, noise 0),
    its standard dose realigned with the true motion."""
    clean = generate_phantom(PhantomConfig(seed=SEED, doses=(0.1,), max_motion_deg=10.0, max_motion_mm=10.0,
                                           noise_level=0.0))
    sd = sitk.Resample(clean.standard_dose, clean.pre_contrast, true_motion(case, "standard_dose"),
                       sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    enhancement = sitk.GetArrayFromImage(sd) - sitk.GetArrayFromImage(clean.pre_contrast)
    brain = sitk.GetArrayViewFromImage(case.brain_mask) > 0
    lesions = sitk.GetArrayFromImage(sitk.BinaryDilate(case.lesion_labels > 0, [3, 3, 3])) > 0
    mask = brain & ~lesions & (enhancement < 5.0 * case.parameters["noise"]["noise_sigma"])
    assert mask.sum() > 0.85 * (brain & ~lesions).sum()  # most of the brain: dura, veins, plexus left out
    return mask


def test_low_and_standard_dose_agree_in_non_enhancing_brain(case, result, non_enhancing):
    covered = [sitk.GetArrayViewFromImage(scan.coverage) > 0 for scan in (result.low_dose, result.standard_dose)]
    brain = sitk.GetArrayViewFromImage(case.brain_mask) > 0
    assert (brain & ~covered[0]).sum() > 0  # the motion moved some brain out of the field of view ...
    non_enhancing = non_enhancing & covered[0] & covered[1]  # ... where no subtraction exists
    z_ld = sitk.GetArrayViewFromImage(result.low_dose.normalized_subtraction)[non_enhancing]
    z_sd = sitk.GetArrayViewFromImage(result.standard_dose.normalized_subtraction)[non_enhancing]
    sigma = result.noise_sigma_ld
    assert np.std(z_ld - z_sd) <= 1.5 * sigma
    # eq. 1 puts both at the low-dose noise level, although the raw standard-dose subtraction is noisier
    assert result.standard_dose.noise_sigma > 1.1 * result.low_dose.noise_sigma
    assert np.std(z_ld) == pytest.approx(sigma, rel=0.15)
    assert np.std(z_sd) == pytest.approx(sigma, rel=0.20)
    # the target keeps the enhancing lesions and suppresses noise elsewhere
    y = sitk.GetArrayViewFromImage(result.contrast_signal)
    labels = sitk.GetArrayViewFromImage(case.lesion_labels) > 0
    assert np.median(y[labels & brain]) > 4 * sigma
    assert np.mean(np.abs(y[non_enhancing]) < sigma) > 0.9


def test_outputs_lie_on_the_pre_contrast_grid(case, result):
    pre = Geometry.from_image(case.pre_contrast)
    outputs = result.outputs()
    assert {"pre_contrast", "brain_mask", "normalized_subtraction_ld", "contrast_signal"} <= set(outputs)
    for name, image in outputs.items():
        assert Geometry.from_image(image).is_close(pre, atol=1e-9), name
    qc = result.qc
    assert qc["warnings"] == []
    for scan in ("low_dose", "standard_dose"):
        assert qc[scan]["correlation_after"] > qc[scan]["correlation_before"] + 0.05
        assert qc[scan]["registration_metric"] < 0


def test_cli_with_elastix_executable_matches_itk(case, result, tmp_path):
    pre = write_image(case.pre_contrast, tmp_path / "pre.nii.gz")
    low = write_image(case.low_dose[0.1], tmp_path / "low.nii.gz")
    out = tmp_path / "out"
    status = cli.main(["preprocess", "--pre", str(pre), "--low", str(low), "--output", str(out),
                       "--backend", "executable", "--qc", str(out / "qc.png")])
    assert status == 0
    transform = sitk.ReadTransform(str(out / "low_dose_to_pre_contrast.tfm"))
    gap, _ = target_registration_error(transform, result.low_dose.registration.transform, case.brain_mask)
    assert gap <= 0.1, f"executable and itk-elastix transforms differ by {gap:.3f} mm on average"
    assert target_registration_error(transform, true_motion(case, "low_dose_010"), case.brain_mask)[0] <= 0.3
    qc = json.loads((out / "qc.json").read_text())
    assert qc["low_dose"]["registration_backend"] == "executable" and qc["warnings"] == []
    from PIL import Image
    with Image.open(out / "qc.png") as png:
        assert png.format == "PNG" and png.width >= 4 * 200
    z = sitk.ReadImage(str(out / "normalized_subtraction_ld.nii.gz"))
    assert Geometry.from_image(z).is_close(Geometry.from_image(case.pre_contrast), atol=1e-4)
    from GadoReduceLib.preprocessing.qc import output_files
    written = set(out.iterdir())
    assert written == set(output_files(out, False, out / "qc.png")), "output_files lists exactly what is written"


def test_failed_registration_gives_a_warning(case, result):
    flipped = sitk.Flip(case.low_dose[0.1], [False, False, True])  # upside down: no rigid motion undoes it
    flipped.CopyInformation(case.low_dose[0.1])
    with pytest.warns(RegistrationWarning, match="looks failed"):
        # the misaligned subtraction is then noise-like everywhere: refused, naming the registration
        with pytest.raises(ValueError, match="nowhere brighter.*registration .* also looks failed"):
            preprocess(case.pre_contrast, flipped, backend="itk", brain=case.brain_mask)


def test_partial_field_of_view_is_flagged(case, result):
    low = case.low_dose[0.1]
    cropped = low[:, :, low.GetSize()[2] // 2:]  # upper half of the slices only
    with pytest.warns(RegistrationWarning, match="covers only"):
        partial = preprocess(case.pre_contrast, cropped, backend="itk", brain=case.brain_mask)
    assert 0.2 < partial.qc["low_dose"]["brain_coverage"] < 0.9
    z = sitk.GetArrayViewFromImage(partial.low_dose.normalized_subtraction)
    assert np.all(z[sitk.GetArrayViewFromImage(partial.low_dose.coverage) == 0] == 0)


def test_anisotropic_scan_is_regridded_and_mapped_back_exactly():
    case = generate_phantom(PhantomConfig(seed=SEED, doses=(0.1,), spacing_mm=(2.0, 2.0, 4.0),
                                          max_motion_deg=10.0, max_motion_mm=10.0))
    result = preprocess(case.pre_contrast, case.low_dose[0.1], backend="itk", brain=case.brain_mask)
    assert result.qc["regridded"] and result.qc["working_grid_spacing_mm"] == [2.0, 2.0, 2.0]
    assert result.pre_contrast.GetSize()[2] == 2 * case.pre_contrast.GetSize()[2] - 1
    geometry = Geometry.from_image(case.pre_contrast)
    outputs = result.outputs()
    for name, image in outputs.items():
        assert Geometry.from_image(image).is_close(geometry, atol=1e-9), name
    # the pre-contrast scan survives the round trip through the working grid exactly (up to float32)
    back = sitk.GetArrayFromImage(outputs["pre_contrast"]) * result.pre_percentile
    np.testing.assert_allclose(back, sitk.GetArrayFromImage(case.pre_contrast), rtol=1e-5, atol=1e-2)
    mean, _ = target_registration_error(result.low_dose.registration.transform, true_motion(case, "low_dose_010"),
                                        case.brain_mask)
    assert mean <= 0.3
