"""A killable background process running :mod:`GadoReduceLib.module.worker` (MONAIAuto3DSeg style).

The job folder: :func:`start_job` writes the inputs of the module's parameters (:func:`write_job`) and starts the
worker; :func:`read_result` reads what it wrote. ``BackgroundJob(folder)`` starts
``[python, "-m", "GadoReduceLib.module.worker", folder]`` with ``subprocess.Popen``; a reader thread collects
its stdout lines so that :meth:`BackgroundJob.poll` never blocks (the Slicer panel calls it from a QTimer; the
console waits with :meth:`wait`). :meth:`cancel` kills the whole process tree (elastix may run as a child
process). Only :func:`start_job` and :func:`worker_registration` need Slicer (imported lazily).
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import types
from pathlib import Path

from .worker import RESULT_FILE, parse_progress


class JobCancelled(RuntimeError):
    """The user cancelled the computation; no output was created."""


class JobFailed(RuntimeError):
    """The background process ended with an error (the message is its last error line)."""


def python_executable() -> str:
    """PythonSlicer inside 3D Slicer (a plain Python with Slicer's packages, beside Slicer's executable or on
    PATH, as MONAIAuto3DSeg finds it), else this interpreter."""
    beside = shutil.which("PythonSlicer", path=str(Path(sys.executable).parent))
    return beside or shutil.which("PythonSlicer") or sys.executable


WINDOWS_CREATE_NEW_PROCESS_GROUP = 0x00000200
WINDOWS_CREATE_NO_WINDOW = 0x08000000
WINDOWS_STARTF_USESHOWWINDOW, WINDOWS_SW_HIDE = 0x00000001, 0


def popen_options(platform: str = os.name) -> dict:
    """``subprocess.Popen`` keywords of the worker: output as UTF-8 text with undecodable bytes replaced (the
    worker writes UTF-8, ``PYTHONIOENCODING``), its own process group (so that cancel kills the tree), and on
    Windows no console window (as SlicerElastix starts elastix)."""
    options = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "text": True, "encoding": "utf-8",
               "errors": "replace"}
    if platform == "nt":
        info = subprocess.STARTUPINFO() if hasattr(subprocess, "STARTUPINFO") else types.SimpleNamespace(
            dwFlags=0, wShowWindow=0)  # the Windows type exists only on Windows
        info.dwFlags |= WINDOWS_STARTF_USESHOWWINDOW
        info.wShowWindow = WINDOWS_SW_HIDE
        options.update(startupinfo=info, creationflags=WINDOWS_CREATE_NEW_PROCESS_GROUP | WINDOWS_CREATE_NO_WINDOW)
    else:
        options["start_new_session"] = True
    return options


def kill_tree(process: subprocess.Popen) -> None:
    """Kill ``process`` and every process it started (own process group / ``taskkill /T``)."""
    if process.poll() is not None:
        return
    if os.name == "nt":
        subprocess.run(["taskkill", "/F", "/T", "/PID", str(process.pid)], capture_output=True)
    else:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            process.kill()
    process.wait()


class BackgroundJob:
    """The worker process for one job folder; ``lines`` keeps every output line."""

    def __init__(self, folder: str | os.PathLike, python: str | None = None, env: dict | None = None):
        self.folder = Path(folder)
        self.lines: list[str] = []
        self.cancelled = False
        self.fraction, self.message = 0.0, ""
        module_dir = str(Path(__file__).resolve().parents[1])  # the folder holding GadoReduceLib
        env = dict(os.environ if env is None else env)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (module_dir, env.get("PYTHONPATH")) if p)
        env["PYTHONUNBUFFERED"] = "1"
        env["PYTHONIOENCODING"] = "utf-8"
        self.process = subprocess.Popen(
            [python or python_executable(), "-m", "GadoReduceLib.module.worker", str(self.folder)], env=env,
            cwd=str(self.folder), **popen_options())
        self._queue: queue.Queue = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def poll(self) -> list[tuple[float, str]]:
        """Progress updates (fraction, message) received since the last call; never blocks."""
        updates = []
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                break
            if line is None:
                continue
            self.lines.append(line)
            parsed = parse_progress(line)
            if parsed:
                self.fraction, self.message = parsed
                updates.append(parsed)
        return updates

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def cancel(self) -> None:
        """Kill the process tree; the job's outputs are never used afterwards."""
        self.cancelled = True
        kill_tree(self.process)

    def close(self) -> None:
        """Kill the process tree if it still runs and remove the job folder."""
        if self.running:
            self.cancel()
        shutil.rmtree(self.folder, ignore_errors=True)

    def error_message(self) -> str:
        errors = [line[len("ERROR "):] for line in self.lines if line.startswith("ERROR ")]
        if errors:
            return errors[-1]
        tail = [line for line in self.lines if line.strip() and not line.startswith("PROGRESS ")][-15:]
        return "\n".join(tail) or f"exit status {self.process.returncode}"

    def check_finished(self) -> None:
        """After the process ended: JobCancelled, ValueError (user error) or JobFailed unless it succeeded."""
        self._reader.join(timeout=5)
        self.poll()
        if self.cancelled:
            raise JobCancelled("GadoReduce was cancelled; no output was created.")
        code = self.process.returncode
        if code == 2 and any(line.startswith("ERROR ") for line in self.lines):
            raise ValueError(self.error_message())
        if code != 0:
            raise JobFailed(f"The GadoReduce computation failed ({self.error_message()})")

    def wait(self, progress=None, should_cancel=None, interval_s: float = 0.1) -> None:
        """Block until the process ends, passing each update to ``progress(fraction, message)``; cancel when
        ``should_cancel()`` returns True (checked every ``interval_s``) or ``progress`` calls :meth:`cancel`.
        Raises as :meth:`check_finished`; on any interruption (e.g. KeyboardInterrupt) the process is killed."""
        try:
            self._wait(progress, should_cancel, interval_s)
        except BaseException:
            self.cancel()
            raise
        self.check_finished()

    def _wait(self, progress, should_cancel, interval_s: float) -> None:
        while True:
            for fraction, message in self.poll():
                if progress:
                    progress(fraction, message)
            if should_cancel is not None and not self.cancelled and should_cancel():
                self.cancel()
            if self.cancelled or not self.running:
                break
            try:
                self.process.wait(timeout=interval_s)
            except subprocess.TimeoutExpired:
                pass


# ------------------------------------------------------------------------------ job folders


def write_job(folder: str | os.PathLike, images: dict, settings: dict) -> Path:
    """Write ``images`` (name -> volume node, SimpleITK image or None) as uncompressed NRRD (volume nodes with
    MRML's storage node, ``io.mrml.write_volume_node``) and ``job.json`` with ``settings`` into ``folder`` (see
    :mod:`GadoReduceLib.module.worker`); returns the folder."""
    import SimpleITK as sitk

    from ..io.atomic import write_json
    from ..io.imageio import write_image
    from ..io.mrml import write_volume_node
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    inputs = {}
    for name, image in images.items():
        path = folder / f"{name}.nrrd"
        if image is None:
            inputs[name] = None
        elif isinstance(image, sitk.Image):
            inputs[name] = write_image(image, path, compress=False).name
        else:
            inputs[name] = write_volume_node(image, path).name
    write_json(folder / "job.json", {"inputs": inputs, **settings}, indent=1)
    return folder


def worker_registration(backend: str = "auto") -> tuple[str, dict | None]:
    """(registration backend, environment) for the worker process. Inside Slicer with SlicerElastix and
    backend "auto" or "slicer": SlicerElastix's bundled elastix executable (its bin folder first on PATH,
    its library environment), because the worker is a plain PythonSlicer process without ElastixLogic.
    Otherwise the backend as given (the worker resolves "auto": elastix on PATH, else itk-elastix)."""
    from ..preprocessing.registration import slicer_elastix_available
    if backend not in ("auto", "slicer") or not slicer_elastix_available():
        return backend, None
    from Elastix import ElastixLogic
    elastix = ElastixLogic()
    env = dict(elastix.getElastixEnv() or os.environ)
    env["PATH"] = os.pathsep.join(p for p in (elastix.getElastixBinDir(), env.get("PATH")) if p)
    return "executable", env


def job_settings(parameters) -> dict:
    """The worker's settings (``job.json``) from the module's parameter node."""
    from .inputs import model_file
    model = model_file(parameters.modelPath)
    zero_dose = bool(getattr(parameters, "zeroDose", False))
    return {"dose": 0.0 if zero_dose else parameters.dose, "field_strength": parameters.fieldStrength,
            "agent": parameters.agent,
            "model": str(model) if model is not None else None, "device": parameters.device, "tile": "auto",
            "threshold_sigmas": parameters.thresholdSigmas, "min_volume_mm3": parameters.minRegionVolume,
            "uncertainty": bool(parameters.computeUncertainty)}


def start_job(parameters, backend: str = "auto", temporary_path: str | None = None) -> BackgroundJob:
    """Write the inputs of the parameter node ``parameters`` (checked) into a new folder under ``temporary_path``
    (default: Slicer's temporary path) and start the worker on it; returns the :class:`BackgroundJob` (its
    folder is removed again on failure)."""
    import tempfile

    from ..io.cases import SEQUENCES
    from .outputs import labels_from_segmentation
    if temporary_path is None:
        import slicer
        temporary_path = slicer.app.temporaryPath
    folder = tempfile.mkdtemp(prefix="GadoReduce-", dir=temporary_path)
    pre, standard = parameters.preContrast, parameters.standardDose
    try:
        sequences = [(key, getattr(parameters, key, None), key) for key in SEQUENCES]  # parameter = sequence key
        images = {"pre_contrast": pre, "low_dose": parameters.lowDose, "standard_dose": standard,
                  "lesion_labels": None, **{key: node for key, node, _ in sequences if node is not None}}
        settings = job_settings(parameters)
        settings["input_labels"] = {key: f"'{node.GetName()}' ({parameter})" for key, node, parameter in [
            ("pre_contrast", pre, "preContrast"), ("low_dose", parameters.lowDose, "lowDose"),
            ("standard_dose", standard, "standardDose")] + sequences if node is not None}
        if parameters.lesionSegmentation:
            images["lesion_labels"], settings["lesion_names"] = labels_from_segmentation(
                parameters.lesionSegmentation, pre)
        settings["backend"], env = worker_registration(backend)
        write_job(folder, images, settings)
        return BackgroundJob(folder, env=env)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def read_result(folder: str | os.PathLike) -> tuple[dict, dict]:
    """(record, images name -> SimpleITK image) of a finished job folder."""
    from ..io.imageio import read_image
    folder = Path(folder)
    record = json.loads((folder / RESULT_FILE).read_text())
    return record, {name: read_image(folder / rel) for name, rel in record["images"].items()}


def job_outputs(scene, parameters, folder: str | os.PathLike) -> dict:
    """The output nodes of the finished job in ``folder`` (``outputs.create_outputs`` in ``scene``, set on the
    parameter node ``parameters``) and its record (noise sigma, warnings, rows) as ``"record"``."""
    from .outputs import create_outputs
    record, images = read_result(folder)
    nodes = create_outputs(scene, parameters, record, images)
    nodes["record"] = record
    return nodes


class ModuleRun:
    """One run of the module's ``process()``: the worker job on the parameter node ``parameters``
    (:func:`start_job`), its progress passed on to ``report(fraction, message)`` scaled to 0-0.95, then the
    output nodes (:func:`job_outputs`)."""

    def __init__(self, parameters, report, backend: str = "auto"):
        self.parameters, self.report = parameters, report
        self.job = start_job(parameters, backend)

    def _forward(self, fraction: float, message: str) -> None:
        self.report(0.95 * fraction, message)

    def poll(self) -> bool:
        """Pass the worker's progress on (never blocks); True once the worker process ended."""
        for fraction, message in self.job.poll():
            self._forward(fraction, message)
        return not self.job.running

    def wait(self, should_cancel=None) -> None:
        """Block until the worker ended (see :meth:`BackgroundJob.wait`)."""
        self.job.wait(self._forward, should_cancel=should_cancel)

    def finish(self, scene, message: str = "Creating the output nodes ...") -> dict:
        """After the worker ended: raise as :meth:`BackgroundJob.check_finished`, else report ``message`` and
        return the output nodes with "record" (:func:`job_outputs`). The job folder is removed either way."""
        try:
            self.job.check_finished()
            self.report(0.97, message)
            return job_outputs(scene, self.parameters, self.job.folder)
        finally:
            self.job.close()

    def close(self) -> None:
        """Kill the worker if it still runs (no output node is created or changed) and remove the job folder."""
        self.job.close()
