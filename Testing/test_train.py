"""Training of the conditional CNN: loss, gamma, augmentation, optimisation, checkpoint/resume, DDP, bad inputs.

Tiny model configurations and 16-24^3 patches keep every test at a few seconds on two CPU cores.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from GadoReduceLib.model.network import ConditionalUNet, ConditionNormalization, ModelConfig
from GadoReduceLib.training.loop import TrainConfig, train
from GadoReduceLib.training.data import (TrainingCase, case_from_phantom, cases_from_folder, compute_gamma,
                                         scale_ratio)
from GadoReduceLib.training.patches import augment, collate, sample_patch, weighted_huber_loss

TINY = ModelConfig(base_features=4, scales=2, blocks_per_scale=1, embedding_dim=8)
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: on a loaded two-core machine, two threads of tiny convolutions wait on each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def synthetic_case(seed: int, size: int = 24, dose: float = 0.2) -> TrainingCase:
    """A constructed case: a brain box, one bright cube of contrast signal, Gaussian noise."""
    rng = np.random.default_rng(seed)
    shape = (size, size, size)
    b = np.zeros(shape, np.uint8)
    b[3:-3, 3:-3, 3:-3] = 1
    y = np.zeros(shape, np.float32)
    c = int(rng.integers(8, size - 12))
    y[c:c + 5, c:c + 4, c:c + 3] = 0.5
    p = (y > 0).astype(np.float32)
    z = (dose * y + rng.normal(0, 0.03, shape) * b).astype(np.float32)
    return TrainingCase(f"case{seed}", z, (1 + z).astype(np.float32), np.full(shape, 0.03, np.float32), y, p, b,
                        dose=dose, field_strength=3.0, relaxivity=4.5, noise_sigma=0.03, scale_ratio=1.0 + seed / 10)


def small_config(**overrides) -> TrainConfig:
    values = dict(steps=6, patch_size=20, margin=4, learning_rate=1e-3, final_learning_rate=1e-5, model=TINY,
                  validate_every=3, checkpoint_every=3, seed=5, threads=1)
    values.update(overrides)
    return TrainConfig(**values)


# ----------------------------------------------------------------------------- loss

def test_loss_ignores_margin_and_weights_brain_and_contrast_voxels():
    shape = (1, 1, 18, 18, 18)  # margin 8 leaves the 2x2x2 centre
    target = torch.zeros(shape)
    prediction = torch.zeros(shape)
    b = torch.zeros(shape)
    p = torch.zeros(shape)
    prediction[..., :8, :, :] = 100.0          # huge errors only in the margin
    prediction[..., -8:, :, :] = -50.0
    b[..., :8, :, :] = 1.0                     # brain and contrast voxels in the margin must not count either
    p[..., -8:, :, :] = 1.0
    inner = (0, 0, slice(8, 10), slice(8, 10), slice(8, 10))
    r = torch.tensor([[[0.05, 0.3], [0.0, 0.2]], [[-0.05, 0.0], [1.0, 0.0]]])
    prediction[inner] = r
    b[inner] = torch.tensor([[[1.0, 1.0], [0.0, 0.0]], [[0.0, 1.0], [1.0, 0.0]]])
    p[inner] = torch.tensor([[[0.0, 1.0], [0.5, 1.0]], [[0.0, 0.0], [1.0, 0.0]]])
    loss = weighted_huber_loss(prediction, target, b, p, margin=8)
    # by hand: Huber(0.05) = 0.5 * 0.05^2 = 0.00125; Huber(0.3) = 0.1 * (0.3 - 0.05) = 0.025;
    # Huber(0.2) = 0.1 * 0.15 = 0.015; Huber(1) = 0.1 * 0.95 = 0.095; weights b + 0.01 + p
    terms = [(1 + 0.01 + 0) * 0.00125, (1 + 0.01 + 1) * 0.025, 0.0, (0 + 0.01 + 1) * 0.015,
             (0 + 0.01 + 0) * 0.00125, 0.0, (1 + 0.01 + 1) * 0.095, 0.0]
    assert float(loss) == pytest.approx(sum(terms) / 8, rel=1e-6)
    # without the margin the border errors dominate
    assert float(weighted_huber_loss(prediction, target, b, p, margin=0)) > 100 * float(loss)


# ----------------------------------------------------------------------------- gamma

def test_gamma_is_the_mean_of_brain_std_ratios():
    shape = (6, 6, 6)
    b = np.zeros(shape, np.uint8)
    b[1:3] = 1                                   # 72 brain voxels
    s_ld = np.full(shape, 2.0, np.float32)
    s_sd = np.full(shape, 3.0, np.float32)
    s_sd[b == 0] = 1000.0                         # outside the brain: must not count
    assert scale_ratio(b, s_sd, s_ld) == pytest.approx(1.5)
    s_ld2 = np.full(shape, 4.0, np.float32)
    s_sd2 = np.full(shape, 2.0, np.float32)
    s_sd2[1, 0, 0] = 2.0 + 72 * 4.0               # one voxel raises <b, s_SD> from 144 to 432
    assert scale_ratio(b, s_sd2, s_ld2) == pytest.approx(432.0 / 288.0)
    cases = [synthetic_case(1), synthetic_case(4)]
    assert compute_gamma(cases) == pytest.approx((1.1 + 1.4) / 2)
    with pytest.raises(ValueError, match="brain mask is empty"):
        scale_ratio(np.zeros(shape), s_sd, s_ld)


# ----------------------------------------------------------------------------- augmentation

def test_augmentation_keeps_inputs_and_targets_aligned():
    case = synthetic_case(2)
    case.y = np.abs(case.z_ld) * 3.0            # every target is a voxelwise function of the inputs
    case.p = (case.z_ld > 0.01).astype(np.float32)
    rng = np.random.default_rng(0)
    changed = 0
    for _ in range(12):
        patch = sample_patch(case, 16, rng)
        out = augment(patch, rng)
        np.testing.assert_allclose(out["y"], np.abs(out["z_ld"]) * 3.0, rtol=1e-6)
        np.testing.assert_array_equal(out["p"], (out["z_ld"] > 0.01).astype(np.float32))
        np.testing.assert_allclose(out["x_ld"], 1 + out["z_ld"], rtol=1e-6)
        np.testing.assert_array_equal(np.sort(out["z_ld"].ravel()), np.sort(patch["z_ld"].ravel()))
        changed += not np.array_equal(out["z_ld"], patch["z_ld"])
    assert changed >= 6                         # flips/rotations actually happen


def test_patch_sampler_prefers_enhancing_voxels():
    case = synthetic_case(3, size=32)
    rng = np.random.default_rng(1)
    hits = [sample_patch(case, 8, rng, enhancing_fraction=1.0)["p"].any() for _ in range(20)]
    assert all(hits)
    hits_random = [sample_patch(case, 8, rng, enhancing_fraction=0.0)["p"].any() for _ in range(40)]
    assert sum(hits_random) < 30


# ----------------------------------------------------------------------------- optimisation

def test_adam_steps_lower_the_loss_on_a_fixed_batch():
    torch.manual_seed(1)
    model = ConditionalUNet(TINY)
    cases = [synthetic_case(s) for s in (1, 2)]
    for case in cases:  # a large enhancing region that z_LD shows clearly
        case.y[:] = 0.0
        case.y[6:18, 6:18, 6:18] = 0.5
        case.p[:] = case.y > 0
        case.z_ld[:] = 0.5 * case.y + np.random.default_rng(0).normal(0, 0.03, case.shape)
    rng = np.random.default_rng(0)
    batch = collate([sample_patch(c, 20, rng, 1.0) for c in cases], [c.conditions for c in cases])
    cond = ConditionNormalization().normalize(*batch["conditions"].T)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    zero = float(weighted_huber_loss(torch.zeros_like(batch["y"]), batch["y"], batch["b"], batch["p"], margin=4))
    losses = []
    for _ in range(21):
        loss = weighted_huber_loss(model(batch["inputs"], cond), batch["y"], batch["b"], batch["p"], margin=4)
        losses.append(float(loss.detach()))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert losses[-1] < 0.5 * losses[0]
    assert losses[-1] < 0.5 * zero          # better than predicting no contrast signal at all


def test_a_network_whose_output_relu_is_closed_everywhere_still_learns():
    """The loop's loss is on the output before the ReLU: a network whose rectified output is 0 at every voxel (a
    'dead' output layer, which PyTorch's initialization and early Adam steps can produce) gets gradients."""
    from GadoReduceLib.training.loop import train_step
    torch.manual_seed(1)
    model = ConditionalUNet(TINY)
    with torch.no_grad():
        model.head.bias.fill_(-1.0)
    cases = [synthetic_case(s) for s in (1, 2)]
    rng = np.random.default_rng(0)
    batch = collate([sample_patch(c, 20, rng, 1.0) for c in cases], [c.conditions for c in cases])
    cond = ConditionNormalization().normalize(*batch["conditions"].T)
    assert float(model(batch["inputs"], cond).max()) == 0.0  # dead: no output, and a ReLU passes no gradient
    config = TrainConfig(steps=1, patch_size=20, margin=4, model=TINY, learning_rate=1e-2)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = [float(train_step(model, optimizer, batch, config, ConditionNormalization(), torch.device("cpu")))
              for _ in range(30)]
    assert losses[-1] < 0.2 * losses[0]
    assert float(model(batch["inputs"], cond).max()) > 0  # the output opened again


def test_resume_continues_exactly_like_an_uninterrupted_run(tmp_path):
    cases = [synthetic_case(s) for s in (1, 2, 3)]
    config = small_config()
    full = train(cases, cases[:1], tmp_path / "full", config, progress=False, log=lambda *a: None)
    part = train(cases, cases[:1], tmp_path / "part", config, stop_at=3, progress=False, log=lambda *a: None)
    assert part["step"] == 3 and not (tmp_path / "part" / "model.pt").exists()
    resumed = train(cases, cases[:1], tmp_path / "part", config, resume=True, progress=False, log=lambda *a: None)
    a = np.asarray(full["history"]["train"])
    b = np.asarray(resumed["history"]["train"])
    assert a.shape == (6, 3)
    np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-9)   # same losses and learning rates, step by step
    for (name, wa), wb in zip(full["model"].state_dict().items(), resumed["model"].state_dict().values()):
        torch.testing.assert_close(wa, wb, rtol=1e-6, atol=1e-7, msg=name)
    assert a[-1, 2] < a[0, 2]                                  # cosine schedule decays the learning rate
    history = json.loads((tmp_path / "part" / "history.json").read_text())
    assert [v["step"] for v in history["validation"]] == [3, 6]
    assert history["validation"][-1]["lesion_voxels"] > 0
    assert (tmp_path / "part" / "loss_curve.png").stat().st_size > 1000
    from GadoReduceLib.model.files import load_model
    loaded = load_model(tmp_path / "part" / "model.pt")
    assert loaded.gamma == pytest.approx(compute_gamma(cases))
    for name, weight in loaded.model.state_dict().items():
        torch.testing.assert_close(weight, resumed["model"].state_dict()[name], rtol=0, atol=0, msg=name)


# ----------------------------------------------------------------------------- DDP

def _ddp_worker(rank: int, world: int, init_file: str, output: str, result_dir: str) -> None:
    import torch.distributed as dist
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    cases = [synthetic_case(s) for s in (1, 2, 3)]
    result = train(cases, cases[:1], output, small_config(steps=3, checkpoint_every=3), progress=False,
                   log=lambda *a: None)
    torch.save({k: v.clone() for k, v in result["model"].state_dict().items()},
               Path(result_dir) / f"rank{rank}.pt")
    dist.destroy_process_group()


def test_two_process_gloo_ddp_ends_with_identical_weights(tmp_path):
    import torch.multiprocessing as mp
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), str(tmp_path / "run"), str(tmp_path)), nprocs=2,
             join=True)
    w0 = torch.load(tmp_path / "rank0.pt")
    w1 = torch.load(tmp_path / "rank1.pt")
    torch.manual_seed(5)
    initial = ConditionalUNet(TINY).state_dict()
    moved = 0
    for name in w0:
        torch.testing.assert_close(w0[name], w1[name], rtol=0, atol=0, msg=name)
        moved += not torch.equal(w0[name], initial[name])
    assert moved > len(w0) // 2                  # training changed the weights
    assert json.loads((tmp_path / "run" / "history.json").read_text())["train"][-1][0] == 3


# ----------------------------------------------------------------------------- data sources and bad inputs

def test_phantom_case_is_preprocessed_once_and_cached(tmp_path):
    from GadoReduceLib.physics.agents import get_agent
    from GadoReduceLib.phantom.generate import PhantomConfig
    config = PhantomConfig(seed=3, doses=(0.25,), spacing_mm=(4.0, 4.0, 4.0), field_strength=1.5, agent="gadoterate")
    case = case_from_phantom(config, cache_dir=tmp_path)
    files = list(tmp_path.glob("*.npz"))
    assert len(files) == 1
    assert case.conditions[:3] == (0.25, 1.5, pytest.approx(get_agent("gadoterate").relaxivity(1.5)))
    assert case.lesions is not None and case.lesions.max() > 0
    assert (case.p[case.lesions > 0] > 0.5).mean() > 0.3    # enhancing lesions carry the contrast mask
    assert 0.5 < case.scale_ratio < 2.0
    mtime = files[0].stat().st_mtime_ns
    again = case_from_phantom(config, cache_dir=tmp_path)
    assert files[0].stat().st_mtime_ns == mtime             # loaded, not recomputed
    for name in TrainingCase.ARRAYS:
        np.testing.assert_array_equal(getattr(again, name), getattr(case, name))


def test_bad_inputs_give_clear_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="lacks pre_contrast, standard_dose, low_dose"):
        cases_from_folder(empty)
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "pre_contrast.nii.gz").write_bytes(b"")
    (partial / "low_dose.nii.gz").write_bytes(b"")
    with pytest.raises(ValueError, match="lacks standard_dose"):
        cases_from_folder(partial)
    (partial / "standard_dose.nii.gz").write_bytes(b"")
    with pytest.raises(ValueError, match="no metadata sidecar"):
        cases_from_folder(partial)
    with pytest.raises(ValueError, match="does not exist"):
        cases_from_folder(tmp_path / "missing")
    cases = [synthetic_case(1)]
    with pytest.raises(ValueError, match=r"patch size 32 is larger than the volume \(24, 24, 24\)"):
        train(cases, [], tmp_path / "out", small_config(patch_size=32), progress=False)
    with pytest.raises(ValueError, match="no training cases"):
        train([], [], tmp_path / "out", small_config(), progress=False)
    with pytest.raises(ValueError, match="no checkpoint"):
        train(cases, [], tmp_path / "fresh", small_config(), resume=True, progress=False)
    with pytest.raises(ValueError, match="--huber-epsilon must be positive"):
        small_config(huber_epsilon=0.0)


def test_cli_train_without_sources_or_with_a_too_large_patch_exits_2(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO / "GadoReduce"))
    run = subprocess.run([sys.executable, "-m", "GadoReduceLib.cli", "train", "--output", str(tmp_path / "o")],
                         capture_output=True, text=True, env=env)
    assert run.returncode == 2
    assert "no training data" in run.stderr
