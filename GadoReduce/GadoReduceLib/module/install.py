"""Which Python packages the Slicer module needs and installing them inside Slicer (at first Apply, never at
import): torch through the PyTorch extension, the others with pip.

``slicer`` is imported lazily: this file imports without Slicer.
"""

from __future__ import annotations

import importlib.util

PIP_REQUIREMENTS = {"scipy": "scipy==1.17.1", "skimage": "scikit-image==0.26.0", "itk": "itk-elastix==0.25.4"}
"""Import name -> pinned requirement (the pins of pyproject.toml) the module installs when missing."""


def missing_imports(names=("torch", "scipy", "skimage", "itk")) -> set[str]:
    return {name for name in names if importlib.util.find_spec(name) is None}


def dependency_plan(missing: set[str], slicer_elastix: bool, has_pip_ensure: bool) -> dict:
    """What :meth:`GadoReduceLogic.ensureDependencies` does for the ``missing`` import names.

    ``torch`` is installed by the PyTorch extension (``PyTorchUtilsLogic().installTorch``), never by pip;
    itk-elastix only when SlicerElastix is absent (registration then runs in-process); the other
    packages with ``pip_ensure`` (:func:`pip_ensure_module`) or else ``slicer.util.pip_install``.
    Returns {"torch": bool, "pip": [requirements], "installer": "pip_ensure" | "pip_install" | None}.
    """
    pip = [PIP_REQUIREMENTS[name] for name in sorted(missing)
           if name in PIP_REQUIREMENTS and not (name == "itk" and slicer_elastix)]
    return {"torch": "torch" in missing, "pip": pip,
            "installer": (("pip_ensure" if has_pip_ensure else "pip_install") if pip else None)}


def pip_ensure_module():
    """Slicer's module with ``pip_ensure`` (``slicer.pydeps``, Slicer >= 5.11; ``slicer.packaging`` in some
    builds), None in older Slicer versions (then ``slicer.util.pip_install`` is used)."""
    import importlib
    for name in ("slicer.pydeps", "slicer.packaging"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        if hasattr(module, "pip_ensure"):
            return module
    return None


def ensure_dependencies(ask_confirmation: bool = True) -> bool:
    """Inside Slicer: install what :func:`dependency_plan` says for the missing imports; see
    ``GadoReduceLogic.ensureDependencies``."""
    import slicer
    missing = missing_imports()
    if not missing:
        return True
    installer = pip_ensure_module()
    plan = dependency_plan(missing, slicer_elastix=hasattr(slicer.modules, "elastix"),
                           has_pip_ensure=installer is not None)
    if plan["torch"]:
        try:
            import PyTorchUtils
        except ImportError:
            raise ValueError("PyTorch is missing: install the PyTorch extension from the Extensions Manager, "
                             "restart Slicer and apply again.") from None
        if PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=ask_confirmation) is None:
            return False
    if plan["pip"]:
        if ask_confirmation and not slicer.util.confirmOkCancelDisplay(
                f"GadoReduce needs these Python packages: {', '.join(plan['pip'])}. Install them now?"):
            return False
        if plan["installer"] == "pip_ensure":
            from packaging.requirements import Requirement
            installer.pip_ensure([Requirement(r) for r in plan["pip"]], requester="GadoReduce")
        else:
            slicer.util.pip_install(plan["pip"])
    if missing_imports():
        slicer.util.infoDisplay("GadoReduce installed Python packages; please restart Slicer and apply again.")
        return False
    return True
