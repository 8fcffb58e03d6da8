"""GadoReduce: gadolinium dose reduction for brain MRI (3D Slicer scripted module).

A thin shell over GadoReduceLib (the core, importable without Slicer): the logic converts
MRML nodes to images and back and calls into the core; inputs are never modified.
"""

import logging
from typing import Annotated, Optional

import vtk

import slicer
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.ScriptedLoadableModule import *  # noqa: F403
from slicer.util import VTKObservationMixin
from slicer.parameterNodeWrapper import parameterNodeWrapper, WithinRange
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode

from GadoReduceLib import DISCLAIMER
from GadoReduceLib.agents import DEFAULT_AGENT

CITATION = (
    "Pinetz T, Kobler E, Haase R, Luetkens JA, Meetschen M, Haubold J, Deuschl C, Radbruch A, "
    "Deike K, Effland A. Gadolinium dose reduction for brain MRI using conditional deep learning. "
    "arXiv:2403.03539, 2024."
)


#
# GadoReduce
#

class GadoReduce(ScriptedLoadableModule):  # noqa: F405
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)  # noqa: F405
        self.parent.title = _("GadoReduce")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Filtering")]
        self.parent.dependencies = []
        self.parent.contributors = ["GadoReduce developers"]
        self.parent.helpText = _(
            "Predicts the contrast signal a standard dose of a gadolinium-based contrast agent would give, "
            "from a pre-contrast T1w scan and a low-dose contrast-enhanced T1w scan (10-33 % of the standard "
            "dose). The method registers the scans rigidly and radiometrically, normalizes the noise of the "
            "subtraction image and extracts the contrast signal with a CNN conditioned on dose, field "
            "strength, agent relaxivity and noise level (Pinetz, Kobler et al. 2024).<br><br><b>"
        ) + DISCLAIMER + "</b><br><br>" + _("See the README: https://github.com/gadoreduce/SlicerGadoReduce")
        self.parent.acknowledgementText = _("If you use GadoReduce, please cite the method paper: ") + CITATION


#
# GadoReduceParameterNode
#

@parameterNodeWrapper
class GadoReduceParameterNode:
    """Module parameters, saved with the scene.

    preContrast, lowDose: input volumes (never modified).
    standardDose, lesionSegmentation: optional references for evaluation.
    dose: low dose as a fraction of the standard dose, in (0, 1].
    fieldStrength: tesla. agent: generic name of the contrast agent.
    subtraction, registeredLowDose: output volumes (created when empty).
    """

    preContrast: vtkMRMLScalarVolumeNode
    lowDose: vtkMRMLScalarVolumeNode
    standardDose: vtkMRMLScalarVolumeNode
    lesionSegmentation: vtkMRMLSegmentationNode
    dose: Annotated[float, WithinRange(0.01, 1.0)] = 0.33
    fieldStrength: Annotated[float, WithinRange(1.0, 3.5)] = 3.0
    agent: str = DEFAULT_AGENT
    subtraction: vtkMRMLScalarVolumeNode
    registeredLowDose: vtkMRMLScalarVolumeNode


#
# GadoReduceWidget
#

class GadoReduceWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):  # noqa: F405
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)  # noqa: F405
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)  # noqa: F405
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/GadoReduce.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = GadoReduceLogic()

        self.ui.disclaimerLabel.text = DISCLAIMER
        self.ui.agentComboBox.addItems(self.logic.agentNames())
        self.ui.fieldStrengthComboBox.currentIndex = 1

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.doseSpinBox.connect("valueChanged(double)", self._onAcquisitionChanged)
        self.ui.fieldStrengthComboBox.connect("currentIndexChanged(int)", self._onAcquisitionChanged)
        self.ui.agentComboBox.connect("currentIndexChanged(int)", self._onAcquisitionChanged)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        self.removeObservers()

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
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
            self._checkCanApply()

    def _onAcquisitionChanged(self, *args) -> None:
        if not self._parameterNode:
            return
        self._parameterNode.dose = self.ui.doseSpinBox.value / 100.0
        self._parameterNode.fieldStrength = 1.5 if self.ui.fieldStrengthComboBox.currentIndex == 0 else 3.0
        self._parameterNode.agent = self.ui.agentComboBox.currentText
        self.ui.relaxivityLabel.text = self.logic.relaxivityText(self._parameterNode.agent,
                                                                 self._parameterNode.fieldStrength)

    def _checkCanApply(self, caller=None, event=None) -> None:
        problems = self.logic.checkInputs(self._parameterNode) if self._parameterNode else [_("No parameters.")]
        self.ui.applyButton.enabled = not problems
        self.ui.applyReasonLabel.text = "\n".join(problems)
        self.ui.applyButton.toolTip = _("Run the computation.") if not problems else problems[0]

    def onApplyButton(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("GadoReduce failed."), waitCursor=True):
            self.ui.statusLog.clear()
            self.logic.process(self._parameterNode, progress=self._onProgress)
            slicer.util.setSliceViewerLayers(background=self._parameterNode.preContrast,
                                             foreground=self._parameterNode.subtraction, foregroundOpacity=0.5)

    def _onProgress(self, fraction: float, message: str) -> None:
        self.ui.progressBar.value = int(100 * fraction)
        self.ui.statusLog.appendPlainText(message)
        slicer.app.processEvents()


#
# GadoReduceLogic
#

class GadoReduceLogic(ScriptedLoadableModuleLogic):  # noqa: F405
    """Works the same from the Python console as from the panel.

    Example (Slicer's Python console)::

        logic = slicer.util.getModuleLogic("GadoReduce")
        image = logic.imageFromVolume(slicer.util.getNode("pre"))   # SimpleITK image, LPS geometry
        node = logic.volumeFromImage(image, "copy of pre")           # new volume node, same geometry
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)  # noqa: F405

    def getParameterNode(self):
        return GadoReduceParameterNode(super().getParameterNode())

    # --- MRML <-> images ----------------------------------------------------------------
    @staticmethod
    def imageFromVolume(volumeNode):
        """SimpleITK image (LPS geometry, parent linear transforms applied) with a copy of the voxels."""
        from GadoReduceLib.mrml import image_from_volume_node
        return image_from_volume_node(volumeNode)

    @staticmethod
    def volumeFromImage(image, name: str, node=None, labelmap: bool = False):
        """Write ``image`` into ``node`` or into a new volume node named after ``name``; returns the node."""
        from GadoReduceLib import mrml
        if node is None:
            nodeClass = "vtkMRMLLabelMapVolumeNode" if labelmap else "vtkMRMLScalarVolumeNode"
            return mrml.volume_node_from_image(slicer.mrmlScene, image, name, nodeClass)
        mrml.update_volume_node_from_image(node, image)
        return node

    # --- inputs ---------------------------------------------------------------------------
    @staticmethod
    def agentNames() -> list:
        from GadoReduceLib.agents import AGENTS
        return sorted(AGENTS)

    @staticmethod
    def relaxivityText(agent: str, fieldStrength: float) -> str:
        from GadoReduceLib.agents import get_agent
        try:
            return f"{get_agent(agent).relaxivity(fieldStrength):.1f} L/(mmol s) at {fieldStrength:g} T"
        except ValueError as error:
            return str(error)

    @staticmethod
    def checkInputs(parameters) -> list:
        """Reasons why the inputs cannot be processed yet (empty list when they can)."""
        problems = []
        pre, low = parameters.preContrast, parameters.lowDose
        if pre is None:
            problems.append(_("Select the pre-contrast T1w volume (preContrast)."))
        if low is None:
            problems.append(_("Select the low-dose T1w volume (lowDose)."))
        if pre is not None and low is not None and pre == low:
            problems.append(_("Pre-contrast and low-dose must be two different volumes."))
        for label, node in (("preContrast", pre), ("lowDose", low), ("standardDose", parameters.standardDose)):
            if node is None:
                continue
            if node.GetImageData() is None:
                problems.append(_("The volume '{name}' ({label}) has no voxels.").format(name=node.GetName(), label=label))
            elif min(node.GetImageData().GetDimensions()) < 2:
                problems.append(_("The volume '{name}' ({label}) is 2D; a 3D volume is needed.").format(
                    name=node.GetName(), label=label))
        if not problems and not volumesOverlap(pre, low):
            problems.append(_("The fields of view of '{a}' and '{b}' do not overlap; check that both scans are "
                              "of the same patient and session.").format(a=pre.GetName(), b=low.GetName()))
        if not 0 < parameters.dose <= 1:
            problems.append(_("The dose must be in (0, 1] of the standard dose (dose), not {d}.").format(d=parameters.dose))
        return problems

    def process(self, parameters, progress=None, backend: str = "auto"):
        """Preprocess the parameter node's inputs (paper 001, sections 3.1-3.2) into output volume nodes.

        Registers the low-dose (and optional standard-dose) scan rigidly to the pre-contrast scan,
        masks the brain by atlas registration, normalizes intensities radiometrically and the
        subtraction image's noise. Writes ``registeredLowDose`` and ``subtraction`` (the normalized
        subtraction z_LD, in units of the pre-contrast's 95th brain percentile), creating them when
        empty. Inputs are never modified. ``progress(fraction, message)`` is called between stages.
        Returns the core's PreprocessResult (all intermediate images and the QC record).
        """
        from GadoReduceLib.preprocess import preprocess

        problems = self.checkInputs(parameters)
        if problems:
            raise ValueError(" ".join(problems))
        report = progress or (lambda fraction, message: logging.info(message))
        pre, low, standard = parameters.preContrast, parameters.lowDose, parameters.standardDose
        report(0.05, _("Reading the volumes ..."))
        images = [self.imageFromVolume(node) if node else None for node in (pre, low, standard)]
        report(0.1, _("Registration, brain mask, intensity and noise normalization (about a minute) ..."))
        result = preprocess(*images, backend=backend)
        report(0.9, _("Creating the output volumes ..."))
        outputs = result.outputs()
        parameters.registeredLowDose = self.volumeFromImage(
            outputs["low_dose_registered"], f"{low.GetName()} registered", node=parameters.registeredLowDose)
        parameters.subtraction = self.volumeFromImage(
            outputs["normalized_subtraction_ld"], f"{low.GetName()} subtraction", node=parameters.subtraction)
        sigma = result.noise_sigma_ld
        parameters.subtraction.GetDisplayNode().SetAutoWindowLevel(False)
        parameters.subtraction.GetDisplayNode().SetWindowLevel(12.0 * sigma, 2.0 * sigma)
        warnings = result.qc.get("warnings", [])
        report(1.0, _("Done: noise sigma {sigma:.4f}, registration backend {backend}.").format(
            sigma=sigma, backend=result.low_dose.registration.backend)
            + ("".join("\n" + _("Warning: ") + w for w in warnings)))
        return result


def volumesOverlap(a, b) -> bool:
    """True when the RAS bounding boxes of volume nodes ``a`` and ``b`` intersect (world coordinates)."""
    boundsA, boundsB = [0.0] * 6, [0.0] * 6
    a.GetRASBounds(boundsA)
    b.GetRASBounds(boundsB)
    return all(boundsA[2 * i] <= boundsB[2 * i + 1] and boundsB[2 * i] <= boundsA[2 * i + 1] for i in range(3))


#
# GadoReduceTest
#

class GadoReduceTest(ScriptedLoadableModuleTest):  # noqa: F405
    """Self-test run by Slicer (Reload and Test) and by the headless harness."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_volume_round_trip()

    def test_volume_round_trip(self):
        import numpy as np
        self.delayDisplay("Volume node -> SimpleITK -> volume node")
        node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "pre")
        imageData = vtk.vtkImageData()
        imageData.SetDimensions(6, 5, 4)
        imageData.AllocateScalars(vtk.VTK_FLOAT, 1)
        node.SetAndObserveImageData(imageData)
        node.SetSpacing(0.9, 1.1, 3.0)
        node.SetOrigin(12.0, -30.0, 7.5)
        node.SetIJKToRASDirections(0.0, -1.0, 0.0, 0.8, 0.0, -0.6, 0.6, 0.0, 0.8)
        array = slicer.util.arrayFromVolume(node)
        array[:] = np.arange(array.size, dtype=np.float32).reshape(array.shape)
        slicer.util.arrayFromVolumeModified(node)
        logic = GadoReduceLogic()
        copy = logic.volumeFromImage(logic.imageFromVolume(node), "copy")
        self.assertTrue(np.array_equal(slicer.util.arrayFromVolume(copy), array))
        matrixA, matrixB = vtk.vtkMatrix4x4(), vtk.vtkMatrix4x4()
        node.GetIJKToRASMatrix(matrixA)
        copy.GetIJKToRASMatrix(matrixB)
        for r in range(4):
            for c in range(4):
                self.assertAlmostEqual(matrixA.GetElement(r, c), matrixB.GetElement(r, c), places=6)
        logging.info("GadoReduce self-test passed")
        self.delayDisplay("Test passed")
