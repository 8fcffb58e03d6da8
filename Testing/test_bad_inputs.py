"""Bad inputs refused before any work (issue 15): no output may replace an input, whatever the names.

Each case asserts the exit status, that the message names the input, that the inputs are bit-identical
afterwards and that nothing was written."""

from __future__ import annotations

import hashlib
import os

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
