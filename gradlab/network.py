"""Spec -> Network: the layer sequence, one set of named parameters, and a batch.

Parameters are drawn once from the spec's seed and handed to every engine, so the three
engines differentiate the very same function at the very same point. The forward pass is
a pure function of (params, x) and works on float32, float64 and complex arrays with any
leading axes, which the numeric engine uses to evaluate many perturbations at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

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


@dataclass(frozen=True, eq=False)
class CustomLayer:
    """A user's layer (`{type: custom, impl: ...}`), parameters named `layers.<i>.<name>`.

    The user's object reads its parameters from its own `params` arrays, so each call first
    writes the network's values into them. It only ever sees (batch, features) inputs:
    stacked evaluations -- leading axes on x, or on a parameter laid out to broadcast against
    (stack, batch, features) as the numeric engine does -- run one slice at a time.
    """

    index: int
    impl: str
    obj: Any = field(repr=False)
    n_in: int = 0
    n_out: int = 0
    keys: tuple[str, ...] = ()  # the object's own parameter names
    supports_stacking: ClassVar[bool] = False  # numeric engine: evaluate one perturbation per forward
    complex_safe: ClassVar[bool] = False  # parameters live in the user's float arrays

    def param_name(self, key: str) -> str:
        return f"layers.{self.index}.{key}"

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(self.param_name(k) for k in self.keys)

    def _stack_lead(self, key: str, value: np.ndarray) -> tuple[int, ...]:
        nd = self.obj.params[key].ndim
        return value.shape[: value.ndim - max(nd, 2)] if value.ndim > nd else ()

    def _write(self, values: dict[str, np.ndarray]) -> None:
        for k, v in values.items():
            self.obj.params[k][...] = np.reshape(v, self.obj.params[k].shape)

    @property
    def where(self) -> str:
        return f"layers.{self.index} ({self.impl.rpartition('/')[2]})"

    def _forward_one(self, x):
        from .userops.adapters import checked

        return checked(f"{self.where} forward", self.obj.forward, x, shape=x.shape[:-1] + (self.n_out,), finite_from=x)

    def forward(self, params, x):
        values = {k: np.asarray(params[self.param_name(k)]) for k in self.keys}
        leads = {k: self._stack_lead(k, v) for k, v in values.items()}
        lead = np.broadcast_shapes(x.shape[:-2], *leads.values())
        if not lead:
            self._write(values)
            return self._forward_one(x)
        xs = np.broadcast_to(x, lead + x.shape[-2:])
        stacks = {k: np.broadcast_to(v.reshape(leads[k] + (-1,)), lead + (v.size // max(1, int(np.prod(leads[k]))),)) for k, v in values.items()}
        outs = []
        for idx in np.ndindex(*lead):
            self._write({k: s[idx] for k, s in stacks.items()})
            outs.append(self._forward_one(xs[idx]))
        return np.stack(outs).reshape(lead + outs[0].shape)

    def backward(self, params, x, grad_out) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(dL/dx, {parameter name: gradient}) from the user's backward, checked for shape."""
        from .userops.adapters import call, returned_array
        from .usercode import UserCodeError

        self._write({k: params[self.param_name(k)] for k in self.keys})
        where = f"{self.where} backward"
        result = call(where, self.obj.backward, x, grad_out)
        if not (isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], dict)):
            raise UserCodeError(f"{where} must return (grad_x, {{name: grad}}), got {type(result).__name__}; `gradlab audit` checks the contract")
        grad_x, grads = returned_array(where, result[0], shape=x.shape, real_from=x), result[1]
        missing = [k for k in self.keys if k not in grads]
        if missing:
            raise UserCodeError(f"{where} returned no gradient for {', '.join(map(repr, missing))}; `gradlab audit` checks the contract")
        return grad_x, {self.param_name(k): returned_array(f"{where} ({k!r})", grads[k], shape=self.obj.params[k].shape, real_from=x) for k in self.keys}

    def torch_forward(self, h, params: dict):
        """The user's torch mirror, checked like every call into user code."""
        from .userops.adapters import call, torch_result

        where = f"{self.where} torch_forward"
        out = call(where, self.obj.torch_forward, h, {k: params[self.param_name(k)] for k in self.keys})
        return torch_result(where, out, shape=tuple(h.shape[:-1]) + (self.n_out,))

    def __repr__(self) -> str:
        return f"Custom[{self.index}]({self.impl.rpartition('/')[2]}: {self.n_in} -> {self.n_out})"


Layer = DenseLayer | ActivationLayer | CustomLayer


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
        return self.loss_op.complex_safe and all(l.op.complex_safe if isinstance(l, ActivationLayer) else l.complex_safe
                                                 for l in self.layers if not isinstance(l, DenseLayer))

    def torch_missing(self) -> str | None:
        """Why the autograd engine cannot build this network (a custom op without a torch mirror), or None."""
        for layer in self.layers:
            if isinstance(layer, ActivationLayer) and layer.op.torch is None:
                return f"layers.{layer.index} (custom activation {layer.op.name}) has no torch_forward(z)"
            if isinstance(layer, CustomLayer) and not callable(getattr(layer.obj, "torch_forward", None)):
                return f"layers.{layer.index} (custom layer {layer.impl.rpartition(':')[2]}) has no torch_forward(x, params)"
        if self.loss_op.torch is None:
            return f"the custom loss {self.loss_op.name} has no torch_forward(pred, target)"
        return None

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
    from .spec import CustomLayerSpec, DenseSpec

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
        elif isinstance(ls, CustomLayerSpec):
            layer = _custom_layer(i, ls, rng_params, params)
            dim = layer.n_out
        else:
            op = _activation_op(ls)
            hp = ls.hyper()
            trainable = ls.trainable_names()
            layer = ActivationLayer(i, op, {k: v for k, v in hp.items() if k not in trainable}, trainable, dim)
            for h in trainable:
                params[layer.param_name(h)] = np.array(hp[h])
        layers.append(layer)
    loss_op = _loss_op(spec.loss)
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


# --- custom ops (gradlab.audit loads and wraps them) -------------------------------------------


def _activation_op(ls) -> Activation:
    if ls.fn == "custom":
        from .userops.adapters import activation_record

        return activation_record(ls.impl)
    return ACTIVATIONS.get(ls.fn)


def _loss_op(ls) -> Loss:
    if ls.fn == "custom":
        from .userops.adapters import loss_record

        return loss_record(ls.impl)
    return LOSSES.get(ls.fn)


def _custom_layer(i: int, ls, rng, params: dict) -> CustomLayer:
    """A fresh user object per network; parameters as the object made them, or drawn by `init`."""
    from .userops.adapters import layer_info

    info = layer_info(ls.impl)
    layer = CustomLayer(i, ls.impl, info.obj, info.n_in, info.n_out, tuple(info.params))
    for key, value in info.params.items():
        if ls.init is None:
            params[layer.param_name(key)] = value
        elif value.ndim >= 2:
            params[layer.param_name(key)] = init_op.draw(rng, ls.init.scheme, value.shape, info.n_in, info.n_out, ls.init.std)
        else:
            params[layer.param_name(key)] = _draw_bias(rng, ls.init.bias, value.size, info.n_in, info.n_out).reshape(value.shape)
    return layer
