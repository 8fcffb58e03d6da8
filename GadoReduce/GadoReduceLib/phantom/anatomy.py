"""Anatomy of the digital phantom: a whole head built around the MNI ICBM152 2009a brain template.

The template (GM and WM probability maps, skull-stripped T1) gives the brain. Around it this
module builds, in the template's physical space ("atlas space", LPS mm):
- the brain hull (brain with sulcal CSF and ventricles: the phantom's brain mask) and its CSF;
- a subarachnoid CSF band, dura, skull (inner table, diploe, outer table), and a scalp of
  galea/muscle (thicker over the temporalis), subcutaneous fat and skin, each layer of randomly
  varying thickness;
- normally enhancing vessels: superior sagittal and transverse sinuses, random cortical veins;
- choroid plexus in the atria of the lateral ventricles.
Then a random smooth deformation, a random head size and a random head pose map everything onto
the scanner grid. All maps are tissue fractions in [0, 1] (partial volume), float32, indexed
``[k, j, i]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..io.imageio import Geometry, array_to_image, image_to_array
from ..io.resources import resource_path

ATLAS_FILES = {"t1": "mni_icbm152_2009a_t1.nii.gz", "grey_matter": "mni_icbm152_2009a_gm.nii.gz",
               "white_matter": "mni_icbm152_2009a_wm.nii.gz"}
ATLAS_BOX_LPS_MM = ((-98.0, 98.0), (-100.0, 136.0), (-104.0, 108.0))
"""Extent of the atlas-space grid (x, y, z in LPS mm): the template's brain plus a head around it."""
ATLAS_BRAIN_BOTTOM_Z_MM = -67.0
"""Below this z the template's brainstem is cut; the phantom continues it as a column (medulla, cord)."""

COMPARTMENTS = ("white_matter", "grey_matter", "csf", "blood", "fat", "muscle", "skull", "dura",
                "choroid_plexus")
"""Compartments of the normal head (lesion compartments are added on the scanner grid)."""

CHOROID_PLEXUS_LPS_MM = ((24.0, 42.0, 13.0), (-24.0, 42.0, 13.0))
"""Glomus of the choroid plexus in the atria of the lateral ventricles, atlas space (LPS mm)."""


@dataclass
class HeadModel:
    """Tissue fractions of one random head, on a grid (atlas space or scanner grid)."""

    geometry: Geometry
    fractions: dict[str, np.ndarray]  # compartment -> float32 fraction [k, j, i]
    brain: np.ndarray  # float32 fraction of the brain hull (brain + sulcal CSF + ventricles)
    parameters: dict  # JSON-serialisable description of the random choices
    maps: np.ndarray  # float32 (len(COMPARTMENTS) + 1, k, j, i): the fractions in COMPARTMENTS order, then brain


def smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], spacing_mm: float,
                 correlation_mm: float) -> np.ndarray:
    """Smooth random field of unit standard deviation and mean zero on a grid of ``shape``.

    White noise on a coarse grid of ``correlation_mm / 2`` spacing, smoothed there and upsampled
    trilinearly (fast: the cost is that of one pass over the fine grid).
    """
    step = max(correlation_mm / 2.0 / spacing_mm, 1.0)
    coarse_shape = tuple(int(np.ceil(n / step)) + 2 for n in shape)
    coarse = ndimage.gaussian_filter(rng.standard_normal(coarse_shape), 1.0, mode="wrap")
    field = upsample_linear(coarse.astype(np.float32), step, shape)
    field -= field.mean()
    return field / max(float(field.std()), 1e-12)


def upsample_linear(coarse: np.ndarray, step: float, shape: tuple[int, int, int]) -> np.ndarray:
    """Separable linear interpolation of ``coarse`` (first 3 axes) at indices ``arange(n) / step``.

    ``coarse`` needs at least ``ceil((n - 1) / step) + 2`` samples along each axis; extra trailing
    axes (e.g. vector components) are carried along.
    """
    field = coarse
    for axis, n in enumerate(shape):
        coords = np.arange(n) / step
        lo = np.floor(coords).astype(int)
        w = (coords - lo).astype(coarse.dtype)
        shape_w = [1] * coarse.ndim
        shape_w[axis] = n
        w = w.reshape(shape_w)
        field = np.take(field, lo, axis=axis) * (1 - w) + np.take(field, lo + 1, axis=axis) * w
    return field


def atlas_grid(spacing_mm: float) -> Geometry:
    """The atlas-space grid (identity direction, LPS) of the given isotropic spacing."""
    lo = np.array([b[0] for b in ATLAS_BOX_LPS_MM])
    hi = np.array([b[1] for b in ATLAS_BOX_LPS_MM])
    size = tuple(int(n) for n in np.floor((hi - lo) / spacing_mm) + 1)
    return Geometry(size, (spacing_mm,) * 3, tuple(float(v) for v in lo), tuple(np.eye(3).ravel()))


def _grid_points(geometry: Geometry) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """LPS coordinates (x, y, z) of a non-oblique grid as sparse arrays broadcastable to [k, j, i]."""
    m = geometry.ijk_to_lps()
    if not np.allclose(m[:3, :3], np.diag(np.diag(m[:3, :3]))):
        raise ValueError("_grid_points needs a grid whose axes are the LPS axes (identity direction)")
    i = np.arange(geometry.size[0])[None, None, :]
    j = np.arange(geometry.size[1])[None, :, None]
    k = np.arange(geometry.size[2])[:, None, None]
    return m[0, 0] * i + m[0, 3], m[1, 1] * j + m[1, 3], m[2, 2] * k + m[2, 3]


@lru_cache(maxsize=2)
def _base_head(spacing_mm: float) -> tuple[Geometry, dict[str, np.ndarray]]:
    """Seed-independent part of the head on the atlas grid: GM, WM, inner CSF, hull distance (mm)."""
    geometry = atlas_grid(spacing_mm)
    reference = array_to_image(np.zeros(geometry.size[::-1], np.float32), geometry)
    maps = {}
    for name, file in ATLAS_FILES.items():
        image = sitk.Cast(sitk.ReadImage(str(resource_path("Atlas", file))), sitk.sitkFloat32)
        shrink = int(np.floor(spacing_mm + 1e-6))
        if shrink > 1:  # anti-aliasing before downsampling: mean of shrink^3 blocks
            image = sitk.BinShrink(image, [shrink] * 3)
        image = image / 255.0
        maps[name] = image_to_array(sitk.Resample(image, reference, sitk.Transform(), sitk.sitkLinear, 0.0))[0]
    # continue the brainstem downwards as a column (the template is cut at z = -72 mm)
    z = geometry.origin[2] + spacing_mm * np.arange(geometry.size[2])
    k_cut = int(np.searchsorted(z, ATLAS_BRAIN_BOTTOM_Z_MM))
    for name in ("white_matter", "t1"):
        maps[name][:k_cut] = maps[name][k_cut]
    maps["grey_matter"][:k_cut] = 0.0
    gm, wm = maps["grey_matter"], maps["white_matter"]
    total = gm + wm
    scale = np.where(total > 1.0, 1.0 / np.maximum(total, 1e-6), 1.0)
    gm *= scale
    wm *= scale
    # hull: template brain mask, closed (fills sulci and the interhemispheric fissure), smoothed
    brain = (maps["t1"] > 0.05) | (gm + wm > 0.3)
    radius = max(int(round(4.0 / spacing_mm)), 1)
    closed = ndimage.binary_closing(np.pad(brain, radius + 1), ndimage.generate_binary_structure(3, 1),
                                    iterations=radius)[(slice(radius + 1, -radius - 1),) * 3]
    closed = ndimage.binary_fill_holes(closed)
    hull = ndimage.gaussian_filter(closed.astype(np.float32), 1.5 / spacing_mm) > 0.5
    hull_image = array_to_image(hull.astype(np.uint8), geometry)
    distance = sitk.SignedMaurerDistanceMap(hull_image, insideIsPositive=False, squaredDistance=False,
                                            useImageSpacing=True)
    signed = image_to_array(distance)[0].astype(np.float32)
    # Maurer's distance is to voxel centres at the border; shift so that the surface is at 0
    signed += np.where(signed > 0, -0.5 * spacing_mm, 0.5 * spacing_mm).astype(np.float32)
    hull_fraction = np.clip(0.5 - signed / spacing_mm, 0.0, 1.0).astype(np.float32)
    gm *= hull_fraction
    wm *= hull_fraction
    csf = np.clip(hull_fraction - gm - wm, 0.0, 1.0)
    return geometry, {"grey_matter": gm, "white_matter": wm, "csf_inner": csf, "hull": hull_fraction,
                      "distance": signed}


def _shell(distance: np.ndarray, inner: np.ndarray | float, outer: np.ndarray | float, h: float) -> np.ndarray:
    """Fraction of each voxel (size h) between the surfaces at ``inner`` and ``outer`` mm of distance."""
    return (np.clip((distance - inner) / h + 0.5, 0.0, 1.0)
            - np.clip((distance - outer) / h + 0.5, 0.0, 1.0)).astype(np.float32)


def _tube_fraction(shape: tuple[int, int, int], geometry: Geometry, points_lps: np.ndarray,
                   radii_mm: np.ndarray) -> np.ndarray:
    """Fraction of voxels inside tubes given as dense centre-line points with a radius each.

    Radii are rounded to 0.5 mm. The distance of a voxel is that of its centre to the nearest voxel centre
    holding a centre-line point (of the same radius class): tubes are drawn point by point over the
    small neighbourhood where the fraction is non-zero.
    """
    h = geometry.spacing[0]
    ijk = np.round((points_lps - np.asarray(geometry.origin)) / h).astype(int)[:, ::-1]  # -> (k, j, i)
    inside = np.all((ijk >= 0) & (ijk < np.asarray(shape)), axis=1)
    ijk, radii_mm = ijk[inside], np.round(radii_mm[inside] * 2.0) / 2.0
    fraction = np.zeros(shape, np.float32)
    for radius in np.unique(radii_mm):
        seeds = np.unique(ijk[radii_mm == radius], axis=0)
        reach = int(np.ceil(radius / h + 0.5))
        offsets = np.stack(np.meshgrid(*[np.arange(-reach, reach + 1)] * 3, indexing="ij"), -1).reshape(-1, 3)
        values = np.clip((radius - h * np.linalg.norm(offsets, axis=1)) / h + 0.5, 0.0, 1.0).astype(np.float32)
        offsets, values = offsets[values > 0], values[values > 0]
        voxels = (seeds[:, None, :] + offsets[None]).reshape(-1, 3)
        values = np.broadcast_to(values, (len(seeds), len(values))).ravel()
        keep = np.all((voxels >= 0) & (voxels < np.asarray(shape)), axis=1)
        np.maximum.at(fraction, tuple(voxels[keep].T), values[keep])
    return fraction


def _cortical_veins(rng: np.random.Generator, geometry: Geometry, distance: np.ndarray, depth_mm: float,
                    count: int) -> tuple[np.ndarray, np.ndarray]:
    """Centre lines of random veins running over the brain surface towards the vertex (LPS mm)."""
    h = geometry.spacing[0]
    steps = [np.eye(3)[::-1][a][:, None] for a in range(3)]  # one voxel along x (i), y (j), z (k) in (k, j, i)
    origin = np.asarray(geometry.origin)
    points, radii = [], []

    def project(p: np.ndarray) -> np.ndarray:
        for _ in range(3):  # move each point to the level set distance == -depth
            idx = ((p - origin) / h)[:, ::-1].T
            d = ndimage.map_coordinates(distance, idx, order=1, mode="nearest")
            g = np.stack([ndimage.map_coordinates(distance, idx + step, order=1, mode="nearest")
                          - ndimage.map_coordinates(distance, idx - step, order=1, mode="nearest")
                          for step in steps], 1)  # central differences along x, y, z (direction only)
            g /= np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-6)
            p = p - (d + depth_mm)[:, None] * g
        return p

    for _ in range(count):
        azimuth = rng.uniform(0, 2 * np.pi)
        elevation = rng.uniform(-0.1, 0.6)
        start = 90.0 * np.array([np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth),
                                 np.sin(elevation)]) + np.array([0.0, 18.0, 15.0])
        end = np.array([rng.uniform(-3, 3), start[1] + rng.uniform(-25, 25), 110.0])
        t = np.linspace(0.0, 1.0, 160)[:, None]
        wiggle = 6.0 * np.sin(2 * np.pi * (rng.uniform(1, 2.5) * t + rng.uniform(0, 1))) * rng.standard_normal(3)
        line = project((1 - t) * start + t * end + wiggle)
        points.append(line)
        radii.append(np.full(len(line), rng.uniform(0.8, 1.5)))
    return np.concatenate(points), np.concatenate(radii)


def build_head(rng: np.random.Generator, spacing_mm: float) -> HeadModel:
    """A random head in atlas space on the atlas grid of ``spacing_mm`` (1 to 2 mm recommended)."""
    geometry, base = _base_head(float(spacing_mm))
    h = float(spacing_mm)
    shape = base["hull"].shape
    d = base["distance"]
    x, y, z = _grid_points(geometry)
    field = lambda corr: smooth_noise(rng, shape, h, corr)  # noqa: E731
    csf_band = np.clip(1.6 + 0.5 * field(40.0), 0.6, 3.0)
    dura_end = csf_band + 1.0
    skull_mean = rng.uniform(5.5, 7.5)
    skull = np.clip(skull_mean + 1.2 * field(50.0), 3.5, 10.0)
    table = np.clip(0.35 * skull, 1.2, 2.5)
    temporal = [np.exp(-e).astype(np.float32) for e in ((np.abs(x) - 75.0) ** 2 / 300.0, (z - 5.0) ** 2 / 900.0,
                                                        (y + 5.0) ** 2 / 1500.0)]  # separable Gaussian
    muscle = np.clip(1.5 + 0.4 * field(40.0), 0.8, 3.0) + np.float32(7.0) * temporal[0] * temporal[1] * temporal[2]
    fat = np.clip(rng.uniform(2.5, 5.0) + 1.0 * field(40.0), 1.0, 8.0)
    skin = 1.5
    s0 = dura_end
    s1 = s0 + table
    s2 = s0 + skull - table
    s3 = s0 + skull
    m1 = s3 + muscle
    f1 = m1 + fat
    outer = f1 + skin
    fr = {
        "white_matter": base["white_matter"].copy(),
        "grey_matter": base["grey_matter"].copy(),
        "csf": base["csf_inner"] + _shell(d, 0.0, csf_band, h),
        "dura": _shell(d, csf_band, dura_end, h),
        "skull": _shell(d, s0, s1, h) + _shell(d, s2, s3, h),
        "fat": _shell(d, s1, s2, h) + _shell(d, m1, f1, h),
        "muscle": _shell(d, s3, m1, h) + _shell(d, f1, outer, h),
    }
    # venous sinuses: superior sagittal (midline, above the tentorium) and transverse (occipital)
    band = _shell(d, csf_band - 1.0, dura_end + 3.0, h)
    sss = band * np.clip((4.0 - np.abs(x)) / h + 0.5, 0, 1) * np.clip((z + 10.0) / h, 0, 1)
    transverse = band * np.clip((3.5 - np.abs(z + 18.0)) / h + 0.5, 0, 1) * np.clip((y - 40.0) / h, 0, 1)
    n_veins = int(rng.integers(12, 21))
    veins, radii = _cortical_veins(rng, geometry, d, -0.9, n_veins)  # in the subarachnoid space
    cortical = _tube_fraction(shape, geometry, veins, radii) * np.clip(1.0 - base["hull"], 0, 1)
    blood = np.clip(np.maximum(np.maximum(sss, transverse), cortical), 0.0, 1.0)
    # choroid plexus: ellipsoidal glomus inside ventricular CSF
    plexus = np.zeros(shape, np.float32)
    semi_axes = np.array([6.0, 9.0, 5.0])
    for centre in CHOROID_PLEXUS_LPS_MM:  # non-zero where r < 1 + h / 10: evaluated in that box only
        lo = np.floor((np.asarray(centre) - 1.2 * semi_axes - 2 * h - geometry.origin) / h).astype(int)
        hi = np.ceil((np.asarray(centre) + 1.2 * semi_axes + 2 * h - geometry.origin) / h).astype(int) + 1
        lo, hi = np.clip(lo, 0, geometry.size), np.clip(hi, 0, geometry.size)
        box = (slice(lo[2], hi[2]), slice(lo[1], hi[1]), slice(lo[0], hi[0]))
        r = np.sqrt(((x[..., box[2]] - centre[0]) / 6.0) ** 2 + ((y[:, box[1]] - centre[1]) / 9.0) ** 2
                    + ((z[box[0]] - centre[2]) / 5.0) ** 2)
        plexus[box] = np.maximum(plexus[box], np.clip((1.0 - r) * 5.0 / h + 0.5, 0, 1))
    plexus *= np.clip(base["csf_inner"] / np.maximum(base["hull"], 1e-6), 0, 1) * (d < -4.0)
    # blood and plexus displace the other compartments
    keep = 1.0 - np.clip(blood + plexus, 0.0, 1.0)
    maps = np.empty((len(COMPARTMENTS) + 1, *shape), np.float32)  # one block: resampled in one pass
    for n, c in enumerate(COMPARTMENTS):
        if c == "choroid_plexus":
            maps[n] = plexus
        elif c == "blood":
            maps[n] = blood
        else:
            np.multiply(fr[c], keep, out=maps[n])
    maps[-1] = base["hull"]
    parameters = {"skull_thickness_mean_mm": float(skull_mean), "cortical_veins": n_veins,
                  "anatomy_spacing_mm": h}
    return HeadModel(geometry, dict(zip(COMPARTMENTS, maps)), maps[-1], parameters, maps)
