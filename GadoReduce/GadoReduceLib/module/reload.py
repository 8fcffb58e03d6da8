"""Reloading GadoReduceLib inside a running Slicer (the module's Reload and Test, developer mode).

Slicer's ``reloadScriptedModule`` re-executes only the module's main file; the Lib's submodules stay cached in
``sys.modules`` and a developer's edits would not take effect. MONAIAuto3DSeg reloads its Lib modules in its
``onReload``; this does it for every loaded ``GadoReduceLib`` submodule.
"""

from __future__ import annotations

import importlib
import sys

PACKAGE = "GadoReduceLib"


def reload_library(package: str = PACKAGE) -> list[str]:
    """Load every loaded submodule of ``package`` afresh from its file; returns their names.

    All are dropped from ``sys.modules`` first and then imported again (package first), so that no reloaded
    module picks up a stale object from a sibling not yet reloaded (which ``importlib.reload`` one by one
    would allow)."""
    names = sorted((n for n in sys.modules if n == package or n.startswith(package + ".")),
                   key=lambda n: (n.count("."), n))
    for name in names:
        sys.modules.pop(name, None)
    for name in names:
        importlib.import_module(name)
    return names
