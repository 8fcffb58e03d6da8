"""Where GadoReduce's data files live: elastix parameter files, the brain atlas, models.

One folder, ``Resources``, serves three layouts:
- a source checkout and a 3D Slicer install: ``GadoReduce/Resources`` beside the package;
- an installed wheel: ``GadoReduceLib/Resources`` inside the package.
"""

from __future__ import annotations

from pathlib import Path


def resources_dir() -> Path:
    """The Resources folder (absolute path); raises FileNotFoundError when absent."""
    package = Path(__file__).resolve().parents[1]  # GadoReduceLib/
    for candidate in (package / "Resources", package.parent / "Resources"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        f"GadoReduce's Resources folder was not found next to {package}. "
        "Reinstall GadoReduce (pip install -e . from a source checkout, or the Slicer extension)."
    )


def resource_path(*parts: str) -> Path:
    """Path of a file under Resources, e.g. ``resource_path("Atlas", "mni_icbm152_2009a_t1.nii.gz")``."""
    path = resources_dir().joinpath(*parts)
    if not path.exists():
        raise FileNotFoundError(
            f"GadoReduce resource {'/'.join(parts)} is missing from {resources_dir()}. "
            "Reinstall GadoReduce; the file ships with it."
        )
    return path


CACHE_ENV = "GADOREDUCE_CACHE_DIR"


def user_cache_dir() -> Path:
    """Folder for files GadoReduce can always recompute (derived from its resources): ``$GADOREDUCE_CACHE_DIR``,
    else the platform's user cache (``$XDG_CACHE_HOME`` or ``~/.cache`` on Linux, ``~/Library/Caches`` on macOS,
    ``%LOCALAPPDATA%`` on Windows) + ``gadoreduce``. Not created here."""
    import os
    import sys
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
        return base / "gadoreduce" / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "gadoreduce"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "gadoreduce"
