"""Hypothesis strategies for the inputs of an audited op.

Bugs in hand-written backward passes hide in particular places, so the values are a mixture
that puts each of them in reach of a small budget: simple numbers (what shrinking falls back
to), the whole range up to |v| = 30 (saturation), tiny magnitudes of both signs, exact zeros,
points on and next to the declared kinks, and points just inside a declared or inferred domain
(on a bound that the domain includes, too). Every
element draws its own branch, so arrays mix signs and regimes. Shapes are never only
square: batch and width are drawn independently (1-D and 3-D inputs too, for ops that
claim to take any shape). Everything shrinks towards small shapes and simple values, so a
failure is reported at the smallest input that still shows it.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

MAX_ABS = 30.0  # |v| reaches this (saturation of sigmoid-like ops), unless the domain says less
SATURATED = 10.0  # |v| from here on counts as saturated in the coverage report
SIMPLE = (0.0, 1.0, -1.0, 0.5, -0.5, 2.0, -2.0, 3.0, -3.0)
NEAR_ZERO = (1e-9, 1e-3)
KINK_OFFSETS = (1e-12, 1e-9, 1e-6, 1e-3, 0.1)  # relative to max(1, |kink|)
EDGE_OFFSETS = (1e-6, 1e-4, 1e-2)  # distance from a finite domain bound, relative to max(1, |bound|)
MAX_BATCH, MAX_WIDTH = 6, 8


@dataclass(frozen=True)
class Envelope:
    """Where values are drawn: inside the domain (low, high), within |v| <= max_abs.

    A domain bound is excluded unless its `*_closed` flag says the op is defined there (an
    inferred (0, 1] for a loss on probabilities: p = 1 is a valid input).
    """

    low: float = -math.inf
    high: float = math.inf
    kinks: tuple[float, ...] = ()
    max_abs: float = MAX_ABS
    low_closed: bool = False
    high_closed: bool = False

    @property
    def lo(self) -> float:
        return max(self.low, -self.max_abs)

    @property
    def hi(self) -> float:
        return min(self.high, self.max_abs)

    def reaching_domain(self) -> "Envelope":
        """Widen max_abs when |v| <= max_abs misses the domain (e.g. domain (100, 200)): draw inside it."""
        if self.lo < self.hi:
            return self
        finite = [abs(b) for b in (self.low, self.high) if math.isfinite(b)]
        return replace(self, max_abs=2.0 * max(finite))

    def contains(self, v: float) -> bool:
        if self.low >= -self.max_abs:
            lo_ok = v >= self.low if self.low_closed else v > self.low
        else:
            lo_ok = v >= -self.max_abs
        if self.high <= self.max_abs:
            hi_ok = v <= self.high if self.high_closed else v < self.high
        else:
            hi_ok = v <= self.max_abs
        return lo_ok and hi_ok

    def on_boundary(self, a: np.ndarray) -> np.ndarray:
        """Elements exactly on a finite domain bound (where a forward may be infinite: log 0)."""
        a = np.asarray(a)
        out = np.zeros(a.shape, bool)
        for bound in (self.low, self.high):
            if math.isfinite(bound):
                out |= a == bound
        return out

    def text(self) -> str:
        """'(0, 1]', '(-inf, inf)': the domain as a reader writes it."""
        return f"{'[' if self.low_closed else '('}{self.low:g}, {self.high:g}{']' if self.high_closed else ')'}"


def _interval(env: Envelope, a: float, b: float):
    """Floats in [a, b] that also lie in the envelope; None when that is empty."""
    lo, hi = max(a, env.lo), min(b, env.hi)
    if not lo <= hi:
        return None
    open_lo = lo == env.low and not env.low_closed  # a domain bound is excluded unless closed; |v| <= max_abs is not
    open_hi = hi == env.high and not env.high_closed
    if lo == hi and (open_lo or open_hi):
        return None
    return st.floats(lo, hi, exclude_min=open_lo, exclude_max=open_hi, allow_nan=False, allow_infinity=False, allow_subnormal=False)


def values(env: Envelope) -> st.SearchStrategy[float]:
    """One element: a mixture of the regimes above; shrinks to the first (simple numbers)."""
    parts = []
    simple = [v for v in SIMPLE if env.contains(v)]
    if simple:
        parts.append(st.sampled_from(simple))
    parts.append(_interval(env, env.lo, env.hi))
    for sign in (1.0, -1.0):
        a, b = sorted((sign * NEAR_ZERO[0], sign * NEAR_ZERO[1]))
        parts.append(_interval(env, a, b))
        a, b = sorted((sign * SATURATED, sign * env.max_abs))
        parts.append(_interval(env, a, b))
    specials = [v for v in (env.max_abs, -env.max_abs) if env.contains(v)]
    for k in env.kinks:
        scale = max(1.0, abs(k))
        specials += [v for v in (k, *(k + s * d * scale for d in KINK_OFFSETS for s in (1, -1))) if env.contains(v)]
    for bound, inward in ((env.low, 1.0), (env.high, -1.0)):
        if math.isfinite(bound) and abs(bound) <= env.max_abs:
            specials += [v for v in (bound, *(bound + inward * d * max(1.0, abs(bound)) for d in EDGE_OFFSETS)) if env.contains(v)]
    if specials:
        parts.append(st.sampled_from(sorted(set(specials), key=abs)))
    return st.one_of([p for p in parts if p is not None])


def arrays(shape, env: Envelope) -> st.SearchStrategy[np.ndarray]:
    return hnp.arrays(np.float64, shape, elements=values(env))


def shapes(max_batch: int = MAX_BATCH, max_width: int = MAX_WIDTH) -> st.SearchStrategy[tuple[int, ...]]:
    """(batch, width) first, so shrinking ends there; then 1-D and 3-D for ops that take any shape."""
    batch, width = st.integers(1, max_batch), st.integers(1, max_width)
    return st.one_of(st.tuples(batch, width), st.tuples(width), st.tuples(st.integers(1, 3), batch, width))


def upstream(shape) -> st.SearchStrategy[np.ndarray]:
    """grad_out: all ones after shrinking; otherwise random, mixed signs."""
    elements = st.one_of(st.sampled_from((1.0, -1.0, 2.0, 0.5)), st.floats(-4.0, 4.0, allow_nan=False, allow_subnormal=False))
    return hnp.arrays(np.float64, shape, elements=elements)


def targets(kind: str, shape: tuple[int, int]) -> st.SearchStrategy[np.ndarray]:
    """Valid targets of one kind, shape (batch, classes)."""
    b, c = shape
    if kind == "regression":
        return hnp.arrays(np.float64, shape, elements=st.one_of(st.sampled_from((0.0, 1.0, -1.0)), st.floats(-3.0, 3.0, allow_subnormal=False)))
    if kind == "binary":
        return hnp.arrays(np.float64, shape, elements=st.sampled_from((0.0, 1.0)))
    if kind == "onehot":
        return st.lists(st.integers(0, c - 1), min_size=b, max_size=b).map(lambda idx: np.eye(c)[idx])
    weights = hnp.arrays(np.float64, shape, elements=st.one_of(st.just(1.0), st.floats(0.0, 1.0, allow_subnormal=False)))
    return weights.map(_normalise_rows)


def _normalise_rows(w: np.ndarray) -> np.ndarray:
    w = w + (w.sum(axis=-1, keepdims=True) == 0)  # an all-zero row becomes uniform
    return w / w.sum(axis=-1, keepdims=True)


@dataclass
class Case:
    """One drawn example: the differentiable inputs (in call order) and the constant ones."""

    inputs: dict[str, np.ndarray]
    const: dict[str, np.ndarray] = field(default_factory=dict)
    hyper: dict = field(default_factory=dict)  # a function pair's hyperparameters (conv_param, ...), by argument name

    def copy(self) -> "Case":
        return Case({k: v.copy() for k, v in self.inputs.items()}, {k: v.copy() for k, v in self.const.items()}, copy.deepcopy(self.hyper))


@st.composite
def activation_cases(draw, env: Envelope, names=("z",)):
    """Inputs of an activation (or of a Function's arguments): one shape shared by all."""
    shape = draw(shapes(), label="shape")
    return Case({n: draw(arrays(shape, env), label=n) for n in names})


@st.composite
def loss_cases(draw, env: Envelope, target_kind: str):
    shape = draw(st.tuples(st.integers(1, MAX_BATCH), st.integers(1, MAX_WIDTH)), label="shape")
    return Case({"pred": draw(arrays(shape, env), label="pred")}, {"target": draw(targets(target_kind, shape), label="target")})


def bound_layer(target: str, input_shape: tuple[int, ...], params: dict[str, Any], how: str = "input_shape") -> None:
    """Refuse a layer whose largest drawn case (layer_cases: batch up to max(MAX_BATCH, the declared one)) has more
    elements to difference than gradlab.memory's audit work bound, before anything of that size is allocated."""
    from .. import memory

    x = (max(MAX_BATCH, int(input_shape[0])),) + tuple(int(d) for d in input_shape[1:])
    sizes = {name: tuple(int(d) for d in (v if isinstance(v, tuple) else np.shape(v))) for name, v in params.items()}  # arrays or shapes
    total = math.prod(x) + sum(math.prod(s) for s in sizes.values())
    shown = [f"x {x}"] + [f"{name} {s}" for name, s in list(sizes.items())[:3]] + (["..."] if len(sizes) > 3 else [])
    memory.check_audit_elements(target, total, " and ".join(shown),
                                f"declare a smaller {how} (batch first, e.g. (4, 3)); a wrong backward shows on small sizes as well")


@st.composite
def layer_cases(draw, env: Envelope, input_shape: tuple[int, ...], params: dict[str, np.ndarray], param_envs: dict[str, Envelope]):
    """x with a drawn batch size and the declared other dimensions; parameters as declared or drawn."""
    batch = draw(st.integers(1, max(MAX_BATCH, input_shape[0])), label="batch")
    inputs = {"x": draw(arrays((batch,) + tuple(input_shape[1:]), env), label="x")}
    for name, value in params.items():
        drawn = st.one_of(st.just(value.copy()), arrays(value.shape, param_envs[name]))
        inputs[param_key(name)] = draw(drawn, label=param_key(name))
    return Case(inputs)


def param_key(name: str) -> str:
    """How a layer parameter is named among the inputs (never clashes with x)."""
    return f"params[{name!r}]"


def tie_free(shape) -> st.SearchStrategy[np.ndarray]:
    """Distinct values (a shuffled ramp, 0.25 apart): a max-pool input with no ties, whose argmax
    no finite-difference step can change; shrinks to the plain ramp."""
    n = int(np.prod(shape))
    return st.permutations(range(n)).map(lambda p: (np.asarray(p, dtype=np.float64) - n / 2).reshape(shape) * 0.25)
