"""Uncertainty maps and ensembles (issue 18): running moments, ensemble model files, the spread of identical and of
different members, calibration figures, the region column and ``train --folds``. Tiny random-weight networks and
constructed cases; research software, not for diagnosis."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from GadoReduceLib.inference.predict import model_contrast_signal
from GadoReduceLib.inference.regions import region_statistics
from GadoReduceLib.inference.uncertainty import RunningMoments, calibration, passes
from GadoReduceLib.model.checksums import ModelFileError
from GadoReduceLib.model.files import (ENSEMBLE_VERSION, LoadedModel, card_path, checksum_path, load_model,
                                       read_header, save_ensemble, save_model)
from GadoReduceLib.model.network import ConditionalUNet, ConditionNormalization, ModelConfig

SMALL = ModelConfig(base_features=4, scales=2, blocks_per_scale=1)


def _network(seed: int, config=SMALL) -> ConditionalUNet:
    torch.manual_seed(seed)
    model = ConditionalUNet(config).eval()
    with torch.no_grad():
        model.head.bias.fill_(0.05)  # most ReLU outputs positive
    return model


def _saved(tmp_path, name: str, seed: int, gamma: float, config=SMALL):
    path = save_model(tmp_path / f"{name}.pt", _network(seed, config), config, ConditionNormalization(), gamma,
                      {"name": name})
    return load_model(path)


def _inputs(shape=(16, 24, 20), seed=0):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=shape).astype(np.float32)
    x = (1 + 0.1 * rng.normal(size=shape)).astype(np.float32)
    s = (0.05 + 0.01 * rng.random(shape)).astype(np.float32)
    return z, x, s


def _predict(loaded, tta=1, uncertainty=True):
    z, x, s = _inputs()
    return model_contrast_signal(loaded, z, x, s, 0.03, 0.25, 3.0, "gadobutrol", tile=None, tta=tta,
                                 uncertainty=uncertainty)


def test_running_moments_match_numpy_and_identical_passes_give_zero():
    rng = np.random.default_rng(1)
    stack = rng.normal(3.0, 0.5, size=(6, 5, 7, 4)).astype(np.float32)
    moments = RunningMoments()
    for array in stack:
        moments.add(array)
    np.testing.assert_allclose(moments.mean, stack.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(moments.std(), stack.std(0), rtol=1e-4, atol=1e-6)
    same = RunningMoments()
    for _ in range(4):
        same.add(stack[0])
    assert (same.std() == 0).all() and (same.mean == stack[0]).all()
    with pytest.raises(ValueError, match="shape"):
        moments.add(np.zeros((2, 2, 2), np.float32))
    with pytest.raises(ValueError, match="mean only"):
        mean_only = RunningMoments(spread=False)
        mean_only.add(stack[0])
        mean_only.std()


def test_identical_member_ensemble_gives_zero_uncertainty_and_the_member_s_prediction(tmp_path):
    member = _saved(tmp_path, "member", seed=0, gamma=1.3)
    copy = _saved(tmp_path, "copy", seed=0, gamma=1.3)
    path = save_ensemble(tmp_path / "ensemble.pt", [member, copy], {"name": "identical"})
    ensemble = load_model(path)
    assert len(ensemble.networks()) == 2 and passes(ensemble, 3) == 6
    contrast, uncertainty = _predict(ensemble)
    assert (uncertainty == 0).all()
    single = _predict(member, uncertainty=False)
    assert single.max() > 0
    np.testing.assert_allclose(contrast, single, rtol=1e-6, atol=1e-7 * single.max())


def test_different_members_average_with_their_own_gamma_and_spread(tmp_path):
    a = _saved(tmp_path, "a", seed=0, gamma=1.0)
    b = _saved(tmp_path, "b", seed=1, gamma=2.0)
    ensemble = load_model(save_ensemble(tmp_path / "ab.pt", [a, b]))
    contrast, uncertainty = _predict(ensemble)
    ya, yb = _predict(a, uncertainty=False), _predict(b, uncertainty=False)
    np.testing.assert_allclose(contrast, (ya + yb) / 2, rtol=1e-5, atol=1e-6 * contrast.max())
    np.testing.assert_allclose(uncertainty, np.abs(ya - yb) / 2, rtol=1e-4, atol=1e-6 * contrast.max())
    assert uncertainty.max() > 0.01 * contrast.max()
    # flips of one network: a spread of its own (the network is not flip-equivariant), mean as tta
    flipped_mean, flipped_spread = _predict(a, tta=4)
    np.testing.assert_allclose(flipped_mean, _predict(a, tta=4, uncertainty=False), rtol=1e-6, atol=1e-8)
    assert flipped_spread.max() > 0


def test_ensemble_file_card_and_bad_ensembles(tmp_path):
    a = _saved(tmp_path, "a", seed=0, gamma=1.0)
    b = _saved(tmp_path, "b", seed=1, gamma=2.0)
    path = save_ensemble(tmp_path / "ab.pt", [a, b], {"name": "two members"})
    header, states = read_header(path)
    assert header["format_version"] == ENSEMBLE_VERSION and len(states) == 2
    assert [m["gamma"] for m in header["members"]] == [1.0, 2.0] and header["gamma"] == 1.5
    card = card_path(path).read_text()
    assert "## Ensemble members" in card and "a.pt" in card and "b.pt" in card
    other = _saved(tmp_path, "wide", seed=2, gamma=1.0, config=ModelConfig(base_features=8, scales=2,
                                                                           blocks_per_scale=1))
    with pytest.raises(ValueError, match="member 2 .* another network configuration"):
        save_ensemble(tmp_path / "bad.pt", [a, other])
    with pytest.raises(ValueError, match="at least 2 single models"):
        save_ensemble(tmp_path / "bad.pt", [a])
    with pytest.raises(ValueError, match="at least 2 single models"):
        save_ensemble(tmp_path / "bad.pt", [load_model(path), a])
    assert not (tmp_path / "bad.pt").exists()
    data = bytearray(path.read_bytes())
    data[-40] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="sha256|checksum"):
        load_model(path)
    assert checksum_path(path).is_file()


def test_calibration_rises_with_uncertainty_and_refuses_bad_shapes():
    rng = np.random.default_rng(3)
    uncertainty = rng.random((10, 12, 14)).astype(np.float32)
    error = (uncertainty * rng.normal(size=uncertainty.shape)).astype(np.float32)  # |error| scales with it
    mask = np.ones(uncertainty.shape, bool)
    result = calibration(error, uncertainty, mask)
    assert result["spearman"] > 0.3
    errors = [b["mean_abs_error"] for b in result["bins"]]
    assert errors[-1] > 3 * errors[0] and sum(b["voxels"] for b in result["bins"]) == mask.sum()
    unrelated = calibration(rng.normal(size=uncertainty.shape), uncertainty, mask)
    assert abs(unrelated["spearman"]) < 0.1
    with pytest.raises(ValueError, match="one shape"):
        calibration(error[:-1], uncertainty, mask)
    with pytest.raises(ValueError, match="fewer than"):
        calibration(error, uncertainty, np.zeros_like(mask))


def test_region_table_gets_the_mean_uncertainty_of_each_region():
    labels = np.zeros((8, 9, 10), np.uint16)
    labels[1:3, 1:3, 1:3] = 1
    labels[5:8, 5:8, 5:8] = 2
    spread = np.zeros(labels.shape, np.float32)
    spread[labels == 1] = 0.2
    spread[labels == 2] = np.linspace(0.0, 1.0, 27, dtype=np.float32)
    image = lambda a: sitk.GetImageFromArray(a)  # noqa: E731
    contrast = image(np.ones(labels.shape, np.float32))
    rows = region_statistics(image(labels), contrast, uncertainty=image(spread))
    assert [r["mean_uncertainty"] for r in rows] == pytest.approx([0.2, 0.5])
    assert "mean_uncertainty" not in region_statistics(image(labels), contrast)[0]
    shifted = image(spread)
    shifted.SetOrigin((1.0, 0.0, 0.0))
    with pytest.raises(ValueError, match="uncertainty"):
        region_statistics(image(labels), contrast, uncertainty=shifted)


def test_train_folds_makes_disjoint_folds_and_an_ensemble(tmp_path):
    from test_train import small_config, synthetic_case
    from GadoReduceLib.training.cli import fold_split, train_folds
    cases = [synthetic_case(s) for s in (1, 2, 3, 4)]
    splits = fold_split(cases, 2, seed=0)
    validation_ids = [sorted(c.case_id for c in v) for _, v in splits]
    assert sorted(sum(validation_ids, [])) == sorted(c.case_id for c in cases)  # every case validates once
    for training, validation in splits:
        assert not {c.case_id for c in training} & {c.case_id for c in validation}
        assert len(training) + len(validation) == len(cases)
    with pytest.raises(ValueError, match="--folds 5"):
        fold_split(cases, 5)
    with pytest.raises(ValueError, match="--folds 1"):
        fold_split(cases, 1)
    path = train_folds(cases, 2, tmp_path, small_config(steps=3), resume=False, log=lambda *a: None)
    ensemble = load_model(path)
    assert len(ensemble.networks()) == 2 and (tmp_path / "fold_0" / "model.pt").is_file()
    first, second = (dict(network.state_dict()) for network, _ in ensemble.networks())
    assert any(not torch.equal(first[k], second[k]) for k in first)  # seeds seed + k: different members
    assert isinstance(ensemble, LoadedModel) and "2 members" in card_path(path).read_text()


def test_pipeline_asks_a_single_model_for_enough_flips_for_an_uncertainty_map(tmp_path):
    from GadoReduceLib.inference.region_defaults import UNCERTAINTY_TTA
    from GadoReduceLib.pipeline import Pipeline
    single = _saved(tmp_path, "single", seed=0, gamma=1.0)
    assert Pipeline(single, device="cpu").passes == 1
    assert Pipeline(single, device="cpu", uncertainty=True).tta == UNCERTAINTY_TTA >= 2
    assert Pipeline(single, device="cpu", uncertainty=True, tta=3).tta == 3
    ensemble = load_model(save_ensemble(tmp_path / "e.pt", [single, _saved(tmp_path, "other", seed=1, gamma=1.0)]))
    pipeline = Pipeline(ensemble, device="cpu", uncertainty=True)
    assert pipeline.tta == 1 and pipeline.passes == 2  # the members' spread needs no flips

