"""Seconds and peak memory per stage of a run (issue 14): reading, brain mask, registration, normalization, noise
statistics, network, regions, writing.

``with profiling.record() as stages:`` collects every ``with profiling.stage("registration"):`` entered inside it,
in this thread and context (a ``contextvars`` variable: no parameter threaded through the chain; outside a
``record`` block ``stage`` costs nothing). A stage entered twice (the registration of the low and of the standard
dose) adds its seconds and keeps the larger peak.

Peak memory is the process's resident set high-water mark while the stage ran: on Linux ``VmHWM`` of
``/proc/self/status``, reset at the start of every stage by writing 5 to ``/proc/self/clear_refs`` (the kernel's
documented way), so each stage reports its own peak; an enclosing stage keeps the largest peak of everything it
contains. Elsewhere (macOS, or where clear_refs is not writable) the figure is the peak of the process so far
(``resource.getrusage``), a stage's peak is then an upper bound. Child processes (the elastix executable backend)
are not included.
"""

from __future__ import annotations

import contextvars
import sys
import time
from contextlib import contextmanager

from .interrupts import check_interrupted

_STATUS = "/proc/self/status"
_CLEAR_REFS = "/proc/self/clear_refs"
_current: contextvars.ContextVar = contextvars.ContextVar("gadoreduce_stages", default=None)


def _vm_hwm_mb() -> float | None:
    try:
        with open(_STATUS) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    try:
        with open(_CLEAR_REFS, "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_memory_mb() -> float:
    """Peak resident memory (MB) since the last reset (Linux) or of the whole process (elsewhere)."""
    value = _vm_hwm_mb()
    if value is not None:
        return value
    import resource
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0


class Stages:
    """Per-stage seconds and peak resident memory, in the order the stages first ran."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self.peak_mb: dict[str, float] = {}
        self._open: list[list] = []  # [name, start time, running peak MB]
        self.resettable = _reset_peak()

    def _fold(self) -> None:
        peak = peak_memory_mb()
        for entry in self._open:
            entry[2] = max(entry[2], peak)

    @contextmanager
    def stage(self, name: str):
        check_interrupted()  # stage boundaries are the checkpoints of ``io.interrupts``
        self._fold()  # the enclosing stages keep what they reached before the reset
        self.resettable = _reset_peak() and self.resettable
        entry = [name, time.perf_counter(), 0.0]
        self._open.append(entry)
        try:
            yield
            check_interrupted()
        finally:
            self._fold()
            self._open.remove(entry)
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - entry[1]
            self.peak_mb[name] = max(self.peak_mb.get(name, 0.0), entry[2])

    def as_record(self) -> dict:
        """{stage: {"seconds": s, "peak_memory_mb": MB}} (JSON-able)."""
        return {name: {"seconds": round(self.seconds[name], 3), "peak_memory_mb": round(self.peak_mb[name], 1)}
                for name in self.seconds}

    def table(self, total: str | None = None) -> str:
        """:func:`format_stages` of this run."""
        return format_stages(self.as_record(), total)


def format_stages(stages: dict, total: str | None = None) -> str:
    """Plain-text table of an ``as_record()`` dict, one line per stage (``total``: an enclosing stage, printed
    last). Stages nested in others (e.g. registration in preprocessing) are listed too: seconds do not add up."""
    names = [n for n in stages if n != total] + ([total] if total in stages else [])
    width = max([len(n) for n in names] + [5])
    lines = [f"{'stage'.ljust(width)}  seconds  peak memory"]
    lines += [f"{n.ljust(width)}  {stages[n]['seconds']:7.2f}  {stages[n]['peak_memory_mb'] / 1024:6.2f} GB"
              for n in names]
    return "\n".join(lines)


@contextmanager
def record(stages: Stages | None = None):
    """Collect the stages run inside this block into ``stages`` (a new :class:`Stages` when None); yields it.
    Nested ``record`` blocks with the same object continue it; a new object collects its own."""
    stages = stages if stages is not None else Stages()
    token = _current.set(stages)
    try:
        yield stages
    finally:
        _current.reset(token)


@contextmanager
def stage(name: str):
    """Time ``name`` in the active :func:`record` block (nothing happens outside one)."""
    stages = _current.get()
    if stages is None:
        check_interrupted()
        yield
        check_interrupted()
        return
    with stages.stage(name):
        yield


def active() -> Stages | None:
    """The :class:`Stages` of the enclosing :func:`record` block, or None."""
    return _current.get()
