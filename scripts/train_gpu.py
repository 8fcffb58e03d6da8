"""GPU recipe: train the paper configuration on one GPU machine for a fixed wall time and package the model.

Needs nothing but this repository and its pinned packages (``pip install -e .``): the training pairs are
digital phantoms made by GadoReduce's own generator (plus BraTS pairs when a folder is given); every sample
gets its own low dose made on the fly (``training.simulate``). Steps: build and cache the pairs, train
32 features / 96^3 patches / bf16 / channels_last for ``--minutes`` of wall time (the step count and the
cosine schedule are fitted to it after the first steps), write ``OUTPUT/model.pt`` with its ``.sha256`` and a
card ``OUTPUT/model.md`` that names the recipe. On a CPU the same script runs as a smoke test (``--smoke``: a tiny
network, small phantoms, a few steps).

  python scripts/train_gpu.py --output runs/gpu [--minutes 10] [--phantoms 12] [--brats ../shared/data]
  python scripts/train_gpu.py --output /tmp/gpu-smoke --smoke

Then evaluate it (``gadoreduce evaluate --model OUTPUT/model.pt ...``) before it replaces the shipped model.
Synthetic training data; research software, not for diagnosis.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "GadoReduce"))

PAPER = {"base_features": 32, "patch": 96, "batch": 1, "precision": "bf16", "lr": 1e-4}
SMOKE = {"base_features": 4, "patch": 32, "batch": 1, "precision": "fp32", "lr": 1e-3}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--output", required=True, type=Path)
    p.add_argument("--minutes", type=float, default=10.0, help="wall time of the training steps (default 10)")
    p.add_argument("--phantoms", type=int, default=12, help="digital phantoms generated (default 12)")
    p.add_argument("--brats", type=Path, help="optional folder of BraTS pairs added to the phantoms")
    p.add_argument("--smoke", action="store_true", help="CPU smoke test: tiny network, 2 mm phantoms, 6 steps")
    args = p.parse_args(argv)

    import torch

    from GadoReduceLib.model.files import card_path
    from GadoReduceLib.model.network import ModelConfig
    from GadoReduceLib.training.data import training_sets
    from GadoReduceLib.training.loop import TrainConfig, train

    recipe = SMOKE if args.smoke else PAPER
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu" and not args.smoke:
        print("no CUDA device here: this recipe is for a GPU machine (use --smoke to test it on a CPU)")
        return 2
    started = time.perf_counter()
    cases, validation = training_sets(phantoms=2 if args.smoke else args.phantoms, brats=args.brats,
                                      holdout=3 if args.brats else 0, phantom_size="small" if args.smoke else "full",
                                      cache_dir=args.output / "cache", low_doses="on-the-fly", log=print)
    prepared = time.perf_counter() - started
    config = TrainConfig(steps=6 if args.smoke else 200_000, patch_size=recipe["patch"],
                         batch_size=recipe["batch"], learning_rate=recipe["lr"], precision=recipe["precision"],
                         channels_last=not args.smoke, max_minutes=None if args.smoke else args.minutes,
                         checkpoint_every=500, validate_every=1000, validation_patches=1,
                         model=ModelConfig(base_features=recipe["base_features"],
                                           **({"scales": 2, "blocks_per_scale": 1} if args.smoke else {})))
    result = train(cases, validation, args.output, config, device=device, log=print)
    model = result["paths"].get("model")
    if model is None:
        print("training ended without a model file")
        return 1
    card = card_path(model)  # written with the model and its .sha256; the recipe is added to it
    card.write_text(card.read_text() + (
        f"\n## Recipe\n\nscripts/train_gpu.py{' --smoke' if args.smoke else ''}: "
        f"{recipe['base_features']} features, {recipe['patch']}^3 patches, {recipe['precision']}, "
        f"{result['step']} steps on {device} ({torch.cuda.get_device_name() if device == 'cuda' else 'CPU'}), "
        f"{len(cases)} training pairs (digital phantoms{' and BraTS pairs' if args.brats else ''}, low doses made "
        f"on the fly), data preparation {prepared:.0f} s.\n\nResearch software, not for diagnosis; evaluate it "
        "with `gadoreduce evaluate` before use.\n"))
    print(f"model {model} ({result['step']} steps), card {card}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
