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
_VERDICT_COLOUR = {"vanishing": "#ef6c00", "exploding": "#c62828", "dead": "#6a1b9a", "zero-gradient": "#6a1b9a", "saturated": "#00838f"}


def _png(fig) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI, metadata={"Software": None})
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _depth_values(values) -> tuple[np.ndarray, np.ndarray]:
    """(values, None as NaN; mask of exact zeros): a zero is a finding, drawn at the log axis's floor, never dropped."""
    v = np.array([np.nan if x is None else x for x in values], dtype=float)
    return v, np.isfinite(v) & (v == 0)


def _zero_floor(ax, lowest: float, highest: float) -> float:
    """Put an axis floor under a log axis's data and label it "0": where exact zeros are drawn.

    The floor is a decade below the lowest decade drawn, a dotted line half-way marks the break, and
    the y ticks are the decades above it plus the floor itself, so no power of ten sits under a zero.
    """
    k_lo = math.floor(math.log10(lowest))
    k_hi = max(math.ceil(math.log10(highest)), k_lo)
    floor = 10.0 ** (k_lo - 1)
    step = max(1, math.ceil((k_hi - k_lo + 1) / 8))  # at most about 8 decade labels
    decades = list(range(k_lo, k_hi + 1, step))
    ax.set_yticks([floor] + [10.0 ** k for k in decades], ["0"] + [f"$10^{{{k}}}$" for k in decades])
    ax.yaxis.set_minor_locator(_null_locator())  # minor ticks would run through the break
    ax.axhline(10.0 ** (k_lo - 0.5), color="#9e9e9e", ls=":", lw=1)
    ax.set_ylim(floor / 2, 10.0 ** k_hi * 2)
    return floor


def _null_locator():
    from matplotlib.ticker import NullLocator

    return NullLocator()


def _panel(ax, depth, values, stds, verdicts, title: str, ylabel: str, labels) -> None:
    v, zero = _depth_values(values)
    positive = np.isfinite(v) & (v > 0)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("dense layer (input side → output)", fontsize=9)
    ax.set_ylabel(ylabel, fontsize=9)
    ax.set_xticks(depth, labels, fontsize=8)
    ax.set_xlim(depth.min() - 0.5, depth.max() + 0.5)
    ax.grid(True, which="both", alpha=0.25)
    if not positive.any() and not zero.any():
        ax.text(0.5, 0.5, "no value (0/0: nothing reaches the output layer)", transform=ax.transAxes, ha="center", va="center",
                color=_FLAGGED, fontsize=8)
        ax.set_yticks([])
        return
    y = np.where(positive, v, np.nan)
    floor = 0.0
    if positive.any():
        ax.set_yscale("log")
        err = np.array([0.0 if s is None or not math.isfinite(s) else s for s in stds])
        # the lower whisker stays above zero on a log axis
        lower = np.where(positive, np.minimum(err, 0.9 * np.nan_to_num(y, nan=0.0)), 0.0)
        upper = np.where(positive, err, 0.0)
        if any(s is not None for s in stds):
            ax.errorbar(depth, y, yerr=[lower, upper], color=_OK, marker="o", ms=4, lw=1.5, capsize=3)
        else:
            ax.plot(depth, y, color=_OK, marker="o", ms=4, lw=1.5)
        if zero.any():
            floor = _zero_floor(ax, float(np.nanmin(y - lower)), float(np.nanmax(y + upper)))
    else:  # every value is exactly zero: a linear axis with the zeros on it
        ax.set_ylim(-1.0, 1.0)
        ax.set_yticks([0.0], ["0"])
        ax.text(0.5, 0.8, "all zero: nothing flows back", transform=ax.transAxes, ha="center", va="center", color=_FLAGGED)
    shown = np.where(zero, floor, y)  # where each layer's marker sits
    if zero.any():
        ax.plot(depth[zero], shown[zero], "v", ms=7, color=_FLAGGED, ls="none", label="exactly 0 (at the floor)")
        for d in depth[zero]:
            ax.annotate("0", (d, floor), textcoords="offset points", xytext=(0, 7), ha="center", fontsize=8, color=_FLAGGED)
    for verdict, colour in _VERDICT_COLOUR.items():
        idx = [i for i, v_ in enumerate(verdicts) if v_ == verdict and np.isfinite(shown[i])]
        if idx:
            ax.plot(depth[idx], shown[idx], "o", ms=11, mfc="none", mec=colour, mew=1.6, ls="none", label=verdict)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="best", title="stats verdict", title_fontsize=7)


def depth_figure(profile: DepthProfile):
    """The depth plot's Figure (tests read its artists): gradient RMS and delta ratio per layer, on log axes, zeros at the floor."""
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
    return fig


def depth_png(profile: DepthProfile) -> str:
    """Per-layer gradient RMS and delta ratio against depth, each on a log axis (an exact zero as a labelled marker at the floor)."""
    return _png(depth_figure(profile))


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
