"""Spec -> Network: the layer sequence, one set of named parameters, and a batch.

Parameters are drawn once from the spec's seed and handed to every engine, so the three
engines differentiate the very same function at the very same point. The forward pass is
a pure function of (params, x) and works on float32, float64 and complex arrays with any
leading axes, which the numeric engine uses to evaluate many perturbations at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .ops import ACTIVATIONS, LOSSES, Activation, Loss
from .ops import dense as dense_op
from .ops import init as init_op


@dataclass(frozen=True)
class DenseLayer:
    index: int
    n_in: int
    n_out: int
    layout: str
    bias: Any  # True, False or "folded"
    init: Any = None  # the InitSpec used (for the statistics' variance theory)

    @property
    def weight(self) -> str:
        return f"layers.{self.index}.weight"

    @property
    def bias_name(self) -> str | None:
        return f"layers.{self.index}.bias" if self.bias is True else None

    @property
    def param_names(self) -> tuple[str, ...]:
        return (self.weight,) + ((self.bias_name,) if self.bias_name else ())

    def forward(self, params, x):
        return dense_op.forward(x, params[self.weight], params.get(self.bias_name) if self.bias_name else None, self.layout, self.bias)

    def __repr__(self) -> str:
        return f"Dense[{self.index}]({self.n_in} -> {self.n_out}, {self.layout}, bias={self.bias})"


@dataclass(frozen=True)
class ActivationLayer:
    index: int
    op: Activation
    fixed: dict[str, float] = field(default_factory=dict)  # hyperparameters held constant
    trainable: tuple[str, ...] = ()  # hyperparameters that are parameters `layers.<i>.<name>`
    width: int = 0

    def param_name(self, hyper_name: str) -> str:
        return f"layers.{self.index}.{hyper_name}"

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(self.param_name(h) for h in self.trainable)

    def hyper(self, params) -> dict[str, Any]:
        hp = dict(self.fixed)
        for h in self.trainable:
            hp[h] = params[self.param_name(h)]
        return hp

    def forward(self, params, z):
        return self.op.forward(z, self.hyper(params))

    def __repr__(self) -> str:
        extra = "".join(f", {k}={v:g}" for k, v in self.fixed.items())
        extra += "".join(f", {k}=trainable" for k in self.trainable)
        return f"Activation[{self.index}]({self.op.name}{extra})"


Layer = DenseLayer | ActivationLayer


@dataclass
class Network:
    name: str
    dtype: np.dtype
    layers: list[Layer]
    loss_op: Loss
    reduction: str
    params: dict[str, np.ndarray]  # in the spec's dtype; engines copy, never mutate
    x: np.ndarray  # (batch, input dim)
    target: np.ndarray  # (batch, output dim)
    seed: int = 0

    @property
    def batch(self) -> int:
        return self.x.shape[0]

    @property
    def loss_scale(self) -> float:
        return 1.0 / self.batch if self.reduction == "mean" else 1.0

    @property
    def n_params(self) -> int:
        return sum(p.size for p in self.params.values())

    def param_layer(self) -> dict[str, Layer]:
        """Which layer owns each parameter."""
        return {name: layer for layer in self.layers for name in layer.param_names}

    def complex_safe(self) -> bool:
        return self.loss_op.complex_safe and all(l.op.complex_safe for l in self.layers if isinstance(l, ActivationLayer))

    def forward(self, params, x=None, start: int = 0):
        """Output of the network from layer `start` on (x is then that layer's input)."""
        h = self.x if x is None else x
        for layer in self.layers[start:]:
            h = layer.forward(params, h)
        return h

    def loss_of_output(self, y, target=None):
        t = self.target if target is None else target
        return self.loss_op.forward(y, t) * self.loss_scale

    def loss(self, params, x=None):
        return self.loss_of_output(self.forward(params, x))

    def cast(self, dtype) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
        """(params, x, target) converted to `dtype` (the numeric engine works in float64)."""
        return ({k: v.astype(dtype) for k, v in self.params.items()}, self.x.astype(dtype), self.target.astype(dtype))

    def __repr__(self) -> str:
        body = ", ".join(map(repr, self.layers))
        return f"Network({self.name!r}, {self.dtype}, [{body}], loss={self.loss_op.name}/{self.reduction}, batch={self.batch}, params={self.n_params})"


def _draw_bias(rng, bias_init, n_out, n_in, n_out_fan):
    if isinstance(bias_init, (int, float)) and not isinstance(bias_init, bool):
        return np.full(n_out, float(bias_init))
    if bias_init == "zeros":
        return np.zeros(n_out)
    return init_op.draw(rng, bias_init, (n_out,), n_in, n_out_fan)


def _draw_target(rng, spec, out: int) -> np.ndarray:
    t, b = spec.target, spec.input.batch
    if t.kind == "regression":
        return rng.normal(0.0, t.scale, size=(b, out))
    if t.kind == "onehot":
        return np.eye(out)[rng.integers(0, out, size=b)]
    if t.kind == "binary":
        return rng.integers(0, 2, size=(b, out)).astype(float)
    return rng.dirichlet(np.ones(out), size=b)


def _draw_input(rng, spec) -> np.ndarray:
    i = spec.input
    shape = (i.batch, i.dim)
    if i.distribution == "uniform":
        return i.mean + rng.uniform(-i.scale, i.scale, size=shape)
    return rng.normal(i.mean, i.scale, size=shape)


def build(spec, *, seed: int | None = None) -> Network:
    """Spec -> Network with parameters and batch drawn from `seed` (default: the spec's)."""
    from .spec import DenseSpec

    seed = spec.seed if seed is None else seed
    dtype = np.dtype(spec.dtype)
    rng_params = np.random.default_rng([seed, 0])
    rng_data = np.random.default_rng([seed, 1])
    layers: list[Layer] = []
    params: dict[str, np.ndarray] = {}
    dim = spec.input.dim
    for i, ls in enumerate(spec.network.layers):
        if isinstance(ls, DenseSpec):
            init = ls.init or spec.network.init
            layer = DenseLayer(i, dim, ls.units, spec.network.convention, ls.bias, init)
            shape = dense_op.weight_shape(dim, ls.units, layer.layout, ls.bias)
            fan_in = dim + (1 if ls.bias == "folded" else 0)
            params[layer.weight] = init_op.draw(rng_params, init.scheme, shape, fan_in, ls.units, init.std)
            if layer.bias_name:
                params[layer.bias_name] = _draw_bias(rng_params, init.bias, ls.units, dim, ls.units)
            dim = ls.units
        else:
            op = ACTIVATIONS.get(ls.fn)
            hp = ls.hyper()
            trainable = ls.trainable_names()
            layer = ActivationLayer(i, op, {k: v for k, v in hp.items() if k not in trainable}, trainable, dim)
            for h in trainable:
                params[layer.param_name(h)] = np.array(hp[h])
        layers.append(layer)
    loss_op = LOSSES.get(spec.loss.fn)
    return Network(
        name=spec.name or "spec",
        dtype=dtype,
        layers=layers,
        loss_op=loss_op,
        reduction=spec.loss.effective_reduction,
        params={k: v.astype(dtype) for k, v in params.items()},
        x=_draw_input(rng_data, spec).astype(dtype),
        target=_draw_target(rng_data, spec, dim).astype(dtype),
        seed=seed,
    )
