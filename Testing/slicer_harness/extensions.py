"""STAND-INS for the Slicer modules and extensions GadoReduce calls: SlicerElastix, SampleData, PyTorch.

Written from reading their sources (no code copied); each class names the file and version its signatures
come from. They keep the real signatures and the behaviour GadoReduce depends on, so that a call real Slicer
would reject fails here too:

- ``ElastixLogic``: SlicerElastix ``Elastix/Elastix.py`` (master, 2026-02, 507db19). ``registerVolumes`` runs the
  REAL elastix executable (Debian package ``elastix``) on the exported volumes and then, like SlicerElastix,
  loads ``TransformParameters.N-Composite.h5`` into the output transform node when the parameter file asks for
  it, else a displacement field computed by the REAL transformix (a grid transform in the node).
- ``SampleDataLogic`` / ``SampleDataSource``: Slicer ``Modules/Scripted/SampleData/SampleData.py`` (5.8, 5.10, main).
- ``PyTorchUtilsLogic``: SlicerPyTorch ``PyTorchUtils/PyTorchUtils.py`` (e1c85cc, 2024-04); ``installTorch``
  records its call instead of running pip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import types
from pathlib import Path


# --- SlicerElastix -------------------------------------------------------------------------

def _parameter_values(path) -> dict:
    """{key: first value} of an elastix parameter file (quotes removed)."""
    values = {}
    for line in Path(path).read_text().splitlines():
        line = line.split("//")[0].strip()
        if line.startswith("(") and line.endswith(")"):
            key, *rest = line[1:-1].split()
            values[key] = rest[0].strip('"') if rest else ""
    return values


class ElastixLogic:
    """SlicerElastix's ElastixLogic (signatures of Elastix/Elastix.py, 507db19)."""

    calls: list = []  # every registerVolumes call's keyword arguments (class-wide, for tests)

    def __init__(self):
        self.deleteTemporaryFiles = True
        self.logStandardOutput = False

    def getElastixBinDir(self) -> str:
        found = shutil.which("elastix")
        if not found:
            raise ValueError("Elastix not found")
        return str(Path(found).parent)

    def getElastixEnv(self) -> dict:
        env = dict(os.environ)
        env["PATH"] = os.pathsep.join((self.getElastixBinDir(), env.get("PATH", "")))
        return env

    def getStartupInfo(self):
        return None  # SlicerElastix: a STARTUPINFO hiding the window on Windows, None elsewhere

    def registerVolumes(self, fixedVolumeNode, movingVolumeNode, parameterFilenames=None, outputVolumeNode=None,
                        outputTransformNode=None, fixedVolumeMaskNode=None, movingVolumeMaskNode=None,
                        forceDisplacementFieldOutputTransform=True, initialTransformNode=None):
        ElastixLogic.calls.append(dict(parameterFilenames=parameterFilenames,
                                       forceDisplacementFieldOutputTransform=forceDisplacementFieldOutputTransform))
        if parameterFilenames is None:
            raise NotImplementedError("stand-in: the default preset is not available; pass parameterFilenames")
        tmp = Path(tempfile.mkdtemp(prefix="elastix-standin-"))
        try:
            (tmp / "input").mkdir()
            args = []
            for node, name, flag in ((fixedVolumeNode, "fixed", "-f"), (movingVolumeNode, "moving", "-m"),
                                     (fixedVolumeMaskNode, "fixedMask", "-fMask"),
                                     (movingVolumeMaskNode, "movingMask", "-mMask")):
                if node is not None:
                    path = tmp / "input" / f"{name}.mha"
                    _write_volume(node, path)  # SlicerElastix: slicer.util.exportNode (needs the app's IO manager)
                    args += [flag, str(path)]
            for parameter_file in parameterFilenames:
                args += ["-p", str(Path(parameter_file).resolve())]
            result = tmp / "result-transform"
            result.mkdir()
            subprocess.run([str(Path(self.getElastixBinDir()) / "elastix"), *args, "-out", str(result)],
                           check=True, capture_output=True, env=self.getElastixEnv())
            base = result / f"TransformParameters.{len(parameterFilenames) - 1}"
            imported = False
            if outputTransformNode is not None and not forceDisplacementFieldOutputTransform:
                self._writeCompositeLikeNewElastix(base, parameterFilenames[-1])
                try:
                    self._loadTransformInto(str(base) + "-Composite.h5", outputTransformNode)
                    imported = True
                except (OSError, RuntimeError):
                    imported = False
            if outputVolumeNode is not None:
                raise NotImplementedError("stand-in: outputVolumeNode is not used by GadoReduce")
            if outputTransformNode is not None and not imported:
                resample = tmp / "result-resample"
                resample.mkdir()
                subprocess.run([str(Path(self.getElastixBinDir()) / "transformix"), "-tp", f"{base}.txt",
                                "-out", str(resample), "-def", "all"], check=True, capture_output=True)
                field = next(resample.glob("deformationField.*"))
                self._loadTransformInto(str(field), outputTransformNode)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    @staticmethod
    def _writeCompositeLikeNewElastix(base: Path, parameter_file) -> None:
        """elastix 5.1+ writes ``<base>-Composite.h5`` when the parameter file has (WriteITKCompositeTransform
        "true") and (ITKTransformOutputFileNameExtension "h5"); the Debian elastix 5.0.1 lacks the option, so
        the stand-in writes that file from TransformParameters (SimpleITK), only when the file asks for it."""
        values = _parameter_values(parameter_file)
        if values.get("WriteITKCompositeTransform") != "true" or values.get("ITKTransformOutputFileNameExtension") \
                not in ("h5", ".h5"):
            return
        import SimpleITK as sitk
        from GadoReduceLib.preprocessing.registration import transform_from_parameter_text
        composite = sitk.CompositeTransform(3)
        composite.AddTransform(transform_from_parameter_text(Path(f"{base}.txt").read_text()))
        sitk.WriteTransform(composite, f"{base}-Composite.h5")

    @staticmethod
    def _loadTransformInto(path: str, outputTransformNode) -> None:
        """SlicerElastix's loadTransformFromFile: read into a temporary node, CopyContent into the output."""
        import slicer
        if not os.path.isfile(path):
            raise RuntimeError(f"no transform file {path}")
        scene = outputTransformNode.GetScene()
        storage = slicer.vtkMRMLTransformStorageNode()
        scene.AddNode(storage)
        loaded = scene.AddNewNodeByClass("vtkMRMLTransformNode")
        try:
            storage.SetFileName(path)
            if not storage.ReadData(loaded):
                raise RuntimeError(f"cannot read the transform {path}")
            outputTransformNode.CopyContent(loaded)
        finally:
            scene.RemoveNode(loaded)
            scene.RemoveNode(storage)


def _write_volume(node, path: Path) -> None:
    import slicer
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storage.SetFileName(str(path))
    storage.UseCompressionOff()
    if not storage.WriteData(node):
        raise RuntimeError(f"stand-in: could not write {node.GetName()} to {path}")


def elastix_module() -> types.ModuleType:
    """The importable ``Elastix`` module (SlicerElastix's scripted module file) with :class:`ElastixLogic`."""
    module = types.ModuleType("Elastix")
    module.ElastixLogic = ElastixLogic
    return module


# --- SampleData ----------------------------------------------------------------------------

class SampleDataSource:
    """Slicer's SampleDataSource (Modules/Scripted/SampleData/SampleData.py, same on 5.8, 5.10 and main): the
    constructor takes ``len(uris)``, so a registration without ``uris`` raises TypeError as there."""

    def __init__(self, sampleName=None, sampleDescription=None, uris=None, fileNames=None, nodeNames=None,
                 checksums=None, loadFiles=None, customDownloader=None, thumbnailFileName=None,
                 loadFileTypes=None, loadFileProperties=None, loadFileType=None):
        if loadFileType is not None and loadFileTypes is not None:
            raise ValueError("loadFileType and loadFileTypes cannot be specified at the same time")
        loadFileTypes = loadFileTypes if loadFileType is None else loadFileType
        self.sampleName = sampleName
        self.sampleDescription = sampleDescription if sampleDescription is not None else sampleName
        if isinstance(uris, (list, tuple)):
            count = len(uris)
            nodeNames = [None] * count if nodeNames is None else nodeNames
            loadFiles = [None] * count if loadFiles is None else loadFiles
            checksums = [None] * count if checksums is None else checksums
            loadFileTypes = [loadFileTypes] * count if loadFileTypes is None or isinstance(loadFileTypes, str) \
                else loadFileTypes
        elif isinstance(uris, str):
            uris, fileNames, nodeNames = [uris], [fileNames], [nodeNames]
            loadFiles, loadFileTypes, checksums = [loadFiles], [loadFileTypes], [checksums]
        count = len(uris)  # TypeError for uris=None, as in Slicer
        if any(len(x) != count for x in (fileNames, nodeNames, loadFiles, loadFileTypes, checksums)):
            raise ValueError("All fields of sample data source must have the same length")
        self.uris, self.fileNames, self.nodeNames = uris, fileNames, nodeNames
        self.loadFiles, self.loadFileTypes, self.checksums = loadFiles, loadFileTypes, checksums
        self.customDownloader = customDownloader
        self.thumbnailFileName = thumbnailFileName
        self.loadFileProperties = loadFileProperties or {}


class SampleDataLogic:
    """Slicer's SampleDataLogic: registration into ``slicer.modules.sampleDataSources`` and the download calls.
    As in Slicer, only the module panel's button calls a source's ``customDownloader`` (:meth:`clickButton`
    here); ``downloadFromSource`` downloads the ``uris`` and ignores it."""

    @staticmethod
    def registerCustomSampleDataSource(category="Custom", sampleName=None, uris=None, fileNames=None,
                                       nodeNames=None, customDownloader=None, thumbnailFileName=None,
                                       loadFileTypes=None, loadFiles=None, loadFileProperties={}, checksums=None,
                                       loadFileType=None):
        import slicer
        source = SampleDataSource(sampleName=sampleName, uris=uris, fileNames=fileNames, nodeNames=nodeNames,
                                  checksums=checksums, loadFiles=loadFiles, customDownloader=customDownloader,
                                  thumbnailFileName=thumbnailFileName, loadFileTypes=loadFileTypes,
                                  loadFileProperties=loadFileProperties, loadFileType=loadFileType)
        sources = slicer.modules.__dict__.setdefault("sampleDataSources", {})
        if not any(str(s.__dict__) == str(source.__dict__) for s in sources.get(category, [])):
            sources.setdefault(category, []).append(source)

    def sourceForSampleName(self, sampleName):
        import slicer
        for sources in getattr(slicer.modules, "sampleDataSources", {}).values():
            for source in sources:
                if source.sampleName == sampleName:
                    return source
        return None

    def downloadFromSource(self, source, maximumAttemptsCount=3, forceDownload=False):
        if source.uris:
            raise NotImplementedError("stand-in: no downloads (no network in tests)")
        return []

    def downloadSamples(self, sampleName):
        source = self.sourceForSampleName(sampleName)
        return self.downloadFromSource(source) if source else []

    def downloadSample(self, sampleName):
        return self.downloadSamples(sampleName)[0]  # IndexError when nothing was loaded, as in Slicer

    def clickButton(self, sampleName):
        """What the Sample Data panel's button of the sample does: ``customDownloader(source)`` when the source
        has one (its return value is discarded there; returned here for tests)."""
        source = self.sourceForSampleName(sampleName)
        if source is None:
            raise KeyError(f"stand-in: no sample {sampleName!r} registered")
        return source.customDownloader(source) if source.customDownloader else self.downloadFromSource(source)


def sample_data_module() -> types.ModuleType:
    module = types.ModuleType("SampleData")
    module.SampleDataLogic, module.SampleDataSource = SampleDataLogic, SampleDataSource
    return module


# --- SlicerPyTorch -------------------------------------------------------------------------

class PyTorchUtilsLogic:
    """SlicerPyTorch's PyTorchUtilsLogic (PyTorchUtils/PyTorchUtils.py, e1c85cc): ``installTorch`` records the
    call (keyword names as there) and returns the already importable torch, or None when declined."""

    calls: list = []
    decline = False

    def installTorch(self, askConfirmation=False, forceComputationBackend=None, torchVersionRequirement=None,
                     torchvisionVersionRequirement=None):
        PyTorchUtilsLogic.calls.append(dict(askConfirmation=askConfirmation,
                                            torchVersionRequirement=torchVersionRequirement))
        if PyTorchUtilsLogic.decline:
            return None
        import torch
        return torch

    @staticmethod
    def torchInstalled() -> bool:
        import importlib.util
        return importlib.util.find_spec("torch") is not None


def pytorch_utils_module() -> types.ModuleType:
    module = types.ModuleType("PyTorchUtils")
    module.PyTorchUtilsLogic = PyTorchUtilsLogic
    return module


EXTENSION_MODULES = {"Elastix": elastix_module, "SampleData": sample_data_module,
                     "PyTorchUtils": pytorch_utils_module}
"""Importable module name -> factory; the harness installs these on request (``Harness.install_extensions``)."""


def reset() -> None:
    """Forget recorded calls and registrations (between tests)."""
    ElastixLogic.calls = []
    PyTorchUtilsLogic.calls = []
    PyTorchUtilsLogic.decline = False
