"""Lesions of the digital phantom, drawn on the scanner grid of the pre-contrast scan.

Types (``LESION_TYPES``):
- ``solid``: homogeneously enhancing metastasis, roughly spherical, 2-25 mm, with oedema when >= 8 mm;
- ``ring``: ring-enhancing metastasis, 8-25 mm, enhancing rim of 1.5-3.5 mm around necrosis, oedema;
- ``glioblastoma``: irregular lobulated mass 25-45 mm, thick irregular heterogeneous rim around
  necrosis, extensive oedema;
- ``non_enhancing``: T1-hypointense lesion without enhancement (e.g. low-grade glioma), 8-30 mm.
Compartments added: ``lesion`` (enhancing tissue, its standard-dose Gd concentration varies per
voxel), ``necrosis``, ``edema`` and ``non_enhancing``. Oedema spreads in white matter.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from ..io.imageio import Geometry, array_to_image, image_to_array

LESION_TYPES = ("solid", "ring", "glioblastoma", "non_enhancing")
LESION_COMPARTMENTS = ("lesion", "necrosis", "edema", "non_enhancing")
DIAMETER_RANGE_MM = {"solid": (2.0, 25.0), "ring": (8.0, 25.0), "glioblastoma": (25.0, 45.0),
                     "non_enhancing": (8.0, 30.0)}
IRREGULARITY = {"solid": 0.06, "ring": 0.08, "glioblastoma": 0.22, "non_enhancing": 0.12}
"""Relative amplitude of the random modulation of each type's radius with direction."""
BRAIN_COMPARTMENTS = ("white_matter", "grey_matter", "csf")


def _angular_field(rng: np.random.Generator, n_terms: int = 8):
    """A random smooth function of direction u (unit vectors, shape (..., 3)), mean 0, std about 1."""
    waves = rng.standard_normal((n_terms, 3))
    freq = rng.uniform(1.0, 3.0, n_terms)
    phase = rng.uniform(0, 2 * np.pi, n_terms)
    waves /= np.linalg.norm(waves, axis=1, keepdims=True)

    def field(u: np.ndarray) -> np.ndarray:
        return np.sqrt(2.0 / n_terms) * sum(np.cos(f * (u @ w) * np.pi + p) for w, f, p in zip(waves, freq, phase))
    return field


def sample_lesions(rng: np.random.Generator, geometry: Geometry, parenchyma: np.ndarray, depth_mm: np.ndarray,
                   counts: dict[str, int]) -> list[dict]:
    """Random lesions (type, centre LPS mm, diameter mm, ...) inside the brain, not overlapping.

    parenchyma: GM + WM fraction [k, j, i]; depth_mm: distance to the outside of the brain mask (mm).
    A lesion that finds no free place in 60 tries is left out (the sidecar lists the lesions made).
    """
    lesions: list[dict] = []
    m = geometry.ijk_to_lps()
    order = [t for t in LESION_TYPES for _ in range(int(counts.get(t, 0)))]
    for kind in sorted(order, key=lambda t: -DIAMETER_RANGE_MM[t][1]):  # large lesions first (stable sort)
        lo, hi = DIAMETER_RANGE_MM[kind]
        for _attempt in range(60):
            diameter = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
            radius = diameter / 2.0
            margin = radius * (1.0 + IRREGULARITY[kind]) + 2.0
            candidates = np.flatnonzero((depth_mm.ravel() > margin) & (parenchyma.ravel() > 0.8))
            if candidates.size == 0:
                hi = max(lo, diameter * 0.8)
                continue
            k, j, i = np.unravel_index(candidates[rng.integers(candidates.size)], depth_mm.shape)
            centre = (m @ np.array([i, j, k, 1.0]))[:3] + rng.uniform(-0.5, 0.5, 3) * np.asarray(geometry.spacing)
            if all(np.linalg.norm(centre - np.asarray(o["centre_lps_mm"])) > radius + o["diameter_mm"] / 2 + 4.0
                   for o in lesions):
                lesions.append({"type": kind, "centre_lps_mm": [float(c) for c in centre], "diameter_mm": diameter,
                                "shape_seed": int(rng.integers(2**31)),
                                "concentration_scale": float(rng.uniform(0.7, 1.3))})
                break
    for label, lesion in enumerate(lesions, start=1):
        lesion["label"] = label
    return lesions


def render_lesions(lesions: list[dict], geometry: Geometry, fractions: dict[str, np.ndarray],
                   standard_concentration_mM: float) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``lesions`` into ``fractions`` (modified in place; lesion compartments added).

    Returns (labels uint16 [k, j, i]: lesion ``label`` where its enhancing part, or for non-enhancing
    lesions its body, covers at least half the voxel; concentration map [k, j, i] of the ``lesion``
    compartment at standard dose in mM). Adds volumes (mm^3) and the labelled voxel count to each
    lesion's dict.
    """
    shape = fractions["white_matter"].shape
    for c in LESION_COMPARTMENTS:
        fractions.setdefault(c, np.zeros(shape, np.float32))
    labels = np.zeros(shape, np.uint16)
    concentration = np.zeros(shape, np.float32)
    spacing = np.asarray(geometry.spacing)
    h = float(np.prod(spacing) ** (1.0 / 3.0))
    voxel_volume = float(np.prod(spacing))
    inv = np.linalg.inv(geometry.ijk_to_lps())
    for lesion in lesions:
        rng = np.random.default_rng(lesion["shape_seed"])
        kind, radius = lesion["type"], lesion["diameter_mm"] / 2.0
        edema_extent = {"solid": rng.uniform(0.4, 1.5) if radius >= 4 else 0.0, "ring": rng.uniform(0.6, 1.8),
                        "glioblastoma": rng.uniform(0.5, 0.9), "non_enhancing": 0.0}[kind]
        reach = radius * (1 + 2 * IRREGULARITY[kind]) * (1 + edema_extent) + 2 * h
        centre = np.asarray(lesion["centre_lps_mm"])
        idx = np.array([(inv @ np.r_[centre + reach * (2 * np.array(s) - 1), 1.0])[:3] for s in np.ndindex(2, 2, 2)])
        lo = np.maximum(np.floor(idx.min(0)).astype(int), 0)
        hi = np.minimum(np.ceil(idx.max(0)).astype(int) + 1, np.asarray(geometry.size))
        if np.any(hi <= lo):
            continue
        box = (slice(lo[2], hi[2]), slice(lo[1], hi[1]), slice(lo[0], hi[0]))
        kk, jj, ii = np.meshgrid(*[np.arange(a, b) for a, b in zip(lo[::-1], hi[::-1])], indexing="ij")
        pts = np.stack([ii, jj, kk, np.ones_like(ii)], -1).astype(float) @ geometry.ijk_to_lps().T
        v = pts[..., :3] - centre
        dist = np.linalg.norm(v, axis=-1)
        u = v / np.maximum(dist, 1e-6)[..., None]
        r_u = radius * (1.0 + IRREGULARITY[kind] * np.clip(_angular_field(rng)(u), -2.5, 2.5))
        inside = lambda r: np.clip((r - dist) / h + 0.5, 0.0, 1.0)  # noqa: E731
        body = inside(r_u)
        necrosis = np.zeros_like(body)
        if kind == "ring":
            rim = min(rng.uniform(1.5, 3.5), 0.45 * radius)
            necrosis = inside(r_u - rim)
            lesion["rim_thickness_mm"] = float(rim)
        elif kind == "glioblastoma":
            rim_u = np.clip(rng.uniform(3.5, 6.0) * (1.0 + 0.5 * _angular_field(rng)(u)), 2.0, 0.6 * radius)
            necrosis = inside(r_u - rim_u)
            lesion["rim_thickness_mm"] = [float(rim_u.min()), float(rim_u.max())]
        core_enh = np.zeros_like(body) if kind == "non_enhancing" else body - necrosis
        non_enh = body if kind == "non_enhancing" else np.zeros_like(body)
        wm = fractions["white_matter"][box]
        gm = fractions["grey_matter"][box]
        edema = np.zeros_like(body)
        if edema_extent > 0:
            shell = inside(r_u * (1.0 + edema_extent * (1.0 + 0.3 * _angular_field(rng)(u)))) - body
            edema = np.clip(shell, 0, 1) * wm / np.maximum(wm + gm, 1e-6)
        available = sum(fractions[c][box] for c in BRAIN_COMPARTMENTS + LESION_COMPARTMENTS)
        new = {"lesion": core_enh, "necrosis": necrosis, "non_enhancing": non_enh, "edema": edema}
        total_new = np.clip(sum(new.values()), 0.0, 1.0)
        norm = np.where(sum(new.values()) > 1.0, 1.0 / np.maximum(sum(new.values()), 1e-6), 1.0)
        for c in BRAIN_COMPARTMENTS + LESION_COMPARTMENTS:
            fractions[c][box] *= (1.0 - total_new)
        for c, f in new.items():
            fractions[c][box] += (available * f * norm).astype(np.float32)
        # heterogeneous concentration: smooth variation, stronger in glioblastoma
        hetero = {"glioblastoma": 0.35, "ring": 0.15}.get(kind, 0.1)
        c_local = standard_concentration_mM * lesion["concentration_scale"] * np.clip(
            1.0 + hetero * _angular_field(rng)(u) * np.cos(dist / max(radius, 1.0) * np.pi * rng.uniform(0.5, 1.5)),
            0.3, 2.0)
        enh_new = available * core_enh * norm
        old_enh = fractions["lesion"][box] - enh_new
        concentration[box] = np.where(fractions["lesion"][box] > 1e-6,
                                      (concentration[box] * old_enh + c_local * enh_new)
                                      / np.maximum(fractions["lesion"][box], 1e-6), concentration[box])
        marker = non_enh if kind == "non_enhancing" else core_enh
        labels[box][available * marker * norm >= 0.5] = lesion["label"]
        lesion["enhancing_volume_mm3"] = float((available * core_enh * norm).sum() * voxel_volume)
        lesion["necrosis_volume_mm3"] = float((available * necrosis * norm).sum() * voxel_volume)
        lesion["edema_volume_mm3"] = float((available * edema * norm).sum() * voxel_volume)
        lesion["total_volume_mm3"] = float((available * body * norm).sum() * voxel_volume)
        lesion["concentration_standard_dose_mM"] = float(
            (c_local * core_enh).sum() / max(core_enh.sum(), 1e-6)) if kind != "non_enhancing" else 0.0
        lesion["edema_extent"] = float(edema_extent)
    return labels, concentration


def brain_depth_mm(brain_mask: np.ndarray, geometry: Geometry) -> np.ndarray:
    """Distance (mm) of each voxel inside ``brain_mask`` to the nearest voxel outside it.

    Computed in the mask's bounding box plus one voxel: every voxel outside that box is farther from an
    inside voxel than the box's (outside) border voxel it clamps to, so the result is exact."""
    depth = np.zeros(brain_mask.shape, np.float32)
    extents = [np.flatnonzero(np.any(brain_mask, axis=axes)) for axes in ((1, 2), (0, 2), (0, 1))]
    if extents[0].size == 0:
        return depth
    lo = [max(int(e[0]) - 1, 0) for e in extents]
    hi = [min(int(e[-1]) + 2, n) for e, n in zip(extents, brain_mask.shape)]
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    origin = geometry.ijk_to_lps() @ np.r_[lo[::-1], 1.0]
    sub = Geometry(tuple(b - a for a, b in zip(lo[::-1], hi[::-1])), geometry.spacing, tuple(origin[:3]),
                   geometry.direction)
    image = array_to_image((~brain_mask[box]).astype(np.uint8), sub)
    distance = sitk.SignedMaurerDistanceMap(image, insideIsPositive=False, squaredDistance=False,
                                            useImageSpacing=True)
    depth[box] = np.maximum(image_to_array(distance)[0], 0.0)
    return depth
