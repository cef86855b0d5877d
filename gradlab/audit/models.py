"""Course model classes (CS231n classifiers/fc_net.py, cnn.py), audited with no configuration:

    model = TwoLayerNet(input_dim=..., hidden_dim=..., num_classes=..., weight_scale=..., reg=...)
    loss, grads = model.loss(X, y)        # grads: one gradient per entry of model.params, same keys

A class the file defines with a `loss` method whose constructor can be called with small sizes is
built with the size-like keywords below (the other parameters keep their defaults; dtype=np.float64
when it takes one), and with a second set of sizes (OTHER_SIZES) for part of the cases. Every params
entry is differentiated through loss(X, y): X is drawn (N, input_dim), y integer labels in
[0, num_classes), reg (when the constructor or loss(X, y=None, reg=0.0) takes it) from the scalar
hyperparameters of conventions.py, so a regularisation gradient the loss does not have (b1, b2) shows.
A loss returning only a number is paired with gradient(X, y) -> grads (the textbook's nets).
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ..usercode import user_code
from ..userops.loading import TargetError
from . import conventions as C
from . import strategies as S
from .findings import fail
from .strategies import Case, Envelope
from .subjects import Subject, as_float_array

LOSS_METHOD = "loss"
GRADIENT_METHOD = "gradient"  # loss(x, t) -> a number and gradient(x, t) -> grads (the textbook's nets)
# constructor keyword -> the small value it gets (naive layers are Python loops; a bug shows at these sizes)
SIZES: dict[str, Any] = {"input_dim": 4, "hidden_dim": 3, "hidden_size": 3, "num_classes": 3, "hidden_dims": [3, 4],
                         "num_filters": 2, "filter_size": 3,
                         # CS231n 2016-17 neural_net.py TwoLayerNet(input_size, hidden_size, output_size, std=1e-4), the textbook's nets
                         "input_size": 4, "output_size": 3, "hidden_size_list": [3, 4], "in_size": 4, "out_size": 3, "n_classes": 3}
# a second set of sizes, drawn for part of the cases: a bug that hides at one set of sizes (a square W) shows at another
OTHER_SIZES: dict[str, Any] = {"input_dim": 3, "hidden_dim": 5, "hidden_size": 5, "num_classes": 4, "hidden_dims": [4, 2],
                               "num_filters": 3, "input_size": 3, "output_size": 4, "hidden_size_list": [4, 2], "in_size": 3,
                               "out_size": 4, "n_classes": 4}
IMAGE_SIDE = 4  # input_dim given as (C, H, W): H and W become this, C at most 2
MAX_BATCH = 4


def _constructor(cls: type) -> list[inspect.Parameter]:
    try:
        return [p for p in inspect.signature(cls).parameters.values() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    except (TypeError, ValueError):
        return []


def _small(name: str, default: Any) -> Any:
    """The small value a size-like keyword gets, shaped like its default (an image's (C, H, W) stays 3-D)."""
    if name == "input_dim" and isinstance(default, (tuple, list)):
        return (min(int(default[0]), 2),) + (IMAGE_SIDE,) * (len(default) - 1)
    if name == "hidden_dims" and isinstance(default, (tuple, list)) and default:
        return [3] * min(len(default), 2)
    return SIZES[name]


def constructor_args(cls: type, where: str) -> dict[str, Any]:
    """The keywords a model is built with; TargetError when a required one is no size gradlab knows."""
    args = {}
    for p in _constructor(cls):
        if p.name in SIZES:
            args[p.name] = _small(p.name, None if p.default is p.empty else p.default)
        elif p.name == "dtype":
            args[p.name] = np.float64
        elif p.default is p.empty:
            raise TargetError(f"{where}: cannot tell what to pass as {p.name!r} to the constructor (gradlab passes "
                              f"{', '.join(sorted(SIZES))}, dtype); give it a default")
    return args


def _takes(method: Any, name: str) -> bool:
    try:
        return name in inspect.signature(method).parameters
    except (TypeError, ValueError):
        return False


def model_classes(module: Any) -> list[str]:
    """Classes defined in `module` (not imported) with a `loss` method and a size-like constructor keyword: course models."""
    return [name for name, value in vars(module).items()
            if is_model(value) and value.__module__ == module.__name__ and not name.startswith("_")]


def is_model(cls: Any) -> bool:
    return isinstance(cls, type) and callable(getattr(cls, LOSS_METHOD, None)) and any(p.name in SIZES for p in _constructor(cls))


class ModelSubject(Subject):
    """loss(X, y) of a model built fresh for every call, its params set to the case's arrays."""

    kind = "model"
    needs_upstream = False

    def __init__(self, cls: type, target: str, **kw):
        super().__init__(cls, target, **kw)
        self.cls = cls
        self.args = constructor_args(cls, target)
        self.takes_reg = any(p.name == "reg" for p in _constructor(cls))
        self.loss_reg = not self.takes_reg and _takes(getattr(cls, LOSS_METHOD), "reg")  # loss(X, y=None, reg=0.0)
        self.gradient = callable(getattr(cls, GRADIENT_METHOD, None))
        self.variants = [self._variant({}, target)]
        other = {k: OTHER_SIZES[k] for k in self.args if k in OTHER_SIZES and not isinstance(self.args[k], tuple)}
        if other:
            try:
                variant = self._variant(other, target)
                if list(variant[1]) == list(self.variants[0][1]):
                    self.variants.append(variant)
            except (TargetError, Exception):  # noqa: BLE001 -- the other sizes are a bonus: the first set is what must build
                pass
        self.original = self.variants[0][1]
        self.keys = {S.param_key(k): k for k in self.original}
        self.input_shape, self.classes = self.variants[0][2], self.variants[0][3]
        self.built = " / ".join(self._built(sizes) for sizes, *_ in self.variants)

    def _variant(self, sizes: dict, target: str) -> tuple[dict, dict[str, np.ndarray], tuple[int, ...], int]:
        """(the sizes that differ from self.args, the params' initial values, X's shape less the batch, the classes)."""
        with user_code(f"{target}: {self._built(sizes)}"):
            model = self._build(sizes)
        params = getattr(model, "params", None)
        if not isinstance(params, dict) or not params:
            raise TargetError(f"{target}: a model keeps its parameters in a dict self.params (name -> array); found {type(params).__name__}")
        original = {k: np.asarray(v, dtype=np.float64).copy() for k, v in params.items()}
        args = {**self.args, **sizes}
        size = next((args[k] for k in ("input_dim", "input_size", "in_size") if k in args), None)
        shape = tuple(int(d) for d in np.atleast_1d(size if size is not None else next(iter(original.values())).shape[0]))
        classes = next((args[k] for k in ("num_classes", "output_size", "out_size", "n_classes") if k in args), None)
        return sizes, original, shape, int(classes or list(original.values())[-1].shape[-1])

    def _built(self, sizes: dict) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in {**self.args, **sizes}.items() if k != "dtype")
        return f"{self.cls.__name__}({args})"

    def _build(self, hyper: dict):
        known = {p.name for p in _constructor(self.cls)}
        return self.cls(**{**self.args, **{k: v for k, v in hyper.items() if k in known}})

    def strategy(self):
        return _model_cases(self)

    def _loss(self, case: Case):
        model = self._build(case.hyper)
        for key, name in self.keys.items():
            value, current = case.inputs[key], model.params.get(name)
            if isinstance(current, np.ndarray) and current.shape == value.shape and current.dtype == np.float64 and current.flags.writeable:
                current[...] = value  # in place: layers built around params['W1'] (the textbook's nets) read the same array
            else:
                model.params[name] = value.copy()
        self.fresh()
        reg = {"reg": case.hyper["reg"]} if self.loss_reg and "reg" in case.hyper else {}
        out = model.loss(case.const["X"].copy(), case.const["y"].copy(), **reg)
        if self.gradient and not isinstance(out, (tuple, list)):  # loss(x, t) -> a number; gradient(x, t) -> grads
            self.fresh()
            out = (out, model.gradient(case.const["X"].copy(), case.const["y"].copy(), **reg))
        if not (isinstance(out, (tuple, list)) and len(out) == 2 and isinstance(out[1], dict)):
            got = f"{len(out)} values" if isinstance(out, (tuple, list)) else type(out).__name__
            fail("contract", f"loss(X, y) must return (loss, grads) with grads a dict keyed like params, got {got}", case=case, stage="forward")
        return out

    def forward(self, case):
        return as_float_array(self._loss(case)[0])

    def backward(self, case, upstream):
        grads = self._loss(case)[1]
        out = {key: grads.get(name) for key, name in self.keys.items()}
        missing = [name for name in self.original if grads.get(name) is None]
        extra = sorted(set(grads) - set(self.original), key=str)
        if missing or extra:
            out["__contract__"] = (f"loss(X, y) returned grads {sorted(grads, key=str)}; params has {list(self.original)}: "
                                   "return one gradient per params entry, under the same key")
        return out

    def scalar(self, case, upstream, name, value):
        inputs = {k: (value if k == name else v).copy() for k, v in case.inputs.items()}
        return float(self.forward(Case(inputs, case.const, case.hyper)))

    def call_signature(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.args.items() if k != "dtype")
        loss = "loss(X, y, reg=...)" if self.loss_reg else "loss(X, y)"
        if self.gradient:
            loss = f"{loss} (or gradient(X, y) when loss returns a number)"
        return f"loss, grads = {self.cls.__name__}({args}{', reg=...' if self.takes_reg else ''}).{loss}"


@st.composite
def _model_cases(draw, subject: ModelSubject):
    n = draw(st.integers(1, MAX_BATCH), label="N")
    sizes, original, input_shape, classes = subject.variants[draw(st.integers(0, len(subject.variants) - 1), label="sizes")]
    inputs = {}
    for key, name in subject.keys.items():
        # drawn, never the constructor's random initial values: the same seed gives the same cases
        inputs[key] = draw(S.arrays(original[name].shape, Envelope(max_abs=C.PARAM_MAX_ABS)), label=key)
    X = draw(S.arrays((n,) + input_shape, Envelope(max_abs=C.PARAM_MAX_ABS)), label="X")
    y = draw(hnp.arrays(np.int64, (n,), elements=st.integers(0, classes - 1)), label="y")
    hyper = dict(sizes)  # the constructor's sizes when they are not the first set: reproduce builds the same model
    if subject.takes_reg or subject.loss_reg:
        hyper["reg"] = draw(st.sampled_from(C.SCALAR_HYPERPARAMETERS["reg"]), label="reg")
    return Case(inputs, {"X": X, "y": y}, hyper)
