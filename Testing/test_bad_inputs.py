"""Bad inputs refused before any work (issue 15): no output may replace an input, whatever the names.

Each case asserts the exit status, that the message names the input, that the inputs are bit-identical
afterwards and that nothing was written."""

from __future__ import annotations

import gzip
import hashlib
import os

import numpy as np
import pytest
import SimpleITK as sitk

from GadoReduceLib import cli
from GadoReduceLib.io.imageio import write_image


def _image(value: float = 1.0) -> sitk.Image:
    image = sitk.Image([12, 12, 12], sitk.sitkFloat32) + value
    image.SetSpacing((1.0, 1.0, 1.0))
    return image


def _digest(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def _snapshot(folder) -> dict:
    return {p.name: _digest(p) for p in sorted(folder.rglob("*")) if p.is_file()}


PREDICT = ["--dose", "0.3", "--field-strength", "3", "--device", "cpu"]


@pytest.mark.parametrize("command, pre_name, option", [
    ("predict", "synthetic_standard_dose.nii.gz", "--pre"),   # the pre-contrast named like an output
    ("predict", "record.json.nii.gz", None),                  # a harmless name: no refusal for this reason
    ("preprocess", "pre_contrast.nii.gz", "--pre"),
    ("preprocess", "brain_mask.nii.gz", "--pre"),
])
def test_an_output_never_replaces_an_input(tmp_path, capsys, command, pre_name, option):
    folder = tmp_path / "case"
    pre = write_image(_image(), folder / pre_name)
    low = write_image(_image(2.0), folder / ("contrast_signal.nii.gz" if command == "predict" else "low.nii.gz"))
    before = _snapshot(folder)
    args = [command, "--pre", str(pre), "--low", str(low), "--output", str(folder)]
    args += PREDICT + ["--model", str(tmp_path / "absent.pt")] if command == "predict" else []
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    if option is None:  # the low dose (contrast_signal.nii.gz) is refused instead
        assert "--low" in err and "contrast_signal.nii.gz would overwrite" in err, err
    else:
        assert f"{option} {pre}" in err and "would overwrite this input" in err, err
    assert _snapshot(folder) == before, "inputs unchanged, nothing written"


def test_an_input_reached_through_a_link_is_protected(tmp_path, capsys):
    data = tmp_path / "data"
    pre = write_image(_image(), data / "t1.nii.gz")
    low = write_image(_image(2.0), data / "t1ce.nii.gz")
    out = tmp_path / "out"
    out.mkdir()
    os.symlink(pre, out / "pre_contrast.nii.gz")
    before = _snapshot(data)
    assert cli.main(["preprocess", "--pre", str(out / "pre_contrast.nii.gz"), "--low", str(low),
                     "--output", str(out)]) == 2
    assert "would overwrite this input" in capsys.readouterr().err
    assert _snapshot(data) == before and sorted(p.name for p in out.iterdir()) == ["pre_contrast.nii.gz"]


def test_qc_montage_onto_an_input_and_output_folder_that_is_a_file(tmp_path, capsys):
    pre = write_image(_image(), tmp_path / "pre.nii.gz")
    low = write_image(_image(2.0), tmp_path / "low.png.nii.gz")
    before = _snapshot(tmp_path)
    assert cli.main(["preprocess", "--pre", str(pre), "--low", str(low), "--output", str(tmp_path / "o"),
                     "--qc", str(pre)]) == 2
    assert f"--pre {pre}" in capsys.readouterr().err
    for command in (["preprocess"], ["predict"] + PREDICT):
        assert cli.main(command + ["--pre", str(pre), "--low", str(low), "--output", str(pre)]) == 2
        assert f"--output {pre} is an existing file, not a folder" in capsys.readouterr().err
    assert _snapshot(tmp_path) == before


# ------------------------------------------------------------------------------------ damaged files


def _noise_image(shape=(24, 28, 32)) -> sitk.Image:
    rng = np.random.default_rng(7)
    image = sitk.GetImageFromArray(rng.normal(100.0, 20.0, shape).astype(np.float32))
    image.SetSpacing((1.0, 1.0, 1.0))
    return image


def _damage(tmp_path, kind: str):
    good = write_image(_noise_image(), tmp_path / "good.nii.gz")
    data = good.read_bytes()
    if kind == "truncated gzip":
        damaged = data[: len(data) // 2]
    elif kind == "64 flipped bytes":
        damaged = bytearray(data)
        middle = len(damaged) // 2
        damaged[middle:middle + 64] = bytes(b ^ 0xFF for b in damaged[middle:middle + 64])
    else:  # an uncompressed .nii cut short
        damaged = gzip.decompress(data)[:-1000]
    path = tmp_path / ("pre.nii" if kind == "truncated nii" else "pre.nii.gz")
    path.write_bytes(bytes(damaged))
    return path, write_image(_noise_image(), tmp_path / "low.nii.gz")


@pytest.mark.parametrize("kind", ["truncated gzip", "64 flipped bytes", "truncated nii"])
@pytest.mark.parametrize("command", ["predict", "preprocess", "info"])
def test_damaged_nifti_files_are_refused_before_any_work(tmp_path, capsys, kind, command):
    pre, low = _damage(tmp_path, kind)
    before = _snapshot(tmp_path)
    out = tmp_path / "out"
    args = {"info": ["info", str(pre)],
            "preprocess": ["preprocess", "--pre", str(pre), "--low", str(low), "--output", str(out)],
            "predict": ["predict", "--pre", str(pre), "--low", str(low), "--output", str(out)] + PREDICT}[command]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert f"{pre} is damaged" in err and ("gzip" in err or "truncated" in err), err
    assert "Traceback" not in err and _snapshot(tmp_path) == before and not out.exists()


def test_damage_checks_pass_on_good_files_of_every_layout(tmp_path):
    from GadoReduceLib.io.integrity import scan_nifti
    image = _noise_image()
    for name in ("a.nii", "a.nii.gz"):
        scan = scan_nifti(write_image(image, tmp_path / name))
        assert scan.voxels == 24 * 28 * 32 and scan.nonfinite_index.size == 0
    assert scan_nifti(write_image(sitk.Cast(image, sitk.sitkInt16), tmp_path / "b.nii.gz")).voxels == 24 * 28 * 32
    assert scan_nifti(write_image(image, tmp_path / "c.nrrd")) is None  # left to ITK


# --------------------------------------------------------------------------------- non-finite voxels


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd"])
def test_stored_nan_and_inf_voxels_are_seen_in_every_format(tmp_path, capsys, suffix):
    """ITK's NIfTI reader returns stored NaN/inf as 0; GadoReduce reads what the file stores and refuses it."""
    from GadoReduceLib.io.imageio import image_info, read_image
    array = sitk.GetArrayFromImage(_noise_image())
    array[3, 4, 5], array[0, 0, 1], array[10, 11, 12] = np.nan, np.inf, -np.inf
    image = sitk.GetImageFromArray(array)
    pre = tmp_path / f"pre{suffix}"
    sitk.WriteImage(image, str(pre))
    back = sitk.GetArrayFromImage(read_image(pre))
    assert np.isnan(back[3, 4, 5]) and back[0, 0, 1] == np.inf and back[10, 11, 12] == -np.inf
    finite = np.isfinite(array)
    assert np.array_equal(back[finite], array[finite])
    info = image_info(pre)
    assert info["non_finite_voxels"] == 3, info
    low = write_image(_noise_image(), tmp_path / "low.nii.gz")
    before = _snapshot(tmp_path)
    out = tmp_path / "out"
    assert cli.main(["preprocess", "--pre", str(pre), "--low", str(low), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert "pre-contrast image has 3 NaN or infinite voxels" in err, err
    assert _snapshot(tmp_path) == before and not out.exists()


def test_an_all_nan_nifti_is_not_called_constant(tmp_path, capsys):
    array = np.full((8, 9, 10), np.nan, np.float32)
    pre = tmp_path / "pre.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(array), str(pre))
    low = write_image(_noise_image(), tmp_path / "low.nii.gz")
    assert cli.main(["preprocess", "--pre", str(pre), "--low", str(low), "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "720 NaN or infinite voxels" in err and "constant" not in err, err


# ------------------------------------------------------------------------------ tiny or extreme images


@pytest.mark.parametrize("size", [6, 12])
def test_tiny_images_get_a_message_not_a_traceback(tmp_path, capsys, size):
    """6 voxels made SimpleITK's Gaussian filter raise, 12 made elastix raise: both are refused up front now."""
    rng = np.random.default_rng(size)
    paths = []
    for name in ("pre", "low"):
        image = sitk.GetImageFromArray(rng.normal(100.0, 20.0, (size,) * 3).astype(np.float32))
        paths.append(write_image(image, tmp_path / f"{name}.nii.gz"))
    assert cli.main(["preprocess", "--pre", str(paths[0]), "--low", str(paths[1]), "--output",
                     str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert f"pre-contrast image has only {size} voxels along one axis" in err and "Traceback" not in err, err
    assert not (tmp_path / "o").exists()
