"""Reading and writing images with their geometry; image headers for ``gadoreduce info``.

Conventions (as in ITK, SimpleITK and DICOM):
- physical coordinates are LPS millimetres; 3D Slicer's RAS differs by the sign of x and y;
- numpy arrays are indexed ``[k, j, i]`` (slice, row, column), as ``sitk.GetArrayFromImage``
  returns them, so ``array.shape == size[::-1]``;
- ``direction`` is the 3x3 matrix whose columns are the i, j, k axes in LPS.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])
"""Flips x and y: LPS <-> RAS (the matrix is its own inverse)."""

GRID_TOLERANCE_MM = 1e-4
"""Two grids are the same when spacing and origin agree within this (mm) and the directions within it (unitless)."""
IMAGE_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")

# DICOM attributes that matter for contrast-enhanced T1w and for GadoReduce's conditions.
# Patient name, ID and birth date are deliberately absent: `info` never prints them.
DICOM_FIELDS = {
    "0008|0060": "Modality",
    "0008|0070": "Manufacturer",
    "0008|1090": "ManufacturerModelName",
    "0008|103e": "SeriesDescription",
    "0008|0021": "SeriesDate",
    "0018|0087": "MagneticFieldStrength",
    "0018|0023": "MRAcquisitionType",
    "0018|0020": "ScanningSequence",
    "0018|0080": "RepetitionTime",
    "0018|0081": "EchoTime",
    "0018|0082": "InversionTime",
    "0018|1314": "FlipAngle",
    "0018|0050": "SliceThickness",
    "0018|0010": "ContrastBolusAgent",
    "0018|1041": "ContrastBolusVolume",
    "0018|1044": "ContrastBolusTotalDose",
    "0010|1030": "PatientWeight",
    "0020|000e": "SeriesInstanceUID",
}

NIFTI_FIELDS = ("descrip", "datatype", "bitpix", "qform_code_name", "sform_code_name",
                "scl_slope", "scl_inter", "xyzt_units", "intent_name", "cal_min", "cal_max")


def dose_name(dose: float) -> str:
    """File stem of a low-dose scan in a case folder: ``low_dose_010`` for 0.1 (dose in percent, 3 digits).

    Phantom cases, ``gadoreduce synth lowdose`` and training case folders all use this name."""
    return f"low_dose_{int(round(dose * 100)):03d}"


class ImageReadError(ValueError):
    """An input image could not be read; the message names the file and the fix."""


@dataclass(frozen=True)
class Geometry:
    """Voxel grid of a 3D image: size (i, j, k), spacing (mm), origin (LPS mm), direction (3x3, LPS)."""

    size: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[float, ...]  # 9 values, row-major, as SimpleITK stores them

    @classmethod
    def from_image(cls, image: sitk.Image) -> "Geometry":
        check_3d(image)
        return cls(tuple(int(s) for s in image.GetSize()), tuple(image.GetSpacing()),
                   tuple(image.GetOrigin()), tuple(image.GetDirection()))

    @classmethod
    def from_ijk_to_ras(cls, ijk_to_ras: np.ndarray, size) -> "Geometry":
        """From a 4x4 IJK-to-RAS matrix (3D Slicer's convention) and the grid size (i, j, k)."""
        m = np.asarray(ijk_to_ras, dtype=float)
        lps = LPS_TO_RAS @ m[:3, :3]
        spacing = np.linalg.norm(lps, axis=0)
        if np.any(spacing <= 0):
            raise ValueError("IJK-to-RAS matrix has a zero-length axis; the volume geometry is invalid.")
        direction = lps / spacing
        origin = LPS_TO_RAS @ m[:3, 3]
        return cls(tuple(int(s) for s in size), tuple(float(s) for s in spacing),
                   tuple(float(o) for o in origin), tuple(float(d) for d in direction.ravel()))

    @property
    def direction_matrix(self) -> np.ndarray:
        return np.asarray(self.direction, dtype=float).reshape(3, 3)

    def ijk_to_lps(self) -> np.ndarray:
        """4x4 matrix mapping voxel indices (i, j, k, 1) to LPS millimetres."""
        m = np.eye(4)
        m[:3, :3] = self.direction_matrix @ np.diag(self.spacing)
        m[:3, 3] = self.origin
        return m

    def ijk_to_ras(self) -> np.ndarray:
        """4x4 matrix mapping voxel indices (i, j, k, 1) to RAS millimetres (3D Slicer)."""
        m = self.ijk_to_lps()
        m[:3, :] = LPS_TO_RAS @ m[:3, :]
        return m

    def apply_to(self, image: sitk.Image) -> sitk.Image:
        if tuple(image.GetSize()) != self.size:
            raise ValueError(f"Image size {image.GetSize()} does not match geometry size {self.size}.")
        image.SetSpacing(self.spacing)
        image.SetOrigin(self.origin)
        image.SetDirection(self.direction)
        return image

    def is_close(self, other: "Geometry", atol: float = GRID_TOLERANCE_MM) -> bool:
        """Same grid within ``atol`` (mm for origin and spacing, unitless for directions)."""
        return (self.size == other.size
                and np.allclose(self.spacing, other.spacing, atol=atol)
                and np.allclose(self.origin, other.origin, atol=atol)
                and np.allclose(self.direction, other.direction, atol=atol))

    def orientation(self) -> str:
        """Nearest anatomical directions the i, j, k axes point to, e.g. ``"LPS"`` or ``"RAS"``."""
        return sitk.DICOMOrientImageFilter_GetOrientationFromDirectionCosines(self.direction)

    def is_oblique(self, tol: float = 1e-4) -> bool:
        d = np.abs(self.direction_matrix)
        return bool(np.any((d > tol) & (d < 1 - tol)))


def same_grid(a: sitk.Image, b: sitk.Image, atol: float = GRID_TOLERANCE_MM) -> bool:
    """True when two 3D images share one voxel grid (size, and spacing, origin, direction within ``atol``)."""
    return Geometry.from_image(a).is_close(Geometry.from_image(b), atol=atol)


def check_3d(image: sitk.Image, name: str = "image") -> None:
    """Raise ValueError unless ``image`` is a 3D scalar image."""
    if image.GetDimension() != 3:
        raise ValueError(f"The {name} has {image.GetDimension()} dimensions; GadoReduce needs a 3D volume. "
                         "Select or export a single 3D series (for 4D data, extract one time point).")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError(f"The {name} has {image.GetNumberOfComponentsPerPixel()} components per voxel; "
                         "GadoReduce needs a scalar (grey-value) volume, not a color or vector image.")


def image_to_array(image: sitk.Image) -> tuple[np.ndarray, Geometry]:
    """Copy of the voxels as an array ``[k, j, i]`` and the image's geometry."""
    check_3d(image)
    return sitk.GetArrayFromImage(image), Geometry.from_image(image)


def array_to_image(array: np.ndarray, geometry: Geometry) -> sitk.Image:
    """A SimpleITK image of ``array`` (indexed ``[k, j, i]``) on ``geometry``; voxels are copied."""
    array = np.asarray(array)
    if array.ndim != 3 or array.shape != tuple(reversed(geometry.size)):
        raise ValueError(f"Array of shape {array.shape} does not fit a grid of size (i, j, k) = "
                         f"{geometry.size}; expected shape {tuple(reversed(geometry.size))}.")
    return geometry.apply_to(sitk.GetImageFromArray(array, isVector=False))


def _is_dicom_folder(path: Path) -> bool:
    return path.is_dir() and bool(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(path)))


def read_image(path: str | os.PathLike, series_uid: str | None = None) -> sitk.Image:
    """Read a NIfTI, NRRD or MetaImage file, or a folder with one DICOM series, as a 3D image."""
    return read_image_with_header(path, series_uid)[0]


def read_image_with_header(path: str | os.PathLike, series_uid: str | None = None) -> tuple[sitk.Image, dict]:
    """The image and a dict of its header fields (DICOM attributes by name, or NIfTI/NRRD keys)."""
    path = Path(path)
    if not path.exists():
        raise ImageReadError(f"{path} does not exist. Check the path (relative paths start at {Path.cwd()}).")
    if path.is_dir():
        return _read_dicom_series(path, series_uid)
    from .integrity import scan_nifti
    scan = scan_nifti(path)  # damaged files are refused here; stored NaN/inf voxels are found
    try:
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        image = reader.Execute()
    except RuntimeError as error:
        raise ImageReadError(
            f"{path} could not be read as an image ({_first_line(error)}). GadoReduce reads NIfTI "
            "(.nii, .nii.gz), NRRD (.nrrd, .nhdr), MetaImage (.mha, .mhd) and folders of DICOM files.") from None
    if scan is not None and scan.nonfinite_index.size:
        image = _with_stored_nonfinite(image, scan)
    header = {"format": _format_name(path)}
    nifti = header["format"] == "NIfTI"
    for key in reader.GetMetaDataKeys():
        if (key in NIFTI_FIELDS) if nifti else not key.startswith("ITK_"):
            value = reader.GetMetaData(key)
            if "UNKNOWN_PRINT" not in value:
                header[key] = value.strip()
    return image, header


def _with_stored_nonfinite(image: sitk.Image, scan) -> sitk.Image:
    """``image`` with the NaN/inf voxels its NIfTI file stores (ITK's reader returns them as 0), so that the
    checks of every stage see what the file holds."""
    array = sitk.GetArrayFromImage(image)
    if not np.issubdtype(array.dtype, np.floating) or array.size != scan.voxels:
        return image
    array.reshape(-1)[scan.nonfinite_index] = scan.nonfinite_value
    out = sitk.GetImageFromArray(array, isVector=image.GetNumberOfComponentsPerPixel() > 1)
    out.CopyInformation(image)
    return out


def _read_dicom_series(folder: Path, series_uid: str | None) -> tuple[sitk.Image, dict]:
    series = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    if not series:
        raise ImageReadError(f"{folder} is a folder without DICOM images. Point to a folder that holds one "
                             "DICOM series, or to a NIfTI/NRRD file.")
    if series_uid is None:
        if len(series) > 1:
            raise ImageReadError(f"{folder} holds {len(series)} DICOM series ({', '.join(series)}). "
                                 "Choose one with series_uid (CLI: --series UID) or put each series in its own folder.")
        series_uid = series[0]
    elif series_uid not in series:
        raise ImageReadError(f"DICOM series {series_uid} is not in {folder}; it holds {', '.join(series)}.")
    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series_uid)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    reader.MetaDataDictionaryArrayUpdateOn()
    reader.LoadPrivateTagsOff()
    try:
        image = reader.Execute()
    except RuntimeError as error:
        raise ImageReadError(f"DICOM series {series_uid} in {folder} could not be read ({_first_line(error)}).") from None
    header = {"format": "DICOM", "NumberOfFiles": str(len(files))}
    for tag, name in DICOM_FIELDS.items():
        if reader.HasMetaDataKey(0, tag):
            header[name] = reader.GetMetaData(0, tag).strip()
    return image, header


def write_image(image: sitk.Image, path: str | os.PathLike, compress: bool = True) -> Path:
    """Write ``image`` to ``path`` (format from the suffix); atomic and verified (OSError when the file is not
    complete, e.g. on a full disk), so no half-written file is left."""
    from .atomic import atomic_path
    path = Path(path)
    if not str(path).endswith(IMAGE_SUFFIXES):
        raise ValueError(f"Cannot write {path}: use one of {', '.join(IMAGE_SUFFIXES)}.")
    from .integrity import verify_written_image
    with atomic_path(path) as tmp:
        try:
            sitk.WriteImage(image, str(tmp), useCompression=compress)
        except RuntimeError as error:
            raise OSError(f"{path.name} could not be written ({_first_line(error)}): the disk may be full or "
                          "not writable; free some space or choose another output folder, then run again") from None
        verify_written_image(tmp, image, path.name)  # a full disk is not always raised by ITK's writers
    return path


def image_info(path: str | os.PathLike, series_uid: str | None = None) -> dict:
    """Geometry, intensity statistics and header fields of an image file or DICOM folder."""
    image, header = read_image_with_header(path, series_uid)
    geometry = Geometry.from_image(image) if image.GetDimension() == 3 else None
    array = sitk.GetArrayViewFromImage(image)
    finite = np.isfinite(array)
    values = array[finite] if not finite.all() else array
    info = {
        "path": str(path),
        "dimension": image.GetDimension(),
        "size": list(image.GetSize()),
        "spacing_mm": list(image.GetSpacing()),
        "origin_lps_mm": list(image.GetOrigin()),
        "direction_lps": list(image.GetDirection()),
        "pixel_type": image.GetPixelIDTypeAsString(),
        "components": image.GetNumberOfComponentsPerPixel(),
        "non_finite_voxels": int((~finite).sum()),
        "header": header,
    }
    if geometry is not None:
        info["origin_ras_mm"] = list(LPS_TO_RAS @ np.asarray(geometry.origin))
        info["orientation"] = geometry.orientation()
        info["oblique"] = geometry.is_oblique()
        info["field_of_view_mm"] = [float(n * s) for n, s in zip(geometry.size, geometry.spacing)]
    if values.size:
        p1, p50, p99 = np.percentile(values, [1, 50, 99])
        info["intensity"] = {"min": float(values.min()), "max": float(values.max()), "mean": float(values.mean()),
                             "p1": float(p1), "median": float(p50), "p99": float(p99)}
    return info


def format_info(info: dict) -> str:
    """Human-readable text of :func:`image_info`'s dict."""
    fmt = lambda seq: " x ".join(f"{v:g}" for v in seq)  # noqa: E731
    vec = lambda seq: "(" + ", ".join(f"{v:.3f}" for v in seq) + ")"  # noqa: E731
    lines = [f"{info['path']}",
             f"  format:        {info['header'].get('format', '?')}",
             f"  size (i,j,k):  {fmt(info['size'])} voxels, {info['pixel_type']}"]
    lines.append(f"  spacing:       {fmt(info['spacing_mm'])} mm")
    if "orientation" in info:
        lines.append(f"  field of view: {fmt(round(f, 1) for f in info['field_of_view_mm'])} mm")
        lines.append(f"  origin:        LPS {vec(info['origin_lps_mm'])} mm = RAS {vec(info['origin_ras_mm'])} mm")
        d = np.asarray(info["direction_lps"]).reshape(3, 3)
        axes = ", ".join(f"{name} {vec(d[:, n])}" for n, name in enumerate("ijk"))
        lines.append(f"  orientation:   {info['orientation']}{' (oblique)' if info['oblique'] else ''}; "
                     f"axes in LPS: {axes}")
    if "intensity" in info:
        s = info["intensity"]
        lines.append(f"  intensity:     min {s['min']:.4g}, 1% {s['p1']:.4g}, median {s['median']:.4g}, "
                     f"99% {s['p99']:.4g}, max {s['max']:.4g}, mean {s['mean']:.4g}")
    if info["non_finite_voxels"]:
        lines.append(f"  WARNING:       {info['non_finite_voxels']} voxels are NaN or infinite")
    extra = {k: v for k, v in info["header"].items() if k != "format" and v != ""}
    if extra:
        lines.append("  header:")
        lines.extend(f"    {k}: {v}" for k, v in extra.items())
    return "\n".join(lines)


def _format_name(path: Path) -> str:
    name = path.name.lower()
    for suffixes, label in (((".nii", ".nii.gz"), "NIfTI"), ((".nrrd", ".nhdr"), "NRRD"), ((".mha", ".mhd"), "MetaImage")):
        if name.endswith(suffixes):
            return label
    return path.suffix.lstrip(".") or "unknown"


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[-1].strip() if text else type(error).__name__


ZERO_BACKGROUND_FRACTION = 0.05
"""An image with more than this fraction of voxels exactly 0 has a zeroed (e.g. skull-stripped) background."""


def zero_background(array) -> bool:
    """True when more than ``ZERO_BACKGROUND_FRACTION`` of ``array`` is exactly 0 (skull-stripped data)."""
    return float(np.mean(np.asarray(array) == 0)) > ZERO_BACKGROUND_FRACTION
