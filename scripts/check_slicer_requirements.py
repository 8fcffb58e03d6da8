"""Check that every requirement the Slicer module would install has wheels on each Slicer generation's Python.

For Slicer 5.8 (Python 3.9, numpy 1.26.4, scipy 1.13.1) and 5.10 (Python 3.12, numpy 2.0.2, scipy 1.13.1) it
prints the install plan of ``GadoReduceLib.module.install.dependency_plan`` (with and without SlicerElastix)
and runs ``pip download --no-deps --only-binary=:all: --python-version X.Y`` for each requirement (needs the
package index; not run in CI). Exit status 1 when a requirement has no wheel.

    python scripts/check_slicer_requirements.py [--platform manylinux2014_x86_64] [--platform win_amd64]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "GadoReduce"))

from GadoReduceLib.module.install import dependency_plan  # noqa: E402

GENERATIONS = {
    "Slicer 5.8": ("3.9", {"numpy": "1.26.4", "scipy": "1.13.1"}),
    "Slicer 5.10": ("3.12", {"numpy": "2.0.2", "scipy": "1.13.1"}),
}


def wheel_for(requirement: str, python: str, platform: str, dest: str) -> str | None:
    """The wheel pip would take for ``requirement`` on ``python``/``platform``, or None."""
    out = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                          "--python-version", python, "--platform", platform, "--dest", dest, "--quiet",
                          requirement], capture_output=True, text=True)
    if out.returncode != 0:
        return None
    wheels = sorted(Path(dest).glob("*.whl"), key=lambda p: p.stat().st_mtime)
    return wheels[-1].name if wheels else "?"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--platform", action="append", default=None,
                        help="pip platform tag(s) (default: manylinux2014_x86_64 and win_amd64)")
    args = parser.parse_args()
    platforms = args.platform or ["manylinux2014_x86_64", "win_amd64"]
    failures = 0
    for name, (python, bundled) in GENERATIONS.items():
        for elastix in (True, False):
            plan = dependency_plan(slicer_elastix=elastix, installed=bundled, python_version=python)
            print(f"{name} (Python {python}), SlicerElastix {'present' if elastix else 'absent'}: "
                  f"torch {plan['torch']} (PyTorch extension); pip {plan['pip']}; kept {plan['keep']}")
            for requirement in plan["pip"] + ([plan["torch"]] if plan["torch"] else []):
                for platform in platforms:
                    with tempfile.TemporaryDirectory() as dest:
                        wheel = wheel_for(requirement, python, platform, dest)
                    failures += wheel is None
                    print(f"    {requirement:32s} {platform:22s} {wheel or 'NO WHEEL'}")
    print("all requirements have wheels" if not failures else f"{failures} requirement(s) without a wheel")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
