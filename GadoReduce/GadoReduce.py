"""GadoReduce: gadolinium dose reduction for brain MRI (3D Slicer scripted module).

A thin shell over GadoReduceLib (the core, importable without Slicer): the logic converts MRML nodes to images and
back and calls into the core; inputs are never modified."""

import logging
import os
import pathlib
from typing import Annotated, Optional

import vtk

import slicer
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.ScriptedLoadableModule import *  # noqa: F403
from slicer.util import VTKObservationMixin
from slicer.parameterNodeWrapper import parameterNodeWrapper, Choice, WithinRange
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode, vtkMRMLTableNode, vtkMRMLTextNode

from GadoReduceLib import DISCLAIMER
from GadoReduceLib.physics.agents import DEFAULT_AGENT
from GadoReduceLib.inference.region_defaults import DEFAULT_MIN_VOLUME_MM3, DEFAULT_THRESHOLD_SIGMAS
from GadoReduceLib.module.inputs import DOSE_RANGE, FIELD_STRENGTH_RANGE, agent_names, shipped_model_path

CITATION = (
    "Pinetz T, Kobler E, Haase R, Luetkens JA, Meetschen M, Haubold J, Deuschl C, Radbruch A, "
    "Deike K, Effland A. Gadolinium dose reduction for brain MRI using conditional deep learning. "
    "arXiv:2403.03539, 2024."
)


# GadoReduce

class GadoReduce(ScriptedLoadableModule):  # noqa: F405
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)  # noqa: F405
        self.parent.title = _("GadoReduce")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Filtering")]
        self.parent.dependencies = []
        self.parent.contributors = ["GadoReduce developers"]
        self.parent.helpText = _(
            "Predicts the contrast signal a standard dose of a gadolinium-based contrast agent would give, from a "
            "pre-contrast T1w scan and a low-dose contrast-enhanced T1w scan (10-33 % of the standard dose; none with "
            "a zero-dose model): rigid and radiometric registration, a noise-normalized subtraction and a CNN "
            "conditioned on dose, field strength, agent relaxivity and noise (Pinetz, Kobler et al. 2024).<br><br><b>"
        ) + DISCLAIMER + "</b><br><br>" + _("See the README: https://github.com/gadoreduce/SlicerGadoReduce")
        self.parent.acknowledgementText = _("If you use GadoReduce, please cite the method paper: ") + CITATION
        # the sample phantom in Sample Data, once every module (SampleData too) is loaded
        from GadoReduceLib.module.sample_data import register_sample_data
        icon = os.path.join(os.path.dirname(__file__), "Resources", "Icons", "GadoReduce.png")
        slicer.app.connect("startupCompleted()", lambda: register_sample_data(icon))


# GadoReduceParameterNode

@parameterNodeWrapper
class GadoReduceParameterNode:
    """Module parameters, saved with the scene.

    preContrast, lowDose: input volumes (never modified); standardDose, lesionSegmentation: optional references;
    flair, t2: optional FLAIR and T2 volumes of the same session, for a model trained with them (papers 002/003).
    dose: fraction of the standard dose, 0.01-1 (0.33 = 33 %); fieldStrength: tesla, 1-3.5; agent: generic name
    (one of the panel's list); modelPath: model file (.pt), default the shipped model; device: auto, cpu or cuda.
    Every value is bound to its widget both ways (connectGui): values set from the console show and stay.
    thresholdSigmas, minRegionVolume: enhancing regions above this many noise sigmas and mm^3; computeUncertainty:
    also the uncertainty map (the spread over mirrored passes or ensemble members, GadoReduceLib.inference.uncertainty);
    zeroDose: predict without a low dose (lowDose empty, dose unused) with a zero-dose model, outputs labelled so.
    syntheticStandardDose, beyondStandardDose, contrastSignal, subtraction, registeredLowDose,
    registeredStandardDose (with a standard dose only), virtualDoseVolume, uncertainty (with computeUncertainty),
    enhancingRegions, regionTable, lesionTable, runRecord (the run's record as JSON text): outputs (created when empty).
    virtualDose: the virtual-dose slider, x_PC + virtualDose * contrast signal, 0 to 2.
    """

    preContrast: vtkMRMLScalarVolumeNode
    lowDose: vtkMRMLScalarVolumeNode
    standardDose: vtkMRMLScalarVolumeNode
    lesionSegmentation: vtkMRMLSegmentationNode
    flair: vtkMRMLScalarVolumeNode
    t2: vtkMRMLScalarVolumeNode
    dose: Annotated[float, WithinRange(*DOSE_RANGE)] = 0.33
    fieldStrength: Annotated[float, WithinRange(*FIELD_STRENGTH_RANGE)] = 3.0
    agent: Annotated[str, Choice(agent_names())] = DEFAULT_AGENT
    modelPath: pathlib.Path = shipped_model_path()
    device: Annotated[str, Choice(["auto", "cpu", "cuda"])] = "auto"
    thresholdSigmas: Annotated[float, WithinRange(1.0, 20.0)] = DEFAULT_THRESHOLD_SIGMAS
    minRegionVolume: Annotated[float, WithinRange(0.0, 100000.0)] = DEFAULT_MIN_VOLUME_MM3
    computeUncertainty: bool = False
    zeroDose: bool = False
    syntheticStandardDose: vtkMRMLScalarVolumeNode
    beyondStandardDose: vtkMRMLScalarVolumeNode
    contrastSignal: vtkMRMLScalarVolumeNode
    subtraction: vtkMRMLScalarVolumeNode
    registeredLowDose: vtkMRMLScalarVolumeNode
    registeredStandardDose: vtkMRMLScalarVolumeNode
    virtualDoseVolume: vtkMRMLScalarVolumeNode
    uncertainty: vtkMRMLScalarVolumeNode
    enhancingRegions: vtkMRMLSegmentationNode
    regionTable: vtkMRMLTableNode
    lesionTable: vtkMRMLTableNode
    runRecord: vtkMRMLTextNode
    virtualDose: Annotated[float, WithinRange(0.0, 2.0)] = 1.0


# GadoReduceWidget

class GadoReduceWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):  # noqa: F405
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)  # noqa: F405
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._timer = None

    def setup(self) -> None:
        import ctk
        import qt
        ScriptedLoadableModuleWidget.setup(self)  # noqa: F405
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/GadoReduce.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = GadoReduceLogic()

        self.ui.disclaimerLabel.text = DISCLAIMER
        self.ui.modelPathLineEdit.filters = ctk.ctkPathLineEdit.Files
        self.ui.modelPathLineEdit.nameFilters = ["GadoReduce model (*.pt)"]
        self._timer = qt.QTimer()
        self._timer.setInterval(200)
        self._timer.connect("timeout()", self._onPoll)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancelButton)
        self.ui.virtualDoseSlider.connect("valueChanged(double)", self._onVirtualDose)
        self.ui.lowDoseSelector.connect("currentNodeChanged(vtkMRMLNode*)", self._onLowDoseChanged)
        self.ui.showUncertaintyCheckBox.connect("toggled(bool)", self._onShowUncertainty)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        self.removeObservers()
        self.logic.cancel()

    def onReload(self) -> None:
        """Reload and Test (developer mode): reload GadoReduceLib's submodules first, then the module file
        (Slicer's reload reloads only the module file)."""
        from GadoReduceLib.module.reload import reload_library
        reload_library()
        super().onReload()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)

    def onSceneStartClose(self, caller, event) -> None:
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.preContrast:
            firstVolume = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if firstVolume:
                self._parameterNode.preContrast = firstVolume

    def setParameterNode(self, inputParameterNode: Optional[GadoReduceParameterNode]) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            if self.hasObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply):
                self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
            self._checkCanApply()

    def _onLowDoseChanged(self, node) -> None:
        """Pre-fill dose, field strength and agent from the low-dose scan's DICOM header (editable afterwards)."""
        if node is None or not self._parameterNode:
            return
        found = self.logic.setAcquisitionFromVolume(node, self._parameterNode)
        if found:
            self.ui.statusLog.appendPlainText(_("From the DICOM header: ") + ", ".join(
                f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in found.items()))

    def _checkCanApply(self, caller=None, event=None) -> None:
        problems = self.logic.checkInputs(self._parameterNode) if self._parameterNode else [_("No parameters.")]
        busy = self.logic.busy
        self.ui.applyButton.enabled = not problems and not busy
        self.ui.cancelButton.enabled = busy
        self.ui.applyReasonLabel.text = _("Running ...") if busy else "\n".join(problems)
        self.ui.applyButton.toolTip = _("Run the computation.") if not problems else problems[0]
        self.ui.virtualDoseSlider.enabled = bool(self._parameterNode and self._parameterNode.contrastSignal)
        if self._parameterNode:
            self.ui.relaxivityLabel.text = self.logic.relaxivityText(self._parameterNode.agent,
                                                                     self._parameterNode.fieldStrength)

    def onApplyButton(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("GadoReduce failed."), waitCursor=True):
            self.ui.statusLog.clear()
            if not self.logic.ensureDependencies(askConfirmation=True):
                return
            self.logic.process(self._parameterNode, progress=self._onProgress, background=True)
            self._timer.start()
        self._checkCanApply()

    def onCancelButton(self) -> None:
        self.logic.cancel()
        self._timer.stop()
        self.ui.statusLog.appendPlainText(_("Cancelled; no output was created."))
        self._checkCanApply()

    def _onPoll(self) -> None:
        try:
            finished = self.logic.pollJob()
        except Exception:  # the job is over: stop polling first, then show the error (tryWithErrorDisplay re-raises)
            self._timer.stop()
            self._checkCanApply()
            try:
                with slicer.util.tryWithErrorDisplay(_("GadoReduce failed."), waitCursor=False):
                    raise
            except Exception as error:  # shown above; a timer slot has nobody to raise to
                self.ui.statusLog.appendPlainText(_("Failed: ") + str(error))
            return
        if finished:
            self._timer.stop()
            self._checkCanApply()

    def _onVirtualDose(self, value: float) -> None:
        if self._parameterNode and self._parameterNode.contrastSignal and not self.logic.busy:
            self.logic.setVirtualDose(value, self._parameterNode)

    def _onShowUncertainty(self, show: bool) -> None:
        if self._parameterNode:
            self.logic.showOverlay(self._parameterNode, "uncertainty" if show else "contrastSignal")

    def _onProgress(self, fraction: float, message: str) -> None:
        self.ui.progressBar.value = int(100 * fraction)
        self.ui.statusLog.appendPlainText(message)


# GadoReduceLogic

class GadoReduceLogic(ScriptedLoadableModuleLogic):  # noqa: F405
    """Works the same from the Python console as from the panel.

    Example (Slicer's Python console)::

        logic = slicer.util.getModuleLogic("GadoReduce")
        logic.ensureDependencies()                         # first time only: torch, scipy, ...
        out = logic.process(preContrast=getNode("pre"), lowDose=getNode("low"), dose=0.33,
                            fieldStrength=3.0, agent="gadobutrol")
        out["syntheticStandardDose"], out["regionTable"]    # the output nodes (see process)
        logic.setVirtualDose(1.5)                           # x_PC + 1.5 * contrast signal, no re-run
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)  # noqa: F405
        self._run = None  # the ModuleRun (worker job, parameters, progress) while a computation runs
        self.lastResult = None  # what the last finished process() returned (also in background mode)

    def getParameterNode(self):
        return GadoReduceParameterNode(super().getParameterNode())

    # --- MRML <-> images ----------------------------------------------------------------
    @staticmethod
    def imageFromVolume(volumeNode):
        """SimpleITK image (LPS geometry, parent linear transforms applied) with a copy of the voxels."""
        from GadoReduceLib.io.mrml import image_from_volume_node
        return image_from_volume_node(volumeNode)

    @staticmethod
    def volumeFromImage(image, name: str, node=None, labelmap: bool = False):
        """Write ``image`` into ``node`` or into a new volume node named after ``name``; returns the node."""
        from GadoReduceLib.io import mrml
        if node is None:
            nodeClass = "vtkMRMLLabelMapVolumeNode" if labelmap else "vtkMRMLScalarVolumeNode"
            return mrml.volume_node_from_image(slicer.mrmlScene, image, name, nodeClass)
        mrml.update_volume_node_from_image(node, image)
        return node

    # --- inputs ---------------------------------------------------------------------------
    @staticmethod
    def relaxivityText(agent: str, fieldStrength: float) -> str:
        from GadoReduceLib.module.inputs import relaxivity_text
        return relaxivity_text(agent, fieldStrength)

    @staticmethod
    def checkInputs(parameters) -> list:
        """Reasons why the inputs cannot be processed yet (empty list when they can); each names the parameter."""
        from GadoReduceLib.module.inputs import check_parameters
        return check_parameters(parameters)

    # --- processing ------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self._run is not None

    def process(self, parameters=None, progress=None, background: bool = False, cancel=None, backend: str = "auto",
                **kwargs):
        """Synthesize standard-dose images from the inputs (paper 001) into output nodes on the pre-contrast grid.

        parameters: the parameter node (default: the module's), updated with ``kwargs`` (any parameter, e.g.
        ``preContrast=node, dose=0.25``). Preprocessing (registration, brain mask, normalization), the CNN and
        the region analysis run in a separate process (``GadoReduceLib.module.worker``) that ``cancel()`` kills;
        ``progress(fraction, message)`` gets its progress. ``cancel``: optional callable polled while waiting,
        True cancels. background=False waits and returns a dict of the output nodes (syntheticStandardDose,
        beyondStandardDose, contrastSignal, subtraction, registeredLowDose, registeredStandardDose (None without
        a standard dose; zeroDose: no beyondStandardDose, subtraction, registeredLowDose), virtualDoseVolume,
        enhancingRegions, regionTable, lesionTable or None) plus "record" (noise sigma, warnings, rows); background=
        True returns at once; call :meth:`pollJob` until it returns True. Inputs are never modified; output nodes
        are created when empty, else reused. Raises ValueError naming the parameter. Steps: ``GadoReduceLib.module``."""
        from GadoReduceLib.module.inputs import set_parameters
        from GadoReduceLib.module.jobs import ModuleRun
        if self.busy:
            raise ValueError("GadoReduce is already running; wait for it or cancel it first.")
        parameters = set_parameters(parameters if parameters is not None else self.getParameterNode(), kwargs)
        problems = self.checkInputs(parameters)
        if problems:
            raise ValueError(" ".join(problems))
        report = progress or (lambda fraction, message: logging.info(message))
        report(0.0, _("Writing the inputs for the background process ..."))
        self._run = ModuleRun(parameters, report, backend)
        if background:
            return self._run.job
        try:
            self._run.wait(should_cancel=cancel)
        except BaseException:
            self.cancel()
            raise
        return self._finishJob()

    def pollJob(self) -> bool:
        """For background=True: pass progress on; True once the job ended and its output nodes exist.
        Raises (and cleans up) when the job failed or was cancelled."""
        if self.busy and self._run.poll():
            self._finishJob()
        return not self.busy

    def cancel(self) -> None:
        """Kill the running computation (process tree); no output node is created or changed."""
        if self.busy:
            run, self._run = self._run, None
            run.close()

    def _finishJob(self) -> dict:
        run, self._run = self._run, None
        self.lastResult = run.finish(slicer.mrmlScene, _("Creating the output nodes ..."))
        record = self.lastResult["record"]
        run.report(1.0, _("Done: {n} enhancing regions, noise sigma {s:.4g}, registration {b}.").format(
            n=len(record["regions"]), s=record["noise_sigma"], b=record["registration_backend"])
            + "".join("\n" + _("Warning: ") + w for w in record["warnings"]))
        return self.lastResult

    def setVirtualDose(self, virtualDose: float, parameters=None):
        """Set ``virtualDoseVolume`` to x_PC + virtualDose * contrast signal (numpy, no re-run); returns the node.
        virtualDose 0 gives the pre-contrast scan, 1 the synthetic standard dose, up to 2."""
        from GadoReduceLib.module.outputs import set_virtual_dose
        return set_virtual_dose(slicer.mrmlScene, parameters if parameters is not None else self.getParameterNode(),
                                virtualDose)

    @staticmethod
    def showOverlay(parameters, name: str = "contrastSignal") -> None:
        """Slice views: the pre-contrast with the output volume ``name`` (contrastSignal or uncertainty) as overlay."""
        from GadoReduceLib.module.outputs import show_in_slice_views
        show_in_slice_views(parameters.preContrast, getattr(parameters, name))

    # --- DICOM, dependencies ----------------------------------------------------------------
    def setAcquisitionFromVolume(self, volumeNode, parameters=None) -> dict:
        """Set dose, fieldStrength and agent of ``parameters`` (default: the module's) from the DICOM header of
        ``volumeNode`` where it has them (:meth:`acquisitionFromVolume`); returns what was found."""
        from GadoReduceLib.module.inputs import acquisition_values, set_parameters
        found = self.acquisitionFromVolume(volumeNode)
        values = acquisition_values(found)
        if values:
            set_parameters(parameters if parameters is not None else self.getParameterNode(), values)
        return found

    def loadSamplePhantom(self) -> list:
        """Add the sample phantom (what Sample Data's "GadoReduce phantom" button loads) to the scene: pre-contrast,
        low dose (33 %), standard dose and its true lesions; returns the four nodes. A synthetic case."""
        from GadoReduceLib.module.sample_data import sample_phantom_nodes
        return sample_phantom_nodes(slicer.mrmlScene)

    @staticmethod
    def acquisitionFromVolume(volumeNode) -> dict:
        """Field strength (T), agent, contrast volume (mL), weight (kg) and dose estimate from the DICOM header
        of a volume loaded from DICOM ("DICOM.instanceUIDs" and slicer.dicomDatabase); {} otherwise."""
        from GadoReduceLib.module.dicom import acquisition_from_volume_node
        return acquisition_from_volume_node(volumeNode)

    @staticmethod
    def ensureDependencies(askConfirmation: bool = True) -> bool:
        """Install what is missing or too old at first Apply (never at import), after one confirmation: torch
        through the PyTorch extension, the others (version ranges for this Python) with slicer.util.pip_install;
        itk-elastix only without SlicerElastix. False when the user declined or Slicer must restart; True when
        every requirement is met (GadoReduceLib.module.install)."""
        from GadoReduceLib.module.install import ensure_dependencies
        return ensure_dependencies(askConfirmation)


# GadoReduceTest

class GadoReduceTest(ScriptedLoadableModuleTest):  # noqa: F405
    """Self-test run by Slicer (Reload and Test, the extension build's ctest) and by the headless harness.

    The quick test always runs. The phantom flow (minutes on a CPU, needs torch) runs only where torch is
    installed and the environment variable ``GADOREDUCE_FULL_SELF_TEST`` is 1 (the CMake option
    ``GadoReduce_FULL_SELF_TEST`` sets it for ctest): the Extensions build machines have no torch.
    """

    FULL_TEST_VARIABLE = "GADOREDUCE_FULL_SELF_TEST"

    def setUp(self):
        slicer.mrmlScene.Clear()

    @classmethod
    def fullTestWanted(cls) -> tuple:
        """(run the phantom flow?, why not)."""
        import importlib.util
        if os.environ.get(cls.FULL_TEST_VARIABLE, "") != "1":
            return False, f"set {cls.FULL_TEST_VARIABLE}=1 to run it (minutes on a CPU)"
        if importlib.util.find_spec("torch") is None:
            return False, "PyTorch is not installed (install the PyTorch extension)"
        return True, ""

    def runTest(self):
        self.setUp()
        self.test_volume_round_trip()
        wanted, reason = self.fullTestWanted()
        if not wanted:
            logging.info(f"GadoReduce self-test: the phantom flow is skipped: {reason}.")
            return
        self.setUp()
        self.test_phantom_process()

    def test_volume_round_trip(self):
        import numpy as np
        array = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)  # oblique, anisotropic grid
        ijkToRAS = np.array([[0.0, -1.1, 0.0, 12.0], [0.72, 0.0, -1.8, -30.0], [0.54, 0.0, 2.4, 7.5], [0, 0, 0, 1]])
        node = slicer.util.addVolumeFromArray(array, ijkToRAS, "pre")
        logic = GadoReduceLogic()
        copy = logic.volumeFromImage(logic.imageFromVolume(node), "copy")
        self.assertTrue(np.array_equal(slicer.util.arrayFromVolume(copy), array))
        matrixA, matrixB = vtk.vtkMatrix4x4(), vtk.vtkMatrix4x4()
        node.GetIJKToRASMatrix(matrixA)
        copy.GetIJKToRASMatrix(matrixB)
        np.testing.assert_allclose(slicer.util.arrayFromVTKMatrix(matrixB), slicer.util.arrayFromVTKMatrix(matrixA),
                                   rtol=0, atol=5e-7)  # 6 places
        self.delayDisplay("GadoReduce self-test passed")

    def test_phantom_process(self):
        """The panel's flow on the sample phantom (1 mm, 33 %, with its standard dose and true lesions): process,
        outputs on the pre-contrast grid, inputs unchanged, one region per enhancing lesion, virtual dose.
        Needs the shipped model (a few minutes on a CPU)."""
        import numpy as np
        import SimpleITK as sitk
        from GadoReduceLib.inference.regions import truth_problems
        from GadoReduceLib.module.outputs import region_outputs
        from GadoReduceLib.module.sample_data import SAMPLE_DOSE, sample_phantom_case, sample_phantom_nodes
        from GadoReduceLib.phantom.truth import PHANTOM_THRESHOLD_SIGMAS, phantom_truth_volumes
        self.delayDisplay("Generating the sample phantom (1 mm)")
        case = sample_phantom_case()
        pre, low, standard, lesions = sample_phantom_nodes(slicer.mrmlScene, case)
        before = [slicer.util.arrayFromVolume(n).copy() for n in (pre, low, standard)]
        logic = GadoReduceLogic()
        self.delayDisplay("Processing (registration, CNN, regions)")
        config = case.parameters["config"]
        out = logic.process(preContrast=pre, lowDose=low, standardDose=standard, lesionSegmentation=lesions,
                            dose=SAMPLE_DOSE, fieldStrength=config["field_strength"], agent=config["agent"],
                            thresholdSigmas=PHANTOM_THRESHOLD_SIGMAS)
        for node, array in zip((pre, low, standard), before):
            self.assertTrue(np.array_equal(slicer.util.arrayFromVolume(node), array))
        for name in ("syntheticStandardDose", "beyondStandardDose", "contrastSignal", "virtualDoseVolume"):
            self.assertEqual(slicer.util.arrayFromVolume(out[name]).shape, before[0].shape)
        table = out["regionTable"]
        self.assertEqual(out["enhancingRegions"].GetSegmentation().GetNumberOfSegments(), table.GetNumberOfRows())
        regions, volumes = region_outputs(out["enhancingRegions"], table, pre)
        truth = sitk.GetArrayFromImage(case.lesion_labels)
        minimum = logic.getParameterNode().minRegionVolume
        # asserted: every enhancing lesion of 10 mm or more lies in one region of its own; reported: smaller
        # lesions and region volumes against the truth, where the shipped CPU-trained model has known gaps
        # (README, status: 16/20 large lesions of other phantoms within 20 % of their volume)
        self.assertEqual(truth_problems(regions, volumes, truth, phantom_truth_volumes(case, minimum, 10.0),
                                        large_mm3=float("inf")), [])
        for problem in truth_problems(regions, volumes, truth, phantom_truth_volumes(case, minimum)):
            logging.warning(f"GadoReduce self-test (known limitation of the shipped model): {problem}")
        logic.setVirtualDose(0.0)
        self.assertTrue(np.allclose(slicer.util.arrayFromVolume(out["virtualDoseVolume"]), before[0]))
        self.delayDisplay("Phantom test passed")
