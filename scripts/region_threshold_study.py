"""Enhancing-region volumes against phantom truth, per region threshold: the model's contrast signal and the
measured standard dose.

Usage (phantoms 100-106 at 1 mm and 33 %, the report's cases; reuses the report's preprocessing cache):
  PYTHONPATH=GadoReduce python scripts/region_threshold_study.py --phantoms 7 --phantom-seed 100 \\
      --dose 0.33 --thresholds 8,10,12,15 --cache ../runs/eval-cache

For every phantom and threshold (noise sigmas of the low-dose subtraction, ``regions.enhancing_regions`` on
the working grid), ``regions.truth_problems`` checks the regions of (a) GadoReduce's contrast signal and
(b) the measured standard-dose subtraction x_SD - x_PC (what the model is trained to reproduce): every
enhancing lesion found in one region of its own, and lesions of at least ``regions.LARGE_LESION_MM3``
within 20 % of their true enhancing volume. Prints one line per (phantom, threshold, signal) and totals.
Synthetic data: no clinical evidence.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "GadoReduce"))

from GadoReduceLib.evaluation.evaluate import cached_arrays, model_contrast, working_regions  # noqa: E402
from GadoReduceLib.evaluation.cases import phantom_cases  # noqa: E402
from GadoReduceLib.model.files import load_model  # noqa: E402
from GadoReduceLib.inference.regions import (DEFAULT_MIN_VOLUME_MM3, LARGE_LESION_MM3, region_statistics,  # noqa: E402
                                   truth_problems)


def _regions(signal: np.ndarray, arrays, threshold: float):
    """(label array, label -> volume mm^3) of the enhancing regions of ``signal`` on the working grid."""
    labels, image = working_regions(signal, arrays, arrays.noise_sigma_ld, threshold)
    volumes = {row["label"]: row["volume_mm3"] for row in region_statistics(labels, image)}
    return sitk.GetArrayFromImage(labels), volumes


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--phantoms", type=int, default=7)
    parser.add_argument("--phantom-seed", type=int, default=100)
    parser.add_argument("--dose", type=float, default=0.33)
    parser.add_argument("--thresholds", default="8,10,12,15", help="noise sigmas, comma-separated")
    parser.add_argument("--cache", default=None, help="preprocessing cache folder (as gadoreduce evaluate)")
    parser.add_argument("--model", default=None, help="model file (default: the shipped model)")
    args = parser.parse_args(argv)
    thresholds = [float(t) for t in args.thresholds.split(",")]
    loaded = load_model(args.model, device="cpu")
    totals = {(t, s): [0, 0, 0, 0] for t in thresholds for s in ("model", "standard_dose")}
    for spec in phantom_cases(args.phantoms, args.phantom_seed, "full", (args.dose,)):
        arrays, _ = cached_arrays(spec, args.dose, "auto", args.cache)
        signals = {"model": model_contrast(loaded, arrays, args.dose, arrays.field_strength, arrays.agent),
                   "standard_dose": arrays.standard - arrays.pre}
        voxel = float(np.prod(arrays.spacing))
        truth = {int(label): float((arrays.lesions == label).sum() * voxel)
                 for label in np.unique(arrays.lesions) if label > 0 and (arrays.lesions == label).sum() * voxel
                 >= DEFAULT_MIN_VOLUME_MM3}
        large = sum(v >= LARGE_LESION_MM3 for v in truth.values())
        for threshold in thresholds:
            for name, signal in signals.items():
                regions, volumes = _regions(signal, arrays, threshold)
                problems = truth_problems(regions, volumes, arrays.lesions, truth)
                alone = sum(not truth_problems(regions, volumes, arrays.lesions, {label: volume}, float("inf"))
                            for label, volume in truth.items())
                within = sum(not truth_problems(regions, volumes, arrays.lesions, {label: volume})
                             for label, volume in truth.items() if volume >= LARGE_LESION_MM3)
                t = totals[(threshold, name)]
                t[0] += alone
                t[1] += len(truth)
                t[2] += within
                t[3] += large
                print(f"{spec.name} {threshold:g} sigma {name}: {'; '.join(problems) or 'all checks pass'}",
                      flush=True)
    print("\nthreshold  signal          lesions found alone  large lesions within 20 %")
    for (threshold, name), (found, lesions, ok, large) in totals.items():
        print(f"{threshold:9g}  {name:14s}  {found:>8d}/{lesions:<10d}  {ok:>8d}/{large}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
