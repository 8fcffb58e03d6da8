"""Inference of the conditional U-Net (paper 001, section 3.4): whole volume or Gaussian-blended tiles.

Tiling: tiles of edge ``tile`` voxels start at multiples of ``model.config.alignment`` (so every tile sees
the same stride-2 sampling grids as the whole volume) and overlap by ``overlap`` voxels. Each tile's
prediction is weighted by a Gaussian (sigma = tile / 8) centred on the tile, times zero in a band of
``overlap // 2`` voxels along every tile face that lies inside the volume; the weighted predictions are
averaged. Every voxel thus comes from tile interiors at least ``overlap // 2`` voxels from a cut. When that
margin is at least :func:`model.receptive_field_radius` (150 voxels for the paper configuration, 18 for
``base_features=4, scales=2, blocks_per_scale=1``), tiled and whole-volume inference agree up to floating
point rounding. With smaller margins (the default overlap is tile // 4) the difference is small but not
zero: the far receptive field carries little weight. Memory stays bounded by the tile size: only one
tile is in the network at a time, plus one float32 accumulator of the volume's size (the summed weights are
products of 1D sums) and each tile's input copied from the arrays. ``tile="auto"`` (the
default) runs the whole volume when its forward pass (:func:`network_memory_bytes`) fits into a share of the
free memory, else the largest tile that fits (:func:`auto_tile`).

Memory format: on the CPU and CUDA the network runs in channels_last_3d, fp32 included (:func:`channels_last`).
Measured on a 2-core Xeon for the shipped model on 155x240x240 (``benchmarks/bench_inference.py``), it was the
fastest fp32 option; ONNX Runtime, OpenVINO and ``torch.compile`` were not faster, so PyTorch stays the runtime.

Precision: "fp32", "bf16" (autocast, CPU or CUDA) or "fp16" (autocast, CUDA only); with reduced
precision the model runs in channels-last-3d memory format. bf16 changes the contrast signal by about
0.3-1.1 % relative L2 with random weights (see Testing/test_inference.py). bf16 pays off only where the
hardware has it (CUDA, CPUs with AVX512-BF16 or AMX); elsewhere it is emulated and many times slower
(:func:`native_bf16`; a warning says so).
"""

from __future__ import annotations

import contextlib
import math
import warnings

import numpy as np
import SimpleITK as sitk
import torch

from ..io.interrupts import check_interrupted
from ..physics.agents import get_agent
from .region_defaults import FLIPS, PRECISION_NAMES
from .uncertainty import RunningMoments
from ..physics.lowdose import check_dose
from ..model.network import ConditionalUNet, input_tensor, model_inputs, network_arrays

PRECISIONS = dict(zip(PRECISION_NAMES, (None, torch.bfloat16, torch.float16)))
GAUSSIAN_SIGMA_SCALE = 0.125
"""Sigma of the blending Gaussian as a fraction of the tile edge (as MONAI's sliding window)."""
BYTES_PER_VOXEL_FEATURE = 40
"""Peak memory of one forward pass, bytes per voxel and per finest-scale feature (inference: blocks in place,
fusions in slabs); measured 27-34 on the CPU (``benchmarks/bench_inference.py``), rounded up for margin."""
FIXED_NETWORK_BYTES = 256 << 20
"""Memory of a forward pass that does not grow with the volume (weights, oneDNN buffers), with margin."""
MEMORY_FRACTION = 0.6
"""Share of the free memory (RAM, or the GPU's) that ``tile="auto"`` lets one forward pass take."""


def _mps_works() -> bool:
    """True when MPS runs the 3D operations of the network (conv3d, trilinear interpolation)."""
    try:
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            return False
        x = torch.ones(1, 2, 4, 4, 4, device="mps")
        y = torch.nn.functional.conv3d(x, torch.ones(2, 2, 3, 3, 3, device="mps"), padding=1)
        y = torch.nn.functional.conv3d(y, torch.ones(2, 1, 5, 5, 5, device="mps"), stride=2, padding=2, groups=2)
        y = torch.nn.functional.interpolate(y, size=(4, 4, 4), mode="trilinear", align_corners=False)
        return bool(torch.isfinite(y.cpu()).all())
    except Exception:  # any unsupported operator
        return False


def choose_device(requested: str | torch.device = "auto") -> torch.device:
    """"auto": CUDA if available, else MPS when every 3D operation works there, else CPU; or the
    requested device ("cpu", "cuda", "cuda:1", "mps"), ValueError when it is not available."""
    if isinstance(requested, torch.device):
        requested = str(requested)
    name = str(requested).strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_works():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown device {requested!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {requested!r} requested but CUDA is not available here; use --device cpu or auto")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"device {requested!r}: only {torch.cuda.device_count()} CUDA device(s); use cuda:0")
    if device.type == "mps" and not _mps_works():
        raise ValueError("device 'mps' requested but MPS is unavailable or lacks 3D operations; use cpu or auto")
    if device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"unsupported device {requested!r}; use auto, cpu, cuda or mps")
    return device


def native_bf16(device: torch.device) -> bool:
    """True when ``device`` computes bf16 in hardware (CUDA with bf16 support; x86 CPUs with AVX512-BF16
    or AMX). Elsewhere bf16 convolutions are emulated and far slower than fp32."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type != "cpu":
        return False
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def _autocast(device: torch.device, precision: str):
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    dtype = PRECISIONS[precision]
    if dtype is None:
        return contextlib.nullcontext()
    if dtype is torch.float16 and device.type != "cuda":
        raise ValueError("fp16 is only supported on CUDA; use bf16 on the CPU")
    return torch.autocast(device_type=device.type, dtype=dtype)


def free_memory_bytes(device: torch.device) -> int:
    """Free memory of ``device`` in bytes: the GPU's (CUDA), else the system's available RAM (Linux
    MemAvailable, elsewhere physical pages; 4 GiB when unknown)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import os
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 4 << 30


def network_memory_bytes(config, shape) -> int:
    """Estimated peak memory (bytes) of one forward pass of a network of ``config`` on a [k, j, i] ``shape``."""
    voxels = math.prod(math.ceil(n / config.alignment) * config.alignment for n in shape)
    return FIXED_NETWORK_BYTES + BYTES_PER_VOXEL_FEATURE * config.features(0) * voxels


def auto_tile(shape, config, device: torch.device, budget_bytes: float | None = None) -> int | None:
    """Tile edge for ``tile="auto"``: None (the whole volume at once) when its forward pass fits into
    ``budget_bytes`` (default :data:`MEMORY_FRACTION` of the free memory), else the largest cubic tile (a
    multiple of the alignment, at least twice it) whose forward pass fits."""
    budget = MEMORY_FRACTION * free_memory_bytes(device) if budget_bytes is None else float(budget_bytes)
    if network_memory_bytes(config, shape) <= budget:
        return None
    per_voxel = BYTES_PER_VOXEL_FEATURE * config.features(0)
    edge = ((max(budget - FIXED_NETWORK_BYTES, 0.0)) / per_voxel) ** (1 / 3)
    return max(2 * config.alignment, int(edge // config.alignment) * config.alignment)


def tile_starts(size: int, tile: int, step: int) -> list[int]:
    """Start indices of tiles of edge ``tile`` covering [0, size) with spacing ``step`` (the last one
    ends at ``size``). ``size``, ``tile`` and ``step`` are multiples of the network's alignment."""
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile, step))
    return starts + [size - tile]


def blend_weights(tile: int, start: int, size: int, margin: int) -> np.ndarray:
    """1D blending weights of a tile [start, start + tile) in an axis of ``size`` voxels: a Gaussian
    (sigma tile / 8) times zero within ``margin`` voxels of a cut inside the volume."""
    n = min(tile, size)
    x = np.arange(n, dtype=np.float64)
    w = np.exp(-0.5 * ((x - (n - 1) / 2) / (GAUSSIAN_SIGMA_SCALE * n)) ** 2)
    w = np.maximum(w, 1e-6)
    if start > 0:
        w[:margin] = 0.0
    if start + n < size:
        w[n - margin:] = 0.0
    return w.astype(np.float32)


def channels_last(device: torch.device, precision: str) -> bool:
    """Whether inference runs in channels_last_3d memory format: on the CPU and CUDA always (fp32 included: for the
    shipped model on 155x240x240, 5.2 s and 2.25 GB against 7.3 s and 2.91 GB in the default format, equal to it
    within 3.2e-7 relative, ``benchmarks/bench_inference.py``), elsewhere with reduced precision only."""
    return device.type in ("cpu", "cuda") or precision != "fp32"


def _run(model: ConditionalUNet, x: torch.Tensor, conditions: torch.Tensor, device: torch.device,
         precision: str) -> torch.Tensor:
    x = x.to(device)
    if channels_last(device, precision):
        x = x.contiguous(memory_format=torch.channels_last_3d)
    with _autocast(device, precision):
        y = model(x, conditions.to(device))
    return y.float()[0, 0].cpu()


def predict_contrast(model: ConditionalUNet, z_ld: np.ndarray, x_ld: np.ndarray, s_ld: np.ndarray,
                     conditions: torch.Tensor, tile: int | str | None = "auto", overlap: int | None = None,
                     precision: str = "fp32", device: str | torch.device | None = None, tta: int = 1,
                     memory_budget: float | None = None, moments=None, scale: float = 1.0,
                     sequences: dict | None = None, pre_contrast: np.ndarray | None = None) -> np.ndarray:
    """Network output y^ (noise-normalized contrast signal) [k, j, i] float32 for one volume.

    z_ld, x_ld, s_ld: arrays [k, j, i] (normalized subtraction, registered low dose, local std); sequences:
    {"flair"/"t2": registered, normalized array [k, j, i]} for a model with extra input sequences
    (``ModelConfig.sequences``; ValueError when one it needs is missing, the others are not used);
    pre_contrast: the normalized pre-contrast x_PC [k, j, i], the input of a zero-dose model (whose z_ld, x_ld
    and s_ld may be None);
    conditions: [1, 4] normalized condition vector (``ConditionNormalization.normalize``);
    tile: tile edge in voxels (rounded up to the alignment), None = whole volume, "auto" = the whole volume
    when its forward pass fits into ``memory_budget`` bytes (default: :data:`MEMORY_FRACTION` of the free
    memory), else the largest tile that fits (:func:`auto_tile`); overlap: voxels shared by neighbouring tiles
    (default tile // 4; margins of overlap // 2 are discarded);
    precision: fp32, bf16 or fp16; device: None = the model's device, or anything :func:`choose_device` takes;
    tta: flip test-time augmentation, the mean over the first ``tta`` (1-8) flips of :data:`FLIPS` (1 = none);
    moments: an ``uncertainty.RunningMoments`` that also gets every pass times ``scale`` (an ensemble's passes,
    each member scaled by its gamma).
    """
    if not isinstance(tta, int) or not 1 <= tta <= len(FLIPS):
        raise ValueError(f"test-time augmentation takes 1 to {len(FLIPS)} flips, got {tta!r}")
    if isinstance(tile, str) and tile != "auto":
        raise ValueError(f"tile must be a number of voxels, None (whole volume) or 'auto', got {tile!r}")
    dev = next(model.parameters()).device if device is None else choose_device(device)
    if precision == "bf16" and not native_bf16(dev):
        warnings.warn(f"bf16 is emulated on this {dev.type.upper()} (no AVX512-BF16/AMX or CUDA bf16): much "
                      "slower than fp32; use precision fp32", RuntimeWarning, stacklevel=2)
    if conditions.ndim != 2 or conditions.shape[0] != 1:
        raise ValueError(f"conditions must be [1, {model.config.condition_dim}], got {tuple(conditions.shape)}")
    arrays = network_arrays(*model_inputs(model.config, z_ld, x_ld, s_ld, sequences, pre_contrast))
    shape = arrays[0].shape
    layout = channels_last(dev, precision)
    was_training = model.training
    model.eval().to(dev)
    if layout:
        model.to(memory_format=torch.channels_last_3d)
    if tile == "auto":
        tile = auto_tile(shape, model.config, dev, memory_budget)
    try:
        with torch.inference_mode():
            own = RunningMoments(spread=False)
            for axes in FLIPS[:tta]:
                views = [np.flip(a, axes) if axes else a for a in arrays]  # views: each tile copies its part
                if tile is None:
                    y = _run(model, input_tensor(*views, channels_last=layout), conditions, dev, precision)
                else:
                    y = torch.from_numpy(_predict_tiled(model, views, conditions, tile, overlap, precision, dev,
                                                        layout))
                y = (torch.flip(y, list(axes)) if axes else y).numpy()
                own.add(y)
                if moments is not None:
                    moments.add(y * np.float32(scale) if scale != 1.0 else y)
            return own.mean
    finally:
        model.to(memory_format=torch.contiguous_format)
        model.train(was_training)


def _predict_tiled(model, arrays, conditions, tile, overlap, precision, dev, layout: bool) -> np.ndarray:
    """Gaussian-blended tiles (module docstring) over the input ``arrays`` [k, j, i]; each tile's input is
    copied from the arrays (zero beyond them, up to the alignment), so no volume-sized input tensor exists."""
    shape = arrays[0].shape
    align = model.config.alignment
    tile = int(tile)
    if tile < 2 * align:
        raise ValueError(f"tile size {tile} is too small; use at least {2 * align} voxels")
    tile = math.ceil(tile / align) * align
    overlap = tile // 4 if overlap is None else int(overlap)
    margin = overlap // 2
    step = (tile - 2 * margin) // align * align
    if overlap < 0 or step < align:
        raise ValueError(f"overlap {overlap} leaves no tile interior for tile size {tile}; use an overlap of at most "
                         f"{tile - align} voxels")
    padded = [n + (-n) % align for n in shape]
    total = torch.zeros(padded, dtype=torch.float32)
    starts = [tile_starts(n, tile, step) for n in padded]
    # the tiles form a grid and their weights are products of 1D weights, so the summed weight is the product
    # of the 1D sums: no volume-sized weight accumulator
    sums = [torch.zeros(n, dtype=torch.float64) for n in padded]
    for axis, (axis_starts, n) in enumerate(zip(starts, padded)):
        for s in axis_starts:
            sums[axis][s:s + min(tile, n)] += torch.from_numpy(blend_weights(tile, s, n, margin)).double()
    if not all(bool((w > 0).all()) for w in sums):
        raise RuntimeError("tiling left voxels uncovered; this is a bug in the tiler")
    for a in starts[0]:
        for b in starts[1]:
            for c in starts[2]:
                sl = tuple(slice(s, s + min(tile, n)) for s, n in zip((a, b, c), padded))
                region = tuple(slice(r.start, min(r.stop, n)) for r, n in zip(sl, shape))
                check_interrupted()  # Ctrl-C stops between tiles (``io.interrupts``)
                x = input_tensor(*arrays, channels_last=layout, region=region,
                                 size=tuple(r.stop - r.start for r in sl))
                y = _run(model, x, conditions, dev, precision)
                w = [torch.from_numpy(blend_weights(tile, s, n, margin)) for s, n in zip((a, b, c), padded)]
                y *= w[0][:, None, None] * w[1][None, :, None] * w[2][None, None, :]
                total[sl] += y
    plane = (1.0 / (sums[1][:, None] * sums[2][None, :])).float()
    inverse_k = (1.0 / sums[0]).float()
    for k in range(shape[0]):  # one plane at a time: no volume-sized temporary
        total[k] *= plane * inverse_k[k]
    return total[:shape[0], :shape[1], :shape[2]].numpy()


def _array(image: sitk.Image) -> np.ndarray:
    """The voxels [k, j, i] as float32: a read-only view of a float32 image (no copy; the image must outlive
    it), else a converted copy."""
    if image.GetPixelID() == sitk.sitkFloat32:
        view = sitk.GetArrayViewFromImage(image)
        view.flags.writeable = False
        return view
    return sitk.GetArrayFromImage(image).astype(np.float32)


def revert_normalization(y_hat: np.ndarray, s_ld: np.ndarray, gamma: float, sigma_ld: float) -> np.ndarray:
    """The network's noise-normalized output back in subtraction units (float32, same shape):
    y~ = gamma s_LD y^ / sigma_LD. Eq. 1 scales the normalized subtraction by sigma_LD, z = (z~ - m) / s sigma_LD,
    so its inverse divides by sigma_LD; paper 001 writes y~ = gamma s_LD y^ with that factor left implicit.
    gamma: the model's mean <b, s_SD> / <b, s_LD>; s_ld: local noise std of the low-dose subtraction."""
    if not sigma_ld > 0:
        raise ValueError(f"the low-dose noise sigma must be positive, got {sigma_ld}")
    return (np.float32(gamma / sigma_ld) * s_ld * y_hat).astype(np.float32)


class VoxelSizeWarning(UserWarning):
    """The working grid's voxels differ from those the model was trained on."""


def check_voxel_size(loaded, spacing) -> str | None:
    """Warn (and return the message) when the working-grid ``spacing`` (mm) differs by more than a factor 1.5
    from the model's training voxel size (metadata ``voxel_size_mm``): the network's features are in voxels."""
    expected = loaded.metadata.get("voxel_size_mm")
    if not expected:
        return None
    worst = max(max(s / expected, expected / s) for s in spacing)
    if worst <= 1.5:
        return None
    message = (f"The images have {'x'.join(f'{s:.2g}' for s in spacing)} mm voxels; the model was trained on "
               f"{expected:g} mm voxels and can miss or misjudge enhancement at other sizes. Use scans with "
               f"voxels near {expected:g} mm (or resample them) for results like the model card's.")
    warnings.warn(message, VoxelSizeWarning, stacklevel=3)
    return message


def model_contrast_signal(loaded, z_ld: np.ndarray, x_ld: np.ndarray, s_ld: np.ndarray, noise_sigma_ld: float,
                          dose: float, field_strength: float, agent: str, tile: int | str | None = "auto",
                          overlap: int | None = None, precision: str = "fp32", device: str | torch.device | None = None,
                          fixed_conditions: dict | None = None, tta: int = 1,
                          tissue: np.ndarray | None = None, uncertainty: bool = False, sequences: dict | None = None,
                          pre_contrast: np.ndarray | None = None):
    """Contrast signal y~ = gamma s_LD y^ / sigma_LD (a zero-dose model: y~ = gamma y^) [k, j, i] float32 on the
    working grid, normalized units: the
    mean over the passes (every ensemble member on every flip, ``uncertainty``); with ``uncertainty=True`` the pair
    (y~, its per-voxel standard deviation over the passes, same units and shape).

    z_ld, x_ld, s_ld: normalized subtraction, registered low dose and local noise std [k, j, i] (working grid);
    noise_sigma_ld: noise sigma of the low-dose subtraction (normalized units); dose: fraction of the standard
    dose in (0, 1]; field_strength: tesla; agent: ``agents.get_agent`` name (its relaxivity at field_strength is a
    condition); fixed_conditions: {"dose", "field_strength", "relaxivity", "noise_sigma"} replacing the case's
    conditions (fixed-condition ablation); tissue: boolean mask [k, j, i] (``inference.tissue``) outside which
    the contrast signal is exactly 0. tile, overlap, precision, device, tta, sequences, pre_contrast: as
    :func:`predict_contrast`. A zero-dose model (``ModelConfig.low_dose`` False) reads only ``pre_contrast`` and
    the sequences; its dose and noise conditions are ``network.ZERO_DOSE_CONDITIONS``.
    """
    from ..model.network import ZERO_DOSE_CONDITIONS
    zero_dose = not loaded.config.low_dose
    conditions = {"dose": dose if zero_dose else check_dose(dose), "field_strength": field_strength,
                  "relaxivity": get_agent(agent).relaxivity(field_strength),  # checks the field strength range too
                  "noise_sigma": noise_sigma_ld}
    if zero_dose:
        conditions.update(ZERO_DOSE_CONDITIONS)
    conditions.update(fixed_conditions or {})
    normalized = loaded.normalization.normalize(conditions["dose"], conditions["field_strength"],
                                                conditions["relaxivity"], conditions["noise_sigma"])
    moments = RunningMoments(spread=uncertainty)
    for network, gamma in loaded.networks():  # each member scaled by its own gamma: y~ = s_LD (gamma y^) / sigma_LD
        predict_contrast(network, z_ld, x_ld, s_ld, normalized, tile=tile, overlap=overlap, precision=precision,
                         device=device, tta=tta, moments=moments, scale=gamma, sequences=sequences,
                         pre_contrast=pre_contrast)
    outputs = [moments.mean] + ([moments.std()] if uncertainty else [])
    if not zero_dose:
        outputs = [revert_normalization(y, s_ld, 1.0, noise_sigma_ld) for y in outputs]
    if tissue is not None:
        for y in outputs:
            y[~np.asarray(tissue, bool)] = 0.0
    return tuple(outputs) if uncertainty else outputs[0]


def synthesize(loaded, preprocess_result, dose: float, field_strength: float, agent: str,
               tile: int | str | None = "auto", overlap: int | None = None, precision: str = "fp32",
               device: str | torch.device | None = None, intensity: str = "input", tta: int = 1
               ) -> dict[str, sitk.Image]:
    """Synthetic images from a preprocessed case (``preprocess.preprocess``) and a loaded model.

    dose: low-dose fraction of the standard dose in (0, 1] (0 with a zero-dose model, whose case has no low dose:
    ``preprocess(pre, None)``); field_strength: tesla; agent: contrast agent
    name (``agents.get_agent``; its relaxivity at field_strength is a condition). Returns images on the
    pre-contrast grid (``pipeline.CNN_OUTPUT_NAMES``): ``contrast_signal`` y~ (:func:`model_contrast_signal`),
    ``synthetic_standard_dose`` x_PC + y~ and ``beyond_standard_dose`` x_LD + y~ (not for a zero-dose case).
    intensity "input": in the pre-contrast scan's input units (normalized values times the pre-contrast's 95th brain percentile,
    ``preprocess_result.pre_percentile``); "normalized": in the preprocessing's units (that percentile = 1).
    The contrast signal is 0 outside the tissue (``inference.tissue``): there, in input units, the synthetic
    standard dose is the pre-contrast input exactly. tta: flip test-time augmentation (:func:`predict_contrast`).
    With two or more passes (``tta`` flips of every ensemble member, ``uncertainty.passes``) also ``uncertainty``:
    the contrast signal's standard deviation over the passes, in the same units, 0 outside the tissue.
    """
    from ..io.regrid import back_to_grid
    from ..validation.arguments import zero_dose_prediction
    low = preprocess_result.low_dose
    zero_dose = zero_dose_prediction(loaded.config, low is not None, dose)
    dose = 0.0 if zero_dose else check_dose(dose)
    if intensity not in ("input", "normalized"):
        raise ValueError(f"intensity must be 'input' or 'normalized', got {intensity!r}")
    get_agent(agent).relaxivity(field_strength)  # unknown agents and field strengths fail before the CNN
    check_voxel_size(loaded, preprocess_result.pre_contrast.GetSpacing())
    from .tissue import tissue_mask
    reference = preprocess_result.pre_contrast  # working grid
    tissue_image = tissue_mask(reference, preprocess_result.brain_mask)
    tissue = sitk.GetArrayFromImage(tissue_image) > 0
    from .uncertainty import passes
    spread = passes(loaded, tta) > 1
    low_inputs = (None, None, None) if zero_dose else (_array(low.normalized_subtraction), _array(low.registered),
                                                       _array(low.local_std))
    predicted = model_contrast_signal(loaded, *low_inputs, preprocess_result.noise_sigma_ld, dose, field_strength,
                                      agent, tile=tile, overlap=overlap, precision=precision, device=device, tta=tta,
                                      tissue=tissue, uncertainty=spread,
                                      sequences={k: _array(v) for k, v in preprocess_result.sequences.items()},
                                      pre_contrast=_array(reference) if zero_dose else None)
    y_tilde, u_tilde = predicted if spread else (predicted, None)
    scale = float(preprocess_result.pre_percentile) if intensity == "input" else 1.0
    source = preprocess_result.pre_contrast_input

    def on_input_grid(array: np.ndarray) -> np.ndarray:
        image = sitk.GetImageFromArray((array * scale).astype(np.float32))
        image.CopyInformation(reference)
        return sitk.GetArrayFromImage(back_to_grid(image, source, sitk.sitkBSpline))
    tissue_in = sitk.GetArrayFromImage(back_to_grid(tissue_image, source, sitk.sitkNearestNeighbor)) > 0
    contrast = np.where(tissue_in, on_input_grid(y_tilde), np.float32(0)).astype(np.float32)
    pre_in = (sitk.GetArrayFromImage(sitk.Cast(source, sitk.sitkFloat32)) if intensity == "input"
              else on_input_grid(_array(reference)))
    arrays = {"synthetic_standard_dose": pre_in + contrast}
    if not zero_dose:
        arrays["beyond_standard_dose"] = on_input_grid(_array(low.registered)) + contrast
    arrays["contrast_signal"] = contrast
    if u_tilde is not None:  # a standard deviation: B-spline overshoot below 0 clipped
        arrays["uncertainty"] = np.where(tissue_in, np.maximum(on_input_grid(u_tilde), 0), np.float32(0))
    out = {}
    for name, array in arrays.items():
        image = sitk.GetImageFromArray(array.astype(np.float32))
        image.CopyInformation(source)
        out[name] = image
    return out


def lesion_metrics(labels: sitk.Image, images: dict[str, sitk.Image], pre_contrast: sitk.Image,
                   brain_mask: sitk.Image, names: dict | None = None) -> list[dict]:
    """One row per lesion label > 0: volume (mm^3) and CNR, LBR and CEP (paper 002) of each image in ``images``
    (name -> image on the grid of ``labels``), with the healthy brain = ``brain_mask`` minus all lesions;
    ``names``: {str(label): lesion name} (default "lesion <label>")."""
    from ..metrics import quality as metrics
    lab = sitk.GetArrayFromImage(labels)
    brain = sitk.GetArrayFromImage(brain_mask) > 0
    healthy = brain & (lab == 0)
    pre = sitk.GetArrayFromImage(pre_contrast)
    arrays = {name: sitk.GetArrayFromImage(image) for name, image in images.items()}
    rows = []
    for label in (int(v) for v in np.unique(lab[lab > 0])):
        lesion = lab == label
        row = {"lesion": (names or {}).get(str(label), f"lesion {label}"), "label": label,
               "volume_mm3": float(lesion.sum() * np.prod(labels.GetSpacing()))}
        for name, array in arrays.items():
            row[f"cnr_{name}"] = metrics.contrast_to_noise_ratio(array, lesion, healthy | lesion)
            row[f"lbr_{name}"] = metrics.lesion_to_brain_ratio(array, lesion, healthy | lesion)
            row[f"cep_{name}"] = metrics.contrast_enhancement_percentage(array, pre, lesion)
        rows.append(row)
    return rows
