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
from . import conventions as C
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
    """Classes defined in `module` (not imported) that look like stateful layers. Loss layers are audited when named
    (file.py:SoftmaxWithLoss), not listed here: a textbook's log(y + 1e-7) is not what its backward differentiates."""
    out = []
    for name, value in vars(module).items():
        if isinstance(value, type) and value.__module__ == module.__name__ and not name.startswith("_") and contracts.stateful_methods(value) is not None:
            out.append(name)
    return out


LABELS = "t"  # a loss layer's labels travel in case.hyper (reproduce passes hyper={'t': ...} through)
LOSS_CLASSES = (2, 4)  # classes of a loss layer's scores, drawn


class LossLayerSubject:
    """A loss layer on a fresh instance per call: loss = forward(x, t) with integer labels t, dx = backward().

    Audited like a stateful layer without parameters (kind `stateful`: reproduce(..., x=..., hyper={'t': ...}))."""

    kind = "stateful"
    needs_upstream = False

    def __new__(cls, layer: type, target: str, *, max_abs: float):
        from .subjects import Subject

        class _Subject(cls, Subject):  # Subject's envelope, reseeding and surrogate, this class's calls
            pass

        inst = object.__new__(_Subject)
        Subject.__init__(inst, layer, target, max_abs=max_abs)
        inst.setup(layer, target)
        return inst

    def setup(self, layer: type, target: str) -> None:
        try:
            with user_code(f"{target}: {layer.__name__}()"):
                self.template = layer()
        except UserCodeError as exc:
            raise TargetError(str(exc)) from None
        self.original, self.keys = {}, {}
        self.built = ""

    @property
    def name(self) -> str:
        return self.obj.__name__

    def strategy(self):
        return _loss_layer_cases(self.envelope)

    def _fresh_instance(self):
        return copy.deepcopy(self.template)

    def forward(self, case):
        from .subjects import as_float_array

        inst = self._fresh_instance()
        self.fresh()
        return as_float_array(inst.forward(case.inputs["x"], case.hyper[LABELS].copy()))

    def backward(self, case, upstream):
        inst = self._fresh_instance()
        self.fresh()
        inst.forward(case.inputs["x"], case.hyper[LABELS].copy())
        self.fresh()
        return {"x": inst.backward()}

    def scalar(self, case, upstream, name, value):
        from .strategies import Case as _Case

        return float(np.sum(self.forward(_Case({"x": value.copy()}, case.const, case.hyper))))

    def call_signature(self):
        return "loss = forward(x, t), dx = backward() on a fresh instance per call; t integer labels in [0, C)"


@st.composite
def _loss_layer_cases(draw, env: Envelope):
    from hypothesis.extra import numpy as hnp

    n = draw(st.integers(1, 4), label="N")
    c = draw(st.integers(*LOSS_CLASSES), label="C")
    x = draw(S.arrays((n, c), env), label="x")
    t = draw(hnp.arrays(np.int64, (n,), elements=st.integers(0, c - 1)), label="t")
    return S.Case({"x": x}, {}, {LABELS: t})


# --- construction: Conv(X_dim, n_filter, h_filter, w_filter, stride, padding), Affine(W, b), Pooling(pool_h, pool_w) ----

_HINTS: dict[int, tuple[Any, tuple[int, ...]]] = {}  # id(built instance) -> (it, the input shape its sizes imply)


def _required(cls: type) -> list[inspect.Parameter]:
    try:
        params = list(inspect.signature(cls).parameters.values())
    except (TypeError, ValueError):
        return []
    return [p for p in params if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def needs_building(raw: Any) -> bool:
    """A class gradlab builds itself (built_subject): a stateful layer whose constructor has required parameters,
    or a loss layer (forward(x, t) -> loss, backward(dout=1) -> dx) whatever its constructor."""
    return isinstance(raw, type) and (contracts.stateful_methods(raw) is not None and bool(_required(raw)) or is_loss_layer(raw))


def is_loss_layer(cls: Any) -> bool:
    """forward(x, t) -> a number and backward() / backward(dout=1) -> dx, as a textbook's SoftmaxWithLoss: the labels
    are the forward's second argument, the upstream gradient of a loss is 1."""
    if not (isinstance(cls, type) and inspect.isfunction(getattr(cls, "forward", None)) and inspect.isfunction(getattr(cls, "backward", None))):
        return False
    fwd, bwd = contracts.positional_arity(cls.forward), contracts.positional_arity(cls.backward)
    return fwd is not None and bwd is not None and fwd[0] == 3 and bwd[0] == 1  # self, x, t / self (dout has a default)


def _value(what: str, profile: str, rng: np.random.Generator, sizes: dict[str, int] | None = None) -> Any:
    sizes = sizes or C.BUILD_SIZES
    if what == "shape":
        return sizes["D"] if profile == "dense" else (sizes["C"], sizes["H"], sizes["W"])
    if what == "pad":
        return sizes["pad"]
    if what.startswith("int:"):
        return sizes[what[4:]]
    if what.startswith("float:"):
        return float(what[6:])
    dims = C.ARRAYS[profile][what[len("array:"):]]
    return rng.normal(size=tuple(sizes[d] for d in dims)) * 0.5  # replaced by drawn values in every case


def _shown(value: Any) -> str:
    return f"<array {value.shape}>" if isinstance(value, np.ndarray) else repr(value)


def build_arguments(cls: type, profile: str, target: str, sizes: dict[str, int] | None = None) -> dict[str, Any]:
    """The required constructor arguments of `cls` in `profile`; TargetError naming one gradlab cannot tell."""
    rng = np.random.default_rng(0)
    args = {}
    for p in _required(cls):
        what = C.constructor_kind(p.name)
        if what is None:
            raise TargetError(f"{target}: cannot build {cls.__name__}: cannot tell what to pass as {p.name!r} to its constructor "
                              "(gradlab builds from names like X_dim, input_size, hidden_size, n_filter, h_filter, stride, padding, "
                              "pool_h, W, b, gamma); give it a default")
        if p.kind is p.POSITIONAL_ONLY:
            raise TargetError(f"{target}: cannot build {cls.__name__}: {p.name!r} is positional-only; give it a default")
        args[p.name] = _value(what, profile, rng, sizes)
    return args


def _build(cls: type, target: str, profile: str, sizes: dict[str, int], max_abs: float, errors: list[str]):
    """A StatefulSubject on `cls` built in `profile` with `sizes`, or None (why appended to `errors`)."""
    from ..usercode import UserCodeError as _UserCodeError
    from .subjects import StatefulSubject

    args = build_arguments(cls, profile, target, sizes)
    text = f"{cls.__name__}({', '.join(f'{k}={_shown(v)}' for k, v in args.items())})"
    try:
        with user_code(f"{target}: {text}"):
            inst = cls(**args)
    except _UserCodeError as exc:
        errors.append(str(exc))
        return None
    _HINTS[id(inst)] = (inst, (PROBE_BATCH, sizes["D"]) if profile == "dense" else (PROBE_BATCH, sizes["C"], sizes["H"], sizes["W"]))
    try:
        subject = StatefulSubject(inst, target, max_abs=max_abs)
    except TargetError as exc:
        errors.append(f"{text}: {exc}")
        return None
    finally:
        _HINTS.pop(id(inst), None)
    subject.built = text
    return subject


def varied(variants: list):
    """One subject over several builds of a class (other sizes): a case draws a build first, and every call goes to the
    build whose input and parameter shapes the case has (so reproduce, handed x and params, finds it too)."""
    from .subjects import StatefulSubject

    class VariedStatefulSubject(StatefulSubject):
        def __init__(self, builds):
            self.__dict__.update(builds[0].__dict__)
            self.builds = builds
            self.built = " / ".join(dict.fromkeys(b.built for b in builds))  # the same arguments twice: other input sizes only

        def _pick(self, case):
            x = case.inputs.get("x")
            for b in self.builds:
                if x is not None and x.shape[1:] == tuple(b.input_shape[1:]) and all(
                        case.inputs[k].shape == b.original[name].shape for k, name in b.keys.items() if k in case.inputs):
                    return b
            return self.builds[0]

        def _instance(self, case):
            b = self._pick(case)
            self.layout, self.input_shape, self.original = b.layout, b.input_shape, b.original
            return super()._instance(case)

        def strategy(self):
            return st.integers(0, len(self.builds) - 1).flatmap(lambda i: self.builds[i].strategy())

        def call_signature(self):
            first = super().call_signature()
            shapes = ", ".join(f"x (N, {', '.join(map(str, b.input_shape[1:]))})" for b in self.builds[1:])
            return f"{first}; also built with other sizes: {shapes}"

    return VariedStatefulSubject(variants)


def built_subject(cls: type, target: str, *, max_abs: float):
    """A StatefulSubject on an instance of `cls` built from its parameter names: each profile of conventions.PROFILES
    in turn (image first for a conv or pool by its name), the first whose forward and backward accept an input.
    A loss layer is a LossLayerSubject."""
    if is_loss_layer(cls):
        return LossLayerSubject(cls, target, max_abs=max_abs)

    image_first = any(w in cls.__name__.lower() for w in C.IMAGE_WORDS)
    errors: list[str] = []
    for profile in (("image", "dense") if image_first else C.PROFILES):
        subject = _build(cls, target, profile, C.BUILD_SIZES, max_abs, errors)
        if subject is None:
            continue
        other = _build(cls, target, profile, C.OTHER_BUILD_SIZES, max_abs, [])  # a second set of sizes, when it builds too
        if other is not None and list(other.keys) == list(subject.keys):
            return varied([subject, other])
        return subject
    raise TargetError(f"{target}: cannot build {cls.__name__} from its parameter names: " + "; ".join(dict.fromkeys(errors[:2])))
