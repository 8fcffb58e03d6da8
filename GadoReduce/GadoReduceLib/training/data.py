"""Training cases for the conditional CNN (paper 001, section 3.4): preprocessed arrays plus conditions.

A :class:`TrainingCase` holds, on the preprocessing working grid (isotropic where the scans allow),
float32 arrays [k, j, i]: the network inputs z_LD (normalized low-dose subtraction), x_LD (registered
low-dose image), s_LD (local noise std of the low-dose subtraction); the target y = p * z_SD
(contrast signal), the contrast mask p_SD and the brain mask b; an optional lesion label map (0 =
background) for validation metrics; the conditions (dose, field strength, relaxivity, noise sigma)
and the case's scale ratio <b, s_SD> / <b, s_LD> that enters gamma.

Sources, read by the one case reader (``io.cases``; layouts and the definition of a lesion there), each
preprocessed once by ``preprocess.preprocess`` and cached as ``<cache>/<id>_<key>.npz`` (``io.cases.cached``):
- a case folder (one training case per low-dose image);
- a digital phantom generated on the fly (``phantom.PhantomConfig``);
- a real pre/standard-dose pair (BraTS t1/t1ce) with a synthetic low dose (``lowdose``); BraTS
  carries no scanner metadata, so field strength and agent are the assumed defaults of ``io.cases``.
Synthetic data for research and testing, not clinical evidence.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..io.cases import (DEFAULT_FIELD_STRENGTH_T, brats_spec, cache_file, cached, case_files, case_folders,
                        dose_digits, find_brats_pairs, folder_spec, image_stem, load_case_npz, phantom_spec,
                        read_case_folder, read_case_metadata, save_case_npz, working_arrays)
from ..physics.agents import DEFAULT_AGENT, get_agent

TRAINING_NEEDS = "each training case needs pre_contrast, low_dose and standard_dose"


@dataclass
class TrainingCase:
    """One preprocessed training case; arrays [k, j, i] on one grid (see the module docstring)."""

    case_id: str
    z_ld: np.ndarray
    x_ld: np.ndarray
    s_ld: np.ndarray
    y: np.ndarray
    p: np.ndarray
    b: np.ndarray
    dose: float
    field_strength: float
    relaxivity: float
    noise_sigma: float
    scale_ratio: float
    lesions: np.ndarray | None = None
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    metadata: dict = field(default_factory=dict)

    ARRAYS = ("z_ld", "x_ld", "s_ld", "y", "p", "b")

    def __post_init__(self) -> None:
        shape = self.z_ld.shape
        for name in self.ARRAYS:
            array = getattr(self, name)
            if array.ndim != 3 or array.shape != shape:
                raise ValueError(f"training case {self.case_id}: array {name} has shape {array.shape}, expected "
                                 f"the 3D shape {shape} of z_ld; all arrays must lie on one grid")
        if self.lesions is not None and self.lesions.shape != shape:
            raise ValueError(f"training case {self.case_id}: lesion labels shape {self.lesions.shape} != {shape}")

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.z_ld.shape)

    @property
    def conditions(self) -> tuple[float, float, float, float]:
        """(dose, field_strength, relaxivity, noise_sigma): the order of ``model.CONDITION_NAMES``."""
        return (self.dose, self.field_strength, self.relaxivity, self.noise_sigma)

    def save(self, path: Path) -> Path:
        """Atomic npz write (``io.cases.save_case_npz``)."""
        scalars = {"case_id": self.case_id, "dose": self.dose, "field_strength": self.field_strength,
                   "relaxivity": self.relaxivity, "noise_sigma": self.noise_sigma, "scale_ratio": self.scale_ratio,
                   "spacing": list(self.spacing), "metadata": self.metadata}
        return save_case_npz(path, {name: getattr(self, name) for name in self.ARRAYS}, self.lesions, scalars)

    @classmethod
    def load(cls, path: Path) -> "TrainingCase":
        arrays, lesions, meta = load_case_npz(path, cls.ARRAYS)
        return cls(meta["case_id"], **arrays, dose=meta["dose"], field_strength=meta["field_strength"],
                   relaxivity=meta["relaxivity"], noise_sigma=meta["noise_sigma"], scale_ratio=meta["scale_ratio"],
                   lesions=lesions, spacing=tuple(meta["spacing"]), metadata=meta["metadata"])


# ----------------------------------------------------------------------------- gamma

def scale_ratio(b: np.ndarray, s_sd: np.ndarray, s_ld: np.ndarray) -> float:
    """<b, s_SD> / <b, s_LD> of one case (inner products over all voxels)."""
    den = float(np.sum(b.astype(np.float64) * s_ld))
    if not den > 0:
        raise ValueError("the brain mask is empty or the low-dose local std is zero in the brain: cannot compute "
                         "the case's scale ratio; check the brain mask")
    return float(np.sum(b.astype(np.float64) * s_sd)) / den


def compute_gamma(cases) -> float:
    """gamma = (1/N) sum_i <b_i, s_SD,i> / <b_i, s_LD,i> over the training cases (paper 001, section 3.4)."""
    if len({type(c).__name__ for c in cases}) > 1:
        raise ValueError("the training set mixes cases with fixed low doses and pairs for low doses made on the "
                         "fly; their targets have different units: use one kind (--low-doses)")
    ratios = [c.scale_ratio for c in cases]
    if not ratios:
        raise ValueError("no training cases: gamma is a mean over the training set")
    return float(np.mean(ratios))


# ----------------------------------------------------------------------------- from preprocessing

def case_from_preprocessing(case_id: str, result, dose: float, field_strength: float, agent: str,
                            lesions=None, metadata: dict | None = None) -> TrainingCase:
    """TrainingCase from a ``preprocess.PreprocessResult`` computed with a standard dose (working grid), through
    ``io.cases.working_arrays``. ``lesions``: label image on the pre-contrast grid (or None)."""
    w = working_arrays(result, lesions, case_id)
    b = w.brain_mask.astype(np.uint8)
    name = get_agent(agent).name
    return TrainingCase(
        case_id, w.z_ld, w.low_dose, w.s_ld, w.contrast_signal, w.contrast_mask, b,
        dose=float(dose), field_strength=float(field_strength),
        relaxivity=float(get_agent(name).relaxivity(field_strength)), noise_sigma=w.noise_sigma_ld,
        scale_ratio=scale_ratio(b, w.s_sd, w.s_ld), lesions=w.lesions if lesions is not None else None,
        spacing=w.spacing, metadata={"agent": name, **(metadata or {})})


def _from_case(case_id: str, case, dose: float, backend: str, metadata: dict, low=None,
               require_enhancement: bool = True) -> TrainingCase:
    """Preprocess a loaded ``io.cases.Case`` with its low dose at ``dose`` (or ``low``) into a TrainingCase."""
    from ..preprocessing.preprocess import preprocess
    low = case.low_doses[dose] if low is None else low
    result = preprocess(case.pre_contrast, low, case.standard_dose, backend=backend, brain=case.brain_mask,
                        require_enhancement=require_enhancement, warn=False)  # QC warnings stay in result.qc
    return case_from_preprocessing(case_id, result, dose, case.field_strength, case.agent, case.lesions, metadata)


def _cached(cache_dir, case_id: str, kind: str, identity: dict, build) -> TrainingCase:
    return cached(cache_file(cache_dir, case_id, kind, identity), build, TrainingCase.load)[0]


# ----------------------------------------------------------------------------- sources

def cases_from_folder(folder, cache_dir=None, backend: str = "auto", log=None) -> list[TrainingCase]:
    """Training cases of one case folder (one per low-dose image); layout: ``io.cases``."""
    folder = Path(folder)
    case_files(folder, ("pre_contrast", "standard_dose", "low_dose"), TRAINING_NEEDS)
    meta = read_case_metadata(folder)
    identity = folder_spec(folder).identity
    cases = []
    for low_name, dose in sorted(meta.doses.items()):
        case_id = f"{folder.name}_{image_stem(low_name)}"

        def build(low_name=low_name, dose=dose, case_id=case_id):
            if log:
                log(f"preprocessing {case_id} (cached afterwards) ...")
            case = read_case_folder(folder, [low_name], ("pre_contrast", "standard_dose", "low_dose"),
                                    TRAINING_NEEDS)
            return _from_case(case_id, case, float(dose), backend, {"source": "folder", "folder": str(folder)})
        cases.append(_cached(cache_dir, case_id, "folder",
                             {**identity, "low": low_name, "dose": dose, "backend": backend}, build))
    return cases


def case_from_phantom(config, cache_dir=None, backend: str = "auto", log=None) -> TrainingCase:
    """A phantom generated on the fly (``config.doses`` must hold one dose); uses its true brain mask."""
    config = config.validated()
    if len(config.doses) != 1:
        raise ValueError(f"a phantom training case takes one low dose, got {config.doses}")
    dose = config.doses[0]
    spec = phantom_spec(config)
    case_id = f"phantom_{config.seed}_{config.size}_{config.field_strength:g}T_{config.agent}_d{dose_digits(dose)}"

    def build():
        if log:
            log(f"generating and preprocessing {case_id} (cached afterwards) ...")
        return _from_case(case_id, spec.load(), dose, backend, {"source": "phantom", "seed": config.seed})
    return _cached(cache_dir, case_id, "phantom", {**spec.identity, "backend": backend}, build)


def case_from_pair(subject: str, pre_path, standard_path, dose: float, seed: int, seg_path=None,
                   field_strength: float = DEFAULT_FIELD_STRENGTH_T, agent: str = DEFAULT_AGENT,
                   cache_dir=None, backend: str = "auto", log=None) -> TrainingCase:
    """A real pre/standard-dose pair (``io.cases.read_brats_subject``) with a synthetic low dose at ``dose``
    (``lowdose.synthesize_low_dose``). ``seg_path``: BraTS segmentation (lesions: ``io.cases``)."""
    spec = brats_spec(subject, Path(pre_path), Path(standard_path), Path(seg_path) if seg_path else None)
    case_id = f"{subject}_d{dose_digits(dose)}_s{seed}"
    identity = {**spec.identity, "dose": dose, "seed": seed, "field_strength": field_strength, "agent": agent,
                "backend": backend}

    def build():
        from ..physics.lowdose import synthesize_low_dose
        if log:
            log(f"synthesizing low dose and preprocessing {case_id} (cached afterwards) ...")
        case = spec.load()
        case.field_strength, case.agent = field_strength, agent
        low, _ = synthesize_low_dose(case.pre_contrast, case.standard_dose, dose, field_strength=field_strength,
                                     agent=agent, seed=seed)
        # a synthetic low dose is right by construction: little enhancement above noise is a fact, not an error
        return _from_case(case_id, case, dose, backend,
                          {"source": "synthetic low dose", "subject": subject, "seed": seed,
                           "assumed_metadata": "field strength and agent assumed (BraTS has none)"},
                          low=low, require_enhancement=False)
    return _cached(cache_dir, case_id, "pair", identity, build)


# ----------------------------------------------------------------------------- training sets

DOSE_RANGE = (0.1, 0.33)
"""Low doses of synthetic cases are drawn uniformly from this range (fractions of the standard dose)."""
PHANTOM_FIELD_STRENGTHS = (1.5, 3.0)
PHANTOM_AGENTS = ("gadobutrol", "gadoterate", "gadoteridol", "gadobenate", "gadopiclenol")


def _case_folders(path) -> list[Path]:
    path = Path(path)
    if not path.is_dir():
        raise ValueError(f"case folder {path} does not exist; give a case folder or a folder of case folders")
    folders = case_folders(path)
    if not folders:
        raise ValueError(f"{path} holds neither case images (pre_contrast, low_dose*, standard_dose) nor case "
                         "folders; check the path")
    return folders


LOW_DOSE_SOURCES = ("on-the-fly", "fixed")


def training_sets(case_dirs=(), phantoms: int = 0, brats=None, holdout: int = 3, seed: int = 0,
                  phantom_size: str = "full", dose_range=DOSE_RANGE, cache_dir=None, backend: str = "auto",
                  low_doses: str = "on-the-fly", log=None, sequences=()) -> tuple[list, list]:
    """(training cases, validation cases) from case folders, ``phantoms`` phantoms generated on the fly and
    BraTS pairs. Validation: the last ``holdout`` BraTS subjects (sorted by name), or without BraTS the last
    ``holdout`` case folders. All choices are seeded by ``seed``.

    low_doses "on-the-fly": :class:`training.simulate.PairCase` s (pre-contrast and standard dose only; every
    sample makes its own low dose, :func:`pair_sets`); "fixed": TrainingCases with one low dose each (a
    case folder's real ones; phantoms and BraTS pairs one synthetic dose from ``dose_range``, field
    strength and agent varied for phantoms). sequences: the optional sequences (``io.cases.SEQUENCES``) a model
    with extra inputs needs: registered with every pair, which is left out when it lacks one (on the fly only)."""
    if not case_dirs and not phantoms and brats is None:
        raise ValueError("no training data: give case folders (--cases), phantoms (--phantoms N) or BraTS pairs "
                         "(--brats DIR)")
    if low_doses not in LOW_DOSE_SOURCES:
        raise ValueError(f"--low-doses {low_doses!r}: use one of {', '.join(LOW_DOSE_SOURCES)}")
    if low_doses == "on-the-fly":
        return pair_sets(case_dirs, phantoms, brats, holdout, seed, phantom_size, cache_dir, backend, log, sequences)
    if sequences:
        raise ValueError("a model with extra input sequences trains on low doses made on the fly only; "
                         "leave out --low-doses fixed")
    lo, hi = (float(d) for d in dose_range)
    if not 0 < lo <= hi < 1:
        raise ValueError(f"dose range {dose_range} must lie in (0, 1), e.g. 0.1-0.33")
    rng = np.random.default_rng([seed, 424242])
    train, val = [], []
    folders = [f for d in case_dirs for f in _case_folders(d)]
    if brats is None and holdout and len(folders) > holdout:
        folders, held = folders[:-holdout], folders[-holdout:]
        for folder in held:
            val += cases_from_folder(folder, cache_dir, backend, log)
    for folder in folders:
        train += cases_from_folder(folder, cache_dir, backend, log)
    for i in range(int(phantoms)):
        dose = round(float(rng.uniform(lo, hi)), 2)
        train.append(case_from_phantom(_phantom_config(seed, i, rng, phantom_size, (dose,)), cache_dir, backend, log))
    if brats is not None:
        pairs = _brats_pairs(brats, holdout)
        for index, (subject, t1, t1ce, seg) in enumerate(pairs):
            dose = round(float(rng.uniform(lo, hi)), 3)
            try:
                case = case_from_pair(subject, t1, t1ce, dose, seed * 100_000 + index, seg, cache_dir=cache_dir,
                                      backend=backend, log=log)
            except ValueError as error:  # e.g. a low dose too faint for preprocessing's enhancement check
                if log:
                    log(f"skipping {subject} at dose {dose:g}: {error}")
                continue
            (val if held_out(index, len(pairs), holdout) else train).append(case)
    return train, val


def _phantom_config(seed: int, index: int, rng: np.random.Generator, size: str, doses: tuple):
    """The ``index``-th training phantom of ``seed``: field strength and agent drawn from ``rng``."""
    from ..phantom.generate import PhantomConfig
    return PhantomConfig(seed=seed * 100_000 + index, doses=doses, size=size,
                         field_strength=float(rng.choice(PHANTOM_FIELD_STRENGTHS)), agent=str(rng.choice(PHANTOM_AGENTS)))


def _brats_pairs(brats, holdout: int) -> list:
    pairs = find_brats_pairs(brats)
    if holdout >= len(pairs):
        raise ValueError(f"holding out {holdout} of {len(pairs)} BraTS subjects leaves none for training; "
                         "lower --holdout")
    return pairs


def held_out(index: int, count: int, holdout: int) -> bool:
    """Whether the BraTS subject at ``index`` of ``count`` (sorted by name) is held out for validation."""
    return index >= count - holdout


def pair_sets(case_dirs=(), phantoms: int = 0, brats=None, holdout: int = 3, seed: int = 0,
              phantom_size: str = "full", cache_dir=None, backend: str = "auto", log=None,
              sequences=()) -> tuple[list, list]:
    """(training, validation) :class:`training.simulate.PairCase` s: one per case folder (its pre-contrast and
    standard dose), phantom (field strength and agent varied, seeded by ``seed``) and BraTS subject, each
    preprocessed once and cached. Held out as in :func:`training_sets`. With ``sequences``, phantoms are refused
    (they have no FLAIR or T2) and cases without every sequence left out (logged); the held-out subjects stay
    the same."""
    from ..io.cases import SEQUENCES
    from .simulate import PairCase, pair_from_case
    sequences = tuple(k for k in SEQUENCES if k in (sequences or ()))
    if sequences and phantoms:
        raise ValueError("the digital phantoms have no FLAIR or T2 images; leave out --phantoms for a model with "
                         "--sequences (train it on --brats or --cases with flair/t2 images)")
    rng = np.random.default_rng([seed, 424242])
    specs, held = [], []
    folders = [f for d in case_dirs for f in _case_folders(d)]
    for index, folder in enumerate(folders):
        specs.append(folder_spec(folder))
        held.append(brats is None and bool(holdout) and len(folders) > holdout and index >= len(folders) - holdout)
    for i in range(int(phantoms)):
        specs.append(phantom_spec(_phantom_config(seed, i, rng, phantom_size, ())))
        held.append(False)
    if brats is not None:
        pairs = _brats_pairs(brats, holdout)
        for index, (subject, t1, t1ce, seg) in enumerate(pairs):
            specs.append(brats_spec(subject, t1, t1ce, seg))
            held.append(held_out(index, len(pairs), holdout))
    train, val = [], []
    for spec, is_held in zip(specs, held):
        def build(spec=spec):
            if log:
                log(f"preprocessing the pair of {spec.name} (cached afterwards) ...")
            return pair_from_case(spec.name, spec.load(), backend, {"source": spec.source}, sequences)
        identity = {**spec.identity, "backend": backend, **({"sequences": list(sequences)} if sequences else {})}
        try:
            case = cached(cache_file(cache_dir, spec.name, f"pair-{spec.source}", identity), build, PairCase.load)[0]
        except ValueError as error:
            if not sequences or "which a model with --sequences" not in str(error):
                raise
            if log:
                log(f"leaving out {spec.name}: {error}")
            continue
        (val if is_held else train).append(case)
    return train, val
