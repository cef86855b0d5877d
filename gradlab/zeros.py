"""Why a parameter's gradient is exactly zero, where the network's structure says so.

`gradlab check` marks a tensor `zero-gradient` when both engines of a pair give exactly 0 in every
element. Zero is a finding, never a pass to wave through, and its note must be true: this module
looks for the cause in the network at the spec's point and names it, nearest first:

- attention's key bias: it adds q_i . b_k / sqrt(d) to every score of row i alike, and the softmax
  ignores a shift common to a row (gradlab.ops.attention leaves it out for that reason);
- an activation after the parameter's layer whose derivative is zero almost everywhere (step);
- an activation after it whose derivative is exactly zero at every unit and sample of this batch
  (a relu whose every input is at or below its threshold: a dead layer);
- a weight whose layer's input is exactly zero for every sample (the weight multiplies it).

Where none applies the note is a neutral statement of what was seen (`NEUTRAL`). Only a forward
pass of the network is used; no engine's answer is consulted.
"""

from __future__ import annotations

import numpy as np

from .compare import ZERO_NOTE as NEUTRAL
from .network import ActivationLayer, DenseLayer, Network, OpLayer, ResidualLayer
from .ops.attention import UNUSED as KEY_BIAS

KEY_BIAS_REASON = ("attention's key bias cancels in the softmax: it shifts every score of a row by the same q·b_k/√d, "
                   "and the softmax ignores a shift common to a row")
_CONV = ("conv1d", "conv2d")


def _downstream(layers, after: list, out: dict) -> None:
    """For each layer (nested too): the layers its output passes through to the loss, nearest first.

    A residual block's members feed the rest of the block, then what follows the block; the block's
    skip path carries its input around its members, so a member's cause never blocks the block's input.
    """
    for i, layer in enumerate(layers):
        following = list(layers[i + 1:]) + after
        out[layer.name] = following
        if isinstance(layer, ResidualLayer):
            _downstream(layer.layers, following, out)
            if layer.projection is not None:
                out[layer.projection.name] = following


def _inputs(net: Network) -> dict[str, np.ndarray]:
    """Each layer's input at the spec's point (nested layers too), from one forward pass."""
    seen: dict[str, np.ndarray] = {}

    def run(layers, h):
        for layer in layers:
            seen[layer.name] = h
            if isinstance(layer, ResidualLayer):
                run(layer.layers, h)
                if layer.projection is not None:
                    seen[layer.projection.name] = h
            h = layer.forward(net.params, h)
        return h

    with np.errstate(all="ignore"):
        run(net.layers, net.x)
    return seen


def _flat_everywhere(act: ActivationLayer, params, x) -> bool:
    """f'(x) exactly zero at every unit and sample (its own backward applied to ones)."""
    if not act.op.elementwise:
        return False
    with np.errstate(all="ignore"):
        hp = act.hyper(params)
        y = act.forward(params, x)
        grad, _ = act.op.backward(x, y, np.ones_like(y), hp)
    return not np.any(np.asarray(grad))


def _multiplies_input(layer, name: str) -> bool:
    if isinstance(layer, DenseLayer):
        return name == layer.weight
    return isinstance(layer, OpLayer) and layer.op.name in _CONV and name == f"{layer.name}.weight"


def reasons(net: Network, names) -> dict[str, str]:
    """{parameter name: why its gradient is exactly zero} for `names` (INPUT included): a cause the structure shows, or NEUTRAL."""
    owner = {n: layer for layer in net.all_layers() if not isinstance(layer, ResidualLayer) for n in layer.param_names}
    follows: dict[str, list] = {}
    _downstream(net.layers, [], follows)
    inputs = None
    out = {}
    for name in names:
        layer = owner.get(name)
        if isinstance(layer, OpLayer) and layer.op.name == "attention" and name == f"{layer.name}.{KEY_BIAS}":
            out[name] = KEY_BIAS_REASON
            continue
        after = list(net.layers) if layer is None else follows.get(layer.name, [])
        acts = [a for a in after if isinstance(a, ActivationLayer)]
        step = next((a for a in acts if a.op.zero_derivative), None)
        if step is not None:
            out[name] = f"behind the {step.op.name} at {step.path}: f′ = 0 almost everywhere"
            continue
        inputs = inputs if inputs is not None else _inputs(net)
        flat = next((a for a in acts if a.name in inputs and _flat_everywhere(a, net.params, inputs[a.name])), None)
        if flat is not None:
            what = "off for every unit and sample of the batch" if flat.op.dead_threshold else "f′ = 0 at every unit and sample of the batch"
            out[name] = f"the {flat.op.name} at {flat.path} is {what}, so nothing flows back past it"
            continue
        x = inputs.get(layer.name) if layer is not None else None
        if layer is not None and x is not None and _multiplies_input(layer, name) and not np.any(x):
            out[name] = f"the input of {layer.path} is exactly 0 for every sample, and this weight multiplies it"
            continue
        out[name] = NEUTRAL
    return out
