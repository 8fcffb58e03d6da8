"""Digital phantom: a synthetic head with lesions, scanned before contrast, at low doses and at standard dose.

Ground truth without patients (research software; synthetic images are no clinical evidence).
``generate_phantom(PhantomConfig(seed=1))`` returns a :class:`PhantomCase`; ``write_phantom`` writes it
as NIfTI files and a JSON sidecar with every parameter. Deterministic for a seed: each random part
(anatomy, lesions, acquisition fields, motion and noise of each scan) draws from its own stream, so
switching one part off (e.g. ``max_motion_deg=0``) leaves the others unchanged.

Frames: all images lie on the pre-contrast grid (LPS). The anatomy, the lesion labels and the brain
mask are in the pre-contrast frame (the head's position during the pre-contrast scan). Each
post-contrast scan is acquired with the head moved by a rigid motion: a point of the head at LPS
position p in the pre-contrast scan is at ``motion(p)`` during that scan. ``motion`` is exactly the
transform that a registration with fixed = pre-contrast and moving = post-contrast scan estimates:
resampling the post-contrast image with it realigns it to the pre-contrast scan.
Intensity: signal of the sequence (``physics.signal``) times a scale that makes pure white matter
1000 before contrast, times a bias field, plus Rician noise (Gaussian of sigma ``noise_sigma * g``
in the real and imaginary channels, g the g-factor map).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .. import DISCLAIMER, __version__
from ..physics.agents import DEFAULT_AGENT, STANDARD_DOSE_TISSUE_CONCENTRATION_MM, get_agent
from ..io.atomic import write_json, write_text
from ..io.imageio import LPS_TO_RAS, Geometry, array_to_image, dose_name, write_image
from ..io.memory import large_arrays
from .anatomy import COMPARTMENTS, build_head, upsample_linear
from .lesions import LESION_COMPARTMENTS, LESION_TYPES, brain_depth_mm, render_lesions, sample_lesions
from .resample import atlas_sampling_grid, move_cubic, nonzero_box, resample_maps
from .signal import compartment_signals, rician_noise
from ..physics.signal import default_sequence, tissue_signal

SIZE_PRESETS = {
    "small": {"spacing_mm": (2.0, 2.0, 2.0), "fov_mm": (192.0, 256.0, 176.0)},
    "full": {"spacing_mm": (1.0, 1.0, 1.0), "fov_mm": (256.0, 256.0, 176.0)},
}
"""Scanner grids: voxel spacing (x, y, z mm) and field of view (mm); size = round(fov / spacing)."""
WHITE_MATTER_SIGNAL = 1000.0
"""Pre-contrast signal of pure white matter (without bias field): the phantom's intensity unit."""
ATLAS_HEAD_CENTRE_LPS_MM = (0.0, 18.0, 20.0)
"""Point of the atlas head placed at the centre of the scanner grid (before the random pose)."""
STREAMS = {"anatomy": 1, "lesions": 2, "fields": 3, "motion": 4, "noise": 5}


@dataclass
class PhantomConfig:
    """Parameters of one phantom case (defaults: a small 3 T gadobutrol SPGR case for tests and demos).

    doses: low doses, fractions of the standard dose in (0, 1); field_strength in tesla; agent: any name
    of ``agents.get_agent``; sequence: "spgr" or "mprage" (``physics.default_sequence``); size: a key of
    SIZE_PRESETS; spacing_mm: voxel spacing (x, y, z) overriding the preset's (the field of view stays);
    noise_level: noise sigma relative to pure white matter before contrast; g_factor_strength: peak
    g-factor minus 1; bias_strength: peak |log| of the bias field; max_motion_deg / max_motion_mm:
    bounds of the uniform random rotation (each axis) and translation (each axis) of every post-contrast
    scan; deformation_mm: standard deviation of the random B-spline coefficients (mm); lesions: count
    per type of LESION_TYPES.
    """

    seed: int = 0
    doses: tuple[float, ...] = (0.1, 0.33)
    field_strength: float = 3.0
    agent: str = DEFAULT_AGENT
    sequence: str = "spgr"
    size: str = "small"
    spacing_mm: tuple[float, float, float] | None = None
    noise_level: float = 0.02
    g_factor_strength: float = 0.3
    bias_strength: float = 0.2
    max_motion_deg: float = 2.0
    max_motion_mm: float = 2.0
    deformation_mm: float = 3.0
    lesions: dict = field(default_factory=lambda: {"solid": 3, "ring": 2, "glioblastoma": 1, "non_enhancing": 1})

    def validated(self) -> "PhantomConfig":
        """Checks every field; ValueError naming the problem and the fix."""
        doses = tuple(float(d) for d in self.doses)
        for d in doses:
            if not 0.0 < d < 1.0:
                raise ValueError(f"low dose {d:g} is not in (0, 1): give fractions of the standard dose such as "
                                 "0.1,0.33 (the standard dose 1 is always generated)")
            if not 1 <= round(d * 100) <= 99:
                raise ValueError(f"low dose {d:g} rounds to {round(d * 100)} %; files are named by percent, so "
                                 "give doses from 0.01 to 0.99")
        names = [dose_name(d) for d in doses]
        if len(set(names)) != len(names):
            raise ValueError(f"doses {list(doses)} round to the same percent ({names}); give distinct doses")
        if self.size not in SIZE_PRESETS:
            raise ValueError(f"unknown size {self.size!r}; use one of {', '.join(SIZE_PRESETS)}")
        spacing = self.spacing_mm
        if spacing is not None:
            spacing = tuple(float(s) for s in spacing)
            if len(spacing) != 3 or not all(0.3 <= s <= 8.0 for s in spacing):
                raise ValueError(f"spacing {self.spacing_mm} must be three values in mm between 0.3 and 8, "
                                 "e.g. 1,1,1 or 1,1,3")
        get_agent(self.agent)
        default_sequence(self.field_strength, self.sequence)
        for name in ("noise_level", "g_factor_strength", "bias_strength", "max_motion_deg", "max_motion_mm",
                     "deformation_mm"):
            value = float(getattr(self, name))
            if not np.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a number >= 0, got {getattr(self, name)!r}")
        if self.max_motion_deg > 20 or self.max_motion_mm > 30:
            raise ValueError("motion bounds above 20 degrees / 30 mm are not head motion; lower max_motion_deg "
                             "or max_motion_mm")
        counts = dict(self.lesions)
        unknown = set(counts) - set(LESION_TYPES)
        if unknown or any(int(v) < 0 for v in counts.values()):
            raise ValueError(f"lesion counts {counts} invalid: use non-negative counts for {', '.join(LESION_TYPES)}")
        return PhantomConfig(int(self.seed), doses, float(self.field_strength), get_agent(self.agent).name,
                             self.sequence, self.size, spacing, float(self.noise_level), float(self.g_factor_strength),
                             float(self.bias_strength), float(self.max_motion_deg), float(self.max_motion_mm),
                             float(self.deformation_mm), {k: int(v) for k, v in counts.items()})


@dataclass
class PhantomCase:
    """Images of one case on the pre-contrast grid and the sidecar ``parameters`` (JSON-serialisable).

    Scans are float32 magnitudes; masks and labels uint8/uint16; g_factor (>= 1) and bias_field
    (multiplicative) are the acquisition fields; true_contrast_signal is the noise-free standard-dose
    contrast signal in the pre-contrast frame (with the bias field).
    """

    pre_contrast: sitk.Image
    low_dose: dict[float, sitk.Image]
    standard_dose: sitk.Image
    lesion_labels: sitk.Image
    brain_mask: sitk.Image
    head_mask: sitk.Image
    g_factor: sitk.Image
    bias_field: sitk.Image
    true_contrast_signal: sitk.Image
    parameters: dict


def scanner_grid(config: PhantomConfig) -> Geometry:
    """The pre-contrast grid: LPS axes, centred near the magnet's isocentre (non-zero origin)."""
    preset = SIZE_PRESETS[config.size]
    spacing = np.asarray(config.spacing_mm or preset["spacing_mm"], float)
    size = np.maximum(np.round(np.asarray(preset["fov_mm"]) / spacing).astype(int), 8)
    centre = np.array([1.5, -12.0, 8.0])  # table position: head centre slightly off the isocentre
    origin = centre - (size - 1) * spacing / 2.0
    return Geometry(tuple(int(s) for s in size), tuple(float(s) for s in spacing), tuple(float(o) for o in origin),
                    tuple(float(v) for v in np.eye(3).ravel()))


def _rng(config: PhantomConfig, stream: str, *keys: int) -> np.random.Generator:
    return np.random.default_rng([config.seed, STREAMS[stream], *keys])


def _anatomy_transform(rng: np.random.Generator, grid: Geometry, atlas_reference: sitk.Image,
                       deformation_mm: float) -> tuple[sitk.Transform, dict]:
    """Transform mapping scanner points (pre-contrast frame) to atlas points: pose, head size, deformation."""
    centre = np.asarray(grid.ijk_to_lps() @ np.r_[(np.asarray(grid.size) - 1) / 2.0, 1.0])[:3]
    angles = np.deg2rad([rng.uniform(-8, 8), rng.uniform(-3, 3), rng.uniform(-3, 3)])  # pitch, roll, yaw
    scale = rng.uniform(0.86, 0.96) * (1.0 + rng.uniform(-0.03, 0.03, 3))  # MNI152 heads are large
    shift = rng.uniform(-4, 4, 3)
    rotation = sitk.Euler3DTransform((0, 0, 0), *angles)
    matrix = np.diag(1.0 / scale) @ np.asarray(rotation.GetMatrix()).reshape(3, 3)
    affine = sitk.AffineTransform(3)
    affine.SetCenter(tuple(centre))
    affine.SetMatrix(tuple(matrix.ravel()))
    affine.SetTranslation(tuple(np.asarray(ATLAS_HEAD_CENTRE_LPS_MM) + shift - centre))
    bspline = sitk.BSplineTransformInitializer(atlas_reference, [5, 5, 5], 3)
    coefficients = rng.standard_normal(len(bspline.GetParameters())) * deformation_mm
    bspline.SetParameters(tuple(coefficients))
    transform = sitk.CompositeTransform([bspline, affine])  # applied right to left: affine, then bspline
    parameters = {"head_rotation_deg": np.rad2deg(angles).tolist(), "head_scale": scale.tolist(),
                  "head_shift_mm": shift.tolist(), "deformation_bspline_mesh": [5, 5, 5],
                  "deformation_coefficient_sd_mm": deformation_mm,
                  "convention": "scanner LPS point -> affine (rotation, 1/scale) -> B-spline -> MNI atlas LPS point"}
    return transform, parameters


def supersampling(grid: Geometry) -> tuple[int, int, int]:
    """Sub-samples per voxel along i, j, k: round(spacing / smallest spacing) where that is >= 1.5, else 1."""
    ratio = np.asarray(grid.spacing) / min(grid.spacing)
    return tuple(int(round(r)) if r >= 1.5 else 1 for r in ratio)


def _fine_grid(grid: Geometry, factors: tuple[int, int, int]) -> Geometry:
    """``grid`` with each voxel split into ``factors`` sub-voxels (same field of view and centre)."""
    f = np.asarray(factors, float)
    spacing = np.asarray(grid.spacing) / f
    origin = np.asarray(grid.origin) + grid.direction_matrix @ (-(f - 1) / 2.0 * spacing)
    return Geometry(tuple(int(n * k) for n, k in zip(grid.size, factors)), tuple(float(s) for s in spacing),
                    tuple(float(o) for o in origin), grid.direction)


def _block_mean(array: np.ndarray, factors: tuple[int, int, int]) -> np.ndarray:
    """Mean over blocks of ``factors`` (i, j, k) voxels of an array [k, j, i]."""
    if factors == (1, 1, 1):
        return array
    fi, fj, fk = factors
    k, j, i = (n // f for n, f in zip(array.shape, (fk, fj, fi)))
    return array.reshape(k, fk, j, fj, i, fi).mean(axis=(1, 3, 5), dtype=np.float32)


def _block_labels(labels: np.ndarray, factors: tuple[int, int, int], values: list[int]) -> np.ndarray:
    """Label of each block: a value that covers at least half of its sub-voxels (else 0)."""
    out = np.zeros(_block_mean(labels == 0, factors).shape, labels.dtype)
    for value in values:
        out[_block_mean(labels == value, factors) >= 0.5] = value
    return out


def _smooth_fields(rng: np.random.Generator, grid: Geometry,
                   config: PhantomConfig) -> tuple[np.ndarray, np.ndarray, dict]:
    """Bias field (multiplicative, exp of a random quadratic) and g-factor map (>= 1), [k, j, i] float32."""
    m = grid.ijk_to_lps()
    step = 4  # smooth fields: evaluated every 4 voxels, interpolated linearly
    k, j, i = np.meshgrid(*[np.arange(int(np.ceil((n - 1) / step)) + 2) * step for n in grid.size[::-1]],
                          indexing="ij", sparse=True)
    xyz = [m[a, 0] * i + m[a, 1] * j + m[a, 2] * k + m[a, 3] for a in range(3)]
    centre = m @ np.r_[(np.asarray(grid.size) - 1) / 2.0, 1.0]
    u = [(xyz[a] - centre[a]) / 100.0 for a in range(3)]
    terms = [u[0], u[1], u[2], u[0] ** 2, u[1] ** 2, u[2] ** 2, u[0] * u[1], u[0] * u[2], u[1] * u[2]]
    coefficients = rng.standard_normal(len(terms))
    log_bias = upsample_linear(sum(c * t for c, t in zip(coefficients, terms)) + np.zeros(xyz[0].shape[:1]
                               + xyz[1].shape[1:2] + xyz[2].shape[2:]), float(step), tuple(grid.size[::-1]))
    log_bias -= log_bias.mean()
    peak = np.abs(log_bias).max()
    log_bias *= config.bias_strength / peak if peak > 0 else 0.0
    g_centre = centre[:3] + rng.uniform(-15, 15, 3)
    widths = rng.uniform(45, 70, 3)
    g = 1.0 + config.g_factor_strength * upsample_linear(
        np.exp(-0.5 * sum(((xyz[a] - g_centre[a]) / widths[a]) ** 2 for a in range(3))), float(step),
        tuple(grid.size[::-1]))
    parameters = {
        "bias_field": {"model": "exp(sum c_n * monomial_n(u)), u = (x - grid centre)/100 mm, monomials up to "
                                "degree 2, mean-free and scaled to a peak |log| of bias_strength; multiplies the "
                                "noise-free signal of every scan (fixed to the scanner, not the head)",
                       "bias_strength": config.bias_strength, "coefficients": coefficients.tolist()},
        "g_factor": {"model": "1 + strength * exp(-0.5 * sum(((x - centre)/width)^2)); scales the noise sigma "
                              "of every scan (fixed to the scanner)",
                     "strength": config.g_factor_strength, "centre_lps_mm": g_centre.tolist(),
                     "width_mm": widths.tolist(), "max": float(g.max()), "min": float(g.min())},
    }
    return np.exp(log_bias).astype(np.float32), g.astype(np.float32), parameters


def _motion(rng: np.random.Generator, config: PhantomConfig, centre: np.ndarray,
            brain_points: np.ndarray) -> tuple[sitk.Euler3DTransform, dict]:
    """Random rigid motion (pre-contrast frame -> post-contrast frame) and its sidecar entry."""
    angles = np.deg2rad(rng.uniform(-1, 1, 3) * config.max_motion_deg)
    translation = rng.uniform(-1, 1, 3) * config.max_motion_mm
    transform = sitk.Euler3DTransform(tuple(centre), *angles, tuple(translation))
    matrix = np.eye(4)
    matrix[:3, :3] = np.asarray(transform.GetMatrix()).reshape(3, 3)
    matrix[:3, 3] = np.asarray(transform.GetTranslation()) + centre - matrix[:3, :3] @ centre
    moved = brain_points @ matrix[:3, :3].T + matrix[:3, 3]
    displacement = np.linalg.norm(moved - brain_points, axis=1)
    entry = {
        "convention": "maps the LPS position (mm) of a point of the head in the pre-contrast scan to its LPS "
                      "position in this scan; equals the transform a registration with fixed=pre_contrast, "
                      "moving=this scan finds (resample this scan with it to realign it)",
        "pre_to_post_lps": matrix.tolist(),
        "post_to_pre_lps": np.linalg.inv(matrix).tolist(),
        "pre_to_post_ras": (_lps_to_ras4() @ matrix @ _lps_to_ras4()).tolist(),
        "rotation_deg": np.rad2deg(angles).tolist(),
        "translation_mm": translation.tolist(),
        "center_of_rotation_lps_mm": centre.tolist(),
        "elastix": {"Transform": "EulerTransform", "NumberOfParameters": 6,
                    "TransformParameters": [*angles.tolist(), *translation.tolist()],
                    "CenterOfRotationPoint": centre.tolist(), "ComputeZYX": "false",
                    "note": "itk::Euler3DTransform: x -> R (x - c) + c + t, R = Rz Rx Ry, angles in radians"},
        "brain_displacement_mm": {"mean": float(displacement.mean()), "max": float(displacement.max())},
    }
    return transform, entry


def _lps_to_ras4() -> np.ndarray:
    m = np.eye(4)
    m[:3, :3] = LPS_TO_RAS
    return m


def generate_phantom(config: PhantomConfig | None = None) -> PhantomCase:
    """One synthetic case: pre-contrast, each low dose, standard dose, labels, masks and the sidecar.

    Deterministic for ``config.seed`` (also across torch thread counts). On 2 shared cores
    (benchmarks/bench_phantom.py): small preset about 1 s, full preset with three low doses 9-12 s,
    peak memory about 4 GB. Freed large arrays are reused meanwhile (``memory.large_arrays``).
    """
    config = (config or PhantomConfig()).validated()
    with large_arrays():
        return _generate(config)


def _generate(config: PhantomConfig) -> PhantomCase:
    """``generate_phantom`` for a validated config."""
    grid = scanner_grid(config)
    factors = supersampling(grid)
    fine = _fine_grid(grid, factors)  # the object is sampled here, then averaged into thick voxels
    agent = get_agent(config.agent)
    sequence = default_sequence(config.field_strength, config.sequence)
    anatomy_spacing = float(np.clip(min(grid.spacing), 1.0, 2.0))
    head = build_head(_rng(config, "anatomy"), anatomy_spacing)
    atlas_reference = array_to_image(np.zeros(head.geometry.size[::-1], np.float32), head.geometry)
    transform, anatomy_parameters = _anatomy_transform(_rng(config, "anatomy", 1), fine, atlas_reference,
                                                       config.deformation_mm)
    sampled = resample_maps(head.maps, atlas_sampling_grid(transform, fine, head.geometry))
    fractions = {c: np.clip(a, 0.0, 1.0, out=a) for c, a in zip(COMPARTMENTS, sampled)}
    brain = sampled[-1] >= 0.5
    del sampled
    head_mask = sum(fractions.values()) >= 0.5
    depth = brain_depth_mm(brain, fine)
    parenchyma = fractions["white_matter"] + fractions["grey_matter"]
    lesions = sample_lesions(_rng(config, "lesions"), fine, parenchyma, depth, config.lesions)
    labels, lesion_concentration = render_lesions(lesions, fine, fractions,
                                                  STANDARD_DOSE_TISSUE_CONCENTRATION_MM["lesion"])
    bias, g_factor, field_parameters = _smooth_fields(_rng(config, "fields"), grid, config)
    scale = WHITE_MATTER_SIGNAL / float(tissue_signal("white_matter", config.field_strength, agent, 0.0, sequence))
    noise_sigma = config.noise_level * WHITE_MATTER_SIGNAL
    sigma_map = np.float32(noise_sigma) * g_factor
    m = fine.ijk_to_lps()
    brain_ijk = np.argwhere(brain)[::7, ::-1]
    brain_points = brain_ijk @ m[:3, :3].T + m[:3, 3]
    motion_centre = np.round(brain_points.mean(axis=0), 3)

    sparse = {c: nonzero_box(fractions[c]) for c in (*LESION_COMPARTMENTS, "choroid_plexus")}
    scans, images, still = {}, {}, {}
    for dose in (0.0, *sorted(config.doses), 1.0):
        name = "pre_contrast" if dose == 0.0 else "standard_dose" if dose == 1.0 else dose_name(dose)
        key = int(round(dose * 10000))
        clean = compartment_signals(fractions, lesion_concentration, dose, config, sequence, scale, sparse)
        if dose in (0.0, 1.0):
            still[dose] = _block_mean(clean, factors)  # noise-free, pre-contrast frame
        entry = {"file": f"{name}.nii.gz", "dose": dose, "noise_sigma": noise_sigma,
                 "frame": "pre-contrast frame (no motion)" if dose == 0.0 else "head moved by 'motion'"}
        if dose > 0.0:
            motion, entry["motion"] = _motion(_rng(config, "motion", key), config, motion_centre, brain_points)
            clean = np.maximum(move_cubic(clean, fine, np.asarray(entry["motion"]["post_to_pre_lps"])), 0.0)
        clean = _block_mean(clean, factors)
        noisy = rician_noise(_rng(config, "noise", key), clean * bias, sigma_map)
        images[dose] = array_to_image(noisy, grid)
        scans[name] = entry

    if factors != (1, 1, 1):
        brain, head_mask = _block_mean(brain, factors) >= 0.5, _block_mean(head_mask, factors) >= 0.5
        labels = _block_labels(labels, factors, [lesion["label"] for lesion in lesions])
    for lesion in lesions:
        lesion["labelled_voxels"] = int((labels == lesion["label"]).sum())
        lesion["labelled_volume_mm3"] = lesion["labelled_voxels"] * float(np.prod(grid.spacing))
    parameters = _sidecar(config, grid, factors, agent, sequence, scale, noise_sigma, scans, lesions,
                          anatomy_parameters, head.parameters, field_parameters, brain)
    mask_image = lambda a: array_to_image(a.astype(np.uint8), grid)  # noqa: E731
    return PhantomCase(
        pre_contrast=images[0.0], low_dose={d: images[d] for d in sorted(config.doses)},
        standard_dose=images[1.0], lesion_labels=array_to_image(labels, grid), brain_mask=mask_image(brain),
        head_mask=mask_image(head_mask), g_factor=array_to_image(g_factor, grid),
        bias_field=array_to_image(bias, grid),
        true_contrast_signal=array_to_image((still[1.0] - still[0.0]) * bias, grid), parameters=parameters)


def _sidecar(config, grid, factors, agent, sequence, scale, noise_sigma, scans, lesions, anatomy_parameters,
             head_parameters, field_parameters, brain) -> dict:
    """The JSON sidecar: every parameter of the case (see the module docstring for the conventions)."""
    m = grid.ijk_to_lps()
    for lesion in lesions:
        lesion["centre_ras_mm"] = (LPS_TO_RAS @ np.asarray(lesion["centre_lps_mm"])).tolist()
        lesion["centre_ijk"] = (np.linalg.inv(m) @ np.r_[lesion["centre_lps_mm"], 1.0])[:3].tolist()
    voxel_volume = float(np.prod(grid.spacing))
    return {
        "generator": f"GadoReduce {__version__} digital phantom (GadoReduceLib.phantom)",
        "disclaimer": "Synthetic images for testing and training; not patient data and no clinical evidence. "
                      + DISCLAIMER,
        "seed": config.seed,
        "config": asdict(config),
        "grid": {"size_ijk": list(grid.size), "spacing_mm": list(grid.spacing), "origin_lps_mm": list(grid.origin),
                 "direction_lps": list(grid.direction), "orientation": grid.orientation()},
        "frames": "All images lie on the pre-contrast grid. Anatomy, lesion_labels, brain_mask and head_mask are "
                  "in the pre-contrast frame; each post-contrast scan shows the head moved by its 'motion'. "
                  "Voxels average the object over their extent (box slice profile) along axes whose spacing is "
                  "at least 1.5 times the smallest, with 'supersampling' sub-samples per voxel (i, j, k).",
        "supersampling": list(factors),
        "field_strength_t": config.field_strength,
        "agent": {"name": agent.name, "relaxivity_l_per_mmol_s": agent.relaxivity(config.field_strength),
                  "standard_dose_mmol_per_kg": agent.standard_dose_mmol_per_kg,
                  "concentration_mmol_per_ml": agent.concentration_mmol_per_ml},
        "sequence": asdict(sequence),
        "doses": sorted(config.doses),
        "intensity": {"signal_scale": scale, "white_matter_pre_contrast_signal": WHITE_MATTER_SIGNAL,
                      "model": "scale * sum over compartments of fraction * physics.tissue_signal(tissue, "
                               "concentration_at_dose(C_standard, dose)), times bias_field, plus Rician noise"},
        "noise": {"noise_sigma": noise_sigma, "noise_level": config.noise_level,
                  "definition": "standard deviation of the Gaussian noise in each of the real and imaginary "
                                "channels where the g-factor is 1; the local sigma is noise_sigma * g_factor; "
                                "images are magnitudes (Rician); the bias field does not scale the noise",
                  **field_parameters},
        "tissue_concentrations_standard_dose_mM": dict(STANDARD_DOSE_TISSUE_CONCENTRATION_MM),
        "scans": scans,
        "lesions": lesions,
        "true_contrast_signal": {"meaning": "noise-free standard dose minus noise-free pre-contrast scan, both "
                                            "in the pre-contrast frame (no motion), times the bias field: the "
                                            "contrast signal a perfect method would recover at standard dose"},
        "lesion_labels": {"meaning": "one integer per lesion ('label' in 'lesions'); voxels where the lesion's "
                                     "enhancing tissue (rim for ring and glioblastoma-like lesions; the whole "
                                     "body for non-enhancing lesions) covers at least half the voxel; "
                                     "pre-contrast frame", "count": len(lesions)},
        "brain_mask": {"meaning": "brain with ventricles and sulcal CSF (closed brain hull), pre-contrast frame; "
                                  "excludes the subarachnoid CSF band over the hull, dura, sinuses, skull, scalp",
                       "volume_ml": float(brain.sum() * voxel_volume / 1000.0)},
        "anatomy": {**anatomy_parameters, **head_parameters,
                    "template": "MNI ICBM152 2009a symmetric (GM, WM, T1), see Resources/Atlas/README.md"},
    }


def write_phantom(case: PhantomCase, folder) -> dict[str, Path]:
    """Write the case as NIfTI files, ``phantom.json`` and, per post-contrast scan, its true motion as an
    elastix transform file ``motion_<scan>.txt`` into ``folder``; returns name -> path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    images = {"pre_contrast": case.pre_contrast, "standard_dose": case.standard_dose,
              **{dose_name(d): img for d, img in case.low_dose.items()},
              "lesion_labels": case.lesion_labels, "brain_mask": case.brain_mask, "head_mask": case.head_mask,
              "g_factor": case.g_factor, "bias_field": case.bias_field,
              "true_contrast_signal": case.true_contrast_signal}
    paths = {name: write_image(image, folder / f"{name}.nii.gz") for name, image in images.items()}
    for scan, entry in case.parameters["scans"].items():
        if "motion" in entry:
            path = folder / f"motion_{scan}.txt"
            write_text(path, elastix_transform_text(case.parameters, scan))
            paths[f"motion_{scan}"] = path
    sidecar = folder / "phantom.json"
    write_json(sidecar, case.parameters, indent=1)
    paths["phantom.json"] = sidecar
    return paths


def elastix_transform_text(parameters: dict, scan: str) -> str:
    """elastix TransformParameters file of a post-contrast scan's true motion (fixed = pre_contrast grid).

    With transformix (``-tp FILE -in SCAN``) it realigns the scan to the pre-contrast scan, as a
    registration result would. ``parameters`` is a case's sidecar, ``scan`` e.g. "standard_dose".
    """
    motion = parameters["scans"][scan]["motion"]["elastix"]
    grid = parameters["grid"]
    direction = np.asarray(grid["direction_lps"]).reshape(3, 3).T.ravel()  # elastix lists it column by column
    fmt = lambda values: " ".join(f"{float(v):.10g}" for v in values)  # noqa: E731
    lines = [
        '(Transform "EulerTransform")', "(NumberOfParameters 6)",
        f"(TransformParameters {fmt(motion['TransformParameters'])})",
        '(InitialTransformParametersFileName "NoInitialTransform")', '(HowToCombineTransforms "Compose")',
        "(FixedImageDimension 3)", "(MovingImageDimension 3)",
        '(FixedInternalImagePixelType "float")', '(MovingInternalImagePixelType "float")',
        f"(Size {' '.join(str(int(n)) for n in grid['size_ijk'])})", "(Index 0 0 0)",
        f"(Spacing {fmt(grid['spacing_mm'])})", f"(Origin {fmt(grid['origin_lps_mm'])})",
        f"(Direction {fmt(direction)})", '(UseDirectionCosines "true")',
        f"(CenterOfRotationPoint {fmt(motion['CenterOfRotationPoint'])})", f'(ComputeZYX "{motion["ComputeZYX"]}")',
        '(ResampleInterpolator "FinalBSplineInterpolator")', "(FinalBSplineInterpolationOrder 3)",
        '(Resampler "DefaultResampler")', "(DefaultPixelValue 0)", '(ResultImageFormat "nii.gz")',
        '(ResultImagePixelType "float")', '(CompressResultImage "true")',
    ]
    return "\n".join(lines) + "\n"


def preview_phantom(case: PhantomCase, path) -> Path:
    """PNG montage: pre-contrast, each low dose, standard dose (one shared window) and lesion labels."""
    from ..io.preview import montage
    images = [case.pre_contrast, *case.low_dose.values(), case.standard_dose]
    titles = ["pre-contrast", *[f"low dose {d * 100:g}%" for d in case.low_dose], "standard dose"]
    arrays = [sitk.GetArrayFromImage(image) for image in images]
    labels = sitk.GetArrayFromImage(case.lesion_labels)
    return montage(arrays, titles, path, label_overlay=labels, spacing=case.pre_contrast.GetSpacing(),
                   shared_window=True,
                   footer=f"synthetic phantom, seed {case.parameters['seed']}, {case.parameters['agent']['name']}, "
                          f"{case.parameters['field_strength_t']:g} T; not patient data")
