"""Wall time and peak memory of ``gadoreduce predict`` per stage, for a 1 mm phantom and a BraTS pair (issue 14).

Each run is the real command in its own process (``python -m GadoReduceLib.cli predict``); the table holds the
stages of its ``record.json`` (``io.profiling``: seconds and peak resident memory while each ran), the command's
wall time and the process's peak resident memory (``os.wait4``; elastix executable children not included).
Inputs are made once in ``--work``: the built-in 1 mm phantom at 25 % and a BraTS subject (``../shared/data``)
with a synthetic 25 % low dose (``physics.lowdose``, the project's signal model). Prints figures only; no
assertions. Usage:

  PYTHONPATH=GadoReduce python benchmarks/bench_pipeline.py [--cases phantom,brats] [--subject NAME]
      [--allocators default,jemalloc] [--repeat 1] [--work /tmp/gadoreduce-bench] [-- extra predict options]

``--allocators``: "default" runs the command as a user starts it; "jemalloc" preloads jemalloc
(``LD_PRELOAD``, Debian libjemalloc2) as ``../shared/notes/performance.md`` did; "glibc" switches off the
command's own allocator setting (``GADOREDUCE_ALLOCATOR=glibc``), to measure what it gives; "no-huge-pages"
keeps the setting but PyTorch's tensors off transparent huge pages (``THP_MEM_ALLOC_ENABLE=0``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "GadoReduce"))
JEMALLOC = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"
JEMALLOC_CONF = "thp:always,metadata_thp:auto,dirty_decay_ms:-1,muzzy_decay_ms:-1"
DOSE = 0.25


def phantom_inputs(work: Path) -> dict:
    from GadoReduceLib.io.imageio import dose_name
    from GadoReduceLib.phantom.generate import PhantomConfig, generate_phantom, write_phantom
    folder = work / "phantom"
    config = PhantomConfig(seed=0, doses=(DOSE,), size="full", max_motion_deg=5.0, max_motion_mm=5.0)
    if not (folder / "pre_contrast.nii.gz").exists():
        write_phantom(generate_phantom(config), folder)
    return {"pre": folder / "pre_contrast.nii.gz", "low": folder / f"{dose_name(DOSE)}.nii.gz",
            "field_strength": config.field_strength, "agent": config.agent}


def brats_inputs(work: Path, subject: str, data: Path) -> dict | None:
    import SimpleITK as sitk

    from GadoReduceLib.io.imageio import write_image
    from GadoReduceLib.physics.lowdose import synthesize_low_dose
    found = sorted(data.rglob(f"{subject}_t1.nii*"))
    if not found:
        print(f"BraTS subject {subject} not found under {data}: the BraTS case is skipped")
        return None
    t1 = found[0]
    t1ce = t1.with_name(t1.name.replace("_t1.", "_t1ce."))
    low = work / subject / "low_dose_025.nii.gz"
    if not low.exists():
        image, _ = synthesize_low_dose(sitk.ReadImage(str(t1)), sitk.ReadImage(str(t1ce)), DOSE, seed=0)
        write_image(image, low)
    return {"pre": t1, "low": low, "field_strength": 3.0, "agent": "gadobutrol"}


def run_predict(inputs: dict, output: Path, allocator: str, extra: list[str]) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "GadoReduce"))
    if allocator == "jemalloc":
        env.update(LD_PRELOAD=JEMALLOC, MALLOC_CONF=JEMALLOC_CONF)
    elif allocator == "glibc":
        env["GADOREDUCE_ALLOCATOR"] = "glibc"
    elif allocator == "no-huge-pages":
        env["THP_MEM_ALLOC_ENABLE"] = "0"
    command = [sys.executable, "-m", "GadoReduceLib.cli", "predict", "--pre", str(inputs["pre"]),
               "--low", str(inputs["low"]), "--dose", str(DOSE), "--field-strength", str(inputs["field_strength"]),
               "--agent", inputs["agent"], "--output", str(output), "--overwrite"] + extra
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)  # this child's own resource usage (peak resident memory)
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code:
        print(out)
        raise SystemExit(f"predict failed (exit {code})")
    record = json.loads((output / "record.json").read_text())
    # ru_maxrss restarts with every stage (io.profiling resets the high-water mark): the peak is the largest
    peak_mb = max([usage.ru_maxrss / 1024] + [figures["peak_memory_mb"] for figures in record["stages"].values()])
    return {"wall_s": wall, "peak_gb": peak_mb / 1024, "stages": record["stages"], "output": out}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default="phantom,brats")
    parser.add_argument("--subject", default="Brats18_TCIA02_370_1")
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--allocators", default="default")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--work", default="/tmp/gadoreduce-bench")
    parser.add_argument("extra", nargs="*", help="further gadoreduce predict options (after --)")
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    import torch
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               "?") if os.path.exists("/proc/cpuinfo") else "?"
    print(f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, extra options {args.extra or 'none'}")
    cases = {}
    for name in args.cases.split(","):
        inputs = phantom_inputs(work) if name == "phantom" else brats_inputs(work, args.subject, Path(args.data))
        if inputs is not None:
            cases[name] = inputs
    rows = []
    for name, inputs in cases.items():
        for allocator in args.allocators.split(","):
            for repeat in range(args.repeat):
                result = run_predict(inputs, work / f"out-{name}-{allocator}", allocator, args.extra)
                rows.append((name, allocator, repeat, result))
                stages = result["stages"]
                print(f"\n{name}, allocator {allocator}, run {repeat + 1}: wall {result['wall_s']:.1f} s, "
                      f"process peak {result['peak_gb']:.2f} GB")
                print("| stage | seconds | peak memory GB |\n|---|---|---|")
                for stage, figures in stages.items():
                    print(f"| {stage} | {figures['seconds']:.2f} | {figures['peak_memory_mb'] / 1024:.2f} |")
    print("\n| case | allocator | wall s | preprocessing s | network s | peak GB |\n|---|---|---|---|---|---|")
    for name, allocator, _, result in rows:
        s = result["stages"]
        print(f"| {name} | {allocator} | {result['wall_s']:.1f} | {s['preprocessing']['seconds']:.1f} | "
              f"{s['network']['seconds']:.1f} | {result['peak_gb']:.2f} |")


if __name__ == "__main__":
    main()
