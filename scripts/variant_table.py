"""Print the Markdown table of every evaluated method (baselines, the model, ``--variant`` models) from a
``gadoreduce evaluate`` output folder: per simulator and dose, the mean over cases of PSNR_L, c^, c-bar, PSNR_B and
SSIM, in how many cases PSNR_L beats both baselines, and lesion detection by size pooled over cases (detected /
reference lesions at >= 10 mm, >= 5 mm and all; false detections per case).

    python scripts/variant_table.py docs/report/variants [--methods gadoreduce,gadoreduce_flair_t2]

Research software, not for diagnosis: on synthetic low doses the figures are software checks, not clinical evidence.
"""

from __future__ import annotations

import argparse
import csv
import math
from collections import defaultdict
from pathlib import Path

BASELINES = ("low_dose", "linear_scaling")
SIZES = ("10mm", "5mm", "0mm")


def _number(text: str) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def _mean(values) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else math.nan


def rows_by_key(per_case: Path) -> dict:
    """{(simulator, dose, method): [row, ...]} of ``per_case.csv``."""
    groups = defaultdict(list)
    with open(per_case, newline="") as f:
        for row in csv.DictReader(f):
            simulator = row.get("simulator") or ("real" if row.get("low_dose_kind") == "real" else
                                                 "kspace" if row["case"].endswith("(kspace)") else "signal-model")
            groups[(simulator, float(row["dose"]), row["method"])].append(row)
    return groups


HEADER = ("method", "simulator", "dose", "PSNR_L dB", "c^", "c-bar", "PSNR_B dB", "SSIM", "PSNR_L > both baselines",
          "detected >= 10 mm", ">= 5 mm", "all", "false detections / case")


def summary_rows(folder: Path, methods: list[str] | None = None) -> list[dict]:
    """One row per (simulator, dose, method) with the :data:`HEADER` columns (text, as in the table)."""
    groups = rows_by_key(folder / "per_case.csv")
    found = sorted({m for _, _, m in groups}, key=lambda m: (m not in BASELINES, m != "gadoreduce", m))
    methods = methods or [m for m in found if m != "standard_dose"]
    out = []
    for simulator, dose in sorted({(s, d) for s, d, _ in groups}):
        baseline = {b: {r["case"]: _number(r["psnr_lesions"]) for r in groups.get((simulator, dose, b), [])}
                    for b in BASELINES}
        for method in methods:
            rows = groups.get((simulator, dose, method))
            if not rows:
                continue
            mean = {k: _mean(_number(r[k]) for r in rows) for k in ("psnr_lesions", "c_hat", "c_bar", "psnr_brain",
                                                                    "ssim")}
            beats = [_number(r["psnr_lesions"]) > max(baseline[b].get(r["case"], math.inf) for b in BASELINES)
                     for r in rows if not math.isnan(_number(r["psnr_lesions"]))]
            detected = [f"{int(sum(_number(r[f'detected_{s}']) for r in rows))}/"
                        f"{int(sum(_number(r[f'n_lesions_{s}']) for r in rows))}" for s in SIZES]
            values = [method, simulator, f"{dose:g}", f"{mean['psnr_lesions']:.2f}", f"{mean['c_hat']:.3f}",
                      f"{mean['c_bar']:.3f}", f"{mean['psnr_brain']:.2f}", f"{mean['ssim']:.4f}",
                      "" if method in BASELINES else f"{sum(beats)}/{len(beats)}", *detected,
                      f"{_mean(_number(r['false_detections_0mm']) for r in rows):.1f}"]
            out.append(dict(zip(HEADER, values)))
    return out


def table(folder: Path, methods: list[str] | None = None) -> str:
    """The Markdown table of :func:`summary_rows`."""
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    return "\n".join(lines + ["| " + " | ".join(row.values()) + " |" for row in summary_rows(folder, methods)])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="output folder of gadoreduce evaluate (per_case.csv)")
    parser.add_argument("--methods", help="comma-separated methods in this order (default: all but standard_dose)")
    args = parser.parse_args(argv)
    print(table(args.folder, args.methods.split(",") if args.methods else None))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
