"""Atomic file writes: the one implementation every writer in GadoReduce uses.

A file is written under a temporary name in its destination folder (``.partial-<pid>-<name>``, keeping the
name's suffixes so that writers that choose the format by suffix still work) and moved into place with
``os.replace`` only when the writer returned; on any error or interrupt the temporary file is removed, so
a reader sees the old file or the complete new one, never a half-written one. Image writers verify the written
file before the move (``io.integrity.verify_written_image``), because some write errors are not raised.

A command's outputs go into a temporary folder beside the output folder (:func:`staged_folder`) and move into
place only when all of them are complete; :func:`check_output_folder` and :func:`check_outputs_spare_inputs`
refuse, before any work, outputs that would replace an input or an earlier run's outputs.
"""

from __future__ import annotations

import json
import os
import shutil
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


def check_outputs_spare_inputs(outputs, inputs: dict) -> None:
    """Refuse, before any work, outputs that would replace an input (data loss).

    outputs: the file paths a command will write; inputs: {"--pre": path, ...} (None values skipped; a folder
    input, e.g. DICOM, is compared as a path). ValueError naming the output, the input and the fix.
    """
    given = {option: Path(path) for option, path in inputs.items() if path is not None}
    for output in (Path(p) for p in outputs):
        for option, path in given.items():
            same = output.resolve() == path.resolve() or (
                output.exists() and path.exists() and os.path.samefile(output, path))
            if same:
                raise ValueError(f"{option} {path}: the output {output.name} would overwrite this input; choose "
                                 "another output folder (or rename the input) so that no input is replaced")


STAGING_PREFIX = ".gadoreduce-partial-"
"""Name prefix of the temporary folders outputs are written into before they are moved into place."""


def check_output_folder(folder, outputs, overwrite: bool = False, option: str = "--output") -> None:
    """Refuse, before any work, an output folder that is a file, or one that holds outputs of an earlier run
    (any of ``outputs``, file names) unless ``overwrite``. ValueError naming the folder and the fix."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{option} {folder} is an existing file, not a folder; give a folder for the outputs")
    if folder.is_dir() and not overwrite:
        earlier = sorted(name for name in outputs if (folder / name).exists())
        if earlier:
            shown = ", ".join(earlier[:4]) + (f" and {len(earlier) - 4} more" if len(earlier) > 4 else "")
            raise ValueError(f"{option} {folder} already holds the outputs of an earlier run ({shown}); give "
                             "another folder, or add --overwrite to replace them")


@contextmanager
def staged_folder(folder, known_outputs=(), option: str = "--output") -> Iterator[Path]:
    """Yield an empty temporary folder beside ``folder`` (``.gadoreduce-partial-<pid>-<name>``, same file
    system); when the block ends without error its files are moved into ``folder`` (created when absent). Files
    named in ``known_outputs`` that this run did not write are removed from ``folder`` then, so that no output
    of an earlier run is mixed with this one's. On any error or interrupt the temporary folder is removed and
    ``folder`` is left as it was. Entering checks that the outputs can be written (OSError naming the folder
    and the fix otherwise), so a read-only or missing location fails before any work.
    """
    folder = Path(folder).absolute()
    parent = folder.parent
    staging = parent / f"{STAGING_PREFIX}{os.getpid()}-{folder.name}"
    try:
        parent.mkdir(parents=True, exist_ok=True)
        if folder.is_dir() and not os.access(parent, os.W_OK):
            staging = folder / f"{STAGING_PREFIX}{os.getpid()}"  # the folder itself is writable, its parent not
        staging.mkdir()
    except OSError as error:
        raise OSError(f"{option} {folder} cannot be written ({error.strerror or error}); choose a folder on a "
                      "writable disk where you have write permission") from None
    try:
        yield staging
        from .interrupts import check_interrupted, committed, deferred
        check_interrupted()  # an interrupt noted during the last step stops the run here, before any move
        written = sorted(p.name for p in staging.iterdir())
        with deferred():  # all files move, or none: an interrupt waits for the moves
            if not folder.exists() and staging.parent == parent:
                os.rename(staging, folder)
            else:
                folder.mkdir(exist_ok=True)
                for name in written:
                    os.replace(staging / name, folder / name)
                for name in set(known_outputs) - set(written):
                    (folder / name).unlink(missing_ok=True)
            committed.append(str(folder))
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def user_message(error: Exception) -> str:
    """One line for a user: OSErrors of a full or read-only disk, or of missing permissions, say what to do."""
    import errno
    if not isinstance(error, OSError):
        return str(error)
    where = f" {error.filename}" if error.filename else ""
    full = {errno.ENOSPC: "the disk is full", errno.EFBIG: "a file grew beyond what the disk allows",
            errno.EDQUOT: "the disk quota is used up", errno.EROFS: "the file system is read-only"}
    if error.errno in full:
        return (f"cannot write{where}: {full[error.errno]}; free some space or choose another output folder, then "
                "run again")
    if error.errno in (errno.EACCES, errno.EPERM):
        return (f"permission denied for{where or ' a file'}: check that you may read the inputs and write the "
                "output folder, or choose another output folder")
    return str(error)
