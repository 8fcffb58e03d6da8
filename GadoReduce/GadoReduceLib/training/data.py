"""Training cases for the conditional CNN (paper 001, section 3.4): preprocessed arrays plus conditions.

A :class:`TrainingCase` holds, on the preprocessing working grid (isotropic where the scans allow),
float32 arrays [k, j, i]: the network inputs z_LD (normalized low-dose subtraction), x_LD (registered
low-dose image), s_LD (local noise std of the low-dose subtraction); the target y = p * z_SD
(contrast signal), the contrast mask p_SD and the brain mask b; an optional lesion label map (0 =
background) for validation metrics; the conditions (dose, field strength, relaxivity, noise sigma)
and the case's scale ratio <b, s_SD> / <b, s_LD> that enters gamma.

Sources (each preprocessed once by ``preprocess.preprocess`` and cached as ``<cache>/<id>_<key>.npz``):
- a case folder: ``pre_contrast.*``, ``standard_dose.*``, one or more ``low_dose*.*`` images (NIfTI,
  NRRD, MetaImage) and a sidecar ``case.json`` ({"dose": 0.25, "field_strength": 3, "agent":
  "gadobutrol"}) or a phantom sidecar ``phantom.json`` (as ``gadoreduce synth phantom`` writes);
  optional ``brain_mask.*`` (skips the atlas registration) and ``lesion_labels.*``;
- a digital phantom generated on the fly (``phantom.PhantomConfig``);
- a real pre/standard-dose pair (BraTS t1/t1ce) with a synthetic low dose (``lowdose``); BraTS
  carries no scanner metadata, so field strength and agent are the assumed defaults below.
Synthetic data for research and testing, not clinical evidence.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..physics.agents import DEFAULT_AGENT, get_agent

CACHE_VERSION = 1
"""Bump when preprocessing changes so that cached cases are recomputed."""
DEFAULT_FIELD_STRENGTH_T = 3.0
"""Field strength assumed for real pairs without metadata (BraTS)."""
IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
BRATS_ENHANCING_LABEL = 4
"""BraTS segmentation label of the enhancing tumour (the lesion region of validation metrics)."""


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
        """Atomic npz write (a partial file never carries the final name)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".partial-{os.getpid()}-{path.name}")
        arrays = {name: getattr(self, name) for name in self.ARRAYS}
        if self.lesions is not None:
            arrays["lesions"] = self.lesions
        scalars = {"case_id": self.case_id, "dose": self.dose, "field_strength": self.field_strength,
                   "relaxivity": self.relaxivity, "noise_sigma": self.noise_sigma, "scale_ratio": self.scale_ratio,
                   "spacing": list(self.spacing), "metadata": self.metadata}
        with open(partial, "wb") as handle:
            np.savez_compressed(handle, meta=np.array(json.dumps(scalars)), **arrays)
        partial.replace(path)
        return path

    @classmethod
    def load(cls, path: Path) -> "TrainingCase":
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            arrays = {name: data[name] for name in cls.ARRAYS}
            lesions = data["lesions"] if "lesions" in data else None
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
    ratios = [c.scale_ratio for c in cases]
    if not ratios:
        raise ValueError("no training cases: gamma is a mean over the training set")
    return float(np.mean(ratios))


# ----------------------------------------------------------------------------- from preprocessing

def case_from_preprocessing(case_id: str, result, dose: float, field_strength: float, agent: str,
                            lesions: sitk.Image | None = None, metadata: dict | None = None) -> TrainingCase:
    """TrainingCase from a ``preprocess.PreprocessResult`` computed with a standard dose (working grid).
    ``lesions``: label image on the pre-contrast grid (resampled onto the working grid, nearest)."""
    from ..io import regrid
    if result.standard_dose is None:
        raise ValueError(f"case {case_id}: preprocessing ran without a standard-dose image; training needs one")
    view = sitk.GetArrayFromImage
    b = view(result.brain_mask).astype(np.uint8)
    s_ld = view(result.low_dose.local_std).astype(np.float32)
    s_sd = view(result.standard_dose.local_std).astype(np.float32)
    labels = None
    if lesions is not None:
        labels = view(regrid.to_grid(lesions, result.pre_contrast, sitk.sitkNearestNeighbor)).astype(np.uint16)
    name = get_agent(agent).name
    return TrainingCase(
        case_id, view(result.low_dose.normalized_subtraction).astype(np.float32),
        view(result.low_dose.registered).astype(np.float32), s_ld,
        view(result.contrast_signal).astype(np.float32), view(result.contrast_mask).astype(np.float32), b,
        dose=float(dose), field_strength=float(field_strength),
        relaxivity=float(get_agent(name).relaxivity(field_strength)), noise_sigma=float(result.noise_sigma_ld),
        scale_ratio=scale_ratio(b, s_sd, s_ld), lesions=labels, spacing=tuple(result.pre_contrast.GetSpacing()),
        metadata={"agent": name, **(metadata or {})})


def cache_key(kind: str, identity: dict) -> str:
    """12 hex digits identifying a source and all parameters that change its preprocessed arrays."""
    text = json.dumps({"kind": kind, "version": CACHE_VERSION, **identity}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _cached(cache_dir, case_id: str, kind: str, identity: dict, build) -> TrainingCase:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", case_id)
    if cache_dir is None:
        return build()
    path = Path(cache_dir) / f"{safe}_{cache_key(kind, identity)}.npz"
    if path.exists():
        return TrainingCase.load(path)
    case = build()
    case.save(path)
    return case


def _preprocess(pre, low, standard, brain, backend, require_enhancement=True):
    import warnings
    from ..preprocessing.preprocess import preprocess
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # QC warnings are kept in result.qc
        return preprocess(pre, low, standard, backend=backend, brain=brain, require_enhancement=require_enhancement)


# ----------------------------------------------------------------------------- case folders

def _find_image(folder: Path, stem: str) -> Path | None:
    for suffix in IMAGE_SUFFIXES:
        path = folder / f"{stem}{suffix}"
        if path.exists():
            return path
    return None


def _low_dose_files(folder: Path) -> list[Path]:
    found = []
    for path in sorted(folder.iterdir()):
        name = path.name
        if name.startswith("low_dose") and any(name.endswith(s) for s in IMAGE_SUFFIXES):
            found.append(path)
    return found


def read_case_metadata(folder: Path) -> dict:
    """{"doses": {low-dose file name: dose}, "field_strength", "agent"} from ``case.json`` or ``phantom.json``."""
    case_json, phantom_json = folder / "case.json", folder / "phantom.json"
    lows = _low_dose_files(folder)
    if case_json.exists():
        meta = json.loads(case_json.read_text())
        missing = [k for k in ("dose", "field_strength") if k not in meta]
        if missing:
            raise ValueError(f"{case_json} lacks {', '.join(missing)}; write e.g. "
                             '{"dose": 0.25, "field_strength": 3, "agent": "gadobutrol"}')
        if len(lows) != 1:
            raise ValueError(f"{folder} holds {len(lows)} low-dose images ({[p.name for p in lows]}); a case.json "
                             "folder must hold exactly one low_dose.* image (or use per-dose phantom.json)")
        return {"doses": {lows[0].name: float(meta["dose"])}, "field_strength": float(meta["field_strength"]),
                "agent": meta.get("agent", DEFAULT_AGENT)}
    if phantom_json.exists():
        meta = json.loads(phantom_json.read_text())
        doses = {}
        for path in lows:
            match = re.match(r"low_dose_(\d{3})\.", path.name)
            if match:
                doses[path.name] = int(match.group(1)) / 100.0
        return {"doses": doses, "field_strength": float(meta["field_strength_t"]), "agent": meta["agent"]["name"]}
    raise ValueError(f"case folder {folder} has no metadata sidecar: add case.json with "
                     '{"dose": 0.25, "field_strength": 3, "agent": "gadobutrol"}')


def cases_from_folder(folder, cache_dir=None, backend: str = "auto", log=None) -> list[TrainingCase]:
    """Training cases of one case folder (one per low-dose image); see the module docstring for the layout."""
    from ..io.imageio import read_image
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"case folder {folder} does not exist; give a folder with pre_contrast, low_dose and "
                         "standard_dose images and case.json")
    pre_path, sd_path = _find_image(folder, "pre_contrast"), _find_image(folder, "standard_dose")
    lows = _low_dose_files(folder)
    missing = [n for n, p in (("pre_contrast", pre_path), ("standard_dose", sd_path)) if p is None]
    if not lows:
        missing.append("low_dose")
    if missing:
        raise ValueError(f"case folder {folder} lacks {', '.join(missing)} image(s) (expected files such as "
                         f"{missing[0]}.nii.gz); each training case needs pre_contrast, low_dose and standard_dose")
    meta = read_case_metadata(folder)
    brain_path, lesion_path = _find_image(folder, "brain_mask"), _find_image(folder, "lesion_labels")
    cases = []
    for low_name, dose in sorted(meta["doses"].items()):
        identity = {"folder": str(folder.resolve()), "low": low_name, "dose": dose, "backend": backend,
                    "mtimes": [os.path.getmtime(p) for p in (pre_path, sd_path, folder / low_name)]}
        case_id = f"{folder.name}_{Path(low_name).name.split('.')[0]}"

        def build(low_name=low_name, dose=dose, case_id=case_id):
            if log:
                log(f"preprocessing {case_id} (cached afterwards) ...")
            pre, sd = read_image(pre_path), read_image(sd_path)
            brain = read_image(brain_path) if brain_path else None
            result = _preprocess(pre, read_image(folder / low_name), sd, brain, backend)
            lesions = read_image(lesion_path) if lesion_path else None
            return case_from_preprocessing(case_id, result, dose, meta["field_strength"], meta["agent"], lesions,
                                           {"source": "folder", "folder": str(folder)})
        cases.append(_cached(cache_dir, case_id, "folder", identity, build))
    return cases


# ----------------------------------------------------------------------------- synthetic sources

def case_from_phantom(config, cache_dir=None, backend: str = "auto", log=None) -> TrainingCase:
    """A phantom generated on the fly (``config.doses`` must hold one dose); uses its true brain mask."""
    from dataclasses import asdict
    from ..phantom.generate import generate_phantom
    config = config.validated()
    if len(config.doses) != 1:
        raise ValueError(f"a phantom training case takes one low dose, got {config.doses}")
    dose = config.doses[0]
    case_id = f"phantom_{config.seed}_{config.size}_{config.field_strength:g}T_{config.agent}_d{round(dose * 100):03d}"

    def build():
        if log:
            log(f"generating and preprocessing {case_id} (cached afterwards) ...")
        case = generate_phantom(config)
        result = _preprocess(case.pre_contrast, case.low_dose[dose], case.standard_dose, case.brain_mask, backend)
        return case_from_preprocessing(case_id, result, dose, config.field_strength, config.agent,
                                       case.lesion_labels, {"source": "phantom", "seed": config.seed})
    return _cached(cache_dir, case_id, "phantom", {"config": asdict(config), "backend": backend}, build)


def find_brats_pairs(root) -> list[tuple[str, Path, Path, Path | None]]:
    """(subject, t1, t1ce, seg or None) for every ``*_t1.nii.gz`` with a ``*_t1ce.nii.gz`` under ``root``,
    sorted by subject name."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"BraTS folder {root} does not exist; give the folder holding the subject folders")
    pairs = []
    for t1 in sorted(root.rglob("*_t1.nii.gz")):
        subject = t1.name[: -len("_t1.nii.gz")]
        t1ce = t1.with_name(f"{subject}_t1ce.nii.gz")
        if t1ce.exists():
            seg = t1.with_name(f"{subject}_seg.nii.gz")
            pairs.append((subject, t1, t1ce, seg if seg.exists() else None))
    if not pairs:
        raise ValueError(f"no BraTS pairs (SUBJECT_t1.nii.gz with SUBJECT_t1ce.nii.gz) under {root}")
    return sorted(pairs, key=lambda p: p[0])


def case_from_pair(subject: str, pre_path, standard_path, dose: float, seed: int, seg_path=None,
                   field_strength: float = DEFAULT_FIELD_STRENGTH_T, agent: str = DEFAULT_AGENT,
                   cache_dir=None, backend: str = "auto", log=None) -> TrainingCase:
    """A real pre/standard-dose pair with a synthetic low dose at ``dose`` (``lowdose.synthesize_low_dose``).
    ``seg_path``: BraTS segmentation; its enhancing label is the lesion region."""
    from ..io.imageio import read_image
    from ..physics.lowdose import synthesize_low_dose
    case_id = f"{subject}_d{round(dose * 100):03d}_s{seed}"
    identity = {"pre": str(Path(pre_path).resolve()), "sd": str(Path(standard_path).resolve()), "dose": dose,
                "seed": seed, "field_strength": field_strength, "agent": agent, "backend": backend}

    def build():
        if log:
            log(f"synthesizing low dose and preprocessing {case_id} (cached afterwards) ...")
        pre = sitk.Cast(read_image(pre_path), sitk.sitkFloat32)
        sd = sitk.Cast(read_image(standard_path), sitk.sitkFloat32)
        low, _ = synthesize_low_dose(pre, sd, dose, field_strength=field_strength, agent=agent, seed=seed)
        # a synthetic low dose is right by construction: little enhancement above noise is a fact, not an error
        result = _preprocess(pre, low, sd, None, backend, require_enhancement=False)
        lesions = None
        if seg_path is not None:
            seg = read_image(seg_path)
            lesions = sitk.Cast(seg == BRATS_ENHANCING_LABEL, sitk.sitkUInt16)
            lesions.CopyInformation(pre)
        return case_from_preprocessing(case_id, result, dose, field_strength, agent, lesions,
                                       {"source": "synthetic low dose", "subject": subject, "seed": seed,
                                        "assumed_metadata": "field strength and agent assumed (BraTS has none)"})
    return _cached(cache_dir, case_id, "pair", identity, build)


# ----------------------------------------------------------------------------- training sets

DOSE_RANGE = (0.1, 0.33)
"""Low doses of synthetic cases are drawn uniformly from this range (fractions of the standard dose)."""
PHANTOM_FIELD_STRENGTHS = (1.5, 3.0)
PHANTOM_AGENTS = ("gadobutrol", "gadoterate", "gadoteridol", "gadobenate", "gadopiclenol")


def _case_folders(path: Path) -> list[Path]:
    path = Path(path)
    if not path.is_dir():
        raise ValueError(f"case folder {path} does not exist; give a case folder or a folder of case folders")
    if _find_image(path, "pre_contrast") is not None or _low_dose_files(path):
        return [path]
    folders = sorted(p for p in path.iterdir() if p.is_dir())
    if not folders:
        raise ValueError(f"{path} holds neither case images (pre_contrast, low_dose*, standard_dose) nor case "
                         "folders; check the path")
    return folders


def training_sets(case_dirs=(), phantoms: int = 0, brats=None, holdout: int = 3, seed: int = 0,
                  phantom_size: str = "full", dose_range=DOSE_RANGE, cache_dir=None, backend: str = "auto",
                  log=None) -> tuple[list[TrainingCase], list[TrainingCase]]:
    """(training cases, validation cases) from case folders, ``phantoms`` phantoms generated on the fly
    (dose from ``dose_range``, field strength and agent varied) and BraTS pairs with a synthetic low dose
    (one dose per subject). Validation: the last ``holdout`` BraTS subjects (sorted by name), or without
    BraTS the last ``holdout`` case folders. All choices are seeded by ``seed``."""
    from ..phantom.generate import PhantomConfig
    if not case_dirs and not phantoms and brats is None:
        raise ValueError("no training data: give case folders (--cases), phantoms (--phantoms N) or BraTS pairs "
                         "(--brats DIR)")
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
        config = PhantomConfig(seed=seed * 100_000 + i, doses=(dose,), size=phantom_size,
                               field_strength=float(rng.choice(PHANTOM_FIELD_STRENGTHS)),
                               agent=str(rng.choice(PHANTOM_AGENTS)))
        train.append(case_from_phantom(config, cache_dir, backend, log))
    if brats is not None:
        pairs = find_brats_pairs(brats)
        if holdout >= len(pairs):
            raise ValueError(f"holding out {holdout} of {len(pairs)} BraTS subjects leaves none for training; "
                             "lower --holdout")
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


def held_out(index: int, count: int, holdout: int) -> bool:
    """Whether the BraTS subject at ``index`` of ``count`` (sorted by name) is held out for validation."""
    return index >= count - holdout
