"""Model file integrity without torch: sha256 digests, the sidecar ``NAME.pt.sha256`` and the digests of the
models that ship with GadoReduce (:data:`SHIPPED_MODELS`, the one place they are written).

A shipped model is verified against the digest this package knows, so a file altered together with its sidecar
is still refused; any other model file is checked against its sidecar only and reported as unverified
(:class:`ModelCheck`). Importing this module costs no torch import, so a bad ``--model`` is refused in the
first second of a command.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_MODEL = ("Models", "gadoreduce_default.pt")
"""The shipped default model, under Resources (with its .sha256 and .md model card beside it)."""
SHIPPED_MODELS = {
    "gadoreduce_default.pt": "a851e8c13b490b7aa2d4aae766cb8c374a4bb6c9eca0593353a4ba024966f742",
}
"""sha256 of every model file that ships under Resources/Models (update with the file; a test compares them)."""
CHUNK = 1 << 20


class ModelFileError(ValueError):
    """A model file is missing, tampered with, corrupt or of an unknown format."""


@dataclass(frozen=True)
class ModelCheck:
    """Outcome of :func:`check_model_file`: the file, its sha256 and whether it is one of the shipped models
    (verified against :data:`SHIPPED_MODELS`) or only matches its own sidecar (``verified`` False)."""

    path: Path
    sha256: str
    verified: bool

    @property
    def warning(self) -> str | None:
        """The line a user must see for an unverified model, else None."""
        if self.verified:
            return None
        return (f"unverified model: {self.path} is not one of GadoReduce's shipped models; its results are only "
                "as good as its training (read its model card) and are not covered by GadoReduce's evaluation")


def checksum_path(path: str | os.PathLike) -> Path:
    """The sha256 sidecar of a model file: ``NAME.pt`` -> ``NAME.pt.sha256``."""
    path = Path(path)
    return path.with_name(path.name + ".sha256")


def sha256_of(path: str | os.PathLike) -> str:
    """Hex sha256 digest of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def default_model_path() -> Path:
    """Path of the shipped default model file; ModelFileError when it is not installed."""
    from ..io.resources import resources_dir
    path = resources_dir().joinpath(*DEFAULT_MODEL)
    if not path.exists():
        raise ModelFileError(f"the default model {'/'.join(DEFAULT_MODEL)} is missing from {resources_dir()}; "
                             "reinstall GadoReduce or give a model file explicitly (--model PATH)")
    return path


def _shipped_folder() -> Path | None:
    try:
        return default_model_path().parent.resolve()
    except (ModelFileError, FileNotFoundError):
        return None


def verify_checksum(path: str | os.PathLike) -> str:
    """Check ``path`` against its sha256 sidecar; returns the digest or raises ModelFileError."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file {str(path)!r} does not exist; give the path of a .pt model file "
                             "(with --model)")
    sidecar = checksum_path(path)
    if not sidecar.is_file():
        raise ModelFileError(f"model file {str(path)!r} has no checksum file {sidecar.name!r} beside it; "
                             "copy the .sha256 file that came with the model next to it")
    try:
        expected = sidecar.read_text().split()[0].lower()
    except (OSError, UnicodeDecodeError, IndexError):
        raise ModelFileError(f"checksum file {str(sidecar)!r} is unreadable or empty; get it again with the "
                             "model") from None
    actual = sha256_of(path)
    if actual != expected:
        raise ModelFileError(f"model file {str(path)!r} does not match its sha256 checksum in {sidecar.name!r} "
                             "(the file was modified or damaged); refusing to load it. Download or copy the "
                             "model file again from its original source.")
    return actual


def check_model_file(path: str | os.PathLike | None) -> ModelCheck:
    """Verify a model file before it is loaded (None: the shipped default model).

    A file in the shipped models folder, or named like a shipped model, must have the digest this package knows
    (ModelFileError otherwise: reinstall); any file whose digest is a shipped one is verified; every other file
    must match its sidecar and is unverified."""
    path = default_model_path() if path is None else Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file {str(path)!r} does not exist; give the path of a .pt model file "
                             "(--model), or leave --model out for the shipped model")
    actual = sha256_of(path)
    if actual in SHIPPED_MODELS.values():
        return ModelCheck(path, actual, True)
    shipped = _shipped_folder()
    if path.name in SHIPPED_MODELS and shipped is not None and path.resolve().parent == shipped:
        raise ModelFileError(f"the shipped model file {path} does not match the checksum GadoReduce "
                             f"{_version()} knows for it (the file was modified or damaged, even if its .sha256 "
                             "file agrees); reinstall GadoReduce (Extension Manager, or pip install again)")
    return ModelCheck(path, verify_checksum(path), False)


def _version() -> str:
    from .. import __version__
    return __version__
