"""Training step profile: data, forward, backward and optimizer time, steps/s and training voxels/s.

Compares the shipped model's recipe ("before": fixed low dose, fp32, 8 features, 48^3 x 2) with the on-the-fly
recipe and its options ("after": a low dose made per sample, bf16 autocast, channels_last_3d) and wider
networks, on one training pair: the first PairCase ``.npz`` in ``--cache`` (what ``gadoreduce train`` caches),
else a 1 mm digital phantom preprocessed here (about a minute).

Usage: PYTHONPATH=GadoReduce python benchmarks/bench_training.py [--cache runs/pair-cache] [--steps 6]
       [--configs before,after,...] [--threads 2]
Tip: preload jemalloc (see bench_inference.py). bf16 is fast only with AVX512-BF16/AMX or a GPU.
Prints figures only; no assertions.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

CONFIGS = {  # name: (sampler, base_features, patch, batch, precision, channels_last)
    "before": ("fixed", 8, 48, 2, "fp32", False),
    "before+bf16": ("fixed", 8, 48, 2, "bf16", True),
    "on-the-fly 8": ("on-the-fly", 8, 64, 1, "bf16", True),
    "after": ("on-the-fly", 12, 64, 1, "bf16", True),
    "on-the-fly 16": ("on-the-fly", 16, 64, 1, "bf16", True),
    "on-the-fly 32 (paper)": ("on-the-fly", 32, 64, 1, "bf16", True),
}


def load_pair(cache: Path | None):
    from GadoReduceLib.training.simulate import PairCase, pair_from_case
    for path in sorted(cache.glob("*.npz")) if cache and cache.is_dir() else []:
        try:
            return PairCase.load(path)
        except (KeyError, TypeError, ValueError):  # another kind of cached case
            continue
    from GadoReduceLib.io.cases import phantom_spec
    from GadoReduceLib.phantom.generate import PhantomConfig
    print("no cached training pair: preprocessing a 1 mm phantom ...", flush=True)
    spec = phantom_spec(PhantomConfig(seed=0, doses=(), size="full"))
    return pair_from_case(spec.name, spec.load())


def fixed_case(pair):
    """A TrainingCase with one low dose made once over the whole volume (the old sampler's data)."""
    import numpy as np

    from GadoReduceLib.training.data import TrainingCase
    from GadoReduceLib.training.simulate import fixed_draw, simulate_window
    draw = fixed_draw(0.2, pair.field_strength, pair.agent)
    full = simulate_window(pair, (slice(None),) * 3, draw, np.random.default_rng(0))
    return TrainingCase(pair.case_id, full["z_ld"], full["x_ld"], full["s_ld"], full["y"], full["p"], full["b"],
                        draw.dose, draw.field_strength, draw.relaxivity, float(full["noise_sigma"]), 1.0)


def profile(name, pair, fixed, steps: int, threads: int) -> dict:
    import numpy as np
    import torch

    from GadoReduceLib.model.network import ConditionalUNet, ConditionNormalization, ModelConfig
    from GadoReduceLib.training.loop import TrainConfig, draw_sample
    from GadoReduceLib.training.patches import augment, collate, weighted_huber_loss
    sampler, features, patch, batch, precision, channels_last = CONFIGS[name]
    torch.set_num_threads(threads)
    config = TrainConfig(patch_size=patch, batch_size=batch, precision=precision, channels_last=channels_last,
                         model=ModelConfig(base_features=features))
    model = ConditionalUNet(config.model)
    if channels_last:
        model = model.to(memory_format=torch.channels_last_3d)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    normalization = ConditionNormalization()
    case = pair if sampler == "on-the-fly" else fixed
    rng = np.random.default_rng(0)
    times = {"data": [], "forward": [], "backward": [], "optimizer": []}
    for step in range(steps + 1):  # the first step warms up and is not counted
        t0 = time.perf_counter()
        samples = [draw_sample(case, config, rng) for _ in range(batch)]
        batch_tensors = collate([augment(s, rng) for s, _ in samples], [c for _, c in samples])
        t1 = time.perf_counter()
        inputs = batch_tensors["inputs"]
        if channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last_3d)
        cond = normalization.normalize(*batch_tensors["conditions"].T)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            prediction = model(inputs, cond)
        loss = weighted_huber_loss(prediction.float(), batch_tensors["y"], batch_tensors["b"], batch_tensors["p"])
        t2 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        t3 = time.perf_counter()
        optimizer.step()
        t4 = time.perf_counter()
        if step:
            for key, dt in zip(times, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                times[key].append(dt)
    mean = {k: sum(v) / len(v) for k, v in times.items()}
    total = sum(mean.values())
    return {"config": name, "features": features, "patch": patch, "batch": batch, "precision": precision,
            "sampler": sampler, "parameters_M": sum(p.numel() for p in model.parameters()) / 1e6, **mean,
            "step_s": total, "steps_per_s": 1 / total, "voxels_per_s": batch * patch ** 3 / total}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cache", type=Path, default=Path("runs/pair-cache"))
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated subset of {', '.join(CONFIGS)}")
    args = p.parse_args()
    pair = load_pair(args.cache)
    fixed = fixed_case(pair)
    print(f"pair {pair.case_id}, {pair.shape} voxels of {pair.spacing} mm; {args.threads} threads; "
          f"mean of {args.steps} steps after one warm-up step")
    header = (f"{'configuration':24s} {'sampler':10s} {'feat':>4s} {'patch':>6s} {'prec':>5s} {'params':>7s} "
              f"{'data s':>7s} {'fwd s':>7s} {'bwd s':>7s} {'opt s':>6s} {'step s':>7s} {'steps/s':>8s} "
              f"{'Mvox/s':>7s}")
    print(header)
    for name in args.configs.split(","):
        r = profile(name.strip(), pair, fixed, args.steps, args.threads)
        print(f"{r['config']:24s} {r['sampler']:10s} {r['features']:4d} {r['patch']:3d}x{r['batch']:<2d} "
              f"{r['precision']:>5s} {r['parameters_M']:6.2f}M {r['data']:7.3f} {r['forward']:7.3f} "
              f"{r['backward']:7.3f} {r['optimizer']:6.3f} {r['step_s']:7.3f} {r['steps_per_s']:8.3f} "
              f"{r['voxels_per_s'] / 1e6:7.3f}", flush=True)


if __name__ == "__main__":
    main()
