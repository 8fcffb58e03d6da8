"""Allocator setting for work on many large arrays (glibc on Linux; elsewhere nothing changes).

glibc hands every block above 32 MiB straight back to the system when it is freed, and the next
array of that size starts on fresh pages, paid as page faults. A whole-head volume is 46 MB, so
array-heavy code (the phantom) spends up to half its time in those faults. Inside
``large_arrays()`` freed blocks are kept for reuse; on leaving, the free memory goes back to the
system (``malloc_trim``) and the thresholds are set to 32 MiB (mmap) and 64 MiB (trim): the
values that glibc's own adaptive thresholds reach in a process that has freed large arrays.

Every command runs inside ``large_arrays()`` (:func:`command_allocator`), chosen by measurement on a 240x240x155
BraTS pair (``benchmarks/bench_pipeline.py --allocators default,glibc,jemalloc``, README performance section):
glibc's defaults cost about 2 s in the network's page faults, reusing every block let the network's activations
add up to 0.8 GB more than those alive at once, preloading jemalloc was no faster. So the CNN runs inside
:func:`returned_when_freed`, and :func:`release_free_memory` hands what preprocessing freed back before it.
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


@contextmanager
def returned_when_freed():
    """Within this block (inside :func:`large_arrays`) new blocks above 32 MiB go back to the system when freed,
    as with glibc's defaults: the CNN's volume-sized activations then never take more memory than those alive
    at once (reused from the heap they added up to 0.8 GB more on a 240x240x155 case, README performance
    section), at the price of page faults (about 2 s there). The earlier setting returns on leaving."""
    libc = _libc()
    with _lock:
        active = libc is not None and _depth > 0
        if active:
            libc.mallopt(_M_MMAP_THRESHOLD, _AFTER_MMAP_BYTES)
    try:
        yield
    finally:
        with _lock:
            if active and _depth > 0:
                libc.mallopt(_M_MMAP_THRESHOLD, _KEEP_BYTES)


def release_free_memory() -> None:
    """Give the free heap memory back to the system now (glibc ``malloc_trim``; elsewhere nothing): between
    stages, so that what one stage freed inside :func:`large_arrays` does not add to the next stage's peak."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


def command_allocator():
    """The allocator setting of every command and of the module's worker: :func:`large_arrays` (the pipeline
    switches to :func:`returned_when_freed` for the CNN) and huge pages for PyTorch's tensors
    (:func:`torch_huge_pages`). ``GADOREDUCE_ALLOCATOR=glibc`` keeps glibc's and PyTorch's defaults instead, to
    measure what the setting gives (``benchmarks/bench_pipeline.py --allocators``)."""
    import contextlib
    import os
    if os.environ.get("GADOREDUCE_ALLOCATOR") == "glibc":
        return contextlib.nullcontext()
    torch_huge_pages()
    return large_arrays()


def torch_huge_pages() -> None:
    """PyTorch's CPU tensors of 2 MiB and more on transparent huge pages (``THP_MEM_ALLOC_ENABLE``, read once at
    PyTorch's first allocation, so this must run before it; a value the user set is kept). Where the kernel gives
    huge pages only on request (``transparent_hugepage=madvise``, the usual default) the CNN's volume-sized
    activations, returned and faulted back in (:func:`returned_when_freed`), then cost 512 times fewer page faults
    at the same peak memory (``benchmarks/bench_pipeline.py --allocators default,no-huge-pages``; figures in the
    README's performance section)."""
    import os
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
