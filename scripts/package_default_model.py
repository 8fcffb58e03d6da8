"""Package a trained model as GadoReduce's shipped default model, with its evaluation and ablation in the model card.

Usage (the steps for a model trained with low doses made on the fly; the shipped v1 was packaged with the
same script at its earlier version, see its model card and the README):
  gadoreduce train --brats ../shared/data --phantoms 8 --holdout 3 --output runs/otf16 --base-features 16 \\
      --patch 64 --batch 1 --steps 4000 --lr 2e-4 --precision bf16 --channels-last --threads 2
  gadoreduce evaluate --cases ../shared/data --subjects <the 3 held-out subjects> --doses 0.1,0.33 \\
      --model runs/otf16/model.pt --output runs/heldout-v2 --cache runs/eval-cache
  python scripts/package_default_model.py --run runs/otf16 --evaluation runs/heldout-v2 \\
      --brats ../shared/data --holdout 3 --ablation "v1 (shipped before)=runs/heldout-v1" ...
Only the weights change hands (no training code is pickled); the file gets its .sha256 and .md card.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "GadoReduce"))

from GadoReduceLib.model.files import DEFAULT_MODEL, load_model, save_model  # noqa: E402
from GadoReduceLib.io.resources import resources_dir  # noqa: E402
from GadoReduceLib.io.cases import find_brats_pairs  # noqa: E402
from GadoReduceLib.training.data import held_out  # noqa: E402

COLUMNS = {"psnr_brain": "PSNR_B dB", "psnr_lesions": "PSNR_L dB", "ssim": "SSIM", "c_bar": "c-bar", "c_hat": "c^"}


def evaluation_rows(per_case: Path) -> list[dict]:
    """One row per (case, simulator, dose): GadoReduce's metrics and the baselines' PSNR_L, c^, PSNR_B and SSIM."""
    with open(per_case, newline="") as handle:
        rows = list(csv.DictReader(handle))
    by_key = {}
    for row in rows:
        case = row["case"].split(" (")[0]
        key = (case, row.get("simulator") or row.get("low_dose_kind", ""), float(row["dose"]))
        by_key.setdefault(key, {})[row["method"]] = row
    out = []
    for (case, simulator, dose), methods in sorted(by_key.items()):
        ours = methods["gadoreduce"]
        entry = {"case": case, "simulator": simulator, "dose": dose}
        entry.update({label: float(ours[key]) for key, label in COLUMNS.items()})
        for method, tag in (("low_dose", "LD"), ("linear_scaling", "linear")):
            entry[f"PSNR_L {tag} dB"] = float(methods[method]["psnr_lesions"])
            entry[f"c^ {tag}"] = float(methods[method]["c_hat"])
        entry["PSNR_B LD dB"] = float(methods["low_dose"]["psnr_brain"])
        entry["SSIM LD"] = float(methods["low_dose"]["ssim"])
        out.append(entry)
    return out


def summary(rows: list[dict]) -> dict:
    """Per (simulator, dose): means of GadoReduce's metrics and how many rows meet each criterion of issue 13."""
    out = {}
    for simulator, dose in sorted({(r["simulator"], r["dose"]) for r in rows}):
        sel = [r for r in rows if r["simulator"] == simulator and r["dose"] == dose]
        n = len(sel)
        tag = f"{simulator} {dose:g}"
        out[f"{tag}: mean PSNR_L dB (LD, linear)"] = (
            f"{sum(r['PSNR_L dB'] for r in sel) / n:.2f} ({sum(r['PSNR_L LD dB'] for r in sel) / n:.2f}, "
            f"{sum(r['PSNR_L linear dB'] for r in sel) / n:.2f})")
        out[f"{tag}: mean c^, c-bar"] = (f"{sum(r['c^'] for r in sel) / n:.3f}, "
                                         f"{sum(r['c-bar'] for r in sel) / n:.3f}")
        out[f"{tag}: PSNR_L above both baselines"] = (
            f"{sum(r['PSNR_L dB'] > max(r['PSNR_L LD dB'], r['PSNR_L linear dB']) for r in sel)} of {n}")
        out[f"{tag}: PSNR_B and SSIM at least LD's"] = (
            f"{sum(r['PSNR_B dB'] >= r['PSNR_B LD dB'] and r['SSIM'] >= r['SSIM LD'] for r in sel)} of {n}")
    return out


def ablation_rows(entries: list[str], current: tuple[str, Path]) -> list[dict]:
    """One row per (variant, simulator, dose): mean held-out metrics of each ``NAME=EVALUATION_DIR``."""
    out = []
    for entry in [f"{current[0]}={current[1]}"] + list(entries):
        name, _, folder = entry.partition("=")
        rows = evaluation_rows(Path(folder) / "per_case.csv")
        for simulator, dose in sorted({(r["simulator"], r["dose"]) for r in rows}):
            sel = [r for r in rows if r["simulator"] == simulator and r["dose"] == dose]
            n = len(sel)
            mean = lambda key: sum(r[key] for r in sel) / n  # noqa: E731
            out.append({"variant": name, "simulator": simulator, "dose": dose, "PSNR_L dB": round(mean("PSNR_L dB"), 2),
                        "c^": round(mean("c^"), 3), "c-bar": round(mean("c-bar"), 3),
                        "PSNR_B dB": round(mean("PSNR_B dB"), 2), "SSIM": round(mean("SSIM"), 4),
                        "PSNR_L > both baselines": f"{sum(r['PSNR_L dB'] > max(r['PSNR_L LD dB'], r['PSNR_L linear dB']) for r in sel)}/{n}"})
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", required=True, type=Path, help="training output folder (model.pt, history.json)")
    p.add_argument("--evaluation", required=True, type=Path, help="gadoreduce evaluate output on the held-out cases")
    p.add_argument("--brats", required=True, type=Path, help="the BraTS folder given to training")
    p.add_argument("--holdout", type=int, default=3)
    p.add_argument("--phantoms", type=int, default=8, help="phantoms given to training")
    p.add_argument("--command", required=True, help="the training command, quoted in the card")
    p.add_argument("--ablation", action="append", default=[], metavar="NAME=DIR",
                   help="another variant's held-out evaluation (repeatable), for the ablation table")
    p.add_argument("--ablation-note", default="", help="what the ablation rows are, for the card")
    p.add_argument("--weaknesses", default="", help="known weaknesses, for the card")
    p.add_argument("--output", type=Path, default=resources_dir().joinpath(*DEFAULT_MODEL))
    args = p.parse_args()

    from GadoReduceLib.training.simulate import SIMULATOR_RANGES
    loaded = load_model(args.run / "model.pt")
    training = loaded.metadata.get("training", {})
    pairs = [name for name, *_ in find_brats_pairs(args.brats)]
    held = [s for i, s in enumerate(pairs) if held_out(i, len(pairs), args.holdout)]
    trained = [s for s in pairs if s not in held]
    rows = evaluation_rows(args.evaluation / "per_case.csv")
    summary_lines = (args.evaluation / "summary.md").read_text().splitlines()
    command_line = next((line.split("Command:", 1)[-1].strip("` ") for line in summary_lines
                         if "gadoreduce evaluate" in line), "")
    history = json.loads((args.run / "history.json").read_text())
    config = loaded.config
    metadata = {
        "name": f"GadoReduce default v2 ({config.base_features} features, low doses made on the fly, CPU-trained)",
        "description": "Conditional U-Net of Pinetz, Kobler et al. 2024 predicting the standard-dose contrast signal "
                       "from a low-dose and a pre-contrast T1w brain MRI, conditioned on dose, field strength, agent "
                       f"relaxivity and noise level. {config.base_features} features at the finest scale (the paper: "
                       f"32), {sum(p.numel() for p in loaded.model.parameters()) / 1e6:.1f} M parameters, trained "
                       f"for {training.get('steps')} steps on {training.get('patch_size')}^3 patches in bf16 on a "
                       "2-core CPU (the paper: 200,000 steps on 96^3). Every training sample made its own low dose "
                       "(training/simulate.py). The output is zero outside the tissue (inference/tissue.py).",
        "training_data": {
            "phantoms": f"{args.phantoms} digital phantoms (GadoReduce phantom generator, seeds 0-{args.phantoms - 1}, "
                        "1 mm, 1.5 or 3 T, five agents): synthetic, not patient data",
            "BraTS pairs": f"{len(trained)} BraTS 2018/2020 subjects (real pre-contrast T1 and contrast-enhanced T1, "
                           "shared/data); BraTS records no field strength or agent",
            "low doses": "made on the fly per sample from each registered pre-contrast/standard-dose pair "
                         "(training/simulate.py): " + ", ".join(f"{k} {v}" for k, v in SIMULATOR_RANGES.items()),
            "training_subjects": trained, "held_out_subjects": held,
            "command": args.command, "steps": training.get("steps"), "patch_size": training.get("patch_size"),
            "batch_size": training.get("batch_size"), "precision": training.get("precision"),
            "learning_rate": training.get("learning_rate"), "seed": training.get("seed"),
            "final_training_loss": history["train"][-1][1] if history.get("train") else None,
        },
        "validation_metrics": summary(rows),
        "evaluation": rows,
        "evaluation_note": "Held-out BraTS subjects (never seen in training) with synthetic low doses at 10 % and 33 % "
                           "from two simulators (signal-model: the physics training uses, without its randomization; "
                           "kspace: physics/lowdose_kspace.py, built differently, never used in training), against "
                           "their real standard-dose scans, in normalized units (gadoreduce evaluate; command: "
                           f"`{command_line}`). LD: the low-dose image; linear: x_PC + (x_LD - x_PC)/d. Synthetic "
                           "low doses from three subjects are software checks, not clinical evidence. "
                           + args.weaknesses,
        "ablation": ablation_rows(args.ablation, ("this model", args.evaluation)),
        "ablation_note": args.ablation_note,
        "voxel_size_mm": 1.0,
        "note": "research software, not for diagnosis",
    }
    path = save_model(args.output, loaded.model, loaded.config, loaded.normalization, loaded.gamma, metadata)
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB) with its .sha256 and model card")
    from GadoReduceLib.model.checksums import SHIPPED_MODELS, sha256_of
    if path.name in SHIPPED_MODELS and SHIPPED_MODELS[path.name] != sha256_of(path):
        print(f"now set SHIPPED_MODELS[{path.name!r}] in GadoReduceLib/model/checksums.py to {sha256_of(path)!r} "
              "(the package verifies the shipped file against it; Testing/test_default_model.py checks it)")


if __name__ == "__main__":
    main()
