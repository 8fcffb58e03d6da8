"""Synthetic low dose from pre/post pairs: a phantom with known relaxation, real BraTS pairs, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image
from scipy import ndimage

from GadoReduceLib.physics import signal as physics
from GadoReduceLib.physics.agents import get_agent, native_t1
from GadoReduceLib.cli import main
from GadoReduceLib.physics.lowdose import synthesize_low_dose
from GadoReduceLib.preprocessing.noise_estimate import estimate_noise_sigma

SUBJECT = "Brats18_2013_20_1"


def _image(array, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0)):
    img = sitk.GetImageFromArray(np.asarray(array, dtype=np.float32))
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    return img


def _phantom(rng, scale_post=2.0, noise=0.002, kind="spgr"):
    """White-matter ellipsoid with an enhancing lesion sphere (0.25 mM gadobutrol at 3 T), SPGR or MPRAGE
    signals, post-contrast on a different intensity scale, Gaussian noise. Returns pre, post, lesion, brain."""
    seq = physics.default_sequence(3.0, kind)
    k, j, i = np.mgrid[:40, :48, :48]
    brain = ((k - 20) / 17) ** 2 + ((j - 24) / 21) ** 2 + ((i - 24) / 21) ** 2 < 1
    lesion = (k - 20) ** 2 + (j - 24) ** 2 + (i - 30) ** 2 < 6 ** 2
    t1 = np.where(lesion, native_t1("lesion", 3.0), native_t1("white_matter", 3.0))
    conc = np.where(lesion, 0.25, 0.0)
    r1_agent = get_agent("gadobutrol").relaxivity(3.0)
    pre = physics.signal(1.0, physics.r1_with_agent(t1, r1_agent, 0.0), seq)
    post = physics.signal(1.0, physics.r1_with_agent(t1, r1_agent, conc), seq)
    pre = np.where(brain, pre + noise * rng.standard_normal(pre.shape), 0.0)
    post = np.where(brain, scale_post * (post + noise * rng.standard_normal(post.shape)), 0.0)
    return _image(pre), _image(post), lesion, brain


@pytest.mark.parametrize("kind", ["spgr", "mprage"])
def test_phantom_low_dose_follows_the_signal_model(rng, kind):
    pre, post, lesion, brain = _phantom(rng, kind=kind)
    seq = physics.default_sequence(3.0, kind)
    for dose in (0.1, 0.33):
        low, params = synthesize_low_dose(pre, post, dose, sequence=seq, seed=3)
        assert params["intensity_scale_pre_to_standard_dose"] == pytest.approx(2.0, rel=0.02)
        pre_s = sitk.GetArrayFromImage(pre) * params["intensity_scale_pre_to_standard_dose"]
        low_a = sitk.GetArrayFromImage(low)
        got = np.mean((low_a - pre_s)[lesion]) / np.mean(pre_s[lesion])
        expected = physics.relative_enhancement(native_t1("lesion", 3.0), get_agent("gadobutrol"), 3.0,
                                                0.25 * dose, seq)
        assert got == pytest.approx(expected, rel=0.05)
        # and clearly not the linear dose * (post - pre)
        linear = dose * np.mean((sitk.GetArrayFromImage(post) - pre_s)[lesion]) / np.mean(pre_s[lesion])
        assert got > 1.05 * linear
        # noise: the low-dose subtraction keeps the standard-dose subtraction's noise level
        assert params["noise_sigma_low_dose_subtraction"] == pytest.approx(
            params["noise_sigma_standard_dose_subtraction"], rel=0.1)
        assert params["noise_sigma_added"] == pytest.approx(
            params["noise_sigma_standard_dose_subtraction"] * np.sqrt(1 - dose ** 2))
        assert np.all(low_a[~brain] == 0)                     # zero background stays zero
    # dose 1 gives the standard-dose image back
    full, _ = synthesize_low_dose(pre, post, 1.0, sequence=seq)
    np.testing.assert_allclose(sitk.GetArrayFromImage(full), sitk.GetArrayFromImage(post), rtol=1e-5, atol=1e-6)


def test_seed_reproducible_and_geometry_kept(rng):
    pre, post, _, _ = _phantom(rng)
    pre.SetOrigin((10.0, -5.0, 3.0))
    pre.SetSpacing((1.2, 1.2, 2.0))
    post.CopyInformation(pre)
    a, _ = synthesize_low_dose(pre, post, 0.33, seed=7)
    b, _ = synthesize_low_dose(pre, post, 0.33, seed=7)
    c, _ = synthesize_low_dose(pre, post, 0.33, seed=8)
    assert sitk.GetArrayFromImage(a).tobytes() == sitk.GetArrayFromImage(b).tobytes()
    assert sitk.GetArrayFromImage(a).tobytes() != sitk.GetArrayFromImage(c).tobytes()
    assert a.GetOrigin() == pre.GetOrigin() and a.GetSpacing() == pre.GetSpacing()
    assert a.GetDirection() == pre.GetDirection() and a.GetSize() == pre.GetSize()


def test_bad_inputs(rng):
    pre, post, _, brain = _phantom(rng)
    for dose in (0.0, -0.2, 1.5, 33, float("nan"), "abc"):
        with pytest.raises(ValueError, match="dose"):
            synthesize_low_dose(pre, post, dose)
    with pytest.raises(ValueError, match="unknown contrast agent"):
        synthesize_low_dose(pre, post, 0.33, agent="Gadoliniumix")
    with pytest.raises(ValueError, match="field strength"):
        synthesize_low_dose(pre, post, 0.33, field_strength=7.0)
    shifted = sitk.Image(post)
    shifted.SetOrigin((0.0, 0.0, 5.0))
    with pytest.raises(ValueError, match="not on the pre-contrast grid"):
        synthesize_low_dose(pre, shifted, 0.33)
    with pytest.raises(ValueError, match="not on the pre-contrast grid"):
        synthesize_low_dose(pre, post[:, :, :20], 0.33)
    with pytest.raises(ValueError, match="3D"):
        synthesize_low_dose(_image(np.ones((1, 8, 8)))[:, :, 0], post, 0.33)
    with pytest.raises(ValueError, match="brain mask"):
        synthesize_low_dose(pre, post, 0.33, brain_mask=_image(np.zeros(sitk.GetArrayFromImage(pre).shape)))
    with pytest.raises(ValueError, match="shape"):
        estimate_noise_sigma(np.zeros((4, 4)), np.ones((3, 3), bool))
    with pytest.raises(ValueError, match="negative"):
        estimate_noise_sigma(np.ones((10, 10, 10)), None)


def test_noise_estimate_recovers_gaussian_sigma_despite_enhancement(rng):
    z = 3.0 * rng.standard_normal((40, 40, 40))
    z[10:20, 10:20, 10:20] += 50.0                          # enhancement: positive only
    assert estimate_noise_sigma(z) == pytest.approx(3.0, rel=0.03)


# ---------------------------------------------------------------- real BraTS pairs

@pytest.fixture(scope="module")
def brats(shared_data):
    folder = shared_data / "brats18" / SUBJECT
    if not folder.is_dir():
        pytest.skip(f"{folder} not found")
    read = lambda suffix: sitk.ReadImage(str(folder / f"{SUBJECT}_{suffix}.nii.gz"))  # noqa: E731
    return read("t1"), read("t1ce"), sitk.GetArrayFromImage(read("seg"))


def test_brats_enhancement_and_noise_level(brats):
    pre, post, seg = brats
    pre_a = sitk.GetArrayFromImage(pre).astype(float)
    post_a = sitk.GetArrayFromImage(post).astype(float)
    tumour = seg == 4
    healthy = (pre_a > 0) & (post_a > 0) & ~ndimage.binary_dilation(seg > 0, iterations=3)
    fractions = []
    for dose in (0.1, 0.33):
        low, params = synthesize_low_dose(pre, post, dose, seed=1)
        pre_s = pre_a * params["intensity_scale_pre_to_standard_dose"]
        low_a = sitk.GetArrayFromImage(low).astype(float)
        fraction = np.mean((low_a - pre_s)[tumour]) / np.mean((post_a - pre_s)[tumour])
        fractions.append(fraction)
        sigma_low = estimate_noise_sigma(low_a - pre_s, healthy)
        sigma_std = estimate_noise_sigma(post_a - pre_s, healthy)
        assert sigma_low == pytest.approx(sigma_std, rel=0.15), (dose, sigma_low, sigma_std)
    assert 0.25 <= fractions[1] <= 0.60
    assert fractions[0] < fractions[1]
    assert fractions[0] > 0.1 and fractions[1] > 0.33          # saturation: more than proportional


def _downsample(image, spacing=2.0, nearest=False):
    size = [int(round(s * sp / spacing)) for s, sp in zip(image.GetSize(), image.GetSpacing())]
    return sitk.Resample(image, size, sitk.Transform(), sitk.sitkNearestNeighbor if nearest else sitk.sitkLinear,
                         image.GetOrigin(), (spacing,) * 3, image.GetDirection(), 0.0, image.GetPixelID())


def test_cli_writes_images_sidecars_and_preview(brats, tmp_path, capsys):
    pre, post, seg = brats
    paths = {}
    for name, img in (("pre", _downsample(pre)), ("post", _downsample(post)),
                      ("seg", _downsample(sitk.GetImageFromArray(seg), nearest=True))):
        if name == "seg":
            img.CopyInformation(_downsample(pre))
        paths[name] = tmp_path / f"{name}.nii.gz"
        sitk.WriteImage(img, str(paths[name]))
    out = tmp_path / "out"
    args = ["synth", "lowdose", "--pre", str(paths["pre"]), "--post", str(paths["post"]), "--dose", "0.33",
            "--dose", "0.1", "--output", str(out), "--agent", "Dotarem", "--field-strength", "1.5", "--seed", "5",
            "--preview", str(tmp_path / "preview.png"), "--labels", str(paths["seg"])]
    assert main(args) == 0
    sidecar = json.loads((out / "low_dose_033.json").read_text())
    assert sidecar["dose"] == 0.33 and sidecar["agent"] == "gadoterate" and sidecar["seed"] == 5
    assert sidecar["field_strength_T"] == 1.5 and sidecar["sequence"]["kind"] == "spgr"
    assert sidecar["relaxivity_L_per_mmol_s"] == pytest.approx(3.9)
    assert sidecar["noise_sigma_low_dose_subtraction"] > 0
    low = sitk.ReadImage(str(out / "low_dose_010.nii.gz"))
    ref = sitk.ReadImage(str(paths["pre"]))
    assert low.GetSize() == ref.GetSize() and low.GetOrigin() == ref.GetOrigin()
    assert low.GetSpacing() == ref.GetSpacing()
    png = np.asarray(Image.open(tmp_path / "preview.png"))
    assert png.shape[1] == 240 * 5                               # pre, two low doses, standard, labels
    first = (out / "low_dose_033.nii.gz").read_bytes()
    assert main(args[:-4]) == 0                                  # same seed again: identical bytes
    assert (out / "low_dose_033.nii.gz").read_bytes() == first
    assert main(args[:-4] + ["--seed", "6"]) == 0
    assert (out / "low_dose_033.nii.gz").read_bytes() != first
    capsys.readouterr()
    bad = tmp_path / "bad"
    assert main(["synth", "lowdose", "--pre", str(paths["pre"]), "--post", str(paths["post"]), "--dose", "33",
                 "--output", str(bad)]) == 2
    assert "dose 33 is outside (0, 1]" in capsys.readouterr().err
    assert not bad.exists()


def test_default_mask_without_zero_background_uses_otsu(rng):
    pre, post, lesion, brain = _phantom(rng)
    # not skull-stripped: a dim noisy background instead of exact zeros
    background = lambda: np.abs(0.003 * rng.standard_normal(brain.shape))  # noqa: E731
    pre_a = np.where(brain, sitk.GetArrayFromImage(pre), background())
    post_a = np.where(brain, sitk.GetArrayFromImage(post), 2.0 * background())
    low, params = synthesize_low_dose(_image(pre_a), _image(post_a), 0.33)
    assert params["brain_voxels"] == pytest.approx(brain.sum(), rel=0.05)
    assert params["intensity_scale_pre_to_standard_dose"] == pytest.approx(2.0, rel=0.02)
    low_a = sitk.GetArrayFromImage(low)
    assert np.mean(low_a[lesion]) > np.mean(low_a[brain & ~lesion])     # the lesion still enhances
