"""Inference (inference/predict.py): device choice, tiled vs whole-volume agreement, bf16 accuracy, the reverted
normalization and output images of ``synthesize`` on a preprocessed phantom, and ``gadoreduce predict``.
Tiny random-weight models; the phantom is the 2 mm 'small' one."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from GadoReduceLib import cli
from GadoReduceLib.physics.agents import get_agent
from GadoReduceLib.inference.predict import (FLIPS, blend_weights, choose_device, predict_contrast, synthesize,
                                             tile_starts)
from GadoReduceLib.inference.tissue import tissue_mask
from GadoReduceLib.pipeline import CNN_OUTPUT_NAMES as OUTPUT_NAMES
from GadoReduceLib.model.network import ConditionalUNet, ConditionNormalization, ModelConfig, receptive_field_radius
from GadoReduceLib.model.files import LoadedModel, checksum_path, save_model

SMALL = ModelConfig(base_features=4, scales=2, blocks_per_scale=1)  # receptive-field radius 18 voxels


def _model(config=SMALL, seed=0) -> ConditionalUNet:
    torch.manual_seed(seed)
    model = ConditionalUNet(config).eval()
    with torch.no_grad():
        model.head.bias.fill_(0.05)  # keeps most ReLU outputs positive: meaningful relative errors
    return model


def _arrays(rng, shape):
    return (rng.normal(size=shape).astype(np.float32), (1 + 0.1 * rng.normal(size=shape)).astype(np.float32),
            (0.05 + 0.01 * rng.random(shape)).astype(np.float32))


CONDITIONS = ConditionNormalization().normalize(0.1, 3.0, 4.5, 0.03)


def test_choose_device():
    assert choose_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else None
    auto = choose_device("auto")
    assert auto.type in ("cpu", "cuda", "mps")
    if expected:
        assert auto.type == expected
    if not torch.cuda.is_available():
        assert auto.type != "cuda"
        with pytest.raises(ValueError, match="CUDA is not available"):
            choose_device("cuda")
    with pytest.raises(ValueError, match="unknown device"):
        choose_device("gpu-please")


def test_tile_layout_covers_the_volume_aligned():
    assert tile_starts(96, 48, 24) == [0, 24, 48]
    assert tile_starts(100, 48, 24)[-1] == 52
    assert tile_starts(40, 48, 24) == [0]
    w = blend_weights(48, 24, 96, margin=9)
    assert w[:9].max() == 0 and w[-9:].max() == 0 and w[9:-9].min() > 0
    edge = blend_weights(48, 0, 96, margin=9)
    assert edge[0] > 0 and edge[-9:].max() == 0  # no cut at the volume's border


def test_tiled_equals_whole_when_the_margin_covers_the_receptive_field(rng):
    """Tiles whose discarded margin (overlap // 2) >= receptive-field radius reproduce the whole volume."""
    model = _model()
    radius = receptive_field_radius(SMALL)
    arrays = _arrays(rng, (60, 52, 46))  # not multiples of the alignment
    whole = predict_contrast(model, *arrays, CONDITIONS)
    tiled = predict_contrast(model, *arrays, CONDITIONS, tile=48, overlap=2 * radius)
    assert tiled.shape == whole.shape == (60, 52, 46)
    relative = np.linalg.norm(tiled - whole) / np.linalg.norm(whole)
    print(f"tiled (48, overlap {2 * radius}) vs whole: relative L2 {relative:.2e}")
    assert relative <= 1e-4
    # a smaller overlap is an approximation, still close (far receptive field carries little weight)
    approx = predict_contrast(model, *arrays, CONDITIONS, tile=48, overlap=16)
    relative_small = np.linalg.norm(approx - whole) / np.linalg.norm(whole)
    print(f"tiled (48, overlap 16) vs whole: relative L2 {relative_small:.2e}")
    assert relative_small > relative and relative_small < 1e-2


def test_the_cpu_default_equals_pytorch_fp32_in_the_plain_format(rng, monkeypatch):
    """The CPU default (channels_last_3d, blocks in place, fusions in slabs) gives the plain PyTorch fp32 forward
    pass's output within 1e-4 relative, with the shipped model on a volume whose fusions run in slabs."""
    from GadoReduceLib.inference.predict import channels_last
    from GadoReduceLib.model import network
    from GadoReduceLib.model.files import load_model
    loaded = load_model(None)
    assert channels_last(torch.device("cpu"), "fp32")
    monkeypatch.setattr(network, "FUSION_SLAB_VOXELS", 40 * 40 * 6)  # slabs of 6 slices at the finest scale
    z, x, s = _arrays(rng, (40, 40, 40))
    z[10:20, 10:20, 10:20] += 8.0  # an enhancing block: the output is not just the background level
    c = loaded.normalization.normalize(0.2, 3.0, 4.6, 0.03)
    default = predict_contrast(loaded.model, z, x, s, c)
    with torch.enable_grad():  # the plain path: default memory format, no in-place blocks, no slabs
        plain = loaded.model(network.input_tensor(z, x, s), c).detach()[0, 0].numpy()
    assert np.abs(plain).max() > 0.1
    assert np.abs(default - plain).max() <= 1e-4 * np.abs(plain).max()


def test_tiling_refuses_bad_sizes(rng):
    arrays = _arrays(rng, (16, 16, 16))
    with pytest.raises(ValueError, match="tile size 2 is too small"):
        predict_contrast(_model(), *arrays, CONDITIONS, tile=2)
    with pytest.raises(ValueError, match="overlap of at most"):
        predict_contrast(_model(), *arrays, CONDITIONS, tile=16, overlap=16)
    with pytest.raises(ValueError, match="unknown precision"):
        predict_contrast(_model(), *arrays, CONDITIONS, precision="int8")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="fp16 is only supported on CUDA"):
            predict_contrast(_model(), *arrays, CONDITIONS, precision="fp16", device="cpu")


def test_bf16_error_of_the_contrast_signal(rng):
    """bf16 autocast + channels-last vs fp32 on random weights: 0.31 % here; 0.7-1.1 % measured for the
    paper configuration at 32^3 (random weights, zero output bias)."""
    model = _model(ModelConfig(base_features=8, scales=3, blocks_per_scale=1))
    arrays = _arrays(rng, (24, 24, 24))
    s_ld = arrays[2]
    fp32 = predict_contrast(model, *arrays, CONDITIONS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # bf16 emulated on CPUs without AVX512-BF16
        bf16 = predict_contrast(model, *arrays, CONDITIONS, precision="bf16")
    relative = np.linalg.norm(s_ld * (bf16 - fp32)) / np.linalg.norm(s_ld * fp32)
    print(f"bf16 vs fp32 contrast signal: relative L2 {relative:.2e}")
    assert 0 < relative <= 1e-2
    assert bf16.dtype == np.float32 and next(model.parameters()).is_contiguous()


# ----------------------------------------------------------------------------- synthesize / CLI on a phantom

@pytest.fixture(scope="module")
def case():
    from GadoReduceLib.phantom.generate import PhantomConfig, generate_phantom
    return generate_phantom(PhantomConfig(seed=3, doses=(0.25,), size="small", max_motion_deg=3.0,
                                          max_motion_mm=3.0))


@pytest.fixture(scope="module")
def preprocessed(case):
    pytest.importorskip("itk")
    from GadoReduceLib.preprocessing.preprocess import preprocess
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return preprocess(case.pre_contrast, case.low_dose[0.25], backend="itk", brain=case.brain_mask)


def test_revert_normalization_inverts_eq_1(rng):
    """With gamma = 1 (s_SD = s_LD) the reversion of a perfect prediction y^ = z gives back z~ - m exactly."""
    from GadoReduceLib.inference.predict import revert_normalization
    from GadoReduceLib.preprocessing.noise import normalize_subtraction
    shape, sigma = (6, 7, 8), 0.03
    subtraction = rng.normal(0.0, 0.5, shape).astype(np.float32)
    mean = rng.normal(0.0, 0.01, shape).astype(np.float32)
    std = rng.uniform(0.02, 0.05, shape).astype(np.float32)
    image = lambda a: sitk.GetImageFromArray(a)  # noqa: E731
    z = sitk.GetArrayFromImage(normalize_subtraction(image(subtraction), image(mean), image(std), sigma))
    np.testing.assert_allclose(revert_normalization(z, std, 1.0, sigma), subtraction - mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(revert_normalization(z, std, 1.3, sigma), 1.3 * (subtraction - mean), rtol=1e-5,
                               atol=1e-6)
    with pytest.raises(ValueError, match="noise sigma"):
        revert_normalization(z, std, 1.0, 0.0)


def test_synthesize_reverts_the_normalization_on_the_pre_contrast_grid(case, preprocessed):
    model = _model()
    loaded = LoadedModel(model, SMALL, ConditionNormalization(), gamma=1.5)
    out = synthesize(loaded, preprocessed, 0.25, 3.0, "gadobutrol")
    assert set(out) == set(OUTPUT_NAMES) - {"uncertainty"}  # one pass: no spread
    pre = case.pre_contrast
    for image in out.values():
        assert image.GetSize() == pre.GetSize() and np.allclose(image.GetOrigin(), pre.GetOrigin())
        assert np.allclose(image.GetSpacing(), pre.GetSpacing())
    low = preprocessed.low_dose
    a = lambda im: sitk.GetArrayFromImage(im).astype(np.float64)  # noqa: E731
    conditions = ConditionNormalization().normalize(0.25, 3.0, get_agent("gadobutrol").relaxivity(3.0),
                                                    preprocessed.noise_sigma_ld)
    y_hat = predict_contrast(model, a(low.normalized_subtraction), a(low.registered), a(low.local_std), conditions)
    q = preprocessed.pre_percentile
    y = a(out["contrast_signal"])
    assert y.min() >= 0 and y.max() > 0
    tissue = sitk.GetArrayFromImage(tissue_mask(preprocessed.pre_contrast, preprocessed.brain_mask)) > 0
    assert 0.05 < tissue.mean() < 0.95  # the head of a whole-head scan, not the box
    expected = 1.5 * a(low.local_std) * y_hat / preprocessed.noise_sigma_ld * q
    np.testing.assert_allclose(y[tissue], expected[tissue], rtol=1e-5, atol=1e-6 * y.max())
    assert (y[~tissue] == 0).all() and expected[~tissue].max() > 0  # the network's background output is cut
    # x~_SD = x_PC + y~ in the pre-contrast's input units (exactly x_PC outside the tissue); x~_SD+ = x_LD + y~
    np.testing.assert_allclose(a(out["synthetic_standard_dose"]) - y, a(pre), rtol=1e-4, atol=1e-4 * q)
    assert (a(out["synthetic_standard_dose"])[~tissue] == a(pre)[~tissue]).all()
    np.testing.assert_allclose(a(out["beyond_standard_dose"]) - y, a(low.registered) * q, rtol=1e-4,
                               atol=1e-4 * q)
    normalized = synthesize(loaded, preprocessed, 0.25, 3.0, "gadobutrol", intensity="normalized")
    np.testing.assert_allclose(a(normalized["contrast_signal"]) * q, y, rtol=1e-5, atol=1e-6 * y.max())
    flipped = synthesize(loaded, preprocessed, 0.25, 3.0, "gadobutrol", tta=2)  # two passes: a spread
    spread = a(flipped["uncertainty"])
    assert set(flipped) == set(OUTPUT_NAMES) and spread.min() >= 0 and spread[tissue].max() > 0
    assert (spread[~tissue] == 0).all()
    other = synthesize(loaded, preprocessed, 0.1, 3.0, "gadobutrol")["contrast_signal"]
    assert np.abs(a(other) - y).max() > 1e-3 * y.max()  # the dose conditions the output
    with pytest.raises(ValueError, match="fraction of the standard dose"):
        synthesize(loaded, preprocessed, 25, 3.0, "gadobutrol")
    with pytest.raises(ValueError, match="unknown contrast agent"):
        synthesize(loaded, preprocessed, 0.25, 3.0, "water")


def test_cli_predict_writes_three_volumes_and_a_montage(case, tmp_path, capsys):
    pytest.importorskip("itk")
    from GadoReduceLib.io.imageio import read_image, write_image
    pre, low = write_image(case.pre_contrast, tmp_path / "pre.nii.gz"), write_image(case.low_dose[0.25],
                                                                                     tmp_path / "low.nii.gz")
    model_path = save_model(tmp_path / "m.pt", _model(), SMALL, ConditionNormalization(), 1.0, {"name": "tiny"})
    base = ["predict", "--pre", str(pre), "--low", str(low), "--dose", "0.25", "--field-strength", "3",
            "--agent", "Gadovist", "--output", str(tmp_path / "out"), "--backend", "itk"]
    assert cli.main(base + ["--model", str(tmp_path / "absent.pt")]) == 2
    assert "absent.pt" in capsys.readouterr().err
    assert cli.main(base + ["--model", str(model_path), "--device", "cpu", "--tile", "48", "--uncertainty",
                            "--tta", "2"]) == 0
    for name in OUTPUT_NAMES:
        image = read_image(tmp_path / "out" / f"{name}.nii.gz")
        assert image.GetSize() == case.pre_contrast.GetSize()
    synthetic = sitk.GetArrayFromImage(read_image(tmp_path / "out" / "synthetic_standard_dose.nii.gz"))
    signal = sitk.GetArrayFromImage(read_image(tmp_path / "out" / "contrast_signal.nii.gz"))
    # --uncertainty with 2 flipped passes of the one model: their spread >= 0, zero where the signal is cut
    spread = sitk.GetArrayFromImage(read_image(tmp_path / "out" / "uncertainty.nii.gz"))
    record = json.loads((tmp_path / "out" / "record.json").read_text())
    assert record["tta"] == 2 and record["passes"] == 2 and record["ensemble_members"] == 1
    assert spread.min() >= 0 and spread.max() > 0 and (spread[signal == 0] == 0).mean() > 0.5
    header = (tmp_path / "out" / "enhancing_regions.csv").read_text().splitlines()[0].split(",")
    assert "mean_uncertainty" in header
    np.testing.assert_allclose(synthetic - signal, sitk.GetArrayFromImage(case.pre_contrast), rtol=1e-4,
                               atol=1e-3 * float(synthetic.max()))
    assert (tmp_path / "out" / "prediction.png").stat().st_size > 1000
    # a tampered model file is refused before any work, with the file named
    checksum_path(model_path).write_text("0" * 64 + "  m.pt\n")
    assert cli.main(base + ["--model", str(model_path)]) == 2
    assert "m.pt' does not match its sha256" in capsys.readouterr().err


def test_other_voxel_sizes_than_the_models_give_a_warning():
    from GadoReduceLib.inference.predict import VoxelSizeWarning, check_voxel_size
    loaded = LoadedModel(_model(), SMALL, ConditionNormalization(), 1.0, {"voxel_size_mm": 1.0})
    with pytest.warns(VoxelSizeWarning, match="trained on 1 mm voxels"):
        assert "2x2x2 mm" in check_voxel_size(loaded, (2.0, 2.0, 2.0))
    assert check_voxel_size(loaded, (1.0, 1.0, 1.2)) is None  # within a factor 1.5
    assert check_voxel_size(LoadedModel(_model(), SMALL, ConditionNormalization(), 1.0), (3.0, 3.0, 3.0)) is None


class FlipEquivariant(torch.nn.Module):
    """A network that is flip-equivariant by construction: a 3^3 convolution whose kernel is the mean of its 8
    flips, a ReLU and a 1x1x1 convolution (``predict_contrast`` needs only ``config`` and the forward pass)."""

    def __init__(self):
        super().__init__()
        self.config = SMALL
        torch.manual_seed(3)
        self.conv = torch.nn.Conv3d(3, 4, 3, padding=1)
        self.out = torch.nn.Conv3d(4, 1, 1)
        with torch.no_grad():
            w = self.conv.weight
            w.copy_(sum(torch.flip(w, [a + 2 for a in axes]) if axes else w for axes in FLIPS) / len(FLIPS))

    def forward(self, x, conditions):
        return torch.relu(self.out(torch.relu(self.conv(x))) + 0.05)


def test_flip_tta_equals_no_tta_for_an_equivariant_model_and_averages_flips_otherwise(rng):
    z, x, s = _arrays(rng, (12, 16, 20))
    equivariant = FlipEquivariant().eval()
    plain = predict_contrast(equivariant, z, x, s, CONDITIONS)
    for n in (2, 4, 8):
        np.testing.assert_allclose(predict_contrast(equivariant, z, x, s, CONDITIONS, tta=n), plain, rtol=1e-5,
                                   atol=1e-6)
    model = _model()  # strided, not equivariant: TTA is the mean of the flipped predictions
    flipped = []
    for axes in FLIPS[:4]:
        f = (lambda a: np.ascontiguousarray(np.flip(a, axes))) if axes else (lambda a: a)  # noqa: E731
        flipped.append(f(predict_contrast(model, f(z), f(x), f(s), CONDITIONS)))
    tta = predict_contrast(model, z, x, s, CONDITIONS, tta=4)
    np.testing.assert_allclose(tta, np.mean(flipped, axis=0), rtol=1e-5, atol=1e-6)
    assert np.abs(tta - flipped[0]).max() > 1e-4
    tiled = predict_contrast(model, z, x, s, CONDITIONS, tta=2, tile=16)
    assert tiled.shape == z.shape
    for bad in (0, 9, 1.5):
        with pytest.raises(ValueError, match="test-time augmentation"):
            predict_contrast(model, z, x, s, CONDITIONS, tta=bad)
