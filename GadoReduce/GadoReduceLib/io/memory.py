"""Allocator setting for work on many large arrays (glibc on Linux; elsewhere nothing changes).

glibc hands every block above 32 MiB straight back to the system when it is freed, and the next
array of that size starts on fresh pages, paid as page faults. A whole-head volume is 46 MB, so
array-heavy code (the phantom) spends up to half its time in those faults. Inside
``large_arrays()`` freed blocks are kept for reuse; on leaving, the free memory goes back to the
system (``malloc_trim``) and the thresholds are set to 32 MiB (mmap) and 64 MiB (trim): the
values that glibc's own adaptive thresholds reach in a process that has freed large arrays.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
import threading
from contextlib import contextmanager

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_KEEP_BYTES = 1 << 30  # blocks up to 1 GiB come from the heap and stay there while inside
_AFTER_MMAP_BYTES = 32 << 20
_AFTER_TRIM_BYTES = 64 << 20
_lock = threading.Lock()
_depth = 0


def _libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


@contextmanager
def large_arrays():
    """Within this block freed large arrays are reused instead of returned to the system (see module
    docstring). Re-entrant and thread-safe; a no-op where glibc's ``mallopt`` is unavailable."""
    global _depth
    libc = _libc()
    with _lock:
        if libc is not None and _depth == 0:
            libc.mallopt(_M_MMAP_THRESHOLD, _KEEP_BYTES)
            libc.mallopt(_M_TRIM_THRESHOLD, 2 * _KEEP_BYTES)
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if libc is not None and _depth == 0:
                libc.mallopt(_M_MMAP_THRESHOLD, _AFTER_MMAP_BYTES)
                libc.mallopt(_M_TRIM_THRESHOLD, _AFTER_TRIM_BYTES)
                libc.malloc_trim(0)
