"""The ``gadoreduce train`` command: its options, their defaults and the run (the entry point sits in its stage).

Every default is read where it is defined: ``loop.TrainConfig`` (steps, patch, batch, lr, seed, checkpoint and
validation intervals, threads), ``model.network.ModelConfig`` (base_features, scales) and the parameters of
``data.training_sets`` (holdout, phantoms, phantom_size, dose_range, backend). They are looked up only when the
command runs or its help is shown, so that building the parser imports neither torch nor the training code.
A ``--config`` JSON file may set any key of :data:`TRAIN_OPTIONS`; the command line wins.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

TRAIN_OPTIONS = {"cases": ("data", "case_dirs"), "phantoms": ("data", "phantoms"), "brats": ("data", "brats"),
                 "holdout": ("data", "holdout"), "steps": ("train", "steps"), "patch": ("train", "patch_size"),
                 "batch": ("train", "batch_size"), "base_features": ("model", "base_features"),
                 "scales": ("model", "scales"), "lr": ("train", "learning_rate"), "seed": ("train", "seed"),
                 "phantom_size": ("data", "phantom_size"), "dose_range": ("data", "dose_range"),
                 "cache": ("data", "cache_dir"), "backend": ("data", "backend"),
                 "checkpoint_every": ("train", "checkpoint_every"), "validate_every": ("train", "validate_every"),
                 "threads": ("train", "threads"), "low_doses": ("data", "low_doses"),
                 "precision": ("train", "precision"), "channels_last": ("train", "channels_last"),
                 "init": ("train", "init"), "max_minutes": ("train", "max_minutes"),
                 "sequences": ("model", "sequences"), "low_dose": ("model", "low_dose"),
                 "huber_epsilon": ("train", "huber_epsilon")}
"""Option (command line and --config key) -> (where its default is defined, parameter name there): "train"
``TrainConfig``, "model" ``ModelConfig``, "data" ``training_sets``."""


def train_defaults() -> dict:
    """{option: default} read from ``TrainConfig``, ``ModelConfig`` and ``training_sets`` (imports torch)."""
    import dataclasses
    import inspect

    from ..model.network import ModelConfig
    from .data import training_sets
    from .loop import TrainConfig
    fields = lambda cls: {f.name: f.default for f in dataclasses.fields(cls)}  # noqa: E731
    sources = {"train": fields(TrainConfig), "model": fields(ModelConfig),
               "data": {name: p.default for name, p in inspect.signature(training_sets).parameters.items()}}
    return {option: sources[source][name] for option, (source, name) in TRAIN_OPTIONS.items()}


def _text(value) -> str:
    if isinstance(value, (tuple, list)):
        return "-".join(_text(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Appends "(default X)" from :func:`train_defaults` to the help of options with a default."""

    def _get_help_string(self, action):
        text = super()._get_help_string(action) or ""
        default = train_defaults().get(action.dest) if action.dest in TRAIN_OPTIONS else None
        if default is None or default == () or action.dest in ("cache", "low_dose"):
            return text
        return f"{text} (default {_text(default)})".replace("%", "%%")


def train_options(args: argparse.Namespace) -> dict:
    """The options of a run: the defaults, updated by ``--config`` JSON, updated by the command line."""
    options = train_defaults()
    if getattr(args, "config", None):
        try:
            data = json.loads(Path(args.config).read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise ValueError(f"cannot read the training configuration {args.config}: {error}") from None
        if not isinstance(data, dict):
            raise ValueError(f"the training configuration {args.config} must be a JSON object with keys "
                             f"{', '.join(TRAIN_OPTIONS)}")
        unknown = set(data) - set(options)
        if unknown:
            raise ValueError(f"unknown keys {sorted(unknown)} in {args.config}; use {', '.join(options)}")
        options.update(data)
    options.update({k: v for k, v in vars(args).items() if k in options and v is not None})
    return options


def _typed(value, default):
    """``value`` converted to the type of its default (int, float, str, tuple); as it is when the default is None."""
    if default is None or value is None:
        return value
    return tuple(value) if isinstance(default, tuple) else type(default)(value)


def _sequence_list(text: str) -> tuple[str, ...]:
    """``--sequences flair,t2`` -> ("flair", "t2"); argparse error for names GadoReduce does not take."""
    from ..io.cases import SEQUENCES
    names = tuple(n.strip().lower() for n in text.split(",") if n.strip())
    bad = [n for n in names if n not in SEQUENCES]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown sequence {', '.join(bad)}: use {', '.join(SEQUENCES)} "
                                         "(comma-separated)")
    return names


def run_train(args: argparse.Namespace) -> int:
    """The ``gadoreduce train`` command."""
    from ..model.network import ModelConfig
    from .data import training_sets
    from .loop import TrainConfig, distributed_context, rank_zero_first, train
    defaults = train_defaults()
    o = {k: _typed(v, defaults[k]) for k, v in train_options(args).items()}
    values = {source: {name: o[option] for option, (s, name) in TRAIN_OPTIONS.items() if s == source}
              for source in ("train", "model", "data")}
    output = Path(args.output)
    config = TrainConfig(**values["train"], model=ModelConfig(**values["model"]))
    rank, _ = distributed_context()
    log = print if rank == 0 else (lambda *a, **k: None)
    data = dict(values["data"], seed=o["seed"], sequences=config.model.sequences,
                cache_dir=Path(o["cache"]) if o["cache"] else output / "cache",
                log=log)  # one seed for the case choice and the training
    cases, validation = rank_zero_first(lambda: training_sets(**data))
    folds = int(getattr(args, "folds", None) or 1)
    if folds > 1:
        if distributed_context()[1] > 1:
            raise ValueError("--folds trains its members one after the other in one process; run it without torchrun")
        path = train_folds(cases, folds, output, config, args.resume, log)
        print(f"ensemble of {folds} members written to {path}")
        return 0
    result = train(cases, validation, output, config, resume=args.resume, log=log)
    if rank == 0:
        last = result["history"]["train"][-1] if result["history"]["train"] else None
        if last:
            print(f"step {last[0]}: training loss {last[1]:.5f}; gamma {result['gamma']:.4f}; outputs in {output}")
    return 0


def fold_split(cases: list, folds: int, seed: int = 0) -> list[tuple[list, list]]:
    """(training, validation) of each of ``folds`` members: the cases in a seeded random order dealt into ``folds``
    disjoint validation folds; member k trains on the others. ValueError when a fold would be empty."""
    import numpy as np
    if folds < 2 or folds > len(cases):
        raise ValueError(f"--folds {folds}: give 2 to {len(cases)} folds for {len(cases)} training cases")
    order = np.random.default_rng([seed, 515151]).permutation(len(cases))
    parts = [[cases[i] for i in order[k::folds]] for k in range(folds)]
    return [([c for j, part in enumerate(parts) if j != k for c in part], parts[k]) for k in range(folds)]


def train_folds(cases, folds: int, output: Path, config, resume: bool = False, log=print) -> Path:
    """``train --folds K``: K members on disjoint validation folds (:func:`fold_split`; member k's weights seeded
    ``seed + k``) in ``OUTPUT/fold_k``, then their ensemble ``OUTPUT/model.pt`` (``model.files.save_ensemble``).
    With ``resume``, finished members are kept and an interrupted one continues. Returns the ensemble's path."""
    from dataclasses import replace

    from ..model.files import load_model, save_ensemble
    from .loop import MODEL_NAME, train
    members = []
    for k, (fold_train, fold_validation) in enumerate(fold_split(cases, folds, config.seed)):
        folder = output / f"fold_{k}"
        if not (resume and (folder / MODEL_NAME).is_file()):
            log(f"ensemble member {k + 1} of {folds}: {len(fold_train)} training, {len(fold_validation)} "
                "validation cases")
            train(fold_train, fold_validation, folder, replace(config, seed=config.seed + k),
                  resume=resume and (folder / "checkpoint.pt").is_file(), log=log)
        members.append(load_model(folder / MODEL_NAME))
    first = members[0].metadata
    metadata = {"name": f"GadoReduce ensemble of {folds} members", "folds": folds,
                "description": f"{folds} conditional U-Nets trained on disjoint validation folds (gadoreduce train "
                               f"--folds {folds}); inference averages them and their spread is the uncertainty map.",
                "training_data": first.get("training_data", "as the members' cards say")}
    return save_ensemble(output / MODEL_NAME, members, metadata)


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``train`` subcommand on ``subparsers`` (an ``add_subparsers`` result)."""
    from ..pipeline import backend_choices
    p = subparsers.add_parser(
        "train", help="train the contrast-signal CNN on case folders, phantoms and BraTS pairs",
        formatter_class=DefaultsHelpFormatter,
        description="Train the conditional U-Net (Pinetz, Kobler et al. 2024, section 3.4): weighted Huber loss "
                    "on cubic patches, Adam with cosine annealing, flips and rotations; the defaults are the "
                    "paper's. Training cases are preprocessed once and cached. Multi-GPU: "
                    "torchrun --nproc_per_node N -m GadoReduceLib.cli train ... "
                    "Default model: gadoreduce train --phantoms 16 --brats ../shared/data "
                    "--holdout 3 --output runs/default")
    p.add_argument("--config", metavar="JSON", help=f"options as JSON (keys: {', '.join(TRAIN_OPTIONS)})")
    p.add_argument("--cases", nargs="+", metavar="DIR", help="case folders (pre_contrast, low_dose*, standard_dose, "
                   "case.json or phantom.json) or folders of them")
    p.add_argument("--phantoms", type=int, metavar="N", help="N digital phantoms generated on the fly")
    p.add_argument("--brats", metavar="DIR", help="folder with BraTS pairs (*_t1, *_t1ce) for synthetic low doses")
    p.add_argument("--holdout", type=int, metavar="N", help="BraTS subjects (else case folders) kept for validation")
    p.add_argument("--output", required=True, metavar="DIR", help="output folder (checkpoints, model, loss curve)")
    p.add_argument("--steps", type=int, metavar="N", help="optimizer steps")
    p.add_argument("--patch", type=int, metavar="N", help="patch edge in voxels")
    p.add_argument("--batch", type=int, metavar="N", help="patches per process and step")
    p.add_argument("--base-features", type=int, metavar="N", help="features at the finest scale")
    p.add_argument("--scales", type=int, metavar="N", help="U-Net scales")
    p.add_argument("--lr", type=float, help="initial learning rate")
    p.add_argument("--seed", type=int, help="seed of case choice, patches and weights")
    p.add_argument("--phantom-size", choices=("small", "full"), help="phantom voxels: small 2 mm, full 1 mm")
    p.add_argument("--cache", metavar="DIR", help="preprocessed-case cache (default OUTPUT/cache)")
    p.add_argument("--backend", choices=backend_choices(),
                   help="registration backend (slicer runs inside 3D Slicer only)")
    p.add_argument("--checkpoint-every", type=int, metavar="N", help="steps between checkpoints")
    p.add_argument("--validate-every", type=int, metavar="N", help="steps between validations")
    p.add_argument("--threads", type=int, metavar="N", help="torch CPU threads per process")
    p.add_argument("--low-doses", choices=("on-the-fly", "fixed"),
                   help="on-the-fly: every sample synthesizes its own low dose (dose 5-50 %%, field strength, agent and "
                        "simulator parameters drawn per sample) from the pre-contrast/standard-dose pair; fixed: one "
                        "low dose per case")
    p.add_argument("--precision", choices=("fp32", "bf16"), help="forward-pass precision (bf16: autocast, fast on "
                   "CPUs with AVX-512 bf16 and on GPUs)")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, help="channels_last_3d memory format")
    p.add_argument("--init", metavar="MODEL", help="start from the weights of this model file or checkpoint (warm "
                   "restart: new optimizer and schedule, same network options)")
    p.add_argument("--max-minutes", type=float, metavar="M", help="wall-time budget of the steps: the step count "
                   "and the learning-rate schedule are cut to what fits (measured over the first steps)")
    p.add_argument("--folds", type=int, metavar="K", help="train an ensemble: K members on disjoint validation "
                   "folds of the training cases (OUTPUT/fold_0 ...), written together as OUTPUT/model.pt; K times "
                   "the training time")
    p.add_argument("--sequences", type=_sequence_list, metavar="LIST",
                   help="extra input sequences of the model, comma-separated: flair, t2 (papers 002/003); every "
                        "training pair needs them (BraTS subjects with *_flair/*_t2, case folders with flair.*/t2.*), "
                        "pairs without are left out, phantoms have none; --init from a T1-only model starts "
                        "the added channels at zero")
    p.add_argument("--zero-dose", dest="low_dose", action="store_const", const=False,
                   help="a zero-dose model (papers 002-004): no low-dose input; it predicts the standard-dose contrast "
                        "signal from the pre-contrast T1w and the --sequences alone (trained on pre-contrast / "
                        "standard-dose pairs; the papers show that it misses small lesions)")
    p.add_argument("--huber-epsilon", type=float, metavar="E",
                   help="where the Huber loss turns from squared to absolute error, in normalized intensity (the "
                        "pre-contrast's 95th brain percentile = 1; lesions enhance by about 0.2-0.5 there): the "
                        "paper's 0.1 makes lesion errors absolute ones, whose minimum is the median and underestimates "
                        "uncertain enhancement; 1 or more gives the squared error, whose minimum is the mean")
    p.add_argument("--resume", action="store_true", help="continue from OUTPUT/checkpoint.pt")
    p.set_defaults(func=run_train)
    return p
