"""Course model classes (CS231n classifiers/fc_net.py, cnn.py), audited with no configuration:

    model = TwoLayerNet(input_dim=..., hidden_dim=..., num_classes=..., weight_scale=..., reg=...)
    loss, grads = model.loss(X, y)        # grads: one gradient per entry of model.params, same keys

A class the file defines with a `loss` method whose constructor can be called with small sizes is
built with the size-like keywords below (the other parameters keep their defaults; dtype=np.float64
when it takes one). Every params entry is differentiated through loss(X, y): X is drawn (N, input_dim),
y integer labels in [0, num_classes), reg (when the constructor takes it) from the scalar
hyperparameters of conventions.py.
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
from .judge import fail
from .strategies import Case, Envelope
from .subjects import Subject, as_float_array

LOSS_METHOD = "loss"
# constructor keyword -> the small value it gets (naive layers are Python loops; a bug shows at these sizes)
SIZES: dict[str, Any] = {"input_dim": 4, "hidden_dim": 3, "hidden_size": 3, "num_classes": 3, "hidden_dims": [3, 4],
                         "num_filters": 2, "filter_size": 3}
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
        with user_code(f"{target}: {cls.__name__}(**{self.args})"):
            model = self._build({})
        params = getattr(model, "params", None)
        if not isinstance(params, dict) or not params:
            raise TargetError(f"{target}: a model keeps its parameters in a dict self.params (name -> array); found {type(params).__name__}")
        self.original = {k: np.asarray(v, dtype=np.float64).copy() for k, v in params.items()}
        self.keys = {S.param_key(k): k for k in self.original}
        self.input_shape = tuple(int(d) for d in np.atleast_1d(self.args.get("input_dim", self._input_dim())))
        self.classes = int(self.args.get("num_classes", 0) or self._classes())

    def _input_dim(self) -> int:
        first = next(iter(self.original.values()))
        return first.shape[0]

    def _classes(self) -> int:
        last = list(self.original.values())[-1]
        return last.shape[-1]

    def _build(self, hyper: dict):
        return self.cls(**self.args, **hyper)

    def strategy(self):
        return _model_cases(self)

    def _loss(self, case: Case):
        model = self._build(case.hyper)
        for key, name in self.keys.items():
            model.params[name] = case.inputs[key].copy()
        self.fresh()
        out = model.loss(case.const["X"].copy(), case.const["y"].copy())
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
        return f"loss, grads = {self.cls.__name__}({args}{', reg=...' if self.takes_reg else ''}).loss(X, y)"


@st.composite
def _model_cases(draw, subject: ModelSubject):
    n = draw(st.integers(1, MAX_BATCH), label="N")
    inputs = {}
    for key, name in subject.keys.items():
        # drawn, never the constructor's random initial values: the same seed gives the same cases
        inputs[key] = draw(S.arrays(subject.original[name].shape, Envelope(max_abs=C.PARAM_MAX_ABS)), label=key)
    X = draw(S.arrays((n,) + subject.input_shape, Envelope(max_abs=C.PARAM_MAX_ABS)), label="X")
    y = draw(hnp.arrays(np.int64, (n,), elements=st.integers(0, subject.classes - 1)), label="y")
    hyper = {"reg": draw(st.sampled_from(C.SCALAR_HYPERPARAMETERS["reg"]), label="reg")} if subject.takes_reg else {}
    return Case(inputs, {"X": X, "y": y}, hyper)
