"""Headless test harness: real MRML from ``slicer-core``, stand-ins for the Slicer application.

REAL (from the ``slicer-core`` package, the same C++ libraries 3D Slicer is built from):
the MRML scene, all node classes and their storage nodes (NRRD, NIfTI, .mrb), the
application logic and the Volumes, Colors, Transforms, Tables, Segmentations and Subject
Hierarchy module logics, and ``slicer.util`` (Slicer's own Python utilities).

STAND-INS (this file only): what exists solely inside the running Slicer application and
has no Qt-free build on PyPI:
- ``slicer.app``: the qSlicerApplication singleton (scene, application logic, temp path);
- ``slicer.modules``: the module registry, giving each registered module's real logic;
- ``slicer.ScriptedLoadableModule``: the scripted-module base classes (they wrap Qt widgets);
- ``slicer.parameterNodeWrapper``: Slicer's typed parameter-node decorator, reduced to what
  GadoReduce uses (typed values and node references stored in a real vtkMRMLScriptedModuleNode);
- ``slicer.i18n``: translation functions (identity here);
- ``qt`` and ``ctk``: Qt widget modules; any attribute is a do-nothing class, because the
  headless tests exercise the logic, never the widgets;
- ``slicer.dicomDatabase`` (only when a test installs :class:`DICOMDatabaseStandIn`): the ctkDICOMDatabase
  calls ``fileForInstance`` and ``fileValue``, answered from real DICOM files read with SimpleITK (GDCM).
Nothing of GadoReduceLib is replaced: the module's logic runs on the real core.
"""

from __future__ import annotations

import enum
import sys
import tempfile
import types
import typing
import unittest

import slicer  # the real slicer-core package (MRML classes, slicer.util)

MODULE_LOGICS = {
    # Colors first: volume display nodes look up the default color tables it creates.
    "Colors": "vtkSlicerColorLogic",
    "Volumes": "vtkSlicerVolumesLogic",
    "Transforms": "vtkSlicerTransformLogic",
    "Tables": "vtkSlicerTablesLogic",
    "Segmentations": "vtkSlicerSegmentationsModuleLogic",
    "SubjectHierarchy": "vtkSlicerSubjectHierarchyModuleLogic",
}


class _AnyQtThing:
    """Stand-in for any Qt/CTK class or constant: accepts any call and attribute."""

    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, *args, **kwargs):
        return _AnyQtThing()

    def __getattr__(self, name):
        return _AnyQtThing()


class _QtModule(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _AnyQtThing


class _App:
    """Stand-in for qSlicerApplication: only what scripted modules call without a GUI."""

    def __init__(self, scene, app_logic):
        self._scene = scene
        self._app_logic = app_logic
        self.temporaryPath = tempfile.mkdtemp(prefix="gadoreduce-slicer-")
        self.commandOptions = lambda: types.SimpleNamespace(noMainWindow=True, testingEnabled=True)

    def mrmlScene(self):
        return self._scene

    def applicationLogic(self):
        return self._app_logic

    def processEvents(self, *args):
        pass

    def layoutManager(self):
        return None


class _ModuleEntry:
    def __init__(self, name, logic):
        self._name, self._logic = name, logic

    def logic(self):
        return self._logic

    def name(self):
        return self._name


# --- slicer.ScriptedLoadableModule stand-in ------------------------------------------------

class ScriptedLoadableModule:
    def __init__(self, parent):
        self.parent = parent
        self.moduleName = self.__class__.__name__

    def resourcePath(self, filename):
        import os
        return os.path.join(os.path.dirname(sys.modules[self.__class__.__module__].__file__), "Resources", filename)


class ScriptedLoadableModuleLogic:
    def __init__(self, parent=None):
        name = self.__class__.__name__
        self.moduleName = name[:-len("Logic")] if name.endswith("Logic") else name

    def getParameterNode(self):
        scene = slicer.mrmlScene
        node = scene.GetSingletonNode(self.moduleName, "vtkMRMLScriptedModuleNode")
        if node is None:
            node = scene.CreateNodeByClass("vtkMRMLScriptedModuleNode")
            node.UnRegister(None)
            node.SetSingletonTag(self.moduleName)
            node.SetName(scene.GenerateUniqueName(self.moduleName))
            node.SetModuleName(self.moduleName)
            node = scene.AddNode(node)
        return node


class ScriptedLoadableModuleWidget:
    def __init__(self, parent=None):
        self.parent = parent
        self.moduleName = self.__class__.__name__[:-len("Widget")]


class ScriptedLoadableModuleTest(unittest.TestCase):
    def delayDisplay(self, message, msec=0):
        print(message)


# --- slicer.parameterNodeWrapper stand-in --------------------------------------------------

class WithinRange:
    def __init__(self, minimum, maximum):
        self.minimum, self.maximum = minimum, maximum


class Choice:
    def __init__(self, choices):
        self.choices = tuple(choices)


def _property_for(name, annotation, default):
    base, validators = annotation, ()
    if typing.get_origin(annotation) is typing.Annotated:
        base, *validators = typing.get_args(annotation)
    if typing.get_origin(base) in (typing.Union, types.UnionType):  # Optional[NodeType]
        base = next(a for a in typing.get_args(base) if a is not type(None))
    is_node = isinstance(base, type) and base.__name__.startswith("vtkMRML")

    def getter(self):
        if is_node:
            return self.parameterNode.GetNodeReference(name)
        text = self.parameterNode.GetParameter(name)
        if text == "":
            return default
        if base is bool:
            return text == "true"
        return base(text)

    def setter(self, value):
        if is_node:
            self.parameterNode.SetNodeReferenceID(name, value.GetID() if value is not None else None)
            return
        for validator in validators:
            if isinstance(validator, WithinRange) and not validator.minimum <= value <= validator.maximum:
                raise ValueError(f"{name} must be within [{validator.minimum}, {validator.maximum}], not {value}")
            if isinstance(validator, Choice) and value not in validator.choices:
                raise ValueError(f"{name} must be one of {validator.choices}, not {value!r}")
        if base is bool:
            text = "true" if value else "false"
        elif isinstance(value, enum.Enum):
            text = value.value
        else:
            text = str(base(value))
        self.parameterNode.SetParameter(name, text)

    return property(getter, setter)


def parameterNodeWrapper(cls):
    hints = typing.get_type_hints(cls, include_extras=True)
    defaults = {name: getattr(cls, name, None) for name in hints}

    def __init__(self, parameterNode):
        self.parameterNode = parameterNode
        for name, value in defaults.items():
            if value is not None and parameterNode.GetParameter(name) == "" and not _is_node_hint(hints[name]):
                setattr(self, name, value)

    namespace = {name: _property_for(name, hint, defaults[name]) for name, hint in hints.items()}
    namespace["__init__"] = __init__
    namespace["allParameters"] = property(lambda self: list(hints))
    return type(cls.__name__, (), namespace)


def _is_node_hint(hint) -> bool:
    return "vtkMRML" in repr(hint)


# --- slicer.dicomDatabase stand-in ---------------------------------------------------------

class DICOMDatabaseStandIn:
    """The two ctkDICOMDatabase calls GadoReduce makes, over real DICOM files (read with SimpleITK)."""

    def __init__(self, paths=()):
        self._files = {}
        for path in paths:
            self.addFile(path)

    @staticmethod
    def _reader(path):
        import SimpleITK as sitk
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        reader.ReadImageInformation()
        return reader

    def addFile(self, path):
        """Index a DICOM file by its SOP Instance UID (0008,0018); returns the UID."""
        uid = self._reader(path).GetMetaData("0008|0018").strip()
        self._files[uid] = str(path)
        return uid

    def fileForInstance(self, uid):
        return self._files.get(uid, "")

    def fileValue(self, path, tag):
        """The tag's value as text ("" when absent), as ctkDICOMDatabase.fileValue("0018,0087")."""
        key = tag.replace(",", "|").lower()
        reader = self._reader(path)
        return reader.GetMetaData(key).strip() if reader.HasMetaDataKey(key) else ""


# --- installation --------------------------------------------------------------------------

class Harness:
    """A real MRML scene with the application logic and module logics registered."""

    def __init__(self, install: bool = False):
        self.scene = slicer.vtkMRMLScene()
        # Remote/cache I/O managers: the application sets these up; .mrb reading needs a cache folder.
        cache = slicer.vtkCacheManager()
        cache.SetRemoteCacheDirectory(tempfile.mkdtemp(prefix="gadoreduce-cache-"))
        io_manager = slicer.vtkDataIOManager()
        io_manager.SetCacheManager(cache)
        self.scene.SetCacheManager(cache)
        self.scene.SetDataIOManager(io_manager)
        self.app_logic = slicer.vtkSlicerApplicationLogic()
        self.app_logic.SetMRMLScene(self.scene)
        self.logics = {}
        for name, class_name in MODULE_LOGICS.items():
            logic = getattr(slicer, class_name)()
            logic.SetMRMLApplicationLogic(self.app_logic)
            logic.SetMRMLScene(self.scene)
            self.app_logic.SetModuleLogic(name, logic)
            self.logics[name] = logic
        if install:
            self.install()

    STAND_IN_MODULES = ("qt", "ctk", "slicer.qSlicerWidgetsPythonQt", "slicer.ScriptedLoadableModule",
                        "slicer.parameterNodeWrapper", "slicer.i18n")
    STAND_IN_ATTRIBUTES = ("app", "modules", "mrmlScene", "ScriptedLoadableModule", "parameterNodeWrapper", "i18n",
                           "dicomDatabase")

    def uninstall(self):
        """Remove the stand-ins again, so that code outside the harness sees plain slicer-core."""
        for name in self.STAND_IN_MODULES:
            sys.modules.pop(name, None)
        for name in self.STAND_IN_ATTRIBUTES:
            if hasattr(slicer, name):
                delattr(slicer, name)

    def install(self):
        """Put the stand-ins in place (slicer.app, slicer.modules, qt, ...) with this scene as slicer.mrmlScene."""
        slicer.mrmlScene = self.scene
        slicer.app = _App(self.scene, self.app_logic)
        slicer.modules = types.SimpleNamespace(
            **{name.lower(): _ModuleEntry(name, logic) for name, logic in self.logics.items()})
        for name in ("qt", "ctk", "slicer.qSlicerWidgetsPythonQt"):
            sys.modules[name] = _QtModule(name)
        slm = types.ModuleType("slicer.ScriptedLoadableModule")
        for obj in (ScriptedLoadableModule, ScriptedLoadableModuleLogic, ScriptedLoadableModuleWidget,
                    ScriptedLoadableModuleTest):
            setattr(slm, obj.__name__, obj)
        slm.__all__ = [obj for obj in dir(slm) if obj.startswith("Scripted")]
        pnw = types.ModuleType("slicer.parameterNodeWrapper")
        pnw.parameterNodeWrapper, pnw.WithinRange, pnw.Choice = parameterNodeWrapper, WithinRange, Choice
        i18n = types.ModuleType("slicer.i18n")
        i18n.tr = lambda text: text
        i18n.translate = lambda context, text: text
        for name, module in (("ScriptedLoadableModule", slm), ("parameterNodeWrapper", pnw), ("i18n", i18n)):
            sys.modules[f"slicer.{name}"] = module
            setattr(slicer, name, module)

    def clear(self):
        """Remove all data nodes from the scene (as File / Close scene does)."""
        self.scene.Clear(False)


def make_module_parent():
    """The object Slicer passes to a scripted module's constructor."""
    return types.SimpleNamespace(title="", categories=[], dependencies=[], contributors=[], helpText="",
                                 acknowledgementText="")
