"""STAND-IN for Slicer's Qt layer in the widget test: real Qt widgets (PySide6, offscreen) driven through
PythonQt's interface, which is what Slicer's Python sees.

PythonQt (Slicer) exposes Qt properties as attributes (``spinBox.value = 0.5``), ``objectName`` as ``name``,
and connects signals by their C++ signature (``button.connect("clicked(bool)", slot)``); :class:`PQ` gives a
PySide6 object that interface. Slicer's custom widget classes (qMRMLWidget, qMRMLNodeComboBox,
ctkCollapsibleButton, ctkPathLineEdit, ctkSliderWidget; signatures from Slicer's Libs/MRML/Widgets and CTK)
are minimal QWidget subclasses carrying the properties, signals and methods the .ui and GadoReduce use. One
deviation, named here: Slicer connects each node combo box to the panel's scene through the ``.ui``'s
``mrmlSceneChanged`` connections; the stand-in qMRMLWidget passes the scene to its combo boxes itself.
"""

from __future__ import annotations

import os
import types

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6 import QtCore, QtGui, QtUiTools, QtWidgets  # noqa: E402

_application = None


def application():
    """The one QApplication of the test process (offscreen)."""
    global _application
    _application = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    return _application


# --- PythonQt's view of a QObject ----------------------------------------------------------

_wrappers: dict = {}


def wrap(obj):
    """The :class:`PQ` of a QObject (one per object), other values unchanged."""
    if isinstance(obj, PQ) or not isinstance(obj, QtCore.QObject):
        return obj
    key = id(obj)
    if key not in _wrappers or _wrappers[key]._qobject is not obj:
        _wrappers[key] = PQ(obj)
    return _wrappers[key]


def _unwrap(value):
    return value._qobject if isinstance(value, PQ) else value


def _has_property(obj, name: str) -> bool:
    return obj.metaObject().indexOfProperty(name) >= 0 or QtCore.QByteArray(name.encode()) in \
        obj.dynamicPropertyNames()


class PQ:
    """A QObject as PythonQt shows it: properties as attributes, ``name``, ``connect("signal(args)", slot)``."""

    def __init__(self, qobject):
        object.__setattr__(self, "_qobject", qobject)

    def __getattr__(self, name):
        obj = self._qobject
        if name == "name":
            return obj.objectName()
        if _has_property(obj, name):
            return wrap(obj.property(name))
        attribute = getattr(obj, name)
        if callable(attribute):
            def call(*args, **kwargs):
                result = attribute(*[_unwrap(a) for a in args], **kwargs)
                return [wrap(r) for r in result] if isinstance(result, list) else wrap(result)
            return call
        return attribute

    def __setattr__(self, name, value):
        obj = self._qobject
        if name == "name":
            obj.setObjectName(value)
        elif _has_property(obj, name):
            if not obj.setProperty(name, _unwrap(value)) and obj.metaObject().indexOfProperty(name) >= 0:
                raise TypeError(f"cannot set property {name} of {obj.metaObject().className()} to {value!r}")
        else:
            object.__setattr__(self, name, value)

    def _signal(self, signature: str):
        return getattr(self._qobject, signature.split("(")[0])

    def connect(self, signature: str, slot) -> bool:
        self._signal(signature).connect(slot)
        return True

    def disconnect(self, signature: str, slot) -> bool:
        self._signal(signature).disconnect(slot)
        return True

    def className(self) -> str:
        return self._qobject.metaObject().className()

    def children(self):
        return [wrap(c) for c in self._qobject.children()]

    def findChildren(self):
        return [wrap(c) for c in self._qobject.findChildren(QtWidgets.QWidget)]

    def __bool__(self):
        return True


# --- Slicer's and CTK's custom widgets (minimal) -------------------------------------------

class qMRMLNodeComboBox(QtWidgets.QWidget):
    """Libs/MRML/Widgets/qMRMLNodeComboBox.h: nodeTypes, noneEnabled, currentNode(), setCurrentNode(node),
    signal currentNodeChanged(vtkMRMLNode*)."""

    currentNodeChanged = QtCore.Signal(object)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._scene, self._node = None, None
        for name, value in (("nodeTypes", []), ("noneEnabled", False), ("addEnabled", True),
                            ("removeEnabled", True), ("showChildNodeTypes", True), ("noneDisplay", "None")):
            self.setProperty(name, value)

    def setMRMLScene(self, scene):
        self._scene = scene

    def mrmlScene(self):
        return self._scene

    def currentNode(self):
        return self._node

    def currentNodeID(self):
        return self._node.GetID() if self._node is not None else ""

    def setCurrentNode(self, node):
        if node is not None:
            types_ = list(self.property("nodeTypes") or [])
            if types_ and not any(node.IsA(t) for t in types_):
                raise TypeError(f"{node.GetClassName()} is not one of the combo box's node types {types_}")
        if node is not self._node:
            self._node = node
            self.currentNodeChanged.emit(node)


class qMRMLWidget(QtWidgets.QWidget):
    """Libs/MRML/Widgets/qMRMLWidget.h: setMRMLScene(scene) and signal mrmlSceneChanged(vtkMRMLScene*)."""

    mrmlSceneChanged = QtCore.Signal(object)

    def setMRMLScene(self, scene):
        self._scene = scene
        for combo in self.findChildren(qMRMLNodeComboBox):  # Slicer: the .ui's connections
            combo.setMRMLScene(scene)
        self.mrmlSceneChanged.emit(scene)


class ctkCollapsibleButton(QtWidgets.QWidget):
    """CTK Libs/Widgets/ctkCollapsibleButton.h: a container with text and collapsed."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setProperty("text", "")
        self.setProperty("collapsed", False)


class ctkPathLineEdit(QtWidgets.QWidget):
    """CTK Libs/Widgets/ctkPathLineEdit.h: currentPath, filters, nameFilters, signal currentPathChanged(QString)."""

    Files = 2
    currentPathChanged = QtCore.Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._path = ""
        self.setProperty("filters", 0)
        self.setProperty("nameFilters", [])

    def getCurrentPath(self):
        return self._path

    def setCurrentPath(self, path):
        if path != self._path:
            self._path = path
            self.currentPathChanged.emit(path)

    currentPath = QtCore.Property(str, getCurrentPath, setCurrentPath)


class ctkSliderWidget(QtWidgets.QWidget):
    """CTK Libs/Widgets/ctkSliderWidget.h: value (clamped to minimum-maximum), singleStep, pageStep, decimals,
    signal valueChanged(double)."""

    valueChanged = QtCore.Signal(float)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._value, self._minimum, self._maximum = 0.0, 0.0, 99.0
        self.setProperty("singleStep", 1.0)
        self.setProperty("pageStep", 10.0)
        self.setProperty("decimals", 2)

    def _get(self):
        return self._value

    def _set(self, value):
        value = min(max(float(value), self._minimum), self._maximum)
        if value != self._value:
            self._value = value
            self.valueChanged.emit(value)

    def _set_minimum(self, value):
        self._minimum = float(value)
        self._set(self._value)

    def _set_maximum(self, value):
        self._maximum = float(value)
        self._set(self._value)

    value = QtCore.Property(float, _get, _set)
    minimum = QtCore.Property(float, lambda self: self._minimum, _set_minimum)
    maximum = QtCore.Property(float, lambda self: self._maximum, _set_maximum)


CUSTOM_WIDGETS = {cls.__name__: cls for cls in (qMRMLNodeComboBox, qMRMLWidget, ctkCollapsibleButton,
                                                ctkPathLineEdit, ctkSliderWidget)}


class QUiLoader(QtUiTools.QUiLoader):
    """QUiLoader that creates the custom widgets above and returns PythonQt-style widgets."""

    def createWidget(self, className, parent=None, name=""):
        if className in CUSTOM_WIDGETS:
            widget = CUSTOM_WIDGETS[className](parent)
            widget.setObjectName(name)
            return widget
        return super().createWidget(className, parent, name)

    def load(self, device, parent=None):
        return wrap(super().load(_unwrap(device), parent))


def qt_module() -> types.ModuleType:
    """The ``qt`` module as Slicer's Python has it, over PySide6 (the classes GadoReduce and slicer.util use)."""
    application()
    qt = types.ModuleType("qt")
    qt.QFile = QtCore.QFile
    qt.QUiLoader = QUiLoader
    qt.QTimer = lambda *args: wrap(QtCore.QTimer(*args))
    qt.QWidget = lambda *args: wrap(QtWidgets.QWidget(*args))
    qt.QVBoxLayout = lambda *args: wrap(QtWidgets.QVBoxLayout(*[_unwrap(a) for a in args]))
    qt.Qt = QtCore.Qt
    qt.QCursor = QtGui.QCursor
    return qt


def ctk_module() -> types.ModuleType:
    ctk = types.ModuleType("ctk")
    for name in ("ctkPathLineEdit", "ctkSliderWidget", "ctkCollapsibleButton"):
        setattr(ctk, name, CUSTOM_WIDGETS[name])
    return ctk
