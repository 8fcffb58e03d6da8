"""``gadoreduce demo``: the main job on the built-in case, checked against its known truth.

The built-in case is a digital phantom (``phantom.py``): a head with skull and scalp, enhancing
lesions, Rician noise and a known rigid motion between the scans. The demo runs the whole chain on it
(preprocessing, the conditional CNN with the shipped default model) and prints how close each result
is to the phantom's truth: registration, brain mask and noise estimates, and the synthetic standard
dose against the phantom's standard-dose scan, beside the low dose and linear dose scaling (the
metrics of ``evaluate``). These are software checks on synthetic data, not clinical evidence.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from . import DISCLAIMER

DEMO_DOSE = 0.33
DEMO_SIZE = "full"
"""Phantom voxels of the demo: full (1 mm, the voxel size the default model was trained on) or small (2 mm:
fast, for the pipeline only; the default model is not made for 2 mm voxels and predicts little there)."""


def true_motion(case, scan: str) -> sitk.AffineTransform:
    """The phantom's rigid motion of ``scan`` as an ITK transform mapping pre-contrast (fixed) LPS
    points to the post-contrast scan's points: what a registration with fixed = pre-contrast finds."""
    m = np.asarray(case.parameters["scans"][scan]["motion"]["pre_to_post_lps"], dtype=float)
    return sitk.AffineTransform(m[:3, :3].ravel().tolist(), m[:3, 3].tolist())


def true_subtraction_sigma(case, result, scan) -> float:
    """Noise sigma of the normalized subtraction image implied by the phantom's true noise.

    ``scan`` is ``result.low_dose`` or ``result.standard_dose``. Both scans carry independent noise
    of sigma * g (g-factor map, RMS over the brain); the post-contrast scan is scaled into the
    pre-contrast's units by the estimated intensity gain, and both are divided by the pre-contrast's
    95th brain percentile.
    """
    brain = sitk.GetArrayViewFromImage(case.brain_mask) > 0
    g = sitk.GetArrayViewFromImage(case.g_factor)[brain]
    sigma_scan = case.parameters["noise"]["noise_sigma"] * float(np.sqrt(np.mean(g ** 2)))
    gain = scan.radiometric_scale * result.pre_percentile / scan.percentile
    return sigma_scan * float(np.sqrt(1.0 + gain ** 2)) / result.pre_percentile


def run_demo(output: str | Path, seed: int = 0, size: str = DEMO_SIZE, backend: str = "auto", model=None,
             device: str = "auto", log=print) -> dict:
    """Generate the phantom case, run the chain, write everything under ``output``; returns the metrics.
    model: model file (None: the shipped default); device: auto, cpu, cuda, ..."""
    from .io.atomic import write_json
    from .io.imageio import dose_name
    from .phantom.generate import PhantomConfig, generate_phantom, preview_phantom, write_phantom
    from .pipeline import Pipeline, write
    from .preprocessing.brainmask import dice
    from .preprocessing.qc import write_outputs
    from .preprocessing.registration import target_registration_error
    from .io.profiling import record as profile

    output = Path(output)
    log(DISCLAIMER)
    pipeline = Pipeline(model, device=device, backend=backend)  # a missing or tampered model file fails fast
    log(f"1/5 Generating the built-in phantom case (seed {seed}, size {size}, low dose {DEMO_DOSE:.0%}) ...")
    start = time.perf_counter()
    config = PhantomConfig(seed=seed, doses=(DEMO_DOSE,), size=size, max_motion_deg=5.0, max_motion_mm=5.0)
    case = generate_phantom(config)
    write_phantom(case, output / "phantom")
    preview_phantom(case, output / "phantom_preview.png")
    timings = {"phantom_s": time.perf_counter() - start}

    steps = itertools.count(2)  # the pipeline's steps: preprocessing, CNN, enhancing regions
    with profile() as stages:  # seconds and peak memory per stage, writing included
        predicted = pipeline.predict_case(case.pre_contrast, case.low_dose[DEMO_DOSE], DEMO_DOSE,
                                          config.field_strength, config.agent, standard_dose=case.standard_dose,
                                          progress=lambda percent, message: log(f"{next(steps)}/5 {message}"))
        result, images = predicted.preprocessing, predicted.images
        write_outputs(result, output / "preprocessed", qc_png=output / "preprocessing_qc.png")
        write(predicted, output / "prediction", footer=f"{pipeline.model_name}; phantom, dose {DEMO_DOSE:g}, "
                                                       f"{config.field_strength:g} T; not clinical evidence")
    timings["preprocess_s"] = stages.seconds["preprocessing"]
    timings["cnn_s"] = stages.seconds["network"]
    timings["stages"] = stages.as_record()

    log("5/5 Comparing with the phantom's truth ...")
    metrics = {"seed": seed, "size": size, "dose": DEMO_DOSE, "backend": predicted.record["registration_backend"],
               "model": pipeline.model_name, "device": predicted.record["device"]}
    for label, scan_name, scan in (("low_dose", dose_name(DEMO_DOSE), result.low_dose),
                                   ("standard_dose", "standard_dose", result.standard_dose)):
        mean, worst = target_registration_error(scan.registration.transform, true_motion(case, scan_name),
                                                case.brain_mask)
        motion = case.parameters["scans"][scan_name]["motion"]
        metrics[f"{label}_true_motion_mean_mm"] = motion["brain_displacement_mm"]["mean"]
        metrics[f"{label}_registration_error_mean_mm"] = mean
        metrics[f"{label}_registration_error_max_mm"] = worst
    metrics["brain_mask_dice"] = dice(result.brain_mask, case.brain_mask)
    metrics["noise_sigma_estimated"] = result.low_dose.noise_sigma
    metrics["noise_sigma_true"] = true_subtraction_sigma(case, result, result.low_dose)
    metrics["methods"] = _image_metrics(case, result, config, images)
    metrics["warnings"] = list(predicted.record["warnings"])
    metrics.update(timings)
    write_json(output / "demo_metrics.json", metrics, default=float)

    log(format_metrics(metrics, output))
    return metrics


def _image_metrics(case, result, config, images) -> dict:
    """{method: metrics} of the low dose, linear scaling and GadoReduce against the phantom's standard dose
    (``evaluate.image_metrics``: PSNR, SSIM, c-bar / c^ over the enhancing lesions, detection)."""
    from .evaluation.evaluate import arrays_from_result, image_metrics, method_images
    from .evaluation.methods import ENHANCING_SIGMAS, REFERENCE
    from .phantom.truth import phantom_lesions
    from .io.regrid import to_grid
    arrays = arrays_from_result(result, phantom_lesions(case), True, config.field_strength, config.agent)
    signal = to_grid(images["contrast_signal"], result.pre_contrast)  # working grid, input units
    contrast = sitk.GetArrayFromImage(signal).astype(np.float32) / np.float32(result.pre_percentile)
    out = {}
    for method, image in method_images(arrays, DEMO_DOSE, {"gadoreduce": contrast}).items():
        if method != REFERENCE:
            out[method] = image_metrics(image, arrays, ENHANCING_SIGMAS * arrays.noise_sigma_sd)[0]
    return out


def format_metrics(m: dict, output: Path) -> str:
    from .io.profiling import format_stages
    rel = abs(m["noise_sigma_estimated"] / m["noise_sigma_true"] - 1)
    lines = [
        "",
        "Results against the phantom's truth (synthetic data; software checks, not clinical evidence):",
        f"  registration, low dose:      true motion {m['low_dose_true_motion_mean_mm']:.1f} mm "
        f"-> residual error {m['low_dose_registration_error_mean_mm']:.3f} mm mean, "
        f"{m['low_dose_registration_error_max_mm']:.3f} mm max over the brain",
        f"  registration, standard dose: true motion {m['standard_dose_true_motion_mean_mm']:.1f} mm "
        f"-> residual error {m['standard_dose_registration_error_mean_mm']:.3f} mm mean, "
        f"{m['standard_dose_registration_error_max_mm']:.3f} mm max",
        f"  brain mask Dice:             {m['brain_mask_dice']:.3f}",
        f"  noise sigma (subtraction):   estimated {m['noise_sigma_estimated']:.4f}, true {m['noise_sigma_true']:.4f} "
        f"({rel:.1%} off)",
        "",
        f"  synthetic standard dose ({m['model']}) against the phantom's standard-dose scan:",
        f"    {'method':<16}{'PSNR_B dB':>10}{'PSNR_L dB':>10}{'SSIM':>7}{'c-bar':>7}{'c^':>7}{'found':>7}{'false':>7}",
    ]
    labels = {"low_dose": "low dose", "linear_scaling": "linear scaling", "gadoreduce": "GadoReduce"}
    for method, r in m["methods"].items():
        lines.append(f"    {labels.get(method, method):<16}{r['psnr_brain']:>10.2f}{r['psnr_lesions']:>10.2f}"
                     f"{r['ssim']:>7.3f}{r['c_bar']:>7.2f}{r['c_hat']:>7.2f}"
                     f"{r['detected_0mm']:>4}/{r['n_lesions_0mm']:<2}{r['false_detections_0mm']:>7}")
    lines += [
        "    (PSNR_L: mean over lesions; c-bar / c^: mean and maximal lesion enhancement relative to the standard",
        "    dose, 1 = standard dose; found: lesions detected as enhancing regions; false: other regions)",
        f"  time:                        phantom {m['phantom_s']:.1f} s, preprocessing {m['preprocess_s']:.1f} s, "
        f"CNN {m['cnn_s']:.1f} s; per stage (nested stages included in their enclosing one):",
    ]
    lines += ["    " + line for line in format_stages(m["stages"]).splitlines()]
    if m["warnings"]:
        lines.append("  QC warnings: " + "; ".join(m["warnings"]))
    lines += [
        "",
        f"Written to {output}/: phantom/ (inputs and truth), phantom_preview.png, preprocessed/ (registered scans,",
        "subtraction images, brain mask, normalized subtraction, contrast mask and training target),",
        "preprocessing_qc.png, prediction/ (synthetic_standard_dose, beyond_standard_dose, contrast_signal,",
        "enhancing_labels and the other outputs of `gadoreduce predict`, enhancing_regions.csv, record.json,",
        "prediction.png), demo_metrics.json.",
    ]
    return "\n".join(lines)
