"""DICOM output: the synthetic standard dose and the image beyond the standard dose as new MR series derived from
the low-dose DICOM series (pydicom).

Each new series copies every attribute of the low-dose series' first instance (patient, study, frame of
reference, equipment, acquisition: nothing is invented or dropped) and then replaces what makes it a new, derived
series: new Series and SOP Instance UIDs, ImageType DERIVED\\SECONDARY, a Series Description and Image Comments
that say it is synthetic and for research only, the geometry of each slice of the output image (the pre-contrast
grid), and 16-bit pixels with RescaleSlope/RescaleIntercept, so that the intensities survive to within half a
slope."""

from __future__ import annotations

import copy
import datetime
from pathlib import Path

import numpy as np
import SimpleITK as sitk

MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
RESEARCH_TEXT = ("SYNTHETIC image computed by GadoReduce (research software) from a low-dose contrast-enhanced "
                 "scan. Research only, not for diagnosis or treatment decisions.")
DICOM_SERIES = {  # output image -> (file prefix, Series Description (at most 64 characters), series number offset)
    "synthetic_standard_dose": ("synthetic_standard_dose", "GadoReduce SYNTHETIC standard dose - research only", 1),
    "beyond_standard_dose": ("beyond_standard_dose", "GadoReduce SYNTHETIC beyond standard dose - research only", 2),
}
_PER_INSTANCE = ("PixelData", "SliceLocation", "WindowCenter", "WindowWidth", "WindowCenterWidthExplanation",
                 "LargestImagePixelValue", "SmallestImagePixelValue", "SOPInstanceUID", "InstanceNumber",
                 "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "SliceThickness",
                 "SpacingBetweenSlices", "RescaleSlope", "RescaleIntercept", "RescaleType", "NumberOfFrames",
                 "PixelPaddingValue", "SourceImageSequence", "ReferencedImageSequence")


def source_headers(folder, series_uid: str | None = None) -> list:
    """The pydicom headers (no pixels) of the DICOM series in ``folder`` that ``imageio.read_image`` reads, in
    its slice order. ValueError when the folder holds no single classic MR series."""
    import pydicom
    series = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    if not series or (series_uid is None and len(series) > 1) or (series_uid and series_uid not in series):
        raise ValueError(f"--dicom-out derives its series from the low-dose DICOM series, but {folder} holds "
                         f"{len(series)} series; give --low a folder with that one series")
    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series_uid or series[0])
    headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    if "NumberOfFrames" in headers[0] and int(headers[0].NumberOfFrames) > 1:
        raise ValueError(f"{folder} holds a multi-frame (enhanced) DICOM image; --dicom-out derives classic "
                         "single-frame MR series only: export the low dose as classic MR images")
    return headers


def _ds(value: float) -> str:
    from pydicom.valuerep import format_number_as_ds
    return format_number_as_ds(float(value))


def write_series(image: sitk.Image, template, folder, name: str, series_number: int | None = None) -> list[Path]:
    """Write ``image`` (3D, the output grid) as a new derived MR series of one file per slice
    (``folder/<prefix>_NNNN.dcm``) from the ``template`` header (a low-dose instance); returns the paths."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    from .atomic import atomic_path
    prefix, description, offset = DICOM_SERIES[name]
    array = sitk.GetArrayFromImage(image).astype(np.float64)  # [k, j, i]
    low, high = float(array.min()), float(array.max())
    slope = (high - low) / 65535.0 if high > low else 1.0
    slope = float(_ds(slope))  # the value a reader gets back
    stored = np.clip(np.round((array - low) / slope), 0, 65535).astype(np.uint16)
    direction = np.asarray(image.GetDirection()).reshape(3, 3)  # columns: the i, j, k axes in LPS
    spacing, origin = np.asarray(image.GetSpacing()), np.asarray(image.GetOrigin())
    now = datetime.datetime.now()
    series_uid = generate_uid()
    base = copy.deepcopy(template)
    for keyword in _PER_INSTANCE:
        if keyword in base:
            delattr(base, keyword)
    number = series_number if series_number is not None else int(getattr(template, "SeriesNumber", 0) or 0) * 100
    base.SOPClassUID = MR_IMAGE_STORAGE
    base.SeriesInstanceUID = series_uid
    base.SeriesNumber = number + offset
    base.SeriesDescription = description
    base.ImageType = ["DERIVED", "SECONDARY"]
    base.DerivationDescription = "GadoReduce: pre-contrast or low dose plus the CNN's predicted contrast signal"
    base.ImageComments = RESEARCH_TEXT
    base.BurnedInAnnotation = "NO"
    base.SeriesDate = base.ContentDate = now.strftime("%Y%m%d")
    base.SeriesTime = base.ContentTime = now.strftime("%H%M%S")
    base.ImageOrientationPatient = [_ds(v) for v in (*direction[:, 0], *direction[:, 1])]
    base.PixelSpacing = [_ds(spacing[1]), _ds(spacing[0])]  # between rows (j), between columns (i)
    base.SliceThickness = base.SpacingBetweenSlices = _ds(spacing[2])
    base.Rows, base.Columns = int(array.shape[1]), int(array.shape[2])
    base.SamplesPerPixel, base.PhotometricInterpretation = 1, "MONOCHROME2"
    base.BitsAllocated, base.BitsStored, base.HighBit, base.PixelRepresentation = 16, 16, 15, 0
    base.RescaleIntercept, base.RescaleSlope = _ds(low), _ds(slope)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(array.shape[0]):
        ds = copy.deepcopy(base)
        ds.SOPInstanceUID = generate_uid()
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [_ds(v) for v in origin + direction[:, 2] * spacing[2] * k]
        ds.PixelData = stored[k].tobytes()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = MR_IMAGE_STORAGE
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = folder / f"{prefix}_{k + 1:04d}.dcm"
        with atomic_path(path) as tmp:
            ds.save_as(tmp, enforce_file_format=True)
        paths.append(path)
    return paths


def write_dicom_outputs(images: dict, low_dose_folder, folder, series_uid: str | None = None) -> dict:
    """Every image of :data:`DICOM_SERIES` in ``images`` as a derived series of the low-dose DICOM series in
    ``low_dose_folder`` (``series_uid``: the one chosen there), into ``folder``; returns name -> list of paths."""
    template = source_headers(low_dose_folder, series_uid)[0]
    return {name: write_series(images[name], template, folder, name) for name in DICOM_SERIES if name in images}


def dicom_outputs(folder) -> list[str]:
    """The files of an earlier ``--dicom-out`` run in ``folder`` (:data:`DICOM_SERIES` prefixes)."""
    folder = Path(folder)
    prefixes = tuple(f"{prefix}_" for prefix, _, _ in DICOM_SERIES.values())
    return sorted(p.name for p in folder.glob("*.dcm") if p.name.startswith(prefixes)) if folder.is_dir() else []
