"""Helpers of the Slicer module's logic that are too long for GadoReduce.py.

Job folders for the background worker, result nodes (created or reused), the DICOM prefill of the
acquisition fields and the decision which Python packages the module must install. ``slicer`` is
imported lazily: this file imports without Slicer. Research software, not for diagnosis.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np

from .agents import AGENTS, agent_from_dicom, get_agent

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
    try:
        value = float(dose)
    except (TypeError, ValueError):
        return f"The dose (dose) must be a number in (0, 1], not {dose!r}."
    if not 0.0 < value <= 1.0:
        return f"The dose (dose) must be a fraction of the standard dose in (0, 1], not {value:g}; e.g. 0.33 for 33 %."
    return None


def check_parameters(parameters, overlap) -> list[str]:
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
    into ``folder`` (see :mod:`GadoReduceLib.worker`); returns the folder."""
    from .imageio import write_image
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
    from .registration import _slicer_elastix_available
    if backend not in ("auto", "slicer") or not _slicer_elastix_available():
        return backend, None
    from Elastix import ElastixLogic
    logic = ElastixLogic()
    env = dict(logic.getElastixEnv() or os.environ)
    env["PATH"] = os.pathsep.join(p for p in (logic.getElastixBinDir(), env.get("PATH")) if p)
    return "executable", env


def read_result(folder: str | os.PathLike) -> tuple[dict, dict]:
    """(record, images name -> SimpleITK image) of a finished job folder."""
    from .imageio import read_image
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

    from .mrml import image_from_volume_node
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
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "GadoReduce lesion labels (temporary)")
    try:
        if not slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
                segmentation_node, ids, labelmap, reference_volume_node):
            raise ValueError(f"The lesion segmentation '{segmentation_node.GetName()}' (lesionSegmentation) could "
                             "not be converted to a label map on the pre-contrast grid.")
        image = image_from_volume_node(labelmap)
    finally:
        scene.RemoveNode(labelmap)
    return image, names


def color_segments(segmentation_node) -> None:
    segmentation = segmentation_node.GetSegmentation()
    for index in range(segmentation.GetNumberOfSegments()):
        segmentation.GetNthSegment(index).SetColor(*SEGMENT_COLORS[index % len(SEGMENT_COLORS)])


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


def segmentation_output(scene, labels, name: str, reference_volume_node, existing=None):
    """The enhancing regions as a segmentation node (one named, coloured segment per label), written into
    ``existing`` when given (its segments are replaced), else a new node."""
    from .mrml_outputs import segmentation_node_from_labels
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

    from .mrml_outputs import table_node_from_rows
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


# ------------------------------------------------------------------------------ DICOM prefill

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


# ------------------------------------------------------------------------------ dependencies

PIP_REQUIREMENTS = {"scipy": "scipy==1.17.1", "skimage": "scikit-image==0.26.0", "itk": "itk-elastix==0.25.4"}
"""Import name -> pinned requirement (the pins of pyproject.toml) the module installs when missing."""


def missing_imports(names=("torch", "scipy", "skimage", "itk")) -> set[str]:
    return {name for name in names if importlib.util.find_spec(name) is None}


def dependency_plan(missing: set[str], slicer_elastix: bool, has_pip_ensure: bool) -> dict:
    """What :meth:`GadoReduceLogic.ensureDependencies` does for the ``missing`` import names.

    ``torch`` is installed by the PyTorch extension (``PyTorchUtilsLogic().installTorch``), never by pip;
    itk-elastix only when SlicerElastix is absent (registration then runs in-process); the other
    packages with ``pip_ensure`` (:func:`pip_ensure_module`) or else ``slicer.util.pip_install``.
    Returns {"torch": bool, "pip": [requirements], "installer": "pip_ensure" | "pip_install" | None}.
    """
    pip = [PIP_REQUIREMENTS[name] for name in sorted(missing)
           if name in PIP_REQUIREMENTS and not (name == "itk" and slicer_elastix)]
    return {"torch": "torch" in missing, "pip": pip,
            "installer": (("pip_ensure" if has_pip_ensure else "pip_install") if pip else None)}



def pip_ensure_module():
    """Slicer's module with ``pip_ensure`` (``slicer.pydeps``, Slicer >= 5.11; ``slicer.packaging`` in some
    builds), None in older Slicer versions (then ``slicer.util.pip_install`` is used)."""
    import importlib
    for name in ("slicer.pydeps", "slicer.packaging"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        if hasattr(module, "pip_ensure"):
            return module
    return None


def ensure_dependencies(ask_confirmation: bool = True) -> bool:
    """Inside Slicer: install what :func:`dependency_plan` says for the missing imports; see
    ``GadoReduceLogic.ensureDependencies``."""
    import slicer
    missing = missing_imports()
    if not missing:
        return True
    installer = pip_ensure_module()
    plan = dependency_plan(missing, slicer_elastix=hasattr(slicer.modules, "elastix"),
                           has_pip_ensure=installer is not None)
    if plan["torch"]:
        try:
            import PyTorchUtils
        except ImportError:
            raise ValueError("PyTorch is missing: install the PyTorch extension from the Extensions Manager, "
                             "restart Slicer and apply again.") from None
        if PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=ask_confirmation) is None:
            return False
    if plan["pip"]:
        if ask_confirmation and not slicer.util.confirmOkCancelDisplay(
                f"GadoReduce needs these Python packages: {', '.join(plan['pip'])}. Install them now?"):
            return False
        if plan["installer"] == "pip_ensure":
            from packaging.requirements import Requirement
            installer.pip_ensure([Requirement(r) for r in plan["pip"]], requester="GadoReduce")
        else:
            slicer.util.pip_install(plan["pip"])
    if missing_imports():
        slicer.util.infoDisplay("GadoReduce installed Python packages; please restart Slicer and apply again.")
        return False
    return True


# ------------------------------------------------------------------------------ sample data

SAMPLE_NAME = "GadoReduce phantom"
SAMPLE_SCANS = (("pre_contrast", "GadoReduce phantom pre-contrast"), ("low_dose_33", "GadoReduce phantom low dose 33%"),
                ("standard_dose", "GadoReduce phantom standard dose"))


def write_sample_phantom(folder: str | os.PathLike, seed: int = 1) -> list[Path]:
    """Generate the digital phantom locally (small 2 mm preset, no network) and write its pre-contrast,
    33 % low-dose and standard-dose scans as NRRD into ``folder``; returns the paths (SAMPLE_SCANS order)."""
    from .imageio import write_image
    from .phantom import PhantomConfig, generate_phantom
    case = generate_phantom(PhantomConfig(seed=seed, doses=(0.33,)))
    images = {"pre_contrast": case.pre_contrast, "low_dose_33": case.low_dose[0.33],
              "standard_dose": case.standard_dose}
    return [write_image(images[name], Path(folder) / f"gadoreduce_phantom_{name}.nrrd") for name, _ in SAMPLE_SCANS]


# ------------------------------------------------------------------------------ outputs of a finished job

VOLUME_OUTPUTS = (("syntheticStandardDose", "synthetic_standard_dose", "synthetic standard dose", False),
                  ("beyondStandardDose", "beyond_standard_dose", "beyond standard dose", False),
                  ("contrastSignal", "contrast_signal", "contrast signal", True),
                  ("subtraction", "normalized_subtraction", "normalized subtraction", True),
                  ("registeredLowDose", "low_dose_registered", "registered low dose", False))
"""(parameter, worker image name, node name suffix, signed window) of each output volume."""


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
    import slicer
    logic = SegmentStatisticsLogic()
    logic.getParameterNode().SetParameter("Segmentation", segmentation_node.GetID())
    logic.getParameterNode().SetParameter("ScalarVolume", volume_node.GetID())
    logic.computeStatistics()
    table = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTableNode", f"{segmentation_node.GetName()} statistics")
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


def load_sample_phantom(source=None) -> list:
    """SampleData loader: generate the phantom into Slicer's temporary folder and load pre-contrast, low dose
    33 % and standard dose as volume nodes (returned in that order)."""
    import tempfile

    import slicer
    folder = tempfile.mkdtemp(prefix="GadoReducePhantom-", dir=slicer.app.temporaryPath)
    paths = write_sample_phantom(folder)
    return [slicer.util.loadVolume(str(path), {"name": name}) for path, (_, name) in zip(paths, SAMPLE_SCANS)]


def register_sample_data(thumbnail: str) -> None:
    """Register the "GadoReduce phantom" sample (generated locally, no network) with the SampleData module."""
    import SampleData
    SampleData.SampleDataLogic.registerCustomSampleDataSource(
        category="GadoReduce", sampleName=SAMPLE_NAME, thumbnailFileName=thumbnail, customDownloader=load_sample_phantom)
