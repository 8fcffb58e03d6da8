"""Cases: the one reader and the one container of cases for training and evaluation (and cohorts).

Sources, each giving a :class:`CaseSpec` whose ``load`` returns a :class:`Case`:

- a case folder: ``pre_contrast.*``, ``standard_dose.*``, low doses ``low_dose_NNN.*`` (NNN = dose in
  percent, ``imageio.dose_name``; inverse :func:`dose_from_name`) or one ``low_dose.*`` whose dose is in
  ``case.json``; a sidecar ``case.json`` ({"dose": 0.25, "field_strength": 3, "agent": "gadobutrol"}; "dose"
  only for a ``low_dose.*`` file) or ``phantom.json`` (as ``gadoreduce synth phantom`` writes); optional
  ``brain_mask.*`` and lesion labels ``lesion_labels.*`` or ``lesions.*`` (first found) on the pre-contrast
  grid; optional sequences ``flair.*`` and ``t2.*`` (:data:`SEQUENCES`). A folder without low doses
  and sidecar is read with assumed metadata (see below);
- a BraTS subject: ``SUBJECT_t1.nii.gz`` (pre-contrast), ``SUBJECT_t1ce.nii.gz`` (standard dose), optional
  ``SUBJECT_seg.nii.gz``, ``SUBJECT_flair.nii.gz`` and ``SUBJECT_t2.nii.gz``; no low dose and no scanner metadata;
- a digital phantom generated on the fly (``phantom.generate_phantom``): real low doses at its doses.

A lesion is one integer label (0 = background) on the pre-contrast grid: a label image with several labels
is kept as it is; a binary mask, and the BraTS enhancing-tumour label (``BRATS_ENHANCING_LABEL``), are split
into 26-connected components (``regions.CONNECTIVITY_26``); a phantom's non-enhancing lesions are dropped.
Field strength and agent unknown to a source are assumed (``DEFAULT_FIELD_STRENGTH_T``,
``agents.DEFAULT_AGENT``) and flagged (``Case.assumed_metadata``).

The stages' derived containers are built from one adapter of the preprocessing result
(:func:`working_arrays`) and cached with one helper (:func:`cache_file`, :func:`cached`, :func:`save_npz`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import SimpleITK as sitk

from ..physics.agents import DEFAULT_AGENT
from .imageio import IMAGE_SUFFIXES, dose_name, same_grid

DEFAULT_FIELD_STRENGTH_T = 3.0
"""Field strength (T) assumed for cases without metadata (BraTS, folders without a sidecar)."""
BRATS_ENHANCING_LABEL = 4
"""BraTS segmentation label of the enhancing tumour; its connected components are the lesions."""
LESION_STEMS = ("lesion_labels", "lesions")
"""File stems of lesion label images in a case folder (first found wins)."""
CASE_JSON, PHANTOM_JSON = "case.json", "phantom.json"
CASE_JSON_EXAMPLE = '{"dose": 0.25, "field_strength": 3, "agent": "gadobutrol"}'
SEQUENCES = {"flair": "FLAIR", "t2": "T2"}
"""Optional input sequences (papers 002/003): key (file stem, option and model-configuration name) -> the name users
read. Registered rigidly to the pre-contrast like the low dose; a model's channels follow z_LD, x_LD, s_LD in this
order (``model.network.ModelConfig.sequences``)."""
CACHE_VERSION = 1
"""Bump when preprocessing changes so that cached cases (training and evaluation) are recomputed."""


# ----------------------------------------------------------------------------- names

def image_stem(name: str) -> str | None:
    """File name without its image suffix (``IMAGE_SUFFIXES``), None when it is no image name."""
    for suffix in IMAGE_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return None


def dose_from_name(name) -> float | None:
    """Inverse of ``imageio.dose_name``: 0.25 for ``low_dose_025`` or ``low_dose_025.nii.gz``; None for a
    name without a dose (``low_dose.nii.gz``)."""
    name = Path(name).name
    stem = image_stem(name) or name
    digits = stem.rsplit("_", 1)[-1]
    if len(digits) != 3 or not digits.isdigit():
        return None
    dose = int(digits) / 100.0
    return dose if dose_name(dose) == stem else None


def dose_digits(dose: float) -> str:
    """The three dose digits of ``imageio.dose_name`` (``"025"`` for 0.25): tags of cache files and figures."""
    return dose_name(dose).rsplit("_", 1)[-1]


def check_doses(doses) -> tuple[float, ...]:
    """Sorted distinct doses in (0, 1] (``lowdose.check_dose``) with distinct file names; ValueError otherwise."""
    from ..physics.lowdose import check_dose
    out = [check_dose(d) for d in doses]
    if not out:
        raise ValueError("no dose given; use e.g. --doses 0.1,0.2,0.33")
    names = [dose_name(d) for d in out]
    if len(set(names)) != len(names):
        raise ValueError(f"doses {', '.join(f'{d:g}' for d in out)} repeat or round to the same percent; give "
                         "each dose once, at least 1 % apart")
    return tuple(sorted(out))


def safe_name(text: str) -> str:
    """``text`` with runs of characters other than letters, digits, ``_.-`` replaced by ``_`` (file names)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


# ----------------------------------------------------------------------------- files

def find_image(folder, stem: str) -> Path | None:
    """``folder/stem.<suffix>`` for the first of ``IMAGE_SUFFIXES`` that exists, else None."""
    for suffix in IMAGE_SUFFIXES:
        path = Path(folder) / f"{stem}{suffix}"
        if path.exists():
            return path
    return None


def low_dose_files(folder) -> list[Path]:
    """Low-dose images of a case folder (``low_dose*`` with an image suffix), sorted by name."""
    return [p for p in sorted(Path(folder).iterdir())
            if p.name.startswith("low_dose") and image_stem(p.name) is not None]


def is_case_folder(path) -> bool:
    """True when ``path`` holds case images (pre_contrast, standard_dose or low_dose*)."""
    path = Path(path)
    return path.is_dir() and (find_image(path, "pre_contrast") is not None
                              or find_image(path, "standard_dose") is not None or bool(low_dose_files(path)))


def case_folders(root) -> list[Path]:
    """``[root]`` when it is a case folder, else its sub-folders that are case folders (sorted)."""
    root = Path(root)
    if is_case_folder(root):
        return [root]
    return sorted(p for p in root.iterdir() if is_case_folder(p)) if root.is_dir() else []


def case_files(folder, require=("pre_contrast", "standard_dose"), purpose: str = "") -> dict:
    """{"pre_contrast", "standard_dose", "brain_mask", "lesions": path or None, "low_dose": [paths], "sequences":
    {"flair"/"t2": path}};
    ValueError naming the folder, the missing images and the fix when one of ``require`` is absent."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"case folder {folder} does not exist; give a folder with pre_contrast, standard_dose "
                         "and low_dose images and case.json")
    files = {stem: find_image(folder, stem) for stem in ("pre_contrast", "standard_dose", "brain_mask")}
    files["lesions"] = next((p for p in (find_image(folder, s) for s in LESION_STEMS) if p is not None), None)
    files["sequences"] = {key: path for key in SEQUENCES if (path := find_image(folder, key)) is not None}
    files["low_dose"] = low_dose_files(folder)
    missing = [name for name in require if not files[name]]
    if missing:
        raise ValueError(f"case folder {folder} lacks {', '.join(missing)} (no {missing[0]} image: add e.g. "
                         f"{missing[0]}.nii.gz){'; ' + purpose if purpose else ''}")
    return files


# ----------------------------------------------------------------------------- metadata

@dataclass(frozen=True)
class CaseMetadata:
    """doses: {low-dose file name: dose (fraction of the standard dose)}; field_strength (T); agent;
    assumed: True when field strength and agent are defaults, not recorded."""

    doses: dict
    field_strength: float
    agent: str
    assumed: bool = False


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not readable JSON ({error}); fix it, e.g. {CASE_JSON_EXAMPLE}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} holds {type(data).__name__}, not a JSON object; write e.g. {CASE_JSON_EXAMPLE}")
    return data


def read_case_metadata(folder) -> CaseMetadata:
    """Doses, field strength and agent of a case folder from ``case.json`` or ``phantom.json`` (module docstring).
    Without low doses and sidecar: no doses, assumed metadata. ValueError naming the file and the fix."""
    from ..physics.agents import get_agent
    folder = Path(folder)
    lows = low_dose_files(folder)
    sidecar = next((folder / n for n in (CASE_JSON, PHANTOM_JSON) if (folder / n).exists()), None)
    if sidecar is None:
        if lows:
            raise ValueError(f"case folder {folder} has no metadata sidecar: add case.json with {CASE_JSON_EXAMPLE}")
        return CaseMetadata({}, DEFAULT_FIELD_STRENGTH_T, DEFAULT_AGENT, assumed=True)
    meta = _read_json(sidecar)
    unnamed = [p.name for p in lows if dose_from_name(p.name) is None]
    is_case_json = sidecar.name == CASE_JSON
    json_dose = meta.get("dose") if is_case_json else None
    rename = "name each low_dose_NNN.* (NNN = dose in percent, e.g. low_dose_025.nii.gz for 0.25)"
    if unnamed and (len(lows) > 1 or not is_case_json):
        raise ValueError(f"{folder / unnamed[0]} carries no dose in its name and {sidecar.name} gives none for "
                         f"{len(lows)} low-dose image(s) {[p.name for p in lows]}: {rename}"
                         + (", or keep one low_dose.* image with \"dose\" in case.json" if is_case_json else ""))
    if json_dose is not None and len(lows) > 1:
        raise ValueError(f"{sidecar} gives one dose for {len(lows)} low-dose images {[p.name for p in lows]}: "
                         f"{rename} and drop \"dose\", or keep one low_dose.* image")
    missing = (["dose"] if unnamed and json_dose is None else []) + \
              (["field_strength"] if "field_strength" not in meta and "field_strength_t" not in meta else [])
    if missing:
        raise ValueError(f"{sidecar} lacks {', '.join(missing)}; write e.g. {CASE_JSON_EXAMPLE}")
    try:
        field_strength = float(meta.get("field_strength", meta.get("field_strength_t")))
        doses = {p.name: float(json_dose) if json_dose is not None else dose_from_name(p.name) for p in lows}
    except (TypeError, ValueError):
        raise ValueError(f"{sidecar}: dose and field_strength must be numbers; write e.g. {CASE_JSON_EXAMPLE}") \
            from None
    for name, dose in doses.items():
        named = dose_from_name(name)
        if named is not None and dose_name(named) != dose_name(dose):
            raise ValueError(f"{sidecar} gives dose {dose:g} but {name} is named for {named:g}; make them agree")
    agent = meta.get("agent", DEFAULT_AGENT)
    agent = agent.get("name", DEFAULT_AGENT) if isinstance(agent, dict) else str(agent)
    try:
        get_agent(agent)
    except ValueError as error:
        raise ValueError(f"{sidecar}: {error}; fix its \"agent\"") from None
    return CaseMetadata(doses, field_strength, agent)


# ----------------------------------------------------------------------------- lesions and grids

def connected_lesions(mask: np.ndarray) -> np.ndarray:
    """uint16 labels 1..N of the 26-connected components of a boolean mask [k, j, i], in scan order."""
    from scipy import ndimage

    from ..inference.regions import CONNECTIVITY_26
    labels, count = ndimage.label(np.asarray(mask, bool), structure=CONNECTIVITY_26)
    if count > np.iinfo(np.uint16).max:
        raise ValueError(f"{count} lesion components exceed the uint16 label range; check the lesion mask")
    return labels.astype(np.uint16)


def labels_image(array: np.ndarray, reference: sitk.Image) -> sitk.Image:
    """uint16 label image of ``array`` [k, j, i] on ``reference``'s grid."""
    image = sitk.GetImageFromArray(np.asarray(array).astype(np.uint16))
    image.CopyInformation(reference)
    return image


def on_grid(image: sitk.Image, reference: sitk.Image, what: str, folder) -> sitk.Image:
    """``image`` checked to lie on ``reference``'s grid (``imageio.same_grid``); ValueError naming the fix."""
    if not same_grid(image, reference):
        raise ValueError(f"{what} of {folder} is not on the pre-contrast grid (size {image.GetSize()} vs "
                         f"{reference.GetSize()}, or spacing/origin/direction differ); resample it onto "
                         "pre_contrast (nearest neighbour)")
    out = sitk.Image(image)
    out.CopyInformation(reference)
    return out


def lesion_labels_from(image: sitk.Image, reference: sitk.Image, what: str, folder) -> sitk.Image:
    """Integer lesion labels on the pre-contrast grid: kept as they are when they hold several labels, split
    into connected components when the image is a binary mask (a single positive value)."""
    image = on_grid(image, reference, what, folder)
    array = sitk.GetArrayFromImage(image)
    if not np.issubdtype(array.dtype, np.integer):
        if not np.all(array == np.round(array)):
            raise ValueError(f"{what} of {folder} holds non-integer values; give an integer label image")
        array = array.astype(np.int64)
    if array.min(initial=0) < 0:
        raise ValueError(f"{what} of {folder} has negative labels; use 0 for background")
    values = np.unique(array[array > 0])
    return labels_image(connected_lesions(array > 0) if values.size == 1 else array, reference)


# ----------------------------------------------------------------------------- the case

@dataclass
class Case:
    """One loaded case: images on their own grids (masks and labels on the pre-contrast grid).

    low_doses: real low-dose scans {dose: image}; lesions: integer labels (one per lesion) or None;
    brain_mask: binary image or None (atlas registration); field_strength (T), agent; assumed_metadata:
    True when field strength and agent are defaults; metadata: notes of the source (JSON-serializable);
    sequences: optional {"flair"/"t2": image} of the same session.
    """

    name: str
    source: str
    pre_contrast: sitk.Image
    standard_dose: sitk.Image | None
    low_doses: dict[float, sitk.Image]
    field_strength: float
    agent: str
    lesions: sitk.Image | None = None
    brain_mask: sitk.Image | None = None
    assumed_metadata: bool = False
    metadata: dict = field(default_factory=dict)
    sequences: dict = field(default_factory=dict)


@dataclass
class CaseSpec:
    """A case not yet loaded: ``name``, ``source`` ("folder", "brats", "phantom"), ``identity`` (everything that
    changes its images, for the caches) and ``load`` (returns a :class:`Case`)."""

    name: str
    source: str
    identity: dict
    load: Callable[[], Case] = field(repr=False)


def read_case_folder(folder, low_dose_names=None, require=("pre_contrast", "standard_dose"),
                     purpose: str = "") -> Case:
    """The :class:`Case` of a case folder; ``low_dose_names``: the low-dose files to read (default all);
    ``require``: images that must exist (``case_files``); ``purpose``: why, for the error message."""
    from .imageio import read_image
    folder = Path(folder)
    files = case_files(folder, require, purpose)
    meta = read_case_metadata(folder)
    pre = read_image(files["pre_contrast"])
    sd = read_image(files["standard_dose"]) if files["standard_dose"] else None
    lows = {float(dose): read_image(folder / name) for name, dose in sorted(meta.doses.items())
            if low_dose_names is None or name in low_dose_names}
    brain = on_grid(read_image(files["brain_mask"]), pre, "brain_mask", folder) if files["brain_mask"] else None
    lesions = None
    if files["lesions"] is not None:
        stem = image_stem(files["lesions"].name)
        lesions = lesion_labels_from(read_image(files["lesions"]), pre, stem, folder)
        if (folder / PHANTOM_JSON).exists():
            from ..phantom.truth import without_non_enhancing
            entries = _read_json(folder / PHANTOM_JSON).get("lesions", [])
            lesions = without_non_enhancing(lesions, entries, lesions)
    return Case(folder.name, "folder", pre, sd, lows, meta.field_strength, meta.agent, lesions, brain, meta.assumed,
                {"folder": str(folder)}, {key: read_image(path) for key, path in files["sequences"].items()})


def folder_spec(folder) -> CaseSpec:
    """Spec of a case folder; identity: the folder and the names, sizes and times of its files."""
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.is_file())
    identity = {"folder": str(folder.resolve()),
                "files": [(p.name, os.path.getsize(p), os.path.getmtime(p)) for p in files]}
    purpose = ("evaluation compares every method with the standard dose; add it or leave this case out")
    return CaseSpec(folder.name, "folder", identity, lambda: read_case_folder(folder, purpose=purpose))


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


def read_brats_subject(subject: str, t1, t1ce, seg=None) -> Case:
    """The :class:`Case` of a BraTS subject: t1 = pre-contrast, t1ce = standard dose (float32), lesions = the
    connected components of the enhancing label of ``seg``; no low dose; assumed field strength and agent."""
    from .imageio import read_image
    pre = sitk.Cast(read_image(t1), sitk.sitkFloat32)
    sd = sitk.Cast(read_image(t1ce), sitk.sitkFloat32)
    lesions = None
    if seg is not None:
        seg_image = on_grid(read_image(seg), pre, "segmentation", Path(t1).parent)
        lesions = labels_image(connected_lesions(sitk.GetArrayFromImage(seg_image) == BRATS_ENHANCING_LABEL), pre)
    sequences = {key: sitk.Cast(read_image(path), sitk.sitkFloat32) for key in SEQUENCES
                 if (path := Path(t1).with_name(f"{subject}_{key}.nii.gz")).exists()}
    return Case(subject, "brats", pre, sd, {}, DEFAULT_FIELD_STRENGTH_T, DEFAULT_AGENT, lesions, None, True,
                {"subject": subject}, sequences)


def brats_spec(subject: str, t1: Path, t1ce: Path, seg: Path | None) -> CaseSpec:
    """Spec of a BraTS subject; identity: its files and their times."""
    identity = {"t1": str(t1.resolve()), "t1ce": str(t1ce.resolve()), "seg": str(seg.resolve()) if seg else None,
                "mtimes": [os.path.getmtime(p) for p in (t1, t1ce) + ((seg,) if seg else ())]}
    return CaseSpec(subject, "brats", identity, lambda: read_brats_subject(subject, t1, t1ce, seg))


def phantom_spec(config) -> CaseSpec:
    """Spec of a phantom generated on the fly (``phantom.PhantomConfig``, validated here): real low doses at
    ``config.doses``, its true brain mask, its enhancing lesions (``phantom.truth.phantom_lesions``)."""
    from dataclasses import asdict
    config = config.validated()
    name = f"phantom_{config.seed}_{config.size}"

    def load() -> Case:
        from ..phantom.generate import generate_phantom
        from ..phantom.truth import phantom_lesions
        case = generate_phantom(config)
        return Case(name, "phantom", case.pre_contrast, case.standard_dose, dict(case.low_dose),
                    config.field_strength, config.agent, phantom_lesions(case), case.brain_mask, False,
                    {"seed": config.seed})
    return CaseSpec(name, "phantom", {"phantom": asdict(config)}, load)


# ----------------------------------------------------------------------------- from preprocessing

@dataclass
class WorkingArrays:
    """A preprocessing result with a standard dose as arrays [k, j, i] on the working grid, normalized units
    (float32 unless noted): pre_contrast, low_dose / standard_dose (registered), brain_mask (bool), z_ld / s_ld
    / s_sd (normalized subtraction, local std), contrast_signal (y), contrast_mask (p), lesions (uint16 labels,
    0 = none), spacing (i, j, k) mm, noise_sigma_ld / noise_sigma_sd (of the subtractions)."""

    pre_contrast: np.ndarray
    low_dose: np.ndarray
    standard_dose: np.ndarray
    brain_mask: np.ndarray
    z_ld: np.ndarray
    s_ld: np.ndarray
    s_sd: np.ndarray
    contrast_signal: np.ndarray
    contrast_mask: np.ndarray
    lesions: np.ndarray
    spacing: tuple
    noise_sigma_ld: float
    noise_sigma_sd: float


def working_arrays(result, lesions: sitk.Image | None = None, name: str = "case") -> WorkingArrays:
    """The one adapter of a ``preprocess.PreprocessResult`` (with a standard dose); ``lesions``: label image
    on the pre-contrast grid, resampled onto the working grid (nearest neighbour)."""
    from .regrid import to_grid
    if result.standard_dose is None:
        raise ValueError(f"case {name}: preprocessing ran without a standard-dose image; give one")
    view = lambda image: sitk.GetArrayFromImage(image).astype(np.float32)  # noqa: E731
    pre = view(result.pre_contrast)
    labels = np.zeros(pre.shape, np.uint16)
    if lesions is not None:
        labels = sitk.GetArrayFromImage(to_grid(lesions, result.pre_contrast, sitk.sitkNearestNeighbor,
                                                sitk.sitkUInt16))
    low, sd = result.low_dose, result.standard_dose
    return WorkingArrays(pre, view(low.registered), view(sd.registered), sitk.GetArrayFromImage(result.brain_mask) > 0,
                         view(low.normalized_subtraction), view(low.local_std), view(sd.local_std),
                         view(result.contrast_signal), view(result.contrast_mask), labels,
                         tuple(result.pre_contrast.GetSpacing()), float(result.noise_sigma_ld), float(sd.noise_sigma))


# ----------------------------------------------------------------------------- cache

def cache_key(kind: str, identity: dict) -> str:
    """12 hex digits identifying a source (``kind``, ``identity``) and ``CACHE_VERSION``."""
    text = json.dumps({"kind": kind, "version": CACHE_VERSION, **identity}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def cache_file(cache_dir, name: str, kind: str, identity: dict) -> Path | None:
    """``cache_dir/<safe name>_<key>.npz``, or None without a cache folder."""
    return None if cache_dir is None else Path(cache_dir) / f"{safe_name(name)}_{cache_key(kind, identity)}.npz"


def save_npz(path, **arrays) -> Path:
    """Compressed npz written atomically (``io.atomic``)."""
    from .atomic import atomic_path
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(handle, **arrays)
    return Path(path)


def save_case_npz(path, arrays: dict, lesions, scalars: dict) -> Path:
    """A cached training case: its ``arrays``, optional ``lesions`` and JSON-able ``scalars`` (``save_npz``)."""
    arrays = dict(arrays, **({"lesions": lesions} if lesions is not None else {}))
    return save_npz(path, meta=np.array(json.dumps(scalars)), **arrays)


def load_case_npz(path, names, optional=()) -> tuple[dict, np.ndarray | None, dict]:
    """(arrays ``names`` and those of ``optional`` that the file has, lesions or None, scalars) of a file written
    by :func:`save_case_npz`."""
    with np.load(path, allow_pickle=False) as data:
        names = list(names) + [name for name in optional if name in data]
        return ({name: data[name] for name in names}, data["lesions"] if "lesions" in data else None,
                json.loads(str(data["meta"])))


def cached(path: Path | None, build: Callable, load: Callable) -> tuple[object, bool]:
    """(value, from_cache): ``load(path)`` when the file exists, else ``build()`` saved with its ``save(path)``."""
    if path is None:
        return build(), False
    if path.exists():
        return load(path), True
    value = build()
    value.save(path)
    return value, False
