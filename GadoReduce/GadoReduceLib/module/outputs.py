"""Result nodes for the Slicer scene: a segmentation from a label image, a table from rows.

Uses the real MRML classes of 3D Slicer or ``slicer-core``; slicer and VTK are imported
lazily so that the rest of GadoReduceLib does not need them.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence

import numpy as np
import SimpleITK as sitk

from ..io import mrml

SEGMENT_NAME = "Enhancing region {label}"
_AXIS_SUFFIXES = {"_ras": ("R", "A", "S"), "_lps": ("L", "P", "S")}


def _segment_names(labels: list[int], segment_names) -> list[str]:
    if segment_names is None:
        return [SEGMENT_NAME.format(label=label) for label in labels]
    if isinstance(segment_names, Mapping):
        missing = [label for label in labels if label not in segment_names]
        if missing:
            raise ValueError(f"segment_names has no name for the labels {missing}; give one name per label.")
        return [str(segment_names[label]) for label in labels]
    names = [str(n) for n in segment_names]
    if len(names) != len(labels):
        raise ValueError(f"segment_names has {len(names)} names for {len(labels)} labels; give one name per "
                         "label (in ascending label order) or a dict label -> name.")
    return names


def segmentation_node_from_labels(scene, labels: sitk.Image, name: str, reference_volume_node=None,
                                  segment_names=None):
    """A new vtkMRMLSegmentationNode in ``scene`` with one segment per label > 0 of ``labels``.

    Segments follow ascending label order and are named ``segment_names`` (a list in that order
    or a dict label -> name; default "Enhancing region <label>"). ``reference_volume_node`` sets
    the segmentation's reference geometry (default: the grid of ``labels``). The label map is
    imported through a temporary label-map node, removed afterwards.
    """
    import slicer
    if labels.GetDimension() != 3 or labels.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError("labels must be a 3-D scalar label image.")
    array = sitk.GetArrayViewFromImage(labels)
    if not np.issubdtype(array.dtype, np.integer) or array.min(initial=0) < 0:
        raise ValueError(f"labels must hold non-negative integers (0 = background), not "
                         f"{labels.GetPixelIDTypeAsString()}.")
    present = [int(v) for v in np.unique(array) if v > 0]
    names = _segment_names(present, segment_names)
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", scene.GenerateUniqueName(name))
    segmentation.CreateDefaultDisplayNodes()
    if reference_volume_node is not None:
        segmentation.SetReferenceImageGeometryParameterFromVolumeNode(reference_volume_node)
    temporary = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", scene.GenerateUniqueName(name + " labels"))
    try:
        mrml.update_volume_node_from_image(temporary, labels)
        if present and not slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(
                temporary, segmentation):
            raise ValueError(f"Slicer could not import the label image into the segmentation '{name}'.")
    finally:
        remove_node(scene, temporary)
    segments = segmentation.GetSegmentation()
    if segments.GetNumberOfSegments() != len(present):
        raise ValueError(f"The segmentation '{name}' got {segments.GetNumberOfSegments()} segments for "
                         f"{len(present)} labels.")
    for index, segment_name in enumerate(names):
        segments.GetNthSegment(index).SetName(segment_name)
    return segmentation


def remove_node(scene, node) -> None:
    """Remove ``node`` with its display and storage nodes (the application does this inside Slicer; plain
    MRML leaves them behind)."""
    helpers = []
    if node.IsA("vtkMRMLDisplayableNode"):
        helpers += [node.GetNthDisplayNode(i) for i in range(node.GetNumberOfDisplayNodes())]
    if node.IsA("vtkMRMLStorableNode"):
        helpers += [node.GetNthStorageNode(i) for i in range(node.GetNumberOfStorageNodes())]
    scene.RemoveNode(node)
    for helper in helpers:
        if helper is not None and scene.IsNodePresent(helper):
            scene.RemoveNode(helper)


def _columns(rows: list[dict]) -> dict[str, list]:
    """Flatten rows into named columns; sequences expand to one column per element."""
    columns: dict[str, list] = {}
    for r, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise ValueError(f"Row {r} is a {type(row).__name__}; give each row as a dict column -> value.")
        for key, value in row.items():
            if isinstance(value, (Sequence, np.ndarray)) and not isinstance(value, str):
                suffixes = next((s for end, s in _AXIS_SUFFIXES.items() if key.endswith(end) and len(value) == 3),
                                tuple(str(i) for i in range(len(value))))
                for suffix, element in zip(suffixes, value):
                    columns.setdefault(f"{key}_{suffix}", [None] * len(rows))[r] = element
            else:
                columns.setdefault(key, [None] * len(rows))[r] = value
    return columns


def _is_number(value) -> bool:
    return value is None or (isinstance(value, (numbers.Real, np.number)) and not isinstance(value, (bool, np.bool_)))


def table_node_from_rows(scene, rows: list[dict], name: str, units: dict | None = None):
    """A new vtkMRMLTableNode with one row per dict and one column per key (in first-seen order).

    Numeric columns are double columns (missing values NaN), all others string columns;
    sequence values (e.g. ``centroid_ras``) become one column per element (``centroid_ras_R``,
    ``_A``, ``_S``). ``units`` maps a column (or the key it was expanded from) to its unit,
    stored with SetColumnUnitLabel and in the column description.
    """
    from vtkmodules.vtkCommonCore import vtkDoubleArray, vtkStringArray
    units = dict(units or {})
    columns = _columns(list(rows))
    table_node = scene.AddNewNodeByClass("vtkMRMLTableNode", scene.GenerateUniqueName(name))
    table = table_node.GetTable()
    for key, values in columns.items():
        numeric = all(_is_number(v) for v in values)
        array = vtkDoubleArray() if numeric else vtkStringArray()
        array.SetName(key)
        array.SetNumberOfValues(len(values))
        for i, value in enumerate(values):
            if numeric:
                array.SetValue(i, float("nan") if value is None else float(value))
            else:
                array.SetValue(i, "" if value is None else str(value))
        table.AddColumn(array)
        unit = units.get(key, units.get(key.rsplit("_", 1)[0]) if "_" in key else None)
        if unit:
            table_node.SetColumnUnitLabel(key, unit)
            table_node.SetColumnDescription(key, f"{key} ({unit})")
    table_node.Modified()
    return table_node
