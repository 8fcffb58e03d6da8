"""Evaluation report (issue 7): ``per_case.csv``, ``per_lesion.csv``, ``summary.md`` and ``timings.json``.

The CSVs and the summary hold no timestamps and no timings, so the same command on the same data gives
byte-identical files; timings go to ``timings.json``. Numbers in the CSVs have 6 significant digits.
Statistics: for each dose and metric, GadoReduce against the better of the two baselines (by the mean of the
tested quantity over the cases where both are finite): paired t-test and Wilcoxon signed-rank test
(``metrics.paired_tests``). The tested quantity is the metric itself (PSNR, SSIM, MAE_CE, Dice, Jaccard,
sensitivity, false detections), |value - 1| for c-bar and c^ (1 = the standard dose's enhancement), and
|value - value of the standard dose| for CNR, LBR and CEP (the standard dose is the target).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from .. import DISCLAIMER, __version__
from ..io.tables import csv_text
from ..io.atomic import write_text
from .methods import BASELINES, OVERLAP_PERCENTS, REFERENCE
from ..metrics.quality import paired_tests
from ..metrics.detection import SIZE_THRESHOLDS_MM

SYNTHETIC_NOTE = ("Synthetic low doses are synthetic: they are computed from the standard-dose and pre-contrast "
                  "pair (GadoReduceLib.physics.lowdose), not acquired, and phantom cases are digital phantoms; results on "
                  "them are software checks, not clinical evidence.")

# (column, label, goal): goal "higher"/"lower" is better, "one": closest to 1, "reference": closest to x_SD's value
METRICS = ([("psnr_image", "PSNR_I (dB)", "higher"), ("psnr_brain", "PSNR_B (dB)", "higher"),
            ("psnr_lesions", "PSNR_L (dB, mean over lesions)", "higher"), ("ssim", "SSIM", "higher"),
            ("mae_ce", "MAE_CE (normalized units)", "lower"), ("c_bar", "c-bar (mean over lesions)", "one"),
            ("c_hat", "c^ (mean over lesions)", "one"), ("cnr", "CNR", "reference"), ("lbr", "LBR", "reference"),
            ("cep", "CEP (%)", "reference")]
           + [(f"dice_{p:02d}", f"Dice, top {p} %", "higher") for p in OVERLAP_PERCENTS]
           + [(f"jaccard_{p:02d}", f"Jaccard, top {p} %", "higher") for p in OVERLAP_PERCENTS]
           + [(f"sensitivity_{s:g}mm", f"sensitivity, lesions >= {s:g} mm", "higher") for s in SIZE_THRESHOLDS_MM]
           + [(f"false_detections_{s:g}mm", f"false detections >= {s:g} mm per case", "lower")
              for s in SIZE_THRESHOLDS_MM])


def fmt(value) -> str:
    """CSV text of a value: integers and strings as they are, floats with 6 significant digits, nan, inf."""
    if isinstance(value, (bool, np.bool_)):
        return str(int(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return f"{value:.6g}"
    return str(value)


# ----------------------------------------------------------------------------- statistics

def _values(rows, method, dose, column) -> dict[str, float]:
    return {r["case"]: float(r[column]) for r in rows if r["method"] == method and r["dose"] == dose and column in r}


def tested_quantity(rows, method, dose, column, goal) -> dict[str, float]:
    """{case: score} compared between methods (see the module docstring); only finite scores."""
    values = _values(rows, method, dose, column)
    if goal == "one":
        values = {c: abs(v - 1.0) for c, v in values.items()}
    elif goal == "reference":
        ref = _values(rows, REFERENCE, dose, column)
        values = {c: abs(v - ref[c]) for c, v in values.items() if c in ref}
    return {c: v for c, v in values.items() if math.isfinite(v)}


def lower_is_better(goal: str) -> bool:
    return goal in ("lower", "one", "reference")


def compare_with_best_baseline(rows, dose, column, goal, method="gadoreduce") -> dict:
    """{"baseline", "n", "quantity", and the keys of ``metrics.paired_tests`` or "note"} for one metric."""
    ours = tested_quantity(rows, method, dose, column, goal)
    best, best_mean, best_scores = None, None, None
    for baseline in BASELINES:
        theirs = tested_quantity(rows, baseline, dose, column, goal)
        common = sorted(set(ours) & set(theirs))
        if not common:
            continue
        mean = float(np.mean([theirs[c] for c in common]))
        better = best_mean is None or (mean < best_mean if lower_is_better(goal) else mean > best_mean)
        if better:
            best, best_mean, best_scores = baseline, mean, (common, theirs)
    quantity = {"one": "abs(x - 1)", "reference": "abs(x - x_SD value)"}.get(goal, "value")
    if best is None:
        return {"baseline": "n/a", "n": 0, "quantity": quantity, "note": "no finite values"}
    common, theirs = best_scores
    out = {"baseline": best, "n": len(common), "quantity": quantity}
    if len(common) < 2:
        out["note"] = "n < 2 cases: no test"
        return out
    out.update(paired_tests([ours[c] for c in common], [theirs[c] for c in common]))
    return out


# ----------------------------------------------------------------------------- summary

def _mean_sd(values) -> str:
    finite = [v for v in values if not math.isnan(v)]
    if not finite:
        return "n/a"
    if any(math.isinf(v) for v in finite):
        return "inf" if all(v == math.inf for v in finite) else "n/a (inf)"
    mean = float(np.mean(finite))
    if len(finite) < 2:
        return f"{mean:.4g}"
    return f"{mean:.4g} ± {float(np.std(finite, ddof=1)):.2g}"


def _p(value) -> str:
    return f"{value:.3g}" if value >= 1e-4 else f"{value:.1e}"


def summary_markdown(result: dict, methods: list[str], doses, info: dict) -> str:
    """The Markdown summary (deterministic for the same inputs). ``info``: command, model_name, model_file,
    model_sha256, ablation (None or {"name", "file", "sha256"}), variants ({method: {"name", "file", "sha256"}},
    optional), figures (list of relative paths)."""
    rows = result["cases"]
    cases = sorted({r["case"] for r in rows})
    sources = {}
    for r in rows:
        sources.setdefault(r["case"], r["source"])
    pairs = {(r["case"], r["dose"]): r["low_dose_kind"] for r in rows}
    assumed = sorted({r["case"] for r in rows if int(r["assumed_metadata"])})
    lines = ["# GadoReduce evaluation report", "",
             f"> {DISCLAIMER} Results below are a benchmark of research software, not clinical evidence.", "",
             f"> {SYNTHETIC_NOTE}", "", "## Run", "",
             f"- Command: `{info['command']}`", f"- GadoReduce version: {__version__}",
             f"- Model: {info['model_name']} (file `{info['model_file']}`, sha256 `{info['model_sha256']}`)"]
    ablation = info.get("ablation")
    if ablation:
        lines.append(f"- Fixed-condition ablation model: {ablation['name']} (file `{ablation['file']}`, "
                     f"sha256 `{ablation['sha256']}`)")
    else:
        lines.append("- Fixed-condition ablation: not available (no --ablation-model given); the "
                     "gadoreduce_fixed_condition method is not evaluated.")
    for method, variant in sorted(info.get("variants", {}).items()):
        lines.append(f"- Variant `{method}`: model {variant['name']} (file `{variant['file']}`, "
                     f"sha256 `{variant['sha256']}`)")
    by_source = {}
    for c in cases:
        by_source[sources[c]] = by_source.get(sources[c], 0) + 1
    lines += [f"- Cases: {len(cases)} ({', '.join(f'{n} {s}' for s, n in sorted(by_source.items()))}); doses "
              f"{', '.join(f'{d:g}' for d in doses)} of the standard dose",
              f"- Low doses: {sum(k == 'real' for k in pairs.values())} (case, dose) pairs with a real low-dose scan, "
              f"{sum(k == 'synthetic' for k in pairs.values())} with a synthetic low dose "
              "(seeded by case name and dose)"]
    if assumed:
        values = sorted({"%g T, %s" % (r["field_strength"], r["agent"]) for r in rows if int(r["assumed_metadata"])})
        lines.append(f"- Field strength and agent assumed (not recorded) for {len(assumed)} case(s): "
                     f"{', '.join(values)}")
    lines += ["- Comparison: every method against the registered standard dose on the preprocessing working grid, "
              "in normalized units (95th percentile of the pre-contrast brain = 1). Metric definitions: "
              "docs/evaluation.md.", "- Values: mean ± sd over cases (sd with n - 1); `n/a` where undefined "
              "(e.g. no lesion).", ""]
    for dose in doses:
        n = len({r["case"] for r in rows if r["dose"] == dose})
        lines += [f"## Dose {dose:g} ({n} case{'s' if n != 1 else ''})", "",
                  "| metric | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]
        for column, label, _ in METRICS:
            cells = [_mean_sd([float(r[column]) for r in rows if r["method"] == m and r["dose"] == dose])
                     for m in methods]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines += ["", "Lesion detection, pooled over cases (paper 002): detected / reference lesions, "
                  "false detections per case.", "", "| method | " +
                  " | ".join(f">= {s:g} mm" for s in SIZE_THRESHOLDS_MM) + " |",
                  "|---" * (len(SIZE_THRESHOLDS_MM) + 1) + "|"]
        for m in methods:
            sel = [r for r in rows if r["method"] == m and r["dose"] == dose]
            cells = []
            for s in SIZE_THRESHOLDS_MM:
                ref = sum(int(r[f"n_lesions_{s:g}mm"]) for r in sel)
                det = sum(int(r[f"detected_{s:g}mm"]) for r in sel)
                false = float(np.mean([float(r[f"false_detections_{s:g}mm"]) for r in sel])) if sel else float("nan")
                sens = f"{det}/{ref} ({det / ref:.0%})" if ref else "0/0"
                cells.append(f"{sens}; {false:.1f} false")
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
        lines += ["", "GadoReduce against the best baseline (paired t-test and Wilcoxon signed-rank test; "
                  "difference = GadoReduce - baseline of the tested quantity):", "",
                  "| metric | tested | best baseline | n | mean difference | t-test p | Wilcoxon p |",
                  "|---|---|---|---|---|---|---|"]
        for column, label, goal in METRICS:
            c = compare_with_best_baseline(rows, dose, column, goal)
            if "note" in c:
                lines.append(f"| {label} | {c['quantity']} | {c['baseline']} | {c['n']} | {c['note']} | | |")
            else:
                lines.append(f"| {label} | {c['quantity']} | {c['baseline']} | {c['n']} | "
                             f"{c['mean_difference']:.4g} | {_p(c['t_pvalue'])} | {_p(c['wilcoxon_pvalue'])} |")
        lines.append("")
    calibrations = result.get("calibration", [])
    if calibrations:
        lines += ["## Uncertainty calibration", "", "Spearman rank correlation of the gadoreduce image's voxel-wise "
                  "absolute error (against the standard dose) with its uncertainty (spread over "
                  f"{info.get('passes', '?')} passes: ensemble members times flips) inside the brain; "
                  "`uncertainty_calibration.csv` and `figures/uncertainty_calibration.png` give the error per "
                  "uncertainty decile.", "", "| case | dose | simulator | Spearman |", "|---|---|---|---|"]
        lines += [f"| {c['case']} | {c['dose']:g} | {c['simulator']} | {c['spearman']:.3f} |" for c in calibrations]
        lines.append("")
    lines += ["## Files", "", "- `per_case.csv`: one row per case, dose and method (every metric).",
              "- `per_lesion.csv`: one row per case, dose, method and reference lesion (c-bar, c^, PSNR_L, "
              "detected).", "- `timings.json`: seconds per case and dose (not part of the reproducible files)."]
    lines += [f"- `{f}`" for f in info.get("figures", [])]
    return "\n".join(lines) + "\n"


def write_report(result: dict, methods: list[str], doses, output: Path, info: dict) -> dict[str, Path]:
    """Write per_case.csv, per_lesion.csv, summary.md and timings.json under ``output``; returns the paths."""
    output = Path(output)
    paths = {"per_case": write_text(output / "per_case.csv", csv_text(result["cases"], format_value=fmt)),
             "per_lesion": write_text(output / "per_lesion.csv", csv_text(result["lesions"], format_value=fmt)
                                             if result["lesions"] else "case,dose,method,lesion\n"),
             "summary": write_text(output / "summary.md", summary_markdown(result, methods, doses, info)),
             "timings": write_text(output / "timings.json", json.dumps(result["timings"], indent=1) + "\n")}
    if result.get("calibration"):
        rows = [{"case": c["case"], "dose": c["dose"], "simulator": c["simulator"], "spearman": c["spearman"], "bin": i,
                 **b} for c in result["calibration"] for i, b in enumerate(c["bins"])]
        paths["calibration"] = write_text(output / "uncertainty_calibration.csv", csv_text(rows, format_value=fmt))
    return paths
