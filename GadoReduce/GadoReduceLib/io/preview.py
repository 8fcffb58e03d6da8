"""Preview montages: mid slices of several 3D images side by side, with text labels, as a PNG.

Layout: one column per image, row 1 the axial mid slice, row 2 the coronal mid slice. Arrays are indexed
[k, j, i] (as ``sitk.GetArrayFromImage`` returns them; for an LPS-aligned image k = inferior->superior,
j = anterior->posterior, i = right->left), so the axial view has anterior at the top and the patient's
left on the right of the picture (radiological convention), the coronal view superior at the top.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .atomic import atomic_path

LABEL_COLOURS = {1: (255, 64, 64), 2: (64, 200, 64), 3: (64, 128, 255), 4: (255, 220, 0)}
"""RGB of label values in overlays (BraTS: 1 necrosis/non-enhancing, 2 oedema, 4 enhancing tumour);
other label values cycle through a fixed palette."""
_PALETTE = [(255, 64, 64), (64, 200, 64), (64, 128, 255), (255, 220, 0), (255, 0, 255), (0, 255, 255),
            (255, 128, 0), (160, 96, 255)]


def _window(array: np.ndarray, low_pct: float = 0.5, high_pct: float = 99.5) -> tuple[float, float]:
    """Display window (low, high): percentiles of the non-zero finite voxels (all voxels if none is
    non-zero); low is 0 for images without negative values."""
    values = array[np.isfinite(array)]
    nonzero = values[values != 0]
    values = nonzero if nonzero.size else values
    if values.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(values, [low_pct, high_pct])
    if np.min(values) >= 0:
        lo = 0.0              # magnitude images: black is zero signal
    if hi <= lo:
        hi = lo + 1.0
    return float(lo), float(hi)


def _to_uint8(slice_2d: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    lo, hi = window
    scaled = (np.nan_to_num(slice_2d.astype(np.float64)) - lo) / (hi - lo)
    return (np.clip(scaled, 0.0, 1.0) * 255).astype(np.uint8)


def _mid_slices(volume: np.ndarray, spacing: tuple[float, float, float]) -> list[tuple[np.ndarray, float]]:
    """[(axial slice, row/column pixel aspect), (coronal slice flipped superior-up, aspect)]."""
    k, j, _i = volume.shape
    sx, sy, sz = spacing
    axial = volume[k // 2]
    coronal = volume[:, j // 2, :][::-1]
    return [(axial, sy / sx), (coronal, sz / sx)]


def _overlay(rgb: np.ndarray, labels_2d: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    out = rgb.astype(np.float64)
    for value in np.unique(labels_2d):
        if value == 0:
            continue
        colour = LABEL_COLOURS.get(int(value), _PALETTE[int(value) % len(_PALETTE)])
        mask = labels_2d == value
        out[mask] = (1 - alpha) * out[mask] + alpha * np.asarray(colour, dtype=np.float64)
    return out.astype(np.uint8)


def _panel(gray: np.ndarray, aspect: float, width: int, labels_2d: np.ndarray | None) -> Image.Image:
    rgb = np.repeat(gray[..., None], 3, axis=2)
    if labels_2d is not None:
        rgb = _overlay(rgb, labels_2d)
    rows, cols = gray.shape
    height = max(1, int(round(width * rows * aspect / cols)))
    return Image.fromarray(rgb, "RGB").resize((width, height), Image.Resampling.BILINEAR)


def montage(images: list[np.ndarray], titles: list[str], path, label_overlay: np.ndarray | None = None,
            spacing: tuple[float, float, float] = (1.0, 1.0, 1.0), shared_window: bool = False,
            panel_width: int = 240, footer: str | None = None) -> Path:
    """Write a PNG montage of axial and coronal mid slices of ``images`` with ``titles`` above the columns.

    images: 3D arrays [k, j, i] of the same shape; titles: one per image; path: output .png (written
    atomically); label_overlay: integer label array of the same shape, shown as an extra column
    "labels" (coloured overlay on the first image); spacing: voxel spacing (x, y, z) mm of the arrays,
    for correct aspect ratios; shared_window: one display window for all images (from the percentiles of
    their union) instead of one per image, so equal intensities look equal across columns;
    panel_width: pixels per column; footer: optional line of text at the bottom.
    Returns the path written.
    """
    if not images:
        raise ValueError("montage needs at least one image")
    if len(titles) != len(images):
        raise ValueError(f"montage got {len(images)} images but {len(titles)} titles; give one title per image")
    arrays = [np.asarray(a) for a in images]
    for a, title in zip(arrays, titles):
        if a.ndim != 3:
            raise ValueError(f"montage image {title!r} has {a.ndim} dimensions; give 3D arrays [k, j, i]")
        if a.shape != arrays[0].shape:
            raise ValueError(f"montage image {title!r} has shape {a.shape}, the first has {arrays[0].shape}; "
                             "resample the images to one grid first")
    if label_overlay is not None and np.asarray(label_overlay).shape != arrays[0].shape:
        raise ValueError(f"label overlay shape {np.asarray(label_overlay).shape} differs from the images' "
                         f"{arrays[0].shape}")
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"preview path {str(path)!r} must end with .png")

    if shared_window:
        window = _window(np.concatenate([a[np.isfinite(a)].ravel() for a in arrays]))
        windows = [window] * len(arrays)
    else:
        windows = [_window(a) for a in arrays]
    columns = [(a, t, w, None) for a, t, w in zip(arrays, titles, windows)]
    if label_overlay is not None:
        columns.append((arrays[0], "labels", windows[0], np.asarray(label_overlay)))

    font_size = max(12, panel_width // 14)
    font = ImageFont.load_default(size=font_size)
    small = ImageFont.load_default(size=max(10, font_size - 4))
    title_h = font_size + 10
    panels = []
    for array, _title, window, labels in columns:
        views = _mid_slices(array, spacing)
        label_views = _mid_slices(labels, spacing) if labels is not None else [(None, 0), (None, 0)]
        panels.append([_panel(_to_uint8(s, window), asp, panel_width, lab)
                       for (s, asp), (lab, _) in zip(views, label_views)])
    row_heights = [max(col[r].height for col in panels) for r in range(2)]
    footer_h = font_size + 10 if footer else 0
    canvas = Image.new("RGB", (panel_width * len(columns), title_h + sum(row_heights) + footer_h), (0, 0, 0))
    draw = ImageDraw.Draw(canvas)
    for c, ((_, title, _, _), col) in enumerate(zip(columns, panels)):
        x = c * panel_width
        draw.text((x + 5, 4), title, fill=(255, 255, 255), font=font)
        y = title_h
        for r, panel in enumerate(col):
            canvas.paste(panel, (x, y))
            draw.text((x + 4, y + 2), ("axial", "coronal")[r], fill=(200, 200, 0), font=small)
            y += row_heights[r]
    if footer:
        draw.text((5, title_h + sum(row_heights) + 4), footer, fill=(200, 200, 200), font=font)

    with atomic_path(path) as partial:
        canvas.save(partial, format="PNG")
    return path


def contact_sheet(rows: list[tuple[str, Path | None]], path, width: int = 1200, footer: str | None = None) -> Path:
    """Write a PNG with one row per (title, montage PNG or None): each montage scaled to ``width`` pixels under its
    title; a row without a montage shows only its title (e.g. a failed case and why). Returns the path written."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"contact sheet path {str(path)!r} must end with .png")
    if not rows:
        raise ValueError("a contact sheet needs at least one row")
    font = ImageFont.load_default(size=18)
    title_h = 28
    pictures = []
    for title, png in rows:
        picture = None
        if png is not None and Path(png).is_file():
            with Image.open(png) as image:
                scale = width / image.width
                picture = image.convert("RGB").resize((width, max(1, round(image.height * scale))))
        pictures.append((title, picture))
    footer_h = title_h if footer else 0
    height = sum(title_h + (p.height if p else 0) for _, p in pictures) + footer_h
    canvas = Image.new("RGB", (width, height), (0, 0, 0))
    draw = ImageDraw.Draw(canvas)
    y = 0
    for title, picture in pictures:
        draw.text((6, y + 4), title[:160], fill=(255, 255, 255) if picture else (255, 120, 120), font=font)
        y += title_h
        if picture is not None:
            canvas.paste(picture, (0, y))
            y += picture.height
    if footer:
        draw.text((6, y + 4), footer, fill=(200, 200, 200), font=font)
    with atomic_path(path) as tmp:
        canvas.save(tmp, format="PNG")
    return path
