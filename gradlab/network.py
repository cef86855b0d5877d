"""Spec -> Network: the layer tree, one set of named parameters, and a batch.

Parameters are drawn once from the spec's seed and handed to every engine, so the three
engines differentiate the very same function at the very same point. The forward pass is
a pure function of (params, x) and works on float32, float64 and complex arrays.

Stacked evaluation: x may carry leading axes in front of (batch, *sample shape), and any
parameter may carry leading axes in front of its own shape; the leads broadcast. The numeric
engine uses this to evaluate many perturbations at once.

Every layer has the same surface: `name` (its parameters are `<name>.<local>`), `path` (the
spec's key path), `in_shape`/`out_shape` per sample, `param_names`, `forward(params, x, rows)`,
`backward(params, x, y, g) -> (dL/dx, {name: grad})` (hand-written, plain arrays) and
`torch_forward(params, h)`. `rows` selects the batch rows a forward sees (per-sample buffers
such as dropout masks follow them) when the numeric engine feeds it rows of different samples.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from .ops import ACTIVATIONS, LAYERS, LOSSES, Activation, LayerOp, Loss, ParamInfo
from .ops import dense as dense_op
from .ops import init as init_op


class KinkWatch:
    """Which leading rows of complex-step evaluations moved a unit sitting on a kink of an op.

    The complex step keeps the real part of every value exact, so an op with a kink (relu, a max-pool, hardtanh)
    takes the branch of the unperturbed point and the imaginary part carries that branch's derivative: exact
    away from the kink. Within rounding of it (radius: `RADIUS` units in the last place of the network's dtype
    at the scale of the row's values) a correct backward in another precision, or one whose real parts moved
    by O(h^2), may take the other branch: those rows are reported (`flags`, one per row of axis 0 of the
    evaluation) and the engine differences them with real steps instead. Layers note what they see while a
    watch is active (`watching`); nothing is recorded on real input.
    """

    RADIUS = 256.0
    FLOOR = 1e-30  # absolute: values this small are at a kink of 0 for any purpose (the complex step moves real parts by O(h^2))

    def __init__(self, n: int, eps: float, quiet=frozenset()):
        self.flags = np.zeros(n, bool)
        self.eps = eps
        self.quiet = quiet  # id() of layers with no unit near a kink at the base point: nothing to watch there

    def watches(self, layer) -> bool:
        return id(layer) not in self.quiet

    def radius(self, x) -> np.ndarray:
        """One radius per row of axis 0 of x (the row's values' scale)."""
        r = np.abs(np.real(x)).reshape(x.shape[0], -1)
        scale = r.max(axis=1) if r.shape[1] else np.zeros(x.shape[0])
        return self.RADIUS * self.eps * scale + self.FLOOR

    def note(self, near) -> None:
        if near is None:
            return
        near = np.asarray(near)
        rows = near.reshape(near.shape[0], -1).any(axis=1) if near.ndim else np.atleast_1d(near)
        if rows.shape[0] == self.flags.shape[0]:
            self.flags |= rows
        elif rows.any():  # rows of another layout (a broadcast): every row is suspect
            self.flags[:] = True

    def activation(self, op, z, hp) -> None:
        """An elementwise (or row-wise) activation applied to z, axis 0 the evaluation's rows."""
        if np.ndim(z) == 0 or not np.iscomplexobj(z):
            return
        r = self.radius(z).reshape((-1,) + (1,) * (np.ndim(z) - 1))
        self.note(op.near_kink(z, hp, r))


_WATCHES: list[KinkWatch] = []


class watching:
    """`with watching(n, eps) as w:` -- layers' complex-step evaluations in the block report to w (see KinkWatch)."""

    def __init__(self, n: int, eps: float, quiet=frozenset()):
        self.watch = KinkWatch(n, eps, quiet)

    def __enter__(self) -> KinkWatch:
        _WATCHES.append(self.watch)
        return self.watch

    def __exit__(self, *exc) -> None:
        _WATCHES.remove(self.watch)


def _lead(a, base_ndim: int) -> tuple[int, ...]:
    return a.shape[: a.ndim - base_ndim]


def _aligned(p, base_ndim: int, between: int):
    """A stacked parameter (*lead, *shape) with `between` unit axes inserted after the lead, so it
    broadcasts against (*lead, batch, ...) activations; an unstacked one is returned as is."""
    lead = _lead(p, base_ndim)
    return p.reshape(lead + (1,) * between + p.shape[len(lead):]) if lead else p


def _default_place(layer, width: int) -> None:
    """A layer built outside a spec (tests, the audit) sits at top level on (batch, width) rows."""
    if not layer.name:
        object.__setattr__(layer, "name", f"layers.{layer.index}")
        object.__setattr__(layer, "path", f"network.layers[{layer.index}]")
    if not layer.in_shape:
        object.__setattr__(layer, "in_shape", (width,))


@dataclass(frozen=True)
class DenseLayer:
    """u = x W (+ b) on the last axis of (batch, ..., features), as torch.nn.Linear."""

    index: int
    n_in: int
    n_out: int
    layout: str
    bias: Any  # True, False or "folded"
    init: Any = None  # the InitSpec used (for the statistics' variance theory)
    name: str = ""  # parameter prefix: layers.3, layers.1.layers.0, layers.1.projection
    path: str = ""  # spec key path: network.layers[3]
    in_shape: tuple[int, ...] = ()
    supports_stacking: ClassVar[bool] = True
    complex_safe: ClassVar[bool] = True
    mixes_batch: ClassVar[bool] = False

    def __post_init__(self):
        _default_place(self, self.n_in)

    @property
    def out_shape(self) -> tuple[int, ...]:
        return self.in_shape[:-1] + (self.n_out,)

    rowwise: ClassVar[bool] = True  # acts on the last axis, each row on its own

    @property
    def weight(self) -> str:
        return f"{self.name}.weight"

    @property
    def bias_name(self) -> str | None:
        return f"{self.name}.bias" if self.bias is True else None

    @property
    def param_names(self) -> tuple[str, ...]:
        return (self.weight,) + ((self.bias_name,) if self.bias_name else ())

    def forward(self, params, x, rows=None):
        # x @ W multiplies the last two axes of x: a stacked W skips the batch and the sample axes before
        # the matrix's rows; a stacked b skips the batch and every sample axis before the features.
        w, sample = params[self.weight], 1 + len(self.in_shape)
        b = _aligned(params[self.bias_name], 1, len(self.in_shape)) if self.bias_name else None
        if w.ndim == 3 and x.ndim == sample:  # one input, stacked weights: a single GEMM against all of them
            u = dense_op.forward(x, dense_op.side_by_side(w, self.layout), None, "in_out", "folded" if self.bias == "folded" else False)
            u = np.moveaxis(u.reshape(x.shape[:-1] + (w.shape[0], self.n_out)), -2, 0)
            return u + b if self.bias is True else u
        w = _aligned(w, 2, len(self.in_shape) - 1)
        return dense_op.forward(x, w, b, self.layout, self.bias)

    def backward(self, params, x, y, g):
        rows_x, rows_g = x.reshape(-1, x.shape[-1]), g.reshape(-1, g.shape[-1])
        gx, gw, gb = dense_op.backward(rows_x, params[self.weight], rows_g, self.layout, self.bias)
        grads = {self.weight: gw}
        if self.bias_name:
            grads[self.bias_name] = gb
        return gx.reshape(x.shape), grads

    def torch_forward(self, params, h):
        b = params[self.bias_name] if self.bias_name else None
        return dense_op.torch_forward(h, params[self.weight], b, self.layout, self.bias)

    def __repr__(self) -> str:
        return f"Dense[{self.name}]({self.n_in} -> {self.n_out}, {self.layout}, bias={self.bias})"


SPARSE_TANGENT_MIN = 4096  # units: below this a mask costs more than the complex arithmetic it saves


def _elementwise(op: Activation, z, hp):
    """op(z). On a complex-step input whose tangent (imaginary part) is 0 on most units -- a perturbed conv
    weight moves one output channel -- a built-in op runs in real arithmetic there and in complex arithmetic
    on the moving units only: complex tanh or erf costs ~8x the real one, and f(u + 0i) is f(u)."""
    if (type(op) is not Activation or not op.elementwise or z.dtype != np.complex128 or z.size < SPARSE_TANGENT_MIN
            or any(np.ndim(v) or np.iscomplexobj(v) for v in hp.values())):
        return op.forward(z, hp)
    if z.flags.c_contiguous and np.count_nonzero(np.imag(z.reshape(-1)[:: z.size // 256])) > 128:
        return op.forward(z, hp)  # a sample of units says most move (a dense layer's output): no mask
    moving = np.imag(z) != 0
    n = int(np.count_nonzero(moving))
    if n > z.size // 2:
        return op.forward(z, hp)
    out = np.asarray(op.forward(np.real(z), hp), dtype=np.complex128)
    if n:
        out[moving] = op.forward(z[moving], hp)
    return out


@dataclass(frozen=True)
class ActivationLayer:
    index: int
    op: Activation
    fixed: dict[str, float] = field(default_factory=dict)  # hyperparameters held constant
    trainable: tuple[str, ...] = ()  # hyperparameters that are parameters `layers.<i>.<name>`
    width: int = 0
    name: str = ""
    path: str = ""
    in_shape: tuple[int, ...] = ()
    supports_stacking: ClassVar[bool] = True
    mixes_batch: ClassVar[bool] = False

    def __post_init__(self):
        _default_place(self, self.width)

    @property
    def out_shape(self) -> tuple[int, ...]:
        return self.in_shape

    @property
    def complex_safe(self) -> bool:
        return self.op.complex_safe

    rowwise: ClassVar[bool] = True  # elementwise, or softmax along the last axis

    def param_name(self, hyper_name: str) -> str:
        return f"{self.name}.{hyper_name}"

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(self.param_name(h) for h in self.trainable)

    def hyper(self, params) -> dict[str, Any]:
        hp = dict(self.fixed)
        for h in self.trainable:
            hp[h] = _aligned(params[self.param_name(h)], 0, 1 + len(self.in_shape))
        return hp

    def forward(self, params, z, rows=None):
        hp = self.hyper(params)
        if _WATCHES and self.op.kinks and _WATCHES[-1].watches(self):
            _WATCHES[-1].activation(self.op, z, hp)
        return _elementwise(self.op, z, hp)

    def backward(self, params, x, y, g):
        grad, hyper_grads = self.op.backward(x, y, g, self.hyper(params))
        return grad, {self.param_name(h): np.asarray(hyper_grads[h]) for h in self.trainable}

    def moved_unit(self, x, y, b, j, v):
        """(j, f(v)): an elementwise op moves the unit it is given alone (see OpLayer.moved_unit); None otherwise."""
        if not self.op.elementwise or self.trainable:
            return None
        if _WATCHES and self.op.kinks and _WATCHES[-1].watches(self):  # the moved unit goes through the op here
            _WATCHES[-1].note(self.op.near_kink(v, self.fixed, _WATCHES[-1].radius(x[b])))
        return j, self.op.forward(v, self.fixed)

    def torch_forward(self, params, h):
        return self.op.torch(h, self.hyper(params))

    def __repr__(self) -> str:
        extra = "".join(f", {k}={v:g}" for k, v in self.fixed.items())
        extra += "".join(f", {k}=trainable" for k in self.trainable)
        return f"Activation[{self.name}]({self.op.name}{extra})"


@dataclass(frozen=True, eq=False)
class CustomLayer:
    """A user's layer (`{type: custom, impl: ...}`), parameters named `layers.<i>.<name>`.

    The user's object reads its parameters from its own `params` arrays, so each call first
    writes the network's values into them. It only ever sees (rows, features) inputs: an N-d
    input's leading sample axes are folded into rows (it acts on the last axis, like dense),
    and stacked evaluations run one slice at a time.
    """

    index: int
    impl: str
    obj: Any = field(repr=False)
    n_in: int = 0
    n_out: int = 0
    keys: tuple[str, ...] = ()  # the object's own parameter names
    name: str = ""
    path: str = ""
    in_shape: tuple[int, ...] = ()
    sample_out: tuple[int, ...] | None = None  # an N-d layer's per-sample output; None: acts on the last axis
    supports_stacking: ClassVar[bool] = False  # numeric engine: evaluate one perturbation per forward
    complex_safe: ClassVar[bool] = False  # parameters live in the user's float arrays
    mixes_batch: ClassVar[bool] = False

    def __post_init__(self):
        _default_place(self, self.n_in)

    @property
    def out_shape(self) -> tuple[int, ...]:
        return self.in_shape[:-1] + (self.n_out,) if self.sample_out is None else self.sample_out

    def param_name(self, key: str) -> str:
        return f"{self.name}.{key}"

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(self.param_name(k) for k in self.keys)

    def _write(self, values: dict[str, np.ndarray]) -> None:
        for k, v in values.items():
            self.obj.params[k][...] = np.reshape(v, self.obj.params[k].shape)

    @property
    def where(self) -> str:
        return f"{self.name} ({self.impl.rpartition('/')[2]})"

    def _forward_one(self, x):
        from .userops.adapters import checked

        if self.sample_out is not None:  # an N-d layer sees (batch, *its input shape) as declared
            return checked(f"{self.where} forward", self.obj.forward, x, shape=(x.shape[0],) + self.sample_out, finite_from=x)
        rows = x.reshape(-1, self.n_in)
        out = checked(f"{self.where} forward", self.obj.forward, rows, shape=(rows.shape[0], self.n_out), finite_from=rows)
        return out.reshape(x.shape[:-1] + (self.n_out,))

    def forward(self, params, x, rows=None):
        values = {k: np.asarray(params[self.param_name(k)]) for k in self.keys}
        leads = {k: _lead(v, self.obj.params[k].ndim) for k, v in values.items()}
        sample = 1 + len(self.in_shape)
        lead = np.broadcast_shapes(_lead(x, sample), *leads.values())
        if not lead:
            self._write(values)
            return self._forward_one(x)
        xs = np.broadcast_to(x, lead + x.shape[x.ndim - sample:])
        stacks = {k: np.broadcast_to(v, lead + self.obj.params[k].shape) for k, v in values.items()}
        outs = []
        for idx in np.ndindex(*lead):
            self._write({k: s[idx] for k, s in stacks.items()})
            outs.append(self._forward_one(xs[idx]))
        return np.stack(outs).reshape(lead + outs[0].shape)

    def backward(self, params, x, y, grad_out) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(dL/dx, {parameter name: gradient}) from the user's backward, checked for shape."""
        from .userops.adapters import call, returned_array
        from .usercode import UserCodeError

        self._write({k: params[self.param_name(k)] for k in self.keys})
        where = f"{self.where} backward"
        rows, g_rows = (x, grad_out) if self.sample_out is not None else (x.reshape(-1, self.n_in), grad_out.reshape(-1, self.n_out))
        result = call(where, self.obj.backward, rows, g_rows)
        if not (isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], dict)):
            raise UserCodeError(f"{where} must return (grad_x, {{name: grad}}), got {type(result).__name__}; `gradlab audit` checks the contract")
        grad_x, grads = returned_array(where, result[0], shape=rows.shape, real_from=rows), result[1]
        missing = [k for k in self.keys if k not in grads]
        if missing:
            raise UserCodeError(f"{where} returned no gradient for {', '.join(map(repr, missing))}; `gradlab audit` checks the contract")
        return grad_x.reshape(x.shape), {self.param_name(k): returned_array(f"{where} ({k!r})", grads[k], shape=self.obj.params[k].shape, real_from=rows) for k in self.keys}

    def torch_forward(self, params, h):
        """The user's torch mirror, checked like every call into user code."""
        from .userops.adapters import call, torch_result

        where = f"{self.where} torch_forward"
        ps = {k: params[self.param_name(k)] for k in self.keys}
        if self.sample_out is not None:
            return torch_result(where, call(where, self.obj.torch_forward, h, ps), shape=(h.shape[0],) + self.sample_out)
        rows = h.reshape(-1, self.n_in)
        out = call(where, self.obj.torch_forward, rows, ps)
        return torch_result(where, out, shape=(rows.shape[0], self.n_out)).reshape(tuple(h.shape[:-1]) + (self.n_out,))

    def __repr__(self) -> str:
        return f"Custom[{self.name}]({self.impl.rpartition('/')[2]}: {self.n_in} -> {self.n_out})"


@dataclass(frozen=True, eq=False)
class OpLayer:
    """A registered layer op (conv, pooling, normalisation, dropout, attention, flatten) in a network."""

    index: int
    op: LayerOp
    options: Any  # the op's validated options
    name: str
    path: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    infos: dict[str, ParamInfo] = field(default_factory=dict)  # local parameter name -> shape and init
    buffers: dict[str, np.ndarray] = field(default_factory=dict, repr=False)  # (batch, ...) constants, e.g. a dropout mask
    supports_stacking: ClassVar[bool] = True

    @property
    def complex_safe(self) -> bool:
        return self.op.complex_safe

    @property
    def mixes_batch(self) -> bool:
        return self.op.mixes_batch

    @property
    def rowwise(self) -> bool:
        return bool(self.op.rowwise and not self.buffers and self.op.rowwise(self.in_shape, self.options))

    @property
    def workspace(self) -> int:
        """Elements per sample a forward holds at its peak: its output, or more (attention's scores)."""
        out = int(np.prod(self.out_shape))
        return max(out, self.op.workspace(self.in_shape, self.options)) if self.op.workspace else out

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(f"{self.name}.{k}" for k in self.infos)

    def _buffers(self, rows, dtype):
        return {k: (v if rows is None else v[rows]).astype(np.real(np.zeros((), dtype)).dtype, copy=False) for k, v in self.buffers.items()}

    def forward(self, params, x, rows=None):
        sample = 1 + len(self.in_shape)
        values = {k: params[f"{self.name}.{k}"] for k in self.infos}
        leads = [_lead(x, sample)] + [_lead(v, len(self.infos[k].shape)) for k, v in values.items()]
        lead = np.broadcast_shapes(*leads)
        n = int(np.prod(lead)) if lead else 1
        if leads[0] != lead:
            x = np.broadcast_to(x, lead + x.shape[x.ndim - sample:])
        xs = x.reshape((n,) + x.shape[x.ndim - sample:])
        p = {}
        for k, v in values.items():
            base = self.infos[k].shape
            p[k] = v[None] if v.ndim == len(base) else np.broadcast_to(v, lead + base).reshape((n,) + base)
        if _WATCHES and self.op.kinks and np.iscomplexobj(x) and _WATCHES[-1].watches(self):
            self._watch(_WATCHES[-1], x, xs, lead)
        y = self.op.forward(xs, {**p, **self._buffers(rows, xs.dtype)}, self.options)
        return y.reshape(lead + y.shape[1:])

    def _watch(self, watch: KinkWatch, x, xs, lead) -> None:
        """Report the rows (axis 0 of x) whose input sits on one of the op's kinks (see KinkWatch)."""
        r = watch.radius(x)  # per row of axis 0 of x: the lead's first axis, or the batch without a lead
        if self.op.near_kink is None:  # undeclared: any moving input is suspect
            watch.note(np.imag(x) != 0)
            return
        rad = np.broadcast_to(r.reshape((-1,) + (1,) * len(lead)), x.shape[: len(lead) + 1]).reshape(xs.shape[:2])
        near = np.asarray(self.op.near_kink(xs, self.options, rad))
        near = near.reshape(lead + near.shape[1:]) if lead else near[0]
        watch.note(near)

    def backward(self, params, x, y, g):
        p = {k: params[f"{self.name}.{k}"] for k in self.infos}
        gx, grads = self.op.backward(x, y, g, {**p, **self._buffers(None, x.dtype)}, self.options)
        return gx, {f"{self.name}.{k}": v for k, v in grads.items()}

    def moved_unit(self, x, y, b, j, v):
        """(j_out, v_out): with unit j[p] (flattened per sample) of sample b[p] of the input x set to v[p], the one
        output unit that moves and its value (y: the output at x), where the op declares it (LayerOp.moved_unit);
        None otherwise: run the forward on whole rows. A watched kinked op reports its near-kink moves as its
        forward would (see KinkWatch)."""
        if self.op.moved_unit is None or self.buffers:
            return None
        watch = _WATCHES[-1] if self.op.kinks and _WATCHES and _WATCHES[-1].watches(self) else None
        moved = self.op.moved_unit(x, y, b, j, v, self.options, watch.radius(x[b]) if watch is not None else None)
        if moved is None or (watch is not None and moved[2] is None):
            return None
        if watch is not None:
            watch.note(moved[2])
        return moved[0], moved[1]

    def torch_forward(self, params, h):
        import torch

        p = {k: params[f"{self.name}.{k}"] for k in self.infos}
        p.update({k: torch.tensor(v, dtype=h.dtype, device=h.device) for k, v in self.buffers.items()})
        return self.op.torch(h, p, self.options)

    def __repr__(self) -> str:
        return f"{self.op.name}[{self.name}]({self.in_shape} -> {self.out_shape})"


@dataclass(frozen=True, eq=False)
class ResidualLayer:
    """y = x + f(x), or P x + f(x) with a projection P; f is the block's own layers."""

    index: int
    name: str
    path: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    layers: tuple = ()
    projection: Any = None  # a DenseLayer or a 1x1 conv OpLayer

    @property
    def members(self) -> tuple:
        return self.layers + ((self.projection,) if self.projection is not None else ())

    @property
    def complex_safe(self) -> bool:
        return all(l.complex_safe for l in self.members)

    @property
    def mixes_batch(self) -> bool:
        return any(l.mixes_batch for l in self.members)

    @property
    def supports_stacking(self) -> bool:
        return all(l.supports_stacking for l in self.members)

    @property
    def rowwise(self) -> bool:
        return all(getattr(l, "rowwise", False) for l in self.members)

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(n for l in self.members for n in l.param_names)

    def forward(self, params, x, rows=None):
        h = x
        for layer in self.layers:
            h = layer.forward(params, h, rows)
        return h + (self.projection.forward(params, x, rows) if self.projection is not None else x)

    def backward(self, params, x, y, g):
        hs = [x]
        for layer in self.layers:
            hs.append(layer.forward(params, hs[-1]))
        grads: dict[str, np.ndarray] = {}
        grad = g
        for i in range(len(self.layers) - 1, -1, -1):
            grad, own = self.layers[i].backward(params, hs[i], hs[i + 1], grad)
            grads.update(own)
        if self.projection is None:
            return grad + g, grads
        gx, own = self.projection.backward(params, x, self.projection.forward(params, x), g)
        grads.update(own)
        return grad + gx, grads

    def torch_forward(self, params, h):
        out = h
        for layer in self.layers:
            out = layer.torch_forward(params, out)
        return out + (self.projection.torch_forward(params, h) if self.projection is not None else h)

    def __repr__(self) -> str:
        inner = ", ".join(map(repr, self.layers))
        return f"Residual[{self.name}]([{inner}]{', projection' if self.projection is not None else ''})"


Layer = DenseLayer | ActivationLayer | CustomLayer | OpLayer | ResidualLayer


def walk(layers):
    """Every layer, nested ones included, parents before their members."""
    for layer in layers:
        yield layer
        if isinstance(layer, ResidualLayer):
            yield from walk(layer.members)


@dataclass
class Network:
    name: str
    dtype: np.dtype
    layers: list[Layer]
    loss_op: Loss
    reduction: str
    params: dict[str, np.ndarray]  # in the spec's dtype; engines copy, never mutate
    x: np.ndarray  # (batch, *input shape)
    target: np.ndarray  # (batch, *output shape)
    seed: int = 0

    @property
    def batch(self) -> int:
        return self.x.shape[0]

    @property
    def rows(self) -> int:
        """Rows the loss sums over: the batch times the output's axes before its last (positions)."""
        return int(np.prod(self.target.shape[:-1]))

    @property
    def loss_scale(self) -> float:
        return 1.0 / self.rows if self.reduction == "mean" else 1.0

    @property
    def n_params(self) -> int:
        return sum(p.size for p in self.params.values())

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return self.x.shape[1:]

    @property
    def flat(self) -> bool:
        """Every layer a top-level dense or activation layer on (batch, features) rows: the seeds' networks."""
        return all(isinstance(l, (DenseLayer, ActivationLayer)) and len(l.in_shape) == 1 for l in self.layers)

    def all_layers(self) -> list[Layer]:
        return list(walk(self.layers))

    def workspace(self) -> int:
        """The most elements per sample any layer's forward holds at once (the numeric engine's chunk sizing)."""
        return max([int(np.prod(self.sample_shape))] + [getattr(l, "workspace", int(np.prod(l.out_shape))) for l in self.all_layers()])

    def param_layer(self) -> dict[str, Layer]:
        """Which top-level layer owns each parameter (a residual block owns its members')."""
        return {name: layer for layer in self.layers for name in layer.param_names}

    def mixes_batch(self, start: int = 0) -> bool:
        return any(l.mixes_batch for l in self.layers[start:])

    def complex_safe(self) -> bool:
        return self.loss_op.complex_safe and all(l.complex_safe for l in self.all_layers())

    def torch_missing(self) -> str | None:
        """Why the autograd engine cannot build this network (a custom op without a torch mirror), or None."""
        for layer in self.all_layers():
            if isinstance(layer, ActivationLayer) and layer.op.torch is None:
                return f"{layer.name} (custom activation {layer.op.name}) has no torch_forward(z)"
            if isinstance(layer, CustomLayer) and not callable(getattr(layer.obj, "torch_forward", None)):
                return f"{layer.name} (custom layer {layer.impl.rpartition(':')[2]}) has no torch_forward(x, params)"
        if self.loss_op.torch is None:
            return f"the custom loss {self.loss_op.name} has no torch_forward(pred, target)"
        return None

    def forward(self, params, x=None, start: int = 0, rows=None, stop: int | None = None):
        """Output of layers `start` to `stop` (default: the network's output; x is then layer start's input)."""
        h = self.x if x is None else x
        for layer in self.layers[start:stop]:
            h = layer.forward(params, h, rows)
        return h

    def as_rows(self, a):
        """(..., batch, *output shape) -> (..., batch, rows, features): the loss acts on an N-d output's last
        axis, its other positions are rows (the one place that folds them; the numeric engine uses it too)."""
        out = self.target.shape[1:]
        return a.reshape(a.shape[: a.ndim - len(out)] + (-1, out[-1]))

    def _rows_of(self, y, target):
        """(y, t) with batch and positions folded into one row axis: (*lead, rows, features) and (rows, features)."""
        t = self.target if target is None else target
        if self.target.ndim == 2:
            return y, t
        ys, f = self.as_rows(y), self.target.shape[-1]
        return ys.reshape(ys.shape[:-3] + (-1, f)), self.as_rows(t).reshape(-1, f)

    def loss_of_output(self, y, target=None):
        y, t = self._rows_of(y, target)
        return self.loss_op.forward(y, t) * self.loss_scale

    def sample_losses(self, y):
        """Each sample's share of the loss: (*lead, batch) from an output (*lead, batch, *output shape)."""
        return self.loss_op.forward(self.as_rows(y), self.as_rows(self.target)) * self.loss_scale

    def loss_gradient(self, y):
        """dL/dy for an output y of shape (batch, *output shape)."""
        yr, t = self._rows_of(y, None)
        return (self.loss_op.backward(yr, t).astype(y.dtype) * np.asarray(self.loss_scale, dtype=y.dtype)).reshape(y.shape)

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


def _draw_target(rng, spec, out: tuple[int, ...]) -> np.ndarray:
    t, b = spec.target, spec.input.batch
    lead, n = (b,) + tuple(out[:-1]), out[-1]
    if t.kind == "regression":
        return rng.normal(0.0, t.scale, size=lead + (n,))
    if t.kind == "onehot":
        return np.eye(n)[rng.integers(0, n, size=lead)]
    if t.kind == "binary":
        return rng.integers(0, 2, size=lead + (n,)).astype(float)
    return rng.dirichlet(np.ones(n), size=lead)


def _draw_input(rng, spec) -> np.ndarray:
    i = spec.input
    shape = (i.batch,) + i.sample_shape
    if i.distribution == "uniform":
        return i.mean + rng.uniform(-i.scale, i.scale, size=shape)
    return rng.normal(i.mean, i.scale, size=shape)


@dataclass
class _Builder:
    spec: Any
    rng_params: np.random.Generator
    rng_buffers: np.random.Generator
    params: dict = field(default_factory=dict)

    def layers(self, specs, shape: tuple, name: str, path: str) -> tuple[list, tuple]:
        out = []
        for i, ls in enumerate(specs):
            layer = self.layer(i, ls, shape, f"{name}.{i}", f"{path}[{i}]")
            out.append(layer)
            shape = layer.out_shape
        return out, shape

    def layer(self, i: int, ls, shape: tuple, name: str, path: str):
        from .spec import ActivationSpec, CustomLayerSpec, DenseSpec, ResidualSpec, _projection

        net = self.spec.network
        if isinstance(ls, DenseSpec):
            return self.dense(i, shape, ls.units, ls.bias, ls.init or net.init, name, path)
        if isinstance(ls, CustomLayerSpec):
            return _custom_layer(i, ls, self.rng_params, self.params, name, path, shape)
        if isinstance(ls, ActivationSpec):
            op = _activation_op(ls)
            hp, trainable = ls.hyper(), ls.trainable_names()
            layer = ActivationLayer(i, op, {k: v for k, v in hp.items() if k not in trainable}, trainable, shape[-1], name, path, shape)
            for h in trainable:
                self.params[layer.param_name(h)] = np.array(hp[h])
            return layer
        if isinstance(ls, ResidualSpec):
            inner, out = self.layers(ls.layers, shape, f"{name}.layers", f"{path}.layers")
            kind, stride = _projection(ls, shape, out, path)
            proj = None
            if kind == "dense":
                proj = self.dense(i, shape, out[-1], True, net.init, f"{name}.projection", f"{path}.projection")
            elif kind == "conv":
                conv = "conv1d" if len(shape) == 2 else "conv2d"
                opts = LAYERS.get(conv).options(channels=out[0], kernel=1, stride=stride)
                proj = self.op(i, LAYERS.get(conv), opts, shape, f"{name}.projection", f"{path}.projection")
            return ResidualLayer(i, name, path, shape, out, tuple(inner), proj)
        return self.op(i, LAYERS.get(ls.type), ls, shape, name, path)

    def dense(self, i, shape, units, bias, init, name, path) -> DenseLayer:
        n_in = shape[-1]
        layer = DenseLayer(i, n_in, units, self.spec.network.convention, bias, init, name, path, shape)
        w_shape = dense_op.weight_shape(n_in, units, layer.layout, bias)
        fan_in = n_in + (1 if bias == "folded" else 0)
        self.params[layer.weight] = init_op.draw(self.rng_params, init.scheme, w_shape, fan_in, units, init.std)
        if layer.bias_name:
            self.params[layer.bias_name] = _draw_bias(self.rng_params, init.bias, units, n_in, units)
        return layer

    def op(self, i, op: LayerOp, options, shape, name, path) -> OpLayer:
        init = self.spec.network.init
        infos = op.params(tuple(shape), options)
        for k, info in infos.items():
            if info.init == "weight":
                value = init_op.draw(self.rng_params, init.scheme, info.shape, info.fan_in, info.fan_out, init.std)
            elif info.init == "bias":
                value = _draw_bias(self.rng_params, init.bias, int(np.prod(info.shape)), info.fan_in, info.fan_out).reshape(info.shape)
            else:
                value = np.full(info.shape, 1.0 if info.init == "ones" else 0.0)
            self.params[f"{name}.{k}"] = value
        buffers = op.buffers(self.rng_buffers, self.spec.input.batch, tuple(shape), options) if op.buffers else {}
        return OpLayer(i, op, options, name, path, tuple(shape), tuple(op.out_shape(tuple(shape), options)), infos, buffers)


def build(spec, *, seed: int | None = None) -> Network:
    """Spec -> Network with parameters and batch drawn from `seed` (default: the spec's)."""
    seed = spec.seed if seed is None else seed
    dtype = np.dtype(spec.dtype)
    rng_data = np.random.default_rng([seed, 1])
    builder = _Builder(spec, np.random.default_rng([seed, 0]), np.random.default_rng([seed, 2]))
    layers, out = builder.layers(spec.network.layers, spec.input.sample_shape, "layers", "network.layers")
    loss_op = _loss_op(spec.loss)
    return Network(
        name=spec.name or "spec",
        dtype=dtype,
        layers=layers,
        loss_op=loss_op,
        reduction=spec.loss.effective_reduction,
        params={k: v.astype(dtype) for k, v in builder.params.items()},
        x=_draw_input(rng_data, spec).astype(dtype),
        target=_draw_target(rng_data, spec, out).astype(dtype),
        seed=seed,
    )


# --- custom ops (gradlab.userops loads and wraps them) -------------------------------------------


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


def _custom_layer(i: int, ls, rng, params: dict, name: str, path: str, shape: tuple) -> CustomLayer:
    """A fresh user object per network; parameters as the object made them, or drawn by `init`."""
    from .userops.adapters import layer_info

    info = layer_info(ls.impl)
    layer = CustomLayer(i, ls.impl, info.obj, info.n_in, info.n_out, tuple(info.params), name, path, tuple(shape),
                        None if info.rowwise else info.out_shape)
    for key, value in info.params.items():
        if ls.init is None:
            params[layer.param_name(key)] = value
        elif value.ndim >= 3:  # a conv-shaped weight (out, in, *kernel): torch's fans
            area = int(np.prod(value.shape[2:]))
            params[layer.param_name(key)] = init_op.draw(rng, ls.init.scheme, value.shape, value.shape[1] * area, value.shape[0] * area, ls.init.std)
        elif value.ndim == 2:
            params[layer.param_name(key)] = init_op.draw(rng, ls.init.scheme, value.shape, info.n_in, info.n_out, ls.init.std)
        else:
            params[layer.param_name(key)] = _draw_bias(rng, ls.init.bias, value.size, info.n_in, info.n_out).reshape(value.shape)
    return layer
