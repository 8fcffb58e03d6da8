"""The conditional U-Net of paper 001 (section 3.3 and supplementary "CNN architecture details").

Inputs: 3 channels (z_LD normalized subtraction, x_LD registered low-dose, s_LD local std), then one channel per
optional sequence of ``ModelConfig.sequences`` (registered FLAIR, T2; papers 002/003), all in the
pre-contrast's normalized intensity units (each sequence divided by its own 95th brain percentile), shape
[B, C, D, H, W] (D, H, W = k, j, i of the image arrays; C = ``ModelConfig.in_channels``).
Condition vector c = (dose, field_strength, relaxivity, noise_sigma), normalized by
:class:`ConditionNormalization`, shape [B, 4]. Output y^ (noise-normalized contrast signal), [B, 1, D, H, W],
non-negative (ReLU).

Architecture (paper configuration = defaults of :class:`ModelConfig`): 4 scales, 32 features at the finest
scale, doubling per scale; a 3x3x3 stem; at each scale two conditional residual blocks (CRBs) before
downsampling and two after upsampling (the coarsest scale has two plus two); downsampling by a fixed
binomial 5x5x5 blur (Zhang 2019) with stride 2; upsampling trilinear followed by the gated fusion block
f = sigmoid(W~1 [fu;fs]) * W1 fu + sigmoid(W~2 [fu;fs]) * W2 fs (1x1x1 convolutions); SiLU non-linearities,
no normalization layers, ReLU at the output. Under reduced-precision autocast the stem and the
output convolution stay in fp32 (cheap; about 20 % less bf16 error). Embedding: two-layer MLP of c to ``embedding_dim``; each CRB
adds a linear projection of SiLU(e) as a per-channel bias between its two convolutions (Ho et al. 2020).

Memory: the 1x1x1 convolutions of the fusion that act on fu (W1 and the fu part of W~1, W~2) commute with
trilinear upsampling (interpolation weights sum to 1), so they run at the coarse scale before upsampling
(``fuse_at_coarse_scale=True``, the default): same weights, same output up to rounding, much less memory.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..io.cases import SEQUENCES  # noqa: F401  (re-exported: the optional input sequences)

CONDITION_NAMES = ("dose", "field_strength", "relaxivity", "noise_sigma")
"""Order of the entries of the condition vector (dose: fraction of standard dose; field strength: tesla;
relaxivity: r1 of the agent at that field strength, L/(mmol s); noise_sigma: of the low-dose subtraction,
normalized intensity units)."""

LOW_DOSE_INPUTS = ("z_ld", "x_ld", "s_ld")
"""The network's first input channels: normalized subtraction z_LD, registered low dose x_LD, local std s_LD."""
ZERO_DOSE_INPUTS = ("x_pc",)
"""The first input channel of a zero-dose model (``ModelConfig.low_dose`` False): the normalized pre-contrast x_PC."""
ZERO_DOSE_CONDITIONS = {"dose": 0.0, "noise_sigma": 0.0}
"""The conditions of a zero-dose model that have no scan to come from (no low dose): constants in training and
inference; field strength and relaxivity remain the case's."""

BINOMIAL_5 = (1.0, 4.0, 6.0, 4.0, 1.0)
FUSION_SLAB_VOXELS = 1 << 21
"""At inference, gated fusions run in slabs of about this many voxels (``GatedFusion``)."""


@dataclass(frozen=True)
class ModelConfig:
    """Network size and inputs. Defaults are the paper's configuration (18.1 M parameters, T1w inputs only).

    sequences: optional input sequences (keys of :data:`SEQUENCES`, in that order), each one more input channel;
    low_dose: False for a zero-dose model (papers 002-004): no low-dose input, the normalized pre-contrast x_PC
    (:data:`ZERO_DOSE_INPUTS`) instead, and the output is the contrast signal itself (normalized units);
    in_channels: len(inputs) (derived when None)."""

    in_channels: int | None = None
    base_features: int = 32
    scales: int = 4
    blocks_per_scale: int = 2
    embedding_dim: int = 128
    condition_dim: int = 4
    sequences: tuple[str, ...] = ()
    low_dose: bool = True

    def __post_init__(self):
        if not isinstance(self.low_dose, bool):
            raise ValueError(f"ModelConfig.low_dose must be True or False, got {self.low_dose!r}")
        sequences = tuple(self.sequences or ())
        unknown = [name for name in sequences if name not in SEQUENCES]
        if unknown or len(set(sequences)) != len(sequences):
            raise ValueError(f"model input sequences {list(sequences)}: use each of {', '.join(SEQUENCES)} at most "
                             "once")
        sequences = tuple(name for name in SEQUENCES if name in sequences)  # one order for every model
        object.__setattr__(self, "sequences", sequences)
        if self.in_channels is None:
            object.__setattr__(self, "in_channels", len(self.inputs))
        for name in ("in_channels", "base_features", "scales", "blocks_per_scale", "embedding_dim",
                     "condition_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"ModelConfig.{name} must be a positive integer, got {value!r}")
        if self.in_channels != len(self.inputs):
            raise ValueError(f"ModelConfig.in_channels is {self.in_channels}, but the inputs {list(self.inputs)} "
                             f"are {len(self.inputs)} channels")

    @property
    def inputs(self) -> tuple[str, ...]:
        """Names of the input channels in order: LOW_DOSE_INPUTS (ZERO_DOSE_INPUTS), then ``sequences``."""
        return (LOW_DOSE_INPUTS if self.low_dose else ZERO_DOSE_INPUTS) + self.sequences

    def features(self, scale: int) -> int:
        """Feature channels at a scale (0 = finest)."""
        return self.base_features * 2 ** scale

    @property
    def alignment(self) -> int:
        """Spatial sizes are padded to multiples of this (2 ** (scales - 1)) inside the network."""
        return 2 ** (self.scales - 1)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown model configuration fields {sorted(unknown)}; this model file needs a "
                             f"newer GadoReduce")
        kinds = {"sequences": lambda v: tuple(str(x) for x in v), "low_dose": bool}
        return cls(**{k: kinds.get(k, int)(v) for k, v in data.items()})


def sequence_names(names) -> str:
    """'FLAIR and T2' for ("flair", "t2"): sequence keys as users read them."""
    shown = [SEQUENCES.get(name, name) for name in names]
    return " and ".join(shown) if len(shown) <= 2 else ", ".join(shown[:-1]) + " and " + shown[-1]


def choose_sequences(config: ModelConfig, given: dict | None) -> tuple[dict, list[str]]:
    """({key: image} of the ``given`` sequences that the model takes, a note per given one it does not take).
    ValueError naming the sequence the model needs but was not given, and the fix."""
    given = {k: v for k, v in (given or {}).items() if v is not None}
    missing = [name for name in config.sequences if name not in given]
    if missing:
        raise ValueError(f"This model was trained with {sequence_names(config.sequences)} inputs besides the T1w "
                         f"scans and needs the {sequence_names(missing)} image of this case: give it (--"
                         f"{' --'.join(missing)} FILE on the command line, the optional selectors in the module), "
                         "or use a model without extra sequences (the default model).")
    unused = [name for name in given if name not in config.sequences]
    notes = [f"The {sequence_names(unused)} image was given, but this model does not take "
             f"{'it' if len(unused) == 1 else 'them'} as input: not used."] if unused else []
    return {name: given[name] for name in config.sequences}, notes


def model_inputs(config: ModelConfig, z_ld, x_ld, s_ld, sequences: dict | None = None, pre_contrast=None) -> list:
    """The network's input arrays in the order of ``config.inputs``: z_LD, x_LD, s_LD (a zero-dose model: the
    normalized ``pre_contrast`` x_PC instead), then each sequence the model takes from ``sequences`` ({key of SEQUENCES: array [k, j, i]}); :func:`choose_sequences` checks them."""
    sequences, _ = choose_sequences(config, sequences)
    if not config.low_dose:
        if pre_contrast is None:
            raise ValueError("a zero-dose model takes the normalized pre-contrast image (pre_contrast)")
        return [pre_contrast] + [sequences[name] for name in config.sequences]
    return [z_ld, x_ld, s_ld] + [sequences[name] for name in config.sequences]


def receptive_field_radius(config: ModelConfig) -> int:
    """Radius in finest-scale voxels beyond which an input voxel cannot change an output voxel
    (an upper bound, counting every 3x3x3 convolution, blur and interpolation). Tiles whose discarded
    margin is at least this wide reproduce whole-volume inference up to rounding."""
    radius = 1  # stem
    for scale in range(config.scales):
        step = 2 ** scale
        blocks = 2 * config.blocks_per_scale  # before downsampling and after upsampling
        radius += blocks * 2 * step           # two 3x3x3 convolutions per block
        if scale < config.scales - 1:
            radius += 2 * step                # 5x5x5 blur at this scale
            radius += 2 * step                # trilinear interpolation from the next scale (1 coarse voxel)
    return radius + 1  # output convolution


@dataclass
class ConditionNormalization:
    """Affine normalization of the condition vector: (c - mean) / std, per entry of CONDITION_NAMES."""

    mean: tuple[float, ...] = (0.25, 2.25, 4.5, 0.03)
    std: tuple[float, ...] = (0.15, 0.75, 2.0, 0.02)

    def __post_init__(self):
        self.mean = tuple(float(v) for v in self.mean)
        self.std = tuple(float(v) for v in self.std)
        if len(self.mean) != len(CONDITION_NAMES) or len(self.std) != len(CONDITION_NAMES):
            raise ValueError(f"condition normalization needs {len(CONDITION_NAMES)} means and stds "
                             f"({', '.join(CONDITION_NAMES)})")
        if not all(np.isfinite(self.mean)) or not all(s > 0 and np.isfinite(s) for s in self.std):
            raise ValueError("condition normalization: means must be finite and stds positive")

    def normalize(self, dose, field_strength, relaxivity, noise_sigma) -> Tensor:
        """Condition vectors [B, 4] (float32) from floats or 1D tensors/arrays of length B (broadcast)."""
        values = [torch.as_tensor(v, dtype=torch.float32).reshape(-1)
                  for v in (dose, field_strength, relaxivity, noise_sigma)]
        batch = max(v.numel() for v in values)
        columns = []
        for name, v, m, s in zip(CONDITION_NAMES, values, self.mean, self.std):
            if v.numel() not in (1, batch):
                raise ValueError(f"condition {name} has {v.numel()} values, expected 1 or {batch}")
            if not torch.isfinite(v).all():
                raise ValueError(f"condition {name} must be finite")
            columns.append((v.expand(batch) - m) / s)
        return torch.stack(columns, dim=1)

    def to_dict(self) -> dict:
        return {"names": list(CONDITION_NAMES), "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, data: dict) -> "ConditionNormalization":
        names = tuple(data.get("names", CONDITION_NAMES))
        if names != CONDITION_NAMES:
            raise ValueError(f"condition names {names} differ from {CONDITION_NAMES}")
        return cls(tuple(data["mean"]), tuple(data["std"]))


def network_arrays(*inputs: np.ndarray) -> list[np.ndarray]:
    """The input arrays [k, j, i] (z_LD, x_LD, s_LD and any sequences, :func:`model_inputs`) as float32 (views
    where they are float32 already), checked: 3D, one shape, finite. ValueError otherwise."""
    arrays = [np.asarray(a, dtype=np.float32) for a in inputs]
    if any(a.ndim != 3 for a in arrays) or len({a.shape for a in arrays}) != 1:
        raise ValueError(f"the network inputs (z_LD, x_LD, s_LD and any sequences) must be 3D arrays of one shape, "
                         f"got {[a.shape for a in arrays]}")
    if not all(np.isfinite(a).all() for a in arrays):
        raise ValueError("network inputs contain NaN or infinite values; check the preprocessing")
    return arrays


def input_tensor(*inputs: np.ndarray, channels_last: bool = False, region: tuple | None = None,
                 size: tuple | None = None) -> Tensor:
    """Network input [1, C, D, H, W] float32 from C arrays [k, j, i] of equal shape, written once into its
    memory (``channels_last``: in channels_last_3d format, as inference runs on the CPU). ``region``: a tuple of
    three slices, the part of the arrays to take (a tile); ``size``: the (D, H, W) of the tensor, zero beyond the
    arrays (a tile reaching into the padding at the volume's end)."""
    if region is None:
        arrays = network_arrays(*inputs)
    else:  # a tile of arrays that the caller has checked with network_arrays
        arrays = [np.asarray(a, np.float32)[region] for a in inputs]
    shape = arrays[0].shape
    size = tuple(size) if size is not None else shape
    inside = tuple(slice(0, n) for n in shape)
    new = torch.zeros if size != shape else torch.empty
    channels = len(arrays)
    out = new((1,) + size + (channels,) if channels_last else (1, channels) + size, dtype=torch.float32)
    target = out.numpy()  # numpy writes the (possibly read-only or flipped) arrays into the tensor's memory
    for c, a in enumerate(arrays):
        target[(0,) + inside + (c,) if channels_last else (0, c) + inside] = a
    return out.permute(0, 4, 1, 2, 3) if channels_last else out


def _conv3(cin: int, cout: int) -> nn.Conv3d:
    return nn.Conv3d(cin, cout, 3, padding=1)


def _conv1(cin: int, cout: int, bias: bool = True) -> nn.Conv3d:
    return nn.Conv3d(cin, cout, 1, bias=bias)


class ConditionalResidualBlock(nn.Module):
    """x + conv(SiLU(conv(SiLU(x)) + P e)); 1x1x1 convolution on the residual path when channels change."""

    def __init__(self, cin: int, cout: int, embedding_dim: int):
        super().__init__()
        self.conv1 = _conv3(cin, cout)
        self.projection = nn.Linear(embedding_dim, cout)
        self.conv2 = _conv3(cout, cout)
        self.skip = _conv1(cin, cout) if cin != cout else nn.Identity()

    def forward(self, x: Tensor, embedding: Tensor) -> Tensor:
        bias = self.projection(F.silu(embedding))[:, :, None, None, None]
        if not torch.is_grad_enabled():  # inference: in place, two volume-sized temporaries fewer
            if x.shape[0] == 1 and self.conv1.bias is not None:  # one case: the condition joins conv1's bias
                h = F.conv3d(F.silu(x), self.conv1.weight, self.conv1.bias + bias.reshape(-1).to(x.dtype), padding=1)
            else:
                h = self.conv1(F.silu(x))
                h += bias.to(h.dtype)
            h = self.conv2(F.silu(h, inplace=True))
            h += self.skip(x)
            return h
        h = self.conv1(F.silu(x))
        h = h + bias.to(h.dtype)
        h = self.conv2(F.silu(h))
        return self.skip(x) + h


class BlurDownsample(nn.Module):
    """Fixed binomial 5x5x5 blur per channel, stride 2 (anti-aliased downsampling, Zhang 2019)."""

    def __init__(self, channels: int):
        super().__init__()
        k = torch.tensor(BINOMIAL_5)
        k = k[:, None, None] * k[None, :, None] * k[None, None, :]
        k = k / k.sum()
        self.channels = channels
        self.register_buffer("kernel", k.expand(channels, 1, 5, 5, 5).contiguous(), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv3d(x, self.kernel.to(x.dtype), stride=2, padding=2, groups=self.channels)


class GatedFusion(nn.Module):
    """f = sigmoid(W~1 [fu;fs]) * W1 fu + sigmoid(W~2 [fu;fs]) * W2 fs, fu = trilinear upsampling of the
    coarse features (``coarse`` channels) to the skip features' size (``fine`` channels, output channels).

    The gates' fu part and W1 are stored as ``up`` (coarse -> 3 * fine: W1, W~1_u, W~2_u), the fs part as
    ``gate_skip`` (W~1_s, W~2_s) and ``w2``. With ``at_coarse_scale`` the ``up`` convolution runs before the
    upsampling (equal by linearity)."""

    def __init__(self, coarse: int, fine: int):
        super().__init__()
        self.fine = fine
        self.up = _conv1(coarse, 3 * fine)
        self.gate_skip = _conv1(fine, 2 * fine, bias=False)
        self.w2 = _conv1(fine, fine)
        self.at_coarse_scale = True

    def forward(self, coarse: Tensor, skip: Tensor) -> Tensor:
        size = skip.shape[2:]
        if (self.at_coarse_scale and not torch.is_grad_enabled()
                and all(n == 2 * m for n, m in zip(size, coarse.shape[2:]))):
            return self._forward_slabs(coarse, skip)
        if self.at_coarse_scale:
            u = F.interpolate(self.up(coarse), size=size, mode="trilinear", align_corners=False)
        else:
            u = self.up(F.interpolate(coarse, size=size, mode="trilinear", align_corners=False))
        w1_fu, gates_u = u[:, :self.fine], u[:, self.fine:]
        gates = gates_u + self.gate_skip(skip)
        g1, g2 = gates[:, :self.fine], gates[:, self.fine:]
        return torch.sigmoid(g1) * w1_fu + torch.sigmoid(g2) * self.w2(skip)

    def _forward_slabs(self, coarse: Tensor, skip: Tensor) -> Tensor:
        """Inference in slabs along D of about :data:`FUSION_SLAB_VOXELS` voxels (equal to :meth:`forward` up to
        rounding): the upsampled gates and W1 fu exist for one slab at a time instead of the whole volume (3 x
        ``fine`` channels at the fine size). W1 fu and the two gates' fu parts are computed as separate tensors,
        so every elementwise step runs on contiguous memory (in channels_last_3d a channel slice is strided)."""
        f = self.fine
        weight, bias = self.up.weight, self.up.bias
        u_coarse = [F.conv3d(coarse, weight[i * f:(i + 1) * f], bias[i * f:(i + 1) * f]) for i in range(3)]
        depth = skip.shape[2]
        step = slab_depth(skip)
        if step >= depth:
            return self.fuse_slab(u_coarse, skip, 0, depth)
        out = torch.empty_like(skip)
        for a in range(0, depth, step):
            b = min(depth, a + step)
            out[:, :, a:b] = self.fuse_slab(u_coarse, skip, a, b)
        return out

    def fuse_slab(self, u_coarse: list[Tensor], skip: Tensor, a: int, b: int) -> Tensor:
        """The fusion's output for the fine slices [a, b) along D, from ``u_coarse`` = (W1 fu, W~1_u fu, W~2_u fu)
        at the coarse scale (inference; fine size twice the coarse). The slab upsamples its coarse slices plus one on
        each side, so the trilinear weights, and the clamping at the volume's faces, are those of the whole volume."""
        c0, c1 = max(0, a // 2 - 1), min(u_coarse[0].shape[2], (b + 1) // 2 + 1)
        size = (2 * (c1 - c0),) + tuple(skip.shape[3:])

        def upsampled(u: Tensor) -> Tensor:
            return F.interpolate(u[:, :, c0:c1], size=size, mode="trilinear", align_corners=False)[
                :, :, a - 2 * c0:b - 2 * c0]

        f = self.fine
        s = skip[:, :, a:b]
        gate_weight = self.gate_skip.weight
        gate = F.conv3d(s, gate_weight[f:])
        gate += upsampled(u_coarse[2])
        o = self.w2(s)
        o *= torch.sigmoid_(gate)
        gate = F.conv3d(s, gate_weight[:f])
        gate += upsampled(u_coarse[1])
        return o.addcmul_(torch.sigmoid_(gate), upsampled(u_coarse[0]))


def slab_depth(volume: Tensor) -> int:
    """Slices per slab (even, at least 2) so that a slab of ``volume`` [B, C, D, H, W] has about
    :data:`FUSION_SLAB_VOXELS` voxels per channel."""
    return max(2, FUSION_SLAB_VOXELS // max(volume[0, 0, 0].numel(), 1) // 2 * 2)


class ConditionalUNet(nn.Module):
    """Conditional U-Net: forward(x [B, 3, D, H, W], conditions [B, 4] normalized) -> y^ [B, 1, D, H, W] >= 0.

    Any spatial size works: inputs are zero-padded at the end of each axis to a multiple of
    ``config.alignment`` and the output is cropped back."""

    def __init__(self, config: ModelConfig = ModelConfig()):
        super().__init__()
        self.config = config
        c, e = config, config.embedding_dim
        self.embedding = nn.Sequential(nn.Linear(c.condition_dim, e), nn.SiLU(), nn.Linear(e, e))
        self.stem = _conv3(c.in_channels, c.features(0))
        self.down_blocks = nn.ModuleList()
        self.downsample = nn.ModuleList()
        for s in range(c.scales):
            cin = c.features(max(s - 1, 0))
            blocks = [ConditionalResidualBlock(cin if b == 0 else c.features(s), c.features(s), e)
                      for b in range(c.blocks_per_scale)]
            self.down_blocks.append(nn.ModuleList(blocks))
            if s < c.scales - 1:
                self.downsample.append(BlurDownsample(c.features(s)))
        self.fusions = nn.ModuleList(GatedFusion(c.features(s + 1), c.features(s)) for s in range(c.scales - 1))
        self.up_blocks = nn.ModuleList(
            nn.ModuleList(ConditionalResidualBlock(c.features(s), c.features(s), e)
                          for _ in range(c.blocks_per_scale))
            for s in range(c.scales))
        self.head = _conv3(c.features(0), 1)

    def set_fuse_at_coarse_scale(self, enabled: bool) -> None:
        """Run the fusion's fu convolutions before (True, less memory) or after (False) upsampling."""
        for fusion in self.fusions:
            fusion.at_coarse_scale = bool(enabled)

    def forward(self, x: Tensor, conditions: Tensor, rectify: bool = True) -> Tensor:
        """y^ = ReLU(head(...)); ``rectify=False`` returns the head's output before the ReLU (training: the loss on
        it bounds the loss of the rectified output, since targets are >= 0, and its gradient never vanishes)."""
        c = self.config
        if x.ndim != 5 or x.shape[1] != c.in_channels:
            raise ValueError(f"network input must be [B, {c.in_channels}, D, H, W], got {tuple(x.shape)}")
        if conditions.ndim != 2 or conditions.shape != (x.shape[0], c.condition_dim):
            raise ValueError(f"conditions must be [{x.shape[0]}, {c.condition_dim}], got {tuple(conditions.shape)}")
        size = x.shape[2:]
        pad = [(-n) % c.alignment for n in size]
        if any(pad):
            x = F.pad(x, (0, pad[2], 0, pad[1], 0, pad[0]))
        emb = self.embedding(conditions.to(torch.float32))
        with torch.autocast(device_type=x.device.type, enabled=False):  # first and last layer in fp32
            h = self.stem(x.float())
        skips = []
        for s in range(c.scales):
            for block in self.down_blocks[s]:
                h = block(h, emb)
            if s < c.scales - 1:
                skips.append(h)
                h = self.downsample[s](h)
        for s in reversed(range(c.scales)):
            if s < c.scales - 1:
                h = self.fusions[s](h, skips.pop())
            for block in self.up_blocks[s]:
                h = block(h, emb)
        with torch.autocast(device_type=h.device.type, enabled=False):
            y = self.head(F.silu(h.float()))
            y = F.relu(y) if rectify else y
        return y[:, :, :size[0], :size[1], :size[2]]
