"""The HTML report's figures as base64 palette PNG, drawn with matplotlib's Agg canvas.

Figures are built with `matplotlib.figure.Figure` and never through pyplot, so drawing
a report touches no global backend state and opens no window.
"""

from __future__ import annotations

import base64
import io
import math

import numpy as np

from .depth import DepthProfile, short_name

_DPI = 110
_OK, _FLAGGED = "#1f6fb2", "#c62828"
_WITHIN, _KINK, _MARK = "#eef1f5", "#9e9e9e", "#00b8d4"  # heat map: within tolerance, kink, listed worst
# `gradlab stats` verdicts other than ok, ringed in the depth plot: a -dW verdict on the dW panel only, a
# -delta verdict on the δ panel only (it says δ is out of scale where dW is not), the others on both
_VERDICT_COLOUR = {"vanishing-dW": "#ef6c00", "exploding-dW": "#c62828", "vanishing-delta": "#ef6c00", "exploding-delta": "#c62828",
                   "dead": "#6a1b9a", "zero-gradient": "#6a1b9a", "saturated": "#00838f"}
_PANEL_SKIPS = {"dW": "-delta", "delta": "-dW"}  # the verdict suffix a panel does not ring


def _png(fig) -> str:
    """The figure as a palette PNG: plots use few colours, and 8 bits a pixel are a third of the size."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from PIL import Image

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    image = Image.fromarray(np.asarray(canvas.buffer_rgba())).convert("RGB")
    buf = io.BytesIO()
    image.quantize(colors=128, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(buf, format="png", optimize=True)
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


def _panel(ax, depth, values, stds, verdicts, title: str, ylabel: str, labels, unit: str = "dense layer", quantity: str = "") -> None:
    v, zero = _depth_values(values)
    positive = np.isfinite(v) & (v > 0)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(f"{unit} (input side → output)", fontsize=9)
    ax.set_ylabel(ylabel, fontsize=9)
    many = len(labels) > 10  # N-d networks: a row per layer with parameters, nested ones included
    ax.set_xticks(depth, labels, fontsize=6 if len(labels) > 20 else 8, rotation=90 if many else 0)
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
        if quantity and verdict.endswith(_PANEL_SKIPS[quantity]):
            continue
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
    labels = [short_name(p.layer) for p in pts]
    unit = getattr(profile, "unit", "dense layer")
    verdicts = [p.verdict for p in pts]
    fig = Figure(figsize=(8.4, 3.0), layout="constrained")
    left, right = fig.subplots(1, 2)
    _panel(left, depth, [p.grad_norm for p in pts], [p.grad_norm_std for p in pts], verdicts,
           "gradient RMS per layer, RMS(dL/dW)", "RMS(dL/dW)", labels, unit, "dW")
    _panel(right, depth, [p.delta_ratio for p in pts], [p.delta_ratio_std for p in pts], verdicts,
           "δ ratio to the output layer", "RMS(δ) / RMS(δ output)", labels, unit, "delta")
    return fig


def depth_png(profile: DepthProfile) -> str:
    """Per-layer gradient RMS and delta ratio against depth, each on a log axis (an exact zero as a labelled marker at the floor)."""
    return _png(depth_figure(profile))


def _sig(x: float, digits: int) -> float:
    return float(f"{x:.{digits - 1}e}")


def _colour_scale(lo: float, hi: float):
    """The norm, ticks and tick labels of a colour bar over [lo, hi], the failing elements' range.

    None for the norm when every failing element has the same relative error (to 3 significant
    digits, as the tables print it): one colour, one label. A log scale labelled once per decade
    when the range spans a decade or more; a linear scale labelled at its ends otherwise.
    Labels are never repeated.
    """
    from matplotlib.colors import LogNorm, Normalize

    if _sig(lo, 3) == _sig(hi, 3):
        return None, [hi], [f"{hi:.3g}"]
    if hi / lo >= 10:
        decades = [10.0 ** k for k in range(math.ceil(math.log10(lo) - 1e-9), math.floor(math.log10(hi) + 1e-9) + 1)]
        ticks = decades if len(decades) >= 2 else [lo, *decades, hi]
        labels = [f"1e{round(math.log10(t)):+03d}" if t in decades else f"{t:.1e}" for t in ticks]
        return LogNorm(vmin=lo, vmax=hi), ticks, labels
    for digits in range(2, 8):
        labels = [f"{lo:.{digits}g}", f"{hi:.{digits}g}"]
        if labels[0] != labels[1]:
            break
    return Normalize(vmin=lo, vmax=hi), [lo, hi], labels


def heatmap_figure(rel_err, title: str, *, marked=()):
    """The heat map of one weight matrix's relative error, as (figure, RGBA cells, colour bar).

    `rel_err` is Comparison.rel_err_map: kinks are NaN (grey), elements within their tolerance
    are masked (pale, uncoloured); only failing elements take the colour scale, so the darkest
    cell is the worst element (compare.WORST_DEFINITION). `marked` are the listed worst
    elements' indices, worst first: each is outlined and, where cells are large enough, numbered.
    """
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import ListedColormap, Normalize, to_rgba
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle
    from matplotlib.ticker import MaxNLocator, NullLocator

    a = np.ma.asarray(rel_err, dtype=float)
    values = np.ma.getdata(a)
    within = np.ma.getmaskarray(a)
    kink = ~np.isfinite(values)
    failing = ~within & ~kink
    shown = values[failing & (values > 0)]
    hi = float(shown.max()) if shown.size else 1.0
    lo = float(shown.min()) if shown.size else hi
    norm, ticks, labels = _colour_scale(lo, hi)
    base = colormaps["magma_r"]
    if norm is None:  # a uniform error (a sign flip: 2 everywhere) is drawn as what it is: one colour
        colour = base(0.8)
        cmap = ListedColormap([colour])
        norm = Normalize(vmin=hi * (1 - 1e-3), vmax=hi * (1 + 1e-3))
        cells = np.broadcast_to(np.array(colour, dtype=float), (*values.shape, 4)).copy()
    else:
        # the palest fifth of the map is left out, so a failing cell never looks "within tolerance"
        cmap = ListedColormap(base(np.linspace(0.2, 1.0, 256)))
        cells = np.asarray(cmap(norm(np.clip(values, lo, hi))), dtype=float).reshape(*values.shape, 4)
    cells[within & ~kink] = to_rgba(_WITHIN)
    cells[kink] = to_rgba(_KINK)

    rows, cols = values.shape
    width = min(7.0, 3.8 + 0.25 * cols)
    height = min(5.0, 1.4 + 0.32 * rows)
    fig = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    ax = fig.subplots()
    ax.imshow(cells, interpolation="nearest", aspect="auto")
    ax.set_title(title, fontsize=9, parse_math=False, usetex=False)  # a parameter's `$` is a character, not TeX
    ax.set_xlabel(f"column (of {cols})", fontsize=8)
    ax.set_ylabel(f"row (of {rows})", fontsize=8)
    ax.tick_params(labelsize=7)
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(MaxNLocator(integer=True))
    numbered = rows * cols <= 600
    for rank, idx in enumerate(marked, 1):
        if len(idx) != 2:
            continue
        r, c = idx
        ax.add_patch(Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, ec=_MARK, lw=1.4))
        if numbered:
            ax.text(c, r, str(rank), ha="center", va="center", fontsize=6, color=_MARK, fontweight="bold")
    cbar = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="relative error (failing elements)")
    cbar.ax.yaxis.set_minor_locator(NullLocator())
    cbar.set_ticks(ticks, labels=labels)
    cbar.ax.tick_params(labelsize=7)
    return fig, cells, cbar


def heatmap_png(rel_err, title: str, *, marked=()) -> str:
    """heatmap_figure as base64 PNG."""
    return _png(heatmap_figure(rel_err, title, marked=marked)[0])
