"""DICOM outside Slicer: the acquisition fields of a contrast-enhanced scan (field strength, agent, contrast volume,
weight and the dose they give) from its tags, and the choice of one series in a folder of several.

Patient identity is never read here. Research software, not for diagnosis.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..physics.agents import agent_from_dicom

TAG_FIELD_STRENGTH, TAG_AGENT, TAG_VOLUME, TAG_WEIGHT = "0018,0087", "0018,0010", "0018,1041", "0010,1030"


def _number(text) -> float | None:
    try:
        value = float(str(text).strip().split("\\")[0])
    except (TypeError, ValueError):
        return None
    return value if np.isfinite(value) and value > 0 else None


def acquisition_from_tags(read) -> dict:
    """Acquisition fields from DICOM tags; ``read(tag)`` returns the text of a tag ("0018,0087") or "".

    Returns a dict with the keys found: ``field_strength`` (tesla; values above 100 are taken as gauss),
    ``agent`` (generic name, from 0018,0010 via ``agents.agent_from_dicom``), ``contrast_volume_ml``,
    ``weight_kg`` and, when agent, volume and weight are all known, ``dose`` = volume / (weight x the
    agent's standard dose in mL/kg), the fraction of the standard dose (not clipped; check it).
    """
    out = {}
    field = _number(read(TAG_FIELD_STRENGTH))
    if field is not None:
        out["field_strength"] = field / 10000.0 if field > 100 else field
    agent = agent_from_dicom(read(TAG_AGENT) or "")
    if agent is not None:
        out["agent"] = agent.name
    volume, weight = _number(read(TAG_VOLUME)), _number(read(TAG_WEIGHT))
    if volume is not None:
        out["contrast_volume_ml"] = volume
    if weight is not None:
        out["weight_kg"] = weight
    if agent is not None and volume is not None and weight is not None:
        out["dose"] = volume / (weight * agent.standard_dose_ml_per_kg)
    return out


def acquisition_from_dicom_file(path: str | os.PathLike) -> dict:
    """:func:`acquisition_from_tags` of one DICOM file, read with SimpleITK (GDCM)."""
    import SimpleITK as sitk
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.LoadPrivateTagsOn()
    try:
        reader.ReadImageInformation()
    except RuntimeError as error:
        raise ValueError(f"{path} is not a readable DICOM file ({str(error).splitlines()[0]}).") from None

    def read(tag: str) -> str:
        key = tag.replace(",", "|").lower()
        return reader.GetMetaData(key) if reader.HasMetaDataKey(key) else ""
    return acquisition_from_tags(read)


def series_in(folder) -> list[dict]:
    """The DICOM series of ``folder``: [{"uid", "description", "files": [paths in slice order]}], sorted by
    description then UID."""
    import SimpleITK as sitk
    found = []
    for uid in sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)):
        files = list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid))
        reader = sitk.ImageFileReader()
        reader.SetFileName(files[0])
        try:
            reader.ReadImageInformation()
            description = reader.GetMetaData("0008|103e").strip() if reader.HasMetaDataKey("0008|103e") else ""
        except RuntimeError:
            description = ""
        found.append({"uid": uid, "description": description, "files": files})
    return sorted(found, key=lambda s: (s["description"], s["uid"]))


def _listing(series: list[dict]) -> str:
    return "; ".join(f"{s['uid']} ({s['description'] or 'no description'}, {len(s['files'])} files)" for s in series)


def choose_series(folder, wanted: str | None, option: str) -> dict | None:
    """The series of the DICOM folder ``folder`` named by ``wanted`` (a Series Instance UID, else a Series
    Description, matched whole, then as a part, ignoring case), or its only series when ``wanted`` is None.
    None when ``folder`` is not a folder (an image file). ValueError listing the series found when the choice is
    ambiguous or nothing matches; ``option`` names the CLI option (e.g. "--low")."""
    folder = Path(folder)
    if not folder.is_dir():
        if wanted:
            raise ValueError(f"{option}-series {wanted!r} chooses a DICOM series, but {option} {folder} is a file")
        return None
    series = series_in(folder)
    if not series:
        return None  # imageio.read_image says that the folder holds no DICOM images
    if wanted is None:
        if len(series) == 1:
            return series[0]
        raise ValueError(f"{option} {folder} holds {len(series)} DICOM series: {_listing(series)}. Choose one with "
                         f"{option}-series UID or {option}-series \"description\"")
    text = wanted.strip().lower()
    for match in (lambda s: s["uid"] == wanted.strip(), lambda s: s["description"].lower() == text,
                  lambda s: text in s["description"].lower()):
        chosen = [s for s in series if match(s)]
        if len(chosen) == 1:
            return chosen[0]
        if len(chosen) > 1:
            raise ValueError(f"{option}-series {wanted!r} matches {len(chosen)} series in {folder}: "
                             f"{_listing(chosen)}. Give the Series Instance UID")
    raise ValueError(f"{option}-series {wanted!r} matches no series in {folder}; it holds {_listing(series)}")
