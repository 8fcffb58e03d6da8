"""Evaluation metrics on constructed images with known answers (issue 7, item 1)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from GadoReduceLib.metrics import quality as m
from GadoReduceLib.metrics.detection import (aggregate_detection, detection_by_size,
                                             lesion_geometry, match_lesions)


def _volume(seed=0, shape=(12, 14, 16)):
    rng = np.random.default_rng(seed)
    return 100.0 + 50.0 * rng.random(shape)


def _ball(shape, centre_kji, radius_mm, spacing_ijk):
    sp = np.asarray(spacing_ijk, float)[::-1]
    grids = np.indices(shape).astype(float)
    d2 = sum(((grids[a] - centre_kji[a]) * sp[a]) ** 2 for a in range(3))
    return d2 <= radius_mm ** 2


# --------------------------------------------------------------------------- PSNR / SSIM / MAE

def test_identical_images_give_infinite_psnr_and_ssim_one():
    ref = _volume()
    brain = np.zeros(ref.shape, bool)
    brain[2:10, 3:11, 4:12] = True
    labels = np.zeros(ref.shape, np.int32)
    labels[4:6, 5:7, 6:8] = 1
    assert m.psnr_image(ref.copy(), ref) == math.inf
    assert m.psnr_brain(ref.copy(), ref, brain) == math.inf
    assert m.psnr_lesions(ref.copy(), ref, labels) == {1: math.inf}
    assert m.ssim(ref.copy(), ref) == pytest.approx(1.0, abs=1e-12)
    assert m.ssim(ref.copy(), ref, mask=brain) == pytest.approx(1.0, abs=1e-12)
    assert m.ssim(ref + 5.0 * np.random.default_rng(1).standard_normal(ref.shape), ref) < 0.99


def test_constant_offset_gives_analytic_psnr():
    ref = _volume()
    ref[0, 0, 0] = 400.0  # global maximum outside the brain
    brain = np.zeros(ref.shape, bool)
    brain[2:10, 3:11, 4:12] = True
    offset = 3.0
    img = ref + offset
    assert m.psnr_image(img, ref) == pytest.approx(10 * math.log10(400.0 ** 2 / offset ** 2))
    brain_peak = ref[brain].max()
    assert brain_peak < 200
    assert m.psnr_brain(img, ref, brain) == pytest.approx(10 * math.log10(brain_peak ** 2 / offset ** 2))
    assert m.psnr_brain(img, ref, brain, data_range=1000.0) == pytest.approx(
        10 * math.log10(1000.0 ** 2 / offset ** 2))
    # offset only inside lesion 1: lesion 2 stays exact
    labels = np.zeros(ref.shape, np.int16)
    labels[3:5, 4:6, 5:7] = 1
    labels[7:9, 8:10, 9:11] = 2
    img = ref.copy()
    img[labels == 1] -= 2.0
    scores = m.psnr_lesions(img, ref, labels)
    assert scores[2] == math.inf
    assert scores[1] == pytest.approx(10 * math.log10(ref[labels == 1].max() ** 2 / 4.0))


def test_mae_ce_in_enhancing_brain_only():
    pre = np.full((8, 8, 8), 100.0)
    sd = pre.copy()
    sd[2:4, 2:4, 2:4] = 200.0  # 8 enhancing voxels
    brain = np.zeros(pre.shape, bool)
    brain[1:7, 1:7, 1:7] = True
    ce = m.enhancing_mask(pre, sd, brain, threshold=50.0)
    assert ce.sum() == 8
    img = sd.copy()
    img[2, 2, 2] -= 40.0
    img[6, 6, 6] += 1000.0  # error outside the enhancing region does not count
    assert m.mae_ce(img, sd, ce) == pytest.approx(40.0 / 8)


# --------------------------------------------------------------------------- relative enhancement

def test_relative_enhancement_reference_half_and_peak():
    pre = _volume(2)
    labels = np.zeros(pre.shape, np.int32)
    labels[2:5, 2:5, 2:5] = 1
    labels[7:9, 8:11, 9:12] = 2
    enh = np.where(labels > 0, 30.0 + np.arange(pre.size).reshape(pre.shape) % 7, 0.0)
    sd = pre + enh
    for lab, (cbar, chat) in m.relative_enhancement(sd, pre, sd, labels).items():
        assert (cbar, chat) == (pytest.approx(1.0), pytest.approx(1.0)), lab
    half = pre + 0.5 * enh
    for cbar, chat in m.relative_enhancement(half, pre, sd, labels).values():
        assert cbar == pytest.approx(0.5) and chat == pytest.approx(0.5)
    assert m.relative_enhancement(pre, pre, sd, labels)[1] == (0.0, 0.0)
    # doubling only the brightest voxel of lesion 1: c^ = 2, c-bar by hand
    img = sd.copy()
    region = labels == 1
    idx = np.argwhere(region & (enh == enh[region].max()))[0]
    img[tuple(idx)] += enh[tuple(idx)]
    cbar, chat = m.relative_enhancement(img, pre, sd, labels)[1]
    assert chat == pytest.approx(2.0)
    assert cbar == pytest.approx((enh[region].sum() + enh[tuple(idx)]) / enh[region].sum())


# --------------------------------------------------------------------------- CNR / LBR / CEP

def test_cnr_lbr_cep_hand_computed():
    shape = (8, 8, 8)
    checker = np.indices(shape).sum(axis=0) % 2
    img = np.where(checker == 0, 100.0, 120.0)  # healthy brain: mean 110, SD 10
    lesion = np.zeros(shape, bool)
    lesion[3:5, 3:5, 3:5] = True
    img[lesion] = 300.0
    pre = np.full(shape, 110.0)
    pre[lesion] = 150.0
    brain = np.ones(shape, bool)
    assert m.contrast_to_noise_ratio(img, lesion, brain) == pytest.approx((300 - 110) / 10)
    assert m.lesion_to_brain_ratio(img, lesion, brain) == pytest.approx(300 / 110)
    assert m.contrast_enhancement_percentage(img, pre, lesion) == pytest.approx(100.0)


# --------------------------------------------------------------------------- Dice / Jaccard

def test_dice_jaccard_on_constructed_masks():
    a = np.zeros((4, 5, 6), bool)
    b = np.zeros_like(a)
    a.flat[:10] = True
    b.flat[5:15] = True  # overlap 5, union 15
    assert m.dice(a, b) == pytest.approx(0.5)
    assert m.jaccard(a, b) == pytest.approx(1 / 3)
    assert m.dice(a, a) == 1.0 and m.jaccard(a, a) == 1.0


def test_thresholded_enhancement_overlap():
    shape = (5, 5, 4)  # ROI of 100 voxels
    roi = np.ones(shape, bool)
    pre = np.full(shape, 50.0)
    enh = np.arange(100, dtype=float).reshape(shape)
    sd = pre + enh
    top10 = m.top_percent_mask(sd - pre, roi, 10)
    assert top10.sum() == 10 and np.all(enh[top10] >= 90)
    same = m.enhancement_overlap(sd, pre, sd, roi)
    assert sorted(same) == list(range(1, 31))
    assert all(v == (1.0, 1.0) for v in same.values())
    # scale-free: twice the enhancement ranks the same voxels
    assert all(v == (1.0, 1.0) for v in m.enhancement_overlap(pre + 2 * enh, pre, sd, roi).values())
    # reversed ranking: the top 10 % are disjoint; top 30 % disjoint too
    rev = m.enhancement_overlap(pre + enh[::-1, ::-1, ::-1], pre, sd, roi, percents=(10, 30))
    assert rev[10] == (0.0, 0.0) and rev[30] == (0.0, 0.0)
    # partial: image ranks voxels 80..99 highest except it swaps 85..89 out -> top 10 overlap 5/10
    img_enh = enh.copy().ravel()
    img_enh[85:90] = -1.0
    img_enh[80:85] = 200.0
    d, j = m.enhancement_overlap(pre + img_enh.reshape(shape), pre, sd, roi, percents=(10,))[10]
    assert d == pytest.approx(0.5) and j == pytest.approx(1 / 3)


# --------------------------------------------------------------------------- detection

def test_lesion_axes_of_a_ball_and_an_elongated_box():
    spacing = (1.0, 1.0, 2.0)  # (i, j, k) mm
    labels = _ball((20, 40, 40), (10, 20, 20), 6.0, spacing).astype(np.int32)
    (les,) = lesion_geometry(labels, spacing)
    assert les.long_axis_mm == pytest.approx(12.0, rel=0.08)
    assert les.short_axis_mm == pytest.approx(12.0, rel=0.08)
    box = np.zeros((10, 10, 30), np.int32)
    box[4:6, 4:6, 2:22] = 3  # 20 voxels of 1 mm along i
    (les,) = lesion_geometry(box, (1.0, 1.0, 1.0))
    assert les.label == 3
    assert les.long_axis_mm == pytest.approx(20 * math.sqrt(5 / 3), rel=1e-9)  # uniform rod


def test_matcher_pairs_shifted_lesions_and_counts_extra_as_false():
    spacing = (1.0, 1.0, 2.0)
    shape = (24, 48, 48)
    ref = np.zeros(shape, np.int32)
    ref[_ball(shape, (8, 14, 14), 7.0, spacing)] = 1   # ~14 mm
    ref[_ball(shape, (16, 34, 34), 3.5, spacing)] = 2  # ~7 mm
    det = np.zeros(shape, np.int32)
    det[_ball(shape, (8, 16, 14), 7.0, spacing)] = 5   # shifted 2 mm along j
    det[_ball(shape, (16, 34, 35), 3.5, spacing)] = 9  # shifted 1 mm along i
    det[_ball(shape, (16, 10, 38), 2.5, spacing)] = 4  # extra ~5 mm lesion, nothing there
    pairs = match_lesions(ref, det, spacing)
    assert sorted((r, d) for r, d, _ in pairs) == [(1, 5), (2, 9)]
    assert dict((r, dist) for r, _, dist in pairs)[1] == pytest.approx(2.0, abs=0.1)
    res = detection_by_size(ref, det, spacing)
    assert res[10.0] == {"n_reference": 1, "n_detected": 1, "sensitivity": 1.0, "false_detections": 0}
    assert res[5.0] == {"n_reference": 2, "n_detected": 2, "sensitivity": 1.0, "false_detections": 1}
    assert res[0.0]["false_detections"] == 1 and res[0.0]["sensitivity"] == 1.0
    # a detection shifted beyond half the mean axis (> 3.5 mm for the 7 mm lesion) is a miss
    far = det.copy()
    far[far == 9] = 0
    far[_ball(shape, (16, 34, 40), 3.5, spacing)] = 9  # shifted 6 mm
    res_far = detection_by_size(ref, far, spacing)
    assert res_far[5.0]["sensitivity"] == 0.5 and res_far[5.0]["false_detections"] == 2
    assert res_far[10.0]["sensitivity"] == 1.0
    pooled = aggregate_detection([res, res_far])
    assert pooled[5.0]["sensitivity"] == pytest.approx(3 / 4)
    assert pooled[5.0]["false_detections_per_case"] == pytest.approx(1.5)
    empty = detection_by_size(ref, np.zeros(shape, np.int32), spacing)
    assert empty[0.0]["sensitivity"] == 0.0 and empty[0.0]["false_detections"] == 0


# --------------------------------------------------------------------------- paired tests

def test_paired_tests_consistent_difference_and_none():
    rng = np.random.default_rng(7)
    base = 30.0 + 3.0 * rng.standard_normal(20)
    better = base + 1.0 + 0.2 * rng.standard_normal(20)
    res = m.paired_tests(better, base)
    assert res["t_pvalue"] < 0.05 and res["wilcoxon_pvalue"] < 0.05
    assert res["mean_difference"] > 0.5
    signs = np.tile([1.0, -1.0], 10)
    res = m.paired_tests(base + signs * np.repeat(np.arange(1.0, 11.0), 2), base)
    assert res["t_pvalue"] > 0.9 and res["wilcoxon_pvalue"] > 0.9


# --------------------------------------------------------------------------- bad inputs

def test_bad_inputs_raise_clear_value_errors():
    ref = _volume()
    brain = np.ones(ref.shape, bool)
    with pytest.raises(ValueError, match="shape"):
        m.psnr_image(ref[:-1], ref)
    with pytest.raises(ValueError, match="shape"):
        m.psnr_brain(ref, ref, brain[:-1])
    with pytest.raises(ValueError, match="boolean"):
        m.psnr_brain(ref, ref, brain.astype(np.uint8))
    with pytest.raises(ValueError, match="empty"):
        m.contrast_to_noise_ratio(ref, np.zeros(ref.shape, bool), brain)
    with pytest.raises(ValueError, match="no lesion"):
        m.psnr_lesions(ref, ref, np.zeros(ref.shape, np.int32))
    with pytest.raises(ValueError, match="integer label image"):
        m.relative_enhancement(ref, ref, ref, brain)
    labels = np.zeros(ref.shape, np.int32)
    labels[2:4, 2:4, 2:4] = 1
    with pytest.raises(ValueError, match="no reference enhancement"):
        m.relative_enhancement(ref + 1, ref, ref, labels)
    with pytest.raises(ValueError, match="NaN"):
        m.psnr_image(np.full(ref.shape, np.nan), ref)
    with pytest.raises(ValueError, match="same number"):
        m.paired_tests([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="infinite"):
        m.paired_tests([math.inf, 2, 3], [1, 2, 3])
    with pytest.raises(ValueError, match="spacing"):
        lesion_geometry(labels, (1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="shape"):
        match_lesions(labels, labels[:-1], (1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="percent"):
        m.top_percent_mask(ref, brain, 0)
