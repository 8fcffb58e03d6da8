"""Acquisition fields of the Slicer module from DICOM: field strength, contrast agent, contrast volume, weight and
the dose they give, read from the tags of a volume loaded from DICOM or of one DICOM file.

``slicer`` is imported lazily: this file imports without Slicer. Research software, not for diagnosis.
"""

from __future__ import annotations

import os

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


def acquisition_from_volume_node(volume_node) -> dict:
    """:func:`acquisition_from_tags` of the first instance of a volume node loaded from DICOM (its
    "DICOM.instanceUIDs" attribute, read through ``slicer.dicomDatabase``); {} for other volumes."""
    import slicer
    uids = (volume_node.GetAttribute("DICOM.instanceUIDs") or "").split() if volume_node else []
    database = getattr(slicer, "dicomDatabase", None)
    if not uids or database is None:
        return {}
    path = database.fileForInstance(uids[0])
    return acquisition_from_tags(lambda tag: database.fileValue(path, tag) or "") if path else {}


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
