"""scripts/variant_table.py: the variant table of docs/variants.md from an evaluate folder's per_case.csv."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("variant_table", REPO / "scripts" / "variant_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_table_pools_detection_and_counts_wins_over_both_baselines(tmp_path):
    columns = ["case", "dose", "simulator", "method", "psnr_lesions", "c_hat", "c_bar", "psnr_brain", "ssim",
               *(f"{k}_{s}" for s in ("10mm", "5mm", "0mm") for k in ("detected", "n_lesions")),
               "false_detections_0mm"]
    rows = []
    for case, psnr in (("a", 30.0), ("b", 20.0)):
        for method, value, detected in (("low_dose", 25.0, 1), ("linear_scaling", 24.0, 0),
                                        ("gadoreduce_zero_dose", psnr, 2)):
            rows.append(dict(case=case, dose=0.1, simulator="kspace", method=method, psnr_lesions=value, c_hat=0.5,
                             c_bar="nan", psnr_brain=30, ssim=0.9, detected_10mm=detected, n_lesions_10mm=2,
                             detected_5mm=detected, n_lesions_5mm=3, detected_0mm=detected, n_lesions_0mm=4,
                             false_detections_0mm=1 if case == "a" else 3))
    with open(tmp_path / "per_case.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        writer.writerows(rows)
    lines = _script().table(tmp_path).splitlines()
    zero = next(line for line in lines if line.startswith("| gadoreduce_zero_dose |")).split(" | ")
    assert zero[1:4] == ["kspace", "0.1", "25.00"]  # mean PSNR_L of 30 and 20
    assert zero[5] == "nan"  # an undefined c-bar stays undefined
    assert zero[8] == "1/2"  # case a beats both baselines, case b does not
    assert zero[9:12] == ["4/4", "4/6", "4/8"] and zero[12] == "2.0 |"
    assert lines[2].startswith("| linear_scaling |") and lines[3].startswith("| low_dose |")
