"""Loss-curve PNG of a training run, drawn with Pillow (no plotting library needed).

Training loss per step (light) and its moving average (dark blue), validation loss (orange dots);
logarithmic loss axis, steps on the horizontal axis.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

WIDTH, HEIGHT = 800, 450
LEFT, RIGHT, TOP, BOTTOM = 80, 20, 40, 50


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over up to ``window`` values (same length as ``values``)."""
    values = np.asarray(values, float)
    if values.size == 0:
        return values
    c = np.cumsum(np.r_[0.0, values])
    idx = np.arange(1, values.size + 1)
    lo = np.maximum(idx - window, 0)
    return (c[idx] - c[lo]) / (idx - lo)


def plot_loss_curve(history: dict, path, title: str = "GadoReduce training loss") -> Path:
    """Write the PNG for ``history`` ({"train": [[step, loss, lr], ...], "validation": [{"step", "loss"}]})."""
    from PIL import Image, ImageDraw
    path = Path(path)
    train = np.asarray([row[:2] for row in history.get("train", [])], float).reshape(-1, 2)
    val = np.asarray([[v["step"], v["loss"]] for v in history.get("validation", []) if v.get("loss") is not None],
                     float).reshape(-1, 2)
    image = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(image)
    draw.text((LEFT, 12), title + " (log scale); orange: validation", fill="black")
    losses = np.r_[train[:, 1], val[:, 1]]
    losses = losses[np.isfinite(losses) & (losses > 0)]
    steps = np.r_[train[:, 0], val[:, 0]]
    x0, x1, y0, y1 = LEFT, WIDTH - RIGHT, HEIGHT - BOTTOM, TOP
    draw.rectangle([x0, y1, x1, y0], outline="black")
    if losses.size == 0:
        draw.text((x0 + 10, (y0 + y1) // 2), "no finite losses yet", fill="black")
    else:
        lo, hi = np.log10(losses.min()), np.log10(losses.max())
        if hi - lo < 1e-6:
            lo, hi = lo - 0.5, hi + 0.5
        smax, smin = max(steps.max(), 1.0), min(steps.min(), 0.0)
        sx = lambda s: x0 + (s - smin) / max(smax - smin, 1e-9) * (x1 - x0)  # noqa: E731
        sy = lambda v: y0 - (np.log10(max(v, 1e-30)) - lo) / (hi - lo) * (y0 - y1)  # noqa: E731
        for decade in range(int(np.floor(lo)), int(np.ceil(hi)) + 1):
            for mult in (1, 2, 5):
                value = mult * 10.0 ** decade
                if lo <= np.log10(value) <= hi:
                    y = sy(value)
                    draw.line([x0, y, x1, y], fill=(225, 225, 225))
                    draw.text((6, y - 6), f"{value:.0e}", fill="black")
        for frac in np.linspace(0, 1, 5):
            s = smin + frac * (smax - smin)
            draw.text((sx(s) - 10, y0 + 8), f"{int(round(s))}", fill="black")
        draw.text(((x0 + x1) // 2 - 15, HEIGHT - 20), "step", fill="black")
        if len(train) > 1:
            draw.line([(sx(s), sy(v)) for s, v in train], fill=(170, 190, 230), width=1)
            smooth = moving_average(train[:, 1], max(1, len(train) // 50))
            draw.line([(sx(s), sy(v)) for s, v in zip(train[:, 0], smooth)], fill=(20, 60, 160), width=2)
        elif len(train) == 1:
            s, v = train[0]
            draw.ellipse([sx(s) - 3, sy(v) - 3, sx(s) + 3, sy(v) + 3], fill=(20, 60, 160))
        for s, v in val:
            draw.ellipse([sx(s) - 4, sy(v) - 4, sx(s) + 4, sy(v) + 4], fill=(240, 130, 20))
    from ..io.atomic import atomic_path
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
    return path
