"""Optional input sequences (FLAIR, T2; issue 18): the model configuration, the registration of a sequence to the
pre-contrast, the training sampler's channels, the warm start of a multi-modal network from a T1-only one, and the
errors when a sequence a model needs is missing. Synthetic data for testing, not clinical evidence."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from GadoReduceLib.model.network import (LOW_DOSE_INPUTS, ConditionalUNet, ConditionNormalization, ModelConfig,
                                         choose_sequences, input_tensor, model_inputs)
from GadoReduceLib.training.loop import TrainConfig, check_sequences, init_weights, save_checkpoint, train
from GadoReduceLib.training.patches import augment, collate
from GadoReduceLib.training.simulate import PairCase, simulate_sample

TINY = ModelConfig(base_features=4, scales=2, blocks_per_scale=1, embedding_dim=8)


def test_sequences_add_input_channels_in_one_order():
    config = ModelConfig(base_features=4, sequences=("t2", "flair"))
    assert config.sequences == ("flair", "t2") and config.in_channels == 5
    assert config.inputs == LOW_DOSE_INPUTS + ("flair", "t2")
    assert ModelConfig.from_dict(config.to_dict()) == config
    assert ModelConfig.from_dict({"in_channels": 3, "base_features": 8}).sequences == ()  # older model files
    with pytest.raises(ValueError, match="flair, t2"):
        ModelConfig(sequences=("adc",))
    with pytest.raises(ValueError, match="in_channels is 3"):
        ModelConfig(in_channels=3, sequences=("flair",))


def test_a_missing_sequence_is_an_error_and_an_unused_one_a_note():
    config = dataclasses.replace(TINY, sequences=("flair", "t2"), in_channels=None)
    with pytest.raises(ValueError, match=r"needs the T2 image.*--t2 FILE"):
        choose_sequences(config, {"flair": object()})
    chosen, notes = choose_sequences(TINY, {"flair": 1, "t2": None})
    assert chosen == {} and len(notes) == 1 and "FLAIR" in notes[0] and "not used" in notes[0]
    z = np.zeros((4, 4, 4), np.float32)
    arrays = model_inputs(config, z, z + 1, z + 2, {"t2": z + 4, "flair": z + 3})
    assert [float(a[0, 0, 0]) for a in arrays] == [0, 1, 2, 3, 4]  # z, x, s, FLAIR, T2
    assert input_tensor(*arrays).shape == (1, 5, 4, 4, 4)


def t1_checkpoint(path):
    """(T1-only TINY network, its checkpoint file at ``path``): the start of a warm start."""
    torch.manual_seed(0)
    t1 = ConditionalUNet(TINY)
    optimizer = torch.optim.Adam(t1.parameters())
    save_checkpoint(path, t1, optimizer, torch.optim.lr_scheduler.StepLR(optimizer, 1), 1, {},
                    TrainConfig(model=TINY), ConditionNormalization(), 1.0)
    return t1, path


def test_a_warm_started_multimodal_network_computes_what_the_t1_network_did(tmp_path, rng):
    t1, path = t1_checkpoint(tmp_path / "checkpoint.pt")
    both = ConditionalUNet(dataclasses.replace(TINY, sequences=("flair", "t2"), in_channels=None))
    init_weights(both, path)
    x = torch.from_numpy(rng.normal(size=(1, 3, 16, 16, 16)).astype(np.float32))
    extra = torch.from_numpy(rng.normal(size=(1, 2, 16, 16, 16)).astype(np.float32))
    c = torch.zeros(1, 4)
    with torch.no_grad():
        expected = t1(x, c)
        assert float(expected.abs().max()) > 0
        torch.testing.assert_close(both(torch.cat([x, extra], 1), c), expected, rtol=0, atol=0)
    with pytest.raises(ValueError, match="--init"):  # a different width is no warm start
        init_weights(ConditionalUNet(dataclasses.replace(TINY, base_features=8)), path)


def _pair(rng, sequences=("flair", "t2"), size=40) -> PairCase:
    shape = (size,) * 3
    b = np.zeros(shape, np.uint8)
    b[4:-4, 4:-4, 4:-4] = 1
    pre = np.where(b > 0, 0.8 + 0.02 * rng.standard_normal(shape), 0).astype(np.float32)
    sd = pre.copy()
    p = np.zeros(shape, np.float32)
    p[15:25, 15:25, 15:25] = 1
    sd += 0.4 * p
    seq = {name: (b * (1.0 + k + 0.1 * rng.standard_normal(shape))).astype(np.float32)
           for k, name in enumerate(sequences)}
    return PairCase("pair", pre, sd, b, np.ones(shape, np.uint8), (0.4 * p).astype(np.float32), p, 0.02, 0.8, 3.0,
                    "gadobutrol", sequences=seq)


def test_the_sampler_cuts_the_sequences_with_the_patch(tmp_path, rng):
    case = _pair(rng)
    path = case.save(tmp_path / "pair.npz")
    loaded = PairCase.load(path)
    assert sorted(loaded.sequences) == ["flair", "t2"]
    np.testing.assert_array_equal(loaded.sequences["t2"], case.sequences["t2"])
    patch, conditions = simulate_sample(loaded, np.random.default_rng(3), 24, margin=4)
    # the FLAIR patch is the case's FLAIR at the place where the patch's pre-contrast brain lies
    assert set(patch) >= {"z_ld", "x_ld", "s_ld", "flair", "t2", "y", "p", "b"}
    assert np.all((patch["flair"] > 0) == (patch["b"] > 0))
    assert patch["t2"][patch["b"] > 0].mean() == pytest.approx(2.0, abs=0.05)
    assert patch["flair"][patch["b"] > 0].mean() == pytest.approx(1.0, abs=0.05)
    batch = collate([augment(patch, np.random.default_rng(1))], [conditions], LOW_DOSE_INPUTS + ("flair", "t2"))
    assert batch["inputs"].shape == (1, 5, 24, 24, 24)
    same, _ = simulate_sample(loaded, np.random.default_rng(3), 24, margin=4)
    np.testing.assert_array_equal(same["flair"], patch["flair"])  # same seed, same sample


def test_training_a_multimodal_model_needs_the_sequences_in_every_case(tmp_path, rng):
    config = TrainConfig(steps=2, patch_size=24, margin=4, model=dataclasses.replace(TINY, sequences=("flair",),
                                                                                     in_channels=None),
                         validate_every=2, checkpoint_every=2, threads=1)
    with pytest.raises(ValueError, match="has no FLAIR image"):
        check_sequences([_pair(rng, sequences=("t2",))], ("flair",))
    result = train([_pair(rng)], [_pair(rng)], tmp_path / "run", config, progress=False, log=lambda *a: None)
    assert result["model"].stem.weight.shape[1] == 4
    assert (tmp_path / "run" / "model.pt").is_file()
    from GadoReduceLib.model.files import load_model
    loaded = load_model(tmp_path / "run" / "model.pt")
    assert loaded.config.sequences == ("flair",)
    assert "| input sequences | T1w pre-contrast and low dose + FLAIR |" in (tmp_path / "run" / "model.md").read_text()


def test_pair_sets_refuse_phantoms_for_a_multimodal_model(tmp_path):
    from GadoReduceLib.training.data import pair_sets
    with pytest.raises(ValueError, match="phantoms have no FLAIR"):
        pair_sets(phantoms=1, sequences=("flair",), cache_dir=tmp_path)


def _moved(image: sitk.Image, degrees=(8.0, 0.0, -4.0), shift_mm=(6.0, -4.0, 3.0)) -> sitk.Image:
    """``image`` rotated about its centre and shifted (a patient who moved between the T1w and the FLAIR)."""
    centre = image.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in image.GetSize()])
    motion = sitk.Euler3DTransform(centre, *np.deg2rad(degrees), shift_mm)
    return sitk.Resample(image, image, motion, sitk.sitkBSpline, 0.0, sitk.sitkFloat32)


def test_a_sequence_is_registered_and_normalized_like_the_low_dose(shared_data):
    """A real BraTS FLAIR, moved by 8 degrees and 8 mm, lands back on the pre-contrast grid."""
    from GadoReduceLib.io.cases import find_brats_pairs, read_brats_subject
    from GadoReduceLib.preprocessing.preprocess import preprocess
    pair = next(p for p in find_brats_pairs(shared_data) if "TCIA01_378" in str(p[0]))
    case = read_brats_subject(*pair)
    truth = sitk.Cast(case.sequences["flair"], sitk.sitkFloat32)
    result = preprocess(case.pre_contrast, case.standard_dose, sequences={"flair": _moved(truth)}, backend="itk",
                        warn=False)
    registered = result.sequences["flair"]
    brain = sitk.GetArrayFromImage(result.brain_mask) > 0
    values = sitk.GetArrayFromImage(registered)[brain]
    assert np.percentile(values, 95) == pytest.approx(1.0, abs=0.02)  # its own 95th brain percentile = 1
    expected = sitk.GetArrayFromImage(sitk.Resample(truth, registered))[brain]
    before = np.corrcoef(sitk.GetArrayFromImage(sitk.Resample(_moved(truth), registered))[brain], expected)[0, 1]
    after = np.corrcoef(values, expected)[0, 1]
    assert after > 0.98 and after > before + 0.2, (before, after)
    assert result.qc["flair"]["brain_coverage"] > 0.95 and not result.qc["flair"]["warnings"]
    assert "flair_registered" in result.outputs()


@pytest.fixture(scope="module")
def phantom():
    from GadoReduceLib.phantom.generate import PhantomConfig, generate_phantom
    return generate_phantom(PhantomConfig(seed=3, size="small", doses=(0.25,)))


def test_an_unknown_or_broken_sequence_is_refused_before_registration(phantom):
    from GadoReduceLib.preprocessing.preprocess import preprocess
    with pytest.raises(ValueError, match="unknown input sequences"):
        preprocess(phantom.pre_contrast, phantom.low_dose[0.25], sequences={"adc": phantom.pre_contrast})
    flat = sitk.Image(phantom.pre_contrast.GetSize(), sitk.sitkFloat32)
    flat.CopyInformation(phantom.pre_contrast)
    with pytest.raises(ValueError, match="The FLAIR image is constant"):
        preprocess(phantom.pre_contrast, phantom.low_dose[0.25], sequences={"flair": flat})


def test_predict_takes_flair_and_t2_for_a_multimodal_model(tmp_path, phantom, capsys):
    """``gadoreduce predict --flair --t2`` with a multi-modal model: the sequences are registered and recorded; the
    missing one is named with its option before anything is written; a T1-only model notes an unused one."""
    import json
    from GadoReduceLib import cli
    from GadoReduceLib.io.imageio import write_image
    from GadoReduceLib.model.files import save_model
    from GadoReduceLib.pipeline import RECORD_FILE
    torch.manual_seed(4)
    config = dataclasses.replace(TINY, sequences=("flair", "t2"), in_channels=None)
    model = save_model(tmp_path / "mm.pt", ConditionalUNet(config), config, ConditionNormalization(), 1.0,
                       {"name": "tiny-mm"})
    pre = write_image(phantom.pre_contrast, tmp_path / "in" / "pre.nii.gz")
    low = write_image(phantom.low_dose[0.25], tmp_path / "in" / "low.nii.gz")
    flair = write_image(phantom.pre_contrast, tmp_path / "in" / "flair.nii.gz")  # stand-ins of the same grid
    t2 = write_image(phantom.pre_contrast, tmp_path / "in" / "t2.nii.gz")
    args = ["predict", "--pre", str(pre), "--low", str(low), "--dose", "0.25", "--field-strength", "3",
            "--device", "cpu", "--model", str(model), "--tta", "1"]
    assert cli.main(args + ["--flair", str(flair), "--output", str(tmp_path / "none")]) == 2
    assert "needs the T2 image" in capsys.readouterr().err and not (tmp_path / "none").exists()
    out = tmp_path / "out"
    assert cli.main(args + ["--flair", str(flair), "--t2", str(t2), "--output", str(out)]) == 0
    record = json.loads((out / RECORD_FILE).read_text())
    assert record["sequences"] == ["flair", "t2"] and {"flair", "t2"} <= set(record["inputs"])
    assert (out / "synthetic_standard_dose.nii.gz").is_file()
