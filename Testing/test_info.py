"""`gadoreduce info` on NIfTI, NRRD and DICOM folders, and its errors for bad inputs."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import MODULE_DIR
from GadoReduceLib import cli
from GadoReduceLib.io import imageio


def make_image(size=(12, 10, 8), spacing=(0.5, 0.75, 2.0), origin=(-20.0, 35.5, 4.0), oblique=True):
    rng = np.random.default_rng(7)
    array = rng.normal(100, 20, size[::-1]).astype(np.int16)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    if oblique:
        a = math.radians(15)
        image.SetDirection((math.cos(a), 0, math.sin(a), 0, 1, 0, -math.sin(a), 0, math.cos(a)))
    return image, array


def write_dicom_series(image: sitk.Image, folder, tags: dict, series_uid="1.2.826.0.1.3680043.8.498.1"):
    """One file per slice, with geometry tags, as a scanner writes an MR series."""
    folder.mkdir(parents=True, exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    direction = image.GetDirection()
    for k in range(image.GetDepth()):
        slice_ = image[:, :, k]
        for tag, value in tags.items():
            slice_.SetMetaData(tag, value)
        slice_.SetMetaData("0020|000e", series_uid)
        slice_.SetMetaData("0020|000d", "1.2.826.0.1.3680043.8.498.2")
        slice_.SetMetaData("0008|0018", f"{series_uid}.{k + 1}")
        slice_.SetMetaData("0020|0037", "\\".join(f"{v:.6f}" for v in (direction[0], direction[3], direction[6],
                                                                        direction[1], direction[4], direction[7])))
        slice_.SetMetaData("0020|0032", "\\".join(f"{v:.6f}" for v in image.TransformIndexToPhysicalPoint((0, 0, k))))
        slice_.SetMetaData("0020|0013", str(k + 1))
        slice_.SetMetaData("0018|0050", str(image.GetSpacing()[2]))
        writer.SetFileName(str(folder / f"slice{k:03d}.dcm"))
        writer.Execute(slice_)


DICOM_TAGS = {"0008|0060": "MR", "0018|0087": "3", "0018|0010": "Gadovist 1.0", "0010|1030": "72.5",
              "0018|1041": "7.2", "0010|0010": "Doe^Jane", "0010|0020": "PAT-0042", "0008|103e": "T1 MPRAGE post"}


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd"])
def test_info_reports_geometry_and_intensity(tmp_path, suffix):
    image, array = make_image()
    path = imageio.write_image(image, tmp_path / f"scan{suffix}")
    info = imageio.image_info(path)
    assert info["size"] == [12, 10, 8]
    assert np.allclose(info["spacing_mm"], (0.5, 0.75, 2.0))
    assert np.allclose(info["origin_lps_mm"], (-20.0, 35.5, 4.0), atol=1e-4)
    assert np.allclose(info["origin_ras_mm"], (20.0, -35.5, 4.0), atol=1e-4)
    assert info["oblique"] is True
    assert info["intensity"]["min"] == array.min() and info["intensity"]["max"] == array.max()
    assert info["pixel_type"] == "16-bit signed integer"
    text = imageio.format_info(info)
    assert "0.5 x 0.75 x 2 mm" in text and "(oblique)" in text
    if suffix == ".nii.gz":
        assert info["header"]["format"] == "NIfTI"
        assert "qform_code_name" in info["header"]
    else:
        assert info["header"]["format"] == "NRRD"


def test_info_reads_dicom_folder_and_hides_patient_identity(tmp_path, capsys):
    image, array = make_image(oblique=False)
    write_dicom_series(image, tmp_path / "series", DICOM_TAGS)
    assert cli.main(["info", str(tmp_path / "series")]) == 0
    out = capsys.readouterr().out
    assert "MagneticFieldStrength: 3" in out
    assert "ContrastBolusAgent: Gadovist 1.0" in out
    assert "PatientWeight: 72.5" in out
    assert "Doe" not in out and "PAT-0042" not in out
    info = imageio.image_info(tmp_path / "series")
    assert info["size"] == [12, 10, 8]
    assert np.allclose(info["spacing_mm"], (0.5, 0.75, 2.0), atol=1e-4)
    assert np.allclose(info["origin_lps_mm"], (-20.0, 35.5, 4.0), atol=1e-4)
    assert info["header"]["NumberOfFiles"] == "8"
    assert np.array_equal(sitk.GetArrayFromImage(imageio.read_image(tmp_path / "series")), array)


def test_info_json_output(tmp_path, capsys):
    image, _ = make_image()
    path = imageio.write_image(image, tmp_path / "a.nrrd")
    assert cli.main(["info", "--json", str(path)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["size"] == [12, 10, 8] and data["orientation"] == imageio.Geometry.from_image(image).orientation()


def test_info_flags_non_finite_voxels(tmp_path):
    image, array = make_image()
    float_array = array.astype(np.float32)
    float_array[0, 0, :3] = np.nan
    bad = sitk.GetImageFromArray(float_array)
    bad.CopyInformation(image)
    info = imageio.image_info(imageio.write_image(bad, tmp_path / "nan.nrrd"))
    assert info["non_finite_voxels"] == 3
    assert "NaN or infinite" in imageio.format_info(info)
    assert np.isfinite(info["intensity"]["max"])


def test_info_errors_name_the_problem(tmp_path, capsys):
    assert cli.main(["info", str(tmp_path / "missing.nii.gz")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "notes.txt").write_text("not an image")
    assert cli.main(["info", str(tmp_path / "notes.txt")]) == 2
    assert "could not be read as an image" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert cli.main(["info", str(tmp_path / "empty")]) == 2
    assert "without DICOM images" in capsys.readouterr().err


def test_folder_with_two_series_asks_for_one(tmp_path, capsys):
    image, _ = make_image(oblique=False)
    write_dicom_series(image, tmp_path / "mixed", DICOM_TAGS, series_uid="1.2.3.4.1")
    write_dicom_series(image, tmp_path / "mixed2", DICOM_TAGS, series_uid="1.2.3.4.2")
    for f in (tmp_path / "mixed2").iterdir():
        f.rename(tmp_path / "mixed" / ("b" + f.name))
    assert cli.main(["info", str(tmp_path / "mixed")]) == 2
    err = capsys.readouterr().err
    assert "2 DICOM series" in err and "1.2.3.4.1" in err and "--series" in err
    assert cli.main(["info", "--series", "1.2.3.4.2", str(tmp_path / "mixed")]) == 0


def test_write_image_refuses_unknown_suffix_and_leaves_nothing(tmp_path):
    image, _ = make_image()
    with pytest.raises(ValueError, match="use one of"):
        imageio.write_image(image, tmp_path / "scan.jpg")
    assert list(tmp_path.iterdir()) == []


def test_check_3d_rejects_2d_and_vector_images():
    with pytest.raises(ValueError, match="2 dimensions"):
        imageio.check_3d(sitk.Image(5, 5, sitk.sitkFloat32), "pre-contrast scan")
    with pytest.raises(ValueError, match="3 components"):
        imageio.check_3d(sitk.Image([5, 5, 5], sitk.sitkVectorFloat32, 3))


def test_console_command_is_installed_or_runs_as_module(tmp_path):
    image, _ = make_image()
    path = imageio.write_image(image, tmp_path / "a.nii.gz")
    out = subprocess.run([sys.executable, "-m", "GadoReduceLib.cli", "info", str(path)], cwd=MODULE_DIR,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "12 x 10 x 8 voxels" in out.stdout


def test_info_on_brats(shared_data):
    path = shared_data / "brats20_186" / "BraTS20_Training_186_t1.nii.gz"
    info = imageio.image_info(path)
    assert info["size"] == [240, 240, 155] and info["spacing_mm"] == [1.0, 1.0, 1.0]
    assert info["intensity"]["min"] >= 0 and info["intensity"]["max"] > 0
