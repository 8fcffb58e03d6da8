"""Time the synthetic low-dose synthesis on one real BraTS pair (prints figures; no assertions).

Usage: PYTHONPATH=GadoReduce python benchmarks/bench_lowdose.py [SUBJECT_FOLDER]
(default ../shared/data/brats18/Brats18_2013_20_1).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import SimpleITK as sitk

from GadoReduceLib.physics.lowdose import synthesize_low_dose
from GadoReduceLib.physics.signal import default_sequence


def main() -> None:
    repo = Path(__file__).resolve().parents[1]
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else repo.parent / "shared/data/brats18/Brats18_2013_20_1"
    stem = folder / folder.name
    t0 = time.perf_counter()
    pre = sitk.ReadImage(f"{stem}_t1.nii.gz")
    post = sitk.ReadImage(f"{stem}_t1ce.nii.gz")
    print(f"read {folder.name} {pre.GetSize()}: {time.perf_counter() - t0:.2f} s")
    for kind in ("spgr", "mprage"):
        for dose in (0.1, 0.33):
            t0 = time.perf_counter()
            _, params = synthesize_low_dose(pre, post, dose, sequence=default_sequence(3.0, kind))
            print(f"{kind:6s} dose {dose:.2f}: {time.perf_counter() - t0:.2f} s, "
                  f"noise sigma SD/LD subtraction {params['noise_sigma_standard_dose_subtraction']:.2f}/"
                  f"{params['noise_sigma_low_dose_subtraction']:.2f}")


if __name__ == "__main__":
    main()
