"""Fast resampling for the digital phantom (torch on the CPU, multi-threaded; float32).

- ``atlas_sampling_grid`` + ``resample_maps``: all tissue maps of the atlas-space head sampled onto the
  scanner grid in one trilinear pass (the atlas position of each voxel is computed once, from the
  transform evaluated every few voxels and interpolated linearly: the deformation is smooth);
- ``move_cubic``: an image moved by a rigid (or any affine) motion with cubic B-spline interpolation
  (the interpolation of ``sitk.sitkBSpline``), evaluated only where the moved object can be non-zero.
All arrays are indexed ``[k, j, i]``; geometries are non-oblique or oblique ``imageio.Geometry``.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
import torch
import torch.nn.functional as F

from .imageio import Geometry, array_to_image


def upsample_coarse(coarse: torch.Tensor, step: int, shape: tuple[int, int, int]) -> torch.Tensor:
    """Trilinear upsampling of ``coarse`` (C, kc, jc, ic), sampled every ``step`` voxels from index 0,
    to ``shape`` (k, j, i): value at fine index n is the coarse value at n / step. Needs
    kc >= (k - 1) / step + 1 (likewise j, i). Returns (C, k, j, i)."""
    size = [(n - 1) * step + 1 for n in coarse.shape[1:]]
    if any(s < n for s, n in zip(size, shape)):
        raise ValueError(f"coarse grid {tuple(coarse.shape[1:])} too small for {shape} at step {step}")
    fine = F.interpolate(coarse[None], size=size, mode="trilinear", align_corners=True)[0]
    return fine[:, :shape[0], :shape[1], :shape[2]]


def atlas_sampling_grid(transform: sitk.Transform, grid: Geometry, atlas: Geometry, step: int = 4) -> torch.Tensor:
    """For each voxel of ``grid``, the position ``transform(p)`` in ``atlas`` as grid_sample coordinates.

    The transform is evaluated every ``step`` voxels and interpolated linearly (smooth deformations).
    Returns (1, k, j, i, 3) float32: (i, j, k) of the atlas scaled to [-1, 1] (align_corners=True).
    """
    coarse_size = [int(np.ceil((n - 1) / step)) + 2 for n in grid.size]
    field = sitk.TransformToDisplacementField(transform, sitk.sitkVectorFloat64, coarse_size, grid.origin,
                                              [s * step for s in grid.spacing], grid.direction)
    displacement = sitk.GetArrayFromImage(field)  # (kc, jc, ic, 3) LPS mm
    m = grid.ijk_to_lps()
    k, j, i = np.meshgrid(*[np.arange(n) * step for n in coarse_size[::-1]], indexing="ij")
    points = np.stack([i, j, k], -1) @ m[:3, :3].T + m[:3, 3] + displacement
    to_index = np.linalg.inv(atlas.ijk_to_lps())
    index = points @ to_index[:3, :3].T + to_index[:3, 3]  # atlas (i, j, k)
    normalised = 2.0 * index / (np.asarray(atlas.size, float) - 1.0) - 1.0
    coarse = torch.from_numpy(np.ascontiguousarray(np.moveaxis(normalised, -1, 0), dtype=np.float32))
    fine = upsample_coarse(coarse, step, tuple(grid.size[::-1]))
    return fine.permute(1, 2, 3, 0).contiguous()[None]


def resample_maps(maps: list[np.ndarray], sampling_grid: torch.Tensor) -> list[np.ndarray]:
    """Trilinear samples of each map (same shape, float32 [k, j, i]) at ``sampling_grid``, zero outside."""
    stacked = torch.from_numpy(np.stack(maps).astype(np.float32, copy=False))[None]
    out = F.grid_sample(stacked, sampling_grid, mode="bilinear", padding_mode="zeros", align_corners=True)[0]
    return [channel.numpy() for channel in out]


def _sub_geometry(geometry: Geometry, lo: np.ndarray, hi: np.ndarray) -> Geometry:
    """The part [lo, hi) (k, j, i voxel indices) of ``geometry``."""
    origin = geometry.ijk_to_lps() @ np.r_[lo[::-1], 1.0]
    return Geometry(tuple(int(n) for n in (hi - lo)[::-1]), geometry.spacing, tuple(float(o) for o in origin[:3]),
                    geometry.direction)


def move_cubic(array: np.ndarray, geometry: Geometry, output_to_input_lps: np.ndarray) -> np.ndarray:
    """``array`` (float32 [k, j, i] on ``geometry``) resampled on the same grid at the points that
    ``output_to_input_lps`` (4x4, LPS) maps each output voxel to, with SimpleITK's cubic B-spline
    interpolation (zero outside). Only the bounding box of the non-zero input (with a margin of zeros
    for the spline prefilter, whose tails decay as 0.268^distance) and its image are computed."""
    shape = np.asarray(array.shape)
    out = np.zeros(array.shape, np.float32)
    nonzero = [np.flatnonzero(np.any(array != 0, axis=axes)) for axes in ((1, 2), (0, 2), (0, 1))]
    if nonzero[0].size == 0:
        return out
    margin = 10
    lo = np.maximum([n[0] - margin for n in nonzero], 0)
    hi = np.minimum([n[-1] + margin + 1 for n in nonzero], shape)
    m = geometry.ijk_to_lps()
    to_output = np.linalg.inv(m) @ np.linalg.inv(output_to_input_lps) @ m  # input (i, j, k) -> output (i, j, k)
    corners = np.array([np.where(np.array(s, bool), hi - 1, lo)[::-1] for s in np.ndindex(2, 2, 2)], float)
    moved = (corners @ to_output[:3, :3].T + to_output[:3, 3])[:, ::-1]  # (k, j, i)
    out_lo = np.clip(np.floor(moved.min(0)).astype(int) - 2, 0, shape)
    out_hi = np.clip(np.ceil(moved.max(0)).astype(int) + 3, 0, shape)
    if np.any(out_hi <= out_lo):
        return out
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    source = array_to_image(np.ascontiguousarray(array[box]), _sub_geometry(geometry, lo, hi))
    reference = array_to_image(np.zeros(tuple(out_hi - out_lo), np.uint8), _sub_geometry(geometry, out_lo, out_hi))
    transform = sitk.AffineTransform(3)
    transform.SetMatrix(tuple(output_to_input_lps[:3, :3].ravel()))
    transform.SetTranslation(tuple(output_to_input_lps[:3, 3]))
    moved_image = sitk.Resample(source, reference, transform, sitk.sitkBSpline, 0.0, sitk.sitkFloat32)
    out[tuple(slice(a, b) for a, b in zip(out_lo, out_hi))] = sitk.GetArrayViewFromImage(moved_image)
    return out
