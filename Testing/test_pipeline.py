"""The one predict pipeline (``GadoReduceLib.pipeline``, issue 12): ``gadoreduce predict`` and the Slicer module's
process() give byte-identical images; predict writes the enhancing regions (label image and CSV) and record.json;
bad settings give a ValueError naming the parameter. Research software: phantom results are no clinical evidence."""

from __future__ import annotations

import csv
import importlib
import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from GadoReduceLib import cli
from GadoReduceLib.io.imageio import read_image, write_image
from GadoReduceLib.model.files import LoadedModel, save_model
from GadoReduceLib.model.network import ConditionalUNet, ConditionNormalization, ModelConfig
from GadoReduceLib.pipeline import (OUTPUT_IMAGES, RECORD_FILE, REGION_COLUMNS, REGIONS_FILE, Pipeline,
                                    backend_choices)

SMALL = ModelConfig(base_features=4, scales=2, blocks_per_scale=1)


def _tiny_model() -> ConditionalUNet:
    torch.manual_seed(0)
    model = ConditionalUNet(SMALL).eval()
    with torch.no_grad():
        model.head.bias.fill_(0.05)  # a contrast signal of about 1.2-1.9 noise sigmas in the brain
    return model


def _tiny() -> LoadedModel:
    return LoadedModel(_tiny_model(), SMALL, ConditionNormalization(), gamma=1.5)


def test_one_list_of_outputs():
    names = [image.name for image in OUTPUT_IMAGES]
    assert len(set(names)) == len(names)
    assert {"synthetic_standard_dose", "contrast_signal", "enhancing_labels"} <= set(names)
    assert [image.name for image in OUTPUT_IMAGES if image.needs_standard_dose] == ["standard_dose_registered"]
    from GadoReduceLib.preprocessing.registration import BACKENDS
    assert set(backend_choices()) == set(BACKENDS) - {"slicer"}
    predict = cli.build_parser().parse_args(["predict", "--pre", "a", "--low", "b", "--dose", "0.3",
                                             "--field-strength", "3", "--output", "o"])
    from GadoReduceLib.inference.region_defaults import DEFAULT_MIN_VOLUME_MM3, DEFAULT_THRESHOLD_SIGMAS
    assert (predict.threshold_sigmas, predict.min_volume) == (DEFAULT_THRESHOLD_SIGMAS, DEFAULT_MIN_VOLUME_MM3)


def test_bad_settings_give_a_value_error_naming_the_parameter():
    tiny = _tiny()
    for kwargs, name in (({"tile": 1}, "tile"), ({"tile": 2.5}, "tile"), ({"precision": "int8"}, "precision"),
                         ({"backend": "slicerx"}, "backend"), ({"threads": 0}, "threads"),
                         ({"threshold_sigmas": 0}, "threshold_sigmas"), ({"threshold_sigmas": "x"}, "threshold_sigmas"),
                         ({"min_volume_mm3": -1}, "min_volume_mm3"), ({"device": "gpu-please"}, "device"),
                         ({"model": 3}, "model")):
        with pytest.raises(ValueError, match=name):
            Pipeline(**{"model": tiny, "device": "cpu", **kwargs})
    with pytest.raises(ValueError, match="absent.pt"):
        Pipeline("absent.pt", device="cpu")
    pipeline = Pipeline(tiny, device="cpu")
    image = sitk.Image([16, 16, 16], sitk.sitkFloat32)
    other = sitk.Image([16, 16, 8], sitk.sitkUInt16)
    for args, kwargs, name in (((np.zeros((4, 4, 4)), image, 0.3, 3.0, "gadobutrol"), {}, "pre_contrast"),
                               ((image, None, 0.3, 3.0, "gadobutrol"), {}, "low_dose"),
                               ((image, image, 25, 3.0, "gadobutrol"), {}, "dose"),
                               ((image, image, 0.3, 9.4, "gadobutrol"), {}, "field strength"),
                               ((image, image, 0.3, 3.0, "water"), {}, "contrast agent"),
                               ((image, image, 0.3, 3.0, "gadobutrol"), {"standard_dose": "sd.nii"}, "standard_dose"),
                               ((image, image, 0.3, 3.0, "gadobutrol"), {"lesion_labels": other}, "lesion_labels")):
        with pytest.raises(ValueError, match=name):
            pipeline.predict_case(*args, **kwargs)


@pytest.mark.slow
def test_predict_writes_regions_matching_the_label_image(tmp_path, capsys):
    """Enhancing labels, enhancing_regions.csv (one row per label, volume and centroid of the label image) and
    record.json on the 2 mm phantom with a tiny random model at a threshold it reaches."""
    pytest.importorskip("itk")
    from GadoReduceLib.phantom.generate import PhantomConfig, generate_phantom
    case = generate_phantom(PhantomConfig(seed=3, doses=(0.25,), size="small", max_motion_deg=3.0,
                                          max_motion_mm=3.0))
    pre = write_image(case.pre_contrast, tmp_path / "pre.nii.gz")
    low = write_image(case.low_dose[0.25], tmp_path / "low.nii.gz")
    model = save_model(tmp_path / "m.pt", _tiny_model(), SMALL, ConditionNormalization(), 1.5, {"name": "tiny"})
    out = tmp_path / "out"
    assert cli.main(["predict", "--pre", str(pre), "--low", str(low), "--dose", "0.25", "--field-strength", "3",
                     "--output", str(out), "--model", str(model), "--device", "cpu", "--backend", "itk",
                     "--threshold-sigmas", "1.6", "--min-volume", "16"]) == 0
    captured = capsys.readouterr()
    printed = captured.out
    assert "enhancing regions above 1.6 noise sigmas" in printed
    record = json.loads((out / RECORD_FILE).read_text())
    stages = record["stages"]  # seconds and peak memory per stage (issue 14), printed as a table too
    for name in ("validation", "model loading", "reading", "brain mask", "registration", "normalization",
                 "noise statistics", "preprocessing", "network", "regions", "writing"):
        assert stages[name]["seconds"] >= 0 and stages[name]["peak_memory_mb"] > 50, name
        assert any(line.startswith(name) for line in printed.splitlines()), f"{name} not printed"
    assert stages["preprocessing"]["seconds"] >= stages["registration"]["seconds"] + stages["brain mask"]["seconds"]
    assert stages["preprocessing"]["peak_memory_mb"] >= stages["registration"]["peak_memory_mb"]
    assert record["tile"] is None and record["tile_setting"] == "auto", "a small case runs as one volume"
    for image in OUTPUT_IMAGES:
        assert (out / f"{image.name}.nii.gz").is_file() != (image.needs_standard_dose or image.needs_spread), image.name
    labels_image = read_image(out / "enhancing_labels.nii.gz")
    assert labels_image.GetSize() == case.pre_contrast.GetSize()
    labels = sitk.GetArrayFromImage(labels_image)
    with open(out / REGIONS_FILE, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0])[:len(REGION_COLUMNS)] == list(REGION_COLUMNS)
    assert len(rows) >= 3, "the threshold gives several regions"
    assert [int(r["label"]) for r in rows] == list(range(1, labels.max() + 1))
    voxel_mm3 = float(np.prod(labels_image.GetSpacing()))
    signal = sitk.GetArrayFromImage(read_image(out / "contrast_signal.nii.gz"))
    record = json.loads((out / RECORD_FILE).read_text())
    volumes = []
    for row in rows:
        region = labels == int(row["label"])
        assert int(row["voxels"]) == region.sum()
        assert float(row["volume_mm3"]) == pytest.approx(region.sum() * voxel_mm3)
        assert float(row["volume_mm3"]) >= 16
        centre = labels_image.TransformContinuousIndexToPhysicalPoint(np.argwhere(region).mean(0)[::-1].tolist())
        ras = (-centre[0], -centre[1], centre[2])
        assert [float(row[f"centroid_ras_{a}"]) for a in "RAS"] == pytest.approx(ras, abs=1e-6)
        assert float(row["max_contrast_signal"]) == pytest.approx(float(signal[region].max()), rel=1e-6)
        assert float(row["mean_contrast_signal"]) > record["threshold"]
        volumes.append(float(row["volume_mm3"]))
    assert volumes == sorted(volumes, reverse=True), "label 1 is the largest region"
    assert record["n_regions"] == len(rows) and record["threshold_sigmas"] == 1.6
    assert record["threshold"] == pytest.approx(1.6 * record["noise_sigma"])
    assert record["noise_sigma"] == pytest.approx(record["noise_sigma_normalized"] * record["pre_percentile"])
    assert record["model_name"] == "tiny" and len(record["model_sha256"]) == 64
    assert record["registration_backend"] == "itk" and record["dose"] == 0.25
    assert (out / "prediction.png").stat().st_size > 1000
    from GadoReduceLib.pipeline import output_files
    assert set(out.iterdir()) <= set(output_files(out)), "output_files lists every file predict writes"
    # a model that is not a shipped one is named as unverified: in the record, on stderr and in the montage footer
    assert record["model_verified"] is False and record["warnings"][0].startswith("unverified model: ")
    assert "WARNING: unverified model" in captured.err and "[ 60 %] Predicting the contrast signal" in captured.err
    # a second run into the same folder is refused; with --overwrite it replaces every output, and a stale output
    # of the earlier run that this run does not write (lesion_metrics.csv) goes
    argv = ["predict", "--pre", str(pre), "--low", str(low), "--dose", "0.33", "--field-strength", "3",
            "--output", str(out), "--model", str(model), "--device", "cpu", "--backend", "itk",
            "--threshold-sigmas", "1.6", "--min-volume", "16"]
    (out / "lesion_metrics.csv").write_text("from an earlier run\n")
    (out / "mine.txt").write_text("not an output\n")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert cli.main(argv) == 2
    assert "already holds the outputs of an earlier run" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert cli.main(argv + ["--overwrite"]) == 0
    assert json.loads((out / RECORD_FILE).read_text())["dose"] == 0.33
    assert not (out / "lesion_metrics.csv").exists() and (out / "mine.txt").read_text() == "not an output\n"
    assert not list(tmp_path.glob(".gadoreduce-partial*"))


def _default_model() -> str:
    from GadoReduceLib.model.files import ModelFileError, default_model_path
    try:
        return str(default_model_path())
    except ModelFileError as error:
        pytest.skip(f"no trained model: {error}")


@pytest.mark.slow
def test_cli_predict_and_module_process_give_identical_images(harness, tmp_path):
    """One phantom case (1 mm, the module tests' sample phantom) through ``gadoreduce predict`` and through the
    module's process() (background worker process): the same voxels, bit for bit."""
    pytest.importorskip("itk")
    from test_mrml_geometry import node_voxels

    from GadoReduceLib.module.sample_data import SAMPLE_DOSE, sample_phantom_case, sample_phantom_nodes
    model = _default_model()
    case = sample_phantom_case(seed=4)
    pre = write_image(case.pre_contrast, tmp_path / "pre.nii.gz")
    low = write_image(case.low_dose[SAMPLE_DOSE], tmp_path / "low.nii.gz")
    threshold = 8.0
    out = tmp_path / "cli"
    from GadoReduceLib.preprocessing.registration import choose_backend
    backend = choose_backend("auto")  # the module's: the elastix executable where found, else itk-elastix
    assert cli.main(["predict", "--pre", str(pre), "--low", str(low), "--dose", str(SAMPLE_DOSE),
                     "--field-strength", "3", "--agent", "gadobutrol", "--output", str(out), "--model", model,
                     "--device", "cpu", "--backend", backend, "--threshold-sigmas", str(threshold)]) == 0

    import GadoReduce
    module = importlib.reload(GadoReduce)
    pre_node, low_node, _, _ = sample_phantom_nodes(harness.scene, case)
    logic = module.GadoReduceLogic()
    params = logic.getParameterNode()
    nodes = logic.process(params, preContrast=pre_node, lowDose=low_node, dose=SAMPLE_DOSE, fieldStrength=3.0,
                          agent="gadobutrol", modelPath=model, device="cpu", thresholdSigmas=threshold)
    assert nodes["record"]["registration_backend"] == backend
    for name, parameter in (("synthetic_standard_dose", "syntheticStandardDose"),
                            ("contrast_signal", "contrastSignal")):
        from_cli = sitk.GetArrayFromImage(read_image(out / f"{name}.nii.gz"))
        from_module = node_voxels(getattr(params, parameter))
        assert from_cli.dtype == from_module.dtype and from_cli.shape == from_module.shape, name
        assert np.abs(from_cli).max() > 0, name
        assert np.array_equal(from_cli, from_module), f"{name}: max difference {np.abs(from_cli - from_module).max()}"
    record = json.loads((out / RECORD_FILE).read_text())
    assert record["noise_sigma"] == nodes["record"]["noise_sigma"]
    assert record["n_regions"] == len(nodes["record"]["regions"]) == params.regionTable.GetNumberOfRows()
