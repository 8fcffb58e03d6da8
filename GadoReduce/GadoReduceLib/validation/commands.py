"""The validation stage of ``gadoreduce predict``: every check of its arguments before torch is loaded or an image
is read (the command, each case of a cohort). Research software, not for diagnosis.
"""

from __future__ import annotations

from pathlib import Path


def check_predict_arguments(args, outputs: list[Path]) -> dict:
    """The validation stage of ``gadoreduce predict``: every check that needs only the arguments (condition, device,
    tile, test-time augmentation, precision, thresholds, model file, ``outputs``: the files it will write,
    ``pipeline.output_files``) before torch is loaded or an image is read. Returns {"condition": (dose, field,
    agent, relaxivity), "model": ``checksums.ModelCheck``}; ValueError naming the option and the fix."""
    from ..io.atomic import check_output_folder, check_outputs_spare_inputs
    from ..model.checksums import check_model_file
    from ..physics.agents import DEFAULT_AGENT
    from .arguments import check_condition, check_device, check_tta, optional_int, parse_tile, positive
    if not hasattr(args, "sources"):  # where each acquisition value came from (the cohort sets its own)
        args.sources = {"dose": "argument", "field_strength": "argument",
                        "agent": "argument" if args.agent else "default"}
    from_dicom = dicom_acquisition(args)
    zero_dose = args.dose == 0  # a zero-dose prediction: no low dose (arguments.zero_dose_prediction: the model)
    if zero_dose and args.low is not None:
        raise ValueError("--dose 0 asks for a zero-dose prediction, which takes no low-dose image: leave out --low, "
                         "or give --dose as the low dose's fraction of the standard dose, e.g. 0.25")
    missing = [option for option, value in (("--pre", args.pre), ("--low", True if zero_dose else args.low),
                                            ("--dose", args.dose),
                                            ("--field-strength", args.field_strength)) if value is None]
    if missing:
        absent = [m[2:] for m in missing if m in ("--dose", "--field-strength")] if from_dicom is not None else []
        raise ValueError(f"{', '.join(missing)} missing: give --pre, --low, --dose and --field-strength for one "
                         "case, or --cases DIR or --table FILE for a cohort"
                         + (f"; the low-dose DICOM header gives no {' and no '.join(absent)}" if absent else ""))
    args.agent = args.agent or DEFAULT_AGENT
    condition = check_condition(args.dose, args.field_strength, args.agent,
                                names=("--dose", "--field-strength", "--agent"), zero_dose=zero_dose)
    check_device(args.device, "--device")
    parse_tile(args.tile, "--tile")
    check_tta(args.tta, "--tta")
    optional_int(args.threads, "--threads", 1)
    positive(args.threshold_sigmas, "--threshold-sigmas")
    positive(args.min_volume, "--min-volume", allow_zero=True)
    if args.memory_limit is not None:
        positive(args.memory_limit, "--memory-limit")
    check_outputs_spare_inputs(outputs, {"--pre": args.pre, "--low": args.low, "--model": args.model,
                                         "--flair": getattr(args, "flair", None), "--t2": getattr(args, "t2", None)})
    model = check_model_file(args.model)
    check_output_folder(args.output, [path.name for path in outputs], overwrite=args.overwrite)
    if getattr(args, "dicom_out", None):
        if zero_dose:
            raise ValueError("--dicom-out derives its series from the low-dose DICOM series; a zero-dose prediction "
                             "(--dose 0) has none: leave out --dicom-out")
        from ..io.dicom_out import dicom_outputs
        check_output_folder(args.dicom_out, dicom_outputs(args.dicom_out), overwrite=args.overwrite,
                            option="--dicom-out")
        if Path(args.dicom_out).resolve() in (Path(args.low).resolve(), Path(args.pre).resolve()):
            raise ValueError(f"--dicom-out {args.dicom_out} is an input folder; give a folder of its own, so that "
                             "the new series are not mixed with the scans")
        if not Path(args.low).is_dir():
            raise ValueError(f"--dicom-out derives its series from the low-dose DICOM series, but --low {args.low} "
                             "is not a DICOM folder; give --low the folder of the low-dose series")
    return {"condition": condition, "model": model}


def dicom_acquisition(args) -> dict | None:
    """Choose the DICOM series of ``--pre``/``--low`` (``--pre-series``/``--low-series``, stored as
    ``args.pre_series_uid``/``args.low_series_uid``) and fill the dose, field strength and agent that the
    command line left out from the low-dose series' header (``io.dicom.acquisition_from_tags``; their source
    "dicom"). Returns what the header gave (None when --low is no DICOM folder)."""
    from ..io.dicom import acquisition_from_dicom_file, choose_series
    found = None
    for key in ("pre", "low"):
        path = getattr(args, key, None)
        chosen = choose_series(path, getattr(args, f"{key}_series", None), f"--{key}") if path else None
        setattr(args, f"{key}_series_uid", chosen["uid"] if chosen else None)
        if key == "low" and chosen is not None:
            found = acquisition_from_dicom_file(chosen["files"][0])
    for name in ("dose", "field_strength", "agent"):
        if found and name in found and getattr(args, name, None) is None:
            setattr(args, name, found[name])
            args.sources[name] = "dicom"
    return found
