"""The ``gadoreduce`` command: one subcommand per task, each a thin layer over GadoReduceLib.

Errors in the user's input (a missing file, a 2D image, a bad option) print one clear line
and exit with status 2; ``--debug`` shows the full traceback instead.
"""

from __future__ import annotations

import argparse
import json
import sys

from . import DISCLAIMER, __version__
from .physics.agents import DEFAULT_AGENT


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
    import warnings
    from .io.imageio import read_image
    from .preprocessing.preprocess import preprocess
    from .preprocessing.qc import write_outputs
    pre = read_image(args.pre)
    low = read_image(args.low)
    standard = read_image(args.standard) if args.standard else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the warnings are printed below from the QC record
        result = preprocess(pre, low, standard, backend=args.backend, threads=args.threads)
    paths = write_outputs(result, args.output, args.qc)
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
    p.add_argument("--output", required=True, metavar="DIR", help="output folder")
    p.add_argument("--backend", default="auto", choices=["auto", "itk", "executable"],
                   help="elastix backend (default: itk-elastix when installed, else the elastix executable)")
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
    from .io.imageio import check_3d, dose_name, read_image, write_image
    from .physics.lowdose import check_dose, synthesize_low_dose
    from .physics.signal import default_sequence

    doses = [check_dose(d) for d in args.dose]
    if len({dose_name(d) for d in doses}) != len(doses):
        raise ValueError(f"--dose values repeat or round to the same percent ({', '.join(f'{d:g}' for d in args.dose)}); "
                         "give each dose once, at least 1 % apart")
    agent = get_agent(args.agent)
    sequence = default_sequence(args.field_strength, args.sequence)
    if args.preview and not str(args.preview).lower().endswith(".png"):
        raise ValueError(f"--preview {args.preview!r} must be a .png file")
    pre = read_image(args.pre)
    check_3d(pre, "pre-contrast image")
    post = read_image(args.post)
    mask = read_image(args.brain_mask) if args.brain_mask else None
    labels = read_image(args.labels) if args.labels else None
    if labels is not None and labels.GetSize() != pre.GetSize():
        raise ValueError(f"--labels {args.labels} has size {labels.GetSize()}, the pre-contrast image "
                         f"{pre.GetSize()}; give the segmentation on the pre-contrast grid")
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
        sidecar = out_dir / f"{stem}.json"
        tmp = sidecar.with_name(f".partial-{sidecar.name}")
        tmp.write_text(json.dumps(params, indent=2) + "\n")
        tmp.replace(sidecar)
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


def _add_synth_lowdose(synth) -> None:
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
    p.add_argument("--field-strength", type=float, default=3.0, metavar="B", help="tesla (default 3)")
    p.add_argument("--agent", default=DEFAULT_AGENT, metavar="NAME",
                   help=f"contrast agent, generic or brand name (default {DEFAULT_AGENT})")
    p.add_argument("--sequence", choices=("spgr", "mprage"), default="spgr",
                   help="signal model of the T1w scans (default spgr)")
    p.add_argument("--brain-mask", metavar="MASK", help="binary brain mask (default: non-zero voxels of "
                   "skull-stripped images, else Otsu threshold)")
    p.add_argument("--seed", type=int, default=0, metavar="N", help="noise seed (default 0)")
    p.add_argument("--preview", metavar="PNG", help="also write a montage of mid slices to this .png")
    p.add_argument("--labels", metavar="SEG", help="label image shown as an overlay in the preview")
    p.set_defaults(func=_cmd_synth_lowdose)


def _add_synth_phantom(synth) -> None:
    q = synth.add_parser("phantom", help="digital head phantom with lesions: pre-contrast, low doses, standard dose",
                         description="Write a synthetic case: pre_contrast, low_dose_NNN (dose in percent), "
                                     "standard_dose, lesion_labels, brain_mask, head_mask, g_factor, bias_field, "
                                     "true_contrast_signal (NIfTI), motion_<scan>.txt (elastix) and phantom.json "
                                     "with every parameter (noise sigma, motion, lesions).")
    q.add_argument("--output", required=True, metavar="DIR", help="folder for the case (created)")
    q.add_argument("--seed", type=int, default=0, help="random seed; equal seeds give identical files (default 0)")
    q.add_argument("--doses", default="0.1,0.33", help="low doses, fractions of the standard dose (default 0.1,0.33)")
    q.add_argument("--field-strength", type=float, default=3.0, metavar="T", help="tesla (default 3)")
    q.add_argument("--agent", default=DEFAULT_AGENT, help=f"contrast agent (generic or brand name; default {DEFAULT_AGENT})")
    q.add_argument("--sequence", default="spgr", choices=("spgr", "mprage"), help="T1w sequence (default spgr)")
    q.add_argument("--size", default="small", choices=("small", "full"),
                   help="small: 2 mm 96x128x88; full: 1 mm 256x256x176 (default small)")
    q.add_argument("--spacing", metavar="X,Y,Z", help="voxel spacing in mm, e.g. 1,1,3 (field of view kept)")
    q.add_argument("--noise-level", type=float, default=0.02, help="noise sigma / white-matter signal (default 0.02)")
    q.add_argument("--g-factor", type=float, default=0.3, help="peak g-factor minus 1 (default 0.3)")
    q.add_argument("--bias", type=float, default=0.2, help="peak |log| of the bias field (default 0.2)")
    q.add_argument("--max-motion-deg", type=float, default=2.0, help="max rotation per axis (default 2)")
    q.add_argument("--max-motion-mm", type=float, default=2.0, help="max translation per axis (default 2)")
    q.add_argument("--lesions", metavar="TYPE=N,...",
                   help="lesion counts, e.g. solid=3,ring=2,glioblastoma=1,non_enhancing=1 (the default)")
    q.add_argument("--preview", metavar="PNG", help="also write a montage PNG to look at")
    q.set_defaults(func=_cmd_synth_phantom)


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo
    run_demo(args.output, seed=args.seed, size=args.size, backend=args.backend, model=args.model, device=args.device)
    return 0


def _add_demo(sub) -> None:
    from .demo import DEMO_SIZE
    p = sub.add_parser("demo", help="run the pipeline on the built-in phantom case and check it against its truth",
                       description="Generate the built-in digital phantom case (head with skull, enhancing lesions, "
                                   "known motion and noise), run the whole chain on it (preprocessing, the CNN with "
                                   "the shipped model), write inputs, outputs and montages, and print the errors "
                                   "against the known truth. Synthetic data: software checks, not clinical evidence.")
    p.add_argument("--output", default="gadoreduce-demo", metavar="DIR", help="output folder (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="phantom seed (default: %(default)s)")
    p.add_argument("--size", choices=("small", "full"), default=DEMO_SIZE,
                   help="small: 2 mm voxels (fast); full: 1 mm, 256x256x176 (default: %(default)s)")
    p.add_argument("--model", metavar="PATH", help="model file (default: the shipped model)")
    p.add_argument("--device", default="auto", help="auto (CUDA, else CPU), cpu, cuda, cuda:N (default: auto)")
    p.add_argument("--backend", choices=("auto", "itk", "executable"), default="auto",
                   help="registration backend (default: %(default)s)")
    p.set_defaults(func=_cmd_demo)


TRAIN_DEFAULTS = {"cases": [], "phantoms": 0, "brats": None, "holdout": 3, "steps": 200_000, "patch": 96, "batch": 1,
                  "base_features": 32, "scales": 4, "lr": 1e-4, "seed": 0, "phantom_size": "full",
                  "dose_range": [0.1, 0.33], "cache": None, "backend": "auto", "checkpoint_every": 500,
                  "validate_every": 1000, "threads": None}
"""Options of ``gadoreduce train``; a --config JSON file may set any of these keys, the command line wins."""


def _train_options(args: argparse.Namespace) -> dict:
    options = dict(TRAIN_DEFAULTS)
    if args.config:
        try:
            data = json.loads(open(args.config).read())
        except (OSError, json.JSONDecodeError) as error:
            raise ValueError(f"cannot read the training configuration {args.config}: {error}") from None
        unknown = set(data) - set(options)
        if unknown:
            raise ValueError(f"unknown keys {sorted(unknown)} in {args.config}; use {', '.join(options)}")
        options.update(data)
    options.update({k: v for k, v in vars(args).items() if k in options and v is not None})
    return options


def _cmd_train(args: argparse.Namespace) -> int:
    from pathlib import Path
    from .model.network import ModelConfig
    from .training.loop import TrainConfig, distributed_context, rank_zero_first, train
    from .training.data import training_sets
    o = _train_options(args)
    output = Path(args.output)
    config = TrainConfig(steps=int(o["steps"]), patch_size=int(o["patch"]), batch_size=int(o["batch"]),
                         learning_rate=float(o["lr"]), seed=int(o["seed"]),
                         model=ModelConfig(base_features=int(o["base_features"]), scales=int(o["scales"])),
                         checkpoint_every=int(o["checkpoint_every"]), validate_every=int(o["validate_every"]),
                         threads=o["threads"])
    rank, _ = distributed_context()
    log = print if rank == 0 else (lambda *a, **k: None)
    cache = Path(o["cache"]) if o["cache"] else output / "cache"
    cases, validation = rank_zero_first(lambda: training_sets(
        o["cases"], int(o["phantoms"]), o["brats"], int(o["holdout"]), int(o["seed"]), o["phantom_size"],
        tuple(o["dose_range"]), cache, o["backend"], log))
    result = train(cases, validation, output, config, resume=args.resume, log=log)
    if rank == 0:
        last = result["history"]["train"][-1] if result["history"]["train"] else None
        if last:
            print(f"step {last[0]}: training loss {last[1]:.5f}; gamma {result['gamma']:.4f}; outputs in {output}")
    return 0


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train the contrast-signal CNN on case folders, phantoms and BraTS pairs",
                       description="Train the conditional U-Net (Pinetz, Kobler et al. 2024, section 3.4): weighted "
                                   "Huber loss on 96^3 patches, Adam 1e-4 with cosine annealing to 1e-6, flips and "
                                   "rotations. Training cases are preprocessed once and cached. Multi-GPU: "
                                   "torchrun --nproc_per_node N -m GadoReduceLib.cli train ... "
                                   "Default model: gadoreduce train --phantoms 16 --brats ../shared/data "
                                   "--holdout 3 --output runs/default")
    p.add_argument("--config", metavar="JSON", help=f"options as JSON (keys: {', '.join(TRAIN_DEFAULTS)})")
    p.add_argument("--cases", nargs="+", metavar="DIR", help="case folders (pre_contrast, low_dose*, standard_dose, "
                   "case.json or phantom.json) or folders of them")
    p.add_argument("--phantoms", type=int, metavar="N", help="N digital phantoms generated on the fly (default 0)")
    p.add_argument("--brats", metavar="DIR", help="folder with BraTS pairs (*_t1, *_t1ce) for synthetic low doses")
    p.add_argument("--holdout", type=int, metavar="N", help="BraTS subjects (else case folders) kept for "
                   "validation (default 3)")
    p.add_argument("--output", required=True, metavar="DIR", help="output folder (checkpoints, model, loss curve)")
    p.add_argument("--steps", type=int, metavar="N", help="optimizer steps (default 200000, the paper's)")
    p.add_argument("--patch", type=int, metavar="N", help="patch edge in voxels (default 96)")
    p.add_argument("--batch", type=int, metavar="N", help="patches per process and step (default 1)")
    p.add_argument("--base-features", type=int, metavar="N", help="features at the finest scale (default 32)")
    p.add_argument("--scales", type=int, metavar="N", help="U-Net scales (default 4)")
    p.add_argument("--lr", type=float, help="initial learning rate (default 1e-4)")
    p.add_argument("--seed", type=int, help="seed of case choice, patches and weights (default 0)")
    p.add_argument("--phantom-size", choices=("small", "full"), help="phantom voxels: small 2 mm, full 1 mm (default)")
    p.add_argument("--cache", metavar="DIR", help="preprocessed-case cache (default OUTPUT/cache)")
    p.add_argument("--backend", choices=("auto", "itk", "executable"), help="registration backend")
    p.add_argument("--checkpoint-every", type=int, metavar="N", help="steps between checkpoints (default 500)")
    p.add_argument("--validate-every", type=int, metavar="N", help="steps between validations (default 1000)")
    p.add_argument("--threads", type=int, metavar="N", help="torch CPU threads per process")
    p.add_argument("--resume", action="store_true", help="continue from OUTPUT/checkpoint.pt")
    p.set_defaults(func=_cmd_train)
def _cmd_predict(args: argparse.Namespace) -> int:
    import warnings
    from .io.imageio import read_image
    from .inference.predict import choose_device, synthesize, write_prediction
    from .model.files import load_model
    from .preprocessing.preprocess import preprocess
    device = choose_device(args.device)
    loaded = load_model(args.model, device=device)  # before the slow preprocessing: fail fast
    pre = read_image(args.pre)
    low = read_image(args.low)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # printed below from the QC record
        result = preprocess(pre, low, backend=args.backend, threads=args.threads)
    outputs = synthesize(loaded, result, args.dose, args.field_strength, args.agent, tile=args.tile,
                         precision=args.precision, device=device)
    name = loaded.metadata.get("name", loaded.path.name if loaded.path else "model")
    paths = write_prediction(outputs, pre, args.output,
                             footer=f"{name}; dose {args.dose:g}, {args.field_strength:g} T, {args.agent}. "
                                    "Synthetic images: research only, not for diagnosis.")
    for message in result.qc["warnings"]:
        print(f"WARNING: {message}", file=sys.stderr)
    print(f"model {loaded.path} on {device}, {args.precision}; intensities in the pre-contrast's units")
    print(f"wrote {len(paths)} files to {args.output}")
    return 0


def _add_predict(sub) -> None:
    p = sub.add_parser("predict", help="synthesize standard-dose images from a pre-contrast and a low-dose scan",
                       description="Preprocess a pre-contrast and a low-dose T1w pair, predict the standard-dose "
                                   "contrast signal with the conditional CNN and write synthetic_standard_dose "
                                   "(pre-contrast + signal), beyond_standard_dose (low dose + signal) and "
                                   "contrast_signal on the pre-contrast grid, in the pre-contrast's intensity "
                                   "units, plus prediction.png. " + DISCLAIMER)
    p.add_argument("--pre", required=True, metavar="PRE", help="pre-contrast T1w image")
    p.add_argument("--low", required=True, metavar="LOW", help="low-dose contrast-enhanced T1w image")
    p.add_argument("--dose", required=True, type=float, metavar="D",
                   help="low dose as a fraction of the standard dose, in (0, 1], e.g. 0.25")
    p.add_argument("--field-strength", required=True, type=float, metavar="B", help="tesla, e.g. 1.5 or 3")
    p.add_argument("--agent", default=DEFAULT_AGENT, metavar="NAME",
                   help=f"contrast agent, generic or brand name (default {DEFAULT_AGENT})")
    p.add_argument("--output", required=True, metavar="DIR", help="output folder")
    p.add_argument("--model", metavar="PATH", help="model file (.pt with .sha256 beside it; default: the "
                   "shipped model, Resources/Models/gadoreduce_default.pt)")
    p.add_argument("--device", default="auto", help="auto (CUDA, else CPU), cpu, cuda, cuda:N or mps")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16"),
                   help="bf16 is faster only on GPUs and CPUs with AVX512-BF16/AMX (default fp32)")
    p.add_argument("--tile", type=int, metavar="SIZE", help="sliding-window tile edge in voxels (bounded "
                   "memory); default: whole volume")
    p.add_argument("--backend", default="auto", choices=["auto", "itk", "executable"], help="elastix backend")
    p.add_argument("--threads", type=int, default=None, help="elastix threads (default: all cores)")
    p.set_defaults(func=_cmd_predict)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    import shlex
    from .evaluation.evaluate import run
    doses = _numbers(args.doses, "--doses")
    command = "gadoreduce " + shlex.join(args.argv)
    run(args.output, cases_dir=args.cases, subjects=args.subjects, phantoms=args.phantoms,
        phantom_seed=args.phantom_seed, phantom_size=args.phantom_size, doses=doses, model=args.model,
        ablation_model=args.ablation_model, backend=args.backend, device=args.device, tile=args.tile,
        cache=False if args.no_cache else (args.cache or True), command=command,
        zoom_cases=args.zoom_cases or 3)
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
    p.add_argument("--backend", default="auto", choices=["auto", "itk", "executable"], help="elastix backend")
    p.add_argument("--device", default="cpu", help="cpu (default), auto, cuda, cuda:N or mps")
    p.add_argument("--tile", type=int, metavar="N", help="sliding-window tile edge in voxels; default whole volume")
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
    _add_train(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # quoted by commands that report themselves
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:  # output piped into `head` and the like
        return 0
    except (ValueError, FileNotFoundError, OSError) as error:
        if args.debug:
            raise
        print(f"gadoreduce {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"gadoreduce {args.command}: interrupted; no partial outputs were kept.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
