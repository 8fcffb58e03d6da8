"""Which Python packages the Slicer module needs and installing them inside Slicer (at first Apply, never at
import): torch through the PyTorch extension, the others with ``slicer.util.pip_install``.

Requirements are version ranges (``packaging`` requirements with markers), not the exact pins of
``pyproject.toml``: Slicer 5.8 runs Python 3.9 with numpy 1.26 and scipy 1.13, Slicer 5.10 Python 3.12 with
numpy 2.0, and exact pins have no wheels on every one of them. What is installed is read with
``importlib.metadata`` (SlicerNNUnet's InstallLogic does the same). ``slicer`` is imported lazily: this file
imports without Slicer. ``scripts/check_slicer_requirements.py`` checks with ``pip download`` that every
requirement has wheels on each Slicer generation's Python.
"""

from __future__ import annotations

from importlib import metadata

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.version import InvalidVersion, Version

TORCH_REQUIREMENT = "torch>=2.0"
"""Installed by the PyTorch extension (``PyTorchUtilsLogic().installTorch``), which picks the CUDA or CPU build."""
PIP_REQUIREMENTS = (
    "scipy>=1.9",  # bundled with Slicer (5.8: 1.13.1): installed only where a custom build lacks it
    'scikit-image>=0.19,<0.25; python_version < "3.10"',  # 0.24 is the last release for Python 3.9
    'scikit-image>=0.22; python_version >= "3.10"',
    "itk-elastix>=0.19",  # only without SlicerElastix (in-process registration); left out with it
)
"""What the module installs with pip where missing or too old (ranges; markers select per Python version)."""
ITK_ELASTIX = "itk-elastix"
KEPT = ("numpy",)
"""Slicer's bundled packages that an install must not replace: passed as ``name==installed version``."""


def installed_version(name: str, installed: dict | None = None) -> Version | None:
    """Installed version of the distribution ``name`` (``importlib.metadata``, or the dict ``installed``
    name -> version text for planning another environment); None when not installed."""
    try:
        text = installed.get(name) if installed is not None else metadata.version(name)
    except metadata.PackageNotFoundError:
        return None
    try:
        return Version(text) if text else None
    except InvalidVersion:
        return None


def unsatisfied(requirements, installed: dict | None = None, python_version: str | None = None) -> list[str]:
    """The requirements (strings) that apply to this Python (their markers; ``python_version`` "3.9" plans for
    another) and are not installed in a version they allow."""
    environment = default_environment()
    if python_version:
        environment.update(python_version=python_version, python_full_version=python_version + ".0")
    missing = []
    for text in requirements:
        requirement = Requirement(text)
        if requirement.marker is not None and not requirement.marker.evaluate(environment):
            continue
        version = installed_version(requirement.name, installed)
        if version is None or not requirement.specifier.contains(version, prereleases=True):
            missing.append(str(Requirement(f"{requirement.name}{requirement.specifier}")))
    return missing


def dependency_plan(slicer_elastix: bool, installed: dict | None = None, python_version: str | None = None) -> dict:
    """What :meth:`GadoReduceLogic.ensureDependencies` installs.

    slicer_elastix: SlicerElastix is present (registration then runs its bundled elastix executable and needs
    no itk-elastix); installed / python_version: plan for another environment (tests), default this one.
    Returns {"torch": requirement or None, "pip": [requirements], "keep": [name==version of Slicer's bundled
    packages passed along so that pip keeps them]}.
    """
    wanted = [r for r in PIP_REQUIREMENTS if not (slicer_elastix and Requirement(r).name == ITK_ELASTIX)]
    pip = unsatisfied(wanted, installed, python_version)
    keep = [f"{name}=={installed_version(name, installed)}" for name in KEPT
            if pip and installed_version(name, installed) is not None]
    torch = unsatisfied([TORCH_REQUIREMENT], installed, python_version)
    return {"torch": torch[0] if torch else None, "pip": pip, "keep": keep}


def confirmation_text(plan: dict) -> str:
    """The one question the user is asked before anything is installed."""
    items = ([f"PyTorch ({plan['torch']}, through the PyTorch extension)"] if plan["torch"] else []) + plan["pip"]
    return ("GadoReduce needs these Python packages, which are not installed yet: " + ", ".join(items)
            + ". Install them now? This downloads several hundred MB and takes a few minutes.")


def ensure_dependencies(ask_confirmation: bool = True) -> bool:
    """Inside Slicer: install what :func:`dependency_plan` lists after one confirmation; see
    ``GadoReduceLogic.ensureDependencies``. True when every requirement is met afterwards."""
    import slicer
    plan = dependency_plan(slicer_elastix=hasattr(slicer.modules, "elastix"))
    if not plan["torch"] and not plan["pip"]:
        return True
    if plan["torch"]:
        try:
            import PyTorchUtils
        except ImportError:
            raise ValueError("PyTorch is missing: install the PyTorch extension from the Extensions Manager, "
                             "restart Slicer and apply again.") from None
    if ask_confirmation and not slicer.util.confirmOkCancelDisplay(confirmation_text(plan)):
        return False
    if plan["torch"]:
        requirement = Requirement(plan["torch"])
        if PyTorchUtils.PyTorchUtilsLogic().installTorch(
                askConfirmation=False, torchVersionRequirement=str(requirement.specifier)) is None:
            return False
    if plan["pip"]:
        slicer.util.pip_install(plan["pip"] + plan["keep"])
    left = dependency_plan(slicer_elastix=hasattr(slicer.modules, "elastix"))
    if left["torch"] or left["pip"]:
        slicer.util.infoDisplay("GadoReduce installed Python packages, but these are still not usable: "
                                + ", ".join(filter(None, [left["torch"], *left["pip"]]))
                                + ". Please restart Slicer and apply again.")
        return False
    return True
