"""Figures of the learning-gap analysis: "weight escape" curves and gap-vs-accuracy scatter.

Built on ``matplotlib.figure.Figure`` directly (no ``pyplot``): no global figure state, no
GUI backend, safe in worker processes and on headless machines. Every figure is written as
PNG (for the markdown report) and SVG (for papers), each atomically. matplotlib is the
``plots`` extra: it is imported when the first figure is drawn, never by importing this module.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from ..atomic import atomic_path
from ..extras import require
from .correlate import pearson, spearman
from .runs import Run, run_labels

if TYPE_CHECKING:
    from matplotlib.figure import Figure

FORMATS = ("png", "svg")
GAP_LABEL = "learning gap G\n(τ²·KL(T‖S), nats)"
GAP_RAW_LABEL = "raw learning gap\n(‖φ_S − φ_T‖², feature units²)"
WD_LABEL = "weight distance\n‖θ_t − θ_0‖₂ (weight units)"
WD_REL_LABEL = "relative weight distance\n‖θ_t − θ_0‖₂ / ‖θ_0‖₂"
ACC_LABEL = "test accuracy (%)"
AXIS_LABELS = {"gap": GAP_LABEL, "gap_raw": GAP_RAW_LABEL, "weight_distance": WD_LABEL,
               "weight_distance_rel": WD_REL_LABEL, "test_acc": ACC_LABEL,
               "teacher_agreement": "agreement with the teacher (%)"}
PERCENT_KEYS = {"test_acc", "teacher_agreement", "train_acc"}


def new_figure(**kwargs: Any) -> Figure:
    """A ``matplotlib.figure.Figure`` (no pyplot state); a one-line error names the ``plots``
    extra when matplotlib is not installed."""
    return require("matplotlib.figure", "drawing figures").Figure(**kwargs)


def save_figure(fig: Figure, out_dir: Path, stem: str, formats: Sequence[str] = FORMATS) -> list[Path]:
    """Write ``fig`` as ``out_dir/stem.<fmt>`` for each format, atomically; return the paths."""
    paths = []
    for fmt in formats:
        path = Path(out_dir) / f"{stem}.{fmt}"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=150)  # constrained layout already fits
        paths.append(path)
    return paths


def colors(n: int) -> list:
    """Distinct colours: tab10 up to 10 series, then evenly spaced viridis."""
    colormaps = require("matplotlib", "drawing figures").colormaps
    if n <= 10:
        return [colormaps["tab10"](i) for i in range(n)]
    return [colormaps["viridis"](v) for v in np.linspace(0.0, 0.95, n)]


def scaled(key: str, values: np.ndarray) -> np.ndarray:
    """Fractions become percentages on the axes (readers think in %)."""
    return values * 100.0 if key in PERCENT_KEYS else values


def weight_escape_figure(runs: list[Run], out_dir: Path, stem: str = "weight_escape",
                         panels: Sequence[str] = ("weight_distance", "gap", "test_acc")) -> list[Path]:
    """Weight distance, learning gap and test accuracy against the epoch, one panel each on a
    shared x-axis, every run overlaid: if W keeps climbing after accuracy flattens while G
    flattens with it, the weights "escape" along directions that do not change the function."""
    labels = run_labels(runs)
    fig = new_figure(figsize=(7.5, 2.3 * len(panels) + 0.6), layout="constrained")
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    palette = colors(len(runs))
    for ax, key in zip(axes, panels):
        for run, label, color in zip(runs, labels, palette):
            y = scaled(key, run.series(key))
            x = run.epochs()
            keep = np.isfinite(y)
            if keep.any():
                ax.plot(x[keep], y[keep], marker="o", markersize=3, linewidth=1.5, color=color, label=label)
        ax.set_ylabel(AXIS_LABELS.get(key, key), fontsize=9)
        ax.grid(True, alpha=0.3)
        if not ax.has_data():
            ax.text(0.5, 0.5, f"no '{key}' logged", ha="center", va="center", transform=ax.transAxes, color="grey")
    axes[-1].set_xlabel("epoch")
    axes[0].set_title("Weight escape: distance from init vs learning gap vs accuracy")
    if len(runs) <= 12:  # below the panels, so the legend never hides a curve
        handles, names = axes[0].get_legend_handles_labels()
        fig.legend(handles, names, loc="outside lower center", ncols=min(2, len(names)) or 1, fontsize=7)
    else:
        axes[0].text(0.01, 0.97, f"{len(runs)} runs (colour = run order)", transform=axes[0].transAxes,
                     fontsize=7, va="top")
    try:
        return save_figure(fig, out_dir, stem)
    finally:
        fig.clear()


def _trend(ax, x: np.ndarray, y: np.ndarray) -> str:
    """Least-squares line through the points; returns the legend text with r and rho."""
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    r, rho = pearson(x, y), spearman(x, y)
    text = f"Pearson r = {r.value:.2f}, Spearman ρ = {rho.value:.2f} (n={len(x)})" if r.reason is None \
        else f"no correlation: {r.reason}"
    if len(x) >= 2 and np.ptp(x) > 0:
        slope, intercept = np.polyfit(x, y, 1)
        xs = np.linspace(x.min(), x.max(), 50)
        ax.plot(xs, slope * xs + intercept, color="black", linestyle="--", linewidth=1.2,
                label=f"linear fit: slope {slope:.3g}")
    return text


def gap_scatter_figure(runs: list[Run], out_dir: Path, stem: str = "gap_vs_accuracy",
                       metrics: Sequence[str] = ("gap", "weight_distance")) -> list[Path]:
    """Final learning gap (and weight distance, for contrast) against final test accuracy,
    one point per run, with a fitted linear trend and the correlations in the title."""
    group_key = "criterion" if len({str(r.setting("criterion")) for r in runs}) > 1 else None
    groups = sorted({str(r.setting(group_key)) for r in runs}) if group_key else ["run"]
    palette = dict(zip(groups, colors(len(groups))))
    fig = new_figure(figsize=(5.0 * len(metrics), 4.2), layout="constrained")
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    acc = np.array([r.final("test_acc") * 100.0 for r in runs])
    for ax, key in zip(axes, metrics):
        x = np.array([r.final(key) for r in runs])
        for g in groups:
            sel = np.array([(str(r.setting(group_key)) if group_key else "run") == g for r in runs])
            ax.scatter(x[sel], acc[sel], s=36, color=palette[g], edgecolor="black", linewidth=0.5,
                       label=f"{group_key}={g}" if group_key else "runs", zorder=3)
        ax.set_title(_trend(ax, x, acc), fontsize=9)
        ax.set_xlabel("final " + AXIS_LABELS.get(key, key).replace("\n", " "), fontsize=9)
        ax.set_ylabel("final " + ACC_LABEL)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    fig.suptitle("Across runs: does the final metric predict final accuracy?", fontsize=10)
    try:
        return save_figure(fig, out_dir, stem)
    finally:
        fig.clear()
