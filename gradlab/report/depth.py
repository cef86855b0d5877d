"""How the gradient changes with depth, per dense layer (per layer with parameters in N-d networks): what the HTML report plots.

The numbers come from `gradlab stats` (means and spreads over several initialisations);
`source` says how many, and the page prints it beside the plot.
"""

from __future__ import annotations

from dataclasses import dataclass


def short_name(name: str) -> str:
    """layers.3 -> L3, layers.1.layers.0 -> L1.0, layers.1.projection -> L1.proj (a parameter prefix, shortened)."""
    parts = [p for p in name.split(".") if p != "layers"]
    return "L" + ".".join("proj" if p == "projection" else p for p in parts)


@dataclass(frozen=True)
class LayerPoint:
    layer: str  # the layer's parameter prefix: layers.<i>, layers.<i>.layers.<j>
    depth: int  # 1 = the row nearest the input
    grad_norm: float  # RMS of dL/dW
    delta_ratio: float  # RMS of delta = dL/dz at the pre-activation, over the output layer's
    grad_norm_std: float | None = None  # spread over initialisations
    delta_ratio_std: float | None = None
    verdict: str | None = None  # stats' per-layer verdict (gradlab.stats.VERDICTS): a -dW one judges grad_norm, a -delta one delta_ratio


@dataclass(frozen=True)
class DepthProfile:
    source: str  # e.g. "gradlab stats, mean ± std over 8 initialisations"
    layers: tuple[LayerPoint, ...]
    verdict: str | None = None  # stats' summary verdict, when the numbers come from stats
    unit: str = "dense layer"  # what a point is: "layer" when some row is a conv, norm or attention layer


def from_stats(result) -> DepthProfile:
    """The depth profile of one `gradlab stats` result (a StatsResult): its per-layer means, spreads and verdicts."""
    points = tuple(
        LayerPoint(layer=layer.name, depth=k + 1, grad_norm=layer.mean["grad_norm"], delta_ratio=layer.mean["ratio_to_output"],
                   grad_norm_std=layer.std["grad_norm"], delta_ratio_std=layer.std["ratio_to_output"], verdict=layer.verdict)
        for k, layer in enumerate(result.layers)
    )
    unit = "dense layer" if all(getattr(l, "kind", "dense") == "dense" for l in result.layers) else "layer"
    return DepthProfile(source=f"gradlab stats, mean ± std over {len(result.seeds)} initialisations", layers=points, verdict=result.verdict,
                        unit=unit)
