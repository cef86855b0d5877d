"""Stateful layer classes, as from-scratch NumPy libraries write them: forward(x) keeps its cache on
self, backward(dout) returns dx and leaves the parameters' gradients on self.

    class Dense:
        def forward(self, X): self.X = X; return X @ self.W + self.b
        def backward(self, dY): self.dW = self.X.T @ dY; self.db = dY.sum(0); return dY @ self.W.T

What this module finds on such a class, so that StatefulSubject (subjects.py) can audit it:
  methods     forward | forward_pass | __call__, and backward | backward_pass taking one argument
  parameters  float ndarray attributes after construction (and `initialize(optimizer)`), less running
              statistics (running_mean) and what a forward replaces or changes (its caches)
  forward     extra arguments left at their defaults; a required training flag (train_flg) gets True
  gradients   after backward: d<name>, grad_<name>, <name>_grad, d_<name>, a dict grads / gradients /
              param_grads / dparams keyed by name, or what backward handed `<name>_opt.update(w, grad)`
  input shape input_shape / in_features, else the parameters' shapes, else probed candidates
"""

from __future__ import annotations

import copy
import functools
import inspect
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
from hypothesis import strategies as st

from ..usercode import UserCodeError, user_code
from ..userops import contracts
from ..userops.loading import TargetError
from . import strategies as S
from .strategies import Envelope

GRAD_DICTS = ("grads", "gradients", "param_grads", "dparams")
PROBE_BATCH = 2
PROBES = ((PROBE_BATCH, 4), (PROBE_BATCH, 2, 4, 4), (PROBE_BATCH, 3, 4))  # (N, D), (N, C, H, W) with H, W even, (N, T, D)
STATISTICS = ("running_", "moving_", "_running", "_moving")  # a norm's running statistics: no parameters
MAX_POOL = re.compile(r"max_?pool", re.IGNORECASE)  # inputs without ties: the argmax no step can move


def gradient_names(name: str) -> tuple[str, ...]:
    """Where a library leaves the gradient of parameter `name`, lower-cased."""
    n = name.lower()
    return (f"d{n}", f"grad_{n}", f"{n}_grad", f"d_{n}")


def float_arrays(obj: Any) -> dict[str, np.ndarray]:
    try:
        items = vars(obj).items()
    except TypeError:  # __slots__
        return {}
    return {k: v for k, v in items if isinstance(v, np.ndarray) and v.dtype.kind == "f"}


class RecordingOptimizer:
    """Handed to `initialize(optimizer)`: update(w, grad) keeps grad and returns w unchanged, so the
    gradient an optimizer-style backward computes is recorded and the parameters stay put."""

    def __init__(self):
        self.grad = None

    def update(self, w, grad):
        self.grad = grad
        return w


ORDER, RETURNED = "_gradlab_param_order", "_gradlab_returned"  # set on gradlab's own copies: see param_order, call_backward


def param_order(template: Any) -> None:
    """A layer listing its parameters in `self.params = [self.W, self.b]` and returning `dx, [dW, db]` from backward:
    remember which attribute each list entry is, so the returned gradients can be read by position."""
    listed = getattr(template, "params", None)
    try:
        attrs = vars(template)
    except TypeError:
        return
    if isinstance(listed, (list, tuple)) and listed:
        names = [next((k for k, v in attrs.items() if v is item and isinstance(v, np.ndarray)), None) for item in listed]
        attrs[ORDER] = names


def found_gradient(inst: Any, name: str) -> tuple[Any, str] | None:
    """(the gradient of parameter `name` that backward left on `inst`, where it was found), or None."""
    order, returned = getattr(inst, ORDER, None), getattr(inst, RETURNED, None)
    if order and returned is not None and name in order and order.index(name) < len(returned) and returned[order.index(name)] is not None:
        return returned[order.index(name)], f"backward's returned gradients [{order.index(name)}] (self.params order)"
    attrs = {k.lower(): k for k in vars(inst) if k not in (ORDER, RETURNED)}
    for g in gradient_names(name):
        if g in attrs and getattr(inst, attrs[g]) is not None:
            return getattr(inst, attrs[g]), f"self.{attrs[g]}"
    for d in GRAD_DICTS:
        table = getattr(inst, d, None)
        if isinstance(table, dict):
            keys = {str(k).lower(): k for k in table}
            if name.lower() in keys and table[keys[name.lower()]] is not None:
                return table[keys[name.lower()]], f"self.{d}[{keys[name.lower()]!r}]"
    opt = getattr(inst, f"{name}_opt", None)
    if isinstance(opt, RecordingOptimizer) and opt.grad is not None:
        return opt.grad, f"self.{name}_opt.update(w, grad)"
    return None


def clear_gradients(inst: Any) -> None:
    """Recorders forget the last case's gradient, so a backward that skips the update is seen."""
    for v in vars(inst).values():
        if isinstance(v, RecordingOptimizer):
            v.grad = None


@dataclass
class Layout:
    """What the audit found on a stateful layer."""

    forward: str
    backward: str
    template: Any  # the constructed (and initialized) instance every case is deep-copied from
    input_shape: tuple[int, ...]
    shape_how: str
    params: dict[str, np.ndarray]  # judged: a gradient was found after the probe backward
    grad_where: dict[str, str]
    unjudged: tuple[str, ...]  # float attributes with no gradient found
    tie_free: bool


TRAINING_FLAGS = ("training", "train", "train_flg", "is_training", "train_mode")


@functools.lru_cache(maxsize=None)
def _forward_flags(cls: type, method: str) -> tuple[str, ...]:
    """Required arguments after x that are a training flag (forward_pass(X, training)): passed True.
    Others with defaults are left at them; any other required one cannot be filled in."""
    try:
        params = list(inspect.signature(getattr(cls, method)).parameters.values())[2:]  # self, x
    except (TypeError, ValueError):
        return ()
    return tuple(p.name for p in params if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name.lower() in TRAINING_FLAGS)


def call_forward(inst: Any, method: str, x: np.ndarray):
    return getattr(inst, method)(x, **{k: True for k in _forward_flags(type(inst), method)})


def call_backward(inst: Any, method: str, dout: np.ndarray):
    """dx from backward: a tuple's first element (dx, grads...); the rest ([dW, db] or dW, db) kept on the instance."""
    out = getattr(inst, method)(dout)
    if not (isinstance(out, tuple) and out):
        return out
    rest = out[1:]
    if len(rest) == 1 and isinstance(rest[0], (list, tuple)):
        rest = tuple(rest[0])
    try:
        vars(inst)[RETURNED] = rest
    except TypeError:  # __slots__
        pass
    return out[0]


def _probe(template: Any, fwd: str, bwd: str, shape: tuple[int, ...], target: str) -> tuple[Any, dict[str, np.ndarray]]:
    """A fresh instance after forward and backward on `shape`, and its float arrays right after the
    forward (raises UserCodeError when either call refuses the shape)."""
    inst = copy.deepcopy(template)
    rng = np.random.default_rng(0)
    x = rng.normal(size=shape)
    with user_code(f"{target}: {fwd}(x of shape {shape})"):
        out = np.asarray(call_forward(inst, fwd, x))
    if out.dtype.kind != "f":
        raise UserCodeError(f"{target}: {fwd} returned {out.dtype}, not floats, for x of shape {shape}")
    after_forward = {k: v.copy() for k, v in float_arrays(inst).items()}
    with user_code(f"{target}: {bwd}(dout of shape {out.shape})"):
        call_backward(inst, bwd, rng.normal(size=out.shape))
    return inst, after_forward


def _candidates(template: Any, params: dict[str, np.ndarray], target: str) -> list[tuple[tuple[int, ...], str]]:
    """Input shapes to try, in order, each with how it was found."""
    out: list[tuple[tuple[int, ...], str]] = []
    declared = getattr(template, "input_shape", None)
    if declared is not None:
        try:
            shape = tuple(int(s) for s in declared)
        except (TypeError, ValueError):
            shape = ()
        if shape and min(shape) <= 0:
            raise TargetError(f"{target}: input_shape must be a tuple of positive integers (batch first, e.g. (4, 3)), got {declared!r}")
        if shape:
            # before the probe allocates an input of that size
            S.bound_layer(target, shape if len(shape) >= 2 else (PROBE_BATCH,) + shape, params)
            if len(shape) >= 2:
                out.append((shape, "input_shape (batch first)"))
            out.append(((PROBE_BATCH,) + shape, "input_shape, batch prepended"))
    n = getattr(template, "in_features", None)
    if isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n > 0:
        out.append(((PROBE_BATCH, int(n)), "in_features"))
    for name, p in params.items():
        if p.ndim == 2:
            out += [((PROBE_BATCH, p.shape[0]), f"{name}'s shape {p.shape}"), ((PROBE_BATCH, p.shape[1]), f"{name}'s shape {p.shape}")]
        elif p.ndim == 1:  # a per-feature scale or bias
            out.append(((PROBE_BATCH, p.shape[0]), f"{name}'s shape {p.shape}"))
        elif p.ndim == 4:  # a convolution's filters (F, C, kh, kw)
            out += [((PROBE_BATCH, p.shape[1], 6, 6), f"{name}'s shape {p.shape}"), ((PROBE_BATCH, p.shape[1], 4, 4), f"{name}'s shape {p.shape}")]
    out += [(s, "probing: the first shape forward and backward accept") for s in PROBES]
    hint = _HINTS.get(id(template))
    return ([(hint[1], "the sizes it was built with")] if hint is not None and hint[0] is template else []) + out


def construct(obj: Any, target: str) -> Any:
    """The instance cases are copied from: `initialize(optimizer)` called, when the class has one."""
    init = getattr(obj, "initialize", None)
    if callable(init):
        arity = contracts.positional_arity(init)
        if arity is not None and arity[0] <= 1 <= arity[1]:
            with user_code(f"{target}: {type(obj).__name__}.initialize(optimizer)"):
                init(RecordingOptimizer())
        elif arity is not None and arity[0] == 0:
            with user_code(f"{target}: {type(obj).__name__}.initialize()"):
                init()
    return obj


def inspect_layer(obj: Any, target: str) -> Layout:
    """Methods, parameters, their gradients and an input shape; a TargetError says what is missing."""
    found = contracts.stateful_methods(obj)
    if found is None:
        raise TargetError(f"{target}: a stateful layer needs forward(x) (or forward_pass, __call__) and backward(dout) -> dx (or backward_pass) taking one argument")
    fwd, bwd = found
    try:
        template = construct(obj, target)
    except UserCodeError as exc:
        raise TargetError(str(exc)) from None
    try:
        copy.deepcopy(template)
    except Exception as exc:  # noqa: BLE001 -- a lock, a file, a generator: whatever deepcopy refuses
        raise TargetError(f"{target}: every case runs on a fresh copy of {type(template).__name__}, but copy.deepcopy "
                          f"refuses it ({type(exc).__name__}: {exc}); keep only arrays and numbers on the instance") from None
    param_order(template)
    arrays = float_arrays(template)
    grads_of = {g for k in arrays for g in gradient_names(k)}
    params = {k: v for k, v in arrays.items() if k.lower() not in grads_of  # a dW made zero in __init__ is no parameter
              and not k.lower().startswith(STATISTICS)}
    errors = []
    for shape, how in _candidates(template, params, target):
        try:
            inst, after = _probe(template, fwd, bwd, shape, target)
        except UserCodeError as exc:
            errors.append(f"{shape}: {exc}")
            continue
        kept = [k for k, v in params.items() if k in after and np.array_equal(after[k], v)]  # what forward changes is a cache
        where = {k: w for k in kept if (g := found_gradient(inst, k)) is not None for w in [g[1]]}
        judged = {k: params[k].copy() for k in kept if k in where}
        unjudged = tuple(k for k in kept if k not in where)
        return Layout(fwd, bwd, template, shape, how, judged, where, unjudged, bool(MAX_POOL.search(type(template).__name__)))
    raise TargetError(f"{target}: no input shape found that {fwd} and {bwd} accept; declare `input_shape = (batch, ...)`; tried " + "; ".join(errors[:3]))


@st.composite
def cases(draw, env: Envelope, input_shape: tuple[int, ...], params: dict[str, np.ndarray], param_envs: dict[str, Envelope], tie_free: bool):
    """A layer's cases; a max-pool's x without ties, as the pool convention draws it."""
    case = draw(S.layer_cases(env, input_shape, params, param_envs))
    if tie_free:
        case.inputs["x"] = draw(S.tie_free(case.inputs["x"].shape), label="x without ties")
    return case


def stateful_classes(module: Any) -> list[str]:
    """Classes defined in `module` (not imported) that look like stateful layers (loss layers: building.loss_layer_classes)."""
    out = []
    for name, value in vars(module).items():
        if isinstance(value, type) and value.__module__ == module.__name__ and not name.startswith("_") and contracts.stateful_methods(value) is not None:
            out.append(name)
    return out


# building.py records, for an instance it built, the input shape its sizes imply: _candidates tries it first
_HINTS: dict[int, tuple[Any, tuple[int, ...]]] = {}  # id(built instance) -> (it, the input shape its sizes imply)
