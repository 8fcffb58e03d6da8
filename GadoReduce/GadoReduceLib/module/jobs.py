"""A killable background process running :mod:`GadoReduceLib.module.worker` (MONAIAuto3DSeg style).

``BackgroundJob(folder)`` starts ``[python, "-m", "GadoReduceLib.module.worker", folder]`` with
``subprocess.Popen``; a reader thread collects its stdout lines so that :meth:`BackgroundJob.poll`
never blocks (the Slicer panel calls it from a QTimer; the console waits with :meth:`wait`).
:meth:`cancel` kills the whole process tree (elastix may run as a child process). Nothing in here
needs Slicer.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

from .worker import parse_progress


class JobCancelled(RuntimeError):
    """The user cancelled the computation; no output was created."""


class JobFailed(RuntimeError):
    """The background process ended with an error (the message is its last error line)."""


def python_executable() -> str:
    """PythonSlicer inside 3D Slicer (a plain Python with Slicer's packages), else this interpreter."""
    name = "PythonSlicer.exe" if os.name == "nt" else "PythonSlicer"
    candidate = Path(sys.executable).with_name(name)
    if candidate.is_file():
        return str(candidate)
    return sys.executable


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
        kwargs = {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP} if os.name == "nt" else \
            {"start_new_session": True}
        self.process = subprocess.Popen([python or python_executable(), "-m", "GadoReduceLib.module.worker", str(self.folder)],
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                        cwd=str(self.folder), **kwargs)
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
