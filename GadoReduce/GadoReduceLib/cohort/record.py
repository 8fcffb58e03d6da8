"""The per-case record's input and acquisition fields (``record.json`` of ``gadoreduce predict``) and its schema.

``RECORD_SCHEMA_VERSION`` counts changes of the record's layout; the JSON schema
(``Resources/Schemas/record.schema.json``) describes the fields every record has. Input checksums let a reader
of a result find out later which files it came from; patient identity is never written."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

RECORD_SCHEMA_VERSION = 1
SCHEMA_FILE = ("Schemas", "record.schema.json")
SOURCES = ("argument", "dicom", "case.json", "phantom.json", "bids", "table", "default")
"""Where an acquisition value came from: a command-line option, the low-dose DICOM header, the case folder's
sidecar, a BIDS JSON sidecar, the cohort table, or GadoReduce's default (the agent only)."""


def sha256_of_input(path: str | os.PathLike) -> str:
    """Hex sha256 of an image file; of a DICOM folder, the sha256 over its files' relative paths and digests
    (sorted), so the same series gives the same value wherever it lies."""
    from ..model.checksums import sha256_of
    path = Path(path)
    if path.is_file():
        return sha256_of(path)
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(f"{file.relative_to(path).as_posix()}\0{sha256_of(file)}\n".encode())
    return digest.hexdigest()


def input_record(path: str | os.PathLike, image) -> dict:
    """{"path", "sha256", "geometry": size (i, j, k), spacing_mm, origin_lps_mm, direction} of one input."""
    return {"path": str(Path(path).resolve()), "sha256": sha256_of_input(path),
            "geometry": {"size": [int(v) for v in image.GetSize()],
                         "spacing_mm": [float(v) for v in image.GetSpacing()],
                         "origin_lps_mm": [float(v) for v in image.GetOrigin()],
                         "direction": [float(v) for v in image.GetDirection()]}}


def acquisition_record(values: dict, sources: dict) -> dict:
    """{name: {"value", "source"}} for dose, field_strength and agent; ValueError for an unknown source."""
    unknown = {name: source for name, source in sources.items() if source not in SOURCES}
    if unknown:
        raise ValueError(f"unknown acquisition sources {unknown}; use one of {SOURCES}")
    return {name: {"value": values[name], "source": sources[name]} for name in ("dose", "field_strength", "agent")}


def schema() -> dict:
    """The record's JSON schema (draft 2020-12)."""
    import json

    from ..io.resources import resource_path
    return json.loads(Path(resource_path(*SCHEMA_FILE)).read_text())
