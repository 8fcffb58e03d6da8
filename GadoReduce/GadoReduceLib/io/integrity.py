"""Integrity of NIfTI files, checked on the stored bytes before an image is used (issue 15).

ITK's NIfTI reader accepts damaged files: a truncated ``.nii.gz`` is read with the missing voxels filled in, and a
stream with flipped bytes is read without a word. It also returns stored NaN and infinite voxels as 0. So
:func:`scan_nifti` reads the file itself, in chunks and without keeping it in memory:

- gzip: the whole stream is decompressed, which checks the CRC-32 and length that gzip stores at the end;
- header: ``sizeof_hdr`` 348 (NIfTI-1, either byte order), the dimensions, the data type and ``vox_offset``;
- size: the file must hold ``vox_offset + voxels x bytes per voxel`` bytes;
- voxels: for floating-point data, the flat indices (the storage order, as numpy's [k, j, i] C order) and
  values of every NaN and infinite voxel.

NIfTI-2 files and other formats are left to ITK. Damage gives :class:`DamagedFileError` (a ValueError) naming
the file and the fix.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

CHUNK_BYTES = 1 << 22
NIFTI1_HEADER_BYTES = 348
FLOAT_TYPES = {16: "f4", 64: "f8"}
"""NIfTI-1 datatype codes of float32 and float64 voxels (complex and float128 are refused elsewhere)."""


class DamagedFileError(ValueError):
    """An image file is damaged (truncated, corrupt gzip stream, header that does not match the data)."""


@dataclass
class NiftiScan:
    """What the stored bytes of a NIfTI-1 file hold: ``nonfinite_index`` (flat voxel indices) and
    ``nonfinite_value`` (their NaN or +-inf values, float64), both empty for finite or integer data."""

    voxels: int
    nonfinite_index: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    nonfinite_value: np.ndarray = field(default_factory=lambda: np.zeros(0))


def _damaged(path: Path, problem: str) -> DamagedFileError:
    return DamagedFileError(f"{path} is damaged: {problem}. Copy or export the file again from its source "
                            "(the scanner, PACS or the program that wrote it); GadoReduce does not use damaged files.")


def _chunks(path: Path):
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            while chunk := f.read(CHUNK_BYTES):
                yield chunk
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:  # truncated stream, CRC or length mismatch
        raise _damaged(path, f"its gzip stream is broken ({error})") from None


def _header(path: Path, head: bytes) -> tuple[str, list[int], int, int, float]:
    """(byte order, dims, datatype, bitpix, vox_offset) of a NIfTI-1 header."""
    for order in "<>":
        if struct.unpack(order + "i", head[:4])[0] == NIFTI1_HEADER_BYTES:
            break
    else:
        raise _damaged(path, "it has no valid NIfTI-1 header (sizeof_hdr is not 348)")
    dim = struct.unpack(order + "8h", head[40:56])
    datatype, bitpix = struct.unpack(order + "2h", head[70:74])
    vox_offset = struct.unpack(order + "f", head[108:112])[0]
    if not 1 <= dim[0] <= 7 or any(d < 1 for d in dim[1:dim[0] + 1]) or bitpix <= 0 or bitpix % 8:
        raise _damaged(path, f"its NIfTI header is invalid (dim {list(dim)}, bitpix {bitpix})")
    return order, list(dim[1:dim[0] + 1]), int(datatype), int(bitpix), float(vox_offset)


def scan_nifti(path: str | os.PathLike) -> NiftiScan | None:
    """Check a ``.nii`` / ``.nii.gz`` file's stored bytes (see the module docstring); None for other files and
    NIfTI-2. DamagedFileError when the file is truncated or corrupt."""
    path = Path(path)
    if not (path.name.endswith(".nii") or path.name.endswith(".nii.gz")):
        return None
    stream = _chunks(path)
    head = b""
    for chunk in stream:
        head += chunk
        if len(head) >= NIFTI1_HEADER_BYTES:
            break
    if len(head) < NIFTI1_HEADER_BYTES:
        raise _damaged(path, f"it holds {len(head)} bytes, less than a NIfTI header")
    if struct.unpack("<i", head[:4])[0] == 540 or struct.unpack(">i", head[:4])[0] == 540:
        for _ in stream:  # NIfTI-2: only the gzip stream is checked here
            pass
        return None
    order, dims, datatype, bitpix, vox_offset = _header(path, head)
    voxels = int(np.prod(dims, dtype=np.int64))
    itemsize = bitpix // 8
    start = max(int(vox_offset), NIFTI1_HEADER_BYTES)
    expected = start + voxels * itemsize
    dtype = np.dtype(order + FLOAT_TYPES[datatype]) if datatype in FLOAT_TYPES else None
    indices, values = [], []
    total, carry, position = len(head), head[start:] if len(head) > start else b"", 0
    skip = max(0, start - len(head))

    def take(data: bytes) -> bytes:
        nonlocal position
        usable = len(data) - len(data) % itemsize
        if dtype is not None and usable:
            array = np.frombuffer(data[:usable], dtype=dtype)
            bad = np.flatnonzero(~np.isfinite(array))
            bad = bad[position + bad < voxels]
            if bad.size:
                indices.append(bad + position)
                values.append(array[bad].astype(np.float64))
        position += usable // itemsize
        return data[usable:]

    carry = take(carry)
    for chunk in stream:
        total += len(chunk)
        if skip:
            dropped = min(skip, len(chunk))
            chunk, skip = chunk[dropped:], skip - dropped
        carry = take(carry + chunk)
    if total < expected:
        raise _damaged(path, f"it is truncated: its header promises {expected} bytes ({'x'.join(map(str, dims))} "
                             f"voxels of {itemsize} bytes after {start} header bytes), the file holds {total}")
    if indices:
        return NiftiScan(voxels, np.concatenate(indices), np.concatenate(values))
    return NiftiScan(voxels)


# ----------------------------------------------------------------------------- written files

def _gzip_length(path: Path, start: int = 0) -> int:
    """The uncompressed length modulo 2^32 that a complete gzip stream (from byte ``start`` to the end of the
    file) stores in its last 4 bytes."""
    with open(path, "rb") as f:
        f.seek(start)
        if f.read(2) != b"\x1f\x8b":
            raise _incomplete(path, "it does not start as a gzip stream")
        f.seek(-4, os.SEEK_END)
        return struct.unpack("<I", f.read(4))[0]


def _incomplete(path: Path, problem: str) -> OSError:
    """The error of a file that was not written completely (``path``: the file's final name)."""
    return OSError(f"{path.name} was not written completely ({problem}): the disk may be full or the file too "
                   "large for it; free some space or choose another output folder, then run again")


def verify_written_image(path: str | os.PathLike, image, name: str | None = None) -> None:
    """Check that a file just written from ``image`` (SimpleITK, or a numpy array [k, j, i]) is complete, before it is moved into place:
    NIfTI header dimensions and the data length (the gzip trailer's for ``.gz``), NRRD and MetaImage (``.mha``)
    data lengths from their headers (no image is read back), other formats read back. ITK's NIfTI writer reports a full disk only on stderr, so this is the check that finds it.
    ``name``: the final file name (the suffix decides the format). OSError naming the file and the fix."""
    import SimpleITK as sitk
    path = Path(path)
    name = name or path.name
    if not path.is_file() or path.stat().st_size == 0:
        raise _incomplete(Path(name), "nothing was written")
    if isinstance(image, np.ndarray):  # voxels [k, j, i] (written by MRML, io.mrml.write_volume_node)
        image_size, data_bytes = tuple(reversed(image.shape)), int(image.nbytes)
    else:
        view = sitk.GetArrayViewFromImage(image)
        image_size, data_bytes = tuple(image.GetSize()), int(view.size) * view.dtype.itemsize
    size = path.stat().st_size
    if name.endswith((".nii", ".nii.gz")):
        opener = gzip.open if name.endswith(".gz") else open
        try:
            with opener(path, "rb") as f:
                head = f.read(NIFTI1_HEADER_BYTES)
            _, dims, _, _, vox_offset = _header(path, head)
        except (OSError, EOFError, zlib.error, struct.error, DamagedFileError):
            raise _incomplete(Path(name), "its header cannot be read back") from None
        if tuple(dims[:3]) != image_size[:3]:
            raise _incomplete(Path(name), f"its header holds dimensions {dims}, not {list(image_size)}")
        expected = max(int(vox_offset), NIFTI1_HEADER_BYTES) + data_bytes
        if name.endswith(".gz") and _gzip_length(path) != expected % 2 ** 32:
            raise _incomplete(Path(name), f"its gzip stream does not end with the length of {expected} bytes")
        if not name.endswith(".gz") and size != expected:
            raise _incomplete(Path(name), f"{size} of {expected} bytes")
    elif name.endswith(".nrrd"):
        with open(path, "rb") as f:
            head = f.read(1 << 16)
        end = head.find(b"\n\n")
        if not head.startswith(b"NRRD") or end < 0:
            raise _incomplete(Path(name), "its NRRD header cannot be read back")
        fields = dict(line.split(":", 1) for line in head[:end].decode("latin-1").splitlines()[1:]
                      if ":" in line and not line.startswith("#"))
        encoding = fields.get("encoding", "raw").strip()
        if encoding in ("gzip", "gz") and _gzip_length(path, end + 2) != data_bytes % 2 ** 32:
            raise _incomplete(Path(name), f"its gzip stream does not end with the length of {data_bytes} bytes")
        if encoding not in ("gzip", "gz") and size - (end + 2) != data_bytes:
            raise _incomplete(Path(name), f"{size - (end + 2)} of {data_bytes} data bytes")
    elif name.endswith(".mha"):  # MetaImage with its data in the file (the elastix executable's inputs)
        with open(path, "rb") as f:
            head = f.read(1 << 16)
        marker = head.find(b"ElementDataFile = LOCAL")
        end = head.find(b"\n", marker) + 1 if marker >= 0 else 0
        fields = dict(line.split(" = ", 1) for line in head[:end].decode("latin-1").splitlines() if " = " in line)
        if not end:
            raise _incomplete(Path(name), "its MetaImage header cannot be read back")
        compressed = fields.get("CompressedData", "False").strip() == "True"
        expected = int(fields.get("CompressedDataSize", -1)) if compressed else data_bytes
        if size - end != expected:
            raise _incomplete(Path(name), f"{size - end} of {expected} data bytes")
    else:
        try:
            back = sitk.ReadImage(str(path))
        except RuntimeError:
            raise _incomplete(Path(name), "it cannot be read back") from None
        if tuple(back.GetSize()) != image_size:
            raise _incomplete(Path(name), f"it reads back with size {back.GetSize()}, not {image_size}")
