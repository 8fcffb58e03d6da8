"""The Slicer module's input checks: each problem as a message that names the parameter.

Reads volume nodes through their VTK methods only (no ``slicer`` import). Research software, not for diagnosis.
"""

from __future__ import annotations

import os

from ..physics.agents import AGENTS, get_agent


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
    if pre is None:
        problems.append("Pre-contrast volume is not set (preContrast): select the T1w scan before contrast.")
    if low is None:
        problems.append("Low-dose volume is not set (lowDose): select the low-dose contrast-enhanced T1w scan.")
    if pre is not None and low is not None and pre == low:
        problems.append("Pre-contrast and low-dose must be two different volumes.")
    for label, node in (("preContrast", pre), ("lowDose", low), ("standardDose", standard)):
        if node is None:
            continue
        if node.GetImageData() is None:
            problems.append(f"The volume '{node.GetName()}' ({label}) has no voxels.")
        elif min(node.GetImageData().GetDimensions()) < 2:
            problems.append(f"The volume '{node.GetName()}' ({label}) is 2D; a 3D volume is needed.")
    if not problems:
        for label, other in (("lowDose", low), ("standardDose", standard)):
            if other is not None and not overlap(pre, other):
                problems.append(f"The fields of view of '{pre.GetName()}' (preContrast) and '{other.GetName()}' "
                                f"({label}) do not overlap; check that both scans are of the same patient and session.")
    problems += [p for p in (dose_problem(parameters.dose), agent_problem(parameters.agent)) if p]
    if parameters.modelPath and not os.path.isfile(parameters.modelPath):
        problems.append(f"The model file '{parameters.modelPath}' (modelPath) does not exist; leave it empty for "
                        "the default model.")
    return problems


def set_parameters(parameters, values: dict):
    """Set each ``name=value`` of ``values`` on the parameter node ``parameters``; returns it. ValueError naming the
    parameter for an unknown name or an invalid value (the parameter node checks ranges and choices)."""
    for name, value in values.items():
        if name not in parameters.allParameters:
            raise ValueError(f"Unknown parameter '{name}'; use one of {', '.join(parameters.allParameters)}.")
        try:
            setattr(parameters, name, value)
        except ValueError as error:
            raise ValueError(f"Invalid value for '{name}': {error}") from None
    return parameters
