"""Atomic file writes: the one implementation every writer in GadoReduce uses.

A file is written under a temporary name in its destination folder (``.partial-<pid>-<name>``, keeping the
name's suffixes so that writers that choose the format by suffix still work) and moved into place with
``os.replace`` only when the writer returned; on any error or interrupt the temporary file is removed, so
a reader sees the old file or the complete new one, never a half-written one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _default_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block ends without error it replaces ``path``.

    The parent folder is created. The file gets the usual permissions (0666 less the umask).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".partial-{os.getpid()}-{path.name}")
    try:
        yield tmp
        if not tmp.exists():
            raise OSError(f"nothing was written to {path}")
        os.chmod(tmp, _default_mode())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` as UTF-8 to ``path`` atomically, line ends as given (LF stays LF on every platform)."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, data, indent: int | None = 2, **dump_options) -> Path:
    """Write ``data`` as JSON (with a final newline) to ``path`` atomically; returns the path."""
    return write_text(path, json.dumps(data, indent=indent, **dump_options) + "\n")


def check_outputs_spare_inputs(outputs, inputs: dict, folder=None) -> None:
    """Refuse, before any work, outputs that would replace an input (data loss).

    outputs: the file paths a command will write; inputs: {"--pre": path, ...} (None values skipped; a folder
    input, e.g. DICOM, is compared as a path); folder: the output folder, which must not be an existing file.
    ValueError naming the output, the input and the fix.
    """
    if folder is not None and Path(folder).exists() and not Path(folder).is_dir():
        raise ValueError(f"--output {folder} is an existing file, not a folder; give a folder for the outputs")
    given = {option: Path(path) for option, path in inputs.items() if path is not None}
    for output in (Path(p) for p in outputs):
        for option, path in given.items():
            same = output.resolve() == path.resolve() or (
                output.exists() and path.exists() and os.path.samefile(output, path))
            if same:
                raise ValueError(f"{option} {path}: the output {output.name} would overwrite this input; choose "
                                 "another output folder (or rename the input) so that no input is replaced")
