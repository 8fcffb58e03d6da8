"""Zero-dose models (issue 18, papers 002-004): no low-dose input, the standard-dose contrast signal predicted from
the pre-contrast T1w and the optional sequences alone. Configuration, sampler, inference, training and the warm
start from a low-dose model. Synthetic data for testing, not clinical evidence."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from GadoReduceLib.model.files import LoadedModel
from GadoReduceLib.model.network import (ZERO_DOSE_CONDITIONS, ConditionalUNet, ConditionNormalization, ModelConfig,
                                         input_tensor)
from GadoReduceLib.physics.agents import get_agent
from GadoReduceLib.training.loop import TrainConfig, check_zero_dose, init_weights, train
from GadoReduceLib.training.simulate import validation_samples, zero_dose_sample
from test_sequences import TINY, _pair, t1_checkpoint

ZERO = dataclasses.replace(TINY, sequences=("flair", "t2"), low_dose=False, in_channels=None)


def test_a_zero_dose_model_reads_the_pre_contrast_and_the_sequences():
    assert ZERO.inputs == ("x_pc", "flair", "t2") and ZERO.in_channels == 3
    assert ModelConfig.from_dict(ZERO.to_dict()) == ZERO
    assert ModelConfig.from_dict({"in_channels": 3, "base_features": 8}).low_dose is True  # older model files
    with pytest.raises(ValueError, match="True or False"):
        ModelConfig(low_dose="no")


def test_the_zero_dose_sample_is_the_pair_itself(rng):
    """No low dose is made: the inputs are the pair's pre-contrast and sequences, the target its contrast signal."""
    case = _pair(rng)
    patch, conditions = zero_dose_sample(case, np.random.default_rng(2), 24, enhancing_fraction=1.0)
    assert {"x_pc", "flair", "t2", "y", "p", "b"} <= set(patch) and "z_ld" not in patch
    assert patch["p"].sum() > 0  # centred on the enhancement
    for name, full in (("x_pc", case.pre), ("y", case.signal_sd), ("t2", case.sequences["t2"])):
        found = [(k, j, i) for k in range(17) for j in range(17) for i in range(17)
                 if np.array_equal(full[k:k + 24, j:j + 24, i:i + 24], patch[name])]
        assert found, name
    relaxivity = get_agent(case.agent).relaxivity(case.field_strength)
    assert conditions == pytest.approx((ZERO_DOSE_CONDITIONS["dose"], case.field_strength, relaxivity,
                                        ZERO_DOSE_CONDITIONS["noise_sigma"]))
    again, _ = zero_dose_sample(case, np.random.default_rng(2), 24, enhancing_fraction=1.0)
    np.testing.assert_array_equal(again["y"], patch["y"])  # same seed, same sample
    groups = {g for g, _, _ in validation_samples([case], 24, per_case=2, zero_dose=True)}
    assert groups == {"zero-dose"}


def test_zero_dose_inference_is_the_network_output_without_the_low_dose(rng):
    from GadoReduceLib.inference.predict import model_contrast_signal
    torch.manual_seed(3)
    network = ConditionalUNet(ZERO).eval()
    normalization = ConditionNormalization()
    loaded = LoadedModel(network, ZERO, normalization, 1.5)
    shape = (16, 16, 16)
    pre, flair, t2 = (rng.random(shape, dtype=np.float32) for _ in range(3))
    tissue = np.ones(shape, bool)
    tissue[:2] = False
    y = model_contrast_signal(loaded, None, None, None, 0.03, 0.1, 3.0, "gadobutrol", tile=None, tissue=tissue,
                              sequences={"flair": flair, "t2": t2}, pre_contrast=pre)
    conditions = normalization.normalize(0.0, 3.0, get_agent("gadobutrol").relaxivity(3.0), 0.0)
    with torch.no_grad():
        expected = 1.5 * network(input_tensor(pre, flair, t2), conditions)[0, 0].numpy()
    assert float(np.abs(expected[2:]).max()) > 0
    np.testing.assert_allclose(y[2:], expected[2:], rtol=1e-5, atol=1e-6)  # gamma y^, no s_LD / sigma_LD
    assert not y[:2].any()  # 0 outside the tissue
    other = model_contrast_signal(loaded, None, None, None, 0.09, 0.33, 3.0, "gadobutrol", tile=None, tissue=tissue,
                                  sequences={"flair": flair, "t2": t2}, pre_contrast=pre)
    np.testing.assert_array_equal(other, y)  # dose and noise of a low dose play no part
    with pytest.raises(ValueError, match="pre_contrast"):
        model_contrast_signal(loaded, None, None, None, 0.03, 0.1, 3.0, "gadobutrol", sequences={"flair": flair,
                                                                                               "t2": t2})


def test_a_zero_dose_model_trains_on_pairs_only(tmp_path, rng):
    config = TrainConfig(steps=2, patch_size=24, margin=4, model=ZERO, validate_every=2, checkpoint_every=2,
                         threads=1)
    result = train([_pair(rng)], [_pair(rng)], tmp_path / "run", config, progress=False, log=lambda *a: None)
    assert result["model"].stem.weight.shape[1] == 3
    assert result["history"]["validation"][-1]["zero-dose/lesion_mae"] is not None
    card = (tmp_path / "run" / "model.md").read_text()
    assert "| input sequences | T1w pre-contrast only (zero dose) + FLAIR + T2 |" in card
    from GadoReduceLib.training.data import TrainingCase
    with pytest.raises(ValueError, match="pre-contrast / standard-dose pairs"):
        check_zero_dose([object.__new__(TrainingCase)], ZERO)


def test_a_zero_dose_warm_start_keeps_the_low_dose_network_but_its_stem(tmp_path):
    t1, path = t1_checkpoint(tmp_path / "checkpoint.pt")
    zero = ConditionalUNet(ZERO)
    init_weights(zero, path)
    old, new = t1.state_dict(), zero.state_dict()
    torch.testing.assert_close(new["stem.weight"][:, 0], old["stem.weight"][:, TINY.inputs.index("x_ld")])
    assert not new["stem.weight"][:, 1:].any()  # FLAIR and T2 start at zero
    assert all(torch.equal(new[k], old[k]) for k in old if k != "stem.weight")


def test_predict_dose_0_is_a_labelled_zero_dose_prediction_from_the_pre_contrast(tmp_path, capsys):
    """``gadoreduce predict --dose 0`` with a zero-dose model: no low dose is read or written, the record, its
    warnings and the montage say zero-dose, the synthetic standard dose is the pre-contrast outside the tissue;
    every mismatch of dose, low dose and model is refused before anything is written."""
    import json

    import SimpleITK as sitk

    from GadoReduceLib import cli
    from GadoReduceLib.io.imageio import write_image
    from GadoReduceLib.model.files import save_model
    from GadoReduceLib.phantom.generate import PhantomConfig, generate_phantom
    from GadoReduceLib.pipeline import RECORD_FILE, ZERO_DOSE_NOTE
    phantom = generate_phantom(PhantomConfig(seed=5, size="small", doses=(0.25,)))
    torch.manual_seed(6)
    zero = dataclasses.replace(TINY, low_dose=False, in_channels=None)  # T1w pre-contrast only
    model = save_model(tmp_path / "zero.pt", ConditionalUNet(zero), zero, ConditionNormalization(), 1.0,
                       {"name": "tiny-zero"})
    pre = write_image(phantom.pre_contrast, tmp_path / "in" / "pre.nii.gz")
    low = write_image(phantom.low_dose[0.25], tmp_path / "in" / "low.nii.gz")
    common = ["predict", "--pre", str(pre), "--field-strength", "3", "--device", "cpu", "--tta", "1"]
    refused = [(["--dose", "0", "--low", str(low), "--model", str(model)], "takes no low-dose image"),
               (["--dose", "0"], "predicts from a low dose"),  # the shipped low-dose model
               (["--dose", "0.25", "--low", str(low), "--model", str(model)], "this is a zero-dose model")]
    for extra, message in refused:
        assert cli.main(common + extra + ["--output", str(tmp_path / "none")]) == 2
        assert message in capsys.readouterr().err and not (tmp_path / "none").exists()
    out = tmp_path / "out"
    assert cli.main(common + ["--dose", "0", "--model", str(model), "--output", str(out)]) == 0
    record = json.loads((out / RECORD_FILE).read_text())
    assert record["zero_dose"] is True and record["dose"] == 0.0 and record["warnings"][0] == ZERO_DOSE_NOTE
    assert "low_dose" not in record["inputs"] and record["noise_sigma"] > 0
    written = {path.name for path in out.iterdir()}
    assert {"synthetic_standard_dose.nii.gz", "contrast_signal.nii.gz", "prediction.png"} <= written
    assert not written & {"beyond_standard_dose.nii.gz", "low_dose_registered.nii.gz",
                          "normalized_subtraction.nii.gz"}
    synthetic = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "synthetic_standard_dose.nii.gz")))
    contrast = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "contrast_signal.nii.gz")))
    pre_array = sitk.GetArrayFromImage(phantom.pre_contrast).astype(np.float32)
    np.testing.assert_array_equal(synthetic[contrast == 0], pre_array[contrast == 0])
    assert (contrast == 0).any() and (contrast != 0).any()


def test_the_zero_dose_noise_sigma_is_the_subtraction_noise_of_two_scans(rng):
    """Neighbouring-voxel differences of one noisy scan have the noise of a subtraction of two (sqrt(2) sigma)."""
    import SimpleITK as sitk

    from GadoReduceLib.preprocessing.preprocess import zero_dose_noise_sigma
    sigma = 0.05
    k, j, i = np.meshgrid(*(np.linspace(0, 1, 48),) * 3, indexing="ij")
    smooth = (1.0 + 0.2 * np.sin(3 * i) * np.cos(2 * j)).astype(np.float32)  # slowly varying anatomy
    scan = sitk.GetImageFromArray(smooth + rng.normal(0, sigma, smooth.shape).astype(np.float32))
    mask = sitk.GetImageFromArray(np.ones(smooth.shape, np.uint8))
    assert zero_dose_noise_sigma(scan, mask) == pytest.approx(np.sqrt(2) * sigma, rel=0.05)
