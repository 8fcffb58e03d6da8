"""Background runner of the Slicer module: one job folder in, result images and ``result.json`` out.

Run as ``python -m GadoReduceLib.module.worker JOB_FOLDER`` (Slicer starts it with PythonSlicer through
:mod:`GadoReduceLib.module.jobs`, so that a long computation can be cancelled by killing the process).
``JOB_FOLDER/job.json`` names the inputs (NRRD files written by the module: ``pre_contrast``,
``low_dose``, optional ``standard_dose`` and ``lesion_labels``) and the parameters (``dose``,
``field_strength`` tesla, ``agent``, ``model`` path or null for the shipped model, ``device``, ``tile``,
``backend``, ``threshold_sigmas``, ``min_volume_mm3``). Progress goes to stdout as lines
``PROGRESS <0-100> <message>``; a user error as one line ``ERROR <message>`` and exit status 2.
Outputs (``OUTPUT_IMAGES``, all on the pre-contrast grid, intensities in the pre-contrast's input units) are
written atomically into ``JOB_FOLDER/out/``; ``result.json`` is written last, so its presence means the job
finished completely. Research software, not for diagnosis.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import SimpleITK as sitk

OUTPUT_IMAGES = ("synthetic_standard_dose", "beyond_standard_dose", "contrast_signal", "enhancing_labels",
                 "normalized_subtraction", "low_dose_registered")
"""Images written into ``out/`` as ``<name>.nrrd``; with a standard dose also ``standard_dose_registered``."""
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


def _write_json(path: Path, data: dict) -> None:
    fd, tmp = tempfile.mkstemp(suffix=".json", dir=path.parent, prefix=".partial-")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=1, allow_nan=True)
    os.replace(tmp, path)


def lesion_metrics(labels: sitk.Image, images: dict[str, sitk.Image], pre_contrast: sitk.Image,
                   brain_mask: sitk.Image, names: dict | None = None) -> list[dict]:
    """One row per lesion label > 0: CNR, LBR and CEP (paper 002) of each image in ``images``
    (name -> image on the grid of ``labels``), with the healthy brain = ``brain_mask`` minus all lesions."""
    from ..metrics import quality as metrics
    lab = sitk.GetArrayFromImage(labels)
    brain = sitk.GetArrayFromImage(brain_mask) > 0
    healthy = brain & (lab == 0)
    pre = sitk.GetArrayFromImage(pre_contrast)
    arrays = {name: sitk.GetArrayFromImage(image) for name, image in images.items()}
    rows = []
    for label in (int(v) for v in np.unique(lab[lab > 0])):
        lesion = lab == label
        row = {"lesion": (names or {}).get(str(label), f"lesion {label}"), "label": label,
               "volume_mm3": float(lesion.sum() * np.prod(labels.GetSpacing()))}
        for name, array in arrays.items():
            row[f"cnr_{name}"] = metrics.contrast_to_noise_ratio(array, lesion, healthy | lesion)
            row[f"lbr_{name}"] = metrics.lesion_to_brain_ratio(array, lesion, healthy | lesion)
            row[f"cep_{name}"] = metrics.contrast_enhancement_percentage(array, pre, lesion)
        rows.append(row)
    return rows


def run_job(folder: str | os.PathLike, report=None) -> dict:
    """Run the job in ``folder`` (see the module docstring); returns the result record."""
    from ..io.imageio import read_image, write_image
    from ..inference.predict import synthesize
    from ..model.files import load_model
    from ..preprocessing.preprocess import preprocess
    from ..inference.regions import enhancing_regions, region_statistics

    folder = Path(folder)
    report = report or (lambda percent, message: print(progress_line(percent, message), flush=True))
    job = json.loads((folder / "job.json").read_text())
    out = folder / "out"
    out.mkdir(exist_ok=True)
    report(2, "Loading the model ...")
    loaded = load_model(job.get("model"), device="cpu")
    report(5, "Reading the volumes ...")
    inputs = {name: read_image(folder / job["inputs"][name]) if job["inputs"].get(name) else None
              for name in ("pre_contrast", "low_dose", "standard_dose", "lesion_labels")}
    report(10, "Registration, brain mask, intensity and noise normalization ...")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # reported from the QC record
        result = preprocess(inputs["pre_contrast"], inputs["low_dose"], inputs["standard_dose"],
                            backend=job.get("backend", "auto"))
    report(60, "Predicting the contrast signal with the CNN ...")
    images = synthesize(loaded, result, job["dose"], job["field_strength"], job["agent"],
                        device=job.get("device", "auto"), tile=job.get("tile"))
    report(90, "Enhancing regions and statistics ...")
    mapped = result.outputs()
    scale = float(result.pre_percentile)
    noise_sigma = float(result.noise_sigma_ld) * scale  # in the contrast signal's (input) units
    brain = mapped["brain_mask"]
    images["low_dose_registered"] = mapped["low_dose_registered"] * scale
    written = OUTPUT_IMAGES
    if inputs["standard_dose"] is not None:
        images["standard_dose_registered"] = mapped["standard_dose_registered"] * scale
        written += ("standard_dose_registered",)
    labels = enhancing_regions(images["contrast_signal"], noise_sigma, brain,
                               threshold_sigmas=job["threshold_sigmas"], min_volume_mm3=job["min_volume_mm3"])
    reference = mapped["subtraction_sd"] * scale if inputs["standard_dose"] is not None else None
    rows = region_statistics(labels, images["contrast_signal"], reference_contrast=reference)
    lesion_rows = []
    if inputs["lesion_labels"] is not None:
        compared = {"low_dose": images["low_dose_registered"],
                    "synthetic_standard_dose": images["synthetic_standard_dose"]}
        if inputs["standard_dose"] is not None:
            compared["standard_dose"] = images["standard_dose_registered"]
        lesion_rows = lesion_metrics(sitk.Cast(inputs["lesion_labels"], sitk.sitkUInt16), compared,
                                     inputs["pre_contrast"], brain, job.get("lesion_names"))
    report(95, "Writing the results ...")
    images.update({"enhancing_labels": labels, "normalized_subtraction": mapped["normalized_subtraction_ld"]})
    for name in written:
        write_image(images[name], out / f"{name}.nrrd")
    record = {"regions": rows, "lesions": lesion_rows, "noise_sigma": noise_sigma,
              "noise_sigma_normalized": float(result.noise_sigma_ld), "pre_percentile": scale,
              "registration_backend": result.low_dose.registration.backend,
              "warnings": list(result.qc.get("warnings", [])),
              "model": str(loaded.path) if loaded.path else None,
              "images": {name: f"out/{name}.nrrd" for name in written}}
    _write_json(folder / RESULT_FILE, record)
    report(100, "Done.")
    return record


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("ERROR usage: python -m GadoReduceLib.module.worker JOB_FOLDER", flush=True)
        return 2
    try:
        run_job(argv[0])
    except ValueError as error:  # user errors: one line
        print(f"ERROR {' '.join(str(error).split())}", flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
