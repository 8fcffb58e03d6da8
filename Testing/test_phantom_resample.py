"""Fast phantom resampling agrees with SimpleITK: separable cubic motion, one-pass trilinear tissue maps."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from scipy.spatial.transform import Rotation

from GadoReduceLib.io.imageio import Geometry, array_to_image
from GadoReduceLib.phantom.resample import atlas_sampling_grid, move_cubic, nonzero_box, resample_maps

GRID = Geometry((48, 56, 40), (1.0, 1.0, 1.5), (-20.0, -31.0, 12.0), tuple(np.eye(3).ravel()))


def _blob(rough: bool) -> np.ndarray:
    k, j, i = np.meshgrid(*[np.arange(n) for n in GRID.size[::-1]], indexing="ij")
    array = 1000 * np.exp(-((i - 24) ** 2 / 60 + (j - 28) ** 2 / 90 + (k - 20) ** 2 / 40))
    if rough:  # sharp edges and white noise: the hardest case for any interpolator
        array = np.where(array > 300, 800.0, 0.0) + 100 * np.random.default_rng(0).random(array.shape) * (array > 300)
    return array.astype(np.float32)


def _rigid(degrees, shift) -> np.ndarray:
    matrix = np.eye(4)
    matrix[:3, :3] = Rotation.from_euler("xyz", degrees, degrees=True).as_matrix()
    matrix[:3, 3] = shift
    return matrix


def _sitk_cubic(array: np.ndarray, output_to_input: np.ndarray) -> np.ndarray:
    transform = sitk.AffineTransform(3)
    transform.SetMatrix(tuple(output_to_input[:3, :3].ravel()))
    transform.SetTranslation(tuple(output_to_input[:3, 3]))
    image = array_to_image(array, GRID)
    return sitk.GetArrayFromImage(sitk.Resample(image, image, transform, sitk.sitkBSpline, 0.0))


@pytest.mark.parametrize("degrees, rough, tolerance", [
    ((0, 0, 0), True, 1e-5),  # pure translation: the three 1D passes are exactly the 3D cubic B-spline
    ((3, -2, 4), False, 1e-5),  # smooth object: both interpolate the same continuous function
    ((3, -2, 4), True, 0.08),  # sharp edges: another cubic interpolant, close to sitk's
])
def test_move_cubic_agrees_with_sitk_bspline(degrees, rough, tolerance):
    array = _blob(rough)
    matrix = _rigid(degrees, (1.3, -0.6, 2.2))
    ours = move_cubic(array, GRID, matrix)
    reference = _sitk_cubic(array, matrix)
    inner = (slice(4, -4),) * 3
    error = np.abs(ours - reference)[inner].max() / reference.max()
    assert error < tolerance, error
    rms = np.sqrt(np.mean((ours - reference)[inner] ** 2)) / np.sqrt(np.mean(reference[inner] ** 2))
    assert rms < tolerance / 4
    assert not np.allclose(ours, array, atol=1.0), "the image did move"


def test_move_cubic_identity_zero_input_and_bad_motion():
    array = _blob(True)
    assert np.abs(move_cubic(array, GRID, np.eye(4)) - array).max() < 1e-3
    assert not move_cubic(np.zeros_like(array), GRID, _rigid((5, 0, 0), (1, 1, 1))).any()
    far = _rigid((0, 0, 0), (500.0, 0.0, 0.0))  # the object leaves the grid
    assert not move_cubic(array, GRID, far).any()
    with pytest.raises(ValueError, match="too far from the identity"):
        move_cubic(array, GRID, _rigid((0, 70, 0), (0, 0, 0)))


def test_nonzero_box():
    array = np.zeros((6, 7, 8), np.float32)
    array[2, 3:5, 1] = 1.0
    assert nonzero_box(array) == (slice(2, 3), slice(3, 5), slice(1, 2))
    assert array[nonzero_box(np.zeros_like(array))].size == 0


def test_resample_maps_agrees_with_sitk_linear():
    atlas = Geometry((40, 44, 36), (1.2, 1.2, 1.2), (-25.0, -30.0, 8.0), tuple(np.eye(3).ravel()))
    rng = np.random.default_rng(1)
    maps = np.stack([_smooth(rng, atlas) for _ in range(3)]).astype(np.float32)
    transform = sitk.AffineTransform(3)
    transform.SetMatrix(tuple(Rotation.from_euler("xyz", (4, -3, 6), degrees=True).as_matrix().ravel() * 0.93))
    transform.SetTranslation((1.5, -2.0, 3.0))
    transform.SetCenter((0.0, -5.0, 25.0))
    sampled = resample_maps(maps, atlas_sampling_grid(transform, GRID, atlas))
    reference_image = array_to_image(np.zeros(GRID.size[::-1], np.float32), GRID)
    for ours, source in zip(sampled, maps):
        reference = sitk.GetArrayFromImage(sitk.Resample(array_to_image(source, atlas), reference_image, transform,
                                                         sitk.sitkLinear, 0.0))
        assert (reference > 0.05).mean() > 0.1
        assert np.abs(ours - reference).max() < 1e-3 * source.max()


def _smooth(rng, geometry: Geometry) -> np.ndarray:
    k, j, i = np.meshgrid(*[np.arange(n) for n in geometry.size[::-1]], indexing="ij")
    centre = rng.uniform(0.3, 0.7, 3) * np.asarray(geometry.size[::-1])
    blob = np.exp(-((k - centre[0]) ** 2 + (j - centre[1]) ** 2 + (i - centre[2]) ** 2) / 150.0)
    blob[:2], blob[-2:], blob[:, :2], blob[:, -2:], blob[..., :2], blob[..., -2:] = 0, 0, 0, 0, 0, 0
    return blob  # zero at the border, where sitk clamps and grid_sample blends with its zero padding
