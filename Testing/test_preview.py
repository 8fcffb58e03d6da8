"""Preview montage: a PNG a person can look at, with titles, both views and label overlays."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from GadoReduceLib.io.preview import montage


def _volumes():
    shape = (20, 30, 40)                      # k, j, i
    dark = np.zeros(shape, dtype=np.float32)
    dark[2:18, 5:25, 5:35] = 10.0             # a box of moderate intensity
    bright = dark.copy()
    bright[8:12, 12:18, 15:25] = 100.0        # plus a bright "lesion" in the middle
    labels = np.zeros(shape, dtype=np.uint8)
    labels[8:12, 12:18, 15:25] = 4
    return dark, bright, labels


def test_montage_layout_titles_and_overlay(tmp_path):
    dark, bright, labels = _volumes()
    out = montage([dark, bright], ["pre-contrast", "standard dose"], tmp_path / "sub" / "m.png",
                  label_overlay=labels, spacing=(1.0, 1.0, 2.0), shared_window=True, panel_width=120,
                  footer="synthetic")
    img = np.asarray(Image.open(out).convert("RGB")).astype(int)
    assert img.shape[1] == 3 * 120                              # two images + the labels column
    title_strip = img[:12]
    for c in range(3):                                          # every column has its title text
        assert title_strip[:, c * 120:(c + 1) * 120].max() > 100
    # axial panel: rows = 30 * 120/40 = 90 pixels; the bright lesion shows in the middle of column 2 only
    y0 = max(12, 120 // 14) + 10                               # title strip height
    centre_dark = img[y0 + 45, 60]
    centre_bright = img[y0 + 45, 120 + 60]
    assert centre_bright.mean() > 200 and centre_dark.mean() < 60   # shared window: 10 vs 100
    lesion_overlay = img[y0 + 45, 240 + 60]
    assert lesion_overlay[0] > 80 and lesion_overlay[1] > 80 and lesion_overlay[2] < 40   # yellow: label 4
    # coronal row exists below (20 slices * 2 mm -> 120 * 40/40 = 60 pixels high)
    assert img.shape[0] >= y0 + 90 + 60


def test_montage_per_image_window_differs_from_shared(tmp_path):
    dark, bright, _ = _volumes()
    a = np.asarray(Image.open(montage([dark, bright], ["a", "b"], tmp_path / "a.png", panel_width=80)))
    b = np.asarray(Image.open(montage([dark, bright], ["a", "b"], tmp_path / "b.png", panel_width=80,
                                      shared_window=True)))
    # per-image window: the box of the dark image is displayed bright; with the shared window it is dim
    y = max(12, 80 // 14) + 10 + 30
    assert a[y, 12].mean() > 200 and b[y, 12].mean() < 60


def test_montage_bad_inputs(tmp_path):
    dark, bright, labels = _volumes()
    with pytest.raises(ValueError, match="titles"):
        montage([dark, bright], ["only one"], tmp_path / "x.png")
    with pytest.raises(ValueError, match="3D"):
        montage([dark[0]], ["2d"], tmp_path / "x.png")
    with pytest.raises(ValueError, match="grid"):
        montage([dark, bright[:10]], ["a", "b"], tmp_path / "x.png")
    with pytest.raises(ValueError, match="overlay"):
        montage([dark], ["a"], tmp_path / "x.png", label_overlay=labels[:5])
    with pytest.raises(ValueError, match=".png"):
        montage([dark], ["a"], tmp_path / "x.jpg")
    assert not list(tmp_path.iterdir())                 # nothing half-written
