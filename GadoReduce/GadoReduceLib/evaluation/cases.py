"""Evaluation cases (issue 7): where the pre-contrast, standard-dose and low-dose scans and the lesions come from.

Sources, each giving :class:`CaseSpec` objects that load lazily (one case in memory at a time):

- a folder of case folders (or one case folder): ``pre_contrast.*``, ``standard_dose.*``, real low doses
  ``low_dose_XXX.*`` (``imageio.dose_name``) with ``phantom.json``, or one ``low_dose.*`` with ``case.json``
  (``training_data.read_case_metadata``); optional ``brain_mask.*`` and lesion labels ``lesion_labels.*`` or
  ``lesions.*`` (one integer per lesion; a binary mask is split into connected components);
- a BraTS folder (``*_t1`` / ``*_t1ce`` pairs, ``training_data.find_brats_pairs``): no real low dose; lesions
  are the connected components of the enhancing-tumour label (``BRATS_ENHANCING_LABEL``); field strength and
  agent are not recorded in BraTS and are assumed (``training_data.DEFAULT_FIELD_STRENGTH_T``,
  ``agents.DEFAULT_AGENT``);
- digital phantoms generated on the fly (``phantom.generate_phantom``): real low doses at every requested
  dose, lesion truth labels of the enhancing lesions only.

Where a case has no real low dose at a requested dose, a synthetic one is made from its pre-contrast and
standard-dose pair (``lowdose.synthesize_low_dose``), seeded by the case name and the dose
(:func:`low_dose_seed`). Synthetic low doses are synthetic: results on them are no clinical evidence.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..physics.agents import DEFAULT_AGENT
from ..io.imageio import dose_name

LESION_STEMS = ("lesion_labels", "lesions")
"""File stems of lesion label images in a case folder (first found wins)."""
CONNECTIVITY = np.ones((3, 3, 3), bool)
"""26-connectivity, as ``regions.enhancing_regions`` uses for detected regions."""


@dataclass
class EvalCase:
    """One loaded case: images on their own grids (the pre-contrast grid for masks and labels).

    low_doses: real low-dose scans {dose: image}; lesions: integer labels (one per lesion) on the
    pre-contrast grid, or None; brain_mask: binary image on the pre-contrast grid, or None (atlas
    registration); assumed_metadata: True when field strength and agent are defaults, not recorded.
    """

    name: str
    source: str
    pre_contrast: sitk.Image
    standard_dose: sitk.Image
    low_doses: dict[float, sitk.Image]
    field_strength: float
    agent: str
    lesions: sitk.Image | None = None
    brain_mask: sitk.Image | None = None
    assumed_metadata: bool = False


@dataclass
class CaseSpec:
    """A case not yet loaded: ``name``, ``source`` ("folder", "brats", "phantom"), ``identity`` (everything
    that changes its images, for the preprocessing cache) and ``load`` (returns an :class:`EvalCase`)."""

    name: str
    source: str
    identity: dict
    load: Callable[[], EvalCase] = field(repr=False)


def low_dose_seed(case_name: str, dose: float) -> int:
    """Noise seed of a synthetic low dose: from the case name and the dose (percent), stable across runs."""
    digest = hashlib.sha256(f"{case_name}|{dose_name(dose)}".encode()).hexdigest()
    return int(digest[:8], 16)


def connected_lesions(mask: np.ndarray) -> np.ndarray:
    """uint16 labels 1..N of the 26-connected components of a boolean mask [k, j, i], in scan order."""
    labels, count = ndimage.label(np.asarray(mask, bool), structure=CONNECTIVITY)
    if count > np.iinfo(np.uint16).max:
        raise ValueError(f"{count} lesion components exceed the uint16 label range; check the lesion mask")
    return labels.astype(np.uint16)


def _labels_image(array: np.ndarray, reference: sitk.Image) -> sitk.Image:
    image = sitk.GetImageFromArray(array.astype(np.uint16))
    image.CopyInformation(reference)
    return image


def _check_grid(image: sitk.Image, reference: sitk.Image, what: str, folder) -> sitk.Image:
    if image.GetSize() != reference.GetSize() or not np.allclose(image.GetOrigin(), reference.GetOrigin(), atol=1e-3):
        raise ValueError(f"{what} of {folder} is not on the pre-contrast grid (size {image.GetSize()} vs "
                         f"{reference.GetSize()}); resample it onto pre_contrast (nearest neighbour)")
    out = sitk.Image(image)
    out.CopyInformation(reference)
    return out


def lesion_labels_from(image: sitk.Image, reference: sitk.Image, what: str, folder) -> sitk.Image:
    """Integer lesion labels on the pre-contrast grid: kept as they are when they hold several labels, split
    into connected components when the image is a binary mask (a single positive value)."""
    image = _check_grid(image, reference, what, folder)
    array = sitk.GetArrayFromImage(image)
    if not np.issubdtype(array.dtype, np.integer):
        if not np.all(array == np.round(array)):
            raise ValueError(f"{what} of {folder} holds non-integer values; give an integer label image")
        array = array.astype(np.int64)
    if array.min(initial=0) < 0:
        raise ValueError(f"{what} of {folder} has negative labels; use 0 for background")
    values = np.unique(array[array > 0])
    labels = connected_lesions(array > 0) if values.size == 1 else array
    return _labels_image(labels, reference)


# ----------------------------------------------------------------------------- case folders

def enhancing_lesions(entries) -> list[dict]:
    """The enhancing lesions among a phantom's lesion entries (``case.parameters["lesions"]`` or its sidecar's)."""
    return [entry for entry in entries if entry.get("type") != "non_enhancing"]


def _without_non_enhancing(lesions: sitk.Image, entries, reference: sitk.Image) -> sitk.Image:
    """Phantom lesion labels with the non-enhancing lesions of ``entries`` set to 0, on ``reference``'s grid."""
    keep = {entry["label"] for entry in enhancing_lesions(entries)}
    drop = [entry["label"] for entry in entries if entry["label"] not in keep]
    array = sitk.GetArrayFromImage(lesions)
    return _labels_image(np.where(np.isin(array, drop), 0, array), reference)


def _folder_spec(folder: Path) -> CaseSpec:
    from ..training.data import _find_image, _low_dose_files
    files = sorted(p for p in folder.iterdir() if p.is_file())
    identity = {"folder": str(folder.resolve()),
                "files": [(p.name, os.path.getsize(p), os.path.getmtime(p)) for p in files]}

    def load() -> EvalCase:
        from ..io.imageio import read_image
        from ..training.data import read_case_metadata
        pre_path, sd_path = _find_image(folder, "pre_contrast"), _find_image(folder, "standard_dose")
        if pre_path is None:
            raise ValueError(f"case folder {folder} has no pre_contrast image; add pre_contrast.nii.gz")
        if sd_path is None:
            raise ValueError(f"case folder {folder} has no standard_dose image: evaluation compares every method "
                             "with the standard dose; add standard_dose.nii.gz or leave this case out")
        pre = read_image(pre_path)
        lows = {}
        if _low_dose_files(folder):
            meta = read_case_metadata(folder)
            lows = {float(d): read_image(folder / name) for name, d in sorted(meta["doses"].items())}
            field_strength, agent, assumed = meta["field_strength"], meta["agent"], False
        elif (folder / "case.json").exists() or (folder / "phantom.json").exists():
            sidecar = folder / "case.json" if (folder / "case.json").exists() else folder / "phantom.json"
            meta = json.loads(sidecar.read_text())
            if "field_strength" not in meta and "field_strength_t" not in meta:
                raise ValueError(f"{sidecar} lacks field_strength; write e.g. "
                                 '{"field_strength": 3, "agent": "gadobutrol"}')
            field_strength = float(meta.get("field_strength", meta.get("field_strength_t")))
            agent = meta.get("agent", DEFAULT_AGENT)
            agent = agent["name"] if isinstance(agent, dict) else agent
            assumed = False
        else:
            from ..training.data import DEFAULT_FIELD_STRENGTH_T
            field_strength, agent, assumed = DEFAULT_FIELD_STRENGTH_T, DEFAULT_AGENT, True
        brain_path = _find_image(folder, "brain_mask")
        brain = _check_grid(read_image(brain_path), pre, "brain_mask", folder) if brain_path else None
        lesions = None
        for stem in LESION_STEMS:
            path = _find_image(folder, stem)
            if path is not None:
                lesions = lesion_labels_from(read_image(path), pre, stem, folder)
                break
        if lesions is not None and (folder / "phantom.json").exists():
            entries = json.loads((folder / "phantom.json").read_text()).get("lesions", [])
            lesions = _without_non_enhancing(lesions, entries, lesions)
        return EvalCase(folder.name, "folder", pre, read_image(sd_path), lows, field_strength, agent, lesions,
                        brain, assumed)
    return CaseSpec(folder.name, "folder", identity, load)


def _brats_spec(subject: str, t1: Path, t1ce: Path, seg: Path | None) -> CaseSpec:
    identity = {"t1": str(t1.resolve()), "t1ce": str(t1ce.resolve()), "seg": str(seg.resolve()) if seg else None,
                "mtimes": [os.path.getmtime(p) for p in (t1, t1ce) + ((seg,) if seg else ())]}

    def load() -> EvalCase:
        from ..io.imageio import read_image
        from ..training.data import BRATS_ENHANCING_LABEL, DEFAULT_FIELD_STRENGTH_T
        pre = sitk.Cast(read_image(t1), sitk.sitkFloat32)
        sd = sitk.Cast(read_image(t1ce), sitk.sitkFloat32)
        lesions = None
        if seg is not None:
            seg_image = _check_grid(read_image(seg), pre, "segmentation", t1.parent)
            lesions = _labels_image(connected_lesions(sitk.GetArrayFromImage(seg_image) == BRATS_ENHANCING_LABEL),
                                    pre)
        return EvalCase(subject, "brats", pre, sd, {}, DEFAULT_FIELD_STRENGTH_T, DEFAULT_AGENT, lesions, None, True)
    return CaseSpec(subject, "brats", identity, load)


def folder_cases(root, subjects=None) -> list[CaseSpec]:
    """Case specs under ``root``: case folders (``root`` itself or its sub-folders), else BraTS pairs.
    ``subjects``: names (folder or BraTS subject) to keep; ValueError for names not found."""
    from ..training.data import _find_image, _low_dose_files, find_brats_pairs
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"--cases {root} is not a folder; give a folder of case folders or of BraTS subjects")
    if _find_image(root, "pre_contrast") is not None or _low_dose_files(root):
        specs = [_folder_spec(root)]
    else:
        folders = sorted(p for p in root.iterdir() if p.is_dir() and _find_image(p, "pre_contrast") is not None)
        if folders:
            specs = [_folder_spec(p) for p in folders]
        else:
            try:
                specs = [_brats_spec(*pair) for pair in find_brats_pairs(root)]
            except ValueError:
                raise ValueError(f"no cases found under {root}: expected case folders with pre_contrast.nii.gz "
                                 "and standard_dose.nii.gz, or BraTS subjects (SUBJECT_t1.nii.gz with "
                                 "SUBJECT_t1ce.nii.gz); check the path") from None
    if subjects:
        wanted = list(dict.fromkeys(subjects))
        names = {s.name for s in specs}
        missing = [n for n in wanted if n not in names]
        if missing:
            raise ValueError(f"--subjects {', '.join(missing)} not found under {root}; available: "
                             f"{', '.join(sorted(names)[:10])}{' ...' if len(names) > 10 else ''}")
        specs = [s for s in specs if s.name in wanted]
    return specs


# ----------------------------------------------------------------------------- phantoms

def phantom_lesions(case) -> sitk.Image:
    """The enhancing lesions of a generated phantom (``phantom.generate_phantom``) as a label image."""
    return _without_non_enhancing(case.lesion_labels, case.parameters["lesions"], case.pre_contrast)


PHANTOM_THRESHOLD_SIGMAS = 12.0
"""Enhancing-region threshold (noise sigmas of the low-dose subtraction) for phantom checks of the module.
With the paper's 4 sigma, the phantom's normal enhancing structures (vessels, dura, choroid plexus) merge
with the lesions into one tree; at 12 sigma the measured standard dose (registered, minus the pre-contrast
scan) gives one region per enhancing lesion and the true volume within 20 % for all 20 large lesions of
phantoms 100-106 at 33 % (scripts/region_threshold_study.py; 16/20 at 15 sigma, 19/20 at 10 sigma)."""


def phantom_truth_volumes(case, min_volume_mm3: float, min_diameter_mm: float = 0.0) -> dict:
    """Enhancing lesions of a generated phantom of at least ``min_volume_mm3`` enhancing volume and
    ``min_diameter_mm`` diameter: label -> enhancing volume (mm^3) (what ``regions.truth_problems`` checks)."""
    return {lesion["label"]: float(lesion["enhancing_volume_mm3"])
            for lesion in enhancing_lesions(case.parameters["lesions"])
            if lesion["enhancing_volume_mm3"] >= min_volume_mm3 and lesion["diameter_mm"] >= min_diameter_mm}


def phantom_cases(count: int, seed: int, size: str, doses) -> list[CaseSpec]:
    """``count`` phantoms (seeds ``seed`` .. ``seed + count - 1``) with real low doses at ``doses`` (< 1)."""
    from dataclasses import asdict

    from ..phantom.generate import PhantomConfig
    if count < 0:
        raise ValueError(f"--phantoms {count} must be >= 0")
    low = tuple(sorted(d for d in doses if d < 1.0))
    specs = []
    for i in range(int(count)):
        config = PhantomConfig(seed=int(seed) + i, doses=low or (0.5,), size=size).validated()

        def load(config=config) -> EvalCase:
            from ..phantom.generate import generate_phantom
            case = generate_phantom(config)
            name = f"phantom_{config.seed}_{config.size}"
            return EvalCase(name, "phantom", case.pre_contrast, case.standard_dose,
                            {d: img for d, img in case.low_dose.items() if d in low}, config.field_strength,
                            config.agent, phantom_lesions(case), case.brain_mask, False)
        specs.append(CaseSpec(f"phantom_{config.seed}_{config.size}", "phantom",
                              {"phantom": asdict(config)}, load))
    return specs


# ----------------------------------------------------------------------------- low doses

def low_dose_for(case: EvalCase, dose: float) -> tuple[sitk.Image, bool]:
    """(low-dose image, real): the case's real scan at ``dose`` (same percent), else a synthetic one
    (``lowdose.synthesize_low_dose``, seed :func:`low_dose_seed`) on the pre-contrast grid."""
    for d, image in case.low_doses.items():
        if dose_name(d) == dose_name(dose):
            return image, True
    from ..physics.lowdose import synthesize_low_dose
    from ..io.regrid import to_grid
    pre = sitk.Cast(case.pre_contrast, sitk.sitkFloat32)
    sd = sitk.Cast(case.standard_dose, sitk.sitkFloat32)
    if sd.GetSize() != pre.GetSize() or not np.allclose(sd.GetOrigin(), pre.GetOrigin(), atol=1e-3):
        sd = to_grid(sd, pre)  # the synthesis needs one grid; registration follows in preprocessing
    low, _ = synthesize_low_dose(pre, sd, dose, brain_mask=case.brain_mask, field_strength=case.field_strength,
                                 agent=case.agent, seed=low_dose_seed(case.name, dose))
    return low, False
