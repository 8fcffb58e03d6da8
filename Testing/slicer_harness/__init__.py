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
- ``slicer.parameterNodeWrapper`` (``slicer_harness.parameters``): Slicer's typed parameter-node decorator with
  its serializers, validators, messages and GUI connectors, over a real vtkMRMLScriptedModuleNode;
- SlicerElastix, SampleData and SlicerPyTorch (``slicer_harness.extensions``, on request through
  :meth:`Harness.install_extensions`): their logic classes with the real signatures; SlicerElastix's runs the
  real elastix executable;
- the Subject Hierarchy plugin logic's scene observer (a Qt class in Slicer): new data nodes get their
  subject hierarchy item under the scene, as in the application;
- Qt widgets for the widget test (``slicer_harness.qtwidgets``): PySide6 widgets driven through PythonQt's
  interface, Slicer's custom widget classes as minimal subclasses;
- ``slicer.i18n``: translation functions (identity here);
- ``qt`` and ``ctk``: Qt widget modules; any attribute is a do-nothing class, because the
  headless tests exercise the logic, never the widgets;
- ``slicer.dicomDatabase`` (only when a test installs :class:`DICOMDatabaseStandIn`): the ctkDICOMDatabase
  calls ``fileForInstance`` and ``fileValue``, answered from real DICOM files read with SimpleITK (GDCM).
Nothing of GadoReduceLib is replaced: the module's logic runs on the real core.
"""

from __future__ import annotations

import sys
import tempfile
import types
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
    """Stand-in for qSlicerApplication (Base/QTGUI/qSlicerApplication.h, qSlicerCoreApplication.h, 5.8-main):
    what scripted modules call. ``connect(signal, slot)`` records the slot; :meth:`emit` calls the slots of a
    signal (``startupCompleted()`` is emitted by the application once every module is loaded)."""

    SIGNALS = ("startupCompleted()", "aboutToQuit()")

    def __init__(self, scene, app_logic):
        self._scene = scene
        self._app_logic = app_logic
        self._slots = {}
        self.temporaryPath = tempfile.mkdtemp(prefix="gadoreduce-slicer-")
        self.testing = True

    def commandOptions(self):
        return types.SimpleNamespace(noMainWindow=True, testingEnabled=self.testing)

    def testingEnabled(self):
        return self.testing

    def connect(self, signal, slot):
        if signal not in self.SIGNALS:
            raise ValueError(f"stand-in: qSlicerApplication has no signal {signal!r}")
        if not callable(slot):
            raise TypeError("slot must be callable")
        self._slots.setdefault(signal, []).append(slot)
        return True

    def emit(self, signal):
        for slot in self._slots.get(signal, []):
            slot()

    def mrmlScene(self):
        return self._scene

    def applicationLogic(self):
        return self._app_logic

    def processEvents(self, *args):
        pass

    def setOverrideCursor(self, cursor):
        pass

    def restoreOverrideCursor(self):
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
    """Base/Python/slicer/ScriptedLoadableModule.py: without a parent, the widget makes its own panel with a
    vertical layout (``self.layout``); ``setup()`` adds nothing here (Slicer adds Reload and Test buttons in
    developer mode). Widgets need :meth:`Harness.install_widgets`."""

    def __init__(self, parent=None):
        self.moduleName = self.__class__.__name__[:-len("Widget")]
        self.developerMode = False
        self.parent = parent
        self.layout = None

    def resourcePath(self, filename):
        import os
        return os.path.join(os.path.dirname(sys.modules[self.__class__.__module__].__file__), "Resources", filename)

    def setup(self):
        import qt
        if self.parent is None:
            self.parent = qt.QWidget()
            self.parent.isEntered = True
            self.layout = qt.QVBoxLayout(self.parent)


class ScriptedLoadableModuleTest(unittest.TestCase):
    def delayDisplay(self, message, msec=0):
        print(message)


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
        self._extensions = set()
        self._saved_pythonpath = None
        for name, class_name in MODULE_LOGICS.items():
            logic = getattr(slicer, class_name)()
            logic.SetMRMLApplicationLogic(self.app_logic)
            logic.SetMRMLScene(self.scene)
            self.app_logic.SetModuleLogic(name, logic)
            self.logics[name] = logic
        self._observe_subject_hierarchy()
        if install:
            self.install()

    def _observe_subject_hierarchy(self):
        """STAND-IN for the Subject Hierarchy module's plugin logic (Slicer
        Modules/Loadable/SubjectHierarchy/Widgets/qSlicerSubjectHierarchyPluginLogic.cxx, ``onNodeAdded`` and
        ``onSceneCloseEnded``, a Qt class): every data node added to the scene gets a subject hierarchy item under
        the scene item unless the scene is importing, the node is hidden from editors or excluded from the tree;
        the subject hierarchy node exists from the start and again after a scene close."""
        from vtkmodules.util.misc import calldata_type
        from vtkmodules.util.vtkConstants import VTK_OBJECT
        exclude = slicer.vtkMRMLSubjectHierarchyConstants.GetSubjectHierarchyExcludeFromTreeAttributeName()

        @calldata_type(VTK_OBJECT)
        def node_added(scene, event, node):
            if (scene.IsImporting() or node is None or not node.IsA("vtkMRMLStorableNode")
                    or node.GetHideFromEditors() or node.GetAttribute(exclude)):
                return
            shnode = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
            if not shnode.GetItemByDataNode(node):
                shnode.CreateItem(shnode.GetSceneItemID(), node)

        def scene_closed(scene, event):
            slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)

        self._subject_hierarchy_observers = (node_added, scene_closed)  # keep the callbacks alive
        self.scene.AddObserver(slicer.vtkMRMLScene.NodeAddedEvent, node_added)
        self.scene.AddObserver(slicer.vtkMRMLScene.EndCloseEvent, scene_closed)
        slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(self.scene)

    STAND_IN_MODULES = ("qt", "ctk", "slicer.qSlicerWidgetsPythonQt", "slicer.ScriptedLoadableModule",
                        "slicer.parameterNodeWrapper", "slicer.i18n")
    STAND_IN_ATTRIBUTES = ("app", "modules", "mrmlScene", "ScriptedLoadableModule", "parameterNodeWrapper", "i18n",
                           "dicomDatabase")

    def uninstall(self):
        """Remove the stand-ins again, so that code outside the harness sees plain slicer-core."""
        for name in set(self._extensions):
            sys.modules.pop(name, None)
        self._extensions = set()
        if self._saved_pythonpath is not None:
            import os
            if self._saved_pythonpath:
                os.environ["PYTHONPATH"] = self._saved_pythonpath
            else:
                os.environ.pop("PYTHONPATH", None)
            self._saved_pythonpath = None
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
        from . import extensions, parameters
        extensions.reset()
        pnw = parameters.module()
        i18n = types.ModuleType("slicer.i18n")
        i18n.tr = lambda text: text
        i18n.translate = lambda context, text: text
        for name, module in (("ScriptedLoadableModule", slm), ("parameterNodeWrapper", pnw), ("i18n", i18n)):
            sys.modules[f"slicer.{name}"] = module
            setattr(slicer, name, module)

    def install_extensions(self, *names):
        """Make the stand-ins of Slicer modules and extensions importable (``Elastix``, ``SampleData``,
        ``PyTorchUtils``) and list them in ``slicer.modules`` (as ``elastix``, ``sampledata``,
        ``pytorchutils``); they are removed again by :meth:`uninstall`."""
        from . import extensions
        for name in names:
            module = extensions.EXTENSION_MODULES[name]()
            sys.modules[name] = module
            self._extensions.add(name)
            logic_class = next(v for k, v in vars(module).items() if k.endswith("Logic"))
            setattr(slicer.modules, name.lower(), _ModuleEntry(name, logic_class()))

    def hide_from_subprocesses(self, *names):
        """Python subprocesses started from now on cannot import ``names`` (as PythonSlicer has no ``itk``): a
        ``sitecustomize`` first on PYTHONPATH refuses them; undone by :meth:`uninstall`."""
        import os
        folder = tempfile.mkdtemp(prefix="gadoreduce-hidden-")
        with open(os.path.join(folder, "sitecustomize.py"), "w") as f:
            f.write("import sys\n"
                    f"HIDDEN = {tuple(names)!r}\n"
                    "class _Hide:\n"
                    "    def find_spec(self, name, path=None, target=None):\n"
                    "        if name.split('.')[0] in HIDDEN:\n"
                    "            raise ModuleNotFoundError(f\"No module named '{name}' (hidden, as in PythonSlicer)\")\n"
                    "        return None\n"
                    "sys.meta_path.insert(0, _Hide())\n")
        if self._saved_pythonpath is None:
            self._saved_pythonpath = os.environ.get("PYTHONPATH", "")
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (folder, os.environ.get("PYTHONPATH")) if p)
        return folder

    def install_widgets(self):
        """Real Qt widgets (PySide6, offscreen) behind Slicer's ``qt`` and ``ctk`` modules, for building the
        module panel from its .ui (``slicer_harness.qtwidgets``); removed again by :meth:`uninstall`."""
        from . import qtwidgets
        sys.modules["qt"] = qtwidgets.qt_module()
        sys.modules["ctk"] = qtwidgets.ctk_module()

    def clear(self):
        """Remove all data nodes from the scene (as File / Close scene does)."""
        self.scene.Clear(False)


def make_module_parent():
    """The object Slicer passes to a scripted module's constructor."""
    return types.SimpleNamespace(title="", categories=[], dependencies=[], contributors=[], helpText="",
                                 acknowledgementText="")
