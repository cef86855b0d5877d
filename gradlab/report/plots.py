"""The HTML report's figures as base64 PNG, drawn with matplotlib's Agg canvas.

Figures are built with `matplotlib.figure.Figure` and never through pyplot, so drawing
a report touches no global backend state and opens no window.
"""

from __future__ import annotations

import base64
import io
import math

import numpy as np

from .depth import DepthProfile

_DPI = 110
_OK, _FLAGGED = "#1f6fb2", "#c62828"
# `gradlab stats` verdicts other than ok, ringed in the depth plot
_VERDICT_COLOUR = {"vanishing": "#ef6c00", "exploding": "#c62828", "dead": "#6a1b9a", "saturated": "#00838f"}


def _png(fig) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI, metadata={"Software": None})
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _positive(values) -> np.ndarray:
    v = np.array([np.nan if x is None else x for x in values], dtype=float)
    return np.where(np.isfinite(v) & (v > 0), v, np.nan)


def _panel(ax, depth, values, stds, verdicts, title: str, ylabel: str, labels) -> None:
    y = _positive(values)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("dense layer (input side → output)", fontsize=9)
    ax.set_ylabel(ylabel, fontsize=9)
    ax.set_xticks(depth, labels, fontsize=8)
    ax.grid(True, which="both", alpha=0.25)
    if not np.isfinite(y).any():
        ax.text(0.5, 0.5, "all zero: nothing flows back", transform=ax.transAxes, ha="center", va="center", color=_FLAGGED)
        ax.set_yticks([])
        return
    ax.set_yscale("log")
    if any(s is not None for s in stds):
        err = np.array([0.0 if s is None or not math.isfinite(s) else s for s in stds])
        # the lower whisker stays above zero on a log axis
        lower = np.minimum(err, 0.9 * np.nan_to_num(y, nan=0.0))
        ax.errorbar(depth, y, yerr=[lower, err], color=_OK, marker="o", ms=4, lw=1.5, capsize=3)
    else:
        ax.plot(depth, y, color=_OK, marker="o", ms=4, lw=1.5)
    for verdict, colour in _VERDICT_COLOUR.items():
        idx = [i for i, v in enumerate(verdicts) if v == verdict and np.isfinite(y[i])]
        if idx:
            ax.plot(depth[idx], y[idx], "o", ms=9, mfc="none", mec=colour, mew=1.6, ls="none", label=verdict)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="best", title="stats verdict", title_fontsize=7)


def depth_png(profile: DepthProfile) -> str:
    """Per-layer gradient RMS and delta ratio against depth, each on a log axis."""
    from matplotlib.figure import Figure

    pts = profile.layers
    depth = np.array([p.depth for p in pts])
    labels = [p.layer.replace("layers.", "L") for p in pts]
    verdicts = [p.verdict for p in pts]
    fig = Figure(figsize=(8.4, 3.0), layout="constrained")
    left, right = fig.subplots(1, 2)
    _panel(left, depth, [p.grad_norm for p in pts], [p.grad_norm_std for p in pts], verdicts,
           "gradient RMS per layer, RMS(dL/dW)", "RMS(dL/dW)", labels)
    _panel(right, depth, [p.delta_ratio for p in pts], [p.delta_ratio_std for p in pts], verdicts,
           "δ ratio to the output layer", "RMS(δ) / RMS(δ output)", labels)
    return _png(fig)


def heatmap_png(rel_err: np.ndarray, title: str) -> str:
    # `title` may hold a line break: a narrow matrix gives a narrow figure
    """Elementwise relative error of one weight matrix on a log colour scale; kinks in grey."""
    from matplotlib import colormaps
    from matplotlib.colors import LogNorm
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    a = np.asarray(rel_err, dtype=float)
    finite = a[np.isfinite(a) & (a > 0)]
    vmax = float(finite.max()) if finite.size else 1.0
    vmin = max(float(finite.min()) if finite.size else vmax * 1e-3, vmax * 1e-16)
    shown = np.where(np.isfinite(a), np.clip(a, vmin, None), np.nan)
    rows, cols = a.shape
    width = min(7.0, 3.8 + 0.25 * cols)
    height = min(5.0, 1.4 + 0.32 * rows)
    fig = Figure(figsize=(width, height), layout="constrained")
    ax = fig.subplots()
    cmap = colormaps["magma_r"].with_extremes(bad="#bdbdbd")
    norm = LogNorm(vmin=vmin, vmax=vmax) if vmax > vmin else None
    im = ax.imshow(shown, cmap=cmap, norm=norm, interpolation="nearest", aspect="auto")
    ax.set_title(title, fontsize=9, parse_math=False, usetex=False)  # a parameter's `$` is a character, not TeX
    ax.set_xlabel(f"column (of {cols})", fontsize=8)
    ax.set_ylabel(f"row (of {rows})", fontsize=8)
    ax.tick_params(labelsize=7)
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(MaxNLocator(integer=True))
    fig.colorbar(im, ax=ax, label="relative error").ax.tick_params(labelsize=7)
    return _png(fig)
