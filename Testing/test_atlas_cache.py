"""The atlas products of the brain mask: cached in the user cache folder, equal to a fresh computation, and a
broken or unwritable cache is recomputed or skipped (never an error)."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from GadoReduceLib.io.resources import CACHE_ENV
from GadoReduceLib.preprocessing import brainmask


def _same(a: sitk.Image, b: sitk.Image) -> bool:
    return (a.GetSize() == b.GetSize() and np.allclose(a.GetOrigin(), b.GetOrigin())
            and np.allclose(a.GetSpacing(), b.GetSpacing()) and np.allclose(a.GetDirection(), b.GetDirection())
            and a.GetPixelID() == b.GetPixelID()
            and np.array_equal(sitk.GetArrayViewFromImage(a), sitk.GetArrayViewFromImage(b)))


@pytest.fixture(scope="module")
def truth():
    t1 = sitk.ReadImage(str(brainmask.resource_path("Atlas", brainmask.ATLAS_FILES["t1"])), sitk.sitkFloat32)
    return brainmask._compute_atlas_products(t1)


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    brainmask.atlas_products.cache_clear()
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    yield tmp_path / "cache"
    brainmask.atlas_products.cache_clear()


def test_cached_atlas_products_equal_a_fresh_computation(fresh, truth):
    first = brainmask.atlas_products()
    files = sorted(p.name for p in fresh.glob("atlas-*/*.nrrd"))
    assert files == sorted(f"{name}.nrrd" for name in brainmask.AtlasProducts.NAMES)
    assert brainmask.atlas_products() is first  # once per process
    brainmask.atlas_products.cache_clear()
    second = brainmask.atlas_products()  # read back from the files
    for name in brainmask.AtlasProducts.NAMES:
        assert _same(getattr(first, name), truth[name]), name
        assert _same(getattr(second, name), truth[name]), name
    assert int(sitk.GetArrayViewFromImage(second.moving_mask).sum()) > int(
        sitk.GetArrayViewFromImage(second.moving_brain).sum())  # dilated


def test_a_broken_cache_file_is_recomputed(fresh, truth):
    brainmask.atlas_products()
    broken = next(fresh.glob("atlas-*/moving.nrrd"))
    broken.write_bytes(b"NRRD0004\nnot an image")
    brainmask.atlas_products.cache_clear()
    products = brainmask.atlas_products()
    assert _same(products.moving, truth["moving"])
    assert sitk.ReadImage(str(broken)).GetSize() == truth["moving"].GetSize()  # rewritten


def test_an_unwritable_cache_folder_is_skipped(monkeypatch, tmp_path, truth):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    brainmask.atlas_products.cache_clear()
    monkeypatch.setenv(CACHE_ENV, str(blocker))
    try:
        products = brainmask.atlas_products()
    finally:
        brainmask.atlas_products.cache_clear()
    assert _same(products.moving_mask, truth["moving_mask"])
    assert blocker.read_text() == "not a folder"
