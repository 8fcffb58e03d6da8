"""pytest configuration: in-tree imports, the shared BraTS data, deterministic seeds."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
MODULE_DIR = REPO / "GadoReduce"
# Tests import the in-tree GadoReduceLib (and the Slicer module file) whether or not the
# package is installed, exactly as 3D Slicer does with the module folder on its path.
for path in (str(MODULE_DIR), str(REPO / "Testing")):
    if path not in sys.path:
        sys.path.insert(0, path)

# Files GadoReduce derives from its resources (io.resources.user_cache_dir) go to a fresh folder, not the user's
# cache; subprocesses of the tests inherit it.
os.environ.setdefault("GADOREDUCE_CACHE_DIR", tempfile.mkdtemp(prefix="gadoreduce-test-cache-"))

SHARED_DATA = Path(os.environ.get("GADOREDUCE_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data with the BraTS pairs; tests that need it skip with a clear message when absent."""
    if not (SHARED_DATA / "brats18").is_dir():
        pytest.skip(f"BraTS pairs not found at {SHARED_DATA} (set GADOREDUCE_SHARED_DATA to the folder "
                    "holding brats18/ and brats20_186/ to run this test)")
    return SHARED_DATA


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20241121)


@pytest.fixture(scope="session")
def _harness_session():
    from slicer_harness import Harness
    return Harness()


@pytest.fixture
def harness(_harness_session):
    """Real MRML scene with Slicer's module logics; stand-ins for the Slicer application (see slicer_harness)."""
    _harness_session.install()
    _harness_session.clear()
    yield _harness_session
    _harness_session.clear()
    _harness_session.uninstall()
