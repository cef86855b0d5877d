"""The analytic engine: the seeds' delta recursion over the ops' hand-written VJPs.

Forward keeps every layer's input; backward walks the layers in reverse, carrying
delta = dL/d(layer output), exactly as seeds 003/004 write it:
  delta^L = dL/dy (.) f'(u^L),  delta^l = (W^{l+1})^T delta^{l+1} (.) f'(u^l),  dL/dW^l = delta^l x^{l-1 T}.
No autodiff anywhere.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ..gradients import INPUT, Gradients
from ..network import Network


@dataclass(frozen=True)
class Backprop:
    """Everything one forward + backward pass saw, for the statistics as well as the check."""

    loss: float
    grads: dict[str, np.ndarray]
    grad_input: np.ndarray
    inputs: list[np.ndarray]  # inputs[i]: the input of layer i; inputs[-1] is the network output
    grad_outputs: list[np.ndarray]  # grad_outputs[i]: dL/d(output of layer i) -- the seeds' delta after a dense layer


def backprop(net: Network, params: dict | None = None, x: np.ndarray | None = None) -> Backprop:
    params = net.params if params is None else params
    h = net.x if x is None else x
    inputs = [h]
    for layer in net.layers:
        h = layer.forward(params, h)
        inputs.append(h)
    y = inputs[-1]
    loss = float(np.real(net.loss_of_output(y)))
    grad = net.loss_gradient(y)
    grads: dict[str, np.ndarray] = {}
    grad_outputs: list[np.ndarray] = [None] * len(net.layers)  # type: ignore[list-item]
    for i in range(len(net.layers) - 1, -1, -1):
        grad_outputs[i] = grad
        # each layer's hand-written VJP (a custom layer's is the user's own backward)
        grad, layer_grads = net.layers[i].backward(params, inputs[i], inputs[i + 1], grad)
        grads.update(layer_grads)
    return Backprop(loss, grads, grad, inputs, grad_outputs)


def gradients(net: Network, *, wrt_input: bool = False) -> Gradients:
    t0 = time.perf_counter()
    bp = backprop(net)
    values = {k: np.asarray(v, dtype=np.float64) for k, v in bp.grads.items()}
    if wrt_input:
        values[INPUT] = np.asarray(bp.grad_input, dtype=np.float64)
    return Gradients("analytic", "cpu", str(net.dtype), values, seconds=time.perf_counter() - t0)
