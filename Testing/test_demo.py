"""The README's main job, `gadoreduce demo`, runs the real pipeline and reports errors against truth."""

from __future__ import annotations

import json

import pytest

from GadoReduceLib import cli

pytest.importorskip("itk")


def test_demo_runs_pipeline_and_meets_truth(tmp_path, capsys):
    out = tmp_path / "demo"
    assert cli.main(["demo", "--output", str(out), "--seed", "3", "--backend", "itk"]) == 0
    text = capsys.readouterr().out
    assert "not for diagnosis" in text.lower() or "must not be used for diagnosis" in text
    assert "GadoReduce" in text and "PSNR_L" in text
    metrics = json.loads((out / "demo_metrics.json").read_text())
    assert metrics["backend"] == "itk"
    assert metrics["low_dose_true_motion_mean_mm"] > 1.0  # there was motion to undo
    assert metrics["low_dose_registration_error_mean_mm"] <= 0.3
    assert metrics["standard_dose_registration_error_mean_mm"] <= 0.3
    assert metrics["brain_mask_dice"] >= 0.90
    assert metrics["noise_sigma_estimated"] == pytest.approx(metrics["noise_sigma_true"], rel=0.10)
    for name in ("phantom/pre_contrast.nii.gz", "phantom/phantom.json", "phantom_preview.png",
                 "preprocessed/normalized_subtraction_ld.nii.gz", "preprocessed/contrast_signal.nii.gz",
                 "preprocessing_qc.png", "prediction/synthetic_standard_dose.nii.gz",
                 "prediction/beyond_standard_dose.nii.gz", "prediction/contrast_signal.nii.gz",
                 "prediction/prediction.png"):
        assert (out / name).is_file(), name
    # the CNN with the shipped model on the 1 mm phantom, against the phantom's standard-dose scan
    ours, low, linear = (metrics["methods"][m] for m in ("gadoreduce", "low_dose", "linear_scaling"))
    assert ours["psnr_lesions"] > low["psnr_lesions"] and ours["psnr_lesions"] > linear["psnr_lesions"]
    assert 0.7 <= ours["c_hat"] <= 1.3 and low["c_hat"] < 0.7  # the low dose shows too little enhancement
    assert ours["detected_0mm"] >= low["detected_0mm"] - 1
    assert ours["false_detections_0mm"] < linear["false_detections_0mm"]
