"""Result nodes for the Slicer scene: a segmentation from a label image, a table from rows, and the module's
output nodes of a finished job (created or reused), their display and the virtual dose.

Uses the real MRML classes of 3D Slicer or ``slicer-core``; slicer and VTK are imported
lazily so that the rest of GadoReduceLib does not need them. Every function takes the scene and nodes it
works on and returns the nodes; none calls back into the module's logic.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence

import numpy as np
import SimpleITK as sitk

from ..io import mrml
from ..pipeline import OUTPUT_IMAGES, region_columns

SEGMENT_NAME = "Enhancing region {label}"
SEGMENT_COLORS = ((0.95, 0.35, 0.2), (0.2, 0.7, 0.95), (0.95, 0.85, 0.2), (0.55, 0.9, 0.35),
                  (0.85, 0.4, 0.9), (0.3, 0.9, 0.8), (0.95, 0.6, 0.75), (0.6, 0.6, 0.95))
"""Colours (RGB 0-1) of the enhancing-region segments, cycled by label."""
REGION_UNITS = {"volume_mm3": "mm3", "centroid_ras": "mm", "mean_contrast_signal": "input units",
                "max_contrast_signal": "input units", "mean_uncertainty": "input units", "c_bar": "ratio", "c_hat": "ratio"}
LESION_UNITS = {"volume_mm3": "mm3"}
VOLUME_PARAMETERS = {"synthetic_standard_dose": "syntheticStandardDose", "beyond_standard_dose": "beyondStandardDose",
                     "contrast_signal": "contrastSignal", "normalized_subtraction": "subtraction",
                     "low_dose_registered": "registeredLowDose", "standard_dose_registered": "registeredStandardDose",
                     "uncertainty": "uncertainty"}
"""Output image (``pipeline.OUTPUT_IMAGES``) -> the parameter-node volume it goes into; every output image but the
region labels (a segmentation, ``enhancingRegions``)."""
VOLUME_OUTPUTS = tuple((VOLUME_PARAMETERS[image.name], image.name, image.title, image.signed)
                       for image in OUTPUT_IMAGES if image.name in VOLUME_PARAMETERS)
"""(parameter, worker image name, node name suffix, signed window) of each output volume, in the order of
``pipeline.OUTPUT_IMAGES``; one whose image the job did not write (the registered standard dose without a
reference) is left as it is and returned as None."""
UNCERTAINTY_COLOR_NODE = "vtkMRMLColorTableNodeIron"
"""Colour map of the uncertainty volume (black - red - yellow - white: a heat map built into every Slicer, headless
included), so that it never looks like a grey-scale image."""
ZERO_DOSE_LABEL = "zero-dose"
"""In the name of every output node of a zero-dose prediction (no contrast agent given: ``pipeline.ZERO_DOSE_NOTE``)."""
SEGMENT_STATISTICS_REFERENCE = "GadoReduceSegmentStatistics"
"""Node reference from the enhancing-region segmentation to its Segment Statistics table."""
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


# ------------------------------------------------------------------------------ the module's output nodes


def _color_node_ids(scene) -> set:
    nodes = scene.GetNodesByClass("vtkMRMLColorTableNode")
    return {nodes.GetItemAsObject(i).GetID() for i in range(nodes.GetNumberOfItems())}


def labels_from_segmentation(segmentation_node, reference_volume_node):
    """(label image on the reference volume's grid, {label: segment name}) of every segment;
    label i + 1 is the i-th segment. Uses a temporary label-map node, removed afterwards."""
    import slicer
    import vtk
    scene = segmentation_node.GetScene()
    segmentation = segmentation_node.GetSegmentation()
    if segmentation.GetNumberOfSegments() == 0:
        reference = mrml.image_from_volume_node(reference_volume_node)
        empty = sitk.Image(reference.GetSize(), sitk.sitkUInt8)
        empty.CopyInformation(reference)
        return empty, {}
    ids = vtk.vtkStringArray()
    names = {}
    for index in range(segmentation.GetNumberOfSegments()):
        ids.InsertNextValue(segmentation.GetNthSegmentID(index))
        names[str(index + 1)] = segmentation.GetNthSegment(index).GetName()
    colors_before = _color_node_ids(scene)
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "GadoReduce lesion labels (temporary)")
    try:
        if not slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
                segmentation_node, ids, labelmap, reference_volume_node):
            raise ValueError(f"The lesion segmentation '{segmentation_node.GetName()}' (lesionSegmentation) could "
                             "not be converted to a label map on the pre-contrast grid.")
        image = mrml.image_from_volume_node(labelmap)
    finally:
        remove_node(scene, labelmap)
        for node_id in _color_node_ids(scene) - colors_before:  # the colour table the export made for it
            scene.RemoveNode(scene.GetNodeByID(node_id))
    return image, names


def region_outputs(segmentation_node, table_node, reference_volume_node) -> tuple[np.ndarray, dict]:
    """(label array [k, j, i] on the reference volume's grid, label -> volume_mm3) of the module's enhancing-region
    segmentation and statistics table (segment i and table row i are region i + 1)."""
    image, _ = labels_from_segmentation(segmentation_node, reference_volume_node)
    column = table_node.GetColumnIndex("volume_mm3")
    volumes = {row + 1: float(table_node.GetCellText(row, column)) for row in range(table_node.GetNumberOfRows())}
    return sitk.GetArrayFromImage(image), volumes


def color_segments(segmentation_node) -> None:
    segmentation = segmentation_node.GetSegmentation()
    for index in range(segmentation.GetNumberOfSegments()):
        segmentation.GetNthSegment(index).SetColor(*SEGMENT_COLORS[index % len(SEGMENT_COLORS)])


def segmentation_output(scene, labels, name: str, reference_volume_node, existing=None):
    """The enhancing regions as a segmentation node (one named, coloured segment per label), written into
    ``existing`` when given (its segments are replaced), else a new node."""
    new = segmentation_node_from_labels(scene, labels, name, reference_volume_node)
    color_segments(new)
    if existing is None:
        return new
    existing.GetSegmentation().DeepCopy(new.GetSegmentation())
    existing.SetReferenceImageGeometryParameterFromVolumeNode(reference_volume_node)
    if existing.GetDisplayNode() is None:
        existing.CreateDefaultDisplayNodes()
    remove_node(scene, new)
    existing.Modified()
    return existing


def table_output(scene, rows: list[dict], name: str, units: dict, existing=None, columns=()):
    """A table node with one row per dict (:func:`table_node_from_rows`), written into ``existing``
    when given (its content is replaced, its name kept), else a new node. ``columns``: names of (numeric)
    columns the table has even when ``rows`` lack them (e.g. no region found)."""
    from vtkmodules.vtkCommonCore import vtkDoubleArray
    new = table_node_from_rows(scene, rows, name, units)
    for column in columns:
        if new.GetTable().GetColumnByName(column) is None:
            array = vtkDoubleArray()
            array.SetName(column)
            array.SetNumberOfValues(new.GetNumberOfRows())
            array.Fill(float("nan"))
            new.GetTable().AddColumn(array)
            unit = units.get(column, units.get(column.rsplit("_", 1)[0]))
            if unit:
                new.SetColumnUnitLabel(column, unit)
    if existing is None:
        return new
    keep = existing.GetName()
    existing.CopyContent(new)
    existing.SetName(keep)
    remove_node(scene, new)
    existing.Modified()
    return existing


def record_output(scene, record: dict, name: str, existing=None):
    """The run's record as indented JSON in a text node (``existing`` when given, else a new one named ``name``)."""
    import json
    node = existing if existing is not None else scene.AddNewNodeByClass("vtkMRMLTextNode", name)
    node.SetText(json.dumps(record, indent=1, default=float))
    return node


def window_level(array: np.ndarray, signed: bool = False) -> tuple[float, float]:
    """(window, level) from the 1st-99.5th percentiles of the non-zero voxels (symmetric around 0 when signed)."""
    values = array[array != 0] if np.any(array != 0) else array.ravel()
    if signed:
        top = float(np.percentile(np.abs(values), 99.5)) or 1.0
        return 2.0 * top, 0.0
    low, high = (float(v) for v in np.percentile(values, [1.0, 99.5]))
    return max(high - low, 1e-6), (high + low) / 2.0


def volume_output(scene, image: sitk.Image, name: str, existing=None, signed: bool = False, color_node_id=None):
    """``image`` written into ``existing`` when given, else into a new volume node named ``name``, displayed
    with :func:`window_level` (from 0 with a colour map ``color_node_id``); returns the node."""
    import slicer
    if existing is None:
        node = mrml.volume_node_from_image(scene, image, name)
    else:
        mrml.update_volume_node_from_image(existing, image)
        node = existing
    if node.GetDisplayNode() is None:
        node.CreateDefaultDisplayNodes()
    window, level = window_level(slicer.util.arrayFromVolume(node), signed)
    display = node.GetDisplayNode()
    if color_node_id is not None:  # a map of positive values: 0 at the bottom of the colour map
        display.SetAndObserveColorNodeID(color_node_id)
        top = level + window / 2.0
        window, level = top, top / 2.0
    display.SetAutoWindowLevel(False)
    display.SetWindowLevel(window, level)
    return node


def set_virtual_dose(scene, parameters, virtual_dose: float):
    """``parameters.virtualDoseVolume`` (created in ``scene`` when empty) = pre-contrast + virtual_dose x contrast
    signal; returns the node. ValueError before process() has run or outside [0, 2] (virtualDose)."""
    import slicer
    if parameters.contrastSignal is None:
        raise ValueError("No contrast signal (contrastSignal) yet: run process() first.")
    from .inputs import set_parameters
    set_parameters(parameters, {"virtualDose": float(virtual_dose)})  # the parameter node checks 0..2
    pre = slicer.util.arrayFromVolume(parameters.preContrast).astype(np.float32)
    signal = slicer.util.arrayFromVolume(parameters.contrastSignal)
    node = parameters.virtualDoseVolume
    if node is None:
        node = mrml.volume_node_from_image(scene, mrml.image_from_volume_node(parameters.contrastSignal),
                                           f"{parameters.preContrast.GetName()} virtual dose")
        parameters.virtualDoseVolume = node
    slicer.util.updateVolumeFromArray(node, pre + np.float32(virtual_dose) * signal)
    return node


def show_in_slice_views(background, foreground) -> None:
    """Pre-contrast in the background, the contrast signal in the foreground (only with a layout manager)."""
    import slicer
    if getattr(slicer, "app", None) is None or slicer.app.layoutManager() is None:
        return  # headless
    slicer.util.setSliceViewerLayers(background=background, foreground=foreground, foregroundOpacity=0.4, fit=True)


def segment_statistics(segmentation_node, volume_node):
    """Slicer's Segment Statistics table of the regions over ``volume_node`` (None when the module is absent)."""
    try:
        from SegmentStatistics import SegmentStatisticsLogic
    except ImportError:
        return None
    statistics = SegmentStatisticsLogic()
    statistics.getParameterNode().SetParameter("Segmentation", segmentation_node.GetID())
    statistics.getParameterNode().SetParameter("ScalarVolume", volume_node.GetID())
    statistics.computeStatistics()
    table = segmentation_node.GetNodeReference(SEGMENT_STATISTICS_REFERENCE)  # reused on a re-run
    if table is None:
        table = segmentation_node.GetScene().AddNewNodeByClass("vtkMRMLTableNode",
                                                               f"{segmentation_node.GetName()} statistics")
        segmentation_node.SetNodeReferenceID(SEGMENT_STATISTICS_REFERENCE, table.GetID())
    table.RemoveAllColumns()
    statistics.exportToTable(table)
    return table


def place_in_study(reference_node, nodes) -> None:
    """Put ``nodes`` into the subject hierarchy folder that holds ``reference_node`` (its study, when it came from
    DICOM), as Slicer's modules place their results beside the input. Nodes the user has already moved out of the
    scene's top level stay where they are; nothing happens when the reference has no subject hierarchy item."""
    import slicer
    shnode = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(reference_node.GetScene())
    reference_item = shnode.GetItemByDataNode(reference_node) if shnode is not None else 0
    if not reference_item:
        return
    study = shnode.GetItemParent(reference_item)
    for node in nodes:
        if node is None:
            continue
        item = shnode.GetItemByDataNode(node)
        if not item:
            shnode.CreateItem(study, node)
        elif shnode.GetItemParent(item) == shnode.GetSceneItemID():
            shnode.SetItemParent(item, study)


def create_outputs(scene, parameters, record: dict, images: dict) -> dict:
    """Create (in ``scene``) or reuse the output nodes of a finished job (``jobs.read_result``) on the
    pre-contrast geometry, in the pre-contrast's study (:func:`place_in_study`), and set them on the parameter
    node ``parameters``; returns parameter name -> node."""
    pre = parameters.preContrast
    zero_dose = bool(record.get("zero_dose"))
    base = pre.GetName() + (f" {ZERO_DOSE_LABEL}" if zero_dose else "")  # every output node says zero-dose
    nodes = {}
    for parameter, image_name, suffix, signed in VOLUME_OUTPUTS:
        if image_name not in images:
            nodes[parameter] = None
            continue
        color = UNCERTAINTY_COLOR_NODE if image_name == "uncertainty" else None
        node = volume_output(scene, images[image_name], f"{base} {suffix}", getattr(parameters, parameter), signed,
                             color)
        setattr(parameters, parameter, node)
        nodes[parameter] = node
    parameters.enhancingRegions = segmentation_output(scene, images["enhancing_labels"],
                                                      f"{base} enhancing regions", pre, parameters.enhancingRegions)
    nodes["enhancingRegions"] = parameters.enhancingRegions
    columns = region_columns("uncertainty" in images, parameters.standardDose is not None)
    parameters.regionTable = table_output(scene, record["regions"], f"{base} enhancing region statistics",
                                          REGION_UNITS, parameters.regionTable, columns)
    nodes["regionTable"] = parameters.regionTable
    nodes["lesionTable"] = None
    if record["lesions"]:
        parameters.lesionTable = table_output(scene, record["lesions"], f"{base} lesion metrics", LESION_UNITS,
                                              parameters.lesionTable)
        nodes["lesionTable"] = parameters.lesionTable
    nodes["runRecord"] = parameters.runRecord = record_output(scene, record.get("case_record", {}),
                                                              f"{base} GadoReduce record", parameters.runRecord)
    nodes["virtualDoseVolume"] = set_virtual_dose(scene, parameters, parameters.virtualDose)
    nodes["segmentStatistics"] = segment_statistics(parameters.enhancingRegions, nodes["contrastSignal"])
    for node in nodes.values():  # a reused node of the other kind of run is renamed
        if node is not None and (ZERO_DOSE_LABEL in node.GetName()) != zero_dose:
            name = node.GetName()
            node.SetName(f"{name} ({ZERO_DOSE_LABEL})" if zero_dose else
                         name.replace(f" ({ZERO_DOSE_LABEL})", "").replace(f" {ZERO_DOSE_LABEL}", ""))
    place_in_study(pre, nodes.values())
    show_in_slice_views(pre, nodes["contrastSignal"])
    return nodes
