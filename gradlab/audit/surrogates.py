"""Declared surrogate gradients: a backward that is meant to differ from the true gradient.

Gradient reversal returns -lambda times the true gradient on purpose; a straight-through
estimator passes grad_out through a forward (round, sign) whose true gradient is 0 almost
everywhere. An op declares what its backward is meant to compute, and the judge checks that
relation instead of plain equality with differences of the forward:

    surrogate = "reverse"                  -lambda x the true gradient; lambda is the op's attribute
                                           (or input) named lambda_ / lambd / lamb / alpha / coeff, else 1
    surrogate = ("scale", k)               k x the true gradient (YAML: {scale: k})
    surrogate = "straight-through"         grad_out itself, whatever the forward's derivative
    surrogate = staticmethod(fn)           fn(true_grad, *inputs) -> the intended gradient, per input;
                                           fn(true_grad, *inputs, grad_out) gets grad_out too (a clipped
                                           straight-through: grad_out * (|x| <= 1))

The report says which relation was checked ("checked against the declared surrogate: reverse (x -1)").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..userops.loading import TargetError

LAMBDA_NAMES = ("lambda_", "lambd", "lamb", "lmbda", "alpha", "coeff", "scale")
STRAIGHT_THROUGH = ("straight-through", "straight_through", "ste")
REVERSE = ("reverse", "reversal", "gradient-reversal")


@dataclass(frozen=True)
class Surrogate:
    kind: str  # scale | straight-through | callable
    factor: float | str = 1.0  # a number, or the name of the input holding lambda (reverse with lambda as an argument)
    fn: Callable | None = None
    label: str = ""
    declared: Any = None  # what was declared, when it can be written back (a word or ("scale", k)): reproduce lines carry it

    def text(self) -> str:
        if self.kind == "scale":
            by = f"-{self.factor} elementwise" if isinstance(self.factor, str) else f"{self.factor:g}"
            return f"{self.label} (x {by})"
        return self.label

    @property
    def needs_numeric(self) -> bool:
        """Straight-through never looks at the true gradient: no differences are taken."""
        return self.kind != "straight-through"

    def intended(self, name: str, true_grad: np.ndarray, error: np.ndarray, inputs: dict[str, np.ndarray],
                 upstream: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """(what the backward should return for input `name`, its error estimate)."""
        if self.kind == "straight-through":
            x = inputs[name]
            if upstream is None or upstream.shape != x.shape:
                raise TargetError(f"surrogate straight-through passes grad_out through unchanged, so the output must have "
                                  f"{name}'s shape {x.shape}, got {None if upstream is None else upstream.shape}")
            return upstream.copy(), np.zeros(x.shape)
        if self.kind == "scale":
            k = -np.asarray(inputs[self.factor], dtype=np.float64) if isinstance(self.factor, str) else self.factor
            return k * true_grad, np.abs(k) * error
        def apply(g: np.ndarray) -> np.ndarray:
            extra = {"grad_out": None if upstream is None else upstream.copy()} if _takes_grad_out(self.fn) else {}
            return np.asarray(self.fn(g.copy(), *(v.copy() for v in inputs.values()), **extra), dtype=np.float64)

        out = apply(true_grad)
        if out.shape != true_grad.shape:
            raise TargetError(f"surrogate {self.label}: returned shape {out.shape} for {name}, expected {true_grad.shape}")
        # the numeric error carried through the map: how far the intended gradient moves when the true one does
        err = np.maximum(np.abs(apply(true_grad + error) - out), np.abs(apply(true_grad - error) - out))
        return out, err


def _takes_grad_out(fn: Callable) -> bool:
    import inspect

    try:
        return "grad_out" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def _lambda(obj: Any, inputs: tuple[str, ...]) -> float | str:
    for name in LAMBDA_NAMES:
        if name in inputs:
            return name
    for name in LAMBDA_NAMES:
        value = getattr(obj, name, None)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return -float(value)
    return -1.0


def parse(declared: Any, obj: Any, where: str, inputs: tuple[str, ...] = ()) -> Surrogate | None:
    """The op's `surrogate` declaration -> a Surrogate (None when it declares none); TargetError when unreadable."""
    if declared is None:
        return None
    if isinstance(declared, str):
        word = declared.strip().lower()
        if word in REVERSE:
            factor = _lambda(obj, inputs)
            return Surrogate("scale", factor, label="reverse", declared=word)
        if word in STRAIGHT_THROUGH:
            return Surrogate("straight-through", label="straight-through (grad_out passed through)", declared=word)
    elif isinstance(declared, dict) and set(declared) == {"scale"}:
        return parse(("scale", declared["scale"]), obj, where, inputs)
    elif isinstance(declared, (tuple, list)) and len(declared) == 2 and declared[0] == "scale":
        k = declared[1]
        if isinstance(k, (int, float)) and not isinstance(k, bool) and np.isfinite(k):
            return Surrogate("scale", float(k), label="scale", declared=("scale", float(k)))
    elif callable(declared):
        fn = getattr(declared, "__func__", declared)
        args = "true_grad, *inputs" + (", grad_out" if _takes_grad_out(fn) else "")
        return Surrogate("callable", fn=fn, label=f"{getattr(fn, '__qualname__', 'callable')}({args})")
    raise TargetError(f"{where}: surrogate: expected 'reverse', 'straight-through', ('scale', k) or a callable "
                      f"fn(true_grad, *inputs), got {declared!r}")
