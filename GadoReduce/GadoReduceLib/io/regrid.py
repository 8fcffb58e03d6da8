"""Regridding: nearly isotropic working grids nested in the scan's grid, and exact maps back.

A scan with anisotropic voxels (e.g. 0.9 x 0.9 x 3 mm) is processed on a finer grid whose nodes
include every voxel centre of the original grid: along each axis the spacing is divided by an
integer n_a = round(spacing_a / target), the first voxel centre stays, and the size becomes
(size_a - 1) * n_a + 1. Mapping a result back is then plain sub-sampling [::n_k, ::n_j, ::n_i]:
exact, with no interpolation (:func:`back_to_grid`).
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

ANISOTROPY_TOLERANCE = 0.1
"""Voxels count as anisotropic when the largest spacing exceeds the smallest by more than 10 %."""


def is_anisotropic(image: sitk.Image, tolerance: float = ANISOTROPY_TOLERANCE) -> bool:
    spacing = np.asarray(image.GetSpacing())
    return bool(spacing.max() > spacing.min() * (1.0 + tolerance))


def nested_factors(image: sitk.Image, target_mm: float | None = None) -> tuple[int, int, int]:
    """Integer subdivision per axis (i, j, k) giving spacings close to ``target_mm`` (default: the
    smallest spacing)."""
    spacing = np.asarray(image.GetSpacing(), float)
    target = float(spacing.min() if target_mm is None else target_mm)
    if target <= 0:
        raise ValueError(f"Target spacing {target} mm must be positive.")
    return tuple(int(max(1, round(s / target))) for s in spacing)


def nested_isotropic_grid(image: sitk.Image, target_mm: float | None = None) -> sitk.Image:
    """An empty float32 image on the nested, nearly isotropic grid of ``image`` (see module docstring)."""
    factors = np.asarray(nested_factors(image, target_mm))
    size = (np.asarray(image.GetSize()) - 1) * factors + 1
    ref = sitk.Image([int(s) for s in size], sitk.sitkFloat32)
    ref.SetSpacing(tuple(np.asarray(image.GetSpacing()) / factors))
    ref.SetOrigin(image.GetOrigin())
    ref.SetDirection(image.GetDirection())
    return ref


def to_grid(image: sitk.Image, reference: sitk.Image, interpolator=sitk.sitkBSpline,
            pixel_type=sitk.sitkFloat32) -> sitk.Image:
    """``image`` resampled onto the grid of ``reference`` (identity transform)."""
    return sitk.Resample(image, reference, sitk.Transform(3, sitk.sitkIdentity), interpolator, 0.0, pixel_type)


def _nesting(fine: sitk.Image, coarse: sitk.Image) -> tuple[int, int, int] | None:
    """Integer factors if ``coarse``'s voxel centres are nodes of ``fine`` starting at its origin."""
    if not np.allclose(fine.GetDirection(), coarse.GetDirection(), atol=1e-6):
        return None
    if not np.allclose(fine.GetOrigin(), coarse.GetOrigin(), atol=1e-4):
        return None
    ratio = np.asarray(coarse.GetSpacing()) / np.asarray(fine.GetSpacing())
    factors = np.round(ratio).astype(int)
    if np.any(factors < 1) or not np.allclose(ratio, factors, rtol=1e-6):
        return None
    if np.any((np.asarray(coarse.GetSize()) - 1) * factors + 1 > np.asarray(fine.GetSize())):
        return None
    return tuple(int(f) for f in factors)


def back_to_grid(image: sitk.Image, reference: sitk.Image, interpolator=sitk.sitkBSpline) -> sitk.Image:
    """``image`` (on a working grid) mapped onto ``reference``'s grid (e.g. the pre-contrast scan).

    Exact sub-sampling when the working grid is nested in the reference (:func:`nested_isotropic_grid`),
    otherwise resampling with ``interpolator``. The result carries ``reference``'s geometry exactly.
    """
    factors = _nesting(image, reference)
    if factors is None:
        return to_grid(image, reference, interpolator, image.GetPixelID())
    fi, fj, fk = factors
    ni, nj, nk = reference.GetSize()
    array = sitk.GetArrayViewFromImage(image)[:(nk - 1) * fk + 1:fk, :(nj - 1) * fj + 1:fj, :(ni - 1) * fi + 1:fi]
    out = sitk.GetImageFromArray(np.ascontiguousarray(array))
    out.CopyInformation(reference)
    return out


def isotropic_reference(image: sitk.Image, spacing_mm: float) -> sitk.Image:
    """An empty float32 image covering ``image``'s field of view with isotropic ``spacing_mm``."""
    old_spacing = np.asarray(image.GetSpacing())
    size = np.maximum(np.round(np.asarray(image.GetSize()) * old_spacing / spacing_mm).astype(int), 1)
    ref = sitk.Image([int(s) for s in size], sitk.sitkFloat32)
    ref.SetSpacing([spacing_mm] * 3)
    ref.SetDirection(image.GetDirection())
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    corner = np.asarray(image.GetOrigin()) - direction @ (old_spacing / 2)  # the field of view's corner stays
    ref.SetOrigin(tuple(corner + direction @ (np.full(3, spacing_mm) / 2)))
    return ref


def downsample(image: sitk.Image, spacing_mm: float, interpolator=sitk.sitkLinear) -> sitk.Image:
    """``image`` on an isotropic grid of ``spacing_mm`` (Gaussian anti-aliasing where coarser)."""
    ref = isotropic_reference(image, spacing_mm)
    src = sitk.Cast(image, sitk.sitkFloat32)
    factor = spacing_mm / np.asarray(image.GetSpacing())
    if interpolator != sitk.sitkNearestNeighbor and np.any(factor > 1.2):
        sigma = [float(max(0.5 * s * np.sqrt(max(f * f - 1, 0.0)), 0.01 * s))
                 for s, f in zip(image.GetSpacing(), factor)]
        src = sitk.SmoothingRecursiveGaussian(src, sigma)
    return to_grid(src, ref, interpolator)
