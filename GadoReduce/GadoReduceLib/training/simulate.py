"""Low doses made on the fly (issue 13): every training sample draws its own dose, field strength, agent and
simulator parameters and synthesizes its low dose from a registered pre-contrast / standard-dose pair.

A :class:`PairCase` is preprocessed once (registration, brain mask, normalization, the standard dose's local
noise statistics; cached like every training case). :func:`simulate_sample` then, per sample:

1. draws a :class:`SimulatorDraw` (``draw_parameters``; ranges in :data:`SIMULATOR_RANGES`): dose 5-50 % of
   the standard dose (70 % of the draws in the 10-33 % users scan with), field strength 1.5-3 T, one of the agents, sequence (SPGR or MPRAGE) with TR / echo
   spacing, flip angle and TI, native white-matter T1 spread, noise level relative to the standard-dose
   subtraction and its smooth spatial variation, a smooth bias field and a residual translation up to 1 mm;
2. cuts a window of the patch plus ``margin`` voxels (the Gaussian local statistics see about 2 kernel
   sigmas around the patch) and synthesizes the low dose there through the signal model: the relaxation
   change measured from the pair is scaled by the dose (R1_low = R1_pre + d dR1, ``physics.signal``) where
   the standard dose enhances (more than 2 noise sigmas), and the first-order equivalent pre + d (SD - pre)
   elsewhere; then shift, bias field and fresh Gaussian noise so that the low-dose subtraction has
   ``noise_factor`` times the standard-dose subtraction's noise sigma;
3. preprocesses the window the way ``preprocessing.preprocess`` does a real scan: noise sigma from the
   negative subtraction values, Gaussian local mean and std (``preprocessing.noise.local_statistics``), the
   normalized subtraction z_LD (eq. 1);
4. returns the patch's network inputs (z_LD, x_LD, s_LD), the target y and its masks, and the conditions.

Target units. y = p_SD (z~_SD - m_SD) sigma_LD / s_LD: the standard-dose contrast signal in the units in which
inference maps the network output back (y~ = gamma s_LD y^ / sigma_LD with gamma = 1). The paper normalizes
by s_SD and recovers the scale with gamma = mean <b, s_SD> / <b, s_LD>; with a low-dose noise level drawn per
sample that ratio varies, so here the per-sample ratio enters the target and gamma is 1.
Synthetic low doses for training and testing, not clinical evidence.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..io.cases import load_case_npz, save_case_npz
from ..physics.agents import AGENTS, get_agent, native_t1
from ..physics.lowdose import white_matter_level
from ..physics.signal import Sequence, r1_from_signal_ratio, signal
from ..preprocessing.noise import local_statistics
from ..preprocessing.noise_estimate import estimate_noise_sigma
from .patches import INPUT_CHANNELS, TARGET_CHANNELS, check_patch, patch_centre

SIMULATOR_RANGES = {
    "dose": (0.05, 0.5),                 # fraction of the standard dose, all draws within
    "dose_core": (0.1, 0.33),            # the doses users scan with: this share of draws is uniform here,
    "dose_core_probability": 0.7,        # the rest uniform over "dose"
    "field_strength_t": (1.5, 3.0),      # uniform in tesla (the agents' tables interpolate)
    "mprage_probability": 0.5,
    "spgr_tr_s": (0.005, 0.012), "spgr_flip_deg": (8.0, 20.0),
    "mprage_echo_spacing_s": (0.006, 0.010), "mprage_flip_deg": (7.0, 12.0), "mprage_ti_s": (0.8, 1.1),
    "t1_scale": (0.85, 1.15),            # native white-matter T1 relative to the tabulated value
    "noise_factor": (0.8, 1.4),          # low-dose subtraction noise / standard-dose subtraction noise
    "noise_variation": (0.0, 0.3),       # peak relative change of the noise sigma over the head (smooth)
    "bias_amplitude": (0.0, 0.03),       # peak relative bias field of the low-dose scan (smooth)
    "shift_mm": 1.0,                     # residual misregistration: translation in a ball of this radius
}
"""Ranges of the training simulator's random parameters (one place)."""
ENHANCING_SIGMAS = 2.0
"""Voxels whose standard-dose subtraction exceeds this many noise sigmas go through the signal model."""
MARGIN_MM = 32.0
"""Window margin around a patch (mm) for the Gaussian local statistics (2 of their 16-mm kernel sigmas)."""
T1_CLIP_S = (0.25, 5.0)
STATISTICS_SHRINK = 4
"""Block size of the local statistics in the sampler (``noise.local_statistics(shrink=...)``)."""


@dataclass
class PairCase:
    """A registered pre-contrast / standard-dose pair on the working grid (arrays [k, j, i]).

    pre: normalized pre-contrast x_PC; standard_dose: registered, radiometrically normalized x_SD; b: brain mask;
    coverage: standard dose's field of view; signal_sd: p_SD (z~_SD - m_SD), the contrast signal in image units;
    p: contrast mask p_SD; sigma_sd: noise sigma of z~_SD; wm_level: white-matter level of x_PC; field_strength
    (T) and agent of the standard-dose acquisition; lesions: labels or None; sequences: {"flair"/"t2": registered,
    normalized sequence} (``preprocessing.sequences``), the inputs of a model with extra sequences."""

    case_id: str
    pre: np.ndarray
    standard_dose: np.ndarray
    b: np.ndarray
    coverage: np.ndarray
    signal_sd: np.ndarray
    p: np.ndarray
    sigma_sd: float
    wm_level: float
    field_strength: float
    agent: str
    lesions: np.ndarray | None = None
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    metadata: dict = field(default_factory=dict)
    sequences: dict = field(default_factory=dict)

    ARRAYS = ("pre", "standard_dose", "b", "coverage", "signal_sd", "p")
    scale_ratio = 1.0  # target in s_LD units: gamma = 1 (module docstring)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.pre.shape)

    def save(self, path: Path) -> Path:
        """Atomic npz write (``io.cases.save_case_npz``)."""
        scalars = {k: getattr(self, k) for k in ("case_id", "sigma_sd", "wm_level", "field_strength", "agent",
                                                   "metadata")}
        arrays = {name: getattr(self, name) for name in self.ARRAYS}
        arrays.update({f"sequence_{key}": array for key, array in self.sequences.items()})
        return save_case_npz(path, arrays, self.lesions, {**scalars, "spacing": list(self.spacing)})

    @classmethod
    def load(cls, path: Path) -> "PairCase":
        from ..io.cases import SEQUENCES
        arrays, lesions, meta = load_case_npz(path, cls.ARRAYS, optional=[f"sequence_{k}" for k in SEQUENCES])
        spacing = tuple(meta.pop("spacing"))
        sequences = {k: arrays.pop(f"sequence_{k}") for k in SEQUENCES if f"sequence_{k}" in arrays}
        return cls(**meta, **arrays, lesions=lesions, spacing=spacing, sequences=sequences)


def pair_from_preprocessing(case_id: str, result, field_strength: float, agent: str, lesions=None,
                            metadata: dict | None = None) -> PairCase:
    """PairCase from ``preprocess(pre, standard_dose_as_low_dose)`` (the standard dose in the low-dose slot)."""
    from ..io.regrid import to_grid
    from ..preprocessing.noise import contrast_signal
    sd = result.low_dose
    view = lambda image: sitk.GetArrayFromImage(image).astype(np.float32)  # noqa: E731
    pre, b = view(result.pre_contrast), (sitk.GetArrayFromImage(result.brain_mask) > 0).astype(np.uint8)
    _, p = contrast_signal(sd.normalized_subtraction, sd.noise_sigma)
    p = view(p)
    signal_sd = p * (view(sd.subtraction) - view(sd.local_mean)) * view(sd.coverage)
    labels = None
    if lesions is not None:
        labels = sitk.GetArrayFromImage(to_grid(lesions, result.pre_contrast, sitk.sitkNearestNeighbor,
                                                sitk.sitkUInt16))
    return PairCase(case_id, pre, view(sd.registered), b, sitk.GetArrayFromImage(sd.coverage).astype(np.uint8),
                    signal_sd.astype(np.float32), p, float(sd.noise_sigma), white_matter_level(pre, b),
                    float(field_strength), get_agent(agent).name, labels,
                    tuple(float(s) for s in result.pre_contrast.GetSpacing()), metadata or {},
                    {key: view(image) for key, image in result.sequences.items()})


def pair_from_case(case_id: str, case, backend: str = "auto", metadata: dict | None = None,
                   sequences=()) -> PairCase:
    """Preprocess a loaded ``io.cases.Case`` (pre-contrast and standard dose; the optional ``sequences`` of the case
    registered too, ValueError when one is missing) into a PairCase."""
    from ..io.cases import SEQUENCES
    from ..preprocessing.preprocess import preprocess
    if case.standard_dose is None:
        raise ValueError(f"case {case_id} has no standard-dose image; on-the-fly training needs one")
    missing = [SEQUENCES[k] for k in sequences if k not in case.sequences]
    if missing:
        raise ValueError(f"case {case_id} has no {' or '.join(missing)} image, which a model with --sequences "
                         f"{','.join(sequences)} needs; add it or leave the case out")
    result = preprocess(case.pre_contrast, case.standard_dose, None, backend=backend, brain=case.brain_mask,
                        warn=False, sequences={k: case.sequences[k] for k in sequences})
    return pair_from_preprocessing(case_id, result, case.field_strength, case.agent, case.lesions, metadata)


# ----------------------------------------------------------------------------- parameters

@dataclass(frozen=True)
class SimulatorDraw:
    """One draw of the training simulator's parameters (see :data:`SIMULATOR_RANGES`); shift_mm (k, j, i)."""

    dose: float
    field_strength: float
    agent: str
    sequence: Sequence
    t1_scale: float = 1.0
    noise_factor: float = 1.0
    noise_variation: float = 0.0
    bias_amplitude: float = 0.0
    shift_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    pattern_seed: int = 0

    @property
    def relaxivity(self) -> float:
        return float(get_agent(self.agent).relaxivity(self.field_strength))

    def to_dict(self) -> dict:
        return {**asdict(self), "sequence": asdict(self.sequence)}


def draw_parameters(rng: np.random.Generator, ranges: dict = SIMULATOR_RANGES) -> SimulatorDraw:
    """A random :class:`SimulatorDraw` within ``ranges``."""
    u = lambda key: float(rng.uniform(*ranges[key]))  # noqa: E731
    dose = u("dose_core") if rng.random() < ranges["dose_core_probability"] else u("dose")
    field_t = u("field_strength_t")
    if rng.random() < ranges["mprage_probability"]:
        for _ in range(100):  # a few MPRAGE timings have a signal that is not monotone in R1: drawn again
            sequence = Sequence("mprage", u("mprage_echo_spacing_s"), 0.003, u("mprage_flip_deg"),
                                ti_s=u("mprage_ti_s"), shot_tr_s=2.3, n_readouts=160)
            try:
                r1_from_signal_ratio(1.0, 1.0, sequence)
                break
            except ValueError:
                continue
    else:
        sequence = Sequence("spgr", u("spgr_tr_s"), 0.003, u("spgr_flip_deg"))
    direction = rng.standard_normal(3)
    direction /= max(np.linalg.norm(direction), 1e-12)
    shift = direction * ranges["shift_mm"] * float(rng.random()) ** (1 / 3)  # uniform in the ball
    return SimulatorDraw(dose, field_t, str(rng.choice(sorted(AGENTS))), sequence, u("t1_scale"), u("noise_factor"),
                         u("noise_variation"), u("bias_amplitude"), tuple(float(s) for s in shift),
                         int(rng.integers(0, 2**31)))


def fixed_draw(dose: float, field_strength: float = 3.0, agent: str = "gadobutrol",
               sequence: Sequence | None = None) -> SimulatorDraw:
    """A draw without randomization: nominal T1, noise equal to the standard dose's, no bias, no shift."""
    from ..physics.signal import default_sequence
    return SimulatorDraw(float(dose), float(field_strength), get_agent(agent).name,
                         sequence or default_sequence(field_strength))


# ----------------------------------------------------------------------------- the low dose in a window

def _smooth_field(shape_total, window, amplitude: float, seed: int) -> np.ndarray:
    """1 + amplitude * (a smooth random pattern in [-1, 1]) over ``window`` (slices) of a volume of
    ``shape_total``: a product of one low-frequency cosine per axis of the whole volume (windows agree)."""
    size = tuple(s.stop - s.start for s in window)
    if amplitude == 0:
        return np.ones(size, np.float32)
    rng = np.random.default_rng([seed, 17])
    factors = [np.cos(rng.uniform(0.5, 1.5) * np.pi * np.arange(s.start, s.stop, dtype=np.float32) / n
                      + rng.uniform(0, 2 * np.pi)).astype(np.float32) for s, n in zip(window, shape_total)]
    pattern = factors[0][:, None, None] * factors[1][None, :, None] * factors[2][None, None, :]
    return 1.0 + np.float32(amplitude) * pattern


def subvoxel_shift(array: np.ndarray, voxels) -> np.ndarray:
    """``array`` translated by ``voxels`` (k, j, i; any real values) with trilinear interpolation, edge values
    repeated: out[x] = in[x - voxels], one separable linear interpolation per axis."""
    out = array
    for axis, v in enumerate(voxels):
        if v == 0:
            continue
        n = out.shape[axis]
        base = int(np.floor(v))
        f = np.float32(v - base)
        index = np.arange(n) - base
        a = np.take(out, np.clip(index, 0, n - 1), axis=axis)
        b = np.take(out, np.clip(index - 1, 0, n - 1), axis=axis)
        out = (1 - f) * a + f * b
    return out


def low_dose_window(case: PairCase, window, draw: SimulatorDraw, rng: np.random.Generator) -> np.ndarray:
    """The synthetic low dose x_LD (float32, normalized units) over ``window`` (3 slices) of ``case``."""
    window = _bounded(window, case.shape)
    pre = case.pre[window].astype(np.float32)
    sd = case.standard_dose[window].astype(np.float32)
    delta = sd - pre
    low = pre + draw.dose * delta
    sigma = case.sigma_sd
    enh = (delta > ENHANCING_SIGMAS * sigma) & (pre > 3 * sigma) & (sd > 0)
    if enh.any():
        t1_wm = native_t1("white_matter", draw.field_strength) * draw.t1_scale
        r1_pre = r1_from_signal_ratio(pre[enh] / case.wm_level, 1.0 / t1_wm, draw.sequence)
        r1_pre = np.clip(r1_pre, 1.0 / T1_CLIP_S[1], 1.0 / T1_CLIP_S[0])
        r1_post = r1_from_signal_ratio(sd[enh] / pre[enh], r1_pre, draw.sequence)
        r1_low = r1_pre + draw.dose * (r1_post - r1_pre)
        low[enh] = pre[enh] * signal(1.0, r1_low, draw.sequence) / signal(1.0, r1_pre, draw.sequence)
    if any(draw.shift_mm):
        low = subvoxel_shift(low, [s / d for s, d in zip(draw.shift_mm, case.spacing[::-1])])  # spacing x, y, z
    low = low * _smooth_field(case.shape, window, draw.bias_amplitude, draw.pattern_seed)
    sigma_add = sigma * np.sqrt(max(draw.noise_factor ** 2 - draw.dose ** 2, 0.0))
    noise_sigma = sigma_add * _smooth_field(case.shape, window, draw.noise_variation, draw.pattern_seed + 1)
    low = low + noise_sigma * rng.standard_normal(low.shape, dtype=np.float32)
    foreground = (pre != 0) | (sd != 0)
    return np.where(foreground & (case.coverage[window] > 0), low, 0.0).astype(np.float32)


def _bounded(window, shape) -> tuple:
    """``window`` (3 slices, step 1) with explicit start and stop inside ``shape``."""
    return tuple(slice(*s.indices(n)[:2]) for s, n in zip(window, shape))


def _windows(case: PairCase, centre, patch_size: int, margin: int):
    """(window, patch slices inside the window) for a patch centred on ``centre`` (shifted into the volume)."""
    window, inner = [], []
    for c, n in zip(centre, case.shape):
        start = int(np.clip(c - patch_size // 2, 0, n - patch_size))
        lo, hi = max(0, start - margin), min(n, start + patch_size + margin)
        window.append(slice(lo, hi))
        inner.append(slice(start - lo, start - lo + patch_size))
    return tuple(window), tuple(inner)


def margin_voxels(case: PairCase, margin_mm: float = MARGIN_MM) -> int:
    return int(np.ceil(margin_mm / min(case.spacing)))


def simulate_window(case: PairCase, window, draw: SimulatorDraw, rng: np.random.Generator,
                    low: np.ndarray | None = None) -> dict:
    """Preprocess the synthetic low dose over ``window`` like a real scan; {name: array over the window}
    of INPUT_CHANNELS + TARGET_CHANNELS and "noise_sigma". ``low``: a given low dose over the window
    (another simulator); default :func:`low_dose_window`."""
    window = _bounded(window, case.shape)
    low = low_dose_window(case, window, draw, rng) if low is None else low
    pre, b, coverage = case.pre[window], case.b[window] > 0, case.coverage[window] > 0
    subtraction = ((low - pre) * coverage).astype(np.float32)
    valid = b & coverage
    if valid.sum() >= 2000:
        sigma_ld = estimate_noise_sigma(subtraction, valid)
    else:  # a window with little brain: the drawn noise level
        sigma_ld = case.sigma_sd * draw.noise_factor
    spacing = case.spacing
    image = sitk.GetImageFromArray(subtraction)
    image.SetSpacing(spacing)
    mask = sitk.GetImageFromArray(valid.astype(np.uint8))
    mask.CopyInformation(image)
    mean, std = (sitk.GetArrayFromImage(x) for x in local_statistics(image, mask, sigma_ld, shrink=STATISTICS_SHRINK))
    z = (subtraction - mean) / std * sigma_ld * coverage
    y = case.signal_sd[window] * (sigma_ld / std)
    out = {"z_ld": z.astype(np.float32), "x_ld": low, "s_ld": std.astype(np.float32), "y": y.astype(np.float32),
           "p": case.p[window].astype(np.float32), "b": case.b[window].astype(np.float32), "noise_sigma": sigma_ld}
    out.update({key: array[window] for key, array in case.sequences.items()})
    return out


def _patch(case: PairCase, full: dict, window, inner) -> dict:
    """The patch ``inner`` of a simulated ``window``: every channel (with the case's sequences and lesions)."""
    names = INPUT_CHANNELS + TARGET_CHANNELS + tuple(case.sequences)
    patch = {name: np.ascontiguousarray(full[name][inner], dtype=np.float32) for name in names}
    if case.lesions is not None:
        patch["lesions"] = np.ascontiguousarray(case.lesions[window][inner], dtype=np.float32)
    return patch


def simulate_sample(case: PairCase, rng: np.random.Generator, patch_size: int, enhancing_fraction: float = 0.5,
                    draw: SimulatorDraw | None = None, margin: int | None = None,
                    with_lesions: bool = False) -> tuple[dict, tuple]:
    """(patch {name: float32 [P, P, P]} of INPUT_CHANNELS + TARGET_CHANNELS (+ the case's sequences, "lesions"), conditions
    (dose, field strength, relaxivity, noise sigma)) of one on-the-fly sample; ``draw`` default: random."""
    check_patch(patch_size, case.shape, case.case_id)
    draw = draw_parameters(rng) if draw is None else draw
    window, inner = _windows(case, patch_centre(case, rng, enhancing_fraction), patch_size,
                             margin_voxels(case) if margin is None else margin)
    full = simulate_window(case, window, draw, rng)
    patch = _patch(case, full, window, inner)
    if not with_lesions:
        patch.pop("lesions", None)
    return patch, (draw.dose, draw.field_strength, draw.relaxivity, float(full["noise_sigma"]))



def zero_dose_sample(case: PairCase, rng: np.random.Generator, patch_size: int, enhancing_fraction: float = 0.5,
                     centre=None) -> tuple[dict, tuple]:
    """(patch, conditions) of a zero-dose model (``ModelConfig.low_dose`` False): no low dose is made; the inputs
    are the normalized pre-contrast "x_pc" and the case's sequences, the target "y" the standard-dose contrast
    signal p_SD (z~_SD - m_SD) in normalized units; conditions (dose, field strength, relaxivity, noise sigma) with
    ``network.ZERO_DOSE_CONDITIONS`` and the case's own field strength and agent (whose enhancement it is)."""
    from ..model.network import ZERO_DOSE_CONDITIONS
    check_patch(patch_size, case.shape, case.case_id)
    centre = patch_centre(case, rng, enhancing_fraction) if centre is None else centre
    window, _ = _windows(case, centre, patch_size, 0)
    channels = {"x_pc": case.pre, "y": case.signal_sd, "p": case.p, "b": case.b, **case.sequences}
    patch = {name: np.ascontiguousarray(array[window], dtype=np.float32) for name, array in channels.items()}
    if case.lesions is not None:
        patch["lesions"] = np.ascontiguousarray(case.lesions[window], dtype=np.float32)
    relaxivity = float(get_agent(case.agent).relaxivity(case.field_strength))
    return patch, (ZERO_DOSE_CONDITIONS["dose"], case.field_strength, relaxivity, ZERO_DOSE_CONDITIONS["noise_sigma"])


# ----------------------------------------------------------------------------- validation samples

VALIDATION_DOSES = (0.1, 0.33)
SIMULATORS = ("signal-model", "kspace")
"""The training simulator (this module, without randomization in validation) and ``physics.lowdose_kspace``."""


def validation_samples(cases, patch_size: int, seed: int = 0, doses=VALIDATION_DOSES, per_case: int = 2,
                       zero_dose: bool = False) -> list[tuple[str, dict, tuple]]:
    """Fixed (simulator, patch, conditions) for every held-out PairCase, dose and simulator: ``per_case``
    windows (alternately centred on enhancement and on the brain), the same windows for both simulators;
    ``zero_dose``: the same windows as :func:`zero_dose_sample` patches instead (group "zero-dose")."""
    from ..physics.lowdose_kspace import low_dose_kspace
    samples = []
    for index, case in enumerate(cases):
        check_patch(patch_size, case.shape, case.case_id)
        if zero_dose:
            for j in range(per_case):
                rng = np.random.default_rng([seed, 7919, index, j])
                centre = patch_centre(case, rng, 1.0 if j % 2 == 0 else 0.0)
                samples.append(("zero-dose", *zero_dose_sample(case, rng, patch_size, centre=centre)))
            continue
        margin = margin_voxels(case)
        for dose in doses:
            draw = fixed_draw(dose, case.field_strength, case.agent)
            kspace = low_dose_kspace(case.pre, case.standard_dose, case.b, dose, case.sigma_sd, case.spacing[2],
                                     case.field_strength, seed=seed + index) * (case.coverage > 0)
            for j in range(per_case):
                rng = np.random.default_rng([seed, 7919, index, j])
                window, inner = _windows(case, patch_centre(case, rng, 1.0 if j % 2 == 0 else 0.0), patch_size, margin)
                for simulator in SIMULATORS:
                    low = None if simulator == "signal-model" else kspace[window]
                    full = simulate_window(case, window, draw, np.random.default_rng([seed, index, j, 3]), low)
                    patch = _patch(case, full, window, inner)
                    samples.append((f"{simulator} d{dose:g}", patch,
                                    (draw.dose, draw.field_strength, draw.relaxivity, float(full["noise_sigma"]))))
    return samples
