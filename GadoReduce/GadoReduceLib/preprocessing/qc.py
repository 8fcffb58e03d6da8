"""Quality control of the preprocessing: the QC montage PNG and writing all outputs with qc.json."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .. import DISCLAIMER
from ..io.atomic import atomic_path, write_json
from ..io.imageio import write_image
from .preprocess import PreprocessResult, output_names


def qc_montage(result: PreprocessResult, path) -> Path:
    """PNG of axial and coronal mid slices: pre-contrast, registered scans, subtractions, normalized
    subtractions (and contrast mask and signal with a standard dose); brain mask as overlay; the
    registration figures and any warning in the footer."""
    from ..io.preview import montage
    columns = [("pre-contrast", result.pre_contrast), ("low dose registered", result.low_dose.registered),
               ("subtraction LD", result.low_dose.subtraction), ("normalized z LD", result.low_dose.normalized_subtraction)]
    if result.standard_dose is not None:
        columns += [("standard dose registered", result.standard_dose.registered),
                    ("normalized z SD", result.standard_dose.normalized_subtraction),
                    ("contrast mask p", result.contrast_mask), ("contrast signal y", result.contrast_signal)]
    arrays = [sitk.GetArrayFromImage(image) for _, image in columns]
    qc = result.qc
    parts = [f"LD: corr {qc['low_dose']['correlation_after']:.3f}, MI {qc['low_dose']['registration_metric']:.3f}"]
    if "standard_dose" in qc:
        parts.append(f"SD: corr {qc['standard_dose']['correlation_after']:.3f}, "
                     f"MI {qc['standard_dose']['registration_metric']:.3f}")
    parts.append(f"brain {qc['brain_volume_ml']:.0f} ml, sigma_LD {qc['noise_sigma_ld']:.4f}")
    footer = "; ".join(parts) + (f" | WARNING: {len(qc['warnings'])} (see qc.json)" if qc["warnings"] else "")
    mask = sitk.GetArrayFromImage(result.brain_mask).astype(np.int16)
    return montage(arrays, [title for title, _ in columns], path, label_overlay=mask,
                   spacing=result.pre_contrast.GetSpacing(), footer=footer)


QC_FILE = "qc.json"


def output_files(folder, standard_dose: bool, qc_png=None) -> list[Path]:
    """Every file :func:`write_outputs` writes into ``folder`` (and ``qc_png``), known before any work."""
    folder = Path(folder)
    scans = ("low_dose", "standard_dose") if standard_dose else ("low_dose",)
    files = [folder / f"{name}.nii.gz" for name in output_names(standard_dose)]
    files += [folder / f"{scan}_to_pre_contrast.tfm" for scan in scans] + [folder / QC_FILE]
    return files + ([Path(qc_png)] if qc_png else [])


def write_outputs(result: PreprocessResult, folder, qc_png=None) -> dict[str, Path]:
    """Write every output (on the pre-contrast grid) as NIfTI, the transforms (.tfm), when ``qc_png`` is given
    the QC montage, and last ``qc.json`` (with "stages" inside an ``io.profiling.record`` block). Returns
    name -> path."""
    from ..io.profiling import active, stage
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with stage("writing"):
        paths = {name: write_image(image, folder / f"{name}.nii.gz") for name, image in result.outputs().items()}
        scans = [("low_dose", result.low_dose)] + ([("standard_dose", result.standard_dose)]
                                                    if result.standard_dose is not None else [])
        for name, scan in scans:
            tfm = folder / f"{name}_to_pre_contrast.tfm"
            with atomic_path(tfm) as partial:
                sitk.WriteTransform(scan.registration.transform, str(partial))
            paths[tfm.stem] = tfm
        if qc_png:
            paths["qc_png"] = qc_montage(result, qc_png)
    record = {"disclaimer": DISCLAIMER,
              "transform_convention": "each .tfm maps pre-contrast (fixed) LPS points to the post-contrast "
                                      "(moving) scan's LPS points, the ITK/elastix resampling direction",
              "intensity_unit": "95th percentile of the pre-contrast intensities inside the brain mask",
              **result.qc}
    if active() is not None:  # seconds and peak memory per stage (``io.profiling``), writing included
        record["stages"] = active().as_record()
    qc_file = folder / QC_FILE
    write_json(qc_file, record, indent=1, default=float)
    paths["qc"] = qc_file
    return paths
