"""Contrast-preserving preprocessing (paper 001, sections 3.1-3.2) as one chain with its QC record.

``preprocess(pre_contrast, low_dose, standard_dose=None)``:
1. input checks (3D, finite, not constant, spacing <= 7 mm, scans overlap);
2. working grid: the pre-contrast grid, or a nested nearly isotropic one when its voxels are
   anisotropic (``regrid``); every output is mapped back exactly onto the pre-contrast grid;
3. brain mask b: affine atlas registration (``brainmask``);
4. rigid registration of each post-contrast scan to the pre-contrast scan, metric restricted to
   the dilated brain (``registration``, elastix parameter file ``Resources/Elastix/rigid_mattes_mi.txt``);
5. each scan divided by its 95th percentile in b; radiometric scalar per post-contrast scan;
6. subtraction z~ = post - pre; noise sigma; local mean/std; z = (z~ - m)/s * sigma_LD (eq. 1);
7. with a standard dose: contrast mask p = sigmoid(w z_SD + b) and target y = p * z_SD (eq. 2);
8. QC: registration metric, brain correlation before/after, warnings;
9. optional sequences (FLAIR, T2): registered and normalized alike, no subtraction (``sequences``).
Without a low dose (``low_dose=None``: a zero-dose prediction) steps 4-7 are skipped for it and the noise sigma
is :func:`zero_dose_noise_sigma`'s estimate.
Intensities of the outputs are in units of the pre-contrast's 95th brain percentile.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk

from . import brainmask as bm
from . import noise, normalization
from .noise_estimate import HALF_NORMAL_MEDIAN
from ..io import regrid
from ..io.imageio import check_3d, same_grid
from ..io.profiling import stage
from .registration import RegistrationResult, register_in_brain

MAX_SPACING_MM = 7.0
"""Scans with any voxel spacing above this (mm) are refused: too coarse for brain lesions."""
MIN_VOXELS_PER_AXIS = 16
"""Scans with fewer voxels along an axis are refused (elastix's pyramid and the Gaussian filters fail on them)."""
MIN_OVERLAP = 0.25
"""Least fraction of the pre-contrast field of view that a post-contrast scan must cover."""
REGISTRATION_MASK_MARGIN_MM = 5.0
"""The brain mask, dilated by this margin (mm), limits the registration metric (no facial motion)."""
MIN_BRAIN_COVERAGE = 0.9
"""Below this fraction of the brain inside a registered scan's field of view, QC warns."""
QC_MIN_CORRELATION = 0.6
"""Below this brain correlation of pre-contrast and registered post-contrast, registration is suspect."""
ENHANCEMENT_SIGMAS = 3.0
MIN_ENHANCING_FRACTION = 0.002
"""A post-contrast scan with at most 0.2 % of brain voxels above 3 noise sigmas (pure Gaussian noise gives 0.13 %)
shows little enhancement (a warning; 10 % low doses of BraTS pairs give 0.05-0.07 %)."""


class RegistrationWarning(UserWarning):
    """A registration looks failed (low correlation in the brain or worse than no registration)."""


@dataclass
class ScanPreprocessing:
    """One post-contrast scan (low or standard dose) after preprocessing, on the working grid."""

    registration: RegistrationResult
    registered: sitk.Image          # post-contrast resampled, divided by its percentile, times the scalar
    percentile: float               # 95th brain percentile of the registered scan (its input units)
    radiometric_scale: float        # scalar applied after the percentile normalization
    subtraction: sitk.Image         # z~ = registered - pre (normalized units)
    noise_sigma: float              # of z~ (normalized units)
    local_mean: sitk.Image
    local_std: sitk.Image
    normalized_subtraction: sitk.Image  # z (eq. 1), noise level sigma_LD
    coverage: sitk.Image            # 1 where the registered scan has data (inside its field of view)
    qc: dict = field(default_factory=dict)


def output_names(standard_dose: bool) -> tuple[str, ...]:
    """Names of :meth:`PreprocessResult.outputs` (without / with a standard dose), in writing order."""
    names = ("pre_contrast", "brain_mask", "low_dose_registered", "subtraction_ld", "local_mean_ld", "local_std_ld",
             "normalized_subtraction_ld", "coverage_ld")
    if standard_dose:
        names += ("standard_dose_registered", "subtraction_sd", "local_mean_sd", "local_std_sd",
                  "normalized_subtraction_sd", "coverage_sd", "contrast_mask", "contrast_signal")
    return names


@dataclass
class PreprocessResult:
    """All intermediate images (working grid) and the QC record; :meth:`outputs` maps them onto the
    pre-contrast grid. ``pre_contrast`` is normalized (95th brain percentile = 1)."""

    pre_contrast_input: sitk.Image
    pre_contrast: sitk.Image
    pre_percentile: float
    brain_mask: sitk.Image
    brain: bm.BrainMaskResult | None  # None when a brain mask was given
    low_dose: ScanPreprocessing | None  # None: a zero-dose case (no contrast-enhanced scan)
    standard_dose: ScanPreprocessing | None
    noise_sigma_ld: float  # of the low-dose subtraction; a zero-dose case: zero_dose_noise_sigma
    contrast_mask: sitk.Image | None
    contrast_signal: sitk.Image | None
    qc: dict
    sequences: dict[str, sitk.Image] = field(default_factory=dict)
    """{"flair"/"t2": registered sequence, normalized (its 95th brain percentile = 1)} on the working grid."""

    def outputs(self) -> dict[str, sitk.Image]:
        """Every intermediate image on the pre-contrast grid (exact sub-sampling when regridded), named as in
        :func:`output_names` (a zero-dose case: none of the low dose's)."""
        ld = self.low_dose
        images = {"pre_contrast": self.pre_contrast, "brain_mask": self.brain_mask}
        if ld is not None:
            images.update(zip(output_names(False)[2:], (ld.registered, ld.subtraction, ld.local_mean, ld.local_std,
                                                        ld.normalized_subtraction, ld.coverage)))
        if self.standard_dose is not None:
            sd = self.standard_dose
            images.update(zip(output_names(True)[len(output_names(False)):],
                              (sd.registered, sd.subtraction, sd.local_mean, sd.local_std, sd.normalized_subtraction,
                               sd.coverage, self.contrast_mask, self.contrast_signal)))
        images.update({f"{name}_registered": image for name, image in self.sequences.items()})
        ref = self.pre_contrast_input
        out = {}
        for name, image in images.items():
            mapped = regrid.back_to_grid(image, ref, sitk.sitkNearestNeighbor if name == "brain_mask" or name.startswith("coverage") else sitk.sitkBSpline)
            out[name] = mapped
        return out


# ----------------------------------------------------------------------------- input checks

def check_image(image: sitk.Image, name: str) -> None:
    """ValueError unless ``image`` is a 3D scalar, finite, non-constant image of at least ``MIN_VOXELS_PER_AXIS``
    voxels per axis with spacing <= 7 mm."""
    if not isinstance(image, sitk.Image):
        raise ValueError(f"The {name} must be a SimpleITK image, got {type(image).__name__}.")
    check_3d(image, name)
    array = sitk.GetArrayViewFromImage(image)
    if array.size == 0 or min(image.GetSize()) < 2:
        raise ValueError(f"The {name} is empty (size {image.GetSize()}); give a 3D volume with several slices.")
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).sum())
        raise ValueError(f"The {name} has {bad} NaN or infinite voxels; replace them (e.g. by 0) or re-export "
                         "the scan.")
    if float(array.max()) == float(array.min()):
        raise ValueError(f"The {name} is constant (all voxels {float(array.min()):g}); it holds no image. "
                         "Check that the right series was loaded.")
    if min(image.GetSize()) < MIN_VOXELS_PER_AXIS:
        raise ValueError(f"The {name} has only {min(image.GetSize())} voxels along one axis (size {image.GetSize()}); "
                         f"registration and noise estimation need at least {MIN_VOXELS_PER_AXIS} per axis. Give the "
                         "whole 3D brain scan, not a crop or a few slices.")
    spacing = image.GetSpacing()
    if max(spacing) > MAX_SPACING_MM:
        raise ValueError(f"The {name} has a voxel spacing of {max(spacing):g} mm (spacing {tuple(spacing)}), above "
                         f"{MAX_SPACING_MM:g} mm: too coarse for contrast-enhancing lesions. Use a 3D or thin-slice "
                         "acquisition.")


def _bounding_box(image: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    size = np.asarray(image.GetSize()) - 1
    corners = np.array([[i, j, k] for i in (-0.5, size[0] + 0.5) for j in (-0.5, size[1] + 0.5)
                        for k in (-0.5, size[2] + 0.5)])
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    points = corners * np.asarray(image.GetSpacing()) @ direction.T + np.asarray(image.GetOrigin())
    return points.min(axis=0), points.max(axis=0)


def overlap_fraction(reference: sitk.Image, other: sitk.Image) -> float:
    """Fraction of ``reference``'s bounding box (LPS) that ``other``'s bounding box covers."""
    lo1, hi1 = _bounding_box(reference)
    lo2, hi2 = _bounding_box(other)
    inter = np.clip(np.minimum(hi1, hi2) - np.maximum(lo1, lo2), 0, None)
    return float(np.prod(inter) / np.prod(hi1 - lo1))


def check_inputs(pre_contrast: sitk.Image, low_dose: sitk.Image | None, standard_dose: sitk.Image | None = None,
                 sequences: dict | None = None) -> None:
    """All input checks of :func:`preprocess` (ValueError naming the problem and the fix)."""
    from ..io.cases import SEQUENCES
    check_image(pre_contrast, "pre-contrast image")
    scans = [(image, name) for image, name in ((low_dose, "low-dose image"), (standard_dose, "standard-dose image"))
             if image is not None]
    extra = [(image, f"{SEQUENCES[key]} image") for key, image in (sequences or {}).items()]
    for image, name in scans + extra:
        check_image(image, name)
        fraction = overlap_fraction(pre_contrast, image)
        if fraction < MIN_OVERLAP:
            raise ValueError(f"The {name} covers only {100 * fraction:.0f} % of the pre-contrast field of view "
                             "(the scans do not overlap). Check that both scans are of the same patient and "
                             "session and keep their original position (origin and direction) information.")
    for image, name in scans:
        if same_grid(image, pre_contrast) and np.array_equal(sitk.GetArrayViewFromImage(image),
                                                             sitk.GetArrayViewFromImage(pre_contrast)):
            raise ValueError(f"The {name} is identical to the pre-contrast image, voxel for voxel: it holds no "
                             "contrast agent signal, so there is nothing to enhance. Give the contrast-enhanced "
                             "scan, not a second copy of the pre-contrast scan.")


def signal_fractions(subtraction: sitk.Image, mask: sitk.Image, sigma: float) -> tuple[float, float]:
    """Fractions of the ``mask`` voxels of ``subtraction`` above +3 and below -3 noise sigmas."""
    z = sitk.GetArrayViewFromImage(subtraction)[sitk.GetArrayViewFromImage(mask) > 0]
    limit = ENHANCEMENT_SIGMAS * sigma
    return float((z > limit).mean()), float((z < -limit).mean())


def looks_swapped(brighter: float, darker: float) -> bool:
    """True when a post-contrast scan is darker than the pre-contrast in clearly more voxels than it is brighter
    (contrast agent only brightens T1w images): pre-contrast and post-contrast were probably given swapped."""
    return darker > max(2.0 * brighter, MIN_ENHANCING_FRACTION)


def swap_message(name: str, brighter: float, darker: float) -> str:
    return (f"The {name} is darker than the pre-contrast image in {100 * darker:.2f} % of brain voxels and brighter "
            f"in only {100 * brighter:.2f} % (more than {ENHANCEMENT_SIGMAS:g} noise sigmas): the pre-contrast and "
            "the contrast-enhanced scan look swapped. Give the scan without contrast agent as the pre-contrast "
            "(--pre) and the contrast-enhanced scan as the low dose (--low).")


def little_enhancement_message(name: str, brighter: float) -> str:
    return (f"The {name} shows little enhancement: only {100 * brighter:.2f} % of brain voxels are more than "
            f"{ENHANCEMENT_SIGMAS:g} noise sigmas brighter than the pre-contrast image (pure noise gives 0.13 %). "
            "This is usual at doses near 10 % of the standard dose; otherwise check that it is the contrast-enhanced "
            "scan, acquired after the injection. The synthetic standard dose can only show enhancement that the low "
            "dose holds.")


def check_enhancement(subtraction: sitk.Image, mask: sitk.Image, sigma: float, name: str,
                      strict: bool = True) -> float:
    """Fraction of brain voxels of ``subtraction`` above 3 sigma; ValueError (strict) when the post-contrast scan
    is nowhere brighter but clearly darker than the pre-contrast: the inputs look swapped. Little enhancement
    alone is no error (a 10 % low dose shows about as little as noise): ``preprocess`` warns."""
    fraction, darker = signal_fractions(subtraction, mask, sigma)
    if strict and fraction <= MIN_ENHANCING_FRACTION and looks_swapped(fraction, darker):
        raise ValueError(swap_message(name, fraction, darker))
    return fraction


# ----------------------------------------------------------------------------- the chain

def correlation_in_mask(a: sitk.Image, b: sitk.Image, mask: sitk.Image) -> float:
    """Pearson correlation of two images over the voxels of ``mask`` (one grid)."""
    m = sitk.GetArrayViewFromImage(mask) > 0
    x = sitk.GetArrayViewFromImage(a)[m].astype(np.float64)
    y = sitk.GetArrayViewFromImage(b)[m].astype(np.float64)
    if x.std() == 0 or y.std() == 0:
        return 0.0
    return float(np.corrcoef(x, y)[0, 1])


def _post_contrast(post: sitk.Image, name: str, pre_native: sitk.Image, pre_work: sitk.Image,
                   mask_native: sitk.Image, mask_work: sitk.Image, registration_mask: sitk.Image,
                   backend: str, threads: int | None, sigma_ld: float | None,
                   require_enhancement: bool = True) -> ScanPreprocessing:
    with stage("quality control"):
        before = correlation_in_mask(pre_work, regrid.to_grid(post, pre_work, sitk.sitkLinear), mask_work)
    reg, coverage, valid, covered = register_in_brain(post, pre_native, pre_work, mask_work, registration_mask,
                                                      backend, threads)
    with stage("normalization"):
        registered, q = normalization.percentile_normalize(reg.resampled, valid)
        scale = normalization.radiometric_scale(pre_work, registered, valid)
        registered = sitk.Cast(registered * float(scale), sitk.sitkFloat32)
        # outside the scan's field of view the subtraction is unknown: 0 there
        subtraction = sitk.Cast(sitk.Cast(registered - sitk.Cast(pre_work, sitk.sitkFloat32), sitk.sitkFloat32)
                                * sitk.Cast(coverage, sitk.sitkFloat32), sitk.sitkFloat32)
    with stage("quality control"):
        after = correlation_in_mask(pre_work, registered, valid)
    qc = {"registration_backend": reg.backend, "registration_seconds": round(reg.seconds, 2),
          "registration_metric": reg.metric, "correlation_before": before, "correlation_after": after,
          "percentile_95": q, "radiometric_scale": scale, "brain_coverage": covered, "warnings": []}
    failed = after < QC_MIN_CORRELATION or after < before - 0.02
    if failed:
        message = (f"Registration of the {name} looks failed: brain correlation with the pre-contrast image is "
                   f"{after:.3f} after registration ({before:.3f} before; expected >= {QC_MIN_CORRELATION}). "
                   "Inspect the QC montage; try backend='executable' or check that the scans belong together.")
        qc["warnings"].append(message)
        warnings.warn(message, RegistrationWarning, stacklevel=4)
    if covered < MIN_BRAIN_COVERAGE:
        message = (f"The registered {name} covers only {100 * covered:.0f} % of the brain mask (its field of view "
                   "is smaller or the head moved out of it); the uncovered brain has no subtraction (0).")
        qc["warnings"].append(message)
        warnings.warn(message, RegistrationWarning, stacklevel=4)
    sigma = noise.noise_sigma(subtraction, valid)
    try:
        qc["enhancing_fraction_3sigma"] = check_enhancement(subtraction, valid, sigma, name)
    except ValueError as error:  # it looks swapped
        if failed:
            raise ValueError(f"{error} The registration of the {name} also looks failed (brain correlation "
                             f"{after:.3f}), which alone can cause this.") from None
        if require_enhancement:
            raise
        qc["enhancing_fraction_3sigma"] = check_enhancement(subtraction, valid, sigma, name, strict=False)
    brighter, darker = signal_fractions(subtraction, valid, sigma)
    if failed and brighter <= MIN_ENHANCING_FRACTION and require_enhancement:  # misaligned noise: no result
        raise ValueError(f"The {name} is nowhere brighter than the pre-contrast image (only {100 * brighter:.2f} % "
                         f"of brain voxels exceed {ENHANCEMENT_SIGMAS:g} noise sigmas). The registration of the "
                         f"{name} also looks failed (brain correlation {after:.3f}), which alone can cause this: "
                         "check that both scans are of the same patient and session, or try another backend.")
    for message in ([swap_message(name, brighter, darker)] if looks_swapped(brighter, darker) else []) + (
            [little_enhancement_message(name, brighter)] if brighter <= MIN_ENHANCING_FRACTION else []):
        qc["warnings"].append(message)
        warnings.warn(message, RegistrationWarning, stacklevel=4)
    qc["noise_sigma"] = sigma
    with stage("noise statistics"):
        mean, std = noise.local_statistics(subtraction, valid, sigma,
                                            shrink=noise.block_shrink(subtraction.GetSpacing()))
        z = noise.normalize_subtraction(subtraction, mean, std, sigma if sigma_ld is None else sigma_ld)
        z = sitk.Cast(z * sitk.Cast(coverage, sitk.sitkFloat32), sitk.sitkFloat32)
    return ScanPreprocessing(reg, registered, q, scale, subtraction, sigma, mean, std, z, coverage, qc)


def zero_dose_noise_sigma(pre_contrast: sitk.Image, mask: sitk.Image) -> float:
    """Noise sigma a subtraction of two scans like ``pre_contrast`` would have, without a contrast-enhanced scan
    (zero dose): the robust sigma of the differences of neighbouring voxels along the first axis inside ``mask``
    (the difference of two independent noisy values has sqrt(2) sigma, as a subtraction has); anatomy and
    interpolation make it an approximation. Image units."""
    x = sitk.GetArrayViewFromImage(pre_contrast).astype(np.float32)
    m = sitk.GetArrayViewFromImage(mask) > 0
    difference = np.diff(x, axis=2)
    inside = m[:, :, 1:] & m[:, :, :-1]
    return float(np.median(np.abs(difference[inside])) / HALF_NORMAL_MEDIAN)


def preprocess(pre_contrast: sitk.Image, low_dose: sitk.Image | None, standard_dose: sitk.Image | None = None,
               backend: str = "auto", threads: int | None = None, isotropic: bool = True,
               brain: bm.BrainMaskResult | sitk.Image | None = None,
               require_enhancement: bool = True, warn: bool = True,
               sequences: dict[str, sitk.Image] | None = None) -> PreprocessResult:
    """The preprocessing chain of paper 001 (see the module docstring); returns every intermediate image.

    low_dose: None for a zero-dose case (a zero-dose model's input: the pre-contrast and its sequences only).
    warn: False keeps every warning out of Python's warnings (entry points that print or store
    ``result.qc["warnings"]`` themselves); the QC record holds them either way.

    backend: registration backend (``registration.BACKENDS``); isotropic: regrid anisotropic
    pre-contrast scans onto a nested nearly isotropic working grid; brain: a precomputed
    :func:`brainmask.brain_mask` result, or a binary brain mask on the pre-contrast grid (either
    skips the atlas registration); require_enhancement: refuse post-contrast scans that are nowhere brighter
    but clearly darker than the pre-contrast (swapped inputs; the default; False only for low doses known to be
    right, e.g. synthetic ones, where this is a QC warning). Little enhancement alone is a QC warning.
    sequences: optional {"flair"/"t2": image} of the same session (``preprocessing.sequences``), in
    ``result.sequences``.
    """
    with warnings.catch_warnings():
        if not warn:
            warnings.simplefilter("ignore")
        return _preprocess(pre_contrast, low_dose, standard_dose, backend, threads, isotropic, brain,
                           require_enhancement, sequences)


def _preprocess(pre_contrast, low_dose, standard_dose, backend, threads, isotropic, brain,
                require_enhancement, sequences=None) -> PreprocessResult:
    from .sequences import check_sequences, register_sequence
    sequences = check_sequences(sequences)
    check_inputs(pre_contrast, low_dose, standard_dose, sequences)
    pre_native = sitk.Cast(pre_contrast, sitk.sitkFloat32)
    if isotropic and regrid.is_anisotropic(pre_native):
        pre_work = regrid.to_grid(pre_native, regrid.nested_isotropic_grid(pre_native))
    else:
        pre_work = pre_native
    if brain is None:
        with stage("brain mask"):
            brain = bm.brain_mask(pre_native, backend=backend, threads=threads)
    if isinstance(brain, sitk.Image):
        check_3d(brain, "brain mask")
        if not same_grid(brain, pre_native, atol=1e-3):  # NIfTI stores the grid in float32
            raise ValueError("The given brain mask is not on the pre-contrast grid; resample it onto the "
                             "pre-contrast image first (nearest neighbour).")
        mask_native = sitk.Cast(brain > 0, sitk.sitkUInt8)
        mask_native.CopyInformation(pre_native)
        brain = None
    else:
        mask_native = brain.brain_mask
    mask_work = (mask_native if pre_work is pre_native else
                 sitk.Cast(regrid.to_grid(mask_native, pre_work, sitk.sitkNearestNeighbor), sitk.sitkUInt8))
    brain_ml = float(sitk.GetArrayViewFromImage(mask_native).sum() * np.prod(mask_native.GetSpacing()) / 1000)
    radius = [max(1, int(round(REGISTRATION_MASK_MARGIN_MM / s))) for s in mask_native.GetSpacing()]
    registration_mask = sitk.BinaryDilate(mask_native, radius)

    with stage("normalization"):
        pre_normalized, pre_q = normalization.percentile_normalize(pre_work, mask_work)
    low = None if low_dose is None else _post_contrast(
        low_dose, "low-dose image", pre_native, pre_normalized, mask_native, mask_work, registration_mask, backend,
        threads, None, require_enhancement)
    sigma_ld = low.noise_sigma if low is not None else zero_dose_noise_sigma(pre_normalized, mask_work)
    sd, p, y = None, None, None
    if standard_dose is not None:
        sd = _post_contrast(standard_dose, "standard-dose image", pre_native, pre_normalized, mask_native,
                            mask_work, registration_mask, backend, threads, sigma_ld)
        y, p = noise.contrast_signal(sd.normalized_subtraction, sigma_ld)
    registered_sequences, sequence_qc = {}, {}
    for key, image in sequences.items():
        registered_sequences[key], sequence_qc[key] = register_sequence(
            image, key, pre_native, pre_normalized, mask_work, registration_mask, backend, threads)
    qc = {"brain_volume_ml": brain_ml, "brain_mask_source": "atlas registration" if brain else "given",
          "skull_stripped_input": brain.skull_stripped if brain else None,
          "atlas_registration_metric": brain.registration.metric if brain else None,
          "working_grid_spacing_mm": list(pre_work.GetSpacing()), "regridded": pre_work is not pre_native,
          "pre_contrast_percentile_95": pre_q, "noise_sigma_ld": sigma_ld,
          "low_dose": low.qc if low is not None else None, "warnings": list(low.qc["warnings"]) if low else []}
    if not 700.0 <= brain_ml <= 2500.0:
        message = (f"The brain mask holds {brain_ml:.0f} ml, outside the plausible 700-2500 ml: the atlas "
                   "registration may have failed. Inspect the QC montage.")
        qc["warnings"].append(message)
        warnings.warn(message, RegistrationWarning, stacklevel=3)
    if sd is not None:
        qc["standard_dose"] = sd.qc
        qc["noise_sigma_sd"] = sd.noise_sigma
        qc["contrast_mask_w_b"] = list(noise.contrast_mask_parameters(sigma_ld))
        qc["warnings"] += sd.qc["warnings"]
    for key, record in sequence_qc.items():
        qc[key] = record
        for message in record["warnings"]:
            qc["warnings"].append(message)
            warnings.warn(message, RegistrationWarning, stacklevel=3)
    return PreprocessResult(pre_native, pre_normalized, pre_q, mask_work, brain, low, sd, sigma_ld, p, y, qc,
                            registered_sequences)
