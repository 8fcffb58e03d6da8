"""Background runner of the Slicer module: one job folder in, result images and ``result.json`` out.

Run as ``python -m GadoReduceLib.module.worker JOB_FOLDER`` (Slicer starts it with PythonSlicer through
:mod:`GadoReduceLib.module.jobs`, so that a long computation can be cancelled by killing the process).
``JOB_FOLDER/job.json`` names the inputs (NRRD files written by the module: ``pre_contrast``, ``low_dose``,
optional ``standard_dose``, ``lesion_labels``, ``flair`` and ``t2``) and the parameters (``dose``, ``field_strength`` tesla,
``agent``, ``model`` path or null for the shipped model, ``device``, ``tile``, ``backend``,
``threshold_sigmas``, ``min_volume_mm3``, ``uncertainty`` (bool: an uncertainty map), ``input_labels``: words
naming each input volume in messages).
Progress goes to stdout as lines ``PROGRESS <0-100> <message>``; a user error as one line ``ERROR <message>``
and exit status 2; SIGTERM (the module's Cancel) or SIGINT as exit status 130, with the staged outputs removed.
The computation is :class:`GadoReduceLib.pipeline.Pipeline`'s, as for ``gadoreduce predict``. Outputs
(``pipeline.OUTPUT_IMAGES``, all on the pre-contrast grid, intensities in the pre-contrast's input units) are
written into a temporary folder that becomes ``JOB_FOLDER/out/`` (``<name>.nrrd``) only when all are complete;
``result.json`` is written last, so its presence means the job finished completely; it holds the seconds and
peak memory per stage ("stages", ``io.profiling``). Research software, not for diagnosis.
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


def case_record(record: dict, job: dict, folder: Path, inputs: dict, stages: dict) -> dict:
    """The run's record for the scene (``GadoReduceParameterNode.runRecord``): ``cohort.record``'s layout with the
    inputs named by their volume nodes (sha256 of the file the module wrote) and the panel's values as
    acquisition (source "argument")."""
    from ..cohort.record import RECORD_SCHEMA_VERSION, acquisition_record, input_record
    from ..io.cases import SEQUENCES
    labels = job.get("input_labels", {})
    named = {}
    for key in ("pre_contrast", "low_dose", "standard_dose", *SEQUENCES):
        if job["inputs"].get(key):
            named[key] = input_record(folder / job["inputs"][key], inputs[key])
            named[key]["node"] = labels.get(key)
            del named[key]["path"]  # the job folder is removed after the run
    acquisition = acquisition_record({"dose": job["dose"], "field_strength": job["field_strength"],
                                      "agent": job["agent"]}, dict.fromkeys(("dose", "field_strength", "agent"),
                                                                            "argument"))
    return {"schema_version": RECORD_SCHEMA_VERSION, "inputs": named, "acquisition": acquisition,
            **{k: v for k, v in record.items() if k != "stages"}, "stages": stages}


def run_job(folder: str | os.PathLike, report=None) -> dict:
    """Run the job in ``folder`` (see the module docstring); returns the result record."""
    from ..io.atomic import write_json
    from ..pipeline import Pipeline, write_images

    folder = Path(folder)
    report = report or (lambda percent, message: print(progress_line(percent, message), flush=True))
    job = json.loads((folder / "job.json").read_text())
    out = folder / "out"
    from ..io.atomic import staged_folder
    from ..io.cases import SEQUENCES
    from ..io.profiling import record as profile
    from ..model.checksums import check_model_file
    from ..validation.images import read_inputs
    with profile() as stages, staged_folder(out, option="the job's output folder") as staging:
        with stages.stage("validation"):  # the model file's checksum first: no torch, no image needed
            check_model_file(job.get("model"))
        report(2, "Reading and checking the volumes ...")
        with stages.stage("reading"):
            labels = job.get("input_labels", {})  # the module's node names: errors name the volume
            inputs = read_inputs({name: (labels.get(name), folder / job["inputs"][name] if job["inputs"].get(name)
                                         else None)
                                  for name in ("pre_contrast", "low_dose", "standard_dose", "lesion_labels",
                                               *SEQUENCES)})
        report(5, "Loading the model ...")
        with stages.stage("model loading"):
            pipeline = Pipeline(job.get("model"), device=job.get("device", "auto"), tile=job.get("tile", "auto"),
                                backend=job.get("backend", "auto"), threshold_sigmas=job["threshold_sigmas"],
                                min_volume_mm3=job["min_volume_mm3"], uncertainty=job.get("uncertainty", False))
        result = pipeline.predict_case(inputs["pre_contrast"], inputs["low_dose"], job["dose"],
                                       job["field_strength"], job["agent"], standard_dose=inputs["standard_dose"],
                                       lesion_labels=inputs["lesion_labels"], lesion_names=job.get("lesion_names"),
                                       progress=report, sequences={k: inputs[k] for k in SEQUENCES})
        report(95, "Writing the results ...")
        with stages.stage("writing"):
            paths = write_images(result, staging, ".nrrd")
    r = result.record
    record = {"regions": result.regions, "lesions": result.lesions, "noise_sigma": r["noise_sigma"],
              "noise_sigma_normalized": r["noise_sigma_normalized"], "pre_percentile": r["pre_percentile"],
              "registration_backend": r["registration_backend"], "warnings": r["warnings"], "model": r["model_path"],
              "zero_dose": r["zero_dose"],
              "images": {name: f"out/{path.name}" for name, path in paths.items()}, "stages": stages.as_record(),
              "case_record": case_record(r, job, folder, inputs, stages.as_record())}
    write_json(folder / RESULT_FILE, record, indent=1, allow_nan=True, default=float)
    report(100, "Done.")
    return record


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("ERROR usage: python -m GadoReduceLib.module.worker JOB_FOLDER", flush=True)
        return 2
    from ..io.interrupts import interrupts_handled
    from ..io.memory import command_allocator
    try:
        with interrupts_handled(), command_allocator():
            run_job(argv[0])
    except KeyboardInterrupt:  # Cancel in the module (SIGTERM) or Ctrl-C: the staged outputs are removed
        print("ERROR cancelled; no output was kept", flush=True)
        return 130
    except (ValueError, OSError) as error:  # user errors: one line
        from ..io.atomic import user_message
        print(f"ERROR {' '.join(user_message(error).split())}", flush=True)
        return 2
    except RuntimeError as error:  # ITK, elastix or torch failed on these inputs
        first = next((line.strip() for line in str(error).splitlines() if "ERROR" in line), str(error).strip())
        print(f"ERROR the computation failed ({' '.join(first.split())[:300]}); check that the volumes are whole "
              "3D T1w brain scans with ordinary intensities", flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
