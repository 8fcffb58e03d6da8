"""What real Slicer does to the module (issue 16): dependency installs by requirement, sample data, the
SlicerElastix backend, the worker's start, the extension build's self-test. Real MRML, the real elastix
executable and real subprocesses; the Slicer-only parts are the harness's stand-ins (slicer_harness)."""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from packaging.requirements import Requirement

from slicer_harness import make_module_parent

SLICER_5_8 = {"python": "3.9", "installed": {"numpy": "1.26.4", "scipy": "1.13.1", "packaging": "24.0"}}
SLICER_5_10 = {"python": "3.12", "installed": {"numpy": "2.0.2", "scipy": "1.13.1", "packaging": "24.0"}}
"""Python and bundled packages of two Slicer generations (SuperBuild/External_python*.cmake of each branch)."""


@pytest.fixture
def module(harness):
    import GadoReduce
    return importlib.reload(GadoReduce)


def _names(requirements) -> set:
    return {Requirement(r).name for r in requirements}


# --- points 1, 2, 8: dependencies ----------------------------------------------------------

@pytest.mark.parametrize("slicer", [SLICER_5_8, SLICER_5_10], ids=["5.8-py3.9", "5.10-py3.12"])
def test_dependency_plan_per_slicer_generation(slicer):
    """Ranges that exist for that Python: scikit-image 0.24 is the last for 3.9 (0.26 needs 3.11); scipy is
    bundled and not installed; itk-elastix only without SlicerElastix; numpy is kept as bundled."""
    from GadoReduceLib.module.install import dependency_plan
    plan = dependency_plan(slicer_elastix=True, installed=slicer["installed"], python_version=slicer["python"])
    print(f"Slicer with Python {slicer['python']}: {plan}")
    assert plan["torch"] and Requirement(plan["torch"]).name == "torch"
    assert _names(plan["pip"]) == {"scikit-image"}
    skimage = Requirement(plan["pip"][0]).specifier
    if slicer["python"] == "3.9":
        assert skimage.contains("0.24.0") and not skimage.contains("0.26.0")
    else:
        assert skimage.contains("0.25.2")
    assert plan["keep"] == [f"numpy=={slicer['installed']['numpy']}"]
    without = dependency_plan(slicer_elastix=False, installed=slicer["installed"], python_version=slicer["python"])
    assert _names(without["pip"]) == {"scikit-image", "itk-elastix"}
    complete = dict(slicer["installed"], torch="2.4.0", **{"scikit-image": "0.24.0", "itk-elastix": "0.23.0"})
    assert dependency_plan(slicer_elastix=False, installed=complete, python_version=slicer["python"]) == \
        {"torch": None, "pip": [], "keep": []}
    old_torch = dict(complete, torch="1.13.1")
    assert dependency_plan(slicer_elastix=True, installed=old_torch, python_version=slicer["python"])["torch"]


def _pretend_missing(monkeypatch, *distributions):
    """importlib.metadata and find_spec as in a Slicer without these distributions (their import names too)."""
    import importlib.util
    real_version, real_find_spec = metadata.version, importlib.util.find_spec
    imports = {"itk-elastix": "itk", "scikit-image": "skimage", "torch": "torch"}

    def version(name):
        if name in distributions:
            raise metadata.PackageNotFoundError(name)
        return real_version(name)

    def find_spec(name, *args, **kwargs):
        if name in {imports.get(d, d) for d in distributions}:
            return None
        return real_find_spec(name, *args, **kwargs)
    monkeypatch.setattr(metadata, "version", version)
    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


def test_apply_proceeds_with_slicer_elastix_and_no_itk(module, harness, monkeypatch):
    """Point 1: with SlicerElastix, a Python without itk (Slicer's) needs nothing installed and Apply goes on;
    before, the final check asked for a restart at every Apply."""
    import slicer
    harness.install_extensions("Elastix", "PyTorchUtils")
    _pretend_missing(monkeypatch, "itk-elastix")
    installs, prompts = [], []
    monkeypatch.setattr(slicer.util, "pip_install", lambda requirements: installs.append(requirements))
    monkeypatch.setattr(slicer.util, "confirmOkCancelDisplay", lambda text, *a, **k: prompts.append(text) or True)
    monkeypatch.setattr(slicer.util, "infoDisplay", lambda text, *a, **k: prompts.append(text))
    assert module.GadoReduceLogic.ensureDependencies(askConfirmation=True) is True
    assert installs == [] and prompts == []


def test_one_prompt_for_torch_and_packages(module, harness, monkeypatch):
    """Points 2 and 8: torch (through the PyTorch extension, with a version requirement) and the pip packages
    (ranges, not pins) after one confirmation; before, the user confirmed twice."""
    import slicer
    from slicer_harness.extensions import PyTorchUtilsLogic
    harness.install_extensions("PyTorchUtils")  # no SlicerElastix: itk-elastix is needed too
    _pretend_missing(monkeypatch, "itk-elastix", "scikit-image", "torch")
    installs, prompts = [], []
    monkeypatch.setattr(slicer.util, "pip_install", lambda requirements: installs.append(list(requirements)))
    monkeypatch.setattr(slicer.util, "confirmOkCancelDisplay", lambda text, *a, **k: prompts.append(text) or True)
    monkeypatch.setattr(slicer.util, "infoDisplay", lambda text, *a, **k: prompts.append(text))
    result = module.GadoReduceLogic.ensureDependencies(askConfirmation=True)
    assert len(prompts) >= 1 and "PyTorch" in prompts[0] and "scikit-image" in prompts[0]
    assert PyTorchUtilsLogic.calls == [{"askConfirmation": False, "torchVersionRequirement": ">=2.0"}]
    assert len(installs) == 1 and {"scikit-image", "itk-elastix", "numpy"} == _names(installs[0])
    assert all(not Requirement(r).specifier or "==" not in str(Requirement(r).specifier) or
               Requirement(r).name == "numpy" for r in installs[0])  # ranges, not pins
    # the packages still look missing (the install was recorded, not run): restart asked, one more message
    assert result is False and len(prompts) == 2 and "restart" in prompts[1].lower()
    declined = []
    monkeypatch.setattr(slicer.util, "confirmOkCancelDisplay", lambda text, *a, **k: declined.append(text) and False)
    installs.clear()
    assert module.GadoReduceLogic.ensureDependencies(askConfirmation=True) is False and installs == []


def test_install_module_has_no_pins_and_no_invented_slicer_api():
    from GadoReduceLib.module import install
    source = Path(install.__file__).read_text()
    assert "pydeps" not in source and "pip_ensure" not in source
    assert all("==" not in r for r in install.PIP_REQUIREMENTS)


# --- point 3: sample data ------------------------------------------------------------------

def test_sample_data_registers_at_startup_and_loads_from_its_button(module, harness):
    """Point 3: registered at startupCompleted() with uris/fileNames/nodeNames lists (SampleDataSource takes
    len(uris)); the button's custom loader adds the phantom. Before: TypeError at every start-up."""
    import slicer
    from GadoReduceLib.module.sample_data import SAMPLE_LESIONS, SAMPLE_NAME, SAMPLE_SCANS
    harness.install_extensions("SampleData")
    module.GadoReduce(make_module_parent())
    slicer.app.emit("startupCompleted()")  # Slicer emits it once every module is loaded
    logic = slicer.modules.sampledata.logic()
    source = logic.sourceForSampleName(SAMPLE_NAME)
    assert source is not None and source.uris == [] and Path(source.thumbnailFileName).is_file()
    nodes = logic.clickButton(SAMPLE_NAME)
    assert [n.GetName() for n in nodes] == [name for _, name in SAMPLE_SCANS] + [SAMPLE_LESIONS]
    assert all(harness.scene.IsNodePresent(n) for n in nodes)
    with pytest.raises(IndexError):  # Slicer's downloadSample never calls a custom loader
        logic.downloadSample(SAMPLE_NAME)


def test_sample_registration_without_uris_fails_in_the_harness(harness):
    """The stand-in rejects what Slicer rejects: a registration without uris."""
    harness.install_extensions("SampleData")
    import SampleData
    with pytest.raises(TypeError):
        SampleData.SampleDataLogic.registerCustomSampleDataSource(category="X", sampleName="x",
                                                                  customDownloader=lambda source: [])


# --- point 4: the in-process SlicerElastix backend -----------------------------------------

def _moved_blob_pair():
    """A 48^3 (2 mm) image with off-centre blobs and the same image moved by a known rigid transform."""
    rng = np.random.default_rng(5)
    zz, yy, xx = np.mgrid[:48, :48, :48].astype(np.float32)
    array = np.zeros((48, 48, 48), np.float32)
    for centre, radius, value in (((20, 24, 22), 12, 400), ((30, 18, 28), 5, 900), ((14, 30, 16), 4, 700)):
        array[(zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2 < radius ** 2] = value
    array += rng.normal(0, 5, array.shape).astype(np.float32)
    fixed = sitk.GetImageFromArray(array)
    fixed.SetSpacing((2.0, 2.0, 2.0))
    fixed.SetOrigin((-47.0, -40.0, 12.0))
    centre = fixed.TransformContinuousIndexToPhysicalPoint((23.5, 23.5, 23.5))
    motion = sitk.Euler3DTransform(centre, 0.06, -0.04, 0.08, (3.0, -2.0, 1.5))
    moving = sitk.Resample(fixed, fixed, motion, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    return fixed, moving, motion.GetInverse()


def _max_point_error(transform, truth, image) -> float:
    points = [image.TransformContinuousIndexToPhysicalPoint(p) for p in
              ((8, 8, 8), (40, 8, 8), (8, 40, 40), (40, 40, 40), (24, 24, 24))]
    return max(float(np.linalg.norm(np.subtract(transform.TransformPoint(p), truth.TransformPoint(p))))
               for p in points)


@pytest.mark.skipif(shutil.which("elastix") is None or shutil.which("transformix") is None,
                    reason="the SlicerElastix stand-in runs the elastix executable (apt-get install elastix)")
def test_slicer_elastix_backend_returns_the_rigid_transform(harness, tmp_path):
    """Point 4: through SlicerElastix's registerVolumes (stand-in running the real elastix, loading the ITK
    composite file into the transform node as Slicer does) the transform matches the executable backend's;
    without the composite lines SlicerElastix loads a displacement field and GadoReduce says so instead of
    returning the identity."""
    from GadoReduceLib.preprocessing.registration import (RIGID_PARAMETER_FILE, choose_backend, parameter_file_path,
                                                          register)
    harness.install_extensions("Elastix")
    assert choose_backend("auto") == "slicer"
    fixed, moving, truth = _moved_blob_pair()
    slicer_result = register(fixed, moving, RIGID_PARAMETER_FILE, backend="slicer")
    exe_result = register(fixed, moving, RIGID_PARAMETER_FILE, backend="executable")
    assert _max_point_error(sitk.Euler3DTransform(), truth, fixed) > 3.0  # the motion is not small
    assert _max_point_error(exe_result.transform, truth, fixed) < 1.0  # a 2 mm toy image, corners
    assert _max_point_error(slicer_result.transform, exe_result.transform, fixed) < 0.05
    without = tmp_path / "rigid_without_composite.txt"
    without.write_text("\n".join(line for line in parameter_file_path(RIGID_PARAMETER_FILE).read_text().splitlines()
                                 if "WriteITKCompositeTransform" not in line))
    with pytest.raises(RuntimeError, match="non-linear transform"):
        register(fixed, moving, without, backend="slicer")
    assert harness.scene.GetNumberOfNodesByClass("vtkMRMLTransformNode") == 0  # temporary nodes removed


def test_every_parameter_file_makes_slicer_elastix_write_a_composite_transform():
    from GadoReduceLib.io.resources import resource_path
    folder = Path(resource_path("Elastix", "rigid_mattes_mi.txt")).parent
    for path in folder.glob("*.txt"):
        text = path.read_text()
        assert '(WriteITKCompositeTransform "true")' in text and '(ITKTransformOutputFileNameExtension "h5")' \
            in text, path.name


# --- point 6 and the worker start ----------------------------------------------------------

def test_worker_popen_hides_the_console_on_windows_and_decodes_utf8():
    from GadoReduceLib.module.jobs import WINDOWS_CREATE_NO_WINDOW, popen_options
    windows = popen_options("nt")
    assert windows["creationflags"] & WINDOWS_CREATE_NO_WINDOW
    assert windows["startupinfo"].dwFlags & 1 and windows["startupinfo"].wShowWindow == 0
    assert windows["encoding"] == "utf-8" and windows["errors"] == "replace"
    posix = popen_options("posix")
    assert posix["start_new_session"] and posix["errors"] == "replace" and "startupinfo" not in posix


def test_undecodable_worker_output_does_not_stop_the_progress(tmp_path):
    """A worker line with bytes that are not UTF-8 (a Windows code page path, say) is read with replacement
    characters; the progress lines after it still arrive. Before, the reader thread died on it."""
    from GadoReduceLib.module.jobs import BackgroundJob
    fake = tmp_path / "fake-python"
    fake.write_text("#!/bin/sh\nprintf 'path C:\\\\\\377\\376\\\\x.nrrd\\nPROGRESS 50.0 half way\\n'\n")
    fake.chmod(0o755)
    job = BackgroundJob(tmp_path, python=str(fake))
    job.process.wait(timeout=30)
    job._reader.join(timeout=5)
    job.poll()
    assert any("\ufffd" in line for line in job.lines)
    assert job.fraction == pytest.approx(0.5) and job.message == "half way"


def test_subject_hierarchy_items_come_with_new_nodes_as_in_slicer(harness):
    """The harness gives new data nodes their subject hierarchy item, as Slicer's plugin logic does; parameter
    nodes (hidden from editors) get none."""
    import slicer
    shnode = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(harness.scene)
    volume = harness.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "volume")
    assert shnode.GetItemParent(shnode.GetItemByDataNode(volume)) == shnode.GetSceneItemID()
    hidden = harness.scene.CreateNodeByClass("vtkMRMLScalarVolumeNode")
    hidden.SetHideFromEditors(True)
    harness.scene.AddNode(hidden)
    hidden.UnRegister(None)
    assert not shnode.GetItemByDataNode(hidden)
    assert shnode.GetItemByDataNode(harness.scene.AddNewNodeByClass("vtkMRMLTableNode", "table"))


def test_outputs_go_into_the_input_study_unless_moved_by_the_user(harness):
    """Worker inputs come from the study of the pre-contrast; outputs are placed there; an output the user has
    moved into a folder of their own stays there on a re-run; a pre-contrast without an item changes nothing."""
    import slicer

    from GadoReduceLib.module.outputs import place_in_study
    scene = harness.scene
    shnode = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    study = shnode.CreateStudyItem(shnode.CreateSubjectItem(shnode.GetSceneItemID(), "Patient"), "MR brain")
    pre = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "pre")
    shnode.SetItemParent(shnode.GetItemByDataNode(pre), study)
    signal, table = (scene.AddNewNodeByClass(c, n) for c, n in (("vtkMRMLScalarVolumeNode", "signal"),
                                                                  ("vtkMRMLTableNode", "table")))
    place_in_study(pre, [signal, table, None])
    assert [shnode.GetItemParent(shnode.GetItemByDataNode(n)) for n in (signal, table)] == [study, study]
    folder = shnode.CreateFolderItem(shnode.GetSceneItemID(), "my results")
    shnode.SetItemParent(shnode.GetItemByDataNode(table), folder)
    place_in_study(pre, [signal, table])
    assert shnode.GetItemParent(shnode.GetItemByDataNode(table)) == folder
    shnode.RemoveItem(shnode.GetItemByDataNode(pre), False, False)
    loose = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "loose")
    place_in_study(pre, [loose])
    assert shnode.GetItemParent(shnode.GetItemByDataNode(loose)) == shnode.GetSceneItemID()


def test_python_slicer_is_found_beside_the_application(tmp_path, monkeypatch):
    from GadoReduceLib.module.jobs import python_executable
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    python_slicer = bin_dir / "PythonSlicer"
    python_slicer.write_text("#!/bin/sh\n")
    python_slicer.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(bin_dir / "SlicerApp-real"))
    assert python_executable() == str(python_slicer)
    python_slicer.unlink()
    monkeypatch.setenv("PATH", "/nonexistent")
    assert python_executable() == str(bin_dir / "SlicerApp-real")


# --- point 7: the extension build's generic test -------------------------------------------

def test_self_test_skips_the_phantom_flow_by_default(module, harness, monkeypatch):
    """Point 7: the ctest of the extension build (no torch there, no time for minutes of CPU) runs only the quick
    test unless GADOREDUCE_FULL_SELF_TEST=1; before, runTest always ran the phantom flow."""
    test = module.GadoReduceTest()
    ran = []
    monkeypatch.setattr(test, "test_phantom_process", lambda: ran.append("phantom"))
    monkeypatch.delenv("GADOREDUCE_FULL_SELF_TEST", raising=False)
    test.runTest()
    assert ran == []
    monkeypatch.setenv("GADOREDUCE_FULL_SELF_TEST", "1")
    _pretend_missing(monkeypatch, "torch")
    test.runTest()
    assert ran == []  # no torch: still skipped
    monkeypatch.undo()
    monkeypatch.setattr(test, "test_phantom_process", lambda: ran.append("phantom"))
    monkeypatch.setenv("GADOREDUCE_FULL_SELF_TEST", "1")
    test.runTest()
    assert ran == ["phantom"]


def test_cmake_gates_the_full_self_test():
    from conftest import MODULE_DIR
    text = (MODULE_DIR / "CMakeLists.txt").read_text()
    assert "option(GadoReduce_FULL_SELF_TEST" in text and "OFF)" in text
    assert "GADOREDUCE_FULL_SELF_TEST=1" in text and "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in text


# --- module reload --------------------------------------------------------------------------

def test_reload_loads_the_library_afresh(tmp_path):
    """Reload and Test reloads GadoReduceLib's submodules (MONAIAuto3DSeg's onReload does the same for its
    Lib), in a subprocess so that this test process keeps its modules."""
    from conftest import MODULE_DIR
    code = ("import GadoReduceLib.module.inputs as a, GadoReduceLib.physics.agents as b\n"
            "from GadoReduceLib.module.reload import reload_library\n"
            "names = reload_library()\n"
            "import sys\n"
            "assert sys.modules['GadoReduceLib.module.inputs'] is not a and "
            "sys.modules['GadoReduceLib.physics.agents'] is not b\n"
            "assert 'GadoReduceLib.module.inputs' in names and names[0] == 'GadoReduceLib'\n"
            "print('reloaded', len(names))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                         env={"PYTHONPATH": str(MODULE_DIR), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("reloaded")
