"""The module panel built from its .ui with real Qt widgets (PySide6 offscreen, PythonQt's interface; see
slicer_harness.qtwidgets) over real MRML: every ``SlicerParameterName`` widget is bound to the parameter node
both ways, values set from the console stay, Apply follows the inputs, the poll timer stops on errors."""

from __future__ import annotations

import importlib
import re
import types
from pathlib import Path

import pytest

pytest.importorskip("PySide6", reason="the widget test needs PySide6 (pip install PySide6-Essentials; in the "
                                      "test extra)")

from conftest import MODULE_DIR  # noqa: E402
from test_mrml_geometry import make_oblique_node  # noqa: E402

UI = MODULE_DIR / "Resources" / "UI" / "GadoReduce.ui"


def ui_parameter_names() -> dict:
    """{widget name: parameter name} of every widget with a SlicerParameterName in the .ui."""
    text = UI.read_text()
    pattern = re.compile(r'<widget class="(\w+)" name="(\w+)">(?:(?!<widget ).)*?'
                         r'name="SlicerParameterName" stdset="0"><string>(\w+)</string>', re.S)
    return {name: parameter for _, name, parameter in pattern.findall(text)}


@pytest.fixture
def panel(harness):
    harness.install_widgets()
    import GadoReduce
    module = importlib.reload(GadoReduce)
    widget = module.GadoReduceWidget()
    widget.setup()
    yield widget, module, harness
    widget.cleanup()


def test_every_parameter_widget_is_bound_both_ways(panel, tmp_path):
    widget, module, harness = panel
    params = widget._parameterNode
    names = ui_parameter_names()
    assert len(names) >= 20 and {"dose", "fieldStrength", "agent", "modelPath", "device"} <= set(names.values())
    model = tmp_path / "other.pt"
    model.write_bytes(b"not needed for binding")
    for widget_name, parameter in names.items():
        w = getattr(widget.ui, widget_name)
        kind = w.className()
        if kind == "qMRMLNodeComboBox":
            node_class = "vtkMRMLSegmentationNode" if "Segmentation" in w.nodeTypes[0] or parameter in (
                "lesionSegmentation", "enhancingRegions") else w.nodeTypes[0]
            a = harness.scene.AddNewNodeByClass(node_class, f"{parameter} a")
            b = harness.scene.AddNewNodeByClass(node_class, f"{parameter} b")
            setattr(params, parameter, a)
            assert w.currentNode() is a, parameter
            w.setCurrentNode(b)
            assert getattr(params, parameter) is b, parameter
        elif kind in ("QDoubleSpinBox", "ctkSliderWidget"):
            low, high = w.minimum, w.maximum
            one, two = low + 0.25 * (high - low), low + 0.5 * (high - low)
            setattr(params, parameter, one)
            assert w.value == pytest.approx(one, abs=10 ** -w.decimals), parameter
            w.value = round(two, w.decimals)
            assert getattr(params, parameter) == pytest.approx(two, abs=10 ** -w.decimals), parameter
        elif kind == "QComboBox":
            assert w.count >= 2, f"{widget_name} has no choices"
            setattr(params, parameter, w.itemText(1))
            assert w.currentIndex == 1, parameter
            w.currentIndex = 0
            assert getattr(params, parameter) == w.itemText(0), parameter
        elif kind == "ctkPathLineEdit":
            setattr(params, parameter, model)
            assert w.currentPath == str(model)
            w.currentPath = str(tmp_path / "again.pt")
            assert getattr(params, parameter) == tmp_path / "again.pt"
        elif kind == "QCheckBox":
            setattr(params, parameter, True)
            assert w.checked, parameter
            w.checked = False
            assert getattr(params, parameter) is False, parameter
        else:
            pytest.fail(f"no round trip written for {kind} {widget_name}")


def test_console_values_stay_when_the_panel_is_touched(panel, tmp_path):
    """Issue 16, point 5: values set from the console show in the panel and are not overwritten later."""
    widget, module, harness = panel
    console = module.GadoReduceLogic().getParameterNode()  # what a console user gets
    model = tmp_path / "mine.pt"
    model.write_bytes(b"x")
    console.dose, console.fieldStrength, console.agent, console.modelPath = 0.2, 1.5, "gadoterate", model
    assert widget.ui.doseSpinBox.value == pytest.approx(0.2)
    assert widget.ui.fieldStrengthSpinBox.value == pytest.approx(1.5)
    assert widget.ui.agentComboBox.currentText == "gadoterate"
    assert widget.ui.modelPathLineEdit.currentPath == str(model)
    widget.ui.deviceComboBox.currentIndex = 1  # touch another widget
    widget.exit()
    widget.enter()  # setParameterNode again (leaving and entering the module)
    assert (console.dose, console.fieldStrength, console.agent, console.modelPath) == (0.2, 1.5, "gadoterate", model)
    assert "at 1.5 T" in widget.ui.relaxivityLabel.text


def test_default_model_path_is_shown_and_means_the_shipped_model(panel):
    widget, module, harness = panel
    from GadoReduceLib.module.inputs import model_file, shipped_model_path
    assert widget.ui.modelPathLineEdit.currentPath == str(shipped_model_path())
    assert model_file(widget._parameterNode.modelPath) is None  # the worker uses the shipped default


def test_apply_button_follows_the_inputs(panel):
    widget, module, harness = panel
    params = widget._parameterNode
    assert not widget.ui.applyButton.enabled
    assert "(preContrast)" in widget.ui.applyReasonLabel.text and "(lowDose)" in widget.ui.applyReasonLabel.text
    pre, _ = make_oblique_node(harness.scene, name="pre")
    low, _ = make_oblique_node(harness.scene, name="low")
    params.preContrast = pre
    assert not widget.ui.applyButton.enabled and "(lowDose)" in widget.ui.applyReasonLabel.text
    params.lowDose = low
    assert widget.ui.applyButton.enabled and widget.ui.applyReasonLabel.text == ""
    widget.ui.lowDoseSelector.setCurrentNode(pre)  # the same volume twice
    assert not widget.ui.applyButton.enabled and "two different volumes" in widget.ui.applyReasonLabel.text
    assert widget.ui.applyButton.toolTip == widget.ui.applyReasonLabel.text.split("\n")[0]


def test_poll_timer_stops_before_the_error_is_shown(panel, monkeypatch):
    """Issue 16, point 8: a failed job stops the progress timer; no exception escapes the timer's slot."""
    widget, module, harness = panel

    def failed():
        raise RuntimeError("The GadoReduce computation failed (test)")
    monkeypatch.setattr(widget.logic, "pollJob", failed)
    widget._timer.start()
    widget._onPoll()  # would raise out of the Qt slot before
    assert not widget._timer.isActive()
    assert "computation failed (test)" in widget.ui.statusLog.toPlainText()


def test_a_wrong_widget_type_is_refused_like_slicer(harness):
    """The stand-in's connectGui refuses a type the widget cannot represent, as Slicer's connectors do."""
    harness.install_widgets()
    import qt
    import typing
    from slicer.parameterNodeWrapper import parameterNodeWrapper

    @parameterNodeWrapper
    class P:
        name: str = "x"  # a str on a spin box: no connector

    loader = qt.QUiLoader()
    box = loader.createWidget("QDoubleSpinBox", None, "box")
    from slicer_harness.qtwidgets import wrap
    box = wrap(box)
    box.setProperty("SlicerParameterName", "name")
    node = harness.scene.AddNewNodeByClass("vtkMRMLScriptedModuleNode")
    with pytest.raises(RuntimeError, match="Unable to create GUI connector"):
        P(node).connectGui(types.SimpleNamespace(box=box))
    assert typing  # imported for the wrapper's annotations


def test_ui_file_exists():
    assert Path(UI).is_file()
