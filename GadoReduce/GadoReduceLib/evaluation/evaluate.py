"""Evaluation (issue 7): GadoReduce against baselines, per case, dose and lesion, on the working grid.

For every case (``evaluation.cases``) and dose d, the scans are preprocessed (``preprocess.preprocess``;
cached per case and dose) and every method's image x is compared with the registered standard dose x_SD
on the working grid, in normalized units (95th percentile of the pre-contrast brain = 1):

- ``low_dose``: the registered low dose x_LD;
- ``linear_scaling``: x_PC + (x_LD - x_PC) / d (the low-dose enhancement scaled to the standard dose);
- ``gadoreduce``: x_PC + y~, y~ = gamma s_LD y^ / sigma_LD the model's contrast signal (as ``inference.predict.synthesize``);
- ``gadoreduce_fixed_condition``: the same with an ablation model (``--ablation-model``) whose conditions
  are those in its metadata ``fixed_conditions`` when present, else the case's;
- ``gadoreduce_NAME``: the same with another model file (``--variant NAME=FILE``: a multi-modal model with FLAIR
  and T2 inputs, an ensemble, a differently trained one), with the case's conditions;
- ``standard_dose``: x_SD itself, the reference (PSNR inf, SSIM 1, c-bar = c^ = 1; its CNR, LBR, CEP and
  detection are the targets the others are compared with).

Metrics (``metrics.quality``, ``metrics.detection``; definitions in docs/evaluation.md):
PSNR_I, PSNR_B, PSNR_L (paper 001): PSNR = 10 log10(peak^2 / MSE), MSE = mean squared difference to x_SD
over the entire working grid (I), the brain mask (B) or one lesion (L; the case value is the mean over its
lesions); peak = the maximum of x_SD over the entire working grid, one peak per case for all three.
SSIM over the whole volume (data range = max - min of x_SD). MAE_CE: mean |x - x_SD| where x_SD - x_PC
exceeds ``ENHANCING_SIGMAS`` noise sigmas of the standard-dose subtraction in the brain. c-bar and c^ per
lesion (paper 001). CNR, LBR, CEP over all lesions pooled (paper 002). Dice and Jaccard of the top 1-30 %
enhancement in the brain (paper 004). Detection by size (paper 002): enhancing regions of x - x_PC above
``ENHANCING_SIGMAS`` times the standard-dose subtraction's noise sigma (one threshold for all methods,
``regions.enhancing_regions``) matched by centroid distance with the reference lesions.
Research software: results on synthetic data or synthetic low doses are no clinical evidence.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..io.cases import cache_file, cached, check_doses, dose_digits, save_npz, working_arrays
from ..io.imageio import dose_name
from ..metrics import quality as m
from ..metrics.detection import SIZE_THRESHOLDS_MM, detection_by_size, lesion_geometry
from ..inference.regions import DEFAULT_MIN_VOLUME_MM3, enhancing_regions
from .methods import (BASELINES, DEFAULT_DOSES, ENHANCING_SIGMAS, OVERLAP_PERCENTS, REFERENCE, check_variant_name,
                      variant_method)


@dataclass
class CaseArrays:
    """One (case, dose) after preprocessing: float32 arrays [k, j, i] on the working grid, normalized units.

    pre (x_PC), low (registered x_LD), standard (registered x_SD), brain (bool), z_ld / s_ld (network inputs),
    lesions (uint16 reference lesion labels, 0 = none), spacing (i, j, k) mm of the working grid,
    noise_sigma_ld / noise_sigma_sd (of the subtractions), real_low_dose (False: synthetic); the case's
    field_strength (T), agent and assumed_metadata (True: defaults, not recorded); sequences: {key of
    ``io.cases.SEQUENCES``: registered, normalized array} preprocessed for models with extra input sequences.
    """

    pre: np.ndarray
    low: np.ndarray
    standard: np.ndarray
    brain: np.ndarray
    z_ld: np.ndarray
    s_ld: np.ndarray
    lesions: np.ndarray
    spacing: tuple
    noise_sigma_ld: float
    noise_sigma_sd: float
    real_low_dose: bool
    field_strength: float
    agent: str
    assumed_metadata: bool
    sequences: dict = field(default_factory=dict)

    def save(self, path: Path) -> None:
        """Atomic npz write (``io.cases.save_npz``); sequences as ``sequence_<key>`` arrays."""
        arrays = {k: np.asarray(v) for k, v in self.__dict__.items() if k != "sequences"}
        save_npz(path, **arrays, **{f"sequence_{k}": v for k, v in self.sequences.items()})

    @classmethod
    def load(cls, path: Path) -> "CaseArrays":
        with np.load(path) as data:
            d = {k: data[k] for k in data.files}
        return cls(d["pre"], d["low"], d["standard"], d["brain"].astype(bool), d["z_ld"], d["s_ld"], d["lesions"],
                   tuple(float(s) for s in d["spacing"]), float(d["noise_sigma_ld"]), float(d["noise_sigma_sd"]),
                   bool(d["real_low_dose"]), float(d["field_strength"]), str(d["agent"]),
                   bool(d["assumed_metadata"]),
                   {k[len("sequence_"):]: v for k, v in d.items() if k.startswith("sequence_")})


def reference_lesions(labels: np.ndarray, pre: np.ndarray, standard: np.ndarray, spacing) -> np.ndarray:
    """Lesion labels kept for evaluation: at least ``regions.DEFAULT_MIN_VOLUME_MM3`` and a positive
    reference enhancement (sum and max of x_SD - x_PC > 0, where c-bar and c^ are defined)."""
    out = np.zeros(labels.shape, np.uint16)
    voxel = float(np.prod(spacing))
    enhancement = standard.astype(np.float64) - pre
    for lab in np.unique(labels[labels > 0]):
        region = labels == lab
        values = enhancement[region]
        if region.sum() * voxel >= DEFAULT_MIN_VOLUME_MM3 and values.sum() > 0 and values.max() > 0:
            out[region] = lab
    return out


def preprocess_case(case, dose: float, backend: str = "auto", simulator: str = "signal-model",
                    sequences: tuple = ()) -> CaseArrays:
    """Preprocess one case at one dose (real or synthetic low dose from ``simulator``) into :class:`CaseArrays`;
    ``sequences``: keys of ``io.cases.SEQUENCES`` registered too (ValueError when the case lacks one)."""
    from .cases import low_dose_for
    from ..model.network import sequence_names
    from ..preprocessing.preprocess import preprocess
    missing = [k for k in sequences if k not in case.sequences]
    if missing:
        raise ValueError(f"case {case.name} has no {sequence_names(missing)} image, which a model evaluated here "
                         "takes; add it to the case folder (flair.nii.gz, t2.nii.gz) or leave out that case "
                         "(--subjects) or that model")
    low, real = low_dose_for(case, dose, simulator)
    # warn=False: QC warnings stay in result.qc
    result = preprocess(case.pre_contrast, low, case.standard_dose, backend=backend, brain=case.brain_mask,
                        require_enhancement=real, warn=False, sequences={k: case.sequences[k] for k in sequences})
    return arrays_from_result(result, case.lesions, real, case.field_strength, case.agent, case.assumed_metadata)


def arrays_from_result(result, lesions: sitk.Image | None, real_low_dose: bool, field_strength: float, agent: str,
                       assumed_metadata: bool = False) -> CaseArrays:
    """:class:`CaseArrays` from a ``preprocess.PreprocessResult`` with a standard dose (``io.cases.working_arrays``);
    ``lesions``: label image on the pre-contrast grid (kept where ``reference_lesions`` allows) or None."""
    w = working_arrays(result, lesions)
    labels = w.lesions
    if lesions is not None:
        labels = reference_lesions(labels, w.pre_contrast, w.standard_dose, w.spacing)
    sequences = {k: sitk.GetArrayFromImage(v).astype(np.float32) for k, v in result.sequences.items()}
    return CaseArrays(w.pre_contrast, w.low_dose, w.standard_dose, w.brain_mask, w.z_ld, w.s_ld, labels, w.spacing,
                      w.noise_sigma_ld, w.noise_sigma_sd, bool(real_low_dose), float(field_strength), str(agent),
                      bool(assumed_metadata), sequences)


def _load_case(spec, backend: str):
    """Load a case; without a brain mask, compute the atlas brain mask once for all its doses."""
    case = spec.load()
    if case.brain_mask is None:
        from ..preprocessing.brainmask import brain_mask
        case.brain_mask = brain_mask(sitk.Cast(case.pre_contrast, sitk.sitkFloat32), backend=backend).brain_mask
    return case


def cached_arrays(spec, dose: float, backend: str, cache_dir, load=None, simulator: str = "signal-model",
                  sequences: tuple = ()) -> tuple[CaseArrays, bool]:
    """(arrays, from_cache) for a case spec at ``dose``; cached as ``cache_dir/<case>_dNNN_<key>.npz``
    (``io.cases.cache_file``). ``load``: returns the loaded case (default ``spec.load``; pass a memo to load a
    case once for all doses); simulator: of synthetic low doses (``cases.SIMULATORS``); sequences: as
    :func:`preprocess_case`."""
    load = load or spec.load
    identity = {"case": spec.identity, "dose": dose_name(dose), "backend": backend}
    if simulator != "signal-model":
        identity["simulator"] = simulator
    if sequences:
        identity["sequences"] = list(sequences)
    path = cache_file(cache_dir, f"{spec.name}_d{dose_digits(dose)}", "evaluate", identity)
    return cached(path, lambda: preprocess_case(load(), dose, backend, simulator, sequences), CaseArrays.load)


# ----------------------------------------------------------------------------- methods

def model_contrast(loaded, arrays: CaseArrays, dose: float, field_strength: float, agent: str,
                   tile: int | str | None = "auto", device=None, fixed_conditions: dict | None = None,
                   tta: int = 1, uncertainty: bool = False):
    """Model contrast signal y~ = gamma s_LD y^ / sigma_LD [k, j, i] on the working grid, normalized units: the
    function ``inference.predict.synthesize`` uses before mapping back to the input grid
    (``predict.model_contrast_signal``). ``fixed_conditions``: {"dose", "field_strength", "relaxivity",
    "noise_sigma"} replacing the case's conditions (fixed-condition ablation); zero outside the tissue
    (``inference.tissue``) as in ``synthesize``; tta: flip test-time augmentation passes; uncertainty: return
    (contrast, its spread over the passes) (``inference.uncertainty``)."""
    from ..inference.predict import model_contrast_signal
    from ..inference.tissue import tissue_array
    return model_contrast_signal(loaded, arrays.z_ld, arrays.low, arrays.s_ld, arrays.noise_sigma_ld, dose,
                                 field_strength, agent, tile=tile, device=device, fixed_conditions=fixed_conditions,
                                 tta=tta, tissue=tissue_array(arrays.pre, arrays.brain, arrays.spacing),
                                 uncertainty=uncertainty, sequences=arrays.sequences, pre_contrast=arrays.pre)


def method_images(arrays: CaseArrays, dose: float, contrasts: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """{method: image} in normalized units: baselines, ``x_PC + contrast`` per model method, the reference."""
    pre, low = arrays.pre, arrays.low
    images = {"low_dose": low, "linear_scaling": pre + (low - pre) / np.float32(dose)}
    for name, contrast in contrasts.items():
        images[name] = pre + contrast
    images[REFERENCE] = arrays.standard
    return images


# ----------------------------------------------------------------------------- metrics

def _mean(values) -> float:
    values = [v for v in values if not math.isnan(v)]
    return float(np.mean(values)) if values else float("nan")


def working_regions(contrast: np.ndarray, arrays: CaseArrays, noise_sigma: float,
                    threshold_sigmas: float) -> tuple[sitk.Image, sitk.Image]:
    """(labels, contrast image) of ``regions.enhancing_regions`` for a contrast array [k, j, i] on the working grid
    of ``arrays`` (its spacing and brain mask): regions above ``threshold_sigmas * noise_sigma``."""
    image = sitk.GetImageFromArray(contrast.astype(np.float32))
    image.SetSpacing(arrays.spacing)
    brain_image = sitk.GetImageFromArray(arrays.brain.astype(np.uint8))
    brain_image.CopyInformation(image)
    return enhancing_regions(image, noise_sigma, brain_image, threshold_sigmas=threshold_sigmas), image


def image_metrics(image: np.ndarray, arrays: CaseArrays, detection_threshold: float) -> tuple[dict, list[dict]]:
    """(per-case metrics, per-lesion rows) of one method's image against the reference (module docstring)."""
    pre, sd, brain, lesions = arrays.pre, arrays.standard, arrays.brain, arrays.lesions
    peak = float(sd.max())
    row = {"psnr_image": m.psnr_image(image, sd, data_range=peak),
           "psnr_brain": m.psnr_brain(image, sd, brain, data_range=peak),
           "ssim": m.ssim(image, sd)}
    ce = m.enhancing_mask(pre, sd, brain, detection_threshold)
    row["mae_ce"] = m.mae_ce(image, sd, ce) if ce.any() else float("nan")
    for p, (d, j) in m.enhancement_overlap(image, pre, sd, brain, OVERLAP_PERCENTS).items():
        row[f"dice_{p:02d}"], row[f"jaccard_{p:02d}"] = d, j
    regions, _ = working_regions(image - pre, arrays, detection_threshold, threshold_sigmas=1.0)
    detected = sitk.GetArrayFromImage(regions)
    lesion_rows = []
    has_lesions = bool((lesions > 0).any())
    if has_lesions:
        psnr_l = m.psnr_lesions(image, sd, lesions, data_range=peak)
        rel = m.relative_enhancement(image, pre, sd, lesions)
        mask = lesions > 0
        row.update({"psnr_lesions": _mean(psnr_l.values()), "c_bar": _mean(v[0] for v in rel.values()),
                    "c_hat": _mean(v[1] for v in rel.values()),
                    "cnr": m.contrast_to_noise_ratio(image, mask, brain | mask),
                    "lbr": m.lesion_to_brain_ratio(image, mask, brain | mask),
                    "cep": m.contrast_enhancement_percentage(image, pre, mask)})
        from ..metrics.detection import match_lesions
        matched = {r for r, _, _ in match_lesions(lesions, detected, arrays.spacing)}
        for lesion in lesion_geometry(lesions, arrays.spacing):
            lab = lesion.label
            voxels = int((lesions == lab).sum())
            region = lesions == lab
            reference = float((sd[region].astype(np.float64) - pre[region]).mean()) / arrays.noise_sigma_sd
            lesion_rows.append({"lesion": lab, "voxels": voxels, "volume_mm3": voxels * float(np.prod(arrays.spacing)),
                                "long_axis_mm": lesion.long_axis_mm,
                                "reference_enhancement_sigmas": reference, "psnr_lesion": psnr_l[lab],
                                "c_bar": rel[lab][0], "c_hat": rel[lab][1], "detected": int(lab in matched)})
    else:
        row.update({k: float("nan") for k in ("psnr_lesions", "c_bar", "c_hat", "cnr", "lbr", "cep")})
    for size, result in detection_by_size(lesions, detected, arrays.spacing, SIZE_THRESHOLDS_MM).items():
        tag = f"{size:g}mm"
        row[f"n_lesions_{tag}"] = result["n_reference"]
        row[f"detected_{tag}"] = result["n_detected"]
        row[f"sensitivity_{tag}"] = result["sensitivity"]
        row[f"false_detections_{tag}"] = result["false_detections"]
    return row, lesion_rows


# ----------------------------------------------------------------------------- the run

def evaluate(specs, doses, loaded, ablation=None, backend: str = "auto", cache_dir=None, tile="auto", device=None,
             log=print, on_images=None, simulators=("signal-model",), tta: int = 1, variants: dict | None = None
             ) -> dict:
    """Run every method on every (case, dose); returns {"cases": [...], "lesions": [...], "timings": {...}}.

    specs: ``io.cases.CaseSpec`` list; loaded / ablation: ``model.files.LoadedModel`` (ablation optional);
    simulators: for cases without a real low dose, each (case, dose) is evaluated with the low dose of every
    simulator in this list (``cases.SIMULATORS``); rows of a simulator other than the first carry the case name
    "NAME (SIMULATOR)" and every row a "simulator" column ("real" for real low doses); tta: flip passes (with 2+
    passes of the model, ensemble members included, "calibration" lists per (case, dose) how the gadoreduce
    image's absolute error inside the brain rises with its uncertainty: ``uncertainty.calibration``);
    on_images: called as ``on_images(case_name, dose, arrays, images)`` while a case's images are in memory
    (figures), so that only one case is held at a time; variants: {NAME: ``LoadedModel``}, each evaluated as
    method ``gadoreduce_NAME`` (:func:`variant_method`). Cases are preprocessed with every input sequence that
    one of the models takes (ValueError naming a case that lacks one).
    """
    doses = check_doses(doses)
    if not specs:
        raise ValueError("no cases to evaluate; give --cases DIR and/or --phantoms N")
    from .cases import SIMULATORS, has_real_low_dose
    simulators = tuple(simulators)
    if not simulators or any(s not in SIMULATORS for s in simulators):
        raise ValueError(f"--simulators {','.join(simulators)}: use one or more of {', '.join(SIMULATORS)}")
    case_rows, lesion_rows, timings, calibrations = [], [], {}, []
    from ..inference.uncertainty import calibration, passes
    spread = passes(loaded, tta) > 1
    variants = dict(variants or {})
    models = [loaded, ablation, *variants.values()]
    from ..io.cases import SEQUENCES
    needed = tuple(k for k in SEQUENCES if any(k in m.config.sequences for m in models if m is not None))
    runs = [(spec, dose, simulator) for spec in specs for simulator in simulators for dose in doses]
    load, loaded_name = None, None
    for spec, dose, simulator in runs:
        if spec.name != loaded_name:  # one case in memory at a time, loaded once for all its runs (on a miss)
            load, loaded_name = functools.cache(lambda spec=spec: _load_case(spec, backend)), spec.name
        if simulator != simulators[0] and (spec.source == "phantom" or (
                spec.source == "folder" and has_real_low_dose(load(), dose))):
            continue  # a real low dose is evaluated once
        start = time.perf_counter()
        arrays, hit = cached_arrays(spec, dose, backend, cache_dir, load, simulator, needed)
        kind = "real" if arrays.real_low_dose else simulator
        name = spec.name if kind in ("real", simulators[0]) else f"{spec.name} ({simulator})"
        t_pre = time.perf_counter() - start
        meta = {"field_strength": arrays.field_strength, "agent": arrays.agent,
                "assumed": arrays.assumed_metadata}
        start = time.perf_counter()
        predicted = model_contrast(loaded, arrays, dose, meta["field_strength"], meta["agent"], tile, device,
                                   tta=tta, uncertainty=spread)
        contrasts = {"gadoreduce": predicted[0] if spread else predicted}
        if ablation is not None:
            contrasts["gadoreduce_fixed_condition"] = model_contrast(
                ablation, arrays, dose, meta["field_strength"], meta["agent"], tile, device,
                ablation.metadata.get("fixed_conditions"), tta=tta)
        for variant, model in variants.items():
            contrasts[variant_method(variant)] = model_contrast(model, arrays, dose, meta["field_strength"],
                                                                meta["agent"], tile, device, tta=tta)
        t_model = time.perf_counter() - start
        images = method_images(arrays, dose, contrasts)
        if spread:
            calibrations.append({"case": name, "dose": dose, "simulator": kind, **calibration(
                images["gadoreduce"] - arrays.standard, predicted[1], arrays.brain)})
        start = time.perf_counter()
        threshold = ENHANCING_SIGMAS * arrays.noise_sigma_sd
        common = {"case": name, "source": spec.source, "dose": dose,
                  "low_dose_kind": "real" if arrays.real_low_dose else "synthetic", "simulator": kind,
                  "field_strength": meta["field_strength"], "agent": meta["agent"],
                  "assumed_metadata": int(meta["assumed"])}
        for method, image in images.items():
            row, lesions = image_metrics(image, arrays, threshold)
            case_rows.append({**common, "method": method, **row})
            lesion_rows += [{"case": name, "dose": dose, "method": method, **r} for r in lesions]
        timings[f"{name}|{dose:g}"] = {"preprocess_s": round(t_pre, 3), "cached": hit, "model_s": round(t_model, 3),
                                       "metrics_s": round(time.perf_counter() - start, 3)}
        log(f"{name} dose {dose:g}: {'cached' if hit else 'preprocessed'} ({t_pre:.1f} s), "
            f"model {t_model:.1f} s, {len(np.unique(arrays.lesions[arrays.lesions > 0]))} lesions")
        if on_images is not None:
            on_images(name, dose, arrays, images)
    return {"cases": case_rows, "lesions": lesion_rows, "timings": timings, "calibration": calibrations}


def run(output, cases_dir=None, subjects=None, phantoms: int = 0, phantom_seed: int = 0, phantom_size: str = "small",
        doses=DEFAULT_DOSES, model=None, ablation_model=None, backend: str = "auto", device="cpu", tile="auto",
        cache: bool | str | Path = True, command: str = "", zoom_cases: int | list = 3, log=print,
        simulators=("signal-model", "kspace"), tta: int = 1, variants: dict | None = None) -> dict:
    """The ``gadoreduce evaluate`` command: evaluate, then write the report and figures under ``output``.

    simulators: low-dose simulators of cases without a real low dose (:func:`evaluate`); tta: flip passes.
    model: model file (None: the shipped default); ablation_model: optional fixed-condition model file;
    variants: {NAME: model file} evaluated beside it as ``gadoreduce_NAME`` (:func:`evaluate`);
    cache: keep preprocessed (case, dose) arrays in ``output/cache`` (True), in the given folder, or not (False);
    command: the command line, quoted in the summary; zoom_cases: lesion zoom figures for this many cases (the first by name), or for the cases
    named in a list (e.g. phantoms only, for a report that may not show third-party images). Returns the paths.
    """
    from .cases import folder_cases, phantom_cases
    from .figures import lesion_zoom, write_figures
    from .report import write_report
    from ..inference.uncertainty import passes
    from ..model.files import load_model, sha256_of
    doses = check_doses(doses)
    variants = dict(variants or {})
    for name in variants:
        check_variant_name(name)
    files = [("--model", model), ("--ablation-model", ablation_model)]
    for name, path in files + [(f"--variant {v}=", p) for v, p in variants.items()]:
        if path is not None and not Path(path).is_file():
            raise ValueError(f"{name} {path} does not exist; give a model file (.pt with its .sha256 beside it)")
    loaded = load_model(model, device="cpu")
    ablation = load_model(ablation_model, device="cpu") if ablation_model else None
    variant_models = {name: load_model(path, device="cpu") for name, path in variants.items()}
    specs = folder_cases(cases_dir, subjects) if cases_dir else []
    if subjects and not cases_dir:
        raise ValueError("--subjects needs --cases DIR (the folder holding those subjects)")
    specs += phantom_cases(phantoms, phantom_seed, phantom_size, doses) if phantoms else []
    if not specs:
        raise ValueError("no cases to evaluate; give --cases DIR (case folders or BraTS subjects) and/or --phantoms N")
    output = Path(output)
    methods = (list(BASELINES) + ["gadoreduce"] + (["gadoreduce_fixed_condition"] if ablation else [])
               + [variant_method(v) for v in variants] + [REFERENCE])
    if isinstance(zoom_cases, int):
        zoom_names = {s.name for s in sorted(specs, key=lambda s: s.name)[:zoom_cases]}
    else:
        zoom_names = set(zoom_cases)
        unknown = sorted(zoom_names - {s.name for s in specs})
        if unknown:
            raise ValueError(f"--zoom-cases names unknown cases {unknown}; use case names such as "
                             f"{sorted(s.name for s in specs)[:3]}")
    zooms = []

    def on_images(case_name, dose, arrays, images):
        if case_name in zoom_names:
            path = lesion_zoom(arrays, {m: images[m] for m in methods},
                               output / "figures" / f"lesions_{case_name}_dose{dose_digits(dose)}.png",
                               f"{case_name}, dose {dose:g}")
            if path is not None:
                zooms.append(str(path.relative_to(output)))

    cache_dir = (output / "cache" if cache is True else Path(cache)) if cache else None
    result = evaluate(specs, doses, loaded, ablation, backend, cache_dir, tile, device,
                      log, on_images, simulators, tta, variant_models)
    figures = sorted(write_figures(result, methods, doses, output) + zooms)
    describe = lambda lm: {"name": lm.metadata.get("name", lm.path.stem), "file": lm.path.name,  # noqa: E731
                           "sha256": sha256_of(lm.path)}
    info = {"command": command, "model_name": describe(loaded)["name"], "model_file": loaded.path.name,
            "model_sha256": sha256_of(loaded.path), "ablation": describe(ablation) if ablation else None,
            "variants": {variant_method(v): describe(m) for v, m in variant_models.items()},
            "figures": figures, "simulators": list(simulators), "tta": tta, "passes": passes(loaded, tta)}
    paths = write_report(result, methods, doses, output, info)
    log(f"wrote {', '.join(p.name for p in paths.values())} and {len(figures)} figures to {output}")
    return {**paths, "figures": [output / f for f in figures], "result": result}
