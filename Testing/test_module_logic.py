"""The Slicer module's logic on real MRML (stand-ins only for the application, see slicer_harness)."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from slicer_harness import make_module_parent
from test_mrml_geometry import make_oblique_node, node_matrix, node_voxels


@pytest.fixture
def module(harness):
    import GadoReduce
    return importlib.reload(GadoReduce)


def test_module_metadata_says_research_use_and_citation(module):
    parent = make_module_parent()
    module.GadoReduce(parent)
    assert parent.title == "GadoReduce"
    assert "not for diagnosis" in parent.helpText.lower() or "must not be used for diagnosis" in parent.helpText
    assert "arXiv:2403.03539" in parent.acknowledgementText


def test_parameter_node_stores_values_and_references_in_the_scene(module, harness):
    logic = module.GadoReduceLogic()
    params = logic.getParameterNode()
    assert params.dose == pytest.approx(0.33) and params.fieldStrength == 3.0 and params.agent == "gadobutrol"
    pre, _ = make_oblique_node(harness.scene, name="pre")
    params.preContrast = pre
    params.dose = 0.1
    raw = harness.scene.GetSingletonNode("GadoReduce", "vtkMRMLScriptedModuleNode")
    assert raw.GetNodeReferenceID("preContrast") == pre.GetID()
    assert raw.GetParameter("dose") == "0.1"
    assert logic.getParameterNode().preContrast is pre  # the same singleton node is found again
    # the faithful parameter node refuses what Slicer's does, with Slicer's messages
    with pytest.raises(ValueError, match=r"Value must be within range \[0.01, 1.0\], is 1.5"):
        params.dose = 1.5
    with pytest.raises(TypeError, match="Value must be of type"):
        params.dose = "0.33"
    with pytest.raises(ValueError, match="must be in one of the following"):
        params.agent = "water"
    with pytest.raises(TypeError, match="Value must be of type"):
        params.modelPath = "/some/model.pt"  # a pathlib.Path parameter
    assert raw.GetParameter("dose") == "0.1" and params.agent == "gadobutrol"


def test_logic_converts_nodes_without_touching_inputs(module, harness):
    logic = module.GadoReduceLogic()
    node, array = make_oblique_node(harness.scene, name="pre")
    matrix = node_matrix(node)
    image = logic.imageFromVolume(node)
    copy = logic.volumeFromImage(image, "pre copy")
    assert np.array_equal(node_voxels(copy), array) and np.allclose(node_matrix(copy), matrix)
    again = logic.volumeFromImage(image * 2, "ignored", node=copy)
    assert again is copy and np.array_equal(node_voxels(copy), array * 2)
    assert np.array_equal(node_voxels(node), array) and np.allclose(node_matrix(node), matrix)
    labels = logic.volumeFromImage(image > 500, "mask", labelmap=True)
    assert labels.IsA("vtkMRMLLabelMapVolumeNode")


def test_check_inputs_names_each_problem(module, harness):
    from vtkmodules.vtkCommonDataModel import vtkImageData
    logic = module.GadoReduceLogic()
    params = logic.getParameterNode()
    problems = logic.checkInputs(params)
    assert any("preContrast" in p for p in problems) and any("lowDose" in p for p in problems)

    pre, _ = make_oblique_node(harness.scene, name="pre")
    low, _ = make_oblique_node(harness.scene, name="low")
    params.preContrast, params.lowDose = pre, low
    assert logic.checkInputs(params) == []

    params.lowDose = pre
    assert any("two different volumes" in p for p in logic.checkInputs(params))

    flat = harness.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "flat")
    image_data = vtkImageData()
    image_data.SetDimensions(8, 8, 1)
    image_data.AllocateScalars(10, 1)  # VTK_FLOAT
    flat.SetAndObserveImageData(image_data)
    params.lowDose = flat
    assert any("'flat' (lowDose) is 2D" in p for p in logic.checkInputs(params))

    far, _ = make_oblique_node(harness.scene, name="far")
    far.SetOrigin(500.0, 500.0, 500.0)
    params.lowDose = far
    assert any("do not overlap" in p for p in logic.checkInputs(params))


def test_self_test_runs_on_real_mrml(module):
    """The self-test's volume round trip (its phantom flow needs the model: test_module_process.py covers it)."""
    test = module.GadoReduceTest()
    test.setUp()
    test.test_volume_round_trip()  # raises on failure


def test_self_test_phantom_flow_runs_on_real_mrml(module):
    """The self-test's phantom flow (what Reload and Test runs inside Slicer) with the shipped model: sample
    phantom, process(), outputs, unchanged inputs, one region per enhancing lesion, virtual dose (a few minutes)."""
    from GadoReduceLib.model.files import ModelFileError, default_model_path
    try:
        default_model_path()
    except ModelFileError as error:
        pytest.skip(f"no shipped model: {error}")
    test = module.GadoReduceTest()
    test.setUp()
    test.test_phantom_process()  # raises on failure


def test_harness_leaves_no_stand_ins_behind(_harness_session):
    """Outside the `harness` fixture, slicer is plain slicer-core: no application object."""
    import sys

    import slicer
    assert not hasattr(slicer, "app") and "qt" not in sys.modules
