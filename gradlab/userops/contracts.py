"""The four contracts an audited op can follow, how its kind is recognised, and their checks.

  activation  forward(z) -> ndarray, backward(z, grad_out) -> ndarray (the VJP);
              optional `kinks` (points of non-differentiability, a hint) and `domain`
  loss        forward(pred, target) -> float, backward(pred, target) -> dL/dpred;
              `target` in regression / onehot / probabilities / binary; optional `domain`
  layer       `params` {name: float64 ndarray}, `input_shape` (batch first) or `in_features`,
              forward(x) -> y, backward(x, grad_out) -> (grad_x, {name: grad})
  function    a torch.autograd.Function subclass, applied to float64 tensors
  stateful    forward(x) (or forward_pass, __call__) caching on self, backward(dout) -> dx (or
              backward_pass) with one argument; parameters and their gradients found on self
              (gradlab/audit/stateful.py)

A broken contract is a usage error (exit code 2) that names the target and what is missing;
what the op *computes* is judged later, by the search.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .loading import TargetError, is_torch_function

KINDS = ("activation", "loss", "layer", "function", "stateful")
STATEFUL_FORWARDS = ("forward", "forward_pass", "__call__")
STATEFUL_BACKWARDS = ("backward", "backward_pass")
TARGET_KINDS = ("regression", "onehot", "probabilities", "binary")

# What each kind must provide: (method, its arguments, what it returns), for error messages.
METHODS = {
    "activation": (("forward", ("z",), "ndarray"), ("backward", ("z", "grad_out"), "ndarray, the vector-Jacobian product")),
    "loss": (("forward", ("pred", "target"), "float"), ("backward", ("pred", "target"), "ndarray dL/dpred")),
    "layer": (("forward", ("x",), "ndarray"), ("backward", ("x", "grad_out"), "(grad_x, {name: grad})")),
}


def _signature(kind: str, method: str) -> str:
    for name, args, returns in METHODS[kind]:
        if name == method:
            return f"{name}({', '.join(args)}) -> {returns}"
    return method


def positional_arity(fn) -> tuple[int, int] | None:
    """(required, maximum) positional arguments of a bound callable; None when unknown."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    params = [p for p in sig.parameters.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = sum(p.default is p.empty for p in params)
    if any(p.kind == p.VAR_POSITIONAL for p in sig.parameters.values()):
        return required, 10**6
    return required, len(params)


def _takes(fn, n: int) -> bool:
    arity = positional_arity(fn)
    return arity is None or arity[0] <= n <= arity[1]


def _a(kind: str) -> str:
    return ("an " if kind[0] in "aeiou" else "a ") + kind


def _name(obj: Any) -> str:
    return obj.__name__ if isinstance(obj, type) else type(obj).__name__


def _own(obj: Any, name: str) -> bool:
    """The class itself defines `name` (not object.__call__)."""
    cls = obj if isinstance(obj, type) else type(obj)
    return any(name in vars(k) for k in cls.__mro__ if k is not object) and callable(getattr(obj, name, None))


def stateful_methods(obj: Any) -> tuple[str, str] | None:
    """(forward, backward) method names when `obj` is a stateful layer: its backward takes one argument."""
    fwd = next((m for m in STATEFUL_FORWARDS if _own(obj, m)), None)
    bwd = next((m for m in STATEFUL_BACKWARDS if _own(obj, m)), None)
    if fwd is None or bwd is None:
        return None
    fn = getattr(obj, bwd)
    arity = positional_arity(fn)
    if arity is not None and isinstance(obj, type) and inspect.isfunction(fn):
        arity = (arity[0] - 1, arity[1] - 1)  # self, looked up on the class
    return (fwd, bwd) if arity is not None and arity[0] == 1 else None


def detect_kind(obj: Any, target: str, kind: str | None = None) -> str:
    """--kind, else the object's `kind` attribute, else its shape; ambiguous is an error."""
    if kind is not None:
        if kind not in KINDS:
            raise TargetError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
        return kind
    declared = getattr(obj, "kind", None)
    if isinstance(declared, str):
        if declared not in KINDS:
            raise TargetError(f"{target}: kind = {declared!r} is not one of {', '.join(KINDS)}")
        return declared
    if is_torch_function(obj):
        return "function"
    if stateful_methods(obj) is not None:
        return "stateful"
    fwd, bwd = getattr(obj, "forward", None), getattr(obj, "backward", None)
    if callable(fwd) and callable(bwd) and hasattr(obj, "params"):
        return "layer"
    if callable(fwd) and hasattr(obj, "target") and _takes(fwd, 2):
        return "loss"
    if callable(fwd) and callable(bwd) and _takes(fwd, 1) and _takes(bwd, 2):
        return "activation"
    has = [m for m in ("forward", "backward", "params", "target") if hasattr(obj, m)]
    found = f"it has {', '.join(has)}" if has else "it has neither forward nor backward"
    raise TargetError(
        f"{target}: cannot tell what kind of op {_name(obj)} is ({found}); "
        f"add `kind = 'activation'` (or loss, layer, function, stateful) to the class, or pass --kind"
    )


def _need_method(obj: Any, kind: str, method: str, n_args: int, target: str) -> None:
    fn = getattr(obj, method, None)
    if not callable(fn):
        raise TargetError(f"{target}: {_a(kind)} needs {_signature(kind, method)}; {_name(obj)} has no method {method!r}")
    arity = positional_arity(fn)
    if arity is not None and not arity[0] <= n_args <= arity[1]:
        hint = ("; a backward(dout) with one argument, caching on self, is a stateful layer: pass --kind stateful or leave --kind out"
                if method in STATEFUL_BACKWARDS and stateful_methods(obj) is not None else "")
        raise TargetError(f"{target}: {_name(obj)}.{method} takes {arity[0]} argument(s); {_a(kind)} needs {_signature(kind, method)}{hint}")


def parse_domain(value: Any, where: str) -> tuple[float, float]:
    """`domain = (low, high)`; None or +-inf leave a side open. Returned as floats (inf allowed)."""
    if value is None:
        return (-math.inf, math.inf)
    try:
        low, high = value
        low = -math.inf if low is None else float(low)
        high = math.inf if high is None else float(high)
    except (TypeError, ValueError):
        raise TargetError(f"{where}: domain must be a pair (low, high), got {value!r}") from None
    if not low < high or math.isnan(low) or math.isnan(high):
        raise TargetError(f"{where}: domain must have low < high, got {value!r}")
    return low, high


def parse_kinks(value: Any, where: str) -> tuple[float, ...]:
    if value is None:
        return ()
    if callable(value):
        value = value()
    try:
        kinks = tuple(float(k) for k in np.atleast_1d(np.asarray(value, dtype=float)))
    except (TypeError, ValueError):
        raise TargetError(f"{where}: kinks must be a list of numbers, got {value!r}") from None
    if not all(math.isfinite(k) for k in kinks):
        raise TargetError(f"{where}: kinks must be finite numbers, got {value!r}")
    return kinks


@dataclass(frozen=True)
class LayerShape:
    """A layer's example input shape (batch first) and its parameters' shapes."""

    input_shape: tuple[int, ...]
    params: dict[str, tuple[int, ...]]


def layer_shape(obj: Any, target: str) -> LayerShape:
    """Read `input_shape` / `in_features` and `params`, with errors that say how to fix them."""
    params = getattr(obj, "params", None)
    if not isinstance(params, dict) or not params:
        raise TargetError(f"{target}: a layer needs `params`, a non-empty dict of name -> ndarray; got {type(params).__name__}")
    shapes = {}
    for k, v in params.items():
        if not isinstance(k, str):
            raise TargetError(f"{target}: params keys must be strings, got {k!r}")
        if not isinstance(v, np.ndarray) or v.dtype != np.float64:
            got = f"{type(v).__name__} of {v.dtype}" if isinstance(v, np.ndarray) else type(v).__name__
            raise TargetError(f"{target}: params[{k!r}] must be a float64 ndarray (the audit differentiates in float64), got {got}")
        if obj.params[k] is not v:
            raise TargetError(f"{target}: `params` must return the arrays forward reads, not copies (params[{k!r}] changed identity)")
        shapes[k] = v.shape
    shape = getattr(obj, "input_shape", None)
    if shape is None and getattr(obj, "in_features", None) is not None:
        n = obj.in_features
        if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n <= 0:
            raise TargetError(f"{target}: in_features must be a positive integer, got {n!r}")
        shape = (4, int(n))
    if shape is None:
        raise TargetError(f"{target}: a layer needs `input_shape` (batch first, e.g. (4, 3)) or `in_features = n`")
    try:
        shape = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        raise TargetError(f"{target}: input_shape must be a tuple of positive integers, got {shape!r}") from None
    if len(shape) < 2 or min(shape) <= 0:
        raise TargetError(f"{target}: input_shape must have a batch dimension and at least one more, all > 0, got {shape!r}")
    return LayerShape(shape, shapes)


def function_inputs(fn_cls: Any, target: str) -> tuple[str, ...]:
    """The tensor arguments of a Function's forward: positional ones without defaults, after ctx."""
    import torch

    base = torch.autograd.Function
    for method in ("forward", "backward"):
        if getattr(fn_cls, method, None) is getattr(base, method, None):
            raise TargetError(f"{target}: a torch.autograd.Function needs a static {method}; {fn_cls.__name__} does not define one")
    try:
        params = list(inspect.signature(fn_cls.forward).parameters.values())
    except (TypeError, ValueError):
        return ("x",)
    uses_setup = getattr(fn_cls, "setup_context", None) is not getattr(base, "setup_context", None)
    if not uses_setup:
        params = params[1:]  # ctx
    names = tuple(p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty)
    if not names:
        raise TargetError(f"{target}: {fn_cls.__name__}.forward takes no tensor argument")
    return names


def check(obj: Any, kind: str, target: str) -> None:
    """Raise TargetError when `obj` does not follow the `kind` contract."""
    if kind == "function":
        if not is_torch_function(obj):
            raise TargetError(f"{target}: kind 'function' needs a torch.autograd.Function subclass, got {_name(obj)}")
        function_inputs(obj, target)
        return
    if is_torch_function(obj):
        raise TargetError(f"{target}: {obj.__name__} is a torch.autograd.Function; audit it with --kind function")
    if kind == "stateful":
        if stateful_methods(obj) is None:
            raise TargetError(f"{target}: a stateful layer needs forward(x) (or forward_pass, __call__) and backward(dout) -> dx "
                              f"(or backward_pass) taking one argument; {_name(obj)} has {', '.join(m for m in STATEFUL_FORWARDS + STATEFUL_BACKWARDS if _own(obj, m)) or 'neither'}")
        return
    for method, args, _ in METHODS[kind]:
        _need_method(obj, kind, method, len(args), target)
    if kind == "loss":
        t = getattr(obj, "target", None)
        if t not in TARGET_KINDS:
            raise TargetError(f"{target}: a loss needs `target` = one of {', '.join(TARGET_KINDS)} (what gradlab draws as targets), got {t!r}")
    if kind == "layer":
        layer_shape(obj, target)
    parse_domain(getattr(obj, "domain", None), target)
    parse_kinks(getattr(obj, "kinks", None), target)
