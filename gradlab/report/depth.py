"""How the gradient changes with depth, per dense layer: what the HTML report plots.

The numbers come from `gradlab stats` (means and spreads over several initialisations);
`source` says how many, and the page prints it beside the plot.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LayerPoint:
    layer: str  # layers.<i> of the dense layer
    depth: int  # 1 = the dense layer nearest the input
    grad_norm: float  # RMS of dL/dW
    delta_ratio: float  # RMS of delta = dL/dz at the pre-activation, over the output layer's
    grad_norm_std: float | None = None  # spread over initialisations
    delta_ratio_std: float | None = None
    verdict: str | None = None  # stats' per-layer verdict: ok, vanishing, exploding, dead, saturated


@dataclass(frozen=True)
class DepthProfile:
    source: str  # e.g. "gradlab stats, mean ± std over 8 initialisations"
    layers: tuple[LayerPoint, ...]
    verdict: str | None = None  # stats' summary verdict, when the numbers come from stats
