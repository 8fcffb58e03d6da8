"""Evaluation figures (issue 7): lesion zooms per method, box plots per metric, dose-response of c^.

Box plots and the dose-response plot use matplotlib when it is installed (its object API and the Agg
canvas, so no global backend is changed, e.g. inside 3D Slicer); otherwise a plain PIL drawing.
Lesion zooms are always drawn with PIL: one row per lesion (the largest ones), one column per method,
an axial crop around the lesion's centroid, one display window per row (from the standard dose), so equal
intensities look equal across methods. Figures show synthetic images: research only, not for diagnosis.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..io.atomic import atomic_path
from ..metrics.detection import lesion_geometry

BOX_METRICS = (("psnr_image", "PSNR_I (dB)"), ("psnr_brain", "PSNR_B (dB)"), ("psnr_lesions", "PSNR_L (dB)"),
               ("ssim", "SSIM"), ("mae_ce", "MAE_CE"), ("c_bar", "c-bar"), ("c_hat", "c^"), ("cnr", "CNR"),
               ("lbr", "LBR"), ("cep", "CEP (%)"), ("dice_10", "Dice, top 10 %"))
COLOURS = {"low_dose": (120, 120, 120), "linear_scaling": (230, 140, 30), "gadoreduce": (30, 110, 220),
           "gadoreduce_fixed_condition": (140, 80, 200), "standard_dose": (40, 160, 70)}
ZOOM_TITLES = {"pre_contrast": "pre-contrast", "low_dose": "low dose", "linear_scaling": "linear scaling",
               "gadoreduce": "GadoReduce", "gadoreduce_fixed_condition": "fixed condition",
               "standard_dose": "standard dose"}


def _save_png(image: Image.Image, path: Path) -> Path:
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
    return Path(path)


def _font(size: int):
    return ImageFont.load_default(size=size)


# ----------------------------------------------------------------------------- lesion zooms

def lesion_zoom(arrays, images: dict[str, np.ndarray], path, title: str, max_lesions: int = 3,
                half_width_mm: float = 24.0, panel: int = 144) -> Path | None:
    """PNG of axial crops (``half_width_mm`` around each of the ``max_lesions`` largest lesions' centroid):
    pre-contrast, then each method of ``images`` (ordered as given). None when the case has no lesion."""
    lesions = sorted(lesion_geometry(arrays.lesions, arrays.spacing),
                     key=lambda lesion: (-int((arrays.lesions == lesion.label).sum()), lesion.label))[:max_lesions]
    if not lesions:
        return None
    columns = [("pre_contrast", arrays.pre)] + list(images.items())
    sx, sy, _ = arrays.spacing
    font, small = _font(14), _font(11)
    head, foot = 22, 18
    canvas = Image.new("RGB", (panel * len(columns), head + panel * len(lesions) + foot), (0, 0, 0))
    draw = ImageDraw.Draw(canvas)
    for c, (name, _) in enumerate(columns):
        draw.text((c * panel + 4, 4), ZOOM_TITLES.get(name, name), fill=(255, 255, 255), font=font)
    for r, lesion in enumerate(lesions):
        k, j, i = (int(round(v / s)) for v, s in zip(lesion.centroid_mm, arrays.spacing[::-1]))
        hj, hi = max(2, int(round(half_width_mm / sy))), max(2, int(round(half_width_mm / sx)))
        shape = arrays.pre.shape
        js = slice(max(0, j - hj), min(shape[1], j + hj + 1))
        is_ = slice(max(0, i - hi), min(shape[2], i + hi + 1))
        reference = arrays.standard[k, js, is_]
        lo, hi_v = 0.0, float(np.percentile(reference, 99.5)) or 1.0
        for c, (name, volume) in enumerate(columns):
            crop = np.clip((volume[k, js, is_] - lo) / (hi_v - lo), 0, 1)
            tile = Image.fromarray((crop * 255).astype(np.uint8), "L").convert("RGB")
            canvas.paste(tile.resize((panel, panel), Image.Resampling.BILINEAR), (c * panel, head + r * panel))
        draw.text((4, head + r * panel + 2), f"lesion {lesion.label}, {lesion.long_axis_mm:.0f} mm",
                  fill=(255, 220, 0), font=small)
    draw.text((4, head + panel * len(lesions) + 3), f"{title}. Research only, not for diagnosis.",
              fill=(200, 200, 200), font=small)
    return _save_png(canvas, Path(path))


# ----------------------------------------------------------------------------- charts

def _matplotlib():
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return None
    return Figure, FigureCanvasAgg


def _series(rows, metric, method, dose) -> list[float]:
    return [float(r[metric]) for r in rows if r["method"] == method and r["dose"] == dose
            and math.isfinite(float(r[metric]))]


def box_plot(rows, metric: str, label: str, methods, doses, path) -> Path:
    """Box plot of ``metric`` per dose (groups) and method (colours) over cases."""
    path = Path(path)
    mpl = _matplotlib()
    if mpl is not None:
        Figure, Canvas = mpl
        fig = Figure(figsize=(1.6 + 1.2 * len(doses) * len(methods) / 2, 3.6), dpi=100)
        Canvas(fig)
        ax = fig.add_subplot()
        width = 0.8 / len(methods)
        for m_index, method in enumerate(methods):
            data = [_series(rows, metric, method, d) for d in doses]
            positions = [d_index + (m_index - (len(methods) - 1) / 2) * width for d_index in range(len(doses))]
            keep = [(p, v) for p, v in zip(positions, data) if v]
            if keep:
                parts = ax.boxplot([v for _, v in keep], positions=[p for p, _ in keep], widths=width * 0.85,
                                   patch_artist=True, manage_ticks=False)
                for box in parts["boxes"]:
                    box.set_facecolor(np.asarray(COLOURS.get(method, (0, 0, 0))) / 255)
            ax.plot([], [], color=np.asarray(COLOURS.get(method, (0, 0, 0))) / 255, lw=6, label=method)
        ax.set_xticks(range(len(doses)), [f"dose {d:g}" for d in doses])
        ax.set_ylabel(label)
        ax.legend(fontsize=7, loc="best")
        ax.set_title(f"{label} per case (research only)", fontsize=9)
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png")
        return path
    groups = [(f"{d:g}", method, _series(rows, metric, method, d)) for d in doses for method in methods]
    return _pil_chart(groups, label, path, boxes=True)


def dose_response(rows, methods, doses, path, metric: str = "c_hat", label: str = "c^ (mean over lesions)") -> Path:
    """Mean (± sd over cases) of ``metric`` against dose, one line per method; 1 = the standard dose."""
    path = Path(path)
    mpl = _matplotlib()
    stats = {m: [(d, _series(rows, metric, m, d)) for d in doses] for m in methods}
    if mpl is not None:
        Figure, Canvas = mpl
        fig = Figure(figsize=(5, 3.6), dpi=100)
        Canvas(fig)
        ax = fig.add_subplot()
        for method, points in stats.items():
            pts = [(d, float(np.mean(v)), float(np.std(v))) for d, v in points if v]
            if pts:
                ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts], marker="o",
                            capsize=3, label=method, color=np.asarray(COLOURS.get(method, (0, 0, 0))) / 255)
        ax.axhline(1.0, color="0.5", lw=0.8, ls="--")
        ax.set_xlabel("dose (fraction of the standard dose)")
        ax.set_ylabel(label)
        ax.legend(fontsize=7)
        ax.set_title(f"{label} against dose (research only)", fontsize=9)
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png")
        return path
    groups = [(f"{d:g}", m, v) for m, points in stats.items() for d, v in points]
    return _pil_chart(groups, label, path, boxes=False)


def _pil_chart(groups, label: str, path: Path, boxes: bool) -> Path:
    """Fallback without matplotlib: per (x label, method, values) a box (min, quartiles, max) or a mean dot."""
    width, height, left, bottom, top = 120 + 36 * len(groups), 320, 70, 60, 30
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    values = [v for _, _, vs in groups for v in vs]
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    y = lambda v: top + (height - top - bottom) * (1 - (v - lo) / (hi - lo))  # noqa: E731
    draw.line([(left, top), (left, height - bottom), (width - 10, height - bottom)], fill=(0, 0, 0))
    font = _font(11)
    for tick in np.linspace(lo, hi, 5):
        draw.text((4, y(tick) - 6), f"{tick:.3g}", fill=(0, 0, 0), font=font)
    for n, (xlabel, method, vs) in enumerate(groups):
        x = left + 20 + 36 * n
        colour = COLOURS.get(method, (0, 0, 0))
        if vs:
            q = np.percentile(vs, [0, 25, 50, 75, 100])
            if boxes:
                draw.line([(x + 12, y(q[0])), (x + 12, y(q[4]))], fill=colour)
                draw.rectangle([x + 2, y(q[3]), x + 22, y(q[1])], outline=colour, fill=colour)
                draw.line([(x + 2, y(q[2])), (x + 22, y(q[2]))], fill=(0, 0, 0))
            else:
                m = float(np.mean(vs))
                draw.ellipse([x + 8, y(m) - 4, x + 16, y(m) + 4], fill=colour)
        draw.text((x, height - bottom + 4), xlabel, fill=(0, 0, 0), font=font)
        draw.text((x, height - bottom + 18 + 12 * (n % 3)), method[:10], fill=colour, font=font)
    draw.text((left, 6), f"{label} (research only)", fill=(0, 0, 0), font=font)
    return _save_png(canvas, path)


def calibration_plot(calibrations: list[dict], path) -> Path | None:
    """Mean absolute error of the gadoreduce image against its uncertainty, per uncertainty decile of the brain's
    voxels (``uncertainty.calibration``), one line per (case, dose, simulator) with its Spearman correlation in
    the legend; None without matplotlib."""
    mpl = _matplotlib()
    if mpl is None or not calibrations:
        return None
    path = Path(path)
    Figure, Canvas = mpl
    fig = Figure(figsize=(6.4, 4.2), dpi=100)
    Canvas(fig)
    ax = fig.add_subplot()
    for c in calibrations:
        u = [b["mean_uncertainty"] for b in c["bins"]]
        e = [b["mean_abs_error"] for b in c["bins"]]
        ax.plot(u, e, marker="o", ms=3, lw=1, label=f"{c['case']} dose {c['dose']:g}: rho {c['spearman']:.2f}")
    ax.set_xscale("symlog", linthresh=1e-3)
    ax.set_xlabel("uncertainty (mean per decile of brain voxels, normalized units)")
    ax.set_ylabel("mean |error| against the standard dose")
    ax.legend(fontsize=6, loc="best")
    ax.set_title("Error against uncertainty inside the brain (research only)", fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


def write_figures(result: dict, methods, doses, output: Path) -> list[str]:
    """Box plots and the dose-response plot under ``output/figures``; returns paths relative to ``output``.
    (Lesion zooms are written per case during the evaluation: :func:`lesion_zoom`.)"""
    output = Path(output)
    folder = output / "figures"
    written = [box_plot(result["cases"], metric, label, methods, doses, folder / f"box_{metric}.png")
               for metric, label in BOX_METRICS]
    written.append(dose_response(result["cases"], methods, doses, folder / "dose_response_c_hat.png"))
    calibrated = calibration_plot(result.get("calibration", []), folder / "uncertainty_calibration.png")
    written += [calibrated] if calibrated is not None else []
    return sorted(str(Path(p).relative_to(output)) for p in written)
