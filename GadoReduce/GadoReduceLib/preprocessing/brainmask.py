"""Brain mask by affine registration of the shipped MNI ICBM152 2009a atlas to the pre-contrast scan.

Paper 001, section 3.1: "the brain region b is extracted by an affine registration of an atlas
brain towards the pre-contrast image". The atlas brain mask is the support of the skull-stripped
T1 template (grey and white matter plus the ventricles and sulcal CSF the template keeps),
closed with the GM+WM probability maps; see :func:`atlas_mask`.

Works for heads with skull and scalp and for skull-stripped inputs (e.g. BraTS):
1. a rough head (foreground) mask of the scan decides which: a foreground of less than
   ``SKULL_STRIPPED_MAX_ML`` means skull-stripped;
2. initial translation: brain centres aligned (skull-stripped), or, for a head, the atlas top
   placed ``SCALP_SKULL_MM`` below the top of the head and centred left-right/front-back on the
   cranium slab;
3. elastix affine (Mattes MI, 4-level pyramid) at ``REGISTRATION_SPACING_MM``, with the moving
   (atlas) mask dilated so that the dark CSF/skull margin around the brain takes part (the
   template's black background then matches dark CSF and bone of a T1w head);
4. the atlas mask is resampled (linear, >= 0.5) onto the scan grid. For skull-stripped inputs the
   mask is the scan's own non-zero region (holes filled) within SKULL_STRIPPED_ATLAS_MARGIN_MM of
   the registered atlas brain: the input already defines the brain boundary, and the atlas removes
   what a rough skull stripping left elsewhere (eyes, neck).
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from ..io.imageio import check_3d
from .registration import AFFINE_ATLAS_PARAMETER_FILE, RegistrationResult, register
from ..io.regrid import downsample
from ..io.resources import resource_path, user_cache_dir

ATLAS_FILES = {"t1": "mni_icbm152_2009a_t1.nii.gz", "gm": "mni_icbm152_2009a_gm.nii.gz",
               "wm": "mni_icbm152_2009a_wm.nii.gz"}
REGISTRATION_SPACING_MM = 2.0
"""Isotropic grid spacing (mm) on which the atlas registration runs (the mask returns at full grid)."""
SKULL_STRIPPED_MAX_ML = 2000.0
"""A foreground smaller than this (ml) is taken as a skull-stripped brain (brains: 1000-1800 ml)."""
SCALP_SKULL_MM = 10.0
"""Scalp + skull + CSF thickness (mm) assumed above the brain's top for the initial translation."""
SKULL_STRIPPED_ATLAS_MARGIN_MM = 8.0
"""For skull-stripped inputs: non-zero voxels within this distance (mm) of the registered atlas brain."""
MOVING_MASK_MARGIN_MM = 8.0
"""Margin (mm) of dark background around the atlas brain that takes part in the registration."""
ATLAS_CACHE_VERSION = 1
"""Part of the key of the cached atlas products (:func:`atlas_products`); raise it when their recipe changes."""


@dataclass
class BrainMaskResult:
    """brain_mask: uint8 on the scan's grid; head_mask: the rough foreground used; registration:
    the atlas registration (transform maps scan points to atlas points); skull_stripped: whether
    the input was taken as skull-stripped; atlas_on_scan: the atlas T1 resampled onto the scan."""

    brain_mask: sitk.Image
    atlas_mask: sitk.Image  # the registered atlas brain alone (uint8, scan grid)
    head_mask: sitk.Image
    registration: RegistrationResult
    skull_stripped: bool
    atlas_on_scan: sitk.Image
    initial_translation: tuple


def atlas_mask(t1: sitk.Image | None = None) -> sitk.Image:
    """Brain mask of the atlas: template support (T1 > 0) or GM+WM >= 0.5, holes filled (uint8)."""
    if t1 is None:
        t1 = sitk.ReadImage(str(resource_path("Atlas", ATLAS_FILES["t1"])), sitk.sitkFloat32)
    gm = sitk.ReadImage(str(resource_path("Atlas", ATLAS_FILES["gm"])), sitk.sitkFloat32)
    wm = sitk.ReadImage(str(resource_path("Atlas", ATLAS_FILES["wm"])), sitk.sitkFloat32)
    mask = sitk.Or(t1 > 0, (gm + wm) >= 127.5)
    mask = sitk.BinaryFillhole(mask)
    return sitk.Cast(mask, sitk.sitkUInt8)


@dataclass(frozen=True)
class AtlasProducts:
    """What every brain mask needs from the atlas: t1 (float32, 1 mm MNI grid), brain (its mask, uint8) and, at
    REGISTRATION_SPACING_MM, moving (the template), moving_brain (its mask) and moving_mask (the mask dilated by
    MOVING_MASK_MARGIN_MM). Shared: never modify them."""

    t1: sitk.Image
    brain: sitk.Image
    moving: sitk.Image
    moving_brain: sitk.Image
    moving_mask: sitk.Image

    NAMES = ("brain", "moving", "moving_brain", "moving_mask")


def _atlas_key() -> str:
    digest = hashlib.sha256(f"{ATLAS_CACHE_VERSION} {REGISTRATION_SPACING_MM} {MOVING_MASK_MARGIN_MM}".encode())
    for name in sorted(ATLAS_FILES.values()):
        digest.update(resource_path("Atlas", name).read_bytes())
    return digest.hexdigest()[:16]


def _compute_atlas_products(t1: sitk.Image) -> dict:
    brain = atlas_mask(t1)
    moving = downsample(t1, REGISTRATION_SPACING_MM)
    moving_brain = sitk.Cast(downsample(brain, REGISTRATION_SPACING_MM) >= 0.5, sitk.sitkUInt8)
    radius = int(round(MOVING_MASK_MARGIN_MM / REGISTRATION_SPACING_MM))
    return {"brain": brain, "moving": moving, "moving_brain": moving_brain,
            "moving_mask": sitk.BinaryDilate(moving_brain, [radius] * 3)}


@functools.lru_cache(maxsize=1)
def atlas_products() -> AtlasProducts:
    """The atlas products, computed once per process and kept in ``io.resources.user_cache_dir()`` (keyed by the
    atlas files' sha256 and the settings): loading them takes about 0.1 s instead of 1 s. A cache that cannot be
    read or written is recomputed or skipped, never an error."""
    from ..io.imageio import write_image
    t1 = sitk.ReadImage(str(resource_path("Atlas", ATLAS_FILES["t1"])), sitk.sitkFloat32)
    folder = user_cache_dir() / f"atlas-{_atlas_key()}"
    try:
        products = {name: sitk.ReadImage(str(folder / f"{name}.nrrd")) for name in AtlasProducts.NAMES}
    except (OSError, RuntimeError):
        products = _compute_atlas_products(t1)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            for name, image in products.items():
                write_image(image, folder / f"{name}.nrrd")
        except (OSError, RuntimeError, ValueError):
            pass  # a read-only or full cache folder: recomputed next time
    return AtlasProducts(t1, **products)


def foreground_mask(image: sitk.Image) -> sitk.Image:
    """Rough head (or skull-stripped brain) mask: Otsu threshold, largest component, holes filled."""
    smooth = sitk.SmoothingRecursiveGaussian(sitk.Cast(image, sitk.sitkFloat32), 2.0 * max(image.GetSpacing()) / 2)
    array = sitk.GetArrayViewFromImage(smooth)
    positive = array[array > 0]
    if positive.size == 0:
        raise ValueError("The pre-contrast image has no positive voxels, so no head or brain can be found.")
    # Otsu on the intensities up to the 99th percentile (ignores bright outliers such as fat or vessels)
    high = float(np.percentile(positive, 99))
    clipped = sitk.Clamp(smooth, sitk.sitkFloat32, 0.0, high)
    mask = sitk.OtsuThreshold(clipped, 0, 1, 128)
    # holes can be open to the outside through dark CSF/skull in 3D; fill slice by slice too
    mask = sitk.BinaryMorphologicalClosing(mask, [2, 2, 2])
    components = sitk.RelabelComponent(sitk.ConnectedComponent(mask), sortByObjectSize=True)
    mask = components == 1
    mask = sitk.BinaryFillhole(mask)
    return sitk.Cast(mask, sitk.sitkUInt8)


def _physical_points(mask: sitk.Image) -> np.ndarray:
    idx = np.argwhere(sitk.GetArrayViewFromImage(mask) > 0)[:, ::-1].astype(float)
    direction = np.asarray(mask.GetDirection()).reshape(3, 3)
    return idx * np.asarray(mask.GetSpacing()) @ direction.T + np.asarray(mask.GetOrigin())


def initial_translation(head: sitk.Image, atlas_brain: sitk.Image, skull_stripped: bool) -> np.ndarray:
    """Translation (mm, scan point -> atlas point) that roughly places the atlas brain in the scan."""
    scan = _physical_points(head)
    atlas = _physical_points(atlas_brain)
    if skull_stripped:
        return atlas.mean(axis=0) - scan.mean(axis=0)
    # LPS: superior is +z. Place the atlas top SCALP_SKULL_MM below the head's top; centre the
    # cranium slab (the 70 mm below the brain's top) in x and y.
    atlas_top = np.percentile(atlas[:, 2], 99.9)
    head_top = np.percentile(scan[:, 2], 99.9)
    brain_top = head_top - SCALP_SKULL_MM
    slab = scan[(scan[:, 2] < brain_top) & (scan[:, 2] > brain_top - 70.0)]
    atlas_slab = atlas[(atlas[:, 2] < atlas_top) & (atlas[:, 2] > atlas_top - 70.0)]
    if len(slab) < 10:
        slab = scan
    shift = np.empty(3)
    shift[:2] = atlas_slab[:, :2].mean(axis=0) - slab[:, :2].mean(axis=0)
    shift[2] = atlas_top - brain_top
    return shift


def brain_mask(pre_contrast: sitk.Image, backend: str = "auto", threads: int | None = None,
               skull_stripped: bool | None = None) -> BrainMaskResult:
    """Brain mask of a pre-contrast T1w scan (3D, any spacing); see the module docstring.

    skull_stripped: None detects it from the foreground volume; True/False forces it.
    """
    check_3d(pre_contrast, "pre-contrast image")
    atlas = atlas_products()
    fixed = downsample(pre_contrast, REGISTRATION_SPACING_MM)
    head = foreground_mask(fixed)
    volume_ml = float(sitk.GetArrayViewFromImage(head).sum()) * REGISTRATION_SPACING_MM ** 3 / 1000.0
    if skull_stripped is None:
        skull_stripped = volume_ml < SKULL_STRIPPED_MAX_ML
    fixed_mask = sitk.BinaryDilate(head, [2, 2, 2])
    shift = initial_translation(head, atlas.moving_brain, skull_stripped)
    result = register(fixed, atlas.moving, AFFINE_ATLAS_PARAMETER_FILE, backend=backend, fixed_mask=fixed_mask,
                      moving_mask=atlas.moving_mask, initial_translation=shift, threads=threads,
                      interpolator=sitk.sitkLinear)
    prob = sitk.Resample(sitk.Cast(atlas.brain, sitk.sitkFloat32), pre_contrast, result.transform,
                         sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    mask = prob >= 0.5
    atlas_only = sitk.Cast(mask, sitk.sitkUInt8)
    head_full = sitk.Resample(head, pre_contrast, sitk.Transform(3, sitk.sitkIdentity), sitk.sitkNearestNeighbor, 0)
    if skull_stripped:
        # the input's own non-zero region is the brain boundary; the registered atlas (dilated by
        # SKULL_STRIPPED_ATLAS_MARGIN_MM) removes what a rough skull stripping left outside the brain
        nonzero = sitk.BinaryFillhole(sitk.Cast(sitk.Abs(sitk.Cast(pre_contrast, sitk.sitkFloat32)) > 0, sitk.sitkUInt8))
        margin = [max(1, int(round(SKULL_STRIPPED_ATLAS_MARGIN_MM / s))) for s in pre_contrast.GetSpacing()]
        mask = sitk.And(nonzero, sitk.BinaryDilate(sitk.Cast(mask, sitk.sitkUInt8), margin))
    atlas_on_scan = sitk.Resample(atlas.t1, pre_contrast, result.transform, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    return BrainMaskResult(sitk.Cast(mask, sitk.sitkUInt8), atlas_only, sitk.Cast(head_full, sitk.sitkUInt8), result,
                           bool(skull_stripped), atlas_on_scan, tuple(float(v) for v in shift))


def dice(a: sitk.Image | np.ndarray, b: sitk.Image | np.ndarray) -> float:
    """Dice overlap of two binary masks (images or arrays) on one grid; 1 when both are empty."""
    from ..metrics.quality import dice as dice_of_arrays
    a = (sitk.GetArrayViewFromImage(a) if isinstance(a, sitk.Image) else np.asarray(a)) > 0
    b = (sitk.GetArrayViewFromImage(b) if isinstance(b, sitk.Image) else np.asarray(b)) > 0
    return dice_of_arrays(a, b) if a.any() or b.any() else 1.0
