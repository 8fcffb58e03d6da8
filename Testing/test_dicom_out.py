"""``gadoreduce predict --dicom-out`` (issue 17, part 5): the synthetic series derived from a low-dose DICOM series
written by GDCM (SimpleITK), read back by pydicom and SimpleITK: geometry, voxels within the rescale's
quantization, new valid UIDs, the patient and study attributes of the input, the research-only text.

Synthetic phantom data: software checks, not clinical evidence."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from GadoReduceLib import cli
from GadoReduceLib.io.imageio import read_image, write_image

pydicom = pytest.importorskip("pydicom")

PATIENT = {"0010|0010": "Phantom^Test", "0010|0020": "GR-0001", "0010|0030": "19700101", "0010|0040": "O",
           "0010|1030": "70"}
STUDY_UID, FRAME_UID = "1.2.826.0.1.3680043.8.498.1", "1.2.826.0.1.3680043.8.498.2"
CONTRAST = {"0018|0010": "Gadovist", "0018|1041": "1.75"}  # agent, contrast volume (mL); weight in PATIENT


def _write_dicom_series(image: sitk.Image, folder, description="T1 low dose 25 %", number=7, extra=None):
    """The image as a classic MR series (int16), one file per slice, written by GDCM through SimpleITK; the
    low dose's header says 3 T, Gadovist, 1.75 mL for 70 kg (a quarter of gadobutrol's 0.1 mL/kg)."""
    import locale
    saved = locale.setlocale(locale.LC_ALL)  # GDCM's writer leaves the process in the "C" locale: restored below
    try:
        return _write_slices(image, folder, description, number, extra)
    finally:
        locale.setlocale(locale.LC_ALL, saved)


def _write_slices(image, folder, description, number, extra):
    folder.mkdir(exist_ok=True)
    image = sitk.Cast(sitk.RescaleIntensity(image, 0, 3000), sitk.sitkInt16)
    direction = image.GetDirection()
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    series_uid = f"1.2.826.0.1.3680043.8.498.3.{number}"
    for k in range(image.GetDepth()):
        slice_ = image[:, :, k]
        tags = {**PATIENT, "0020|000d": STUDY_UID, "0020|0052": FRAME_UID, "0020|000e": series_uid,
                "0008|0060": "MR", "0008|0016": "1.2.840.10008.5.1.4.1.1.4", "0008|103e": description,
                "0018|0087": "3", "0020|0011": str(number), "0020|0013": str(k + 1),
                "0008|0018": f"1.2.826.0.1.3680043.8.498.4.{number}.{k + 1}", **(extra or {}),
                "0020|0037": "\\".join(f"{v:.6f}" for v in (direction[0], direction[3], direction[6], direction[1],
                                                             direction[4], direction[7])),
                "0020|0032": "\\".join(f"{v:.6f}" for v in image.TransformIndexToPhysicalPoint((0, 0, k))),
                "0018|0050": f"{image.GetSpacing()[2]:.6f}"}
        for tag, value in tags.items():
            slice_.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"series{number}_slice_{k:03d}.dcm"))
        writer.Execute(slice_)
    return folder


def test_dicom_out_series_read_back_with_geometry_voxels_uids_and_patient(tmp_path):
    from GadoReduceLib.phantom.generate import PhantomConfig, generate_phantom
    case = generate_phantom(PhantomConfig(seed=5, doses=(0.25,), size="small", max_motion_deg=2.0, max_motion_mm=2.0))
    pre = write_image(case.pre_contrast, tmp_path / "pre.nii.gz")
    low = _write_dicom_series(case.low_dose[0.25], tmp_path / "study", extra=CONTRAST)
    _write_dicom_series(case.pre_contrast, low, "T1 pre-contrast", number=5)  # a second series in the folder
    inputs = sorted(p.name for p in low.iterdir())
    out, dicom = tmp_path / "out", tmp_path / "dicom"
    # no --dose, --field-strength or --agent: the low dose's header gives them
    assert cli.main(["predict", "--pre", str(pre), "--low", str(low), "--low-series", "low dose", "--device", "cpu",
                     "--output", str(out), "--dicom-out", str(dicom)]) == 0
    record = json.loads((out / "record.json").read_text())
    assert record["acquisition"]["dose"]["source"] == "dicom"
    assert record["acquisition"]["dose"]["value"] == pytest.approx(0.25)
    assert record["acquisition"]["field_strength"] == {"value": 3.0, "source": "dicom"}
    assert record["acquisition"]["agent"] == {"value": "gadobutrol", "source": "dicom"}
    source = pydicom.dcmread(next(low.glob("series7_*")), stop_before_pixels=True)
    for name in ("synthetic_standard_dose", "beyond_standard_dose"):
        files = sorted(dicom.glob(f"{name}_*.dcm"))
        expected = read_image(out / f"{name}.nii.gz")
        assert len(files) == expected.GetDepth()
        headers = [pydicom.dcmread(f) for f in files]
        first = headers[0]
        assert list(first.ImageType[:2]) == ["DERIVED", "SECONDARY"]
        assert "research" in first.SeriesDescription.lower() and "not for diagnosis" in first.ImageComments
        assert first.StudyInstanceUID == STUDY_UID and first.FrameOfReferenceUID == FRAME_UID
        for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "PatientWeight"):
            assert getattr(first, keyword) == getattr(source, keyword), keyword
        uids = {h.SOPInstanceUID for h in headers}
        assert len(uids) == len(headers) and source.SOPInstanceUID not in uids
        assert first.SeriesInstanceUID != source.SeriesInstanceUID
        assert all(pydicom.uid.UID(u).is_valid for u in uids | {first.SeriesInstanceUID})
        assert len({h.SeriesInstanceUID for h in headers}) == 1
        # SimpleITK (GDCM) reads the series back on the output grid with the intensities
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames([str(f) for f in files])
        back = reader.Execute()
        assert np.allclose(back.GetOrigin(), expected.GetOrigin(), atol=1e-4)
        assert np.allclose(back.GetSpacing(), expected.GetSpacing(), atol=1e-4)
        assert np.allclose(back.GetDirection(), expected.GetDirection(), atol=1e-5)
        slope = float(first.RescaleSlope)
        difference = np.abs(sitk.GetArrayFromImage(back).astype(np.float64)
                            - sitk.GetArrayFromImage(expected).astype(np.float64))
        assert difference.max() <= 0.5 * slope * 1.001 + 1e-6, (difference.max(), slope)
    # the series of both images differ, and the input folder holds only what it held
    assert len({pydicom.dcmread(next(dicom.glob(f"{n}_*.dcm"))).SeriesInstanceUID
                for n in ("synthetic_standard_dose", "beyond_standard_dose")}) == 2
    assert sorted(p.name for p in low.iterdir()) == inputs


def test_dicom_out_needs_a_dicom_low_dose_and_a_folder_of_its_own(tmp_path, capsys):
    from GadoReduceLib.phantom.generate import PhantomConfig, generate_phantom
    case = generate_phantom(PhantomConfig(seed=5, doses=(0.25,), size="small"))
    pre = write_image(case.pre_contrast, tmp_path / "pre.nii.gz")
    low = write_image(case.low_dose[0.25], tmp_path / "low.nii.gz")
    base = ["predict", "--pre", str(pre), "--dose", "0.25", "--field-strength", "3", "--output", str(tmp_path / "o")]
    assert cli.main(base + ["--low", str(low), "--dicom-out", str(tmp_path / "d")]) == 2
    assert "is not a DICOM folder" in capsys.readouterr().err
    folder = _write_dicom_series(case.low_dose[0.25], tmp_path / "low_dicom")
    assert cli.main(base + ["--low", str(folder), "--dicom-out", str(folder)]) == 2
    assert "is an input folder" in capsys.readouterr().err
    _write_dicom_series(case.pre_contrast, folder, "T1 pre-contrast", number=5)
    assert cli.main(base + ["--low", str(folder)]) == 2  # two series, none chosen: both listed
    err = capsys.readouterr().err
    assert "holds 2 DICOM series" in err and "T1 low dose 25 %" in err and "T1 pre-contrast" in err
    assert "--low-series" in err
    assert cli.main(base + ["--low", str(folder), "--low-series", "T1"]) == 2
    assert "matches 2 series" in capsys.readouterr().err
    assert cli.main(base + ["--low", str(folder), "--low-series", "flair"]) == 2
    assert "matches no series" in capsys.readouterr().err
    assert not (tmp_path / "o").exists() and not (tmp_path / "d").exists()
