"""Training loop of the conditional CNN (paper 001, sections 3.4 and 4): Adam, cosine schedule, DDP.

Defaults follow the paper: Adam (lr 1e-4, betas 0.9/0.999), learning rate annealed to 1e-6 by a cosine
schedule, 96^3 patches, weighted Huber loss with an 8-voxel margin (``training.patches``), random flips
and 90-degree rotations. ``train`` runs in one process or in every process of a ``torchrun`` job
(DistributedDataParallel; gloo on CPU, nccl on GPUs); each process draws its own patches, seeded by
(seed, rank, step), so a resumed run continues with exactly the patches of an uninterrupted one.

Outputs in the output folder: ``checkpoint.pt`` (model, optimizer, schedule, step, history; for
``resume``), ``history.json`` (loss per step, validation metrics), ``loss_curve.png``, and at the end
``model.pt`` (``model.files`` format: weights, configuration, condition normalization, gamma). Research software, not for diagnosis.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from ..model.network import ConditionalUNet, ConditionNormalization, ModelConfig
from .data import compute_gamma
from .patches import (ENHANCING_THRESHOLD, HUBER_EPSILON, LAMBDA1, LAMBDA2, LOSS_MARGIN, augment,
                               check_patch, collate, sample_patch, weighted_huber_loss)

PRECISIONS = ("fp32", "bf16")
TIMING_STEPS = 10
"""Steps timed before a ``max_minutes`` budget fixes the number of steps."""
CHECKPOINT_NAME = "checkpoint.pt"
MODEL_NAME = "model.pt"


@dataclass
class TrainConfig:
    """Training hyperparameters (defaults: the paper's, section 4, except batch 1 per process).

    steps: optimizer steps; patch_size: cubic patch edge (voxels); batch_size: patches per process
    and step; checkpoint_every / validate_every / log_every: in steps (the last step always
    checkpoints and validates); validation_patches: fixed patches per validation case; threads:
    torch CPU threads (None: torch's default); precision: "fp32" or "bf16" (autocast of the forward pass;
    weights, optimizer and loss in fp32); channels_last: channels_last_3d memory format; init: a model file
    (``model.files``) or checkpoint whose weights start the run (a warm restart: new optimizer and cosine
    schedule over ``steps``, so that several runs add up); max_minutes: a wall-time budget for the steps: after
    ``TIMING_STEPS`` steps the step count (and the cosine schedule) is cut to what fits, and the run ends with
    its model (the GPU recipe, ``scripts/train_gpu.py``)."""

    steps: int = 200_000
    patch_size: int = 96
    batch_size: int = 1
    learning_rate: float = 1e-4
    final_learning_rate: float = 1e-6
    huber_epsilon: float = HUBER_EPSILON
    lambda1: float = LAMBDA1
    lambda2: float = LAMBDA2
    margin: int = LOSS_MARGIN
    enhancing_fraction: float = 0.5
    augment: bool = True
    seed: int = 0
    model: ModelConfig = field(default_factory=ModelConfig)
    checkpoint_every: int = 500
    validate_every: int = 1000
    validation_patches: int = 2
    log_every: int = 10
    threads: int | None = None
    precision: str = "fp32"
    channels_last: bool = False
    init: str | None = None
    max_minutes: float | None = None

    def __post_init__(self):
        if isinstance(self.model, dict):
            self.model = ModelConfig.from_dict(self.model)
        for name in ("steps", "patch_size", "batch_size", "checkpoint_every", "validate_every",
                     "validation_patches", "log_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"training option {name} must be a positive integer, got {value!r}")
        if not 0 < self.final_learning_rate <= self.learning_rate:
            raise ValueError("learning rates must satisfy 0 < final_learning_rate <= learning_rate")
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise ValueError(f"--max-minutes must be positive, got {self.max_minutes!r}")
        if not self.huber_epsilon > 0:
            raise ValueError(f"--huber-epsilon must be positive (the paper's 0.1; 1 or more for the squared error), "
                             f"got {self.huber_epsilon!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"training precision {self.precision!r} is not one of {', '.join(PRECISIONS)}")
        if self.patch_size <= 2 * self.margin:
            raise ValueError(f"patch size {self.patch_size} leaves no voxels inside the {self.margin}-voxel loss "
                             f"margin; use a patch larger than {2 * self.margin}")

    def to_dict(self) -> dict:
        data = asdict(self)
        data["model"] = self.model.to_dict()
        return data


# ----------------------------------------------------------------------------- distributed helpers

def distributed_context() -> tuple[int, int]:
    """(rank, world size); initializes the process group from torchrun's environment when needed."""
    import torch.distributed as dist
    if dist.is_available() and not dist.is_initialized() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def rank_zero_first(build):
    """Run ``build()`` on rank 0 first (e.g. to fill the preprocessing cache), then on the other ranks."""
    import torch.distributed as dist
    rank, world = distributed_context()
    if world == 1:
        return build()
    if rank != 0:
        dist.barrier()
    result = build()
    if rank == 0:
        dist.barrier()
    return result


def _mean_over_ranks(value: float, world: int) -> float:
    if world == 1:
        return value
    import torch.distributed as dist
    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t.item()) / world


def default_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


# ----------------------------------------------------------------------------- progress

class Progress:
    """A one-line progress bar on a terminal (carriage return), plain lines every ``every`` steps otherwise."""

    def __init__(self, total: int, start: int, every: int, stream=None, enabled: bool = True):
        self.total, self.start, self.every = total, start, every
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.t0 = time.perf_counter()

    def update(self, step: int, loss: float, lr: float) -> None:
        if not self.enabled or (not self.tty and step % self.every and step != self.total):
            return
        done = step - self.start
        rate = done / max(time.perf_counter() - self.t0, 1e-9)
        eta = (self.total - step) / rate if rate > 0 else float("inf")
        width = 30
        filled = int(width * step / self.total)
        line = (f"[{'#' * filled}{'.' * (width - filled)}] step {step}/{self.total} loss {loss:.5f} "
                f"lr {lr:.2e} {1 / rate if rate else 0:.2f} s/step ETA {_duration(eta)}")
        if self.tty:
            self.stream.write("\r" + line + ("\n" if step == self.total else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


# ----------------------------------------------------------------------------- validation

def validation_patches(cases, config: TrainConfig) -> list[tuple]:
    """Fixed (group, patch, conditions): for TrainingCases ``validation_patches`` patches per case, half centred
    on enhancement (group "fixed"); for PairCases both simulators at 10 % and 33 % (``simulate.validation_samples``)."""
    from .simulate import PairCase, validation_samples
    pairs = [c for c in cases if isinstance(c, PairCase)]
    fixed = validation_samples(pairs, config.patch_size, config.seed, per_case=config.validation_patches,
                               zero_dose=not config.model.low_dose)
    for index, case in enumerate(c for c in cases if not isinstance(c, PairCase)):
        check_patch(config.patch_size, case.shape, case.case_id)
        for j in range(config.validation_patches):
            rng = np.random.default_rng([config.seed, 7919, index, j])
            fraction = 1.0 if j % 2 == 0 else 0.0
            fixed.append(("fixed", sample_patch(case, config.patch_size, rng, fraction, with_lesions=True),
                          case.conditions))
    return fixed


@torch.no_grad()
def validate(model, fixed: list[tuple], config: TrainConfig, normalization: ConditionNormalization,
             device) -> dict:
    """Per group of ``fixed`` (and over all): mean weighted loss, MAE in lesion voxels (lesion labels, else
    p > 0.5) and MAE in the brain over the interior (margin excluded) of the fixed validation patches;
    noise-normalized units. Keys "loss", "lesion_mae", ... (all) and "GROUP/loss", ... per group."""
    if not fixed:
        return {}
    m = config.margin
    inner = (slice(m, -m),) * 3 if m > 0 else (slice(None),) * 3
    sums: dict[str, list] = {}
    for group, patch, conditions in fixed:
        batch = collate([patch], [conditions], config.model.inputs)
        pred = model(batch["inputs"].to(device), normalization.normalize(*batch["conditions"].T).to(device)).cpu()
        loss = float(weighted_huber_loss(pred, batch["y"], batch["b"], batch["p"], m, config.huber_epsilon,
                                         config.lambda1, config.lambda2))
        err = (pred[0, 0] - batch["y"][0, 0]).abs().numpy()[inner]
        lesion = patch.get("lesions")
        region = ((lesion > 0) if lesion is not None and lesion.any() else (patch["p"] > ENHANCING_THRESHOLD))[inner]
        brain = patch["b"][inner] > 0
        for key in ("", f"{group}/") if group != "fixed" else ("",):
            acc = sums.setdefault(key, [[], 0.0, 0, 0.0, 0])
            acc[0].append(loss)
            acc[1] += float(err[region].sum())
            acc[2] += int(region.sum())
            acc[3] += float(err[brain].sum())
            acc[4] += int(brain.sum())
    out = {}
    for key, (losses, le, ln, be, bn) in sums.items():
        out.update({f"{key}loss": float(np.mean(losses)), f"{key}lesion_mae": le / ln if ln else None,
                    f"{key}lesion_voxels": ln, f"{key}brain_mae": be / bn if bn else None})
    return out


def draw_sample(case, config: TrainConfig, rng: np.random.Generator) -> tuple[dict, tuple]:
    """(patch, conditions) of one training sample: a low dose made on the fly for a PairCase
    (``simulate.simulate_sample``), a patch of the fixed low dose for a TrainingCase; for a zero-dose model
    (``ModelConfig.low_dose`` False) a PairCase patch without any low dose (``simulate.zero_dose_sample``)."""
    from .simulate import PairCase, simulate_sample, zero_dose_sample
    if not config.model.low_dose:
        return zero_dose_sample(case, rng, config.patch_size, config.enhancing_fraction)
    if isinstance(case, PairCase):
        return simulate_sample(case, rng, config.patch_size, config.enhancing_fraction)
    return sample_patch(case, config.patch_size, rng, config.enhancing_fraction), case.conditions


def train_step(net, optimizer, batch: dict, config: TrainConfig, normalization: ConditionNormalization,
               device) -> torch.Tensor:
    """One optimizer step on ``batch`` (``patches.collate``); returns the loss (detached)."""
    inputs = batch["inputs"].to(device)
    if config.channels_last:
        inputs = inputs.contiguous(memory_format=torch.channels_last_3d)
    cond = normalization.normalize(*batch["conditions"].T).to(device)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.precision == "bf16"):
        prediction = net(inputs, cond, rectify=False)  # the loss on the pre-ReLU output: no dead output layer
    loss = weighted_huber_loss(prediction.float(), batch["y"].to(device), batch["b"].to(device),
                               batch["p"].to(device), config.margin, config.huber_epsilon, config.lambda1,
                               config.lambda2)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


def check_sequences(cases, sequences) -> None:
    """ValueError unless every case holds each of ``sequences`` (a model with extra input sequences)."""
    from ..model.network import sequence_names
    for case in cases:
        missing = [k for k in sequences if k not in getattr(case, "sequences", {})]
        if missing:
            raise ValueError(f"training case {case.case_id} has no {sequence_names(missing)} image, which the model "
                             "(--sequences) takes as input; train on pairs with those images (on the fly)")


def check_zero_dose(cases, model_config: ModelConfig) -> None:
    """ValueError when a zero-dose model is to learn from cases that are no registered pre/standard-dose pairs."""
    from .simulate import PairCase
    if not model_config.low_dose and any(not isinstance(c, PairCase) for c in cases):
        raise ValueError("a zero-dose model (--zero-dose) learns the standard-dose contrast signal from pre-contrast "
                         "/ standard-dose pairs: train it on pairs (--brats DIR or case folders, on the fly), not on "
                         "phantoms or fixed low doses")


def init_weights(model, path) -> None:
    """Load the weights of a model file or checkpoint at ``path`` into ``model`` (same configuration, or the same
    network with fewer input sequences: the added channels start with zero weights)."""
    from ..model.files import checksum_path, load_model
    path = Path(path)
    if not path.exists():
        raise ValueError(f"--init {path}: no such model file or checkpoint")
    if checksum_path(path).exists():  # a model file: verified and read by ``model.files``
        loaded = load_model(path)
        config, weights = loaded.config, loaded.model.state_dict()
    else:  # a checkpoint of a run
        state = load_checkpoint(path)
        config, weights = ModelConfig.from_dict(state["config"]["model"]), state["model"]
    if config != model.config:
        weights = _with_new_inputs(weights, config, model.config)
        if weights is None:
            raise ValueError(f"--init {path} holds a {config} network, not the requested {model.config}; give the "
                             "same --base-features and model options")
    model.load_state_dict(weights)


WARM_START_ALIASES = {"x_pc": "x_ld"}
"""A zero-dose model's stem starts from the low-dose model's kernel of the channel most like it (the pre-contrast
looks like the registered low dose outside the enhancement)."""


def _with_new_inputs(weights: dict, old: ModelConfig, new: ModelConfig) -> dict | None:
    """``weights`` of an ``old`` network for a ``new`` one that differs only by its inputs (more sequences, or
    zero dose): the stem's kernels of channels the old network had (or their :data:`WARM_START_ALIASES`) are kept,
    the others are 0. With more sequences only, the new network starts out computing exactly what the old one did.
    None when the configurations differ otherwise."""
    if replace(old, in_channels=new.in_channels, sequences=new.sequences, low_dose=new.low_dose) != new:
        return None
    if new.low_dose and not set(old.inputs) <= set(new.inputs):
        return None
    kernel = weights["stem.weight"]
    grown = kernel.new_zeros((kernel.shape[0], new.in_channels) + tuple(kernel.shape[2:]))
    for index, name in enumerate(new.inputs):
        source = name if name in old.inputs else WARM_START_ALIASES.get(name)
        if source in old.inputs:
            grown[:, index] = kernel[:, old.inputs.index(source)]
    return {**weights, "stem.weight": grown}


# ----------------------------------------------------------------------------- checkpoints

def _atomic_torch_save(obj, path: Path) -> None:
    from ..io.atomic import atomic_path
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def save_checkpoint(path: Path, model, optimizer, scheduler, step: int, history: dict, config: TrainConfig,
                    normalization: ConditionNormalization, gamma: float) -> None:
    _atomic_torch_save({"step": step, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(), "history": history, "config": config.to_dict(),
                        "normalization": normalization.to_dict(), "gamma": gamma}, Path(path))


def load_checkpoint(path: Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise ValueError(f"no checkpoint at {path} to resume from; start without --resume")
    return torch.load(path, map_location="cpu", weights_only=False)


# ----------------------------------------------------------------------------- the loop

def train(cases, validation_cases, output, config: TrainConfig = TrainConfig(), resume: bool = False,
          stop_at: int | None = None, device=None, log=print, progress: bool = True) -> dict:
    """Train on ``cases`` (TrainingCase list), validate on ``validation_cases``; writes into ``output``.

    resume: continue from ``output/checkpoint.pt``; stop_at: end after this step (an interrupted run,
    for tests). Returns {"history", "gamma", "step", "model" (the trained module), "paths"}.
    """
    cases, validation_cases = list(cases), list(validation_cases or [])
    config = replace(config)  # a time budget changes the step count of this run only
    if not cases:
        raise ValueError("no training cases: give --cases, --phantoms or --brats")
    for case in cases:
        check_patch(config.patch_size, case.shape, case.case_id)
    check_sequences(cases + validation_cases, config.model.sequences)
    check_zero_dose(cases + validation_cases, config.model)
    rank, world = distributed_context()
    device = torch.device(device) if device is not None else default_device()
    if config.threads:
        torch.set_num_threads(config.threads)
    output = Path(output)
    if rank == 0:
        output.mkdir(parents=True, exist_ok=True)
    log = log if rank == 0 else (lambda *a, **k: None)
    normalization = ConditionNormalization()
    gamma = compute_gamma(cases)

    torch.manual_seed(config.seed)
    model = ConditionalUNet(config.model)
    if config.init and not resume:
        init_weights(model, config.init)
        log(f"starting from the weights of {config.init} (warm restart)")

    model = model.to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last_3d)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate, betas=(0.9, 0.999))
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.steps,
                                                           eta_min=config.final_learning_rate)
    history = {"train": [], "validation": []}
    start = 0
    checkpoint_path = output / CHECKPOINT_NAME
    if resume:
        state = load_checkpoint(checkpoint_path)
        saved = ModelConfig.from_dict(state["config"]["model"])
        if saved != config.model:
            raise ValueError(f"the checkpoint's model configuration {saved} differs from the requested "
                             f"{config.model}; resume with the same --base-features and model options")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scheduler.T_max = config.steps
        start, history = int(state["step"]), state["history"]
        log(f"resuming from step {start} ({checkpoint_path})")
    net = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    fixed = validation_patches(validation_cases, config) if rank == 0 else []
    end = min(config.steps, stop_at) if stop_at is not None else config.steps
    log(f"training {sum(p.numel() for p in model.parameters()):,} parameters on {len(cases)} cases "
        f"({len(validation_cases)} for validation), {world} process(es), steps {start + 1}-{end} of {config.steps}, "
        f"patch {config.patch_size}^3, batch {config.batch_size} per process, gamma {gamma:.4f}")
    bar = Progress(config.steps, start, config.log_every, enabled=progress and rank == 0)
    began = time.perf_counter()

    for step in range(start, end):
        if config.max_minutes and step == start + TIMING_STEPS:
            per_step = (time.perf_counter() - began) / TIMING_STEPS
            budget = int(_mean_over_ranks(config.max_minutes * 60 / per_step, world))
            fitted = max(step + 1, min(config.steps, start + budget))
            if fitted < config.steps:
                log(f"{per_step:.2f} s per step: {fitted} steps fit into {config.max_minutes:g} minutes")
                config.steps = end = fitted
                scheduler.T_max = fitted
                bar.total = fitted
        if step >= end:
            break
        rng = np.random.default_rng([config.seed, rank, step])
        patches, conditions = [], []
        for _ in range(config.batch_size):
            patch, condition = draw_sample(cases[int(rng.integers(0, len(cases)))], config, rng)
            patches.append(augment(patch, rng) if config.augment else patch)
            conditions.append(condition)
        lr = optimizer.param_groups[0]["lr"]
        loss = train_step(net, optimizer, collate(patches, conditions, config.model.inputs), config, normalization,
                          device)
        scheduler.step()
        value = _mean_over_ranks(float(loss.detach()), world)
        if not math.isfinite(value):
            raise RuntimeError(f"training loss became {value} at step {step + 1}; lower the learning rate or check "
                               "the training cases for extreme values")
        history["train"].append([step + 1, value, lr])
        bar.update(step + 1, value, lr)
        last = step + 1 == end
        if rank == 0 and fixed and ((step + 1) % config.validate_every == 0 or last):
            metrics = validate(model, fixed, config, normalization, device)
            history["validation"].append({"step": step + 1, **metrics})
            log(f"validation at step {step + 1}: " + ", ".join(
                f"{k} {v:.5f}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items()
                if "/" not in k or k.endswith("lesion_mae")))
        if rank == 0 and ((step + 1) % config.checkpoint_every == 0 or last):
            save_checkpoint(checkpoint_path, model, optimizer, scheduler, step + 1, history, config, normalization,
                            gamma)
            _write_reports(output, history)
    paths = {"checkpoint": checkpoint_path}
    if rank == 0 and end == config.steps and end > start:
        paths["model"] = _save_final(output, model, config, normalization, gamma, history, len(cases))
        log(f"model written to {paths['model']}")
    if world > 1:
        import torch.distributed as dist
        dist.barrier()
    return {"history": history, "gamma": gamma, "step": end, "model": model, "paths": paths}


def _write_reports(output: Path, history: dict) -> None:
    from ..io.atomic import write_json
    from .loss_curve import plot_loss_curve
    write_json(output / "history.json", history, indent=None)
    plot_loss_curve(history, output / "loss_curve.png")


def _save_final(output: Path, model, config: TrainConfig, normalization, gamma: float, history: dict,
                n_cases: int) -> Path:
    metadata = {"training": config.to_dict(), "training_cases": n_cases, "steps": config.steps,
                "final_validation": history["validation"][-1] if history["validation"] else None,
                "note": "research software, not for diagnosis"}
    from ..model.files import save_model
    return save_model(output / MODEL_NAME, model, config.model, normalization, gamma, metadata)
