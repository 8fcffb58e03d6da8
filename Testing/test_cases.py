"""The one case reader (``io.cases``, issue 12): case folders, BraTS subjects, lesions, names, bad inputs, cache.

Tiny synthetic images written with SimpleITK into tmp_path; no shared data.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from GadoReduceLib.io.cases import (BRATS_ENHANCING_LABEL, DEFAULT_FIELD_STRENGTH_T, cache_file, cached,
                                    case_folders, check_doses, connected_lesions, dose_digits, dose_from_name,
                                    find_brats_pairs, find_image, folder_spec, low_dose_files, read_brats_subject,
                                    read_case_folder, read_case_metadata, save_npz)
from GadoReduceLib.io.imageio import dose_name
from GadoReduceLib.physics.agents import DEFAULT_AGENT

SHAPE = (8, 9, 10)  # k, j, i


def _image(array, spacing=(1.0, 1.0, 1.0)) -> sitk.Image:
    image = sitk.GetImageFromArray(np.asarray(array))
    image.SetSpacing(spacing)
    return image


def _write(folder, name, array, spacing=(1.0, 1.0, 1.0)):
    folder.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(_image(array, spacing), str(folder / name))
    return folder / name


def _scans(folder, lows=("low_dose_010.nii.gz", "low_dose_033.nii.gz")):
    rng = np.random.default_rng(0)
    pre = rng.uniform(100, 200, SHAPE).astype(np.float32)
    _write(folder, "pre_contrast.nii.gz", pre)
    _write(folder, "standard_dose.nii.gz", pre + 50)
    for i, name in enumerate(lows):
        _write(folder, name, pre + 5 * (i + 1))
    return pre


def test_dose_name_round_trip():
    for dose in (0.1, 0.25, 0.333, 0.05, 1.0):
        assert dose_from_name(dose_name(dose)) == round(dose, 2)
        assert dose_from_name(dose_name(dose) + ".nii.gz") == round(dose, 2)
        assert dose_digits(dose) == dose_name(dose)[-3:]
    for name in ("low_dose.nii.gz", "low_dose_1.nii.gz", "low_dose_abc.nrrd", "pre_contrast.nii.gz"):
        assert dose_from_name(name) is None
    assert check_doses([0.33, 0.1]) == (0.1, 0.33)
    with pytest.raises(ValueError, match="same percent"):
        check_doses([0.2, 0.2001])


def test_folder_with_dose_named_low_doses_and_phantom_json(tmp_path):
    folder = tmp_path / "p1"
    pre = _scans(folder)
    (folder / "phantom.json").write_text(json.dumps({"field_strength_t": 1.5, "agent": {"name": "gadoterate"}}))
    meta = read_case_metadata(folder)
    assert meta.doses == {"low_dose_010.nii.gz": 0.1, "low_dose_033.nii.gz": 0.33}
    assert (meta.field_strength, meta.agent, meta.assumed) == (1.5, "gadoterate", False)
    case = read_case_folder(folder)
    assert (case.name, case.source, case.field_strength, case.agent) == ("p1", "folder", 1.5, "gadoterate")
    assert sorted(case.low_doses) == [0.1, 0.33] and not case.assumed_metadata
    np.testing.assert_array_equal(sitk.GetArrayFromImage(case.low_doses[0.33]), pre + 10)
    only = read_case_folder(folder, ["low_dose_033.nii.gz"])
    assert list(only.low_doses) == [0.33]
    assert [p.name for p in low_dose_files(folder)] == ["low_dose_010.nii.gz", "low_dose_033.nii.gz"]
    assert find_image(folder, "pre_contrast").name == "pre_contrast.nii.gz" and find_image(folder, "nope") is None


def test_folder_with_case_json(tmp_path):
    folder = tmp_path / "c1"
    _scans(folder, lows=("low_dose.nii.gz",))
    labels = np.zeros(SHAPE, np.uint8)
    labels[1:3, 1:3, 1:3] = 1
    labels[5:7, 5:7, 5:7] = 1          # a binary mask: two lesions
    _write(folder, "lesions.nii.gz", labels)
    _write(folder, "brain_mask.nii.gz", np.ones(SHAPE, np.uint8))
    (folder / "case.json").write_text(json.dumps({"dose": 0.25, "field_strength": 3, "agent": "Gadovist"}))
    case = read_case_folder(folder)
    assert list(case.low_doses) == [0.25] and (case.field_strength, case.agent) == (3.0, "Gadovist")
    assert sorted(np.unique(sitk.GetArrayFromImage(case.lesions))) == [0, 1, 2]
    assert case.brain_mask is not None
    # case.json without "dose": the doses come from the file names
    named = tmp_path / "c2"
    _scans(named)
    (named / "case.json").write_text(json.dumps({"field_strength": 1.5}))
    meta = read_case_metadata(named)
    assert meta.doses == {"low_dose_010.nii.gz": 0.1, "low_dose_033.nii.gz": 0.33}
    assert (meta.field_strength, meta.agent) == (1.5, DEFAULT_AGENT)
    # folders without low doses or sidecar: assumed metadata; a root of case folders lists them
    bare = tmp_path / "c3"
    _scans(bare, lows=())
    assert read_case_metadata(bare).assumed and read_case_folder(bare).field_strength == DEFAULT_FIELD_STRENGTH_T
    assert [p.name for p in case_folders(tmp_path)] == ["c1", "c2", "c3"]
    assert folder_spec(folder).load().name == "c1"


def test_brats_subject_lesions_are_connected_components_of_the_enhancing_label(tmp_path):
    subject = tmp_path / "Brats_X"
    pre = _scans(subject, lows=())
    (subject / "pre_contrast.nii.gz").rename(subject / "Brats_X_t1.nii.gz")
    (subject / "standard_dose.nii.gz").rename(subject / "Brats_X_t1ce.nii.gz")
    seg = np.zeros(SHAPE, np.uint8)
    seg[1:3, 1:3, 1:3] = BRATS_ENHANCING_LABEL
    seg[3, 3, 3] = BRATS_ENHANCING_LABEL     # touches the first blob at a corner: 26-connected, same lesion
    seg[5:7, 6:8, 6:8] = BRATS_ENHANCING_LABEL
    seg[5:7, 1:3, 6:8] = 1                    # necrosis: not a lesion
    _write(subject, "Brats_X_seg.nii.gz", seg)
    (pair,) = find_brats_pairs(tmp_path)
    assert pair[0] == "Brats_X" and pair[3].name == "Brats_X_seg.nii.gz"
    case = read_brats_subject(*pair)
    labels = sitk.GetArrayFromImage(case.lesions)
    assert sorted(np.unique(labels)) == [0, 1, 2]
    assert labels[3, 3, 3] == labels[1, 1, 1] and labels[5, 1, 6] == 0
    assert (case.source, case.low_doses, case.assumed_metadata) == ("brats", {}, True)
    assert (case.field_strength, case.agent) == (DEFAULT_FIELD_STRENGTH_T, DEFAULT_AGENT)
    np.testing.assert_allclose(sitk.GetArrayFromImage(case.pre_contrast), pre)
    assert case.standard_dose.GetPixelID() == sitk.sitkFloat32
    np.testing.assert_array_equal(connected_lesions(seg == BRATS_ENHANCING_LABEL), labels)


def test_bad_inputs_name_the_file_and_the_fix(tmp_path):
    missing = tmp_path / "missing_pre"
    _scans(missing)
    (missing / "pre_contrast.nii.gz").unlink()
    (missing / "phantom.json").write_text(json.dumps({"field_strength_t": 3, "agent": {"name": "gadobutrol"}}))
    with pytest.raises(ValueError, match=r"missing_pre lacks pre_contrast .*add e\.g\. pre_contrast\.nii\.gz"):
        read_case_folder(missing)
    two = tmp_path / "two"
    _scans(two, lows=("low_dose.nii.gz", "low_dose_b.nii.gz"))
    (two / "case.json").write_text(json.dumps({"dose": 0.2, "field_strength": 3}))
    with pytest.raises(ValueError, match=r"two/low_dose\.nii\.gz carries no dose in its name.*low_dose_NNN"):
        read_case_metadata(two)
    one_dose = tmp_path / "one_dose"
    _scans(one_dose)
    (one_dose / "case.json").write_text(json.dumps({"dose": 0.2, "field_strength": 3}))
    with pytest.raises(ValueError, match=r"case\.json gives one dose for 2 low-dose images.*drop \"dose\""):
        read_case_metadata(one_dose)
    bad = tmp_path / "bad"
    _scans(bad, lows=("low_dose.nii.gz",))
    (bad / "case.json").write_text('{"dose": 0.25, "field_strength": 3,}')
    with pytest.raises(ValueError, match=r"bad/case\.json is not readable JSON.*fix it"):
        read_case_metadata(bad)
    (bad / "case.json").write_text(json.dumps({"dose": 0.25}))
    with pytest.raises(ValueError, match=r"case\.json lacks field_strength; write e\.g\."):
        read_case_metadata(bad)
    (bad / "case.json").write_text(json.dumps({"dose": 0.25, "field_strength": 3, "agent": "nope"}))
    with pytest.raises(ValueError, match=r"case\.json: unknown contrast agent 'nope'"):
        read_case_metadata(bad)
    (bad / "case.json").unlink()
    with pytest.raises(ValueError, match="no metadata sidecar: add case.json"):
        read_case_metadata(bad)
    grid = tmp_path / "grid"
    _scans(grid, lows=())
    _write(grid, "brain_mask.nii.gz", np.ones(SHAPE, np.uint8), spacing=(2.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="brain_mask of .*grid is not on the pre-contrast grid"):
        read_case_folder(grid)


class _Box:
    def __init__(self, value):
        self.value = value

    def save(self, path):
        save_npz(path, value=np.asarray(self.value))

    @classmethod
    def load(cls, path):
        with np.load(path) as data:
            return cls(float(data["value"]))


def test_one_cache_helper(tmp_path):
    path = cache_file(tmp_path, "case a/b", "kind", {"x": 1})
    assert path.parent == tmp_path and path.name.startswith("case_a_b_") and path.suffix == ".npz"
    assert path != cache_file(tmp_path, "case a/b", "kind", {"x": 2})
    assert cache_file(None, "a", "kind", {}) is None
    built = []
    build = lambda: built.append(1) or _Box(2.5)  # noqa: E731
    first, hit = cached(path, build, _Box.load)
    again, hit_again = cached(path, build, _Box.load)
    assert (first.value, hit, again.value, hit_again, len(built)) == (2.5, False, 2.5, True, 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no partial file left
