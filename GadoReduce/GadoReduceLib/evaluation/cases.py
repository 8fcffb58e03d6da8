"""Evaluation cases (issue 7): which cases are evaluated and their low dose at each evaluated dose.

Cases come from the one case reader (``io.cases``; layouts, metadata and the definition of a lesion there),
each as an ``io.cases.CaseSpec`` that loads lazily (one case in memory at a time):

- a folder of case folders (or one case folder), else a folder of BraTS subjects (no real low dose; field
  strength and agent assumed);
- digital phantoms generated on the fly: real low doses at every requested dose, enhancing lesions only.

Where a case has no real low dose at a requested dose, a synthetic one is made from its pre-contrast and
standard-dose pair (``lowdose.synthesize_low_dose``), seeded by the case name and the dose
(:func:`low_dose_seed`). Synthetic low doses are synthetic: results on them are no clinical evidence.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import SimpleITK as sitk

from ..io.cases import Case, CaseSpec, brats_spec, case_folders, find_brats_pairs, folder_spec, phantom_spec
from ..io.imageio import dose_name, same_grid


def low_dose_seed(case_name: str, dose: float) -> int:
    """Noise seed of a synthetic low dose: from the case name and the dose (percent), stable across runs."""
    digest = hashlib.sha256(f"{case_name}|{dose_name(dose)}".encode()).hexdigest()
    return int(digest[:8], 16)


def folder_cases(root, subjects=None) -> list[CaseSpec]:
    """Case specs under ``root``: case folders (``root`` itself or its sub-folders), else BraTS subjects.
    ``subjects``: names (folder or BraTS subject) to keep; ValueError for names not found."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"--cases {root} is not a folder; give a folder of case folders or of BraTS subjects")
    specs = [folder_spec(p) for p in case_folders(root)]
    if not specs:
        try:
            specs = [brats_spec(*pair) for pair in find_brats_pairs(root)]
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


def phantom_cases(count: int, seed: int, size: str, doses) -> list[CaseSpec]:
    """``count`` phantoms (seeds ``seed`` .. ``seed + count - 1``) with real low doses at ``doses`` (< 1)."""
    from ..phantom.generate import PhantomConfig
    if count < 0:
        raise ValueError(f"--phantoms {count} must be >= 0")
    low = tuple(sorted(d for d in doses if d < 1.0))
    return [phantom_spec(PhantomConfig(seed=int(seed) + i, doses=low or (0.5,), size=size)) for i in range(int(count))]


SIMULATORS = ("signal-model", "kspace")
"""Low-dose simulators for cases without a real low dose: "signal-model" (``lowdose.synthesize_low_dose``, the
simulator's physics that training uses) and "kspace" (``lowdose_kspace``, built differently, validation only)."""


def has_real_low_dose(case: Case, dose: float) -> bool:
    return any(dose_name(d) == dose_name(dose) for d in case.low_doses)


def low_dose_for(case: Case, dose: float, simulator: str = "signal-model") -> tuple[sitk.Image, bool]:
    """(low-dose image, real): the case's real scan at ``dose`` (same percent), else a synthetic one made by
    ``simulator`` (:data:`SIMULATORS`, seed :func:`low_dose_seed`) on the pre-contrast grid."""
    for d, image in case.low_doses.items():
        if dose_name(d) == dose_name(dose):
            return image, True
    if simulator not in SIMULATORS:
        raise ValueError(f"unknown low-dose simulator {simulator!r}; use one of {', '.join(SIMULATORS)}")
    from ..io.regrid import to_grid
    from ..physics.lowdose import synthesize_low_dose
    from ..physics.lowdose_kspace import synthesize_low_dose_kspace
    synthesize_low_dose = synthesize_low_dose if simulator == "signal-model" else synthesize_low_dose_kspace
    pre = sitk.Cast(case.pre_contrast, sitk.sitkFloat32)
    sd = sitk.Cast(case.standard_dose, sitk.sitkFloat32)
    if not same_grid(sd, pre):
        sd = to_grid(sd, pre)  # the synthesis needs one grid; registration follows in preprocessing
    low, _ = synthesize_low_dose(pre, sd, dose, brain_mask=case.brain_mask, field_strength=case.field_strength,
                                 agent=case.agent, seed=low_dose_seed(case.name, dose))
    return low, False
