"""Checks of settings that need no image and no torch (see the package docstring).

Each ``check_*`` returns the value to use or raises ValueError naming the setting (``name``: the CLI option, or
the Python parameter for library callers) and the fix.
"""

from __future__ import annotations

import math
import re
import sys
from pathlib import Path

from ..inference.region_defaults import FLIPS, PRECISION_NAMES

MIN_TILE = 16
"""Smallest network tile edge in voxels: below it a tile is mostly blending margin (a model can ask for more:
``Pipeline`` checks twice its alignment)."""
DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def positive(value, name: str, allow_zero: bool = False) -> float:
    """A finite positive (or zero) number; ValueError naming ``name`` otherwise."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number) or number < 0 or (number == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'zero or ' if allow_zero else ''}positive, got {value!r}")
    return number


def optional_int(value, name: str, minimum: int) -> int | None:
    """None or an integer of at least ``minimum``; ValueError naming ``name`` otherwise."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value or value < minimum:
        raise ValueError(f"{name} must be an integer of at least {minimum} (or None), got {value!r}")
    return int(value)


def parse_tile(value, name: str = "tile") -> int | str | None:
    """A tile setting from a user: "auto" (the default), None / "whole" / "none" (the whole volume at once) or a
    tile edge in voxels of at least :data:`MIN_TILE` (also as text); ValueError naming the choices otherwise."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("whole", "none")):
        return None
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    try:
        number = int(value) if not isinstance(value, bool) and float(value) == int(float(value)) else None
    except (TypeError, ValueError, OverflowError):
        number = None
    if number is None or number < 1:
        raise ValueError(f"{name} must be 'auto', 'whole' or a tile edge in voxels (e.g. 128), got {value!r}")
    if number < MIN_TILE:
        raise ValueError(f"{name} {number} is too small: a tile needs at least {MIN_TILE} voxels per edge; use "
                         "auto (the default), whole or a larger edge such as 96")
    return number


def check_tta(value, name: str = "tta") -> int:
    """Flip test-time augmentation passes, 1 (none) to 8."""
    passes = optional_int(value, name, 1)
    if passes is None or passes > len(FLIPS):
        raise ValueError(f"{name} must be a number of flips from 1 (none) to {len(FLIPS)}, got {value!r}")
    return passes


def check_precision(value, name: str = "precision") -> str:
    if value not in PRECISION_NAMES:
        raise ValueError(f"{name} must be one of {', '.join(PRECISION_NAMES)}, got {value!r}")
    return value


def _no_cuda_driver() -> bool:
    """True when this machine surely has no CUDA (macOS, or Linux without the NVIDIA driver); False when unknown."""
    if sys.platform == "darwin":
        return True
    if sys.platform.startswith("linux"):
        return not any(Path(p).exists() for p in ("/proc/driver/nvidia", "/dev/nvidia0", "/dev/dxg"))  # dxg: WSL
    return False


def check_device(value, name: str = "device") -> str:
    """A device name (auto, cpu, cuda, cuda:N, mps), refused early when the machine surely lacks it; whether CUDA
    really works is known only once torch is loaded (``inference.predict.choose_device``)."""
    text = str(value).strip().lower()
    if not DEVICE_PATTERN.match(text):
        raise ValueError(f"{name} {value!r} is not a device; use auto (CUDA when present, else the CPU), cpu, cuda, "
                         "cuda:N or mps")
    if text.startswith("cuda") and _no_cuda_driver():
        raise ValueError(f"{name} {value!r} requested but this machine has no NVIDIA GPU driver; use {name} cpu "
                         "or auto")
    if text == "mps" and sys.platform != "darwin":
        raise ValueError(f"{name} mps needs a Mac with Apple silicon; use {name} cpu or auto")
    return text


def check_condition(dose, field_strength, agent, names=("dose", "field_strength", "agent"),
                    zero_dose: bool = False) -> tuple:
    """(dose, field strength in T, agent name, relaxivity) of the low-dose acquisition, checked; ``zero_dose``: a
    zero-dose prediction (:func:`zero_dose_prediction`), whose dose is 0."""
    from ..physics.agents import get_agent
    from ..physics.lowdose import check_dose
    try:
        dose = 0.0 if zero_dose else check_dose(dose)
    except ValueError as error:
        raise ValueError(f"{names[0]}: {error}") from None
    try:
        contrast_agent = get_agent(agent)
    except ValueError as error:
        raise ValueError(f"{names[2]}: {error}") from None
    try:
        relaxivity = contrast_agent.relaxivity(field_strength)
    except (ValueError, TypeError) as error:
        raise ValueError(f"{names[1]}: {error}") from None
    return dose, float(field_strength), contrast_agent.name, float(relaxivity)


def zero_dose_prediction(config, low_dose_given: bool, dose) -> bool:
    """True for a zero-dose prediction (dose 0, no low-dose image, a zero-dose model: ``config``, the
    ``ModelConfig``, with ``low_dose`` False); ValueError naming the fix when the three do not agree. A dose that is
    no number is left to :func:`check_condition`."""
    zero_model = not config.low_dose
    try:
        zero_dose = float(dose) == 0.0
    except (TypeError, ValueError):
        return False
    if zero_dose and not zero_model:
        raise ValueError("dose 0 asks for a zero-dose prediction, but this model predicts from a low dose; give a "
                         "zero-dose model (gadoreduce train --zero-dose) or the low dose given as a fraction of "
                         "the standard dose, e.g. 0.25")
    if zero_model and not zero_dose:
        raise ValueError(f"this is a zero-dose model (it predicts from the pre-contrast without a low dose): give "
                         f"dose 0 and no low-dose image, not dose {dose}, or use a low-dose model")
    if zero_dose and low_dose_given:
        raise ValueError("a zero-dose prediction (dose 0) takes no low-dose image: leave it out, or give its dose "
                         "with a low-dose model")
    return zero_dose
