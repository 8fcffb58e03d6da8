"""One predict pipeline for every entry point (paper 001, sections 3.1-3.4): ``gadoreduce predict``, the Slicer
module's worker, ``gadoreduce demo`` (in the spirit of nnU-Net's ``nnUNetPredictor``: one object serves all).

``Pipeline(...)`` checks its settings and loads the model once, before any slow work (a missing or tampered
model file fails fast). ``Pipeline.predict_case(pre_contrast, low_dose, dose, field_strength, agent)`` runs
preprocessing (``preprocessing.preprocess``), the CNN (``inference.predict.synthesize``), the enhancing regions
(``inference.regions``) and, with a lesion segmentation, CNR/LBR/CEP per lesion; it returns a
:class:`CaseResult` whose images (:data:`OUTPUT_IMAGES`) lie on the pre-contrast input grid. :func:`write`
writes them with ``enhancing_regions.csv``, ``record.json`` and the montage ``prediction.png``.

This module imports no heavy package at import time (the Slicer module reads :data:`OUTPUT_IMAGES` at start-up).
Research software: synthetic images are not for diagnosis.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from . import DISCLAIMER, __version__
from .inference.region_defaults import DEFAULT_MIN_VOLUME_MM3, DEFAULT_THRESHOLD_SIGMAS, DEFAULT_TTA, UNCERTAINTY_TTA


@dataclass(frozen=True)
class OutputImage:
    """One output image of :meth:`Pipeline.predict_case`, on the pre-contrast input grid.

    name: key of ``CaseResult.images`` and file stem; title: for people (montage, node names); units: "input"
    (the pre-contrast scan's input intensity units), "normalized" (95th brain percentile of the pre-contrast = 1)
    or "labels" (uint16, 0 = background); signed: contrast-like, displayed with a window around 0; source: "cnn"
    (``inference.predict.synthesize``), "regions" or "preprocessing"; needs_standard_dose: only with a standard dose;
    needs_spread: only with 2+ passes (flips times ensemble members, ``inference.uncertainty``).
    """

    name: str
    title: str
    units: str
    signed: bool
    source: str
    needs_standard_dose: bool = False
    needs_spread: bool = False


OUTPUT_IMAGES = (
    OutputImage("synthetic_standard_dose", "synthetic standard dose", "input", False, "cnn"),
    OutputImage("beyond_standard_dose", "beyond standard dose", "input", False, "cnn"),
    OutputImage("contrast_signal", "contrast signal", "input", True, "cnn"),
    OutputImage("uncertainty", "uncertainty", "input", False, "cnn", needs_spread=True),
    OutputImage("enhancing_labels", "enhancing regions", "labels", False, "regions"),
    OutputImage("normalized_subtraction", "normalized subtraction", "normalized", True, "preprocessing"),
    OutputImage("low_dose_registered", "registered low dose", "input", False, "preprocessing"),
    OutputImage("standard_dose_registered", "registered standard dose", "input", False, "preprocessing",
                needs_standard_dose=True),
)
"""Every output image, in writing order: the one list the CLI, the worker and the Slicer module use."""
OUTPUT_NAMES = tuple(image.name for image in OUTPUT_IMAGES)
CNN_OUTPUT_NAMES = tuple(image.name for image in OUTPUT_IMAGES if image.source == "cnn")
"""The images ``inference.predict.synthesize`` returns: x_PC + y~, x_LD + y~ and y~."""
REGION_COLUMNS = ("label", "voxels", "volume_mm3", "centroid_ras_R", "centroid_ras_A", "centroid_ras_S",
                  "mean_contrast_signal", "max_contrast_signal")
"""Columns of the region table (``regions.region_statistics`` rows, centroid in RAS mm, signal in input units):
``enhancing_regions.csv`` and the module's table; :func:`region_columns` adds those of the optional inputs."""


def region_columns(uncertainty: bool, standard_dose: bool) -> tuple[str, ...]:
    """The region table's columns: :data:`REGION_COLUMNS`, mean_uncertainty with an uncertainty map, c_bar and c_hat
    with a standard dose (also the header of a table without regions)."""
    return REGION_COLUMNS + (("mean_uncertainty",) if uncertainty else ()) + (("c_bar", "c_hat") if standard_dose
                                                                               else ())
ZERO_DOSE_NOTE = ("zero-dose prediction: the contrast signal is predicted from the pre-contrast scan (and its "
                  "FLAIR/T2) without any contrast agent given; such models miss small lesions (papers 002-004), so every "
                  "output is a guess of where enhancement might be, not a measurement")
"""The first warning of a zero-dose prediction's record (and the module's status), labelling every output."""


REGIONS_FILE = "enhancing_regions.csv"
LESIONS_FILE = "lesion_metrics.csv"
RECORD_FILE = "record.json"
MONTAGE_FILE = "prediction.png"


@dataclass
class CaseResult:
    """Outcome of :meth:`Pipeline.predict_case`.

    images: name -> SimpleITK image (:data:`OUTPUT_IMAGES` order, those computed), pre-contrast input grid;
    regions: one row per enhancing region (``regions.region_statistics``; c_bar / c_hat with a standard dose);
    lesions: one row per lesion label (CNR, LBR, CEP; [] without ``lesion_labels``); preprocessing: the
    ``preprocess.PreprocessResult``; record: JSON-able settings and figures (noise sigma in input and
    normalized units, pre_percentile, registration backend, QC warnings, model, device, thresholds, and "stages":
    seconds and peak memory per stage, ``io.profiling``).
    """

    images: dict
    regions: list
    lesions: list
    preprocessing: object
    record: dict = field(default_factory=dict)

    @property
    def enhancing_labels(self):
        """uint16 label image of the enhancing regions (label = row ``label`` of :attr:`regions`)."""
        return self.images["enhancing_labels"]


def _kept_warnings(caught) -> list[str]:
    """Messages of the inference's own warnings (voxel size, emulated bf16); any other warning is re-issued."""
    from .inference.predict import VoxelSizeWarning
    kept = []
    for w in caught:
        if issubclass(w.category, (VoxelSizeWarning, RuntimeWarning)):
            kept.append(str(w.message))
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return kept


class Pipeline:
    """Preprocessing, CNN, enhancing regions and lesion metrics with one loaded model.

    model: None (the shipped model), a model file path or a ``model.files.LoadedModel``; device: auto, cpu,
    cuda, cuda:N or mps; tile: sliding-window tile edge in voxels, None (whole volume) or "auto" (whole volume
    when it fits into the free memory, else tiles that do: ``inference.predict.auto_tile``); memory_limit_gb:
    the memory one forward pass of the network may take with tile "auto" (default: a share of the free memory,
    ``predict.MEMORY_FRACTION``); precision: fp32, bf16 or fp16 (CUDA); backend: registration backend (``registration.BACKENDS``); threads: elastix threads (None:
    all cores); threshold_sigmas / min_volume_mm3: enhancing regions above threshold_sigmas x the low-dose
    subtraction's noise sigma, of at least min_volume_mm3 (mm^3); tta: flip test-time augmentation, 1 (none)
    to 8 passes averaged (``inference.predict.FLIPS``); uncertainty: make sure of an uncertainty map (the spread
    over 2+ passes, ``inference.uncertainty``): a single model runs at least ``UNCERTAINTY_TTA`` flips. ValueError
    naming the parameter.
    """

    def __init__(self, model=None, device="auto", tile: int | str | None = "auto", precision: str = "fp32",
                 backend: str = "auto", threads: int | None = None,
                 threshold_sigmas: float = DEFAULT_THRESHOLD_SIGMAS, min_volume_mm3: float = DEFAULT_MIN_VOLUME_MM3,
                 tta: int = DEFAULT_TTA, memory_limit_gb: float | None = None, uncertainty: bool = False):
        from .inference.predict import choose_device
        from .model.files import LoadedModel, load_model
        from .preprocessing.registration import BACKENDS
        from .validation.arguments import (check_device, check_precision, check_tta, optional_int, parse_tile,
                                           positive)
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        self.precision = check_precision(precision)
        self.tile = parse_tile(tile)
        self.memory_limit_gb = None if memory_limit_gb is None else positive(memory_limit_gb, "memory_limit_gb")
        self.tta = check_tta(tta)
        self.threads = optional_int(threads, "threads", 1)
        self.threshold_sigmas = positive(threshold_sigmas, "threshold_sigmas")
        self.min_volume_mm3 = positive(min_volume_mm3, "min_volume_mm3", allow_zero=True)
        self.backend = backend
        device = check_device(device) if isinstance(device, str) else device
        self.device = choose_device(device)
        if precision == "fp16" and self.device.type != "cuda":
            raise ValueError(f"precision fp16 needs a CUDA device, not {self.device}; use fp32 or bf16")
        if isinstance(model, LoadedModel):
            self.loaded = model
        elif model is None or isinstance(model, (str, Path)):
            self.loaded = load_model(model, device=self.device)
        else:
            raise ValueError(f"model must be None, a model file path or a LoadedModel, not {type(model).__name__}")
        alignment = self.loaded.config.alignment
        if isinstance(self.tile, int) and self.tile < 2 * alignment:
            raise ValueError(f"tile {self.tile} is too small for this model; use at least {2 * alignment} voxels")
        from .inference.uncertainty import passes
        if uncertainty and passes(self.loaded, self.tta) < 2:
            self.tta = UNCERTAINTY_TTA
        self.passes = passes(self.loaded, self.tta)
        self.model_path = str(self.loaded.path) if self.loaded.path else None
        self.model_name = str(self.loaded.metadata.get("name", self.loaded.path.name if self.loaded.path else "model"))
        check = self.loaded.check
        self.model_sha256 = check.sha256 if check else None
        self.model_verified = bool(check and check.verified)
        self.model_warning = check.warning if check else (
            "unverified model: a model given in memory, not one of GadoReduce's shipped model files")

    def predict_case(self, pre_contrast, low_dose, dose: float, field_strength: float, agent: str,
                     standard_dose=None, lesion_labels=None, lesion_names: dict | None = None,
                     progress=None, sequences: dict | None = None) -> CaseResult:
        """Synthetic standard dose, contrast signal, enhancing regions (and lesion metrics) of one case.

        pre_contrast, low_dose, standard_dose (optional reference): 3D SimpleITK images; dose: low-dose fraction
        of the standard dose in (0, 1]; a zero-dose model (``ModelConfig.low_dose`` False): dose 0 and low_dose None,
        a prediction from the pre-contrast (and its sequences) alone, labelled zero-dose in the record
        (:data:`ZERO_DOSE_NOTE`), without beyond_standard_dose and the low dose's images; field_strength: tesla;
        agent: contrast agent name (``agents.get_agent``);
        lesion_labels: label image on the pre-contrast grid (CNR/LBR/CEP per label) with ``lesion_names``
        {str(label): name}; progress(percent 0-100, message); sequences: {"flair"/"t2": image} of the same session
        for a model with those inputs (``model.network.choose_sequences``: a missing one is an error, one the model
        does not take a warning). The inputs are checked before the slow work.
        """
        import SimpleITK as sitk

        from .inference.predict import auto_tile, lesion_metrics, synthesize
        from .inference.regions import enhancing_regions, region_statistics
        from .io.imageio import same_grid
        from .preprocessing.preprocess import preprocess
        from .validation.arguments import check_condition, zero_dose_prediction
        report = progress or (lambda percent, message: None)
        zero_dose = zero_dose_prediction(self.loaded.config, low_dose is not None, dose)
        for name, image, required in (("pre_contrast", pre_contrast, True), ("low_dose", low_dose, not zero_dose),
                                      ("standard_dose", standard_dose, False),
                                      ("lesion_labels", lesion_labels, False)):
            if (image is not None or required) and not isinstance(image, sitk.Image):
                raise ValueError(f"{name} must be a SimpleITK image, not {type(image).__name__}")
        from .model.network import choose_sequences
        sequences, sequence_notes = choose_sequences(self.loaded.config, sequences)
        for name, image in sequences.items():
            if not isinstance(image, sitk.Image):
                raise ValueError(f"the {name} sequence must be a SimpleITK image, not {type(image).__name__}")
        dose, field_strength, agent_name, relaxivity = check_condition(dose, field_strength, agent,
                                                                       zero_dose=zero_dose)
        if lesion_labels is not None and not same_grid(lesion_labels, pre_contrast):
            raise ValueError(f"lesion_labels (size {lesion_labels.GetSize()}) is not on the pre-contrast grid "
                             f"(size {pre_contrast.GetSize()}); resample the segmentation onto it first")

        from .io.memory import release_free_memory, returned_when_freed
        from .io.profiling import active, record as profile
        with profile(active()) as stages:  # continues the caller's record (reading, writing) when there is one
            report(10, "Registration, brain mask, intensity and noise normalization ...")
            with stages.stage("preprocessing"):
                prep = preprocess(pre_contrast, low_dose, standard_dose, backend=self.backend,
                                  threads=self.threads, warn=False, sequences=sequences)
            release_free_memory()  # what preprocessing freed goes back before the network's peak
            report(60, "Predicting the contrast signal with the CNN ...")
            with stages.stage("network"), returned_when_freed(), warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")  # voxel size, emulated bf16: kept in the record
                tile = self.tile
                if tile == "auto":
                    budget = None if self.memory_limit_gb is None else self.memory_limit_gb * 2 ** 30
                    tile = auto_tile(prep.pre_contrast.GetSize()[::-1], self.loaded.config, self.device, budget)
                images = synthesize(self.loaded, prep, dose, field_strength, agent_name, tile=tile,
                                    precision=self.precision, device=self.device, tta=self.tta)
            report(90, "Enhancing regions and statistics ...")
            with stages.stage("regions"):
                mapped = prep.outputs()
                scale = float(prep.pre_percentile)
                noise_sigma = float(prep.noise_sigma_ld) * scale  # in the contrast signal's (input) units
                brain = mapped["brain_mask"]
                if not zero_dose:
                    images["low_dose_registered"] = mapped["low_dose_registered"] * scale
                if standard_dose is not None:
                    images["standard_dose_registered"] = mapped["standard_dose_registered"] * scale
                labels = enhancing_regions(images["contrast_signal"], noise_sigma, brain,
                                           threshold_sigmas=self.threshold_sigmas, min_volume_mm3=self.min_volume_mm3)
                reference = mapped["subtraction_sd"] * scale if standard_dose is not None else None
                regions = region_statistics(labels, images["contrast_signal"], reference_contrast=reference,
                                            uncertainty=images.get("uncertainty"))
                lesions = []
                if lesion_labels is not None:
                    compared = ({} if zero_dose else {"low_dose": images["low_dose_registered"]})
                    compared["synthetic_standard_dose"] = images["synthetic_standard_dose"]
                    if standard_dose is not None:
                        compared["standard_dose"] = images["standard_dose_registered"]
                    lesions = lesion_metrics(sitk.Cast(lesion_labels, sitk.sitkUInt16), compared, pre_contrast,
                                             brain, lesion_names)
                images["enhancing_labels"] = labels
                if not zero_dose:
                    images["normalized_subtraction"] = mapped["normalized_subtraction_ld"]

        record = {
            "gadoreduce_version": __version__, "disclaimer": DISCLAIMER,
            "dose": dose, "field_strength": field_strength, "agent": agent_name, "relaxivity": relaxivity,
            "model_path": self.model_path, "model_name": self.model_name, "model_sha256": self.model_sha256,
            "model_verified": self.model_verified,
            "device": str(self.device), "precision": self.precision, "tile": tile, "tile_setting": self.tile,
            "tta": self.tta, "passes": self.passes, "ensemble_members": len(self.loaded.networks()),
            "registration_backend": self.backend if zero_dose else prep.low_dose.registration.backend,
            "sequences": list(sequences), "zero_dose": zero_dose,
            "noise_sigma": noise_sigma, "noise_sigma_normalized": float(prep.noise_sigma_ld), "pre_percentile": scale,
            "threshold_sigmas": self.threshold_sigmas, "min_volume_mm3": self.min_volume_mm3,
            "threshold": self.threshold_sigmas * noise_sigma, "n_regions": len(regions), "n_lesions": len(lesions),
            "warnings": ([ZERO_DOSE_NOTE] if zero_dose else []) + ([] if self.model_verified else [self.model_warning])
                        + list(prep.qc.get("warnings", []))
                        + sequence_notes + _kept_warnings(caught),
            "units": "images in the pre-contrast's input units (normalized_subtraction: 95th brain percentile "
                     "of the pre-contrast = 1); noise_sigma and threshold in input units",
            "stages": stages.as_record(),
            "qc": json.loads(json.dumps(prep.qc, default=float)),
        }
        ordered = {name: images[name] for name in OUTPUT_NAMES if name in images}
        return CaseResult(ordered, regions, lesions, prep, record)


def output_files(folder, suffix: str = ".nii.gz") -> list[Path]:
    """Every file :func:`write` may write into ``folder`` (known before any work: inputs must not be among them)."""
    folder = Path(folder)
    return ([folder / f"{image.name}{suffix}" for image in OUTPUT_IMAGES]
            + [folder / name for name in (REGIONS_FILE, LESIONS_FILE, RECORD_FILE, MONTAGE_FILE)])


def write_images(result: CaseResult, folder, suffix: str = ".nii.gz") -> dict:
    """Write every image of ``result`` as ``folder/<name><suffix>`` (atomic); returns name -> path. The files are
    compressed in two threads (ITK's writer releases the GIL; the "writing" stage of
    ``benchmarks/bench_pipeline.py``)."""
    from concurrent.futures import ThreadPoolExecutor

    from .io.imageio import write_image
    folder = Path(folder)
    names = list(result.images)
    with ThreadPoolExecutor(max_workers=2) as pool:
        paths = list(pool.map(lambda name: write_image(result.images[name], folder / f"{name}{suffix}"), names))
    return dict(zip(names, paths))


def write(result: CaseResult, folder, suffix: str = ".nii.gz", footer: str | None = None) -> dict:
    """Write the images (:func:`write_images`), ``enhancing_regions.csv``, ``lesion_metrics.csv`` (with lesion
    rows), the montage ``prediction.png`` (mid slices of pre-contrast, synthetic standard dose, beyond standard
    dose and contrast signal) and last ``record.json`` into ``folder``, every file atomically; returns name ->
    path. Inside an ``io.profiling.record`` block the record's "stages" include this writing."""
    import numpy as np
    import SimpleITK as sitk

    from .io.atomic import write_json, write_text
    from .io.preview import montage
    from .io.profiling import active, stage
    from .io.tables import csv_text
    folder = Path(folder)
    with stage("writing"):
        paths = write_images(result, folder, suffix)
        columns = region_columns("uncertainty" in result.images, "standard_dose_registered" in result.images)
        paths["enhancing_regions"] = write_text(folder / REGIONS_FILE, csv_text(result.regions, columns))
        if result.lesions:
            paths["lesion_metrics"] = write_text(folder / LESIONS_FILE, csv_text(result.lesions))
        r = result.record
        model = r["model_name"] if r.get("model_verified") else f"UNVERIFIED MODEL {r['model_name']}"
        acquisition = ("ZERO-DOSE PREDICTION (no contrast agent given; misses small lesions)" if r.get("zero_dose")
                       else f"dose {r['dose']:g}")
        footer = footer or (f"{model}; {acquisition}, {r['field_strength']:g} T, {r['agent']}. "
                            "Synthetic images: research only, not for diagnosis.")
        pre = result.preprocessing.pre_contrast_input
        arrays = [sitk.GetArrayFromImage(pre).astype(np.float32)]
        shown = [image for image in OUTPUT_IMAGES if image.source == "cnn" and image.name in result.images]
        arrays += [sitk.GetArrayFromImage(result.images[image.name]) for image in shown]
        titles = ["pre-contrast"] + [image.title for image in shown]
        paths["montage"] = montage(arrays, titles, folder / MONTAGE_FILE, spacing=pre.GetSpacing(), footer=footer)
    stages = active()
    if stages is not None:  # the record holds every stage of this run, writing included
        result.record["stages"] = stages.as_record()
    files = {name: path.name for name, path in paths.items()}
    paths["record"] = write_json(folder / RECORD_FILE, {**result.record, "files": files}, default=float)
    return paths


def backend_choices() -> tuple[str, ...]:
    """Registration backends usable outside 3D Slicer: ``registration.BACKENDS`` less "slicer" (Slicer only)."""
    from .preprocessing.registration import BACKENDS
    return tuple(backend for backend in BACKENDS if backend != "slicer")


def add_predict_arguments(parser) -> None:
    """The options of ``gadoreduce predict`` (argparse) for :func:`predict_from_arguments`."""
    from .physics.agents import DEFAULT_AGENT
    p = parser
    p.add_argument("--pre", metavar="PRE", help="pre-contrast T1w image (one case; or --cases / --table)")
    p.add_argument("--low", metavar="LOW", help="low-dose contrast-enhanced T1w image (one case)")
    p.add_argument("--pre-series", metavar="UID|TEXT", help="--pre is a DICOM folder of several series: the one with "
                   "this Series Instance UID or Series Description")
    p.add_argument("--low-series", metavar="UID|TEXT", help="--low is a DICOM folder of several series: as "
                   "--pre-series")
    p.add_argument("--flair", metavar="FILE", help="FLAIR image of the same session, for a model with FLAIR input")
    p.add_argument("--t2", metavar="FILE", help="T2-weighted image of the same session, for a model with T2 input")
    p.add_argument("--dose", type=float, metavar="D",
                   help="low dose as a fraction of the standard dose, in (0, 1], e.g. 0.25 (a cohort: for the "
                        "cases whose case.json or table row gives none); 0: a zero-dose prediction from --pre (and "
                        "--flair/--t2) alone, without --low, with a zero-dose model (train --zero-dose)")
    p.add_argument("--field-strength", type=float, metavar="B", help="tesla, e.g. 1.5 or 3 (a cohort: as --dose)")
    p.add_argument("--agent", default=None, metavar="NAME",
                   help=f"contrast agent, generic or brand name (default {DEFAULT_AGENT})")
    p.add_argument("--cases", metavar="DIR", help="a cohort: a folder of case folders (pre_contrast, low_dose*, "
                   "case.json) or a BIDS dataset, one output folder per case under --output")
    p.add_argument("--bids-low-ce", metavar="LABEL", help="a BIDS dataset as --cases: the ce- label of the low-dose "
                   "*_T1w images (needed when a session has several contrast-enhanced T1w images)")
    p.add_argument("--table", metavar="FILE", help="a cohort: a CSV or TSV table with the columns case, pre, low and "
                   "optionally dose, field_strength, agent (paths relative to the table's folder)")
    p.add_argument("--resume", action="store_true", help="a cohort: skip the cases whose outputs are complete "
                   "from an earlier run")
    p.add_argument("--workers", default="auto", metavar="N", help="a cohort: cases in parallel on a local Dask "
                   "cluster of N worker processes; auto (default): one per 2 cores and 4 GB of free memory, and "
                   "with one worker the cases run one after the other in this process")
    p.add_argument("--scheduler", metavar="ADDRESS", help="a cohort: run the cases on an existing Dask cluster, "
                   "e.g. tcp://host:8786 (the workers need GadoReduce and the same paths)")
    p.add_argument("--output", required=True, metavar="DIR", help="output folder (created; the outputs appear in "
                   "it only when all are complete)")
    p.add_argument("--dicom-out", metavar="DIR", help="also write the synthetic standard dose and the image beyond "
                   "the standard dose as new DICOM MR series derived from the low-dose series (--low a DICOM folder) "
                   "into DIR (marked synthetic and research-only)")
    p.add_argument("--overwrite", action="store_true", help="replace the outputs of an earlier run in --output "
                   "(without it such a folder is refused)")
    p.add_argument("--model", metavar="PATH", help="model file (.pt with .sha256 beside it; default: the "
                   "shipped model, Resources/Models/gadoreduce_default.pt, verified against the checksum this "
                   "GadoReduce knows; any other file is reported as unverified)")
    p.add_argument("--device", default="auto", help="auto (CUDA, else CPU), cpu, cuda, cuda:N or mps")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16"),
                   help="bf16 is faster only on GPUs and CPUs with AVX512-BF16/AMX (default %(default)s)")
    p.add_argument("--tile", default="auto", metavar="SIZE",
                   help="network tiles: auto (the whole volume when it fits into the free memory, else tiles that "
                        "do), whole, or a tile edge in voxels (default %(default)s)")
    p.add_argument("--memory-limit", type=float, metavar="GB",
                   help="memory the network may take with --tile auto (default: 60 %% of the free memory)")
    p.add_argument("--tta", type=int, default=DEFAULT_TTA, metavar="N",
                   help="flip test-time augmentation: mean of N flipped passes, 1 (none) to 8; N times the CNN "
                        "time (default %(default)s)")
    p.add_argument("--uncertainty", action="store_true", help="also write uncertainty.nii.gz, the contrast signal's "
                   f"spread over ensemble members and flips (a single model runs {UNCERTAINTY_TTA} flipped passes)")
    p.add_argument("--backend", default="auto", choices=backend_choices(),
                   help="elastix backend (default: %(default)s)")
    p.add_argument("--threads", type=int, default=None, help="elastix threads (default: all cores)")
    p.add_argument("--threshold-sigmas", type=float, default=DEFAULT_THRESHOLD_SIGMAS, metavar="K",
                   help="enhancing regions: contrast signal above K noise sigmas of the low-dose subtraction "
                        "(default %(default)g)")
    p.add_argument("--min-volume", type=float, default=DEFAULT_MIN_VOLUME_MM3, metavar="MM3",
                   help="smallest enhancing region kept, mm^3 (default %(default)g)")


def pipeline_from_arguments(args) -> Pipeline:
    """The :class:`Pipeline` (model loaded) of the ``gadoreduce predict`` options ``args``."""
    return Pipeline(args.model, device=args.device, tile=args.tile, precision=args.precision,
                    memory_limit_gb=args.memory_limit, backend=args.backend, threads=args.threads,
                    threshold_sigmas=args.threshold_sigmas, min_volume_mm3=args.min_volume, tta=args.tta,
                    uncertainty=getattr(args, "uncertainty", False))


def predict_from_arguments(args, pipeline: Pipeline | None = None) -> tuple[Pipeline, CaseResult, dict]:
    """``gadoreduce predict`` (options of :func:`add_predict_arguments`): the validation stage first (arguments,
    model file, output folder: :func:`check_predict_arguments`), then the images (read and checked:
    ``validation.images.read_inputs``), the model, the case, and the outputs written into a temporary folder that moves into
    ``args.output`` only when complete (``io.atomic.staged_folder``); returns (pipeline, result, paths). Inside an
    ``io.profiling.record`` block (the CLI's) the stages include validation, model loading and reading. A cohort
    passes its ``pipeline`` (the model loaded once). The record gets the inputs (path, sha256, geometry) and the
    acquisition values with their sources (``cohort.record``)."""
    from .cohort.record import RECORD_SCHEMA_VERSION, acquisition_record, input_record
    from .io.atomic import staged_folder
    from .io.profiling import stage
    from .io.cases import SEQUENCES
    from .validation.commands import check_predict_arguments
    from .validation.images import read_inputs
    outputs = output_files(args.output)
    with stage("validation"):
        check_predict_arguments(args, outputs)
    known = [path.name for path in outputs]
    with staged_folder(args.output, known) as staging:
        progress = getattr(args, "progress", None)
        with stage("reading"):  # before the model (torch takes seconds to load): image errors come first
            given = {"pre_contrast": ("--pre", args.pre)}
            if args.low is not None:  # none for a zero-dose prediction (--dose 0)
                given["low_dose"] = ("--low", args.low)
            given.update({key: (f"--{key}", getattr(args, key)) for key in SEQUENCES if getattr(args, key, None)})
            images = read_inputs(given,
                                 series={"pre_contrast": getattr(args, "pre_series_uid", None),
                                         "low_dose": getattr(args, "low_series_uid", None)})
        if pipeline is None:
            with stage("model loading"):
                pipeline = pipeline_from_arguments(args)
        result = pipeline.predict_case(images["pre_contrast"], images.get("low_dose"), args.dose, args.field_strength,
                                       args.agent, progress=progress,
                                       sequences={key: images[key] for key in SEQUENCES if key in images})
        result.record = {"schema_version": RECORD_SCHEMA_VERSION,
                         "inputs": {key: input_record(path, images[key])
                                    for key, (_, path) in given.items()},
                         "acquisition": acquisition_record({"dose": args.dose, "field_strength": args.field_strength,
                                                            "agent": args.agent}, args.sources),
                         **result.record}
        written = write(result, staging)
        if getattr(args, "dicom_out", None):  # committed just before the other outputs
            from .io.dicom_out import dicom_outputs, write_dicom_outputs
            with stage("writing DICOM"), staged_folder(args.dicom_out, dicom_outputs(args.dicom_out),
                                                       option="--dicom-out") as dicom_staging:
                write_dicom_outputs(result.images, args.low, dicom_staging, args.low_series_uid)
    paths = {name: Path(args.output) / path.name for name, path in written.items()}
    return pipeline, result, paths
