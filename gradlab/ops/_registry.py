"""The op records and the registries that hold them; imports nothing else of gradlab."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Iterator, Mapping, TypeVar

import numpy as np

Hyper = Mapping[str, Any]


def _resolve(value, hp: Hyper):
    """Op properties may depend on hyperparameters (relu's eps): accept a value or a callable."""
    return value(hp) if callable(value) else value


@dataclass(frozen=True)
class Activation:
    """One activation: forward, hand-written VJP and torch mirror side by side."""

    name: str
    doc: str
    forward: Callable[[Any, Hyper], Any]
    backward: Callable[[Any, Any, Any, Hyper], tuple[Any, dict]]
    torch: Callable[[Any, Hyper], Any]
    hyper: dict[str, float] = field(default_factory=dict)  # defaults of the fixed hyperparameters
    trainable: tuple[str, ...] = ()  # hyperparameters a spec may mark trainable
    kinks: Callable[[Hyper], tuple[float, ...]] | None = None  # points where f is not differentiable
    continuous: bool | Callable[[Hyper], bool] = True
    elementwise: bool = True
    complex_safe: bool = True
    zero_derivative: bool = False  # f' = 0 almost everywhere (step)
    fprime_max: float | Callable[[Hyper], float] | None = None
    saturates: bool = False  # sigmoid-like: f' -> 0 for large |u|
    dead_threshold: Callable[[Hyper], float] | None = None  # relu family: f' = 0 at or below it
    produces_probabilities: bool | Callable[[Hyper], bool] = False
    check: Callable[[Hyper], str | None] | None = None  # what is wrong with these hyperparameters, or None
    # (u, hp) -> the scale a correct implementation's f(u) rounds at besides eps |f|, where f is computed from a
    # value near its asymptote: gelu's u (1 + erf(u / sqrt 2)) / 2 rounds at eps |u| (torch's is 0 below u = -8.3)
    rounds_at: Callable[[Any, Hyper], Any] | None = None

    def kink_points(self, hp: Hyper) -> tuple[float, ...]:
        return tuple(self.kinks(hp)) if self.kinks else ()

    def near_kink(self, z, hp: Hyper, radius) -> Any:
        """Where a complex-step evaluation z (real part: the point, imaginary part: a tangent) moves a unit
        that sits within `radius` of a kink: there the branch the real part picks may not be the one a
        correct backward in another precision picks. Elementwise bool, the shape of z."""
        points = self.kink_points(hp)
        if not points:
            return None
        r, moving = np.real(z), np.imag(z) != 0
        near = np.zeros(np.shape(z), bool)
        for k in points:
            near |= np.abs(r - k) <= radius
        return near & moving

    def is_continuous(self, hp: Hyper) -> bool:
        return bool(_resolve(self.continuous, hp))

    def max_fprime(self, hp: Hyper) -> float | None:
        return _resolve(self.fprime_max, hp)

    def gives_probabilities(self, hp: Hyper) -> bool:
        return bool(_resolve(self.produces_probabilities, hp))

    def __repr__(self) -> str:
        return f"Activation({self.name!r}: {self.doc})"


@dataclass(frozen=True)
class Loss:
    """One loss, summed over the batch and feature axes (the last two), leading axes kept.

    `forward(pred, target)` and `backward(pred, target) -> dL/dpred` use the *sum* over the
    batch; the network applies `reduction: mean` by dividing by the batch size.
    """

    name: str
    doc: str
    forward: Callable[[Any, Any], Any]
    backward: Callable[[Any, Any], Any]
    torch: Callable[[Any, Any], Any]
    targets: tuple[str, ...]  # target kinds that make sense for this loss
    default_reduction: str = "sum"
    fixed_reduction: bool = False  # mse *is* the 1/(2N) average: a `reduction` key contradicting it is an error
    needs_probabilities: bool = False  # input must lie in (0, 1)
    complex_safe: bool = True

    def __repr__(self) -> str:
        return f"Loss({self.name!r}: {self.doc})"


T = TypeVar("T")


class UnknownOpError(LookupError):
    def __init__(self, kind: str, name: str, known: list[str]):
        self.kind, self.name, self.known = kind, name, known
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        super().__init__(f"unknown {kind} {name!r}; expected one of {', '.join(known)}{hint}")


class Registry(Generic[T]):
    """Name -> op record. A missing name fails loudly, listing the known ones."""

    def __init__(self, kind: str):
        self.kind = kind
        self._ops: dict[str, T] = {}

    def register(self, op: T) -> T:
        name = op.name  # type: ignore[attr-defined]
        if name in self._ops:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._ops[name] = op
        return op

    def unregister(self, name: str) -> T:
        return self._ops.pop(name)

    def get(self, name: str) -> T:
        try:
            return self._ops[name]
        except KeyError:
            raise UnknownOpError(self.kind, name, self.names()) from None

    def names(self) -> list[str]:
        return list(self._ops)

    def __contains__(self, name: object) -> bool:
        return name in self._ops

    def __iter__(self) -> Iterator[T]:
        return iter(self._ops.values())

    def __len__(self) -> int:
        return len(self._ops)


# --- layers on N-d inputs -----------------------------------------------------------------------


class ShapeError(ValueError):
    """A layer cannot take its input's shape: the message names what it needs."""


@dataclass(frozen=True)
class ParamInfo:
    """One parameter of a layer: its shape and how it is initialised.

    init: `weight` (the network's init scheme with these fans), `bias` (the init's bias rule),
    `ones` or `zeros` (normalisation scale and shift, as torch).
    """

    shape: tuple[int, ...]
    init: str = "weight"
    fan_in: int = 1
    fan_out: int = 1


@dataclass(frozen=True)
class InnerSite:
    """A value inside a layer that is affine in some of its parameters: site = x_in W^T (+ b), W (out, in) as
    torch.nn.Linear, on the last axis. The numeric engine differences the loss with respect to each unit of the
    site (`contract`) and reaches W and b by that linearity, like a dense layer's.

    contract(b, j, off) -> (f, f_abs): for P perturbations at once, unit j[p] (flattened per sample) of sample
    b[p] moved by off[p] (complex: the complex step), f[p] = <g[b[p]], y> with y the layer's output so moved
    and g the cotangent the layer was given; f_abs[p] = <e[b[p]], |Im y - Im y_0|>, e the cotangent's error
    bound. None: the site *is* the layer's output (its cotangent is g itself).
    """

    name: str
    x_in: Any  # (B, ..., in): what the site's parameters multiply
    weight: str | None  # local parameter names
    bias: str | None
    contract: Callable[..., tuple[Any, Any]] | None = None


@dataclass(frozen=True)
class LayerOp:
    """One layer type (`{type: conv2d, ...}` in a spec): forward, hand-written VJP and torch mirror.

    `options` is a pydantic model of the spec keys beside `type` (validated, defaults filled in);
    the functions receive that model as `o`. Shapes are per sample (the batch axis excluded).

    forward(x, p, o):    x is (N, B, *in_shape), N >= 1 stacked evaluations; each parameter in p
                         is (1 or N, *shape); buffers in p are as drawn, rows of the batch first
                         (B, ...). Returns (N, B, *out_shape). Works on float32/float64, and on
                         complex input when `complex_safe`.
    backward(x, y, g, p, o): plain (B, *in_shape) arrays and plain parameters; returns
                         (dL/dx, {parameter name: dL/dparameter}) with the batch summed.
    torch(x, p, o):      the same function from torch.nn.functional on (B, *in_shape) tensors.
    """

    name: str
    doc: str
    options: Any  # a pydantic model class
    out_shape: Callable[[tuple, Any], tuple]  # raises ShapeError
    forward: Callable[..., Any]
    backward: Callable[..., tuple[Any, dict]]
    torch: Callable[..., Any]
    params: Callable[[tuple, Any], dict[str, ParamInfo]] = lambda in_shape, o: {}
    buffers: Callable[..., dict[str, Any]] | None = None  # (rng, batch, in_shape, o) -> {name: (B, ...) array}
    check_batch: Callable[[int, tuple, Any], None] | None = None  # (batch, in_shape, o): raises ShapeError
    mixes_batch: bool = False  # a sample's output depends on other samples (batch statistics)
    complex_safe: bool = True
    kinks: bool = False  # has points where it is not differentiable (max-pool ties, relu)
    # (x, o, radius) -> bool (N, B, *in_shape): inputs of a complex-step evaluation x (N, B, *in_shape) that sit
    # within `radius` (broadcastable to x) of a kink where the tangent (the imaginary part) decides the branch
    # (max-pool: a window whose top values tie within radius and move differently). None with kinks: every
    # moving input is suspect.
    near_kink: Callable[..., Any] | None = None
    cancels: bool = False  # cancels O(1) terms (normalisation over few values): rounding is not relative to the result
    # (x, g, p, o, eps) -> (bound on its output's rounding, on dL/dx's, {param: bound}) in a dtype of unit
    # roundoff eps, for an op whose rounding hides from perturbations of its inputs (a normalisation)
    rounding: Callable[..., tuple] | None = None
    linear_in: tuple[str, ...] = ()  # parameters the output is affine in (conv weight and bias)
    # of those, parameters whose axis 0 is the output's channel axis (axis 0 per sample) with each output channel
    # affine in its own slice alone (conv weight and bias): the numeric engine moves one element of every
    # channel's slice in a single forward (C_out times fewer forwards on unit vectors)
    channel_params: tuple[str, ...] = ()
    # (x, p, o, g, e) -> [InnerSite]: an op not affine in its parameters whose inner values are (attention's
    # q, k, v and output projections), for x (B, *in_shape) float64, plain parameters, cotangent g = dL/dy
    # (B, *out_shape) with error bound e: the numeric engine reaches those parameters through them
    inner_sites: Callable[..., list] | None = None
    rowwise: Callable[[tuple, Any], bool] | None = None  # acts on the last axis alone, each row (position) on its own
    # (x, y, b, j, v, o, radius) -> (j_out, v_out, near) or None: for base input x and output y (B, *shape), float64,
    # where setting input unit j[p] (flattened per sample) of sample b[p] to v[p] moves one output unit alone, that
    # unit and its value, for all p at once (flatten; a pool whose windows do not overlap); None where more may
    # move. An op with kinks given a radius per p (a watched complex-step evaluation) says in `near` (P,) bool
    # which moves sit within it of a kink, as its near_kink would; None otherwise. The numeric engine then
    # carries a unit perturbed at a site through the op without running its forward on whole rows.
    moved_unit: Callable[..., Any] | None = None
    workspace: Callable[[tuple, Any], int] | None = None  # elements per sample its forward holds beyond its output (attention's T x T scores)
    examples: tuple[tuple[tuple, dict], ...] = ()  # (in_shape, options) the registry-wide tests run

    def __repr__(self) -> str:
        return f"LayerOp({self.name!r}: {self.doc})"
