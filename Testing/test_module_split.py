"""The Slicer module's code split by job (issue 12): the helpers in GadoReduceLib/module/ take the scene and nodes
they work on, never the module's logic; the self-test needs no evaluation code; the sample data names its low
dose by the case-folder rule (``imageio.dose_name``). The AST checks each have a twin showing they can fail."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import MODULE_DIR

MODULE_PACKAGE = MODULE_DIR / "GadoReduceLib" / "module"


def functions_taking(source: str, name: str, filename: str = "<source>") -> list[str]:
    """'function:line' of every function (and method) in ``source`` with a parameter called ``name``."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            args = node.args
            every = args.posonlyargs + args.args + args.kwonlyargs + [a for a in (args.vararg, args.kwarg) if a]
            if any(arg.arg == name for arg in every):
                found.append(f"{getattr(node, 'name', 'lambda')}:{node.lineno}")
    return found


def imported_modules(source: str) -> set[str]:
    """Every module name an ``import`` or ``from ... import`` in ``source`` names (at any depth)."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_no_module_helper_takes_the_logic():
    found = {path.name: hits for path in sorted(MODULE_PACKAGE.glob("*.py"))
             if (hits := functions_taking(path.read_text(), "logic", str(path)))}
    assert not found, f"functions in GadoReduceLib/module/ that take the module's logic (pass nodes instead): {found}"


def test_logic_check_can_fail():
    source = ("def create_outputs(logic, parameters):\n    return logic.volumeFromImage(parameters)\n\n"
              "class A:\n    def m(self, *, logic=None):\n        pass\n\n"
              "def fine(scene, parameters):\n    return scene\n")
    assert functions_taking(source, "logic") == ["create_outputs:1", "m:5"]


def test_module_file_imports_no_evaluation_code():
    names = imported_modules((MODULE_DIR / "GadoReduce.py").read_text())
    assert "GadoReduceLib.phantom.truth" in names  # the self-test's phantom truth
    evaluation = sorted(n for n in names if n.startswith("GadoReduceLib.evaluation"))
    assert not evaluation, f"GadoReduce.py imports evaluation code: {evaluation}"
    assert imported_modules("def f():\n    from GadoReduceLib.evaluation.cases import x\n") == \
        {"GadoReduceLib.evaluation.cases"}  # the check sees imports inside functions


def test_module_helper_files_are_gone():
    assert not (MODULE_PACKAGE / "logic_helpers.py").exists() and not (MODULE_PACKAGE / "support.py").exists()


def test_sample_low_dose_is_named_by_dose_name(harness):
    """The sample phantom's low-dose stem and node name follow ``imageio.dose_name`` (low_dose_033 for 33 %)."""
    from GadoReduceLib.io.imageio import dose_name
    from GadoReduceLib.module.sample_data import SAMPLE_DOSE, SAMPLE_NAME, SAMPLE_SCANS, sample_phantom_nodes
    from GadoReduceLib.phantom.generate import PhantomConfig, generate_phantom
    stems = [stem for stem, _ in SAMPLE_SCANS]
    assert stems == ["pre_contrast", dose_name(SAMPLE_DOSE), "standard_dose"] and dose_name(SAMPLE_DOSE) == "low_dose_033"
    case = generate_phantom(PhantomConfig(seed=1, doses=(SAMPLE_DOSE,)))  # small grid: names only
    pre, low, standard, _ = sample_phantom_nodes(harness.scene, case)
    assert low.GetName() == f"{SAMPLE_NAME} {dose_name(SAMPLE_DOSE)}" == SAMPLE_SCANS[1][1]
    assert pre.GetName().endswith("pre_contrast") and standard.GetName().endswith("standard_dose")


def test_phantom_truth_lives_with_the_phantom():
    """The phantom's truth (used by the self-test) is importable without the evaluation package."""
    import GadoReduceLib.phantom.truth as truth
    entries = [{"label": 1, "type": "solid"}, {"label": 2, "type": "non_enhancing"}, {"label": 3, "type": "ring"}]
    assert [e["label"] for e in truth.enhancing_lesions(entries)] == [1, 3]
    assert truth.PHANTOM_THRESHOLD_SIGMAS == 12.0
    assert "evaluation" not in Path(truth.__file__).parts


def test_volume_outputs_follow_the_pipeline_list():
    """Every output image of ``pipeline.OUTPUT_IMAGES`` but the region labels has one parameter-node volume, and
    each such parameter is declared by the module's parameter node."""
    from GadoReduceLib.module.outputs import VOLUME_OUTPUTS, VOLUME_PARAMETERS
    from GadoReduceLib.pipeline import OUTPUT_IMAGES
    images = {image.name: image for image in OUTPUT_IMAGES}
    assert set(VOLUME_PARAMETERS) == {name for name, image in images.items() if image.units != "labels"}
    assert [(images[name].title, images[name].signed) for _, name, _, _ in VOLUME_OUTPUTS] == \
        [(suffix, signed) for _, _, suffix, signed in VOLUME_OUTPUTS]
    tree = ast.parse((MODULE_DIR / "GadoReduce.py").read_text())
    node_class = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "GadoReduceParameterNode")
    declared = {n.target.id for n in node_class.body if isinstance(n, ast.AnnAssign)}
    assert {parameter for parameter, _, _, _ in VOLUME_OUTPUTS} <= declared
