"""The Slicer build lists every file; the panel has every widget the code uses; metadata is complete."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from conftest import MODULE_DIR, REPO


def cmake_listed_files(cmake_text: str) -> set[str]:
    """Files named in MODULE_PYTHON_SCRIPTS and MODULE_PYTHON_RESOURCES, ${MODULE_NAME} expanded."""
    module_name = re.search(r"set\(MODULE_NAME\s+(\S+)\)", cmake_text).group(1)
    files = set()
    for block in ("MODULE_PYTHON_SCRIPTS", "MODULE_PYTHON_RESOURCES"):
        match = re.search(rf"set\({block}\s+(.*?)\)", cmake_text, re.S)
        assert match, f"{block} is missing from GadoReduce/CMakeLists.txt"
        for token in match.group(1).split():
            files.add(token.replace("${MODULE_NAME}", module_name))
    return files


def files_that_must_be_listed(module_dir: Path) -> set[str]:
    """Every .py under the module folder and every file under its Resources folder."""
    found = set()
    for path in module_dir.rglob("*"):
        if not path.is_file() or "__pycache__" in path.parts:
            continue
        rel = path.relative_to(module_dir).as_posix()
        if path.suffix == ".py" or rel.startswith("Resources/"):
            found.add(rel)
    return found


def test_cmake_lists_every_python_file_and_resource():
    listed = cmake_listed_files((MODULE_DIR / "CMakeLists.txt").read_text())
    required = files_that_must_be_listed(MODULE_DIR)
    missing = sorted(required - listed)
    assert not missing, f"add these to GadoReduce/CMakeLists.txt: {missing}"
    stale = sorted(f for f in listed if not (MODULE_DIR / f).is_file())
    assert not stale, f"GadoReduce/CMakeLists.txt names files that do not exist: {stale}"


def test_cmake_check_catches_a_missing_file(tmp_path):
    """The check above fails when a file is added but not listed (so it can fail at all)."""
    (tmp_path / "Resources" / "UI").mkdir(parents=True)
    (tmp_path / "Resources" / "UI" / "X.ui").write_text("<ui/>")
    (tmp_path / "X.py").write_text("")
    (tmp_path / "XLib").mkdir()
    (tmp_path / "XLib" / "new_stage.py").write_text("")
    cmake = "set(MODULE_NAME X)\nset(MODULE_PYTHON_SCRIPTS\n ${MODULE_NAME}.py\n)\n" \
            "set(MODULE_PYTHON_RESOURCES\n Resources/UI/${MODULE_NAME}.ui\n)\n"
    missing = files_that_must_be_listed(tmp_path) - cmake_listed_files(cmake)
    assert missing == {"XLib/new_stage.py"}


def ui_widget_names(ui_path: Path) -> set[str]:
    root = ET.parse(ui_path).getroot()
    return {w.get("name") for w in root.iter("widget")}


def test_ui_has_every_widget_the_code_uses():
    code = (MODULE_DIR / "GadoReduce.py").read_text()
    used = set(re.findall(r"self\.ui\.(\w+)", code))
    assert len(used) >= 8, "the widget should use its panel"
    names = ui_widget_names(MODULE_DIR / "Resources" / "UI" / "GadoReduce.ui")
    assert not sorted(used - names), f"widgets used in GadoReduce.py but absent from GadoReduce.ui: {sorted(used - names)}"


def test_ui_parameter_names_match_the_parameter_node():
    """Widgets bound with SlicerParameterName name parameters that the parameter node declares."""
    code = (MODULE_DIR / "GadoReduce.py").read_text()
    block = re.search(r"class GadoReduceParameterNode:(.*?)\n\n\n", code, re.S).group(1)
    declared = set(re.findall(r"^    (\w+):", block, re.M))
    root = ET.parse(MODULE_DIR / "Resources" / "UI" / "GadoReduce.ui").getroot()
    bound = {p.find("string").text for p in root.iter("property") if p.get("name") == "SlicerParameterName"}
    assert bound and bound <= declared, f"unknown parameters in the .ui: {sorted(bound - declared)}"


def test_extension_metadata():
    text = (REPO / "CMakeLists.txt").read_text()
    for key in ("EXTENSION_HOMEPAGE", "EXTENSION_CATEGORY", "EXTENSION_CONTRIBUTORS", "EXTENSION_DESCRIPTION",
                "EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS", "EXTENSION_DEPENDS"):
        value = re.search(rf'set\({key}\s+"([^"]*)"\)', text)
        assert value and value.group(1).strip(), f"{key} is missing or empty"
    depends = re.search(r'set\(EXTENSION_DEPENDS\s+"([^"]*)"\)', text).group(1).split()
    assert set(depends) == {"PyTorch", "SlicerElastix"}
    assert "add_subdirectory(GadoReduce)" in text
    entry = json.loads((REPO / "GadoReduce.json").read_text())
    assert entry["$schema"].endswith("slicer-extension-catalog-entry-schema-v1.0.2.json#")
    assert set(entry["build_dependencies"]) == set(depends)
    assert entry["category"] == re.search(r'set\(EXTENSION_CATEGORY\s+"([^"]*)"\)', text).group(1)
    assert entry["scm_url"].startswith("https://")
    # the catalog schema allows only these keys
    assert set(entry) <= {"$schema", "build_dependencies", "build_subdirectory", "category", "enabled",
                          "scm_revision", "scm_type", "scm_url", "tier"}
    icon = re.search(r'set\(EXTENSION_ICONURL\s+"[^"]*/main/([^"]+)"\)', text).group(1)
    assert (REPO / icon).is_file(), f"the icon URL points to {icon}, which is not in the repository"


@pytest.mark.parametrize("path", ["Resources/GadoReduce.png", "GadoReduce/Resources/Icons/GadoReduce.png"])
def test_icons_are_128px_png(path):
    from PIL import Image
    with Image.open(REPO / path) as image:
        assert image.format == "PNG" and image.size == (128, 128)


def test_core_imports_without_slicer():
    import subprocess
    import sys
    code = ("import sys; sys.modules['slicer'] = None; sys.modules['vtk'] = None\n"
            "import GadoReduceLib.io.imageio, GadoReduceLib.cli, GadoReduceLib.io.resources\n"
            "print(GadoReduceLib.io.resources.resource_path('Atlas', 'mni_icbm152_2009a_t1.nii.gz').is_file())")
    out = subprocess.run([sys.executable, "-c", code], cwd=MODULE_DIR, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "True"


def test_console_script_entry_point_resolves():
    import importlib
    import tomllib
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    module_name, function = project["scripts"]["gadoreduce"].split(":")
    assert callable(getattr(importlib.import_module(module_name), function))
    pins = [d for d in project["dependencies"] + project["optional-dependencies"]["test"]]
    assert all("==" in d for d in pins), f"unpinned dependencies: {[d for d in pins if '==' not in d]}"
    assert "torch==2.13.0" in pins and any(d.startswith("slicer-core==") for d in pins)
