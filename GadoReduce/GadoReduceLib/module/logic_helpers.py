"""Helpers of the Slicer module's logic that are too long for GadoReduce.py.

Input checks, job folders for the background worker, result nodes (created or reused) and the virtual
dose (DICOM prefill, dependencies and sample data: ``module_support``). ``slicer`` is
imported lazily: this file imports without Slicer. Research software, not for diagnosis.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..physics.agents import AGENTS, get_agent
from .outputs import remove_node

SEGMENT_COLORS = ((0.95, 0.35, 0.2), (0.2, 0.7, 0.95), (0.95, 0.85, 0.2), (0.55, 0.9, 0.35),
                  (0.85, 0.4, 0.9), (0.3, 0.9, 0.8), (0.95, 0.6, 0.75), (0.6, 0.6, 0.95))
"""Colours (RGB 0-1) of the enhancing-region segments, cycled by label."""
REGION_UNITS = {"volume_mm3": "mm3", "centroid_ras": "mm", "mean_contrast_signal": "input units",
                "max_contrast_signal": "input units", "c_bar": "ratio", "c_hat": "ratio"}
LESION_UNITS = {"volume_mm3": "mm3"}
REGION_COLUMNS = ("label", "voxels", "volume_mm3", "centroid_ras_R", "centroid_ras_A", "centroid_ras_S",
                  "mean_contrast_signal", "max_contrast_signal")
"""Columns of the region table (``regions.region_statistics``; c_bar and c_hat with a standard dose)."""

# ------------------------------------------------------------------------------ input checks


def agent_problem(agent: str) -> str | None:
    """None when ``agent`` names a known contrast agent, else a message listing the valid names."""
    try:
        get_agent(agent)
        return None
    except ValueError:
        return (f"Unknown contrast agent '{agent}' (agent); use one of: {', '.join(sorted(AGENTS))}.")


def dose_problem(dose) -> str | None:
    """None when ``dose`` is a fraction of the standard dose in (0, 1] (``lowdose.check_dose``), else the message."""
    from ..physics.lowdose import check_dose
    try:
        check_dose(dose)
        return None
    except ValueError as error:
        return f"Invalid low dose (dose): {error}."


def volumes_overlap(a, b) -> bool:
    """True when the RAS bounding boxes of volume nodes ``a`` and ``b`` intersect (world coordinates)."""
    bounds_a, bounds_b = [0.0] * 6, [0.0] * 6
    a.GetRASBounds(bounds_a)
    b.GetRASBounds(bounds_b)
    return all(bounds_a[2 * i] <= bounds_b[2 * i + 1] and bounds_b[2 * i] <= bounds_a[2 * i + 1] for i in range(3))


def check_parameters(parameters, overlap=volumes_overlap) -> list[str]:
    """Reasons why the module's parameters cannot be processed (empty list when they can); each message
    names the parameter. ``overlap(a, b)``: True when two volume nodes' fields of view intersect."""
    problems = []
    pre, low, standard = parameters.preContrast, parameters.lowDose, parameters.standardDose
    if pre is None:
        problems.append("Pre-contrast volume is not set (preContrast): select the T1w scan before contrast.")
    if low is None:
        problems.append("Low-dose volume is not set (lowDose): select the low-dose contrast-enhanced T1w scan.")
    if pre is not None and low is not None and pre == low:
        problems.append("Pre-contrast and low-dose must be two different volumes.")
    for label, node in (("preContrast", pre), ("lowDose", low), ("standardDose", standard)):
        if node is None:
            continue
        if node.GetImageData() is None:
            problems.append(f"The volume '{node.GetName()}' ({label}) has no voxels.")
        elif min(node.GetImageData().GetDimensions()) < 2:
            problems.append(f"The volume '{node.GetName()}' ({label}) is 2D; a 3D volume is needed.")
    if not problems:
        for label, other in (("lowDose", low), ("standardDose", standard)):
            if other is not None and not overlap(pre, other):
                problems.append(f"The fields of view of '{pre.GetName()}' (preContrast) and '{other.GetName()}' "
                                f"({label}) do not overlap; check that both scans are of the same patient and session.")
    problems += [p for p in (dose_problem(parameters.dose), agent_problem(parameters.agent)) if p]
    if parameters.modelPath and not os.path.isfile(parameters.modelPath):
        problems.append(f"The model file '{parameters.modelPath}' (modelPath) does not exist; leave it empty for "
                        "the default model.")
    return problems


# ------------------------------------------------------------------------------ job folders


def write_job(folder: str | os.PathLike, images: dict, settings: dict) -> Path:
    """Write ``images`` (name -> SimpleITK image or None) as NRRD and ``job.json`` with ``settings``
    into ``folder`` (see :mod:`GadoReduceLib.module.worker`); returns the folder."""
    from ..io.imageio import write_image
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    inputs = {}
    for name, image in images.items():
        inputs[name] = None if image is None else write_image(image, folder / f"{name}.nrrd", compress=False).name
    (folder / "job.json").write_text(json.dumps({"inputs": inputs, **settings}, indent=1))
    return folder


def worker_registration(backend: str = "auto") -> tuple[str, dict | None]:
    """(registration backend, environment) for the worker process. Inside Slicer with SlicerElastix and
    backend "auto" or "slicer": SlicerElastix's bundled elastix executable (its bin folder first on PATH,
    its library environment), because the worker is a plain PythonSlicer process without ElastixLogic.
    Otherwise the backend as given (the worker resolves "auto": itk-elastix, else elastix on PATH)."""
    from ..preprocessing.registration import _slicer_elastix_available
    if backend not in ("auto", "slicer") or not _slicer_elastix_available():
        return backend, None
    from Elastix import ElastixLogic
    logic = ElastixLogic()
    env = dict(logic.getElastixEnv() or os.environ)
    env["PATH"] = os.pathsep.join(p for p in (logic.getElastixBinDir(), env.get("PATH")) if p)
    return "executable", env


def start_job(logic, parameters, backend: str = "auto"):
    """Write the inputs of ``parameters`` (checked) into a new folder under Slicer's temporary path and start
    the worker on it; returns the :class:`jobs.BackgroundJob` (its folder is removed again on failure)."""
    import shutil
    import tempfile

    import slicer

    from .jobs import BackgroundJob
    folder = tempfile.mkdtemp(prefix="GadoReduce-", dir=slicer.app.temporaryPath)
    pre, standard = parameters.preContrast, parameters.standardDose
    images = {"pre_contrast": logic.imageFromVolume(pre), "low_dose": logic.imageFromVolume(parameters.lowDose),
              "standard_dose": logic.imageFromVolume(standard) if standard else None, "lesion_labels": None}
    settings = {"dose": parameters.dose, "field_strength": parameters.fieldStrength, "agent": parameters.agent,
                "model": parameters.modelPath or None, "device": parameters.device, "tile": None,
                "threshold_sigmas": parameters.thresholdSigmas, "min_volume_mm3": parameters.minRegionVolume}
    try:
        if parameters.lesionSegmentation:
            images["lesion_labels"], settings["lesion_names"] = labels_from_segmentation(
                parameters.lesionSegmentation, pre)
        settings["backend"], env = worker_registration(backend)
        write_job(folder, images, settings)
        return BackgroundJob(folder, env=env)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def read_result(folder: str | os.PathLike) -> tuple[dict, dict]:
    """(record, images name -> SimpleITK image) of a finished job folder."""
    from ..io.imageio import read_image
    from .worker import RESULT_FILE
    folder = Path(folder)
    record = json.loads((folder / RESULT_FILE).read_text())
    return record, {name: read_image(folder / rel) for name, rel in record["images"].items()}


# ------------------------------------------------------------------------------ result nodes


def labels_from_segmentation(segmentation_node, reference_volume_node):
    """(label image on the reference volume's grid, {label: segment name}) of every segment;
    label i + 1 is the i-th segment. Uses a temporary label-map node, removed afterwards."""
    import slicer
    import SimpleITK as sitk
    import vtk

    from ..io.mrml import image_from_volume_node
    scene = segmentation_node.GetScene()
    segmentation = segmentation_node.GetSegmentation()
    if segmentation.GetNumberOfSegments() == 0:
        reference = image_from_volume_node(reference_volume_node)
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
        image = image_from_volume_node(labelmap)
    finally:
        remove_node(scene, labelmap)
        for node_id in _color_node_ids(scene) - colors_before:  # the colour table the export made for it
            scene.RemoveNode(scene.GetNodeByID(node_id))
    return image, names


def region_outputs(segmentation_node, table_node, reference_volume_node) -> tuple[np.ndarray, dict]:
    """(label array [k, j, i] on the reference volume's grid, label -> volume_mm3) of the module's enhancing-region
    segmentation and statistics table (segment i and table row i are region i + 1)."""
    import SimpleITK as sitk
    image, _ = labels_from_segmentation(segmentation_node, reference_volume_node)
    column = table_node.GetColumnIndex("volume_mm3")
    volumes = {row + 1: float(table_node.GetCellText(row, column)) for row in range(table_node.GetNumberOfRows())}
    return sitk.GetArrayFromImage(image), volumes


def _color_node_ids(scene) -> set:
    nodes = scene.GetNodesByClass("vtkMRMLColorTableNode")
    return {nodes.GetItemAsObject(i).GetID() for i in range(nodes.GetNumberOfItems())}


def color_segments(segmentation_node) -> None:
    segmentation = segmentation_node.GetSegmentation()
    for index in range(segmentation.GetNumberOfSegments()):
        segmentation.GetNthSegment(index).SetColor(*SEGMENT_COLORS[index % len(SEGMENT_COLORS)])


def segmentation_output(scene, labels, name: str, reference_volume_node, existing=None):
    """The enhancing regions as a segmentation node (one named, coloured segment per label), written into
    ``existing`` when given (its segments are replaced), else a new node."""
    from .outputs import segmentation_node_from_labels
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
    """A table node with one row per dict (``mrml_outputs.table_node_from_rows``), written into ``existing``
    when given (its content is replaced, its name kept), else a new node. ``columns``: names of (numeric)
    columns the table has even when ``rows`` lack them (e.g. no region found)."""
    from vtkmodules.vtkCommonCore import vtkDoubleArray

    from .outputs import table_node_from_rows
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


def window_level(array: np.ndarray, signed: bool = False) -> tuple[float, float]:
    """(window, level) from the 1st-99.5th percentiles of the non-zero voxels (symmetric around 0 when signed)."""
    values = array[array != 0] if np.any(array != 0) else array.ravel()
    if signed:
        top = float(np.percentile(np.abs(values), 99.5)) or 1.0
        return 2.0 * top, 0.0
    low, high = (float(v) for v in np.percentile(values, [1.0, 99.5]))
    return max(high - low, 1e-6), (high + low) / 2.0


# ------------------------------------------------------------------------------ outputs of a finished job

VOLUME_OUTPUTS = (("syntheticStandardDose", "synthetic_standard_dose", "synthetic standard dose", False),
                  ("beyondStandardDose", "beyond_standard_dose", "beyond standard dose", False),
                  ("contrastSignal", "contrast_signal", "contrast signal", True),
                  ("subtraction", "normalized_subtraction", "normalized subtraction", True),
                  ("registeredLowDose", "low_dose_registered", "registered low dose", False),
                  ("registeredStandardDose", "standard_dose_registered", "registered standard dose", False))
"""(parameter, worker image name, node name suffix, signed window) of each output volume; one whose image the
job did not write (the registered standard dose without a reference) is left as it is and returned as None."""


def set_virtual_dose(logic, parameters, virtual_dose: float):
    """``parameters.virtualDoseVolume`` (created when empty) = pre-contrast + virtual_dose x contrast signal;
    returns the node. ValueError before process() has run or outside [0, 2] (virtualDose)."""
    import slicer
    if parameters.contrastSignal is None:
        raise ValueError("No contrast signal (contrastSignal) yet: run process() first.")
    parameters.virtualDose = float(virtual_dose)  # the parameter node checks 0..2
    pre = slicer.util.arrayFromVolume(parameters.preContrast).astype(np.float32)
    signal = slicer.util.arrayFromVolume(parameters.contrastSignal)
    node = parameters.virtualDoseVolume
    if node is None:
        node = logic.volumeFromImage(logic.imageFromVolume(parameters.contrastSignal),
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


SEGMENT_STATISTICS_REFERENCE = "GadoReduceSegmentStatistics"
"""Node reference from the enhancing-region segmentation to its Segment Statistics table."""


def segment_statistics(segmentation_node, volume_node):
    """Slicer's Segment Statistics table of the regions over ``volume_node`` (None when the module is absent)."""
    try:
        from SegmentStatistics import SegmentStatisticsLogic
    except ImportError:
        return None
    import slicer
    logic = SegmentStatisticsLogic()
    logic.getParameterNode().SetParameter("Segmentation", segmentation_node.GetID())
    logic.getParameterNode().SetParameter("ScalarVolume", volume_node.GetID())
    logic.computeStatistics()
    table = segmentation_node.GetNodeReference(SEGMENT_STATISTICS_REFERENCE)  # reused on a re-run
    if table is None:
        table = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTableNode", f"{segmentation_node.GetName()} statistics")
        segmentation_node.SetNodeReferenceID(SEGMENT_STATISTICS_REFERENCE, table.GetID())
    table.RemoveAllColumns()
    logic.exportToTable(table)
    return table


def create_outputs(logic, parameters, record: dict, images: dict) -> dict:
    """Create or reuse the output nodes of a finished job (``read_result``) on the pre-contrast geometry;
    returns parameter name -> node."""
    import slicer
    scene = slicer.mrmlScene
    pre = parameters.preContrast
    base = pre.GetName()
    nodes = {}
    for parameter, image_name, suffix, signed in VOLUME_OUTPUTS:
        if image_name not in images:
            nodes[parameter] = None
            continue
        node = logic.volumeFromImage(images[image_name], f"{base} {suffix}", node=getattr(parameters, parameter))
        if node.GetDisplayNode() is None:
            node.CreateDefaultDisplayNodes()
        window, level = window_level(slicer.util.arrayFromVolume(node), signed)
        node.GetDisplayNode().SetAutoWindowLevel(False)
        node.GetDisplayNode().SetWindowLevel(window, level)
        setattr(parameters, parameter, node)
        nodes[parameter] = node
    parameters.enhancingRegions = segmentation_output(scene, images["enhancing_labels"],
                                                      f"{base} enhancing regions", pre, parameters.enhancingRegions)
    nodes["enhancingRegions"] = parameters.enhancingRegions
    columns = REGION_COLUMNS + (("c_bar", "c_hat") if parameters.standardDose else ())
    parameters.regionTable = table_output(scene, record["regions"], f"{base} enhancing region statistics",
                                          REGION_UNITS, parameters.regionTable, columns)
    nodes["regionTable"] = parameters.regionTable
    nodes["lesionTable"] = None
    if record["lesions"]:
        parameters.lesionTable = table_output(scene, record["lesions"], f"{base} lesion metrics", LESION_UNITS,
                                              parameters.lesionTable)
        nodes["lesionTable"] = parameters.lesionTable
    nodes["virtualDoseVolume"] = logic.setVirtualDose(parameters.virtualDose, parameters)
    nodes["segmentStatistics"] = segment_statistics(parameters.enhancingRegions, nodes["contrastSignal"])
    show_in_slice_views(pre, nodes["contrastSignal"])
    return nodes
