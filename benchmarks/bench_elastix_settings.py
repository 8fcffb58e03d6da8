"""Time and accuracy of variants of GadoReduce's elastix parameter files (issue 14), to tune them for speed.

Each variant is the shipped file with some parameters replaced (``VARIANTS``), written to ``--work``:
- rigid: elastix seconds and mean / max target registration error (mm, over the brain) for two 1 mm phantoms
  moved by up to 10 degrees and 10 mm (seeds 7, 8; metric limited to the dilated true brain, as preprocessing
  does) and a 1 mm BraTS pair (t1ce moved by 10 degrees and 10 mm onto its t1);
- atlas: elastix and whole brain-mask seconds, Dice of the brain mask against the phantoms' truth (heads with skull)
  and of the affine atlas alone against two BraTS brains (``../shared/data``; skipped when absent).
Prints figures only; synthetic phantoms and BraTS are software checks. Usage:

  PYTHONPATH=GadoReduce python benchmarks/bench_elastix_settings.py rigid|atlas [VARIANT ...] [--work DIR]
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "GadoReduce"))

from GadoReduceLib.demo import true_motion  # noqa: E402
from GadoReduceLib.phantom.generate import PhantomConfig, generate_phantom  # noqa: E402
from GadoReduceLib.preprocessing import brainmask  # noqa: E402
from GadoReduceLib.preprocessing.registration import (RIGID_PARAMETER_FILE, parameter_file_path, register,  # noqa: E402
                                                      target_registration_error)

VARIANTS = {
    "rigid": {"shipped": {}, "4096": {"NumberOfSpatialSamples": "4096"},
              "2048": {"NumberOfSpatialSamples": "2048"}, "random": {"ImageSampler": '"Random"'},
              "fewer-iterations": {"MaximumNumberOfIterations": "150 150 150 100"}},
    "atlas": {"shipped": {}, "6000": {"NumberOfSpatialSamples": "6000"},
              "3-levels": {"NumberOfResolutions": "3", "ImagePyramidSchedule": "4 4 4 2 2 2 1 1 1",
                           "MaximumNumberOfIterations": "250 100 50"}},
}
DATA = ROOT.parent / "shared" / "data" / "brats18"


def variant_file(base: Path, changes: dict, path: Path) -> Path:
    text = base.read_text()
    for key, value in changes.items():
        text, count = re.subn(rf"\({key} [^)]*\)", f"({key} {value})", text)
        if count == 0:
            text += f"\n({key} {value})\n"
    path.write_text(text)
    return path


def brats(subject: str, kind: str) -> sitk.Image:
    return sitk.ReadImage(str(DATA / subject / f"{subject}_{kind}.nii.gz"), sitk.sitkFloat32)


def rigid_cases() -> list:
    cases = []
    for seed in (7, 8):
        case = generate_phantom(PhantomConfig(seed=seed, size="full", doses=(0.1,), max_motion_deg=10.0,
                                              max_motion_mm=10.0))
        truth = true_motion(case, "low_dose_010")
        mask = sitk.BinaryDilate(sitk.Cast(case.brain_mask, sitk.sitkUInt8), [5] * 3)
        cases.append((f"phantom {seed}", case.pre_contrast, case.low_dose[0.1], truth, mask, case.brain_mask))
    if DATA.is_dir():
        pre, post = brats("Brats18_TCIA02_370_1", "t1"), brats("Brats18_TCIA02_370_1", "t1ce")
        centre = pre.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in pre.GetSize()])
        motion = sitk.Euler3DTransform(centre, np.deg2rad(10.0), np.deg2rad(-4.0), np.deg2rad(6.0), (10.0, -6.0, 4.0))
        moving = sitk.Resample(post, pre, motion, sitk.sitkBSpline, 0.0, sitk.sitkFloat32)
        brain = sitk.Cast(pre > 0, sitk.sitkUInt8)
        cases.append(("BraTS 1 mm", pre, moving, motion.GetInverse(), sitk.BinaryDilate(brain, [5] * 3), brain))
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("which", choices=sorted(VARIANTS))
    parser.add_argument("variants", nargs="*")
    parser.add_argument("--work", default="/tmp/gadoreduce-elastix-settings")
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    base = parameter_file_path(RIGID_PARAMETER_FILE if args.which == "rigid" else brainmask.AFFINE_ATLAS_PARAMETER_FILE)
    names = args.variants or list(VARIANTS[args.which])
    files = {n: variant_file(base, VARIANTS[args.which][n], work / f"{args.which}_{n}.txt") for n in names}
    if args.which == "rigid":
        cases = rigid_cases()
        for name, path in files.items():
            cells = []
            for label, fixed, moving, truth, mask, brain in cases:
                result = register(fixed, moving, path, backend="executable", fixed_mask=mask)
                mean, worst = target_registration_error(result.transform, truth, brain)
                cells.append(f"{label}: {result.seconds:.2f} s, TRE {mean:.3f} / {worst:.3f} mm")
            print(f"{name:18s} " + " | ".join(cells), flush=True)
        return
    cases = [(f"phantom {seed}", generate_phantom(PhantomConfig(seed=seed, size="full", doses=(0.1,))))
             for seed in (7, 8)]
    cases = [(label, c.pre_contrast, c.brain_mask, "brain_mask") for label, c in cases]
    if DATA.is_dir():
        for subject in ("Brats18_TCIA02_370_1", "Brats18_TCIA01_378_1"):
            pre = brats(subject, "t1")
            cases.append((subject, pre, sitk.Cast(pre > 0, sitk.sitkUInt8), "atlas_mask"))
    for name, path in files.items():
        brainmask.AFFINE_ATLAS_PARAMETER_FILE = path  # brain_mask reads the module's setting
        cells = []
        for label, pre, truth, which in cases:
            start = time.perf_counter()
            result = brainmask.brain_mask(pre, backend="executable")
            seconds = time.perf_counter() - start
            cells.append(f"{label}: {result.registration.seconds:.2f} / {seconds:.2f} s, "
                         f"Dice {brainmask.dice(getattr(result, which), truth):.4f}")
        print(f"{name:18s} " + " | ".join(cells), flush=True)


if __name__ == "__main__":
    main()
