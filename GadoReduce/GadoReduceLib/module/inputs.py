"""The Slicer module's input checks: each problem as a message that names the parameter.

Reads volume nodes through their VTK methods only (no ``slicer`` import). Research software, not for diagnosis.
"""

from __future__ import annotations

from pathlib import Path

from ..io.cases import SEQUENCES
from ..physics.agents import AGENTS, get_agent

FIELD_STRENGTH_RANGE = (1.0, 3.5)
"""Field strengths (tesla) the panel and the parameter node accept."""
DOSE_RANGE = (0.01, 1.0)
"""Low doses (fraction of the standard dose) the panel and the parameter node accept."""


def shipped_model_path() -> Path:
    """Where the shipped default model lies in this installation (the parameter node's default ``modelPath``;
    not checked to exist: :func:`model_problem` does that)."""
    from ..io.resources import resources_dir
    from ..model.checksums import DEFAULT_MODEL
    return Path(resources_dir().joinpath(*DEFAULT_MODEL))


def model_file(path) -> Path | None:
    """The model file for the parameter ``modelPath``: None for the shipped default model (its path here, an
    empty path, or the default model's path from a scene saved by another installation), else the path."""
    from ..model.checksums import DEFAULT_MODEL
    text = str(path or "").strip()
    if text in ("", "."):
        return None
    path = Path(text)
    shipped = shipped_model_path()
    if path == shipped or (path.name == DEFAULT_MODEL[-1] and not path.exists() and shipped.exists()):
        return None
    return path


def model_problem(path) -> str | None:
    """None when ``modelPath`` names an existing model file (or the shipped default), else the message."""
    chosen = model_file(path)
    if chosen is None:
        return None if shipped_model_path().is_file() else (
            f"The default model is missing from this installation ({shipped_model_path()}) (modelPath): "
            "reinstall the extension or choose a model file.")
    if not chosen.is_file():
        return (f"The model file '{chosen}' (modelPath) does not exist; choose a GadoReduce model file (.pt) or "
                f"the default model {shipped_model_path()}.")
    return None


def acquisition_values(found: dict) -> dict:
    """The parameter-node values (dose, fieldStrength, agent) for the acquisition fields read from a DICOM
    header (``io.dicom.acquisition_from_tags``) that the parameter node accepts; others are left out."""
    values = {}
    if DOSE_RANGE[0] <= found.get("dose", 0) <= DOSE_RANGE[1]:
        values["dose"] = float(found["dose"])
    if FIELD_STRENGTH_RANGE[0] <= found.get("field_strength", 0) <= FIELD_STRENGTH_RANGE[1]:
        values["fieldStrength"] = float(found["field_strength"])
    if found.get("agent") in AGENTS:
        values["agent"] = found["agent"]
    return values


def agent_problem(agent: str) -> str | None:
    """None when ``agent`` names a known contrast agent, else a message listing the valid names."""
    try:
        get_agent(agent)
        return None
    except ValueError:
        return (f"Unknown contrast agent '{agent}' (agent); use one of: {', '.join(sorted(AGENTS))}.")


def agent_names() -> list[str]:
    """The generic names of the known contrast agents, sorted (the panel's agent list)."""
    return sorted(AGENTS)


def relaxivity_text(agent: str, field_strength: float) -> str:
    """The agent's T1 relaxivity at ``field_strength`` tesla as the panel shows it, or why it is unknown."""
    try:
        return f"{get_agent(agent).relaxivity(field_strength):.1f} L/(mmol s) at {field_strength:g} T"
    except ValueError as error:
        return str(error)


def dose_problem(dose) -> str | None:
    """None when ``dose`` is a fraction of the standard dose in (0, 1] (``lowdose.check_dose``), else the message."""
    from ..physics.lowdose import check_dose
    try:
        check_dose(dose)
        return None
    except ValueError as error:
        return f"Invalid low dose (dose): {error}."


def volumes_overlap(a, b) -> bool:
    """True when the RAS bounding boxes of volume nodes ``a`` and ``b`` intersect (world coordinates)."""
    bounds_a, bounds_b = [0.0] * 6, [0.0] * 6
    a.GetRASBounds(bounds_a)
    b.GetRASBounds(bounds_b)
    return all(bounds_a[2 * i] <= bounds_b[2 * i + 1] and bounds_b[2 * i] <= bounds_a[2 * i + 1] for i in range(3))


def check_parameters(parameters, overlap=volumes_overlap) -> list[str]:
    """Reasons why the module's parameters cannot be processed (empty list when they can); each message
    names the parameter. ``overlap(a, b)``: True when two volume nodes' fields of view intersect."""
    problems = []
    pre, low, standard = parameters.preContrast, parameters.lowDose, parameters.standardDose
    zero_dose = bool(getattr(parameters, "zeroDose", False))  # no low dose: a zero-dose model's prediction
    if pre is None:
        problems.append("Pre-contrast volume is not set (preContrast): select the T1w scan before contrast.")
    if low is None and not zero_dose:
        problems.append("Low-dose volume is not set (lowDose): select the low-dose contrast-enhanced T1w scan, or "
                        "tick Zero-dose prediction (zeroDose) to predict with a zero-dose model without one.")
    if low is not None and zero_dose:
        problems.append("A zero-dose prediction (zeroDose) takes no low-dose volume: clear Low-dose (lowDose), or "
                        "untick Zero-dose prediction to use the low dose.")
    if pre is not None and low is not None and pre == low:
        problems.append("Pre-contrast and low-dose must be two different volumes.")
    sequences = [(key, getattr(parameters, key, None)) for key in SEQUENCES]  # parameter names = sequence keys
    volumes = [("preContrast", pre), ("lowDose", low), ("standardDose", standard)] + sequences
    for label, node in volumes:
        if node is None:
            continue
        if node.GetImageData() is None:
            problems.append(f"The volume '{node.GetName()}' ({label}) has no voxels.")
        elif min(node.GetImageData().GetDimensions()) < 2:
            problems.append(f"The volume '{node.GetName()}' ({label}) is 2D; a 3D volume is needed.")
    if not problems:
        for label, other in [("lowDose", low), ("standardDose", standard)] + sequences:
            if other is not None and not overlap(pre, other):
                problems.append(f"The fields of view of '{pre.GetName()}' (preContrast) and '{other.GetName()}' "
                                f"({label}) do not overlap; check that both scans are of the same patient and session.")
    problems += [p for p in (None if zero_dose else dose_problem(parameters.dose), agent_problem(parameters.agent))
                 if p]
    model = model_problem(parameters.modelPath)
    if model:
        problems.append(model)
    return problems


def set_parameters(parameters, values: dict):
    """Set each ``name=value`` of ``values`` on the parameter node ``parameters``; returns it. ValueError naming the
    parameter for an unknown name or an invalid value (the parameter node checks types, ranges and choices);
    text is accepted for a path."""
    for name, value in values.items():
        if name not in parameters.allParameters:
            raise ValueError(f"Unknown parameter '{name}'; use one of {', '.join(parameters.allParameters)}.")
        if name == "agent" and agent_problem(value):
            raise ValueError(agent_problem(value))
        if isinstance(value, str) and parameters.dataType(name) is Path:
            value = Path(value)  # a path typed as text in the console
        try:
            setattr(parameters, name, value)
        except (TypeError, ValueError) as error:  # the parameter node's type and range checks
            raise ValueError(f"Invalid value for '{name}': {error}") from None
    return parameters
