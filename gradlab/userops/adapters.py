"""User ops inside specs: `{type: activation, fn: custom, impl: ...}`, `loss: {fn: custom, impl: ...}`
and `{type: custom, impl: ...}` layers.

A user's activation or loss is wrapped into the registry's own record types, so every engine
treats it like a built-in: the analytic engine calls the user's backward, the numeric engine
its forward, the autograd engine its `torch_forward` (absent: that engine is skipped with a
reason). gradlab's records have stricter shapes than the user-op contracts, and the adapters
bridge them without asking more of the user:
  - an activation acts on each row alone (along the last axis), so stacked inputs
    (P, batch, features) are flattened into rows and the user sees a plain 2-D array;
  - a loss is a sum over the batch's rows (the engines split it per sample, and divide by
    N themselves for `reduction: mean`); a stack of predictions is evaluated slice by slice.
Both properties are checked once when the spec is loaded, with a message saying how to fix
the op; a loss that averages over the batch is refused there, not silently mis-differenced.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..ops import Activation, Loss
from ..usercode import UserCodeError, describe, user_code
from . import contracts, loading
from .loading import TargetError


@dataclass(frozen=True)
class CustomActivation(Activation):
    impl: str = ""  # the resolved TARGET


@dataclass(frozen=True)
class CustomLoss(Loss):
    impl: str = ""


def _sample_shape(obj: Any, impl: str) -> tuple[int, ...]:
    """The per-sample input shape a layer declares: (features,) acts on the last axis of any input, like
    dense; an N-d shape such as (C, H, W) is taken exactly."""
    return tuple(contracts.layer_shape(obj, impl).input_shape[1:])


def _as_target_error(fn):
    """At load time the user's code failing (raise, sys.exit, ...) is a TargetError, shown at the spec's key path;
    so is a property or __getattr__ of the op that raises while gradlab reads it (loading.inspecting)."""
    import functools
    import inspect

    signature = inspect.signature(fn)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        impl = signature.bind(*args, **kwargs).arguments.get("impl", "")
        try:
            with loading.inspecting(short(impl) if impl else "the custom op"):
                return fn(*args, **kwargs)
        except UserCodeError as exc:
            raise TargetError(str(exc)) from None

    return wrapper


def call(where: str, fn, *args):
    """Call the user's `fn`; whatever it raises or exits with becomes a UserCodeError naming `where`."""
    with user_code(where):
        return fn(*args)


def returned_array(where: str, out: Any, *, shape=None, finite_from=None, real_from=None) -> np.ndarray:
    """The user's return value as an array, checked: the shape asked for, real for real input, finite wherever its input was."""
    if out is None or not hasattr(out, "__array__") and not isinstance(out, (list, tuple, float, int, complex)):
        raise UserCodeError(f"{where} returned {'None' if out is None else 'a ' + type(out).__name__}, not an array; expected an ndarray of real numbers")
    try:
        arr = np.asarray(out)
    except Exception as exc:  # noqa: BLE001 -- a ragged list, an __array__ that raises
        raise UserCodeError(f"{where} returned a {type(out).__name__} that is not an array ({describe(exc).removeprefix('raised ')})") from None
    if arr.dtype.kind not in "biufc":
        raise UserCodeError(f"{where} returned an array of {arr.dtype}, not numbers")
    if shape is not None and arr.shape != tuple(shape):
        raise UserCodeError(f"{where} returned shape {arr.shape}, expected {tuple(shape)}")
    if real_from is not None and np.isrealobj(real_from) and np.iscomplexobj(arr):
        raise UserCodeError(f"{where} returned complex values for real input")
    if finite_from is not None and np.all(np.isfinite(finite_from)) and not np.all(np.isfinite(arr)):
        bad = np.unravel_index(int(np.flatnonzero(~np.isfinite(arr))[0]), arr.shape) if arr.ndim else ()
        raise UserCodeError(f"{where} returned {arr[bad]} at {tuple(int(i) for i in bad)} for finite input; it is this op's error")
    return arr


def checked(where: str, fn, *args, **checks) -> np.ndarray:
    """`call` the user's `fn`, then hold what it returned to `returned_array`'s checks."""
    return returned_array(where, call(where, fn, *args), **checks)


def torch_result(where: str, out: Any, shape=None):
    """A torch mirror must give a tensor (NumPy would cut the graph autograd needs) of the forward's shape."""
    import torch

    if not isinstance(out, torch.Tensor):
        raise UserCodeError(f"{where} returned {type(out).__name__}, not a torch.Tensor; build it from torch ops so autograd can differentiate it")
    if shape is not None and tuple(out.shape) != tuple(shape):
        raise UserCodeError(f"{where} returned shape {tuple(out.shape)}, expected {tuple(shape)} (what forward returns)")
    return out


@_as_target_error
def check(kind: str, impl: str, base_dir: str | Path | None = None) -> str:
    """Load `impl` for a spec position (activation, loss, layer) and check its contract; returns it resolved.

    Raises TargetError with a message for the spec's key path.
    """
    obj = loading.instantiate(loading.load_raw(impl, base_dir), impl)
    contracts.check(obj, kind, impl)
    resolved = loading.resolve(impl, base_dir)
    if kind == "layer":
        _out_shape(obj, _sample_shape(obj, impl), impl)
    if kind == "activation":
        _check_rowwise(obj, impl)
    return resolved


def _probe(obj: Any, shape: tuple[int, ...], impl: str) -> np.ndarray:
    _bounded_probe(shape, impl)
    size = int(np.prod(shape))
    x = np.linspace(-1.0, 1.0, 3 * size).reshape((3,) + tuple(shape))
    return checked(f"{short(impl)}: forward of a {(3,) + tuple(shape)} batch", obj.forward, x, finite_from=x)


def _out_shape(obj: Any, shape: tuple[int, ...], impl: str) -> tuple[int, ...]:
    """The per-sample output shape, from a forward of a batch of 3."""
    out = _probe(obj, shape, impl)
    if out.ndim < 2 or out.shape[0] != 3:
        raise TargetError(f"{impl}: forward of a {(3,) + tuple(shape)} batch returned shape {out.shape}; a layer in a spec must return (batch, ...) with the batch first")
    return tuple(out.shape[1:])


def _check_rowwise(obj: Any, impl: str) -> None:
    """An activation in a network must act on each row alone (the engines perturb rows separately)."""
    low, high = contracts.parse_domain(getattr(obj, "domain", None), impl)
    z = np.clip(np.array([[0.3, -1.2, 2.0], [1.5, 0.1, -0.4]]), low + 1e-3 if np.isfinite(low) else -np.inf, high - 1e-3 if np.isfinite(high) else np.inf)
    where = f"{short(impl)}: forward of a (2, 3) batch"
    whole = checked(where, obj.forward, z).astype(float)
    if whole.shape != z.shape:
        raise TargetError(f"{impl}: an activation must keep its input's shape; forward of shape (2, 3) returned {whole.shape}")
    rows = np.concatenate([checked(where, obj.forward, z[i : i + 1], shape=(1, 3)) for i in range(2)]).astype(float)
    if not np.allclose(whole, rows, rtol=1e-9, atol=1e-12, equal_nan=True):
        raise TargetError(f"{impl}: forward mixes the rows of the batch (the batch gives other values than row by row); an activation acts on each row alone -- make it a `type: custom` layer")


@_as_target_error
def check_loss_sums_rows(impl: str, width: int) -> None:
    """A spec's loss is a sum over rows (gradlab divides by N for reduction: mean); refuse averages early."""
    obj = loading.load(impl)
    low, high = contracts.parse_domain(getattr(obj, "domain", None), impl)
    rng = np.random.default_rng(0)
    lo = low + 0.05 * (high - low) if np.isfinite(low) and np.isfinite(high) else (low + 0.1 if np.isfinite(low) else -1.0)
    hi = high - 0.05 * (high - low) if np.isfinite(low) and np.isfinite(high) else (high - 0.1 if np.isfinite(high) else 1.0)
    pred = rng.uniform(lo, hi, size=(3, width))
    target = _target(obj.target, (3, width), rng)
    where = f"{short(impl)}: forward on a (3, {width}) batch"

    def value(p, t):
        out = checked(where, obj.forward, p, t)
        if out.size != 1:
            raise UserCodeError(f"{where} returned shape {out.shape}; a loss returns one number")
        return float(np.real(out.reshape(())))

    whole = value(pred, target)
    rows = sum(value(pred[i : i + 1], target[i : i + 1]) for i in range(3))
    if not np.isclose(whole, rows, rtol=1e-9, atol=1e-12):
        raise TargetError(
            f"{short(impl)}: a loss in a spec must be the sum over the batch's rows (3 rows give {whole:.6g}, their rows summed {rows:.6g}); "
            "drop the 1/N and set `reduction: mean` in the spec's loss"
        )


def _target(kind: str, shape, rng) -> np.ndarray:
    if kind == "regression":
        return rng.normal(size=shape)
    if kind == "binary":
        return rng.integers(0, 2, size=shape).astype(float)
    if kind == "onehot":
        return np.eye(shape[1])[rng.integers(0, shape[1], size=shape[0])]
    return rng.dirichlet(np.ones(shape[1]), size=shape[0])


def _name(impl: str) -> str:
    return loading.split(impl)[1]


def short(impl: str) -> str:
    """`/abs/path/ops.py:Swish` -> `ops.py:Swish`, for messages."""
    source, name = loading.split(impl)
    return f"{Path(source).name if loading.is_file(source) else source}:{name}"


def _rows(where: str, fn, z, *more):
    """Call a row-wise user function on exactly 2-D arrays; leading stack axes become rows. Only the call is the
    user's code: what it returns (a str, None, a wrong shape) is checked before gradlab reshapes or casts it, so a
    bad return is reported as such, not as an exception 'raised' by the op from gradlab's own conversion."""
    z = np.asarray(z)
    rows = z if z.ndim == 2 else z.reshape(-1, z.shape[-1]) if z.ndim > 2 else z.reshape(1, -1)
    more = more if z.ndim == 2 else tuple(np.broadcast_to(m, z.shape).reshape(rows.shape) for m in more)
    out = returned_array(where, call(where, fn, rows, *more), shape=rows.shape).reshape(z.shape)
    return out.astype(z.dtype, copy=False) if np.isrealobj(z) and z.dtype.kind == "f" and np.isrealobj(out) else out


@_as_target_error
def activation_record(impl: str) -> CustomActivation:
    """A user's activation as a registry record (a fresh object per network); every call into it is checked."""
    obj = loading.load(impl)
    kinks = contracts.parse_kinks(getattr(obj, "kinks", None), impl)
    torch_forward = getattr(obj, "torch_forward", None)
    op = short(impl)

    def forward(z, hp):
        return returned_array(f"{op} forward", _rows(f"{op} forward", obj.forward, z), shape=np.shape(z), finite_from=z)

    def backward(z, a, g, hp):
        return returned_array(f"{op} backward", _rows(f"{op} backward", obj.backward, z, g), shape=np.shape(z), real_from=z), {}

    def mirror(z, hp):
        return torch_result(f"{op} torch_forward", call(f"{op} torch_forward", torch_forward, z), shape=tuple(z.shape))

    return CustomActivation(
        name=_name(impl),
        doc=f"custom activation {impl}",
        forward=forward,
        backward=backward,
        torch=mirror if callable(torch_forward) else None,
        kinks=(lambda hp: kinks) if kinks else None,
        continuous=bool(getattr(obj, "continuous", True)),
        elementwise=bool(getattr(obj, "elementwise", False)),
        complex_safe=getattr(obj, "complex_safe", False) is True,
        fprime_max=getattr(obj, "fprime_max", None),
        saturates=bool(getattr(obj, "saturates", False)),
        produces_probabilities=bool(getattr(obj, "produces_probabilities", False)),
        impl=impl,
    )


def _per_slice(where: str, fn, y, t, reduce: bool):
    """Evaluate a 2-D user loss (or its gradient) on each (batch, features) slice of a stack. Only the call is the
    user's code: what it returns is checked (one number, or an array of the slice's shape) before gradlab stacks it."""

    def one(a, b):
        out = returned_array(where, call(where, fn, a, b))
        if reduce and out.size != 1:
            raise UserCodeError(f"{where} returned shape {out.shape}; a loss returns one number")
        if not reduce and out.shape != a.shape:
            raise UserCodeError(f"{where} returned shape {out.shape}, expected {a.shape}")
        return out.reshape(()) if reduce else out

    y = np.asarray(y)
    if y.ndim == 2:
        return one(y, t)
    t = np.broadcast_to(t, y.shape)
    lead = y.shape[:-2]
    flat_y, flat_t = y.reshape((-1,) + y.shape[-2:]), t.reshape((-1,) + y.shape[-2:])
    outs = [one(a, b) for a, b in zip(flat_y, flat_t)]
    if reduce:
        return np.array(outs).reshape(lead)
    return np.stack(outs).reshape(y.shape)


@_as_target_error
def loss_record(impl: str) -> CustomLoss:
    """A user's loss as a registry record; every call into it is checked."""
    obj = loading.load(impl)
    torch_forward = getattr(obj, "torch_forward", None)
    low, high = contracts.parse_domain(getattr(obj, "domain", None), impl)
    op = short(impl)

    def forward(y, t):
        return returned_array(f"{op} forward", _per_slice(f"{op} forward", obj.forward, y, t, True), shape=np.shape(y)[:-2])

    def backward(y, t):
        return returned_array(f"{op} backward", _per_slice(f"{op} backward", obj.backward, y, t, False), shape=np.shape(y), real_from=y)

    def mirror(y, t):
        out = torch_result(f"{op} torch_forward", call(f"{op} torch_forward", torch_forward, y, t))
        if out.numel() != 1:
            raise UserCodeError(f"{op} torch_forward returned shape {tuple(out.shape)}; a loss returns one number")
        return out.reshape(())

    return CustomLoss(
        name=_name(impl),
        doc=f"custom loss {impl}",
        forward=forward,
        backward=backward,
        torch=mirror if callable(torch_forward) else None,
        targets=(obj.target,),
        needs_probabilities=low >= 0.0 and high <= 1.0,
        complex_safe=getattr(obj, "complex_safe", False) is True,
        impl=impl,
    )


@_as_target_error
def loss_target(impl: str) -> str:
    return loading.load(impl).target


@_as_target_error
def gives_probabilities(impl: str) -> bool:
    return bool(getattr(loading.load(impl), "produces_probabilities", False))


@dataclass(frozen=True)
class LayerInfo:
    obj: Any
    in_shape: tuple[int, ...]  # per sample; one axis: the layer acts on the last axis of any input
    out_shape: tuple[int, ...]
    params: dict[str, np.ndarray]

    @property
    def n_in(self) -> int:
        return self.in_shape[-1]

    @property
    def n_out(self) -> int:
        return self.out_shape[-1]

    @property
    def rowwise(self) -> bool:
        return len(self.in_shape) == 1 and len(self.out_shape) == 1


@_as_target_error
def layer_info(impl: str) -> LayerInfo:
    """A fresh layer object, its per-sample shapes and its initial parameters (copies)."""
    obj = loading.load(impl)
    shape = _sample_shape(obj, impl)
    return LayerInfo(obj, shape, _out_shape(obj, shape, impl), {k: v.copy() for k, v in obj.params.items()})


PROBE_COPIES = 4  # the probe batch of 3 samples, its float64 input and the forward's output and temporaries


def _bounded_probe(shape: tuple[int, ...], impl: str) -> None:
    """The layer's declared per-sample input must fit before gradlab probes its forward with a batch of 3 of them;
    what the spec's network then costs is check.memory_limit's business (gradlab.memory)."""
    import math

    from .. import memory

    n = math.prod(shape)
    need = 3 * PROBE_COPIES * memory.F64 * n
    if need > memory.DEFAULT_LIMIT:
        raise TargetError(f"{short(impl)}: declares {n:,} input elements per sample (input_shape / in_features {shape}); probing its forward "
                          f"with a batch of 3 needs ~{memory._gib(need)}, limit {memory._gib(memory.DEFAULT_LIMIT)}; declare a smaller input_shape")
