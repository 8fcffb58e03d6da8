"""Inference time and peak memory of the conditional U-Net (paper configuration, random weights, or a model file).

Each configuration runs in its own process so that its peak resident memory (ru_maxrss) is its own.
Usage: PYTHONPATH=GadoReduce python benchmarks/bench_inference.py [--sizes 160x192x160,240x240x155]
       [--precisions fp32,bf16] [--modes whole,tiled] [--tile 128] [--overlap 32] [--device auto]
       [--model paper|default|PATH]   (paper: the paper's configuration with random weights; default: the
       shipped model, Resources/Models/gadoreduce_default.pt; PATH: a model file)
bf16 is skipped where the hardware emulates it (no AVX512-BF16/AMX, no CUDA) unless --force-bf16.
Tip: preloading jemalloc (Debian libjemalloc2) helps a lot on the CPU:
  LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2 \\
  MALLOC_CONF=thp:always,metadata_thp:auto,dirty_decay_ms:-1,muzzy_decay_ms:-1 python benchmarks/...
Prints figures only; no assertions.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time


def _load(model: str, dev):
    from GadoReduceLib.model.network import ConditionalUNet, ConditionNormalization
    from GadoReduceLib.model.files import load_model
    if model == "paper":
        return ConditionalUNet().eval().to(dev), ConditionNormalization()
    loaded = load_model(None if model == "default" else model, device=dev)
    return loaded.model, loaded.normalization


def _one(size: tuple[int, int, int], precision: str, mode: str, tile: int, overlap: int, device: str,
         model_name: str = "paper") -> dict:
    import numpy as np
    import torch

    from GadoReduceLib.inference.predict import choose_device, predict_contrast

    torch.manual_seed(0)
    dev = choose_device(device)
    model, normalization = _load(model_name, dev)
    rng = np.random.default_rng(0)
    z = rng.normal(size=size).astype(np.float32)
    x = (1.0 + 0.1 * rng.normal(size=size)).astype(np.float32)
    s = np.full(size, 0.05, np.float32)
    c = normalization.normalize(0.25, 3.0, 4.5, 0.03)
    start = time.perf_counter()
    y = predict_contrast(model, z, x, s, c, tile=tile if mode == "tiled" else None, overlap=overlap,
                         precision=precision, device=dev)
    seconds = time.perf_counter() - start
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2
    if dev.type == "cuda":
        peak_gb = torch.cuda.max_memory_allocated() / 1024 ** 3
    return {"seconds": seconds, "peak_gb": peak_gb, "device": str(dev), "threads": torch.get_num_threads()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="160x192x160,240x240x155", help="k x j x i sizes, comma separated")
    p.add_argument("--precisions", default="fp32,bf16")
    p.add_argument("--modes", default="whole,tiled")
    p.add_argument("--tile", type=int, default=128)
    p.add_argument("--overlap", type=int, default=32)
    p.add_argument("--device", default="auto")
    p.add_argument("--force-bf16", action="store_true")
    p.add_argument("--model", default="paper", help="paper (random weights), default (shipped model) or a file")
    p.add_argument("--one", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        size, precision, mode = args.one.split(":")
        result = _one(tuple(int(v) for v in size.split("x")), precision, mode, args.tile, args.overlap, args.device,
                      args.model)
        print(json.dumps(result))
        return

    import torch

    from GadoReduceLib.inference.predict import choose_device, native_bf16
    dev = choose_device(args.device)
    if "jemalloc" not in os.environ.get("LD_PRELOAD", "") and dev.type == "cpu":
        print("hint: jemalloc is not preloaded; on the CPU it gives 1.6-2.4x (see this script's docstring)")
    print(f"torch {torch.__version__}, device {dev}, {torch.get_num_threads()} threads, "
          f"native bf16: {native_bf16(dev)}; model: " + ("paper configuration (4 scales, 32 features), random "
                                                         "weights" if args.model == "paper" else args.model))
    print(f"{'size':>12} {'precision':>9} {'mode':>16} {'seconds':>8} {'peak GB':>8}")
    for size in args.sizes.split(","):
        for precision in args.precisions.split(","):
            if precision == "bf16" and not native_bf16(dev) and not args.force_bf16:
                print(f"{size:>12} {precision:>9} {'-':>16}  skipped: bf16 is emulated on this hardware "
                      "(many times slower than fp32); --force-bf16 runs it anyway")
                continue
            for mode in args.modes.split(","):
                label = f"tiled {args.tile}/{args.overlap}" if mode == "tiled" else mode
                cmd = [sys.executable, __file__, "--one", f"{size}:{precision}:{mode}", "--tile", str(args.tile),
                       "--overlap", str(args.overlap), "--device", args.device, "--model", args.model]
                done = subprocess.run(cmd, capture_output=True, text=True, env=os.environ)
                if done.returncode != 0:
                    print(f"{size:>12} {precision:>9} {label:>16}  failed: {done.stderr.strip().splitlines()[-1:]}")
                    continue
                r = json.loads(done.stdout.strip().splitlines()[-1])
                print(f"{size:>12} {precision:>9} {label:>16} {r['seconds']:8.1f} {r['peak_gb']:8.2f}", flush=True)


if __name__ == "__main__":
    main()
