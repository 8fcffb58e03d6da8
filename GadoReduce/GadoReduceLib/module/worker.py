"""Background runner of the Slicer module: one job folder in, result images and ``result.json`` out.

Run as ``python -m GadoReduceLib.module.worker JOB_FOLDER`` (Slicer starts it with PythonSlicer through
:mod:`GadoReduceLib.module.jobs`, so that a long computation can be cancelled by killing the process).
``JOB_FOLDER/job.json`` names the inputs (NRRD files written by the module: ``pre_contrast``,
``low_dose``, optional ``standard_dose`` and ``lesion_labels``) and the parameters (``dose``,
``field_strength`` tesla, ``agent``, ``model`` path or null for the shipped model, ``device``, ``tile``,
``backend``, ``threshold_sigmas``, ``min_volume_mm3``). Progress goes to stdout as lines
``PROGRESS <0-100> <message>``; a user error as one line ``ERROR <message>`` and exit status 2.
The computation is :class:`GadoReduceLib.pipeline.Pipeline`'s, as for ``gadoreduce predict``. Outputs
(``pipeline.OUTPUT_IMAGES``, all on the pre-contrast grid, intensities in the pre-contrast's input units) are written
atomically into ``JOB_FOLDER/out/`` as ``<name>.nrrd``; ``result.json`` is written last, so its presence means
the job finished completely; it holds the seconds and peak memory per stage ("stages",
``io.profiling``). Research software, not for diagnosis.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

RESULT_FILE = "result.json"


def progress_line(percent: float, message: str) -> str:
    """The stdout line the module parses: ``PROGRESS <0-100> <message>`` (one line)."""
    return f"PROGRESS {max(0.0, min(100.0, float(percent))):.0f} {' '.join(str(message).split())}"


def parse_progress(line: str) -> tuple[float, str] | None:
    """(fraction in [0, 1], message) of a progress line, None for any other line."""
    parts = line.strip().split(" ", 2)
    if len(parts) < 2 or parts[0] != "PROGRESS":
        return None
    try:
        fraction = float(parts[1]) / 100.0
    except ValueError:
        return None
    return fraction, parts[2] if len(parts) > 2 else ""


def run_job(folder: str | os.PathLike, report=None) -> dict:
    """Run the job in ``folder`` (see the module docstring); returns the result record."""
    from ..io.atomic import write_json
    from ..io.imageio import read_image
    from ..pipeline import Pipeline, write_images

    folder = Path(folder)
    report = report or (lambda percent, message: print(progress_line(percent, message), flush=True))
    job = json.loads((folder / "job.json").read_text())
    out = folder / "out"
    out.mkdir(exist_ok=True)
    from ..io.profiling import record as profile
    with profile() as stages:
        report(2, "Loading the model ...")
        with stages.stage("model loading"):
            pipeline = Pipeline(job.get("model"), device=job.get("device", "auto"), tile=job.get("tile", "auto"),
                                backend=job.get("backend", "auto"), threshold_sigmas=job["threshold_sigmas"],
                                min_volume_mm3=job["min_volume_mm3"])
        report(5, "Reading the volumes ...")
        with stages.stage("reading"):
            inputs = {name: read_image(folder / job["inputs"][name]) if job["inputs"].get(name) else None
                      for name in ("pre_contrast", "low_dose", "standard_dose", "lesion_labels")}
        result = pipeline.predict_case(inputs["pre_contrast"], inputs["low_dose"], job["dose"],
                                       job["field_strength"], job["agent"], standard_dose=inputs["standard_dose"],
                                       lesion_labels=inputs["lesion_labels"], lesion_names=job.get("lesion_names"),
                                       progress=report)
        report(95, "Writing the results ...")
        with stages.stage("writing"):
            paths = write_images(result, out, ".nrrd")
    r = result.record
    record = {"regions": result.regions, "lesions": result.lesions, "noise_sigma": r["noise_sigma"],
              "noise_sigma_normalized": r["noise_sigma_normalized"], "pre_percentile": r["pre_percentile"],
              "registration_backend": r["registration_backend"], "warnings": r["warnings"], "model": r["model_path"],
              "images": {name: f"out/{path.name}" for name, path in paths.items()}, "stages": stages.as_record()}
    write_json(folder / RESULT_FILE, record, indent=1, allow_nan=True)
    report(100, "Done.")
    return record


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("ERROR usage: python -m GadoReduceLib.module.worker JOB_FOLDER", flush=True)
        return 2
    from ..io.memory import command_allocator
    try:
        with command_allocator():
            run_job(argv[0])
    except ValueError as error:  # user errors: one line
        print(f"ERROR {' '.join(str(error).split())}", flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
