"""The module's input checks, cancellation of the worker process, DICOM prefill, dependencies, sample data.

Real MRML (slicer-core), real subprocesses and real DICOM files; stand-ins only for the Slicer
application (see slicer_harness).
"""

from __future__ import annotations

import importlib
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from test_mrml_geometry import make_oblique_node


@pytest.fixture
def module(harness):
    import GadoReduce
    return importlib.reload(GadoReduce)


def _head_like_pair(scene):
    """Two small overlapping, different volumes that pass checkInputs and the worker's image checks (20^3
    voxels); the worker is never allowed to finish."""
    from GadoReduceLib.io.mrml import volume_node_from_image
    nodes = []
    for seed, name in ((3, "pre"), (4, "low")):
        image = sitk.GetImageFromArray((np.random.default_rng(seed).random((20, 20, 20)) * 1000).astype(np.float32))
        nodes.append(volume_node_from_image(scene, image, name))
    return tuple(nodes)


def test_bad_inputs_raise_errors_naming_the_parameter(module, harness):
    from vtkmodules.vtkCommonDataModel import vtkImageData
    logic = module.GadoReduceLogic()
    params = logic.getParameterNode()
    with pytest.raises(ValueError, match=r"Pre-contrast volume is not set \(preContrast\)"):
        logic.process(params)
    pre, low = _head_like_pair(harness.scene)
    with pytest.raises(ValueError, match=r"\(lowDose\)"):
        logic.process(params, preContrast=pre)
    flat = harness.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "flat")
    image_data = vtkImageData()
    image_data.SetDimensions(8, 8, 1)
    image_data.AllocateScalars(10, 1)
    flat.SetAndObserveImageData(image_data)
    with pytest.raises(ValueError, match=r"'flat' \(lowDose\) is 2D"):
        logic.process(params, lowDose=flat)
    far, _ = make_oblique_node(harness.scene, name="far")
    far.SetOrigin(500.0, 500.0, 500.0)
    with pytest.raises(ValueError, match=r"'far' \(lowDose\) do not overlap"):
        logic.process(params, lowDose=far)
    with pytest.raises(ValueError, match=r"Invalid value for 'dose'"):
        logic.process(params, lowDose=low, dose=1.5)
    with pytest.raises(ValueError, match=r"Invalid value for 'dose'"):
        logic.process(params, lowDose=low, dose=0.0)
    with pytest.raises(ValueError, match=r"Unknown contrast agent 'gadolinium' \(agent\); use one of: .*gadobutrol"):
        logic.process(params, lowDose=low, agent="gadolinium")
    with pytest.raises(ValueError, match=r"\(modelPath\) does not exist"):
        logic.process(params, agent="gadobutrol", modelPath="/nonexistent/model.pt")
    with pytest.raises(ValueError, match=r"Unknown parameter 'doze'"):
        logic.process(params, modelPath="", doze=0.3)
    assert logic.checkInputs(params) == [] and not logic.busy
    assert harness.scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == 4  # no output was created


def test_worker_user_error_reaches_the_caller(module, harness, tmp_path):
    """A corrupt model file is found by the worker process; its one-line error becomes a ValueError."""
    import slicer
    pre, low = _head_like_pair(harness.scene)
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"not a model")
    logic = module.GadoReduceLogic()
    count = harness.scene.GetNumberOfNodes()
    with pytest.raises(ValueError, match="broken.pt"):
        logic.process(preContrast=pre, lowDose=low, modelPath=str(bad))
    assert harness.scene.GetNumberOfNodes() == count and not logic.busy
    assert not list(Path(slicer.app.temporaryPath).glob("GadoReduce-*"))


def test_cancel_kills_the_worker_and_creates_nothing(module, harness):
    """Cancel from the progress callback (console) and from cancel() (panel): real process, killed."""
    from GadoReduceLib.module.jobs import JobCancelled
    import slicer
    pre, low = _head_like_pair(harness.scene)
    logic = module.GadoReduceLogic()
    count = harness.scene.GetNumberOfNodes()
    seen = []
    with pytest.raises(JobCancelled):
        logic.process(preContrast=pre, lowDose=low, progress=lambda f, m: seen.append(m),
                      cancel=lambda: any(m.startswith("Loading the model") for m in seen))
    assert seen and not logic.busy
    job = logic.process(preContrast=pre, lowDose=low, background=True)
    assert job.running and logic.busy
    time.sleep(0.5)
    logic.cancel()
    assert job.process.poll() is not None and not logic.busy
    assert not job.folder.exists() and not list(Path(slicer.app.temporaryPath).glob("GadoReduce-*"))
    assert harness.scene.GetNumberOfNodes() == count
    assert logic.pollJob() is True  # nothing running any more


def _write_dicom(path: Path, tags: dict) -> Path:
    image = sitk.GetImageFromArray(np.arange(64, dtype=np.int16).reshape(8, 8))
    for key, value in {"0008|0060": "MR", **tags}.items():
        image.SetMetaData(key, value)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    writer.SetFileName(str(path))
    writer.Execute(image)
    return path


def test_acquisition_prefill_from_a_real_dicom_file(module, harness, tmp_path):
    import slicer
    from GadoReduceLib.io.dicom import acquisition_from_dicom_file
    from slicer_harness import DICOMDatabaseStandIn
    path = _write_dicom(tmp_path / "low.dcm", {"0008|0018": "1.2.826.0.1.3680043.2.1125.1", "0018|0087": "3",
                                               "0018|0010": "GADOVIST 1.0", "0018|1041": "2.5", "0010|1030": "75"})
    found = acquisition_from_dicom_file(path)
    # gadobutrol 1 mmol/mL, standard 0.1 mmol/kg: 7.5 mL for 75 kg, so 2.5 mL is a third of the standard dose
    assert found["agent"] == "gadobutrol" and found["field_strength"] == 3.0
    assert found["dose"] == pytest.approx(1 / 3) and found["weight_kg"] == 75.0
    # the same through the volume node's DICOM attribute and Slicer's DICOM database
    node, _ = make_oblique_node(harness.scene, name="low")
    logic = module.GadoReduceLogic()
    assert logic.acquisitionFromVolume(node) == {}  # not loaded from DICOM
    slicer.dicomDatabase = DICOMDatabaseStandIn([path])
    node.SetAttribute("DICOM.instanceUIDs", "1.2.826.0.1.3680043.2.1125.1")
    assert logic.acquisitionFromVolume(node) == found
    # 1.5 T written in gauss by old scanners; unknown agent and no weight: no dose estimate
    other = _write_dicom(tmp_path / "old.dcm", {"0008|0018": "1.2.826.0.1.3680043.2.1125.2", "0018|0087": "15000",
                                                "0018|0010": "contrast", "0018|1041": "10"})
    found = acquisition_from_dicom_file(other)
    assert found == {"field_strength": 1.5, "contrast_volume_ml": 10.0}
    with pytest.raises(ValueError, match="not a readable DICOM"):
        acquisition_from_dicom_file(tmp_path / "missing.dcm")


def test_pyproject_pins_satisfy_the_module_requirements():
    """The versions the project tests with (pyproject pins) lie inside the ranges the module installs."""
    import sys
    import tomllib
    from conftest import REPO
    from GadoReduceLib.module.install import PIP_REQUIREMENTS, TORCH_REQUIREMENT, unsatisfied
    pins = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    installed = {pin.split("==")[0]: pin.split("==")[1] for pin in pins}
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert unsatisfied(list(PIP_REQUIREMENTS) + [TORCH_REQUIREMENT], installed, python) == []


def test_ensure_dependencies_installs_nothing_when_complete(module, harness):
    from GadoReduceLib.module.install import dependency_plan
    assert dependency_plan(slicer_elastix=False) == {"torch": None, "pip": [], "keep": []}  # all installed here
    assert module.GadoReduceLogic.ensureDependencies(askConfirmation=False) is True


def test_sample_phantom_is_generated_locally(harness):
    """The SampleData loader adds the phantom to the real scene: three volumes on one 1 mm grid (the shipped
    model's voxel size) and the true lesions as a segmentation, without network."""
    from GadoReduceLib.model.files import default_model_path, read_header
    from GadoReduceLib.module.sample_data import SAMPLE_LESIONS, SAMPLE_SCANS, load_sample_phantom
    from test_mrml_geometry import node_matrix, node_voxels
    nodes = load_sample_phantom()
    assert [n.GetName() for n in nodes] == [name for _, name in SAMPLE_SCANS] + [SAMPLE_LESIONS]
    assert all(harness.scene.IsNodePresent(n) for n in nodes)
    pre, low, standard, lesions = nodes
    header, _ = read_header(default_model_path())  # the sample is on the shipped model's voxel size
    assert pre.GetSpacing() == pytest.approx((header["metadata"]["voxel_size_mm"],) * 3)
    assert np.allclose(node_matrix(low), node_matrix(pre)) and np.allclose(node_matrix(standard), node_matrix(pre))
    pre_a, low_a, standard_a = (node_voxels(n).astype(np.float64) for n in (pre, low, standard))
    assert pre_a.shape == low_a.shape == standard_a.shape and pre_a.ndim == 3
    # contrast: the standard dose brightens more voxels than the low dose
    assert (standard_a - pre_a > 200).sum() > (low_a - pre_a > 200).sum() > 0
    segmentation = lesions.GetSegmentation()
    names = [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())]
    assert len(names) >= 3 and all(name.startswith("lesion ") for name in names)
    assert any("ring" in name or "solid" in name for name in names)



def test_outputs_without_a_standard_dose_leave_its_node_empty(module, harness):
    """create_outputs on a finished job without a reference: every other output is a node on the pre-contrast
    grid, the registered standard dose stays None (no empty node is made)."""
    from GadoReduceLib.module.outputs import VOLUME_OUTPUTS, create_outputs
    from GadoReduceLib.inference.regions import region_statistics
    logic = module.GadoReduceLogic()
    params = logic.getParameterNode()
    pre, _ = make_oblique_node(harness.scene, name="pre")
    params.preContrast = pre
    image = logic.imageFromVolume(pre)
    labels = sitk.Image(image.GetSize(), sitk.sitkUInt16)
    labels.CopyInformation(image)
    labels[1:3, 1:3, 1:3] = 1
    images = {name: image for _, name, _, _ in VOLUME_OUTPUTS if name != "standard_dose_registered"}
    images["enhancing_labels"] = labels
    record = {"regions": region_statistics(labels, image), "lesions": []}
    nodes = create_outputs(harness.scene, params, record, images)
    assert nodes["registeredStandardDose"] is None and params.registeredStandardDose is None
    for parameter, _, _, _ in VOLUME_OUTPUTS:
        if parameter != "registeredStandardDose":
            assert nodes[parameter] is getattr(params, parameter) and nodes[parameter].GetID() != pre.GetID()
    assert params.regionTable.GetNumberOfRows() == 1
    assert params.enhancingRegions.GetSegmentation().GetNumberOfSegments() == 1


def _phantom_nodes(scene):
    """The 2 mm phantom's pre-contrast and low dose as volume nodes (real MRML)."""
    from GadoReduceLib.io.mrml import volume_node_from_image
    from GadoReduceLib.phantom.generate import PhantomConfig, generate_phantom
    case = generate_phantom(PhantomConfig(seed=3, doses=(0.25,), size="small"))
    return (volume_node_from_image(scene, case.pre_contrast, "T1 pre"),
            volume_node_from_image(scene, case.low_dose[0.25], "T1 low dose"), case)


@pytest.mark.parametrize("problem", ["identical", "nan voxels", "swapped"])
def test_image_problems_found_by_the_worker_name_the_volume(module, harness, problem):
    """The worker's validation stage (the CLI's): each error names the volume node, inputs stay bit-identical and
    no output node or job folder is left."""
    import slicer
    from GadoReduceLib.io.mrml import volume_node_from_image
    pre, low, case = _phantom_nodes(harness.scene)
    if problem == "identical":
        low = volume_node_from_image(harness.scene, case.pre_contrast, "copy of pre")
        expected = r"'copy of pre' \(lowDose\): The low-dose image is identical to the pre-contrast image"
    elif problem == "nan voxels":
        array = sitk.GetArrayFromImage(case.low_dose[0.25])
        array[10, 20, 30:35] = np.nan
        image = sitk.GetImageFromArray(array)
        image.CopyInformation(case.low_dose[0.25])
        low = volume_node_from_image(harness.scene, image, "with NaN")
        expected = r"'with NaN' \(lowDose\): The low-dose image has 5 NaN or infinite voxels"
    else:
        pre, low = low, pre
        expected = r"look swapped"
    from GadoReduceLib.io.mrml import image_from_volume_node

    def voxels(node):
        return sitk.GetArrayFromImage(image_from_volume_node(node))
    before = {n.GetName(): voxels(n) for n in (pre, low)}
    logic = module.GadoReduceLogic()
    logic.getParameterNode()  # made on first use: not an output
    count = harness.scene.GetNumberOfNodes()
    with pytest.raises(ValueError, match=expected):
        logic.process(preContrast=pre, lowDose=low, dose=0.25, fieldStrength=3.0, device="cpu")
    for node in (pre, low):
        assert np.array_equal(voxels(node), before[node.GetName()], equal_nan=True)
    assert harness.scene.GetNumberOfNodes() == count and not logic.busy
    assert not list(Path(slicer.app.temporaryPath).glob("GadoReduce-*"))


def test_flair_and_t2_selectors_feed_a_multimodal_model(module, harness, tmp_path):
    """Optional FLAIR/T2 volumes (parameters ``flair``, ``t2``): checked like the other inputs, required by a model
    trained with them (the worker's error names the sequence and the selectors; nothing is created) and recorded
    with their node names when given."""
    import json

    import torch
    from GadoReduceLib.io.mrml import volume_node_from_image
    from GadoReduceLib.model.files import save_model
    from GadoReduceLib.model.network import ConditionalUNet, ConditionNormalization, ModelConfig
    torch.manual_seed(5)
    config = ModelConfig(base_features=4, scales=2, blocks_per_scale=1, sequences=("flair", "t2"))
    model = save_model(tmp_path / "mm.pt", ConditionalUNet(config), config, ConditionNormalization(), 1.0,
                       {"name": "tiny-mm"})
    pre, low, case = _phantom_nodes(harness.scene)
    flair = volume_node_from_image(harness.scene, case.pre_contrast, "FLAIR stand-in")
    logic = module.GadoReduceLogic()
    params = logic.getParameterNode()
    far, _ = make_oblique_node(harness.scene, name="far")
    far.SetOrigin(500.0, 500.0, 500.0)
    with pytest.raises(ValueError, match=r"'far' \(t2\) do not overlap"):
        logic.process(params, preContrast=pre, lowDose=low, t2=far, dose=0.25, device="cpu", modelPath=str(model))
    count = harness.scene.GetNumberOfNodes()
    with pytest.raises(ValueError, match=r"needs the T2 image.*optional selectors in the module"):
        logic.process(params, flair=flair, t2=None)
    assert harness.scene.GetNumberOfNodes() == count and not logic.busy
    t2 = volume_node_from_image(harness.scene, case.pre_contrast, "T2 stand-in")
    out = logic.process(params, t2=t2, computeUncertainty=False)
    assert out["syntheticStandardDose"] is not None
    record = json.loads(params.runRecord.GetText())
    assert record["sequences"] == ["flair", "t2"]
    assert record["inputs"]["flair"]["node"] == "'FLAIR stand-in' (flair)"
    assert record["inputs"]["t2"]["node"] == "'T2 stand-in' (t2)"


def test_zero_dose_mode_predicts_without_a_low_dose_and_labels_every_output(module, harness, tmp_path):
    """zeroDose (the panel's *Zero-dose prediction*): the low dose is not needed (and refused when set), a low-dose
    model is refused by the worker with the fix, a zero-dose model's outputs are named zero-dose, without the low
    dose's images, and the record says so first."""
    import json

    import torch
    from GadoReduceLib.model.files import save_model
    from GadoReduceLib.model.network import ConditionalUNet, ConditionNormalization, ModelConfig
    from GadoReduceLib.pipeline import ZERO_DOSE_NOTE
    torch.manual_seed(7)
    config = ModelConfig(base_features=4, scales=2, blocks_per_scale=1, low_dose=False)
    model = save_model(tmp_path / "zero.pt", ConditionalUNet(config), config, ConditionNormalization(), 1.0,
                       {"name": "tiny-zero"})
    pre, low, _ = _phantom_nodes(harness.scene)
    logic = module.GadoReduceLogic()
    params = logic.getParameterNode()
    with pytest.raises(ValueError, match=r"takes no low-dose volume: clear Low-dose \(lowDose\)"):
        logic.process(params, preContrast=pre, lowDose=low, zeroDose=True, device="cpu")
    params.lowDose = None
    count = harness.scene.GetNumberOfNodes()
    with pytest.raises(ValueError, match=r"predicts from a low dose; give a zero-dose model"):
        logic.process(params)  # the shipped (low-dose) model
    assert harness.scene.GetNumberOfNodes() == count and not logic.busy
    params.zeroDose = False
    assert any("tick Zero-dose prediction (zeroDose)" in p for p in logic.checkInputs(params))
    out = logic.process(params, zeroDose=True, modelPath=str(model))
    assert out["beyondStandardDose"] is None and out["registeredLowDose"] is None and out["subtraction"] is None
    for name in ("syntheticStandardDose", "contrastSignal", "enhancingRegions", "regionTable"):
        assert "zero-dose" in out[name].GetName(), name
    record = json.loads(params.runRecord.GetText())
    assert record["zero_dose"] is True and record["warnings"][0] == ZERO_DOSE_NOTE
    assert "low_dose" not in record["inputs"]
