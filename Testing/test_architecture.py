"""The package's shape: stage sub-packages, no import circle, no private name imported across modules,
no module over 500 lines (issue 12). The checks read the source with ``ast``; each has a twin test on a
small made-up package that shows it can fail."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from conftest import MODULE_DIR

PACKAGE = MODULE_DIR / "GadoReduceLib"
MAX_LINES = 500
STAGES = ("io", "physics", "phantom", "preprocessing", "model", "inference", "metrics", "training", "evaluation",
          "module", "validation")
TOP_LEVEL = {"__init__", "cli", "demo", "pipeline"}


def module_names(package: Path) -> dict[str, Path]:
    """Dotted module name (relative to the package, '' for its __init__) -> file."""
    names = {}
    for path in sorted(package.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        parts = list(path.relative_to(package).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def _resolve(importer: str, is_package: bool, level: int, module: str | None, root: str) -> str | None:
    """Dotted name (relative to the package) an import refers to, None for imports from outside it."""
    if level == 0:
        if module is None or not (module == root or module.startswith(root + ".")):
            return None
        return module[len(root) + 1:] if module != root else ""
    base = importer.split(".") if importer else []
    if not is_package:
        base = base[:-1]
    if level > 1:
        base = base[:len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def imports(package: Path, root: str = "GadoReduceLib") -> list[tuple[str, str, list[str], int]]:
    """(importer, imported module, names taken from it, line) for every import inside the package,
    at any depth (imports inside functions count: a circle through a lazy import is still a circle)."""
    names = module_names(package)
    found = []
    for importer, path in names.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                target = _resolve(importer, is_package, node.level, node.module, root)
                if target is None:
                    continue
                plain = []
                for alias in node.names:
                    sub = f"{target}.{alias.name}" if target else alias.name
                    if sub in names:  # "from . import module"
                        found.append((importer, sub, [], node.lineno))
                    else:
                        plain.append(alias.name)
                if plain:
                    found.append((importer, target, plain, node.lineno))
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    target = _resolve(importer, is_package, 0, alias.name, root)
                    if target is not None:
                        found.append((importer, target, [], node.lineno))
    return found


def import_cycles(package: Path) -> list[list[str]]:
    """Cycles of the module import graph (each as the list of modules around it)."""
    names = module_names(package)
    graph = {name: set() for name in names}
    for importer, target, _, _ in imports(package):
        if target in names and target != importer and target != "":
            graph[importer].add(target)
    cycles, state, stack = [], {}, []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)
    return cycles


def private_imports(package: Path) -> list[str]:
    """'importer:line takes _name from module' for every private name imported from another module."""
    return [f"{importer}:{line} takes {name} from {target or 'the package'}"
            for importer, target, taken, line in imports(package)
            for name in taken if name.startswith("_") and not name.startswith("__") and target != importer]


def long_modules(package: Path, limit: int = MAX_LINES) -> list[str]:
    return [f"{path.relative_to(package.parent)}: {n} lines" for path in sorted(package.rglob("*.py"))
            if (n := len(path.read_text().splitlines())) > limit]


# ------------------------------------------------------------------------------------------- the package


def test_every_stage_is_a_documented_sub_package():
    for stage in STAGES:
        init = PACKAGE / stage / "__init__.py"
        assert init.is_file(), f"GadoReduceLib/{stage}/ is not a package"
        assert ast.get_docstring(ast.parse(init.read_text())), f"GadoReduceLib/{stage}/__init__.py has no docstring"


def test_only_entry_points_at_the_top_of_the_package():
    top = {path.stem for path in PACKAGE.glob("*.py")}
    assert top <= TOP_LEVEL, f"modules at the top of GadoReduceLib/ that belong in a stage folder: {sorted(top - TOP_LEVEL)}"


def test_no_import_circle():
    cycles = import_cycles(PACKAGE)
    assert not cycles, "import circles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_no_private_name_imported_across_modules():
    found = private_imports(PACKAGE)
    assert not found, "private names imported across modules: " + "; ".join(found)


def test_no_module_over_500_lines():
    found = long_modules(PACKAGE) + long_modules(MODULE_DIR / "GadoReduce.py")
    assert not found, f"modules over {MAX_LINES} lines (split them by responsibility): {found}"


# --------------------------------------------------------------------------------- the checks can fail


@pytest.fixture
def made_up_package(tmp_path):
    package = tmp_path / "Lib"
    (package / "stage").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "stage" / "__init__.py").write_text('"""A stage."""\n')
    (package / "stage" / "a.py").write_text("from .b import thing\n")
    (package / "stage" / "b.py").write_text("def thing():\n    from . import a\n    return a\n")
    (package / "c.py").write_text("from .stage.b import _hidden\nimport Lib.stage.a\n" + "x = 1\n" * 600)
    return package


def test_checks_find_a_circle_a_private_import_and_a_long_module(made_up_package):
    cycles = import_cycles(made_up_package)
    assert cycles and set(cycles[0]) == {"stage.a", "stage.b"}, cycles
    assert private_imports(made_up_package) == ["c:1 takes _hidden from stage.b"]
    assert long_modules(made_up_package) == ["Lib/c.py: 602 lines"]
    edges = {(i, t) for i, t, _, _ in imports(made_up_package, root="Lib")}
    assert ("c", "stage.a") in edges and ("stage.b", "stage.a") in edges
