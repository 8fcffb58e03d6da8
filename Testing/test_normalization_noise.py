"""Intensity normalization, radiometric scalar, noise normalization, contrast signal and regridding
on synthetic volumes with known truth (fast; no registration)."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from GadoReduceLib.preprocessing import noise, normalization
from GadoReduceLib.io import regrid
from GadoReduceLib.io.imageio import Geometry, array_to_image

SHAPE = (48, 64, 64)  # [k, j, i]
GEOMETRY = Geometry((64, 64, 48), (2.0, 2.0, 2.0), (-64.0, -80.0, -40.0), tuple(np.eye(3).ravel()))


def synthetic_head(rng, scale=1.0, noise_sigma=10.0, enhancement=0.0, noise_map=None):
    """Ellipsoid 'brain' of smoothly varying tissue (400-1000), a few enhancing blobs; returns
    (pre, post, brain mask, enhancing mask) as arrays. post = scale * (tissue + enhancement) + noise."""
    k, j, i = np.meshgrid(*[np.linspace(-1, 1, n) for n in SHAPE], indexing="ij")
    brain = (k / 0.85) ** 2 + (j / 0.8) ** 2 + (i / 0.7) ** 2 < 1
    tissue = np.where(brain, 700 + 250 * np.sin(3 * i) * np.cos(2 * j) + 50 * k, 50.0)
    enhancing = np.zeros(SHAPE, bool)
    for centre in ((0.2, 0.3, -0.2), (-0.3, -0.2, 0.3), (0.1, -0.4, -0.1)):
        enhancing |= (k - centre[0]) ** 2 + (j - centre[1]) ** 2 + (i - centre[2]) ** 2 < 0.15 ** 2
    sigma = noise_sigma if noise_map is None else noise_sigma * noise_map
    pre = tissue + sigma * rng.standard_normal(SHAPE)
    post = scale * (tissue + enhancement * enhancing) + sigma * rng.standard_normal(SHAPE)
    return pre.astype(np.float32), post.astype(np.float32), brain, enhancing


def test_percentile_normalization_maps_95th_brain_percentile_to_one(rng):
    pre, _, brain, _ = synthetic_head(rng)
    image = array_to_image(pre, GEOMETRY)
    normalized, q = normalization.percentile_normalize(image, array_to_image(brain.astype(np.uint8), GEOMETRY))
    assert q == pytest.approx(np.percentile(pre[brain], 95))
    assert np.percentile(sitk.GetArrayViewFromImage(normalized)[brain], 95) == pytest.approx(1.0, rel=1e-5)


@pytest.mark.parametrize("scale", [0.7, 1.0, 1.45])
def test_radiometric_scale_recovers_known_scale_within_1_percent(rng, scale):
    pre, post, brain, enhancing = synthetic_head(rng, scale=scale, enhancement=600.0)
    assert enhancing[brain].mean() > 0.01  # enough enhancing voxels to bias a least-squares fit
    a = normalization.radiometric_scale(pre, post, brain)
    assert a == pytest.approx(1.0 / scale, rel=0.01)
    least_squares = float(np.dot(pre[brain], post[brain]) / np.dot(post[brain], post[brain]))
    assert abs(least_squares * scale - 1) > abs(a * scale - 1)  # the robust loss matters


def test_noise_sigma_from_negative_values_within_10_percent(rng):
    pre, post, brain, _ = synthetic_head(rng, noise_sigma=12.0, enhancement=500.0)
    sigma = noise.noise_sigma(post - pre, brain)
    assert sigma == pytest.approx(12.0 * np.sqrt(2), rel=0.10)


def test_local_statistics_follow_spatially_varying_noise(rng):
    k, j, i = np.meshgrid(*[np.linspace(-1, 1, n) for n in SHAPE], indexing="ij")
    noise_map = 1.0 + 0.5 * (i + 1)  # noise std from 1x (right) to 2x (left) of sigma
    pre, post, brain, enhancing = synthetic_head(rng, noise_sigma=10.0, enhancement=500.0, noise_map=noise_map)
    subtraction = array_to_image(post - pre, GEOMETRY)
    mask = array_to_image(brain.astype(np.uint8), GEOMETRY)
    sigma = noise.noise_sigma(subtraction, mask)
    mean, std = noise.local_statistics(subtraction, mask, sigma, kernel_sigma_mm=8.0)
    truth = 10.0 * np.sqrt(2) * noise_map
    core = brain & ((k / 0.6) ** 2 + (j / 0.6) ** 2 + (i / 0.5) ** 2 < 1) & ~enhancing
    ratio = sitk.GetArrayViewFromImage(std)[core] / truth[core]
    assert np.median(ratio) == pytest.approx(1.0, abs=0.08)
    assert np.percentile(ratio, 95) - np.percentile(ratio, 5) < 0.3
    z = sitk.GetArrayFromImage(noise.normalize_subtraction(subtraction, mean, std, sigma))
    left, right = core & (i > 0.3), core & (i < -0.3)
    # after normalization both halves have the same noise level, sigma_LD
    assert np.std(z[left]) == pytest.approx(sigma, rel=0.1)
    assert np.std(z[right]) == pytest.approx(sigma, rel=0.1)
    assert np.std((post - pre)[left]) / np.std((post - pre)[right]) > 1.2  # 1.31 before normalization


def test_kernel_is_in_millimetres_not_voxels(rng):
    pre, post, brain, _ = synthetic_head(rng)
    stds = []
    for spacing in (1.0, 2.0):
        geometry = Geometry(GEOMETRY.size, (spacing,) * 3, GEOMETRY.origin, GEOMETRY.direction)
        sub = array_to_image(post - pre, geometry)
        mask = array_to_image(brain.astype(np.uint8), geometry)
        _, s = noise.local_statistics(sub, mask, 14.0, kernel_sigma_mm=6.0)
        stds.append(sitk.GetArrayFromImage(s))
    # at 2 mm the 6 mm kernel spans half as many voxels, so the map is less smooth
    assert np.std(np.diff(stds[1], axis=2)[brain[:, :, 1:]]) > 1.3 * np.std(np.diff(stds[0], axis=2)[brain[:, :, 1:]])


def test_contrast_mask_meets_paper_conditions():
    sigma = 0.037
    w, b = noise.contrast_mask_parameters(sigma)
    f = lambda z: 1 / (1 + np.exp(-(w * z + b)))  # noqa: E731
    assert f(sigma) == pytest.approx(0.01, abs=1e-9)
    assert f(4 * sigma) == pytest.approx(0.99, abs=1e-9)
    z = array_to_image(np.linspace(-0.2, 0.5, 64 * 64 * 48).reshape(SHAPE).astype(np.float32), GEOMETRY)
    y, p = noise.contrast_signal(z, sigma)
    za, ya, pa = (sitk.GetArrayViewFromImage(x) for x in (z, y, p))
    np.testing.assert_allclose(ya, pa * za, rtol=1e-5, atol=1e-7)
    assert np.all(np.abs(ya[za < 0]) < 0.01 * np.abs(za[za < 0]) + 1e-7)  # negative noise suppressed
    assert np.all(pa[za > 6 * sigma] > 0.999)


def test_truncated_std_ratio_matches_sampling(rng):
    x = rng.standard_normal(2_000_000)
    assert noise.truncated_std_ratio(2.0) == pytest.approx(np.std(x[np.abs(x) <= 2]), rel=2e-3)


def test_regrid_nested_grid_maps_back_exactly(rng):
    geometry = Geometry((40, 36, 12), (0.9, 0.9, 3.0), (10.0, -20.0, 5.0),
                       tuple(sitk.Euler3DTransform((0, 0, 0), 0.2, 0.0, 0.1).GetMatrix()))
    array = rng.normal(100, 20, (12, 36, 40)).astype(np.float32)
    image = array_to_image(array, geometry)
    assert regrid.is_anisotropic(image)
    grid = regrid.nested_isotropic_grid(image)
    spacing = np.asarray(grid.GetSpacing())
    assert spacing.max() / spacing.min() < 1.15
    fine = regrid.to_grid(image, grid)
    back = regrid.back_to_grid(fine, image)
    assert Geometry.from_image(back).is_close(Geometry.from_image(image), atol=1e-9)
    np.testing.assert_allclose(sitk.GetArrayViewFromImage(back), array, rtol=1e-5, atol=1e-3)
    # a grid that is not nested falls back to interpolation, still onto the exact reference geometry
    other = regrid.to_grid(image, regrid.isotropic_reference(image, 1.3))
    assert Geometry.from_image(regrid.back_to_grid(other, image)).is_close(Geometry.from_image(image), atol=1e-9)


def test_preprocessing_blocks_keep_the_local_statistics(rng):
    """Preprocessing's 2-mm blocks (``noise.BLOCK_MM``) change s by well under 1 % and m by a few % of sigma."""
    assert [noise.block_shrink(s) for s in ((1.0, 1.0, 1.0), (0.5, 0.5, 1.2), (1.2, 1.2, 1.2), (2.5, 2.5, 2.5))] \
        == [2, 4, 1, 1]
    k, j, i = np.meshgrid(*[np.linspace(-1, 1, n) for n in SHAPE], indexing="ij")
    pre, post, brain, _ = synthetic_head(rng, noise_sigma=10.0, enhancement=500.0, noise_map=1.0 + 0.5 * (i + 1))
    geometry = Geometry(GEOMETRY.size, (1.0, 1.0, 1.0), GEOMETRY.origin, GEOMETRY.direction)  # 1 mm: 2-voxel blocks
    subtraction = array_to_image(post - pre, geometry)
    mask = array_to_image(brain.astype(np.uint8), geometry)
    sigma = noise.noise_sigma(subtraction, mask)
    shrink = noise.block_shrink(geometry.spacing)
    assert shrink >= 2, "the test geometry must use blocks"
    full = [sitk.GetArrayFromImage(x) for x in noise.local_statistics(subtraction, mask, sigma, kernel_sigma_mm=16.0)]
    blocks = [sitk.GetArrayFromImage(x) for x in noise.local_statistics(subtraction, mask, sigma,
                                                                        kernel_sigma_mm=16.0, shrink=shrink)]
    assert blocks[1].shape == full[1].shape
    assert np.percentile(np.abs(blocks[1] / full[1] - 1)[brain], 99) < 0.01
    assert np.abs(blocks[0] - full[0])[brain].max() < 0.05 * sigma
