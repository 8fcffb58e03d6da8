"""Fast resampling for the digital phantom (torch on the CPU, multi-threaded; float32; torch is imported where it
is used, so that the CLI reads the phantom defaults without loading it).

- ``atlas_sampling_grid`` + ``resample_maps``: all tissue maps of the atlas-space head sampled onto the
  scanner grid in one trilinear pass (the atlas position of each voxel is computed once, from the
  transform evaluated every few voxels and interpolated linearly: the deformation is smooth);
- ``move_cubic``: an image moved by a rigid (or any affine) motion with cubic B-spline interpolation in
  three separable 1D passes (12 taps per voxel; ``sitk.sitkBSpline`` takes 64), evaluated only where
  the moved object can be non-zero.
All arrays are indexed ``[k, j, i]``; geometries are non-oblique or oblique ``imageio.Geometry``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

if TYPE_CHECKING:
    import torch

from ..io.imageio import Geometry


def upsample_coarse(coarse: torch.Tensor, step: int, shape: tuple[int, int, int]) -> torch.Tensor:
    """Trilinear upsampling of ``coarse`` (C, kc, jc, ic), sampled every ``step`` voxels from index 0,
    to ``shape`` (k, j, i): value at fine index n is the coarse value at n / step. Needs
    kc >= (k - 1) / step + 1 (likewise j, i). Returns (C, k, j, i)."""
    import torch.nn.functional as F
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
    import torch
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


def resample_maps(maps: np.ndarray, sampling_grid: torch.Tensor) -> list[np.ndarray]:
    """Trilinear samples of each map (float32 (C, k, j, i)) at ``sampling_grid``, zero outside."""
    import torch
    import torch.nn.functional as F
    stacked = torch.from_numpy(np.ascontiguousarray(maps, dtype=np.float32))[None]
    out = F.grid_sample(stacked, sampling_grid, mode="bilinear", padding_mode="zeros", align_corners=True)[0]
    return [channel.numpy() for channel in out]


def nonzero_box(array: np.ndarray) -> tuple[slice, ...]:
    """Index box of the non-zero voxels of a 3D array (an empty box if there are none)."""
    nonzero = array != 0
    extents = [np.flatnonzero(np.any(nonzero, axis=axes)) for axes in ((1, 2), (0, 2), (0, 1))]
    if extents[0].size == 0:
        return (slice(0, 0),) * 3
    return tuple(slice(int(e[0]), int(e[-1]) + 1) for e in extents)


def _corner_range(row: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[int, int]:
    """Integer index range [a, b) holding the cubic taps of the positions ``row @ (k, j, i, 1)`` over the box
    [lo, hi) (an affine function: extremes at the corners)."""
    corners = np.array([np.where(np.array(s, bool), hi - 1, lo) for s in np.ndindex(2, 2, 2)], float)
    values = corners @ row[:3] + row[3]
    return int(np.floor(values.min())) - 2, int(np.ceil(values.max())) + 3


def _restrict(volume: np.ndarray, lo: np.ndarray, new_lo: np.ndarray, new_hi: np.ndarray, keep: int,
              out: np.ndarray) -> None:
    """Write ``volume`` (on the index box starting at ``lo``) on [new_lo, new_hi) along every axis but ``keep``
    into ``out`` (zeros, that shape), leaving zeros where it has no data."""
    src, dst = [], []
    for axis in range(3):
        if axis == keep:
            src.append(slice(None))
            dst.append(slice(None))
            continue
        a = max(new_lo[axis], lo[axis])
        b = min(new_hi[axis], lo[axis] + volume.shape[axis])
        if b <= a:
            return
        src.append(slice(a - lo[axis], b - lo[axis]))
        dst.append(slice(a - new_lo[axis], b - new_lo[axis]))
    out[tuple(dst)] = volume[tuple(src)]


def _resample_axis(volume: np.ndarray, lo: np.ndarray, axis: int, row: np.ndarray, out_lo: np.ndarray,
                   out_hi: np.ndarray) -> np.ndarray:
    """One pass: the output voxel q (global index box [out_lo, out_hi)) takes ``volume`` (box from ``lo``)
    interpolated with a 1D cubic B-spline along ``axis`` at position ``row @ (q, 1)``; its other
    coordinates are q's. Zero outside the data."""
    import torch
    length = volume.shape[axis]
    shape = list(out_hi - out_lo)
    shape[axis] = length + 4
    buffer = np.zeros(shape, np.float32)
    along = lambda index: (slice(None),) * axis + (index,)  # noqa: E731
    data = buffer[along(slice(2, length + 2))]
    _restrict(volume, lo, out_lo, out_hi, axis, data)
    ndimage.spline_filter1d(data, 3, axis=axis, output=data, mode="mirror")
    for end, source in ((0, 4), (1, 3), (length + 2, length), (length + 3, length - 1)):
        buffer[along(end)] = buffer[along(source)]  # the prefilter's mirror boundary, continued for the taps
    padded = torch.from_numpy(buffer)
    n = padded.shape[axis] - 3
    taps = [padded.narrow(axis, tap, n) for tap in range(4)]  # views: tap offsets without index arithmetic
    ranges = [torch.arange(a, b, dtype=torch.float32) for a, b in zip(out_lo, out_hi)]
    shape = [len(r) for r in ranges]
    t = torch.empty(shape, dtype=torch.float32)
    torch.add(row[0] * ranges[0][:, None, None] + float(row[3] - lo[axis]),
              row[1] * ranges[1][None, :, None] + row[2] * ranges[2][None, None, :], out=t)  # data index
    low, high = _corner_range(np.r_[row[:3], row[3] - lo[axis]], out_lo, out_hi)  # positions' bounds +- 2
    outside = None
    if low + 2 < -0.5 or high - 3 > length - 0.5:
        outside = (t < -0.5) | (t > length - 0.5)  # zero there, like sitk.Resample
    t += 1.0  # index in the padded array of the first tap, floor - 1
    first = torch.floor(t)
    t -= first
    first = first.long()
    if outside is not None:
        first.clamp_(0, n - 1)
    t2 = t * t
    w3 = t2 * t
    w1 = w3 * 0.5 - t2 + (2.0 / 3.0)
    w3 *= 1.0 / 6.0
    w0 = (1.0 - t).pow_(3).mul_(1.0 / 6.0)
    out = torch.gather(taps[0], axis, first).mul_(w0)
    out.addcmul_(torch.gather(taps[1], axis, first), w1)
    out.addcmul_(torch.gather(taps[3], axis, first), w3)
    w0 += w1
    w0 += w3
    w0.neg_().add_(1.0)  # w2 = 1 - w0 - w1 - w3 (the weights sum to 1)
    out.addcmul_(torch.gather(taps[2], axis, first), w0)
    if outside is not None:
        out[outside] = 0.0
    return out.numpy()


def move_cubic(array: np.ndarray, geometry: Geometry, output_to_input_lps: np.ndarray) -> np.ndarray:
    """``array`` (float32 [k, j, i] on ``geometry``) resampled on the same grid at the points that
    ``output_to_input_lps`` (4x4, LPS, affine) maps each output voxel to, zero outside.

    Cubic B-spline interpolation in three separable passes (along i, then j, then k; the affine map
    is factored into three maps that each change one coordinate), so that each axis is interpolated
    once with a 1D interpolating cubic B-spline: 12 taps per voxel instead of 64. Only the bounding box
    of the non-zero input (with a margin of zeros for the spline prefilter, whose tails decay as
    0.268^distance) and its image are computed.
    """
    shape = np.asarray(array.shape)
    out = np.zeros(array.shape, np.float32)
    box = nonzero_box(array)
    if box[0].stop == 0:
        return out
    margin = 10
    lo = np.maximum([b.start - margin for b in box], 0)
    hi = np.minimum([b.stop + margin for b in box], shape)
    m = geometry.ijk_to_lps()
    ijk_map = np.linalg.inv(m) @ output_to_input_lps @ m  # output (i, j, k, 1) -> input (i, j, k, 1)
    order = [2, 1, 0, 3]
    kji_map = ijk_map[np.ix_(order, order)]  # the same map in (k, j, i, 1) order
    inverse = np.linalg.inv(kji_map)
    corners = np.array([np.where(np.array(s, bool), hi - 1, lo) for s in np.ndindex(2, 2, 2)], float)
    moved = corners @ inverse[:3, :3].T + inverse[:3, 3]
    out_lo = np.clip(np.floor(moved.min(0)).astype(int) - 2, 0, shape)
    out_hi = np.clip(np.ceil(moved.max(0)).astype(int) + 3, 0, shape)
    if np.any(out_hi <= out_lo):
        return out
    # kji_map = L_i @ L_j @ L_k, each the identity but for one row (the coordinate it changes)
    l_k = np.eye(4)
    l_k[0] = kji_map[0]
    if abs(l_k[0, 0]) < 0.5 or abs(np.linalg.det(kji_map[:2, :2])) < 0.25:
        raise ValueError("motion too far from the identity for separable resampling (rotation above about "
                         "45 degrees); use rotations within the phantom's 20 degree bound")
    l_j = np.eye(4)
    l_j[1] = kji_map[1] @ np.linalg.inv(l_k)
    l_i = np.eye(4)
    l_i[2] = kji_map[2] @ np.linalg.inv(l_j @ l_k)
    t2_lo, t2_hi = out_lo.copy(), out_hi.copy()
    t2_lo[0], t2_hi[0] = _corner_range(l_k[0], out_lo, out_hi)
    t1_lo, t1_hi = t2_lo.copy(), t2_hi.copy()
    t1_lo[1], t1_hi[1] = _corner_range(l_j[1], t2_lo, t2_hi)
    data = np.ascontiguousarray(array[tuple(slice(a, b) for a, b in zip(lo, hi))])
    t1 = _resample_axis(data, lo, 2, l_i[2], t1_lo, t1_hi)
    t2 = _resample_axis(t1, t1_lo, 1, l_j[1], t2_lo, t2_hi)
    out[tuple(slice(a, b) for a, b in zip(out_lo, out_hi))] = _resample_axis(t2, t2_lo, 0, l_k[0], out_lo, out_hi)
    return out
