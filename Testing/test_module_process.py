"""The module's process() on a phantom case, end to end on real MRML (worker process, CNN, regions).

One run (module-scoped fixture, background mode polled as the panel does) shared by all tests. The model is
the shipped default (``GadoReduce/Resources/Models/gadoreduce_default.pt``); GADOREDUCE_TEST_MODEL overrides
it (development). Research software: the phantom's results are no clinical evidence.
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
import SimpleITK as sitk

from GadoReduceLib.phantom.truth import PHANTOM_THRESHOLD_SIGMAS as THRESHOLD_SIGMAS
from GadoReduceLib.inference.regions import LARGE_LESION_MM3
from test_mrml_geometry import node_matrix, node_voxels

OUTPUT_VOLUMES = ("syntheticStandardDose", "beyondStandardDose", "contrastSignal", "subtraction",
                  "registeredLowDose", "registeredStandardDose", "virtualDoseVolume", "uncertainty")


def _model_path() -> str:
    override = os.environ.get("GADOREDUCE_TEST_MODEL", "")
    if override:
        return override
    from GadoReduceLib.model.files import ModelFileError, default_model_path
    try:
        default_model_path()
    except ModelFileError as error:
        pytest.skip(f"no trained model: {error} (set GADOREDUCE_TEST_MODEL to a model file)")
    return ""  # the shipped default


@pytest.fixture(scope="module")
def processed(_harness_session):
    """Phantom case (1 mm, the default model's voxel size) with truth lesion segmentation, processed once in
    background mode."""
    from GadoReduceLib.module.sample_data import sample_phantom_case, sample_phantom_nodes
    model = _model_path()
    harness = _harness_session
    harness.install()
    harness.clear()
    if shutil.which("elastix"):  # as inside Slicer: SlicerElastix's elastix, a worker Python without itk
        harness.install_extensions("Elastix")
        harness.hide_from_subprocesses("itk")
    import GadoReduce
    module = importlib.reload(GadoReduce)
    case = sample_phantom_case(seed=2)  # the sample phantom's recipe, another seed than the self-test's
    scene = harness.scene
    pre, low, standard, lesions = sample_phantom_nodes(scene, case)
    import slicer  # the inputs in a patient and study, as the DICOM module loads them
    shnode = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    study = shnode.CreateStudyItem(shnode.CreateSubjectItem(shnode.GetSceneItemID(), "Phantom patient"), "MR brain")
    for node in (pre, low, standard, lesions):
        shnode.SetItemParent(shnode.GetItemByDataNode(node), study)
    inputs = {n.GetName(): (node_voxels(n).copy(), node_matrix(n)) for n in (pre, low, standard)}
    logic = module.GadoReduceLogic()
    params = logic.getParameterNode()
    messages = []
    job = logic.process(params, progress=lambda f, m: messages.append((f, m)), background=True,
                        preContrast=pre, lowDose=low, standardDose=standard, lesionSegmentation=lesions,
                        dose=0.33, fieldStrength=3.0, agent="gadobutrol", modelPath=model, device="cpu",
                        thresholdSigmas=THRESHOLD_SIGMAS, computeUncertainty=True)
    folder = job.folder
    start = time.monotonic()
    while not logic.pollJob():
        assert time.monotonic() - start < 600, "process() took more than 10 minutes"
        time.sleep(0.2)
    yield {"module": module, "logic": logic, "params": params, "case": case, "inputs": inputs,
           "messages": messages, "scene": scene, "folder": folder, "pre": pre, "low": low, "standard": standard,
           "study": study}
    harness.clear()
    harness.uninstall()


@pytest.mark.skipif(shutil.which("elastix") is None, reason="needs the elastix executable (apt-get install elastix)")
def test_worker_ran_as_in_slicer_without_itk(processed):
    """The worker ran with SlicerElastix's elastix executable in a Python that cannot import itk (PythonSlicer
    has none), as the module runs inside Slicer with SlicerElastix."""
    record = processed["logic"].lastResult["record"]
    assert record["registration_backend"] == "executable"
    probe = subprocess.run([sys.executable, "-c", "import itk"], capture_output=True, text=True)
    assert probe.returncode != 0 and "hidden, as in PythonSlicer" in probe.stderr


def test_outputs_are_new_nodes_on_the_pre_contrast_geometry(processed):
    params, pre = processed["params"], processed["pre"]
    fractions = [f for f, _ in processed["messages"]]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert not processed["folder"].exists(), "the job folder is removed after the run"
    inputs = {pre.GetID(), processed["low"].GetID(), processed["standard"].GetID()}
    for name in OUTPUT_VOLUMES:
        node = getattr(params, name)
        assert node is not None and node.GetID() not in inputs, name
        assert np.allclose(node_matrix(node), node_matrix(pre), atol=1e-9), name
        assert node_voxels(node).shape == node_voxels(pre).shape, name
        assert np.isfinite(node_voxels(node)).all(), name
    synthetic = node_voxels(params.syntheticStandardDose)
    signal = node_voxels(params.contrastSignal)
    assert np.allclose(synthetic, node_voxels(pre) + signal, rtol=1e-3, atol=1e-2 * np.abs(synthetic).max())
    assert params.enhancingRegions.GetSegmentation().GetNumberOfSegments() == params.regionTable.GetNumberOfRows()
    # the normalized subtraction is noise-like (about sigma) in healthy brain and bright in the lesions
    z = node_voxels(params.subtraction)
    sigma = processed["logic"].lastResult["record"]["noise_sigma_normalized"]
    truth = sitk.GetArrayFromImage(processed["case"].lesion_labels)
    brain = sitk.GetArrayFromImage(processed["case"].brain_mask) > 0
    lesions = processed["case"].parameters["lesions"]
    enhancing = np.isin(truth, [lesion["label"] for lesion in lesions if lesion["type"] != "non_enhancing"])
    assert np.median(z[brain & (truth == 0)]) == pytest.approx(0, abs=sigma)
    assert z[enhancing].mean() > 3 * sigma


def test_outputs_are_placed_in_the_input_study(processed):
    """Every output node (volumes, regions, tables) is in the pre-contrast's study in the subject hierarchy, as
    Slicer's modules place their results; the inputs stay where they were."""
    import slicer

    from GadoReduceLib.module.outputs import SEGMENT_STATISTICS_REFERENCE
    params, study = processed["params"], processed["study"]
    shnode = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(processed["scene"])
    outputs = [getattr(params, name) for name in OUTPUT_VOLUMES + ("enhancingRegions", "regionTable", "lesionTable")]
    outputs.append(params.enhancingRegions.GetNodeReference(SEGMENT_STATISTICS_REFERENCE))
    outputs = [node for node in outputs if node is not None]
    assert len(outputs) >= len(OUTPUT_VOLUMES) + 3
    placed = {node.GetName(): shnode.GetItemParent(shnode.GetItemByDataNode(node)) for node in outputs}
    assert placed == {name: study for name in placed}, placed
    assert all(shnode.GetItemParent(shnode.GetItemByDataNode(processed[key])) == study
               for key in ("pre", "low", "standard"))


def test_the_run_record_is_in_the_scene(processed):
    """The worker's record reaches the scene as a JSON text node in the study: acquisition values, the inputs by
    node name with the sha256 and geometry of what the worker read, the model's sha256, seconds per stage."""
    import json

    import slicer
    params = processed["params"]
    record = json.loads(params.runRecord.GetText())
    assert record["acquisition"]["dose"] == {"value": 0.33, "source": "argument"}
    assert record["inputs"]["pre_contrast"]["node"].startswith(f"'{processed['pre'].GetName()}'")
    assert len(record["inputs"]["low_dose"]["sha256"]) == 64 and "path" not in record["inputs"]["low_dose"]
    assert record["inputs"]["pre_contrast"]["geometry"]["size"] == list(processed["pre"].GetImageData().GetDimensions())
    assert len(record["model_sha256"]) == 64 and record["stages"]["network"]["seconds"] > 0
    shnode = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(processed["scene"])
    assert shnode.GetItemParent(shnode.GetItemByDataNode(params.runRecord)) == processed["study"]


def test_uncertainty_overlay_and_region_column(processed):
    """computeUncertainty: the uncertainty volume (the spread over 4 flipped passes, input units) has its heat colour
    map, is 0 outside the head's tissue like the contrast signal, and each region's mean is in the table."""
    from GadoReduceLib.inference.region_defaults import UNCERTAINTY_TTA
    from GadoReduceLib.module.outputs import UNCERTAINTY_COLOR_NODE
    params, logic = processed["params"], processed["logic"]
    node = params.uncertainty
    assert node.GetName() == f"{processed['pre'].GetName()} uncertainty"
    assert node.GetDisplayNode().GetColorNodeID() == UNCERTAINTY_COLOR_NODE
    spread, signal = node_voxels(node), node_voxels(params.contrastSignal)
    assert spread.min() >= 0 and spread.max() > 0 and (spread[signal == 0] == 0).mean() > 0.99
    assert node.GetDisplayNode().GetWindow() == pytest.approx(2 * node.GetDisplayNode().GetLevel())  # from 0
    import json
    assert json.loads(params.runRecord.GetText())["passes"] == UNCERTAINTY_TTA
    table = params.regionTable
    column = table.GetColumnIndex("mean_uncertainty")
    assert column >= 0 and table.GetColumnUnitLabel("mean_uncertainty") == "input units"
    means = [float(table.GetCellText(r, column)) for r in range(table.GetNumberOfRows())]
    assert means and all(0 <= m <= spread.max() for m in means)
    logic.showOverlay(params, "uncertainty")  # headless: no slice views, and no error


def test_inputs_are_bit_identical(processed):
    for node in (processed["pre"], processed["low"], processed["standard"]):
        voxels, matrix = processed["inputs"][node.GetName()]
        assert np.array_equal(node_voxels(node), voxels) and np.array_equal(node_matrix(node), matrix)


def _enhancing_lesions(case, min_volume_mm3):
    from GadoReduceLib.phantom.truth import enhancing_lesions
    return [lesion for lesion in enhancing_lesions(case.parameters["lesions"])
            if lesion["enhancing_volume_mm3"] >= min_volume_mm3]


def _region_outputs(processed) -> tuple[np.ndarray, dict]:
    from GadoReduceLib.module.outputs import region_outputs
    params = processed["params"]
    return region_outputs(params.enhancingRegions, params.regionTable, processed["pre"])


def _truth_problems(regions: np.ndarray, volumes: dict, case, min_volume_mm3: float) -> list:
    """regions.truth_problems against the phantom's enhancing lesions (the check the self-test makes too)."""
    from GadoReduceLib.phantom.truth import phantom_truth_volumes
    from GadoReduceLib.inference.regions import truth_problems
    return truth_problems(regions, volumes, sitk.GetArrayFromImage(case.lesion_labels),
                          phantom_truth_volumes(case, min_volume_mm3))


def test_truth_check_can_fail():
    """truth_problems reports a missed lesion, two lesions in one region and a wrong volume."""
    from GadoReduceLib.inference.regions import truth_problems
    truth = np.zeros((4, 40, 40), np.uint16)
    truth[:, 2:20, 2:20], truth[:, 25:30, 25:30] = 1, 2  # 1296 and 100 voxels
    exact = truth.copy()
    volumes = {1: 1296.0, 2: 100.0}
    assert truth_problems(exact, {1: 1296.0, 2: 100.0}, truth, volumes) == []
    assert truth_problems(exact, {1: 1296.0 * 1.3, 2: 100.0}, truth, volumes) == [
        "lesion 1: region volume 1685 mm^3 vs 1296 mm^3 true (+30 %, limit 20 %)"]
    assert truth_problems(exact, {1: 1296.0, 2: 50.0}, truth, volumes) == []  # small: only found
    merged = (truth > 0).astype(np.uint16)
    assert truth_problems(merged, {1: 1396.0}, truth, volumes) == ["lesions 1 and 2 share region 1"]
    missed = np.where(truth == 2, 0, truth)
    assert truth_problems(missed, {1: 1296.0}, truth, volumes) == ["lesion 2 lies in 0 regions, not 1"]


def test_criteria_hold_for_the_measured_standard_dose(processed):
    """The region criteria below are reachable: the measured standard dose (registered, minus the pre-contrast
    scan: what the model is trained to reproduce) meets them at the same threshold."""
    from GadoReduceLib.io.mrml import image_from_volume_node
    from GadoReduceLib.inference.regions import enhancing_regions, region_statistics
    case, params = processed["case"], processed["params"]
    sigma = processed["logic"].lastResult["record"]["noise_sigma"]
    reference = (sitk.Cast(image_from_volume_node(params.registeredStandardDose), sitk.sitkFloat32)
                 - sitk.Cast(image_from_volume_node(processed["pre"]), sitk.sitkFloat32))
    labels = enhancing_regions(reference, sigma, case.brain_mask, params.thresholdSigmas, params.minRegionVolume)
    rows = region_statistics(labels, reference)
    assert _truth_problems(sitk.GetArrayFromImage(labels), {r["label"]: r["volume_mm3"] for r in rows}, case,
                           params.minRegionVolume) == []


@pytest.mark.xfail(strict=True, reason="known gap of the shipped narrow CPU-trained model (issue 6): its contrast "
                   "signal is blurred and too low (c^ 0.78-0.87 at 33 % on held-out BraTS), so at the 12-sigma region "
                   "threshold ring lesion 7 of this phantom gives 1613 mm^3 for 1106 mm^3 of truth (+46 %, limit "
                   "20 %; at 15 sigma ring lesion 6 gives -38 %). The measured standard dose meets the criterion "
                   "(test above; scripts/region_threshold_study.py: 20/20 large lesions of 7 other phantoms at 12 "
                   "sigma, the model 16/20). strict: a model that meets it makes this test fail until the marker "
                   "is removed.")
def test_one_segment_per_enhancing_lesion(processed):
    params = processed["params"]
    segmentation = params.enhancingRegions.GetSegmentation()
    names = {segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())}
    assert len(names) == segmentation.GetNumberOfSegments(), "segments have distinct names"
    regions, volumes = _region_outputs(processed)
    assert _truth_problems(regions, volumes, processed["case"], params.minRegionVolume) == []


def test_region_table_rows_and_plausible_values(processed):
    params, case = processed["params"], processed["case"]
    table = params.regionTable
    columns = [table.GetColumnName(c) for c in range(table.GetNumberOfColumns())]
    for column in ("label", "volume_mm3", "centroid_ras_R", "centroid_ras_A", "centroid_ras_S",
                   "mean_contrast_signal", "max_contrast_signal", "c_bar", "c_hat"):
        assert column in columns, column
    assert table.GetColumnUnitLabel("volume_mm3") == "mm3"
    values = {c: np.array([float(table.GetCellText(r, columns.index(c))) for r in range(table.GetNumberOfRows())])
              for c in ("label", "volume_mm3", "mean_contrast_signal", "max_contrast_signal", "centroid_ras_R",
                        "centroid_ras_A", "centroid_ras_S", "c_bar")}
    assert table.GetNumberOfRows() == processed["params"].enhancingRegions.GetSegmentation().GetNumberOfSegments()
    assert (values["volume_mm3"] >= params.minRegionVolume).all()
    sigma = processed["logic"].lastResult["record"]["noise_sigma"]
    assert (values["mean_contrast_signal"] > params.thresholdSigmas * sigma).all()
    assert (values["max_contrast_signal"] >= values["mean_contrast_signal"]).all()
    regions, _ = _region_outputs(processed)
    truth = sitk.GetArrayFromImage(case.lesion_labels)
    lesions = _enhancing_lesions(case, LARGE_LESION_MM3)
    assert lesions, "the test phantom has large enhancing lesions"
    for lesion in lesions:
        overlap = regions[truth == lesion["label"]]
        overlap = overlap[overlap > 0]
        assert overlap.size, f"lesion {lesion['label']} has no region"
        row = int(np.flatnonzero(values["label"] == np.bincount(overlap).argmax())[0])
        centroid = np.array([values[f"centroid_ras_{a}"][row] for a in "RAS"])
        # ring and glioblastoma-like lesions: the enhancing rim's centroid is near the lesion centre
        assert np.linalg.norm(centroid - np.array(lesion["centre_ras_mm"])) < lesion["diameter_mm"] / 2
        # against the real standard dose: the predicted signal sum is within a factor 2 of the true one
        assert 0.5 < values["c_bar"][row] < 2.0


def test_lesion_table_reports_cnr_lbr_cep(processed):
    params = processed["params"]
    table = params.lesionTable
    assert table is not None and table.GetNumberOfRows() == len(processed["case"].parameters["lesions"])
    columns = [table.GetColumnName(c) for c in range(table.GetNumberOfColumns())]
    for metric in ("cnr", "lbr", "cep"):
        for image in ("low_dose", "synthetic_standard_dose", "standard_dose"):
            assert f"{metric}_{image}" in columns
    cnr = {image: np.array([float(table.GetCellText(r, columns.index(f"cnr_{image}")))
                            for r in range(table.GetNumberOfRows())])
           for image in ("low_dose", "synthetic_standard_dose")}
    from GadoReduceLib.phantom.truth import enhancing_lesions
    lesions = processed["case"].parameters["lesions"]
    enhancing = [i for i, lesion in enumerate(lesions) if lesion in enhancing_lesions(lesions)]
    # the synthetic standard dose shows enhancing lesions with more contrast than the low dose
    assert (cnr["synthetic_standard_dose"][enhancing] > cnr["low_dose"][enhancing]).all()


def test_virtual_dose_slider(processed):
    logic, params, pre = processed["logic"], processed["params"], processed["pre"]
    node = logic.setVirtualDose(0.0, params)
    assert node is params.virtualDoseVolume
    assert np.allclose(node_voxels(node), node_voxels(pre).astype(np.float32))
    logic.setVirtualDose(1.0, params)
    synthetic = node_voxels(params.syntheticStandardDose)
    assert np.allclose(node_voxels(node), synthetic, atol=1e-3 * np.abs(synthetic).max())
    logic.setVirtualDose(2.0, params)
    expected = node_voxels(pre) + 2 * node_voxels(params.contrastSignal)
    assert np.allclose(node_voxels(node), expected, atol=1e-3 * np.abs(expected).max())
    with pytest.raises(ValueError, match="virtualDose"):
        logic.setVirtualDose(2.5, params)


def test_scene_saved_as_mrb_contains_every_output(processed, tmp_path):
    from slicer_harness import Harness
    params, scene = processed["params"], processed["scene"]
    outputs = {name: getattr(params, name) for name in (*OUTPUT_VOLUMES, "enhancingRegions", "regionTable",
                                                        "lesionTable")}
    path = str(tmp_path / "gadoreduce.mrb")
    assert scene.WriteToMRB(path)
    scene2 = Harness().scene
    assert scene2.ReadFromMRB(path)
    for name, node in outputs.items():
        again = scene2.GetNodeByID(node.GetID())
        assert again is not None and again.GetName() == node.GetName(), name
        if node.IsA("vtkMRMLScalarVolumeNode"):
            assert np.allclose(node_voxels(again), node_voxels(node), atol=1e-4 * np.abs(node_voxels(node)).max())
            assert np.allclose(node_matrix(again), node_matrix(node), atol=1e-6)
    segments = scene2.GetNodeByID(outputs["enhancingRegions"].GetID()).GetSegmentation()
    assert segments.GetNumberOfSegments() == outputs["enhancingRegions"].GetSegmentation().GetNumberOfSegments()
    assert scene2.GetNodeByID(outputs["regionTable"].GetID()).GetNumberOfRows() == \
        outputs["regionTable"].GetNumberOfRows()
    # the parameter node (with its references to the outputs) is saved too
    raw = scene2.GetSingletonNode("GadoReduce", "vtkMRMLScriptedModuleNode")
    assert raw is not None and raw.GetNodeReferenceID("contrastSignal") == outputs["contrastSignal"].GetID()


def test_outputs_are_reused_not_duplicated(processed):
    """Writing results again (as a second Apply does) reuses every output node."""
    from GadoReduceLib.module import outputs as module_outputs
    logic, params, scene = processed["logic"], processed["params"], processed["scene"]
    ids = {name: getattr(params, name).GetID() for name in (*OUTPUT_VOLUMES, "enhancingRegions", "regionTable")}
    count = scene.GetNumberOfNodes()
    images = {image_name: logic.imageFromVolume(getattr(params, parameter))
              for parameter, image_name, _, _ in module_outputs.VOLUME_OUTPUTS}
    images["enhancing_labels"], _ = module_outputs.labels_from_segmentation(params.enhancingRegions, processed["pre"])
    segments = params.enhancingRegions.GetSegmentation().GetNumberOfSegments()
    rows = [{"label": 1, "volume_mm3": 5.0}]
    module_outputs.create_outputs(scene, params, {"regions": rows, "lesions": []}, images)
    assert scene.GetNumberOfNodes() == count
    assert {name: getattr(params, name).GetID() for name in ids} == ids
    assert params.enhancingRegions.GetSegmentation().GetNumberOfSegments() == segments
    assert params.regionTable.GetNumberOfRows() == 1
