"""The conditional U-Net (model.py) and its model files (model_io.py): shapes, positivity, conditioning,
the coarse-scale gated fusion, save/load round trip, checksum refusal and the model card.
Tiny configurations (4-8 features, 2-3 scales) keep every test under a few seconds."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from GadoReduceLib.model.network import (CONDITION_NAMES, ConditionalUNet, ConditionNormalization, ModelConfig,
                                 input_tensor, receptive_field_radius)
from GadoReduceLib.model.files import (ModelFileError, card_path, checksum_path, load_model, model_card,
                                    read_header, save_model)

TINY = ModelConfig(base_features=4, scales=3, blocks_per_scale=1)


def _model(config=TINY, seed=0) -> ConditionalUNet:
    torch.manual_seed(seed)
    model = ConditionalUNet(config).eval()
    with torch.no_grad():  # non-zero output bias so that the ReLU output is not almost all zero
        model.head.bias.fill_(0.05)
    return model


def _inputs(rng, shape=(20, 18, 22)) -> torch.Tensor:
    z = rng.normal(size=shape)
    x = 1.0 + 0.1 * rng.normal(size=shape)
    s = 0.05 + 0.01 * rng.random(shape)
    return input_tensor(z, x, s)


def test_paper_configuration_is_the_default():
    config = ModelConfig()
    assert (config.in_channels, config.base_features, config.scales, config.blocks_per_scale,
            config.embedding_dim, config.condition_dim) == (3, 32, 4, 2, 128, 4)
    model = ConditionalUNet()
    assert [model.config.features(s) for s in range(4)] == [32, 64, 128, 256]
    assert model.embedding[-1].out_features == 128
    # no normalization layers anywhere; SiLU only (functional) and ReLU at the output
    assert not any(isinstance(m, (torch.nn.modules.batchnorm._NormBase, torch.nn.GroupNorm, torch.nn.LayerNorm))
                   for m in model.modules())
    n = sum(p.numel() for p in model.parameters())
    assert 15e6 < n < 25e6, n  # about 18 M parameters
    assert ModelConfig.from_dict(config.to_dict()) == config


def test_output_shape_and_positivity_for_unaligned_sizes(rng):
    model = _model()
    x = _inputs(rng)  # 20 x 18 x 22: not multiples of 4
    c = ConditionNormalization().normalize(0.1, 3.0, 4.5, 0.03)
    with torch.no_grad():
        y = model(x, c)
    assert y.shape == (1, 1, 20, 18, 22)
    assert bool((y >= 0).all()) and bool((y > 0).any())
    assert bool(torch.isfinite(y).all())


def test_batch_of_two_matches_single_inputs(rng):
    model = _model()
    x = torch.cat([_inputs(rng, (16, 16, 16)), _inputs(rng, (16, 16, 16))])
    c = ConditionNormalization().normalize(torch.tensor([0.1, 0.33]), 3.0, torch.tensor([4.5, 3.4]), 0.03)
    with torch.no_grad():
        both = model(x, c)
        first = model(x[:1], c[:1])
    assert c.shape == (2, 4)
    torch.testing.assert_close(both[:1], first, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", CONDITION_NAMES)
def test_each_condition_changes_the_output(rng, name):
    model = _model()
    x = _inputs(rng, (16, 16, 16))
    norm = ConditionNormalization()
    base = dict(dose=0.1, field_strength=3.0, relaxivity=4.5, noise_sigma=0.03)
    changed = dict(base, **{name: base[name] * 2.5})
    with torch.no_grad():
        y0 = model(x, norm.normalize(**base))
        y1 = model(x, norm.normalize(**changed))
    relative = float((y1 - y0).norm() / y0.norm())
    assert relative > 1e-3, f"changing {name} changed the output by only {relative:.2e}"


def test_condition_normalization_values_and_errors():
    norm = ConditionNormalization()
    c = norm.normalize(0.25, 2.25, 4.5, 0.03)
    torch.testing.assert_close(c, torch.zeros(1, 4))
    c = norm.normalize(0.4, 3.0, 6.5, 0.05)
    torch.testing.assert_close(c, torch.tensor([[1.0, 1.0, 1.0, 1.0]]))
    assert ConditionNormalization.from_dict(norm.to_dict()) == norm
    with pytest.raises(ValueError, match="noise_sigma"):
        norm.normalize(0.1, 3.0, 4.5, float("nan"))
    with pytest.raises(ValueError, match="field_strength has 2 values, expected 1 or 3"):
        norm.normalize(torch.tensor([0.1, 0.2, 0.3]), torch.tensor([1.5, 3.0]), 4.5, 0.03)
    with pytest.raises(ValueError, match="stds positive"):
        ConditionNormalization(std=(0.1, 0.0, 1.0, 1.0))


def test_input_tensor_channel_order_and_bad_inputs(rng):
    z, x, s = (rng.normal(size=(4, 5, 6)) for _ in range(3))
    t = input_tensor(z, x, s)
    assert t.shape == (1, 3, 4, 5, 6) and t.dtype == torch.float32
    np.testing.assert_allclose(t[0, 1].numpy(), x.astype(np.float32))
    with pytest.raises(ValueError, match="one shape"):
        input_tensor(z, x, s[:3])
    bad = z.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        input_tensor(bad, x, s)
    with pytest.raises(ValueError, match="base_features"):
        ModelConfig(base_features=0)


def test_fusion_at_coarse_scale_equals_fusion_after_upsampling(rng):
    """W1 and the fu part of the gates commute with trilinear upsampling: same weights, same output."""
    model = _model(ModelConfig(base_features=8, scales=3, blocks_per_scale=1))
    x = _inputs(rng, (24, 20, 28))
    c = ConditionNormalization().normalize(0.1, 1.5, 4.6, 0.02)
    with torch.no_grad():
        model.set_fuse_at_coarse_scale(True)
        coarse = model(x, c)
        model.set_fuse_at_coarse_scale(False)
        fine = model(x, c)
    scale = float(fine.abs().max())
    assert scale > 0
    assert float((coarse - fine).abs().max()) <= 1e-5 * scale


def test_inference_in_slabs_and_in_place_equals_the_training_path(rng, monkeypatch):
    """At inference (no autograd) the CRBs work in place and large gated fusions run in slabs along D; the output
    equals that of the autograd path, for slabs of 2 slices (the smallest) and with the volume's faces inside
    slabs of every position."""
    from GadoReduceLib.model import network
    model = _model(ModelConfig(base_features=4, scales=3, blocks_per_scale=1))
    x = _inputs(rng, (22, 20, 18))
    c = ConditionNormalization().normalize(0.2, 3.0, 4.6, 0.02)
    with torch.enable_grad():
        reference = model(x, c).detach()
    scale = float(reference.abs().max())
    assert scale > 0
    plane = 20 * 20  # H x W of the finest scale (the input padded to the alignment of 4)
    for slab_voxels in (1 << 30, 2 * plane, 3 * plane, 7 * plane):  # whole volume; 2, 2 and 6 slices per slab
        monkeypatch.setattr(network, "FUSION_SLAB_VOXELS", slab_voxels)
        with torch.inference_mode():
            out = model(x, c)
        assert float((out - reference).abs().max()) <= 1e-6 * scale, slab_voxels
    calls, original = [], network.GatedFusion.fuse_slab
    monkeypatch.setattr(network.GatedFusion, "fuse_slab",
                        lambda self, u, skip, a, b: calls.append((a, b)) or original(self, u, skip, a, b))
    with torch.inference_mode():
        model(x, c)
    assert len(calls) > 1, "the large fusions ran in slabs at inference"
    calls.clear()
    with torch.enable_grad():
        model(x, c)
    assert not calls, "slabs must not run under autograd (training)"


def test_receptive_field_radius_bounds_the_influence(rng):
    """A change of one input voxel leaves outputs beyond the radius untouched (and changes nearer ones)."""
    config = ModelConfig(base_features=4, scales=2, blocks_per_scale=1)
    radius = receptive_field_radius(config)
    model = _model(config)
    n = 2 * radius + 8
    x = _inputs(rng, (n, 8, 8))
    c = ConditionNormalization().normalize(0.1, 3.0, 4.5, 0.03)
    x2 = x.clone()
    x2[0, :, 0, 4, 4] += 10.0
    with torch.no_grad():
        d = (model(x2, c) - model(x, c)).abs()[0, 0].amax(dim=(1, 2))
    assert float(d[radius + 1:].max()) == 0.0
    assert float(d[:3].max()) > 0.0


def _metadata():
    return {"name": "tiny test model", "description": "random weights for tests",
            "training_data": {"cases": 0, "source": "none (untrained)"},
            "validation_metrics": {"psnr_db": 31.5, "ssim": 0.91}}


def test_save_load_round_trip_is_bit_exact(tmp_path, rng):
    model = _model()
    norm = ConditionNormalization(mean=(0.2, 2.0, 4.0, 0.04), std=(0.1, 0.5, 1.5, 0.01))
    path = save_model(tmp_path / "tiny.pt", model, TINY, norm, gamma=1.37, metadata=_metadata())
    assert checksum_path(path).is_file() and card_path(path).is_file()
    loaded = load_model(path)
    assert loaded.config == TINY and loaded.normalization == norm and loaded.gamma == 1.37
    assert loaded.metadata == _metadata()
    original = model.state_dict()
    for name, tensor in loaded.model.state_dict().items():
        assert torch.equal(tensor, original[name]), name
    x = _inputs(rng, (16, 16, 16))
    c = norm.normalize(0.1, 3.0, 4.5, 0.03)
    with torch.no_grad():
        assert torch.equal(loaded.model(x, c), model(x, c))
    assert not loaded.model.training


def test_tampered_weights_are_refused(tmp_path):
    path = save_model(tmp_path / "tiny.pt", _model(), TINY, ConditionNormalization(), 1.0, _metadata())
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # one flipped bit
    path.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match=r"tiny\.pt.*does not match its sha256.*again"):
        load_model(path)


def test_missing_checksum_and_foreign_files_are_refused(tmp_path):
    path = save_model(tmp_path / "tiny.pt", _model(), TINY, ConditionNormalization(), 1.0, _metadata())
    checksum_path(path).unlink()
    with pytest.raises(ModelFileError, match=r"no checksum file 'tiny\.pt\.sha256'"):
        load_model(path)
    with pytest.raises(ModelFileError, match="does not exist"):
        load_model(tmp_path / "absent.pt")
    # a pickle with code (a whole nn.Module) is not loaded even with a valid checksum
    foreign = tmp_path / "module.pt"
    torch.save(_model(), foreign)
    from GadoReduceLib.model.files import sha256_of
    checksum_path(foreign).write_text(f"{sha256_of(foreign)}  module.pt\n")
    with pytest.raises(ModelFileError, match="cannot be read as a GadoReduce model"):
        load_model(foreign)


def test_save_refuses_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="gamma"):
        save_model(tmp_path / "m.pt", _model(), TINY, ConditionNormalization(), 0.0, {})
    with pytest.raises(ValueError, match="must end with .pt"):
        save_model(tmp_path / "m.pth", _model(), TINY, ConditionNormalization(), 1.0, {})
    with pytest.raises(ValueError, match="not the given"):
        save_model(tmp_path / "m.pt", _model(), ModelConfig(base_features=8, scales=3, blocks_per_scale=1),
                   ConditionNormalization(), 1.0, {})
    assert not list(tmp_path.iterdir())


def test_model_card_is_generated_from_the_metadata(tmp_path):
    path = save_model(tmp_path / "tiny.pt", _model(), TINY, ConditionNormalization(), 1.37, _metadata())
    card = card_path(path).read_text()
    header, _ = read_header(path)
    assert card == model_card(header)
    assert card.startswith("# tiny test model")
    for text in ("| gamma (y~ = gamma s_LD y^ / sigma_LD) | 1.37 |", "| base_features | 4 |", "| dose | 0.25 | 0.15 |",
                 "| psnr_db | 31.5 |", "**source**: none (untrained)", "not a medical device"):
        assert text in card, text
    assert json.loads(json.dumps(header))["parameters"] == sum(p.numel() for p in _model().parameters())
