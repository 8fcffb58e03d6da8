"""Patches, augmentation and the loss of paper 001, section 3.4 / section 4 (training details).

- Patch sampler: cubic patches (96^3 by default) from a :class:`training.data.TrainingCase`; with
  probability ``enhancing_fraction`` the patch is centred on a random contrast-enhancing voxel
  (p_SD > 0.5 in the brain), otherwise on a random brain voxel; the window is shifted to lie inside
  the volume.
- Augmentation: random flips of each axis and a random multiple of 90 degrees about a random axis,
  applied identically to every channel (inputs, target, masks).
- Loss: sum_j (b_j + lambda1 + lambda2 p_j) Huber_eps(y^_j, y_j) over voxels at least ``margin`` voxels
  from the patch border, divided by the number of those voxels (and averaged over the batch);
  (lambda1, lambda2) = (0.01, 1), eps = 0.1, margin 8.
"""

from __future__ import annotations

import numpy as np
import torch

from ..model.network import LOW_DOSE_INPUTS

LAMBDA1 = 0.01
LAMBDA2 = 1.0
HUBER_EPSILON = 0.1
LOSS_MARGIN = 8
ENHANCING_THRESHOLD = 0.5
"""Voxels with p_SD above this count as contrast-enhancing (patch centres, lesion fallback)."""
INPUT_CHANNELS = LOW_DOSE_INPUTS
"""The T1w input channels (a model's optional sequences follow them, ``ModelConfig.inputs``)."""
TARGET_CHANNELS = ("y", "p", "b")


def check_patch(patch_size: int, shape, case_id: str = "") -> None:
    """ValueError when the cubic patch does not fit into a volume of ``shape``."""
    if int(patch_size) < 1:
        raise ValueError(f"patch size must be a positive number of voxels, got {patch_size}")
    if any(int(patch_size) > n for n in shape):
        raise ValueError(f"patch size {patch_size} is larger than the volume {tuple(shape)} of case {case_id} "
                         f"(voxels, k j i); use --patch {min(shape)} or smaller, or larger images")


def weight_map(b, p, lambda1: float = LAMBDA1, lambda2: float = LAMBDA2):
    """Voxel weights b + lambda1 + lambda2 p (same type and shape as the inputs)."""
    return b + lambda1 + lambda2 * p


def weighted_huber_loss(prediction: torch.Tensor, target: torch.Tensor, b: torch.Tensor, p: torch.Tensor,
                        margin: int = LOSS_MARGIN, epsilon: float = HUBER_EPSILON, lambda1: float = LAMBDA1,
                        lambda2: float = LAMBDA2) -> torch.Tensor:
    """Mean over the batch and the interior voxels (``margin`` from every border) of the weighted Huber loss.

    All tensors [B, 1, D, H, W]. Huber: 0.5 r^2 for |r| <= eps, eps (|r| - 0.5 eps) beyond (torch's).
    """
    if prediction.shape != target.shape:
        raise ValueError(f"prediction shape {tuple(prediction.shape)} != target shape {tuple(target.shape)}")
    if margin > 0:
        if any(2 * margin >= n for n in prediction.shape[2:]):
            raise ValueError(f"the loss margin of {margin} voxels leaves nothing of a patch of "
                             f"{tuple(prediction.shape[2:])}; use patches larger than {2 * margin} voxels")
        inner = (slice(None), slice(None)) + (slice(margin, -margin),) * 3
        prediction, target, b, p = prediction[inner], target[inner], b[inner], p[inner]
    huber = torch.nn.functional.huber_loss(prediction, target, reduction="none", delta=epsilon)
    return (weight_map(b, p, lambda1, lambda2) * huber).mean()


def sample_patch(case, patch_size: int, rng: np.random.Generator, enhancing_fraction: float = 0.5,
                 with_lesions: bool = False) -> dict:
    """{name: float32 array [D, H, W]} of every channel in INPUT_CHANNELS + TARGET_CHANNELS (and "lesions"
    when asked for and the case has them), one random patch."""
    shape = case.shape
    check_patch(patch_size, shape, case.case_id)
    centre = patch_centre(case, rng, enhancing_fraction)
    start = [int(np.clip(c - patch_size // 2, 0, n - patch_size)) for c, n in zip(centre, shape)]
    return patch_at(case, start, patch_size, with_lesions)


def patch_centre(case, rng: np.random.Generator, enhancing_fraction: float):
    """A patch centre (k, j, i): with probability ``enhancing_fraction`` a random contrast-enhancing brain voxel
    (p > ENHANCING_THRESHOLD), otherwise (or when there is none) a random brain voxel, else any voxel."""
    centre = None
    if rng.random() < enhancing_fraction:
        centre = random_voxel(rng, (case.p > ENHANCING_THRESHOLD) & (case.b > 0))
    if centre is None:
        centre = random_voxel(rng, case.b > 0)
    return centre if centre is not None else [int(rng.integers(0, n)) for n in case.shape]


def patch_at(case, start, patch_size: int, with_lesions: bool = False) -> dict:
    """The patch whose first voxel (k, j, i) is ``start``."""
    window = tuple(slice(s, s + patch_size) for s in start)
    names = INPUT_CHANNELS + TARGET_CHANNELS
    if with_lesions and case.lesions is not None:
        names += ("lesions",)
    return {name: np.ascontiguousarray(getattr(case, name)[window], dtype=np.float32) for name in names}


def random_voxel(rng: np.random.Generator, mask: np.ndarray):
    flat = np.flatnonzero(mask)
    if flat.size == 0:
        return None
    return np.unravel_index(int(flat[rng.integers(0, flat.size)]), mask.shape)


def augment(patch: dict, rng: np.random.Generator) -> dict:
    """Random axis flips and a random 90-degree rotation (k in 0..3 about a random axis), the same for every
    channel of ``patch`` ({name: array [D, H, W]}, cubic)."""
    flips = [axis for axis in range(3) if rng.random() < 0.5]
    k = int(rng.integers(0, 4))
    plane = [(1, 2), (0, 2), (0, 1)][int(rng.integers(0, 3))]
    out = {}
    for name, array in patch.items():
        if flips:
            array = np.flip(array, axis=flips)
        out[name] = np.ascontiguousarray(np.rot90(array, k, axes=plane))
    return out


def collate(patches: list[dict], conditions: list, inputs=INPUT_CHANNELS) -> dict:
    """Batch tensors: inputs [B, C, D, H, W] of the channels ``inputs`` (``ModelConfig.inputs``), y/p/b
    [B, 1, D, H, W], raw conditions [B, 4] (float32)."""
    inputs = torch.from_numpy(np.stack([np.stack([p[c] for c in inputs]) for p in patches]))
    batch = {"inputs": inputs, "conditions": torch.tensor(np.asarray(conditions, dtype=np.float32))}
    for name in TARGET_CHANNELS:
        batch[name] = torch.from_numpy(np.stack([p[name][None] for p in patches]))
    return batch
