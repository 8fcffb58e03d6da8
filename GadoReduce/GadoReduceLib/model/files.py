"""Model files: weights with their configuration, gamma, conditioning normalization and a description.

A model file ``NAME.pt`` is ``torch.save`` of a plain dict ``{"format": str, "metadata": JSON string,
"state_dict": {parameter name: tensor}}``, loaded with ``torch.load(weights_only=True)`` so that no pickled
code is ever executed. Beside it: ``NAME.pt.sha256`` (``<hex digest>  NAME.pt``, the format of
``sha256sum``) checked before loading (a shipped model against the digest the package knows,
``checksums.SHIPPED_MODELS``), and ``NAME.md``, a model card generated from the metadata.

An ensemble file (:func:`save_ensemble`, format version 2) holds ``"members"``, a list of state dicts of one
configuration, instead of ``"state_dict"``, and its header a ``members`` list (each member's gamma and origin);
inference averages the members (``inference.uncertainty``).

Metadata (JSON): ``config`` (:class:`ModelConfig`), ``condition_normalization``, ``gamma`` (paper eq. after
(3): y~ = gamma s_LD y^ / sigma_LD), and the free ``metadata`` dict given to :func:`save_model`, conventionally with
``name``, ``description``, ``training_data`` (str or dict) and ``validation_metrics`` (dict name -> value).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch

from .. import DISCLAIMER, __version__
from ..io.atomic import atomic_path, write_text
from ..io.cases import SEQUENCES
from .checksums import (DEFAULT_MODEL, ModelCheck, ModelFileError, check_model_file, checksum_path,
                        default_model_path, sha256_of, verify_checksum)
from .network import CONDITION_NAMES, ConditionalUNet, ConditionNormalization, ModelConfig

__all__ = ["DEFAULT_MODEL", "ENSEMBLE_VERSION", "FORMAT", "FORMAT_VERSION", "LoadedModel", "ModelCheck", "ModelFileError", "card_path",
           "check_model_file", "checksum_path", "default_model_path", "load_model", "model_card", "read_header",
           "save_ensemble", "save_model", "sha256_of", "verify_checksum"]
"""The checksum names come from the torch-free ``checksums`` module and stay importable from here."""
FORMAT = "gadoreduce-model"
FORMAT_VERSION = 1
"""Version written for one network; an ensemble file (:func:`save_ensemble`) is version :data:`ENSEMBLE_VERSION`."""
ENSEMBLE_VERSION = 2


@dataclass
class LoadedModel:
    """A model ready for inference (eval mode) with everything needed to use it."""

    model: ConditionalUNet
    config: ModelConfig
    normalization: ConditionNormalization
    gamma: float
    metadata: dict = field(default_factory=dict)
    path: Path | None = None
    check: ModelCheck | None = None
    """How the file was verified (``checksums.check_model_file``); None for a model made in memory."""
    members: tuple = ()
    """An ensemble's (network, gamma) pairs, the first being ``model`` and ``gamma``; () for one model."""

    def networks(self) -> tuple:
        """(network, gamma) of every member whose outputs inference averages: the ensemble's, else the model."""
        return self.members or ((self.model, self.gamma),)


def card_path(path: str | os.PathLike) -> Path:
    """The model card of a model file: ``NAME.pt`` -> ``NAME.md``."""
    return Path(path).with_suffix(".md")


def _json_safe(value):
    """JSON-compatible copy (numbers as floats, tuples as lists); ValueError for anything else."""
    try:
        return json.loads(json.dumps(value, allow_nan=False, default=lambda o: o.item() if hasattr(o, "item") else str(o)))
    except ValueError as error:
        raise ValueError(f"model metadata must be JSON-serializable without NaN/inf: {error}") from None


def save_model(path: str | os.PathLike, model: ConditionalUNet, config: ModelConfig,
               normalization: ConditionNormalization, gamma: float, metadata: dict | None = None) -> Path:
    """Write ``path`` (weights + metadata), ``path.sha256`` and the model card ``path`` with ``.md``.

    gamma: positive scale of the reverted noise normalization; metadata: free JSON-serializable dict
    (``name``, ``description``, ``training_data``, ``validation_metrics``, ...). Returns ``path``."""
    path = Path(path)
    if path.suffix != ".pt":
        raise ValueError(f"model file name {path.name!r} must end with .pt")
    if model.config != config:
        raise ValueError(f"model was built with {model.config}, not the given {config}")
    if not (isinstance(gamma, (int, float)) and math.isfinite(gamma) and gamma > 0):
        raise ValueError(f"gamma must be a positive finite number, got {gamma!r}")
    header = {"format": FORMAT, "format_version": FORMAT_VERSION, "gadoreduce_version": __version__,
              "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "torch_version": torch.__version__, "config": config.to_dict(),
              "condition_normalization": normalization.to_dict(), "gamma": float(gamma),
              "parameters": int(sum(p.numel() for p in model.parameters())),
              "metadata": _json_safe(metadata or {})}
    state = {name: t.detach().to("cpu").clone().contiguous() for name, t in model.state_dict().items()}
    payload = {"format": FORMAT, "metadata": json.dumps(header), "state_dict": state}
    with atomic_path(path) as partial:
        torch.save(payload, partial)
    write_text(checksum_path(path), f"{sha256_of(path)}  {path.name}\n")
    write_text(card_path(path), model_card(header))
    return path


def read_header(path: str | os.PathLike, check: ModelCheck | None = None) -> tuple[dict, dict]:
    """(metadata header, state dict) of a verified model file (``checksums.check_model_file``: a shipped model's
    known digest, else its sidecar; skipped when its ``check`` is given), without executing pickled code."""
    if check is None:
        check_model_file(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises UnpicklingError, RuntimeError, EOFError, ...
        raise ModelFileError(f"model file {str(path)!r} cannot be read as a GadoReduce model "
                             f"({type(error).__name__}); it is not a file written by save_model") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelFileError(f"model file {str(path)!r} is not a GadoReduce model file (format field missing)")
    try:
        header = json.loads(payload["metadata"])
    except (KeyError, TypeError, ValueError):
        raise ModelFileError(f"model file {str(path)!r} has no readable metadata") from None
    if header.get("format_version", 0) > ENSEMBLE_VERSION:
        raise ModelFileError(f"model file {str(path)!r} has format version {header.get('format_version')}, "
                             f"this GadoReduce reads up to {ENSEMBLE_VERSION}; update GadoReduce")
    states = payload.get("members") if "members" in header else [payload.get("state_dict")]
    if not (isinstance(states, list) and states and len(states) == len(header.get("members", [None]))
            and all(isinstance(state, dict) and all(isinstance(t, torch.Tensor) for t in state.values())
                    for state in states)):
        raise ModelFileError(f"model file {str(path)!r} holds no weights")
    return header, (states if "members" in header else states[0])


def load_model(path: str | os.PathLike | None, device: str | torch.device = "cpu") -> LoadedModel:
    """Verify (sha256) and load a model file written by :func:`save_model` (None: the shipped default model);
    model in eval mode on device."""
    path = default_model_path() if path is None else Path(path)
    check = check_model_file(path)
    header, state = read_header(path, check)
    try:
        config = ModelConfig.from_dict(header["config"])
        normalization = ConditionNormalization.from_dict(header["condition_normalization"])
        gamma = float(header["gamma"])
    except (KeyError, TypeError, ValueError) as error:
        raise ModelFileError(f"model file {str(path)!r} has invalid metadata: {error}") from None
    states = state if isinstance(state, list) else [state]
    try:
        gammas = [float(m["gamma"]) for m in header["members"]] if "members" in header else [gamma]
    except (KeyError, TypeError, ValueError) as error:
        raise ModelFileError(f"model file {str(path)!r} has invalid ensemble metadata: {error}") from None
    networks = []
    for member, member_gamma in zip(states, gammas):
        model = ConditionalUNet(config)
        try:
            model.load_state_dict(member, strict=True)
        except RuntimeError as error:
            raise ModelFileError(f"model file {str(path)!r}: weights do not fit the configuration "
                                 f"({str(error).splitlines()[0]})") from None
        networks.append((model.to(device).eval(), member_gamma))
    members = tuple(networks) if "members" in header else ()
    return LoadedModel(networks[0][0], config, normalization, networks[0][1], header.get("metadata", {}), path,
                       check, members)


def save_ensemble(path: str | os.PathLike, members: list, metadata: dict | None = None) -> Path:
    """Write an ensemble model file (format version 2) of ``members`` (``LoadedModel`` s of one configuration and
    condition normalization, at least 2; an ensemble member's own members are not nested) with its ``.sha256``
    and model card; inference averages the members and their spread is the uncertainty map. Returns ``path``."""
    path = Path(path)
    if path.suffix != ".pt":
        raise ValueError(f"model file name {path.name!r} must end with .pt")
    members = list(members)
    if len(members) < 2 or any(len(m.networks()) != 1 for m in members):
        raise ValueError(f"an ensemble needs at least 2 single models, got {len(members)} "
                         f"(members that are ensembles themselves: {sum(len(m.networks()) > 1 for m in members)})")
    first = members[0]
    for index, member in enumerate(members[1:], 2):
        if member.config != first.config or member.normalization != first.normalization:
            raise ValueError(f"ensemble member {index} ({member.path or 'in memory'}) has another network "
                             f"configuration or condition normalization than member 1; members must match")
    described = [{"gamma": float(m.gamma), "file": m.path.name if m.path else None,
                  "sha256": m.check.sha256 if m.check else None, "name": m.metadata.get("name")} for m in members]
    header = {"format": FORMAT, "format_version": ENSEMBLE_VERSION, "gadoreduce_version": __version__,
              "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "torch_version": torch.__version__, "config": first.config.to_dict(),
              "condition_normalization": first.normalization.to_dict(),
              "gamma": float(sum(m.gamma for m in members) / len(members)), "members": described,
              "parameters": int(sum(p.numel() for m in members for p in m.model.parameters())),
              "metadata": _json_safe(metadata or {})}
    states = [{name: t.detach().to("cpu").clone().contiguous() for name, t in m.model.state_dict().items()}
              for m in members]
    with atomic_path(path) as partial:
        torch.save({"format": FORMAT, "metadata": json.dumps(header), "members": states}, partial)
    write_text(checksum_path(path), f"{sha256_of(path)}  {path.name}\n")
    write_text(card_path(path), model_card(header))
    return path


def _format_value(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_format_value(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(_format_value(v) for v in value)
    return str(value)


def _table(rows, title: str, note: str) -> list[str]:
    """Markdown lines of a titled table of ``rows`` (a list of dicts; [] when it is not one)."""
    if not (isinstance(rows, list) and rows and all(isinstance(r, dict) for r in rows)):
        return []
    columns = list(dict.fromkeys(k for r in rows for k in r))
    lines = ["", f"## {title}", "", note, "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return lines + ["| " + " | ".join(_format_value(r.get(c, "")) for c in columns) + " |" for r in rows]


def model_card(header: dict) -> str:
    """Markdown model card from a model file's metadata header (as stored by :func:`save_model`)."""
    meta = header.get("metadata", {})
    config = header.get("config", {})
    norm = header.get("condition_normalization", {})
    name = meta.get("name", "GadoReduce contrast-signal model")
    lines = [f"# {name}", "", meta.get("description", "Conditional U-Net predicting the standard-dose contrast "
                                       "signal from a low-dose and a pre-contrast T1w brain MRI (Pinetz, Kobler "
                                       "et al. 2024)."), "",
             f"> {DISCLAIMER}", "", "## Model", "",
             "| field | value |", "|---|---|",
             f"| format | {header.get('format', FORMAT)} v{header.get('format_version', FORMAT_VERSION)} |",
             f"| created | {header.get('created', '?')} with GadoReduce {header.get('gadoreduce_version', '?')}, "
             f"torch {header.get('torch_version', '?')} |",
             f"| parameters | {header.get('parameters', '?'):,} |" if isinstance(header.get("parameters"), int)
             else "| parameters | ? |",
             f"| gamma (y~ = gamma s_LD y^ / sigma_LD) | {_format_value(header.get('gamma', '?'))} |"]
    first = "T1w pre-contrast and low dose" if config.get("low_dose", True) else "T1w pre-contrast only (zero dose)"
    lines += [f"| input sequences | {first}{''.join(' + ' + SEQUENCES.get(n, n) for n in v)} |" if k == "sequences"
              else f"| {k} | {v} |" for k, v in config.items() if k != "low_dose"]
    lines += _table(header.get("members"), "Ensemble members", "Inference averages the members' contrast "
                    "signals; their spread (with flips) is the uncertainty map. The gamma in the table above is "
                    "their mean.")
    lines += ["", "## Conditioning", "", "Each entry is normalized as (value - mean) / std.", "",
              "| condition | mean | std |", "|---|---|---|"]
    for cname, m, s in zip(norm.get("names", CONDITION_NAMES), norm.get("mean", []), norm.get("std", [])):
        lines.append(f"| {cname} | {m:.4g} | {s:.4g} |")
    lines += ["", "## Training data", ""]
    training = meta.get("training_data")
    if isinstance(training, dict):
        lines += [f"- **{k}**: {_format_value(v)}" for k, v in training.items()]
    else:
        lines.append(str(training) if training else "Not described.")
    lines += ["", "## Validation metrics", ""]
    metrics = meta.get("validation_metrics")
    if isinstance(metrics, dict) and metrics:
        lines += ["| metric | value |", "|---|---|"] + [f"| {k} | {_format_value(v)} |" for k, v in metrics.items()]
    else:
        lines.append("None recorded.")
    lines += _table(meta.get("evaluation"), "Evaluation per held-out case", meta.get("evaluation_note", ""))
    lines += _table(meta.get("ablation"), "Ablation", meta.get("ablation_note", ""))
    others = {k: v for k, v in meta.items()
              if k not in ("name", "description", "training_data", "validation_metrics", "evaluation",
                           "evaluation_note", "ablation", "ablation_note")}
    if others:
        lines += ["", "## Other information", ""] + [f"- **{k}**: {_format_value(v)}" for k, v in others.items()]
    lines += ["", "## Intended use and limits", "",
              "Research on gadolinium dose reduction only. Synthetic contrast enhancement can miss or invent "
              "lesions; it is not clinical evidence. Valid only for inputs like the training data (brain T1w, "
              "the listed field strengths, agents and doses).", "",
              "Integrity: the file's sha256 is in the `.sha256` file beside it and is checked on every load.", ""]
    return "\n".join(lines)
