"""Acquisition fields of the Slicer module from a volume loaded from DICOM (its instance UIDs read through
``slicer.dicomDatabase``); the tag logic is ``io.dicom``'s, shared with the command line.

``slicer`` is imported lazily: this file imports without Slicer. Research software, not for diagnosis.
"""

from __future__ import annotations

from ..io.dicom import acquisition_from_tags


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
