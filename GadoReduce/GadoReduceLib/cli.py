"""The ``gadoreduce`` command: one subcommand per task, each a thin layer over GadoReduceLib.

Errors in the user's input (a missing file, a 2D image, a bad option, a full disk, a failure inside ITK or
elastix, too little memory) print one clear line and exit with status 2; a defect of GadoReduce itself prints one
line asking for a report and exits with 1; Ctrl-C or SIGTERM exit with 130 or 143 (``io.interrupts``);
``--debug`` shows the full traceback instead.
"""

from __future__ import annotations

import argparse
import json
import sys

from . import DISCLAIMER, __version__
from .inference.region_defaults import DEFAULT_TTA
from .training.cli import add_parser as add_train_parser  # the train command sits in its stage


def _add_backend(parser, help_text: str, default: str = "auto") -> None:
    from .pipeline import backend_choices
    parser.add_argument("--backend", default=default, choices=backend_choices(),
                        help=f"{help_text} (default: %(default)s)")


def _cmd_info(args: argparse.Namespace) -> int:
    from .io.imageio import format_info, image_info
    infos = [image_info(path, args.series) for path in args.paths]
    if args.json:
        print(json.dumps(infos if len(infos) > 1 else infos[0], indent=2))
    else:
        print("\n\n".join(format_info(info) for info in infos))
    return 0


def _add_info(sub) -> None:
    p = sub.add_parser("info", help="print geometry, intensity range and header of images",
                       description="Print geometry (size, spacing, origin in LPS and RAS, axis directions), "
                                   "intensity range and header fields of NIfTI, NRRD or MetaImage files or "
                                   "DICOM folders. Patient-identifying DICOM fields are never printed.")
    p.add_argument("paths", nargs="+", metavar="PATH", help="image file or folder with one DICOM series")
    p.add_argument("--series", metavar="UID", help="DICOM SeriesInstanceUID, when a folder holds several series")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=_cmd_info)


def _cmd_preprocess(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .io.atomic import check_output_folder, check_outputs_spare_inputs, staged_folder
    from .io.profiling import record as profile
    from .preprocessing.preprocess import preprocess
    from .preprocessing.qc import output_files, write_outputs
    from .validation.arguments import optional_int
    from .validation.images import read_inputs
    optional_int(args.threads, "--threads", 1)
    outputs = output_files(args.output, bool(args.standard), args.qc)
    check_outputs_spare_inputs(outputs, {"--pre": args.pre, "--low": args.low, "--standard": args.standard})
    if args.qc and not str(args.qc).lower().endswith(".png"):
        raise ValueError(f"--qc {args.qc}: the QC montage is a .png file; give a name ending in .png")
    inside = [p.name for p in outputs if p.parent.absolute() == Path(args.output).absolute()]
    check_output_folder(args.output, inside, overwrite=args.overwrite)
    if args.qc and Path(args.qc).exists() and Path(args.qc).name not in inside and not args.overwrite:
        raise ValueError(f"--qc {args.qc} already exists; give another name, or add --overwrite to replace it")
    with profile() as stages, staged_folder(args.output, inside) as staging:
        with stages.stage("total"):
            with stages.stage("reading"):
                images = read_inputs({"pre_contrast": ("--pre", args.pre), "low_dose": ("--low", args.low),
                                      "standard_dose": ("--standard", args.standard)})
            with stages.stage("preprocessing"):
                result = preprocess(images["pre_contrast"], images["low_dose"], images["standard_dose"],
                                    backend=args.backend, threads=args.threads, warn=False)  # printed below
            qc_png = args.qc and (staging / Path(args.qc).name if Path(args.qc).name in inside else Path(args.qc))
            paths = write_outputs(result, staging, qc_png)
    qc = result.qc
    kind = "skull-stripped input" if qc["skull_stripped_input"] else "head"
    print(f"brain mask: {qc['brain_volume_ml']:.0f} ml ({kind})")
    for name in ("low_dose", "standard_dose"):
        if name in qc:
            s = qc[name]
            print(f"{name}: {s['registration_backend']} registration {s['registration_seconds']:.1f} s, "
                  f"brain correlation {s['correlation_before']:.3f} -> {s['correlation_after']:.3f}, "
                  f"radiometric scale {s['radiometric_scale']:.4f}, noise sigma {s['noise_sigma']:.4f}")
    for message in qc["warnings"]:
        print(f"WARNING: {message}", file=sys.stderr)
    _print_stages(stages)
    print(f"wrote {len(paths)} files to {args.output}" + (f"; QC montage {args.qc}" if args.qc else ""))
    return 0


def _add_preprocess(sub) -> None:
    p = sub.add_parser("preprocess", help="register, brain-mask and normalize a pre/post-contrast pair",
                       description="Contrast-preserving preprocessing (Pinetz, Kobler et al. 2024, sections 3.1-3.2): "
                                   "brain mask by atlas registration, rigid registration of the low-dose (and "
                                   "standard-dose) scan to the pre-contrast scan, intensity and noise "
                                   "normalization. Writes every intermediate image on the pre-contrast grid, the "
                                   "transforms and qc.json to the output folder.")
    p.add_argument("--pre", required=True, metavar="PRE", help="pre-contrast T1w image")
    p.add_argument("--low", required=True, metavar="LOW", help="low-dose contrast-enhanced T1w image")
    p.add_argument("--standard", metavar="SD", help="standard-dose image (for training targets)")
    p.add_argument("--output", required=True, metavar="DIR", help="output folder (created; the outputs appear in "
                   "it only when all are complete)")
    p.add_argument("--overwrite", action="store_true", help="replace the outputs of an earlier run in --output")
    _add_backend(p, "elastix backend; auto: the elastix executable when found, else itk-elastix")
    p.add_argument("--threads", type=int, default=None, help="elastix threads (default: all cores)")
    p.add_argument("--qc", metavar="PNG", help="write the QC montage to this .png file")
    p.set_defaults(func=_cmd_preprocess)
def _numbers(text: str, option: str, count: int | None = None) -> tuple[float, ...]:
    """Comma-separated numbers of an option; ValueError naming the option otherwise."""
    try:
        values = tuple(float(v) for v in str(text).split(",") if v.strip())
    except ValueError:
        raise ValueError(f"{option} {text!r} is not a comma-separated list of numbers, e.g. "
                         f"{'1,1,1' if count == 3 else '0.1,0.33'}") from None
    if not values or (count is not None and len(values) != count):
        raise ValueError(f"{option} {text!r} needs {count or 'at least one'} comma-separated numbers")
    return values


def _lesion_counts(text: str) -> dict[str, int]:
    counts = {}
    for item in str(text).split(","):
        if not item.strip():
            continue
        name, _, value = item.partition("=")
        try:
            counts[name.strip()] = int(value)
        except ValueError:
            raise ValueError(f"--lesions {text!r}: write counts as type=N, e.g. solid=3,ring=2,glioblastoma=1,"
                             "non_enhancing=1") from None
    return counts


def _cmd_synth_phantom(args: argparse.Namespace) -> int:
    from .phantom.generate import PhantomConfig, generate_phantom, preview_phantom, write_phantom
    defaults = PhantomConfig()
    config = PhantomConfig(
        seed=args.seed, doses=_numbers(args.doses, "--doses"), field_strength=args.field_strength,
        agent=args.agent, sequence=args.sequence, size=args.size,
        spacing_mm=_numbers(args.spacing, "--spacing", 3) if args.spacing else None,
        noise_level=args.noise_level, g_factor_strength=args.g_factor, bias_strength=args.bias,
        max_motion_deg=args.max_motion_deg, max_motion_mm=args.max_motion_mm,
        lesions=_lesion_counts(args.lesions) if args.lesions else defaults.lesions).validated()
    if args.preview and not str(args.preview).lower().endswith(".png"):
        raise ValueError(f"--preview {args.preview!r} must be a .png file")
    case = generate_phantom(config)
    paths = write_phantom(case, args.output)
    if args.preview:
        paths["preview"] = preview_phantom(case, args.preview)
    for name, path in paths.items():
        print(f"{name}: {path}")
    lesions = case.parameters["lesions"]
    print(f"{len(lesions)} lesions ({', '.join(sorted({l['type'] for l in lesions}))}); noise sigma "
          f"{case.parameters['noise']['noise_sigma']:g}; synthetic data, not for diagnosis")
    return 0


def _cmd_synth_lowdose(args: argparse.Namespace) -> int:
    from pathlib import Path

    import numpy as np
    import SimpleITK as sitk

    from .physics.agents import get_agent
    from .io.atomic import write_json
    from .io.imageio import check_3d, dose_name, read_image, same_grid, write_image
    from .io.cases import check_doses
    from .physics.lowdose import synthesize_low_dose
    from .physics.signal import default_sequence

    doses = check_doses(args.dose)  # distinct doses in (0, 1], at least 1 % apart
    agent = get_agent(args.agent)
    sequence = default_sequence(args.field_strength, args.sequence)
    if args.preview and not str(args.preview).lower().endswith(".png"):
        raise ValueError(f"--preview {args.preview!r} must be a .png file")
    pre = read_image(args.pre)
    check_3d(pre, "pre-contrast image")
    post = read_image(args.post)
    mask = read_image(args.brain_mask) if args.brain_mask else None
    labels = read_image(args.labels) if args.labels else None
    if labels is not None and not same_grid(labels, pre):
        raise ValueError(f"--labels {args.labels} (size {labels.GetSize()}) is not on the grid of the pre-contrast "
                         f"image (size {pre.GetSize()}); give the segmentation on the pre-contrast grid")
    out_dir = Path(args.output)
    results = []
    for dose in doses:
        image, params = synthesize_low_dose(pre, post, dose, brain_mask=mask, field_strength=args.field_strength,
                                            agent=agent.name, sequence=sequence, seed=args.seed)
        params.update({"pre_contrast": str(args.pre), "standard_dose": str(args.post),
                       "brain_mask": str(args.brain_mask) if args.brain_mask else None,
                       "gadoreduce_version": __version__, "disclaimer": DISCLAIMER})
        stem = dose_name(dose)
        nifti = write_image(image, out_dir / f"{stem}.nii.gz")
        write_json(out_dir / f"{stem}.json", params)
        results.append((dose, image, params))
        print(f"dose {dose:g}: {nifti}  (noise sigma added {params['noise_sigma_added']:.4g}, "
              f"low-dose subtraction {params['noise_sigma_low_dose_subtraction']:.4g}, "
              f"standard-dose subtraction {params['noise_sigma_standard_dose_subtraction']:.4g})")
    if args.preview:
        from .io.preview import montage
        scale = results[0][2]["intensity_scale_pre_to_standard_dose"]
        volumes = [sitk.GetArrayFromImage(pre).astype(np.float32) * scale]
        volumes += [sitk.GetArrayFromImage(image) for _, image, _ in results]
        volumes.append(sitk.GetArrayFromImage(post).astype(np.float32))
        titles = ["pre-contrast"] + [f"low dose {d * 100:.3g}% (synthetic)" for d, _, _ in results] + ["standard dose"]
        overlay = sitk.GetArrayFromImage(labels) if labels is not None else None
        path = montage(volumes, titles, args.preview, label_overlay=overlay, spacing=pre.GetSpacing(),
                       shared_window=True, footer=f"{agent.name}, {args.field_strength:g} T, seed {args.seed}: "
                                                  "synthetic, research only")
        print(f"preview: {path}")
    return 0


def _add_synth(sub) -> None:
    p = sub.add_parser("synth", help="synthesize images (digital phantom, synthetic low-dose scans)",
                       description="Synthesize images with a physical signal model. Synthetic images are for "
                                   "research and testing, not clinical evidence.")
    synth = p.add_subparsers(dest="synth_command", metavar="WHAT", required=True)
    _add_synth_lowdose(synth)
    _add_synth_phantom(synth)


def _defaults(function) -> dict:
    """Default values of a function's keyword parameters (the one place they are written)."""
    import inspect
    return {name: p.default for name, p in inspect.signature(function).parameters.items()
            if p.default is not inspect.Parameter.empty}


def _size_help() -> str:
    """``small: 2 mm 96x128x88; full: 1 mm 256x256x176`` from ``phantom.generate.SIZE_PRESETS``."""
    from .phantom.generate import SIZE_PRESETS
    return "; ".join(f"{name}: {preset['spacing_mm'][0]:g} mm "
                     + "x".join(str(round(f / s)) for f, s in zip(preset["fov_mm"], preset["spacing_mm"]))
                     for name, preset in SIZE_PRESETS.items())


def _add_synth_lowdose(synth) -> None:
    from .physics.lowdose import synthesize_low_dose
    from .physics.signal import SEQUENCE_KINDS, default_sequence
    defaults = _defaults(synthesize_low_dose)
    sequence = _defaults(default_sequence)["kind"]
    p = synth.add_parser("lowdose", help="synthetic low-dose T1w image(s) from a pre/post-contrast pair",
                         description="From a co-registered pre-contrast and standard-dose T1w pair, estimate the "
                                     "per-voxel R1 change through the signal model, compute the signal at a lower "
                                     "dose and add noise so the low-dose subtraction keeps the noise level of a "
                                     "real acquisition. Writes DIR/low_dose_<percent, 3 digits>.nii.gz (pre-contrast "
                                     "grid) and a .json sidecar with every parameter.")
    p.add_argument("--pre", required=True, metavar="PRE", help="pre-contrast T1w image")
    p.add_argument("--post", required=True, metavar="POST", help="standard-dose T1w image on the same grid")
    p.add_argument("--dose", required=True, type=float, action="append", metavar="D",
                   help="fraction of the standard dose in (0, 1], e.g. 0.33; repeat for several doses")
    p.add_argument("--output", required=True, metavar="DIR", help="output folder")
    p.add_argument("--field-strength", type=float, default=defaults["field_strength"], metavar="B",
                   help="tesla (default %(default)g)")
    p.add_argument("--agent", default=defaults["agent"], metavar="NAME",
                   help="contrast agent, generic or brand name (default %(default)s)")
    p.add_argument("--sequence", choices=SEQUENCE_KINDS, default=sequence,
                   help="signal model of the T1w scans (default %(default)s)")
    p.add_argument("--brain-mask", metavar="MASK", help="binary brain mask (default: non-zero voxels of "
                   "skull-stripped images, else Otsu threshold)")
    p.add_argument("--seed", type=int, default=defaults["seed"], metavar="N", help="noise seed (default %(default)s)")
    p.add_argument("--preview", metavar="PNG", help="also write a montage of mid slices to this .png")
    p.add_argument("--labels", metavar="SEG", help="label image shown as an overlay in the preview")
    p.set_defaults(func=_cmd_synth_lowdose)


def _add_synth_phantom(synth) -> None:
    from .phantom.generate import SIZE_PRESETS, PhantomConfig
    from .physics.signal import SEQUENCE_KINDS
    d = PhantomConfig()
    q = synth.add_parser("phantom", help="digital head phantom with lesions: pre-contrast, low doses, standard dose",
                         description="Write a synthetic case: pre_contrast, low_dose_NNN (dose in percent), "
                                     "standard_dose, lesion_labels, brain_mask, head_mask, g_factor, bias_field, "
                                     "true_contrast_signal (NIfTI), motion_<scan>.txt (elastix) and phantom.json "
                                     "with every parameter (noise sigma, motion, lesions).")
    q.add_argument("--output", required=True, metavar="DIR", help="folder for the case (created)")
    q.add_argument("--seed", type=int, default=d.seed,
                   help="random seed; equal seeds give identical files (default %(default)s)")
    q.add_argument("--doses", default=",".join(f"{dose:g}" for dose in d.doses),
                   help="low doses, fractions of the standard dose (default %(default)s)")
    q.add_argument("--field-strength", type=float, default=d.field_strength, metavar="T",
                   help="tesla (default %(default)g)")
    q.add_argument("--agent", default=d.agent, help="contrast agent (generic or brand name; default %(default)s)")
    q.add_argument("--sequence", default=d.sequence, choices=SEQUENCE_KINDS, help="T1w sequence (default %(default)s)")
    q.add_argument("--size", default=d.size, choices=tuple(SIZE_PRESETS),
                   help=f"{_size_help()} (default %(default)s)")
    q.add_argument("--spacing", metavar="X,Y,Z", help="voxel spacing in mm, e.g. 1,1,3 (field of view kept)")
    q.add_argument("--noise-level", type=float, default=d.noise_level,
                   help="noise sigma / white-matter signal (default %(default)g)")
    q.add_argument("--g-factor", type=float, default=d.g_factor_strength,
                   help="peak g-factor minus 1 (default %(default)g)")
    q.add_argument("--bias", type=float, default=d.bias_strength,
                   help="peak |log| of the bias field (default %(default)g)")
    q.add_argument("--max-motion-deg", type=float, default=d.max_motion_deg,
                   help="max rotation per axis (default %(default)g)")
    q.add_argument("--max-motion-mm", type=float, default=d.max_motion_mm,
                   help="max translation per axis (default %(default)g)")
    q.add_argument("--lesions", metavar="TYPE=N,...", help="lesion counts (default "
                   + ",".join(f"{kind}={count}" for kind, count in d.lesions.items()) + ")")
    q.add_argument("--preview", metavar="PNG", help="also write a montage PNG to look at")
    q.set_defaults(func=_cmd_synth_phantom)


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo
    run_demo(args.output, seed=args.seed, size=args.size, backend=args.backend, model=args.model, device=args.device)
    return 0


def _add_demo(sub) -> None:
    from .demo import run_demo
    from .phantom.generate import SIZE_PRESETS
    defaults = _defaults(run_demo)
    p = sub.add_parser("demo", help="run the pipeline on the built-in phantom case and check it against its truth",
                       description="Generate the built-in digital phantom case (head with skull, enhancing lesions, "
                                   "known motion and noise), run the whole chain on it (preprocessing, the CNN with "
                                   "the shipped model), write inputs, outputs and montages, and print the errors "
                                   "against the known truth. Synthetic data: software checks, not clinical evidence.")
    p.add_argument("--output", default="gadoreduce-demo", metavar="DIR", help="output folder (default: %(default)s)")
    p.add_argument("--seed", type=int, default=defaults["seed"], help="phantom seed (default: %(default)s)")
    p.add_argument("--size", choices=tuple(SIZE_PRESETS), default=defaults["size"],
                   help=f"{_size_help()}; the default model is made for 1 mm voxels (default: %(default)s)")
    p.add_argument("--model", metavar="PATH", help="model file (default: the shipped model)")
    p.add_argument("--device", default=defaults["device"],
                   help="auto (CUDA, else CPU), cpu, cuda, cuda:N (default: %(default)s)")
    _add_backend(p, "registration backend", default=defaults["backend"])
    p.set_defaults(func=_cmd_demo)




def _print_stages(stages) -> None:
    print(stages.table(total="total"))


def _cmd_predict(args: argparse.Namespace) -> int:
    from .io.profiling import record as profile
    from .pipeline import predict_from_arguments
    if args.cases or args.table:
        from .cohort.run import predict_cohort
        return predict_cohort(args)
    args.progress = lambda percent, message: print(f"[{percent:3.0f} %] {message}", file=sys.stderr, flush=True)
    with profile() as stages:
        with stages.stage("total"):
            pipeline, result, paths = predict_from_arguments(args)
    record = result.record
    for message in record["warnings"]:
        print(f"WARNING: {message}", file=sys.stderr)
    print(f"model {pipeline.model_path} on {pipeline.device}, {args.precision}; "
          "intensities in the pre-contrast's units")
    print(f"{record['n_regions']} enhancing regions above {record['threshold_sigmas']:g} noise sigmas "
          f"({record['threshold']:.4g}) and {record['min_volume_mm3']:g} mm^3")
    _print_stages(stages)
    print(f"wrote {len(paths)} files to {args.output}; seconds and peak memory per stage in {paths['record'].name}")
    return 0


def _add_predict(sub) -> None:
    from .pipeline import OUTPUT_IMAGES, RECORD_FILE, REGIONS_FILE, add_predict_arguments
    written = ", ".join(image.name for image in OUTPUT_IMAGES if not (image.needs_standard_dose or image.needs_spread))
    p = sub.add_parser("predict", help="synthesize standard-dose images from a pre-contrast and a low-dose scan",
                       description="Preprocess a pre-contrast and a low-dose T1w pair, predict the standard-dose "
                                   "contrast signal with the conditional CNN, label the enhancing regions and "
                                   f"write {written} (.nii.gz, on the pre-contrast grid, in the pre-contrast's "
                                   f"intensity units), {REGIONS_FILE}, {RECORD_FILE} and prediction.png (with --uncertainty "
                                   "or 2+ passes also uncertainty). "
                                   + DISCLAIMER)
    add_predict_arguments(p)
    p.set_defaults(func=_cmd_predict)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    import shlex
    from .evaluation.evaluate import run
    from .evaluation.methods import parse_variants
    from .validation.arguments import parse_tile
    run(args.output, cases_dir=args.cases, subjects=args.subjects, phantoms=args.phantoms,
        phantom_seed=args.phantom_seed, phantom_size=args.phantom_size, doses=_numbers(args.doses, "--doses"),
        model=args.model,
        ablation_model=args.ablation_model, backend=args.backend, device=args.device, tile=parse_tile(args.tile),
        cache=False if args.no_cache else (args.cache or True), command="gadoreduce " + shlex.join(args.argv),
        zoom_cases=args.zoom_cases or 3, simulators=tuple(s for s in args.simulators.split(",") if s),
        tta=args.tta, variants=parse_variants(args.variant))
    return 0


def _add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="benchmark GadoReduce against low dose and linear scaling",
                       description="Evaluate GadoReduce and the baselines (registered low dose; linear scaling "
                                   "x_PC + (x_LD - x_PC)/d) against the standard dose for every case and dose: "
                                   "PSNR, SSIM, MAE in enhancing brain, relative enhancement, CNR/LBR/CEP, "
                                   "thresholded-enhancement Dice/Jaccard and lesion detection by size, with paired "
                                   "tests. Writes per_case.csv, per_lesion.csv, summary.md, timings.json and "
                                   "figures/. Cases without a real low dose at a dose get a synthetic one. "
                                   + DISCLAIMER)
    p.add_argument("--cases", metavar="DIR", help="folder of case folders (pre_contrast, standard_dose, low_dose_XXX, "
                   "case.json or phantom.json, optional lesion_labels/lesions, brain_mask) or of BraTS subjects")
    p.add_argument("--subjects", nargs="+", metavar="NAME", help="evaluate only these case folders or BraTS subjects")
    p.add_argument("--phantoms", type=int, default=0, metavar="N", help="also evaluate N digital phantoms")
    p.add_argument("--phantom-seed", type=int, default=0, metavar="S", help="seed of the first phantom (default 0)")
    p.add_argument("--phantom-size", default="small", choices=("small", "full"),
                   help="phantom voxels: small 2 mm (default), full 1 mm")
    p.add_argument("--doses", default="0.1,0.2,0.33", metavar="D,D,...",
                   help="low doses, fractions of the standard dose in (0, 1] (default 0.1,0.2,0.33)")
    p.add_argument("--output", required=True, metavar="DIR", help="output folder")
    p.add_argument("--model", metavar="PATH", help="model file (default: the shipped model)")
    p.add_argument("--ablation-model", metavar="PATH", help="fixed-condition ablation model file (optional)")
    p.add_argument("--variant", action="append", metavar="NAME=FILE",
                   help="also evaluate this model file as method gadoreduce_NAME (repeatable), e.g. a model with "
                        "FLAIR and T2 inputs: cases are then preprocessed with those sequences too")
    _add_backend(p, "elastix backend")
    p.add_argument("--device", default="cpu", help="cpu (default), auto, cuda, cuda:N or mps")
    p.add_argument("--tile", default="auto", metavar="N",
                   help="network tiles: auto (whole volume when it fits into the free memory), whole, or a tile "
                        "edge in voxels (default %(default)s)")
    p.add_argument("--simulators", default="signal-model,kspace", metavar="S,S",
                   help="low-dose simulators for cases without a real low dose: signal-model (the physics training "
                        "uses), kspace (built differently, validation only); default both")
    p.add_argument("--tta", type=int, default=DEFAULT_TTA, metavar="N", help="flip test-time augmentation "
                   "passes, 1 (none) to 8 (default %(default)s)")
    p.add_argument("--cache", metavar="DIR", help="preprocessed (case, dose) cache (default OUTPUT/cache); keep it "
                   "outside OUTPUT when the report is to be shared, since it holds image data")
    p.add_argument("--no-cache", action="store_true", help="do not keep preprocessed cases")
    p.add_argument("--zoom-cases", nargs="+", metavar="NAME", help="draw lesion zooms for these cases (default: "
                   "the first 3 by name)")
    p.set_defaults(func=_cmd_evaluate)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gadoreduce",
        description="GadoReduce: gadolinium dose reduction for brain MRI (Pinetz, Kobler et al. 2024). "
                    + DISCLAIMER,
    )
    parser.add_argument("--version", action="version", version=f"gadoreduce {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_demo(sub)
    _add_evaluate(sub)
    _add_info(sub)
    _add_predict(sub)
    _add_preprocess(sub)
    _add_synth(sub)
    add_train_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # quoted by commands that report themselves
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from .io.interrupts import interrupted, interrupts_handled, report_interrupt
    try:
        from .io.memory import command_allocator
        with interrupts_handled(), command_allocator():
            return int(args.func(args) or 0)
    except BrokenPipeError:  # output piped into `head` and the like
        return 0
    except KeyboardInterrupt:
        return report_interrupt(args.command)
    except (ValueError, FileNotFoundError, OSError) as error:
        if interrupted():
            return report_interrupt(args.command)
        if args.debug:
            raise
        from .io.atomic import user_message
        print(f"gadoreduce {args.command}: error: {user_message(error)}", file=sys.stderr)
        return 2
    except RuntimeError as error:  # ITK, elastix or torch failed on these inputs: one line, not a traceback
        if interrupted():
            return report_interrupt(args.command)
        if args.debug:
            raise
        first = next((line.strip() for line in str(error).splitlines() if "ERROR" in line), str(error).strip())
        print(f"gadoreduce {args.command}: error: the computation failed ({first[:300]}). Check that the inputs are "
              "whole 3D T1w brain scans with ordinary intensities; run again with --debug to see the full traceback "
              "and report it if the inputs are fine.", file=sys.stderr)
        return 2
    except MemoryError:
        if args.debug:
            raise
        print(f"gadoreduce {args.command}: error: the computation ran out of memory; close other programs, or for "
              "predict give --memory-limit GB (smaller network tiles) and check that the scans are brain volumes of "
              "ordinary size.", file=sys.stderr)
        return 2
    except Exception as error:  # a defect of GadoReduce itself: one line and how to report it
        if args.debug:
            raise
        print(f"gadoreduce {args.command}: internal error ({type(error).__name__}: {str(error)[:200]}); this is a "
              "defect of GadoReduce, not of your data: run again with --debug and report the traceback.",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
