"""``gadoreduce evaluate``: end to end on one small phantom with a tiny random model, baselines' analytic
properties, reproducible files, case sources and bad inputs (issue 7)."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from GadoReduceLib import DISCLAIMER, __version__
from GadoReduceLib.evaluation import evaluate as ev
from GadoReduceLib.cli import main
from GadoReduceLib.evaluation.cases import folder_cases, low_dose_for, low_dose_seed
from GadoReduceLib.io.cases import Case, check_doses, lesion_labels_from
from GadoReduceLib.evaluation.figures import BOX_METRICS
from GadoReduceLib.evaluation.report import METRICS, SYNTHETIC_NOTE, summary_markdown
from GadoReduceLib.model.network import ConditionalUNet, ConditionNormalization, ModelConfig
from GadoReduceLib.model.files import save_model, sha256_of

DOSE = 0.2
METHODS = ("low_dose", "linear_scaling", "gadoreduce", "gadoreduce_fixed_condition", "standard_dose")


def _read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    torch.manual_seed(7)
    config = ModelConfig(base_features=4, scales=2, blocks_per_scale=1)
    model = ConditionalUNet(config)
    with torch.no_grad():  # make the random output visibly non-zero
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return save_model(tmp_path_factory.mktemp("model") / "tiny.pt", model, config, ConditionNormalization(), 1.0,
                      {"name": "tiny-random"})


@pytest.fixture(scope="module")
def run_twice(tmp_path_factory, tiny_model):
    """The command run twice with the same arguments (the second reuses the preprocessing cache)."""
    out = tmp_path_factory.mktemp("evaluation") / "out"
    argv = ["evaluate", "--phantoms", "1", "--phantom-seed", "3", "--phantom-size", "small", "--doses", str(DOSE),
            "--output", str(out), "--model", str(tiny_model), "--ablation-model", str(tiny_model)]
    assert main(argv) == 0
    first = {name: (out / name).read_bytes() for name in ("per_case.csv", "per_lesion.csv", "summary.md")}
    assert main(argv) == 0
    return out, first, argv


def test_outputs_columns_and_summary(run_twice, tiny_model):
    out, _, argv = run_twice
    rows = _read_csv(out / "per_case.csv")
    assert sorted({r["method"] for r in rows}) == sorted(METHODS)
    assert {r["dose"] for r in rows} == {str(DOSE)} and all(r["low_dose_kind"] == "real" for r in rows)
    for column, _, _ in METRICS:
        assert column in rows[0], column
    lesions = _read_csv(out / "per_lesion.csv")
    assert {"case", "dose", "method", "lesion", "volume_mm3", "long_axis_mm", "c_bar", "c_hat", "psnr_lesion",
            "detected", "reference_enhancement_sigmas"} <= set(lesions[0])
    assert all(float(r["reference_enhancement_sigmas"]) > 1 for r in lesions)  # phantom lesions enhance clearly
    summary = (out / "summary.md").read_text(encoding="utf-8")
    assert "gadoreduce " + " ".join(argv) in summary
    assert sha256_of(tiny_model) in summary and "tiny-random" in summary and __version__ in summary
    assert DISCLAIMER in summary and SYNTHETIC_NOTE in summary
    assert "Fixed-condition ablation model: tiny-random" in summary
    assert "n < 2 cases: no test" in summary  # one case: no paired test is claimed
    timings = json.loads((out / "timings.json").read_text())
    assert list(timings) == [f"phantom_3_small|{DOSE:g}"] and timings[f"phantom_3_small|{DOSE:g}"]["cached"] is True
    figures = {p.name for p in (out / "figures").iterdir()}
    assert {f"box_{m}.png" for m, _ in BOX_METRICS} | {"dose_response_c_hat.png",
                                                        "lesions_phantom_3_small_dose020.png"} <= figures
    assert all(f"figures/{name}" in summary for name in figures)


def test_second_run_is_byte_identical(run_twice):
    out, first, _ = run_twice
    for name, content in first.items():
        assert (out / name).read_bytes() == content, name


def test_baselines_have_their_analytic_properties(run_twice):
    out, _, _ = run_twice
    case = {r["method"]: r for r in _read_csv(out / "per_case.csv")}
    lesion = {}
    for r in _read_csv(out / "per_lesion.csv"):
        lesion[(r["method"], r["lesion"])] = r
    labels = sorted({k[1] for k in lesion})
    assert len(labels) >= 3
    for lab in labels:
        low, lin = lesion[("low_dose", lab)], lesion[("linear_scaling", lab)]
        # linear scaling's contrast is (x_LD - x_PC) / d at every lesion voxel: sums and maxima scale by 1/d
        assert float(lin["c_bar"]) == pytest.approx(float(low["c_bar"]) / DOSE, rel=1e-4)
        assert float(lin["c_hat"]) == pytest.approx(float(low["c_hat"]) / DOSE, rel=1e-4)
        assert 0 < float(low["c_hat"]) < 1
        ref = lesion[("standard_dose", lab)]
        assert (float(ref["c_bar"]), float(ref["c_hat"]), ref["psnr_lesion"]) == (1.0, 1.0, "inf")
    # scaling the enhancement keeps its ranking: identical thresholded-enhancement overlaps
    for p in ev.OVERLAP_PERCENTS:
        assert case["low_dose"][f"dice_{p:02d}"] == case["linear_scaling"][f"dice_{p:02d}"]
    assert float(case["low_dose"]["c_hat"]) < 1 and float(case["standard_dose"]["ssim"]) == 1.0
    assert case["standard_dose"]["psnr_image"] == "inf" and float(case["low_dose"]["psnr_image"]) < 60
    # the ablation model file is the same model without fixed conditions: the same numbers
    same = {k: v for k, v in case["gadoreduce"].items() if k != "method"}
    assert same == {k: v for k, v in case["gadoreduce_fixed_condition"].items() if k != "method"}
    # the random model does change the image: its contrast is not zero everywhere
    assert float(case["gadoreduce"]["psnr_brain"]) != float(case["low_dose"]["psnr_brain"])


def test_cached_arrays_reproduce_linear_scaling_exactly(run_twice):
    out, _, _ = run_twice
    (path,) = (out / "cache").glob("phantom_3_small_d020_*.npz")
    arrays = ev.CaseArrays.load(path)
    assert arrays.lesions.max() > 0 and arrays.brain.any() and arrays.spacing == (2.0, 2.0, 2.0)
    images = ev.method_images(arrays, DOSE, {})
    lesion = arrays.lesions > 0
    contrast = (images["linear_scaling"] - arrays.pre)[lesion]
    np.testing.assert_allclose(contrast, ((arrays.low - arrays.pre) / np.float32(DOSE))[lesion], rtol=1e-6, atol=1e-6)


def test_summary_states_missing_ablation(run_twice):
    out, _, _ = run_twice
    rows = [r for r in _read_csv(out / "per_case.csv") if r["method"] != "gadoreduce_fixed_condition"]
    for r in rows:
        r["dose"] = float(r["dose"])
    info = {"command": "gadoreduce evaluate ...", "model_name": "m", "model_file": "m.pt", "model_sha256": "0" * 64,
            "ablation": None}
    text = summary_markdown({"cases": rows}, list(METHODS[:3]) + ["standard_dose"], [DOSE], info)
    assert "Fixed-condition ablation: not available" in text


# ----------------------------------------------------------------------------- case sources

def _toy_case(name="toy") -> Case:
    rng = np.random.default_rng(5)
    z, y, x = np.mgrid[:24, :24, :24]
    brain = ((z - 12) ** 2 + (y - 12) ** 2 + (x - 12) ** 2) < 100
    pre = np.where(brain, 800.0 + 40 * rng.standard_normal(brain.shape), 0.0).astype(np.float32)
    lesion = ((z - 12) ** 2 + (y - 10) ** 2 + (x - 13) ** 2) < 9
    sd = (pre + np.where(lesion, 600.0, 0.0) + np.where(brain, 10 * rng.standard_normal(brain.shape), 0)).astype(np.float32)
    image = lambda a: sitk.GetImageFromArray(a)  # noqa: E731
    return Case(name, "folder", image(pre), image(sd), {}, 3.0, "gadobutrol",
                    image(lesion.astype(np.uint16)), image(brain.astype(np.uint8)))


def test_synthetic_low_dose_is_seeded_by_case_and_dose_and_real_ones_are_used():
    case = _toy_case()
    a, real = low_dose_for(case, 0.25)
    b, _ = low_dose_for(case, 0.25)
    assert not real
    np.testing.assert_array_equal(sitk.GetArrayFromImage(a), sitk.GetArrayFromImage(b))
    other, _ = low_dose_for(_toy_case("other"), 0.25)
    assert not np.array_equal(sitk.GetArrayFromImage(a), sitk.GetArrayFromImage(other))
    assert low_dose_seed("toy", 0.25) != low_dose_seed("toy", 0.1)
    case.low_doses = {0.25: case.standard_dose}
    chosen, real = low_dose_for(case, 0.2500001)
    assert real and chosen is case.standard_dose


def test_binary_lesion_mask_is_split_into_components(tmp_path):
    ref = sitk.Image([10, 10, 10], sitk.sitkFloat32)
    mask = np.zeros((10, 10, 10), np.uint8)
    mask[1:3, 1:3, 1:3] = 1
    mask[6:9, 6:9, 6:9] = 1
    labels = sitk.GetArrayFromImage(lesion_labels_from(sitk.GetImageFromArray(mask), ref, "lesions", tmp_path))
    assert sorted(np.unique(labels)) == [0, 1, 2]
    multi = mask.astype(np.uint16) * 7
    multi[6:9, 6:9, 6:9] = 3
    kept = sitk.GetArrayFromImage(lesion_labels_from(sitk.GetImageFromArray(multi), ref, "lesions", tmp_path))
    assert sorted(np.unique(kept)) == [0, 3, 7]


# ----------------------------------------------------------------------------- bad input

def test_bad_inputs_raise_clear_value_errors(tmp_path, tiny_model):
    for dose in ([0.0], [1.5], [-0.1]):
        with pytest.raises(ValueError, match=r"outside \(0, 1\]"):
            check_doses(dose)
    with pytest.raises(ValueError, match="same percent"):
        check_doses([0.2, 0.2001])
    with pytest.raises(ValueError, match="no cases to evaluate"):
        ev.run(tmp_path / "o", model=tiny_model)
    with pytest.raises(ValueError, match="does not exist"):
        ev.run(tmp_path / "o", phantoms=1, model=tmp_path / "missing.pt")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no cases found"):
        folder_cases(empty)
    case = tmp_path / "cases" / "c1"
    case.mkdir(parents=True)
    sitk.WriteImage(sitk.GetImageFromArray(np.ones((8, 8, 8), np.float32)), str(case / "pre_contrast.nii.gz"))
    with pytest.raises(ValueError, match="no standard_dose image"):
        ev.run(tmp_path / "o", cases_dir=case.parent, model=tiny_model, doses=[0.2])
    with pytest.raises(ValueError, match="--subjects nope not found"):
        folder_cases(case.parent, ["nope"])
    assert main(["evaluate", "--output", str(tmp_path / "o"), "--model", str(tiny_model), "--doses", "0"]) == 2


def test_phantom_folder_keeps_only_enhancing_lesions_and_reads_metadata(tmp_path):
    folder = tmp_path / "cases" / "p1"
    folder.mkdir(parents=True)
    case = _toy_case()
    labels = np.zeros((24, 24, 24), np.uint16)
    labels[10:14, 8:12, 11:15] = 1
    labels[3:6, 3:6, 3:6] = 2  # listed as non-enhancing below
    for name, image in (("pre_contrast", case.pre_contrast), ("standard_dose", case.standard_dose),
                        ("lesion_labels", sitk.GetImageFromArray(labels))):
        sitk.WriteImage(image, str(folder / f"{name}.nii.gz"))
    (folder / "phantom.json").write_text(json.dumps({
        "field_strength_t": 1.5, "agent": {"name": "gadoterate"},
        "lesions": [{"label": 1, "type": "solid"}, {"label": 2, "type": "non_enhancing"}]}))
    (spec,) = folder_cases(tmp_path / "cases")
    loaded = spec.load()
    assert (loaded.field_strength, loaded.agent, loaded.assumed_metadata, loaded.low_doses) == (1.5, "gadoterate",
                                                                                                False, {})
    assert sorted(np.unique(sitk.GetArrayFromImage(loaded.lesions))) == [0, 1]
    (same,) = folder_cases(folder)  # a single case folder is a case source too
    assert same.name == "p1"


def test_best_baseline_choice_and_paired_tests():
    from GadoReduceLib.evaluation.report import compare_with_best_baseline
    from GadoReduceLib.metrics.quality import paired_tests
    values = {"low_dose": ([20.0, 21.0, 22.5, 19.0], [0.3, 0.35, 0.2, 0.3], [1.0, 1.2, 0.9, 1.1]),
              "linear_scaling": ([15.0, 14.0, 16.0, 15.5], [1.6, 1.5, 1.7, 1.4], [4.0, 5.0, 4.5, 3.0]),
              "gadoreduce": ([25.0, 24.0, 26.5, 23.0], [0.9, 0.95, 1.05, 0.8], [3.9, 4.4, 4.0, 3.5]),
              "standard_dose": ([math.inf] * 4, [1.0] * 4, [4.2, 4.6, 4.1, 3.6])}
    rows = [{"case": f"c{i}", "dose": 0.1, "method": m, "psnr_brain": v[0][i], "c_hat": v[1][i], "cnr": v[2][i]}
            for m, v in values.items() for i in range(4)]
    psnr = compare_with_best_baseline(rows, 0.1, "psnr_brain", "higher")
    assert psnr["baseline"] == "low_dose" and psnr["n"] == 4
    assert psnr["t_pvalue"] == paired_tests(values["gadoreduce"][0], values["low_dose"][0])["t_pvalue"]
    c_hat = compare_with_best_baseline(rows, 0.1, "c_hat", "one")  # mean abs(x - 1): low dose 0.71, linear 0.55
    assert c_hat["baseline"] == "linear_scaling" and c_hat["quantity"] == "abs(x - 1)"
    expected = paired_tests([abs(v - 1) for v in values["gadoreduce"][1]],
                            [abs(v - 1) for v in values["linear_scaling"][1]])
    assert c_hat["mean_difference"] == pytest.approx(expected["mean_difference"])
    cnr = compare_with_best_baseline(rows, 0.1, "cnr", "reference")  # closest to the standard dose's CNR
    assert cnr["baseline"] == "linear_scaling" and cnr["mean_difference"] < 0


def test_charts_without_matplotlib_are_drawn_with_pil(tmp_path, monkeypatch):
    from PIL import Image

    from GadoReduceLib.evaluation import figures
    monkeypatch.setattr(figures, "_matplotlib", lambda: None)
    rows = [{"case": f"c{i}", "dose": d, "method": m, "c_hat": v * d * (1 + 0.1 * i)}
            for i in range(3) for d in (0.1, 0.33) for m, v in (("low_dose", 1.0), ("gadoreduce", 3.0))]
    box = figures.box_plot(rows, "c_hat", "c^", ["low_dose", "gadoreduce"], [0.1, 0.33], tmp_path / "box.png")
    line = figures.dose_response(rows, ["low_dose", "gadoreduce"], [0.1, 0.33], tmp_path / "dose.png")
    for path in (box, line):
        pixels = np.asarray(Image.open(path).convert("RGB"))
        blue = np.all(pixels == figures.COLOURS["gadoreduce"], axis=-1)
        assert blue.sum() > 20, path  # the GadoReduce boxes / points are drawn in its colour


def test_zoom_cases_must_name_evaluated_cases(tmp_path):
    """Lesion zooms can be limited to named cases (e.g. phantoms only); a wrong name stops before any work."""
    from GadoReduceLib.evaluation.evaluate import run
    with pytest.raises(ValueError, match=r"--zoom-cases names unknown cases \['nope'\].*phantom_0_small"):
        run(tmp_path / "out", phantoms=1, phantom_size="small", doses=(0.33,), zoom_cases=["nope"])
    assert not (tmp_path / "out").exists()


def test_flip_passes_add_the_uncertainty_calibration(run_twice, tmp_path):
    """With 2+ passes the report gains the Spearman correlation of |error| and uncertainty per (case, dose), the
    error per uncertainty decile (CSV) and its figure; with one pass (the runs above) none of them."""
    out, _, argv = run_twice
    assert "Uncertainty calibration" not in (out / "summary.md").read_text()
    assert not (out / "uncertainty_calibration.csv").exists()
    flipped = tmp_path / "flipped"
    assert main([a if a != str(out) else str(flipped) for a in argv] + ["--tta", "2", "--cache",
                                                                         str(out / "cache")]) == 0
    summary = (flipped / "summary.md").read_text()
    assert "## Uncertainty calibration" in summary and "spread over 2 passes" in summary
    bins = _read_csv(flipped / "uncertainty_calibration.csv")
    assert len(bins) == 10 and {b["case"] for b in bins} == {"phantom_3_small"}
    uncertainty = [float(b["mean_uncertainty"]) for b in bins]
    assert uncertainty == sorted(uncertainty) and uncertainty[-1] > 0
    assert -1 <= float(bins[0]["spearman"]) <= 1
    assert (flipped / "figures" / "uncertainty_calibration.png").stat().st_size > 1000


# ----------------------------------------------------------------------------- model variants

def test_model_variants_are_evaluated_beside_the_model_with_their_sequences(tmp_path, tiny_model, capsys):
    """``--variant NAME=FILE``: each model file becomes method gadoreduce_NAME; a multi-modal variant makes the
    cases preprocessed with FLAIR and T2 (cached with them), and a case without them is refused by name."""
    from GadoReduceLib.phantom.generate import PhantomConfig, generate_phantom, write_phantom
    torch.manual_seed(8)
    config = ModelConfig(base_features=4, scales=2, blocks_per_scale=1, sequences=("flair", "t2"))
    model = ConditionalUNet(config)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    multimodal = save_model(tmp_path / "mm.pt", model, config, ConditionNormalization(), 1.0, {"name": "tiny-mm"})
    case = generate_phantom(PhantomConfig(seed=3, size="small", doses=(DOSE,)))
    folder = tmp_path / "cases" / "p3"
    write_phantom(case, folder)
    for name in ("flair", "t2"):  # stand-in sequences: the pre-contrast itself (registers exactly)
        sitk.WriteImage(case.pre_contrast, str(folder / f"{name}.nii.gz"))
    out = tmp_path / "out"
    argv = ["evaluate", "--cases", str(folder.parent), "--doses", str(DOSE), "--output", str(out), "--model",
            str(tiny_model), "--variant", f"same={tiny_model}", "--variant", f"mm={multimodal}", "--simulators",
            "signal-model"]
    assert main(argv) == 0
    rows = {r["method"]: r for r in _read_csv(out / "per_case.csv")}
    assert {"gadoreduce", "gadoreduce_same", "gadoreduce_mm"} <= set(rows)
    values = lambda method: {k: v for k, v in rows[method].items() if k != "method"}  # noqa: E731
    assert values("gadoreduce_same") == values("gadoreduce")  # the same file: the same numbers
    assert values("gadoreduce_mm") != values("gadoreduce")  # the sequences reached the multi-modal network
    (cached,) = (out / "cache").glob("p3_d020_*.npz")
    arrays = ev.CaseArrays.load(cached)
    assert set(arrays.sequences) == {"flair", "t2"} and arrays.sequences["flair"].shape == arrays.pre.shape
    summary = (out / "summary.md").read_text()
    assert "Variant `gadoreduce_mm`: model tiny-mm" in summary
    (folder / "t2.nii.gz").unlink()
    with pytest.raises(ValueError, match=r"case p3 has no T2 image.*t2.nii.gz"):
        ev.run(tmp_path / "out2", cases_dir=folder.parent, doses=[DOSE], model=tiny_model,
               variants={"mm": multimodal}, simulators=("signal-model",))
    for bad, message in ((["--variant", "mm"], "NAME=MODEL_FILE"), (["--variant", "MM=x.pt"], "lower-case"),
                         (["--variant", f"a={tiny_model}", "--variant", f"a={tiny_model}"], "given twice")):
        capsys.readouterr()
        assert main(argv[:-6] + bad) == 2
        assert message in capsys.readouterr().err
