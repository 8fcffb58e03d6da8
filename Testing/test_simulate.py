"""Low doses made on the fly (training/simulate.py) and the validation simulator (physics/lowdose_kspace.py).

Constructed pairs with known physics: a box of white matter with one lesion cube of known native T1 and
concentration, scanned with the signal model (``physics.signal``), so that the enhancement a low dose must
show is known exactly. Synthetic data for testing, not clinical evidence.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from scipy.ndimage import shift as scipy_shift

from GadoReduceLib.physics.agents import get_agent, native_t1
from GadoReduceLib.physics.lowdose_kspace import low_dose_kspace
from GadoReduceLib.physics.signal import default_sequence, signal
from GadoReduceLib.preprocessing.noise import local_statistics
from GadoReduceLib.preprocessing.noise_estimate import estimate_noise_sigma
from GadoReduceLib.training.simulate import (SIMULATOR_RANGES, SIMULATORS, PairCase, draw_parameters, fixed_draw,
                                             low_dose_window, simulate_sample, subvoxel_shift, validation_samples)

FIELD = 3.0
WM_LEVEL = 0.8
LESION = (slice(16, 26),) * 3
LESION_T1_S = 1.2
CONCENTRATION_MM = 0.4


def constructed_pair(kind: str = "spgr", noise: float = 0.0, size: int = 44, seed: int = 0) -> PairCase:
    """White-matter box (WM level 0.8) with a lesion cube (T1 1.2 s, 0.4 mM gadobutrol at standard dose),
    scanned by ``default_sequence(3 T, kind)``; independent Gaussian noise of ``noise`` on both scans."""
    sequence = default_sequence(FIELD, kind)
    r1_wm = 1.0 / native_t1("white_matter", FIELD)
    r1_lesion = 1.0 / LESION_T1_S
    r1 = get_agent("gadobutrol").relaxivity(FIELD)
    level = lambda rate: WM_LEVEL * signal(1.0, rate, sequence) / signal(1.0, r1_wm, sequence)  # noqa: E731
    shape = (size,) * 3
    brain = np.zeros(shape, np.uint8)
    brain[4:-4, 4:-4, 4:-4] = 1
    pre = np.where(brain > 0, WM_LEVEL, 0.0)
    sd = pre.copy()
    pre[LESION] = level(r1_lesion)
    sd[LESION] = level(r1_lesion + r1 * CONCENTRATION_MM)
    rng = np.random.default_rng(seed)
    if noise:
        pre = np.where(brain > 0, pre + noise * rng.standard_normal(shape), 0.0)
        sd = np.where(brain > 0, sd + noise * rng.standard_normal(shape), 0.0)
    lesion = np.zeros(shape, np.float32)
    lesion[LESION] = 1
    sigma = estimate_noise_sigma(sd - pre, brain > 0) if noise else 1e-4
    return PairCase("constructed", pre.astype(np.float32), sd.astype(np.float32), brain, np.ones(shape, np.uint8),
                    ((sd - pre) * lesion).astype(np.float32), lesion, float(sigma), WM_LEVEL, FIELD, "gadobutrol",
                    lesions=lesion.astype(np.uint16))


@pytest.mark.parametrize("kind", ["spgr", "mprage"])
@pytest.mark.parametrize("dose", [0.1, 0.33])
def test_on_the_fly_low_dose_has_the_enhancement_the_signal_model_predicts(kind, dose):
    case = constructed_pair(kind)
    sequence = default_sequence(FIELD, kind)
    draw = fixed_draw(dose, FIELD, "gadobutrol", sequence)
    window = (slice(None),) * 3
    low = low_dose_window(case, window, draw, np.random.default_rng(0))
    r1_l, relax = 1.0 / LESION_T1_S, get_agent("gadobutrol").relaxivity(FIELD)
    s = lambda rate: signal(1.0, rate, sequence)  # noqa: E731
    expected = (s(r1_l + dose * relax * CONCENTRATION_MM) - s(r1_l)) / (s(r1_l + relax * CONCENTRATION_MM) - s(r1_l))
    measured = float(np.mean((low - case.pre)[LESION]) / np.mean((case.standard_dose - case.pre)[LESION]))
    assert measured == pytest.approx(expected, rel=0.01)
    assert expected > dose * 1.05  # saturation: more than the linear share of the enhancement
    outside = case.b > 0
    outside[LESION] = False
    assert np.abs(low - case.pre)[outside].max() < 1e-3  # non-enhancing tissue stays as it was


@pytest.mark.parametrize("noise_factor", [1.0, 1.3])
def test_low_dose_subtraction_has_the_drawn_multiple_of_the_standard_dose_noise(noise_factor):
    case = constructed_pair(noise=0.02)
    for dose in (0.1, 0.33, 0.5):
        draw = fixed_draw(dose, FIELD)
        draw = type(draw)(**{**draw.__dict__, "noise_factor": noise_factor})
        low = low_dose_window(case, (slice(None),) * 3, draw, np.random.default_rng(1))
        sigma_ld = estimate_noise_sigma(low - case.pre, case.b > 0)
        assert sigma_ld == pytest.approx(noise_factor * case.sigma_sd, rel=0.15)


def test_same_seed_gives_the_same_sample_and_targets_are_in_low_dose_noise_units():
    case = constructed_pair(noise=0.02)
    a, ca = simulate_sample(case, np.random.default_rng(5), 16, margin=8, with_lesions=True)
    b, cb = simulate_sample(case, np.random.default_rng(5), 16, margin=8, with_lesions=True)
    c, cc = simulate_sample(case, np.random.default_rng(6), 16, margin=8)
    assert ca == cb and all(np.array_equal(a[k], b[k]) for k in a)
    assert ca != cc and not np.array_equal(a["z_ld"], c["z_ld"])
    assert set(a) == {"z_ld", "x_ld", "s_ld", "y", "p", "b", "lesions"} and a["z_ld"].shape == (16, 16, 16)
    dose, field, relaxivity, sigma = ca
    lo, hi = SIMULATOR_RANGES["dose"]
    assert lo <= dose <= hi and sigma > 0
    # y~ = s_LD y / sigma_LD (inference with gamma 1) is the standard-dose contrast signal: zero off the lesion
    assert np.all(a["y"][a["p"] == 0] == 0)
    assert case.scale_ratio == 1.0


def test_parameter_draws_stay_in_their_physical_ranges():
    rng = np.random.default_rng(0)
    draws = [draw_parameters(rng) for _ in range(300)]
    for key, attribute in (("dose", "dose"), ("field_strength_t", "field_strength"), ("t1_scale", "t1_scale"),
                           ("noise_factor", "noise_factor"), ("bias_amplitude", "bias_amplitude")):
        values = np.array([getattr(d, attribute) for d in draws])
        lo, hi = SIMULATOR_RANGES[key]
        assert values.min() >= lo and values.max() <= hi and values.max() - values.min() > 0.5 * (hi - lo)
    shifts = np.linalg.norm([d.shift_mm for d in draws], axis=1)
    assert shifts.max() <= SIMULATOR_RANGES["shift_mm"] + 1e-9 and shifts.max() > 0.8
    assert {d.sequence.kind for d in draws} == {"spgr", "mprage"}
    assert len({d.agent for d in draws}) >= 5
    doses = np.array([d.dose for d in draws])
    core_lo, core_hi = SIMULATOR_RANGES["dose_core"]
    core = np.mean((doses >= core_lo) & (doses <= core_hi))
    share = SIMULATOR_RANGES["dose_core_probability"]
    expected = share + (1 - share) * (core_hi - core_lo) / (SIMULATOR_RANGES["dose"][1] - SIMULATOR_RANGES["dose"][0])
    assert abs(core - expected) < 0.08  # the draws are weighted toward the doses users scan with


def test_subvoxel_shift_is_trilinear_interpolation():
    a = np.random.default_rng(0).random((14, 15, 16)).astype(np.float32)
    for voxels in ((0.3, -0.7, 0.0), (1.4, 0.2, -1.1)):
        expected = scipy_shift(a, voxels, order=1, mode="nearest")
        np.testing.assert_allclose(subvoxel_shift(a, voxels)[3:-3, 3:-3, 3:-3], expected[3:-3, 3:-3, 3:-3],
                                   atol=1e-5)


def test_block_local_statistics_match_the_full_resolution_ones():
    rng = np.random.default_rng(0)
    z = (0.02 * (1 + np.linspace(0, 1, 48))[None, None, :] * rng.standard_normal((48, 48, 48))).astype(np.float32)
    image = sitk.GetImageFromArray(z)
    mask = sitk.GetImageFromArray(np.ones(z.shape, np.uint8))
    mask.CopyInformation(image)
    full = [sitk.GetArrayFromImage(x) for x in local_statistics(image, mask, 0.03)]
    coarse = [sitk.GetArrayFromImage(x) for x in local_statistics(image, mask, 0.03, shrink=4)]
    assert coarse[1].shape == full[1].shape
    inner = (slice(16, -16),) * 3  # a kernel sigma (16 voxels of 1 mm) inside the border
    np.testing.assert_allclose(coarse[1][inner], full[1][inner], rtol=0.015)
    assert np.abs(coarse[0] - full[0])[inner].max() < 0.03 * full[1][inner].min()  # mean: within 3 % of s


def test_pair_case_round_trips_through_its_cache_file(tmp_path):
    case = constructed_pair(noise=0.02)
    loaded = PairCase.load(case.save(tmp_path / "pair.npz"))
    assert loaded.case_id == case.case_id and loaded.sigma_sd == case.sigma_sd and loaded.spacing == case.spacing
    for name in PairCase.ARRAYS + ("lesions",):
        assert np.array_equal(getattr(loaded, name), getattr(case, name))


def test_validation_reports_both_simulators_on_the_same_windows():
    case = constructed_pair(noise=0.02)
    samples = validation_samples([case], 16, per_case=2)
    groups = [g for g, _, _ in samples]
    assert sorted(set(groups)) == sorted(f"{s} d{d:g}" for s in SIMULATORS for d in (0.1, 0.33))
    for first, second in zip(samples[::2], samples[1::2]):  # one window, two simulators
        assert np.array_equal(first[1]["p"], second[1]["p"]) and first[0] != second[0]
        assert not np.array_equal(first[1]["x_ld"], second[1]["x_ld"])


def test_kspace_simulator_has_the_standard_dose_noise_and_a_dose_response():
    case = constructed_pair(noise=0.02)
    enhancement = []
    for dose in (0.1, 0.33, 0.6):
        low = low_dose_kspace(case.pre, case.standard_dose, case.b, dose, case.sigma_sd, 1.0, FIELD, seed=0)
        assert (low[case.b == 0] == 0).all()
        region = (case.b > 0) & (case.p == 0)  # measured as preprocessing measures it: over the brain
        assert estimate_noise_sigma(low - case.pre, region) == pytest.approx(case.sigma_sd, rel=0.15)
        enhancement.append(float(np.mean((low - case.pre)[LESION])))
    full = float(np.mean((case.standard_dose - case.pre)[LESION]))
    assert 0.1 * full < enhancement[0] < enhancement[1] < enhancement[2] < full
    with pytest.raises(ValueError, match="outside"):
        low_dose_kspace(case.pre, case.standard_dose, case.b, 1.5, case.sigma_sd)


def test_training_on_pairs_validates_both_simulators_warm_restarts_and_keeps_a_time_budget(tmp_path):
    import torch

    from GadoReduceLib.model.files import load_model
    from GadoReduceLib.model.network import ModelConfig
    from GadoReduceLib.training.data import compute_gamma
    from GadoReduceLib.training.loop import TrainConfig, train
    torch.set_num_threads(1)
    case = constructed_pair(noise=0.02, size=40)
    tiny = ModelConfig(base_features=4, scales=2, blocks_per_scale=1, embedding_dim=8)
    config = TrainConfig(steps=3, patch_size=24, margin=4, validate_every=3, checkpoint_every=3,
                         validation_patches=1, model=tiny)
    result = train([case], [case], tmp_path / "run", config, progress=False, log=lambda *a: None)
    assert result["gamma"] == 1.0
    last = result["history"]["validation"][-1]
    assert {f"{s} d{d:g}/lesion_mae" for s in SIMULATORS for d in (0.1, 0.33)} <= set(last)
    first = load_model(result["paths"]["model"])
    # warm restart from the model file: its weights, a new schedule of 12 steps cut to what fits in the budget
    budget = TrainConfig(steps=40, patch_size=24, margin=4, validate_every=100, checkpoint_every=100,
                         model=tiny, init=str(result["paths"]["model"]), max_minutes=1e-4)
    again = train([case], [], tmp_path / "again", budget, progress=False, log=lambda *a: None)
    assert again["step"] == 11 and "model" in again["paths"]  # 10 timed steps, then the budget is spent
    start = TrainConfig(steps=1, patch_size=24, margin=4, model=tiny, init=str(result["paths"]["model"]),
                        learning_rate=1e-12, final_learning_rate=1e-12)
    same = train([case], [], tmp_path / "same", start, progress=False, log=lambda *a: None)["model"]
    for name, tensor in first.model.state_dict().items():
        assert torch.allclose(same.state_dict()[name], tensor, atol=1e-6)  # started from those weights
    wide = TrainConfig(steps=1, patch_size=24, margin=4, model=ModelConfig(base_features=8, scales=2),
                       init=str(result["paths"]["model"]))
    with pytest.raises(ValueError, match="same --base-features"):
        train([case], [], tmp_path / "wide", wide, progress=False, log=lambda *a: None)
    with pytest.raises(ValueError, match="mixes"):
        from GadoReduceLib.training.data import TrainingCase
        fixed = TrainingCase("f", *(np.zeros((24, 24, 24), np.float32) for _ in range(6)), dose=0.2,
                             field_strength=3.0, relaxivity=5.0, noise_sigma=0.1, scale_ratio=1.2)
        compute_gamma([case, fixed])
