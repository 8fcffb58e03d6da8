"""Interrupts (Ctrl-C, SIGTERM from the Slicer module's Cancel) that are never lost.

Python turns SIGINT into KeyboardInterrupt wherever the main thread happens to be, so a library that catches
every exception (or a signal arriving while an extension module loads) can drop it, a KeyboardInterrupt raised
in the middle of a library's work can crash it (measured: a segmentation fault during registration), and SIGTERM
ends the process without cleanup. Inside :func:`interrupts_handled` the first SIGINT or SIGTERM only sets a flag
(and says so on stderr); :func:`check_interrupted` raises KeyboardInterrupt at the run's checkpoints (every
``io.profiling`` stage boundary, every network tile, the final move of the outputs), so an interrupted run
stops within one step and its temporary outputs are removed. A second signal raises at once.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_received: list[int] = []
_active: list[bool] = []
committed: list[str] = []
"""Output folders whose outputs were moved into place completely in this process (``atomic.staged_folder``), so
that an interrupt arriving just after the move is reported truthfully."""


def _handler(signum, frame):
    _received.append(signum)
    if len(_received) > 1:  # a second Ctrl-C: stop now
        raise KeyboardInterrupt(signal.Signals(signum).name)
    import sys
    print("stopping at the end of the current step (press Ctrl-C again to stop at once) ...", file=sys.stderr,
          flush=True)


def interrupted() -> str | None:
    """Name of the first interrupting signal received inside :func:`interrupts_handled` (None when none)."""
    return signal.Signals(_received[0]).name if _received else None


def check_interrupted() -> None:
    """Inside :func:`interrupts_handled`: raise KeyboardInterrupt when an interrupt was received (even if a
    library swallowed the first one). Outside it nothing happens (an earlier run's interrupt is over)."""
    if _received and _active:
        raise KeyboardInterrupt(interrupted())


@contextmanager
def interrupts_handled() -> Iterator[None]:
    """SIGINT and SIGTERM are remembered while the block runs and raise KeyboardInterrupt at the next
    :func:`check_interrupted` (a second one at once); main thread only, elsewhere the block runs unchanged.
    The previous handlers come back afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _received.clear()
    committed.clear()
    previous = {sig: signal.signal(sig, _handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    _active.append(True)
    try:
        yield
    finally:
        _active.pop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextmanager
def deferred() -> Iterator[None]:
    """SIGINT and SIGTERM wait until the block has ended (a few file moves that must happen all or not at all);
    a signal that arrived meanwhile is handled right after it. Main thread on POSIX only; elsewhere unchanged."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_sigmask"):
        yield
        return
    signals = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def report_interrupt(command: str) -> int:
    """Print what an interrupt of ``gadoreduce COMMAND`` left (the truth about the outputs); returns the exit
    status: 130 for SIGINT, 143 for SIGTERM."""
    import sys
    name = interrupted()
    how = "terminated" if name == "SIGTERM" else "interrupted"
    if committed:
        state = f"the outputs had been written completely into {committed[-1]} just before"
    else:
        state = "the output folder was left as it was (this run's partial outputs were removed)"
    print(f"gadoreduce {command}: {how}; {state}.", file=sys.stderr)
    return 143 if name == "SIGTERM" else 130
