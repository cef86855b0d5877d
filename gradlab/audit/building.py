"""Subjects built from a class rather than found ready: a loss layer (forward(x, t) -> loss, backward() -> dx), and
a layer whose constructor needs arguments (Conv(X_dim, n_filter, h_filter, ...)), built from its parameters' names
with sizes gradlab draws. Above stateful.py (what a layer class holds) and subjects.py (how a subject is judged)."""

from __future__ import annotations

import copy
import inspect
from typing import Any

import numpy as np
from hypothesis import strategies as st

from ..usercode import UserCodeError, user_code
from ..userops import contracts
from ..userops.loading import TargetError
from . import conventions as C
from . import strategies as S
from .stateful import _HINTS, PROBE_BATCH
from .strategies import Envelope
from .subjects import StatefulSubject, Subject, as_float_array
LABELS = "t"  # a loss layer's labels travel in case.hyper (reproduce passes hyper={'t': ...} through)
LOSS_CLASSES = (2, 4)  # classes of a loss layer's scores, drawn


class LossLayerSubject:
    """A loss layer on a fresh instance per call: loss = forward(x, t) with integer labels t, dx = backward().

    Audited like a stateful layer without parameters (kind `stateful`: reproduce(..., x=..., hyper={'t': ...}))."""

    kind = "stateful"
    needs_upstream = False

    def __new__(cls, layer: type, target: str, *, max_abs: float):
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


def loss_layer_classes(module: Any) -> list[str]:
    """Loss layer classes `module` defines (not imports): a whole-file audit lists them beside its stateful layers.
    A textbook's log(y + 1e-7) is judged as LossLayerSubject judges it when the class is named."""
    return [name for name, value in vars(module).items()
            if not name.startswith("_") and isinstance(value, type) and value.__module__ == module.__name__ and is_loss_layer(value)]


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
