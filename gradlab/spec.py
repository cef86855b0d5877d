"""YAML spec -> typed, validated `Spec`; every user mistake becomes one `SpecError`.

A `SpecError` names the file, the key path (`network.layers[2].fn`), what was expected
and, for typos, the nearest valid key or name. The CLI prints it and exits with 2.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from .errors import SpecError
from .ops import ACTIVATIONS, LAYERS, LOSSES, ShapeError, UnknownOpError
from .ops import dense as dense_op
from .ops.init import SCHEMES

PositiveInt = Annotated[StrictInt, Field(gt=0, lt=2**40)]  # sizes; the memory estimate refuses what will not fit
MAX_VALUE = 1e6  # |mean|, scales, init std and bias: beyond this every activation saturates and float32 overflows


def _bounded(v: float) -> float:
    if abs(v) > MAX_VALUE:
        raise _error("too_large", f"expected a number with |x| <= {MAX_VALUE:g}, got {v!r}")
    return v


# A number: an int or float (never a bool or a quoted string), finite, and of a sane size.
Number = Annotated[StrictFloat, Field(allow_inf_nan=False), AfterValidator(_bounded)]
PositiveNumber = Annotated[StrictFloat, Field(gt=0, allow_inf_nan=False), AfterValidator(_bounded)]
Tolerance = Annotated[StrictFloat, Field(ge=0, allow_inf_nan=False)]
DTYPES = ("float64", "float32")
ENGINES = ("analytic", "numeric", "autograd")
NUMERIC_METHODS = ("auto", "central", "richardson", "complex_step")
# Usable relative steps: real differences lose everything to rounding below ~1e-10 and to truncation above 0.1;
# the complex step has no subtraction, but h * scale must stay a normal float64.
STEP_RANGE = {"real": (1e-10, 0.1), "complex_step": (1e-200, 1e-3)}
DEFAULT_MEMORY_LIMIT = 2 * 2**30
CUSTOM = "custom"  # `fn: custom` / `type: custom`: a user's op named by `impl`


def _error(kind: str, message: str, **ctx) -> PydanticCustomError:
    """A validation error whose message is already formatted (pydantic templates have no !r)."""
    return PydanticCustomError(kind, "{message}", {"message": message, **ctx})


def _suggest(word: str, options) -> str:
    close = difflib.get_close_matches(str(word), [str(o) for o in options], n=1, cutoff=0.5)
    return f"; did you mean {close[0]!r}?" if close else ""


def _known_op(registry, fn: str) -> str:
    """A registered op's name, or `custom`; anything else is an error naming the nearest."""
    if fn not in registry and fn != CUSTOM:
        raise _error("unknown_op", str(UnknownOpError(registry.kind, fn, registry.names() + [CUSTOM])).strip('"'))
    return fn


class _Model(BaseModel):
    """Frozen, and unknown keys are errors that suggest the nearest valid key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def _extra_keys(cls, data: dict) -> set[str]:
        return set()

    @model_validator(mode="before")
    @classmethod
    def _reject_unknown_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            allowed = set(cls.model_fields) | cls._extra_keys(data)
            for key in data:
                if key not in allowed:
                    hint = _suggest(key, allowed)
                    raise _error("unknown_key", f"unknown key {key!r}; expected one of {', '.join(sorted(allowed))}{hint}", key=str(key))
        return data


MAX_AXES = 4  # (C, D, H, W): beyond this no layer here can take the input


class InputSpec(_Model):
    """`dim: n` is the shorthand for `shape: [n]`; `shape: [C, H, W]` (or [C, L], [T, D]) is per sample."""

    dim: PositiveInt | None = None
    shape: Annotated[list[PositiveInt], Field(min_length=1, max_length=MAX_AXES)] | None = None
    batch: PositiveInt = 1
    distribution: Literal["normal", "uniform"] = "normal"
    scale: PositiveNumber = 1.0  # std of normal, half-width of uniform
    mean: Number = 0.0

    @model_validator(mode="after")
    def _one_shape(self) -> "InputSpec":
        if self.dim is None and self.shape is None:
            _fail("input.dim", "missing: give the per-sample input size as `dim: n`, or `shape: [C, H, W]`")
        if self.dim is not None and self.shape is not None:
            _fail("input.shape", "give `dim: n` or `shape: [...]`, not both (`dim: n` is the shorthand for `shape: [n]`)")
        if self.shape is not None and math.prod(self.shape) >= 2**40:
            raise _error("too_large", f"an input of shape {self.shape} has {math.prod(self.shape):,} elements per sample; keep it below 2^40")
        return self

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return (self.dim,) if self.shape is None else tuple(self.shape)

    @property
    def size(self) -> int:
        """Elements per sample."""
        return math.prod(self.sample_shape)


class TargetSpec(_Model):
    kind: Literal["regression", "onehot", "binary", "probabilities"] = "regression"
    classes: PositiveInt | None = None  # onehot: number of classes (= output units)
    dim: PositiveInt | None = None  # optional check of the output width
    scale: PositiveNumber = 1.0  # regression targets ~ N(0, scale^2)


class InitSpec(_Model):
    scheme: Literal[SCHEMES] = "uniform_fan_in"  # type: ignore[valid-type]
    std: PositiveNumber = 0.1  # for scheme `normal`
    bias: Union[Literal["zeros", "normal", "uniform_fan_in"], Number] = "zeros"


class DenseSpec(_Model):
    type: Literal["dense"]
    units: PositiveInt
    bias: Union[StrictBool, Literal["folded"]] = True
    init: InitSpec | None = None  # overrides network.init for this layer


def _load_impl(kind: str, impl: str, info: ValidationInfo) -> str:
    """Load a user's op (a path relative to the spec's folder) and check its contract; returns it resolved."""
    from .userops.adapters import check
    from .userops.loading import TargetError
    try:
        return check(kind, impl, (info.context or {}).get("base_dir"))
    except TargetError as exc:
        raise _error("bad_impl", str(exc)) from None


def _impl_for_custom_fn(kind: str, impl: str | None, info: ValidationInfo) -> str | None:
    """`impl` goes with `fn: custom`, and only with it."""
    fn = info.data.get("fn")
    if fn is None:
        return impl  # fn itself is invalid: that error is the one to show
    if fn != CUSTOM:
        if impl is not None:
            raise _error("bad_impl", f"impl is only read with fn: custom (this {kind} is fn: {fn})")
        return None
    if impl is None:
        raise _error("bad_impl", f"fn: custom needs impl: 'path/to/file.py:Name' (or 'package.module:Name') naming the {kind}")
    return _load_impl(kind, impl, info)


class ActivationSpec(_Model):
    """`fn` names a registered activation; its hyperparameters (slope, eps, c, beta) sit beside it.
    `fn: custom` with `impl: file.py:Name` uses a user's activation (see gradlab audit)."""

    model_config = ConfigDict(extra="allow", frozen=True)
    type: Literal["activation"]
    fn: str
    trainable: Union[StrictBool, list[str]] = False
    impl: str | None = Field(None, validate_default=True)

    @field_validator("impl")
    @classmethod
    def _impl(cls, impl: str | None, info: ValidationInfo) -> str | None:
        return _impl_for_custom_fn("activation", impl, info)

    @model_validator(mode="before")
    @classmethod
    def _gelu_approximate(cls, data: Any) -> Any:
        """`{fn: gelu, approximate: tanh}` as torch spells it: the registered `gelu_tanh`."""
        if isinstance(data, dict) and "approximate" in data and data.get("fn") in ("gelu", "gelu_tanh"):
            data = dict(data)
            mode = data.pop("approximate")
            if mode not in ("none", "tanh"):
                raise _error("bad_hyper", f"approximate must be 'none' or 'tanh' (as torch's gelu), got {_show(mode)}")
            if data["fn"] == "gelu_tanh" and mode == "none":
                raise _error("bad_hyper", "fn: gelu_tanh is the tanh approximation; approximate: none contradicts it")
            data["fn"] = "gelu_tanh" if mode == "tanh" else "gelu"
        return data

    @classmethod
    def _extra_keys(cls, data: dict) -> set[str]:
        fn = data.get("fn")
        return set(ACTIVATIONS.get(fn).hyper) if isinstance(fn, str) and fn in ACTIVATIONS else set()

    @field_validator("fn")
    @classmethod
    def _known_fn(cls, fn: str) -> str:
        return _known_op(ACTIVATIONS, fn)

    @model_validator(mode="after")
    def _check_hyper(self) -> "ActivationSpec":
        if self.fn == CUSTOM:
            if self.trainable is not False:
                raise _error("bad_trainable", "a custom activation has no trainable hyperparameters; give parameters to a `type: custom` layer")
            return self
        op = ACTIVATIONS.get(self.fn)
        for key, value in (self.model_extra or {}).items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or abs(value) > MAX_VALUE:
                raise _error("bad_hyper", f"{key} must be a finite number with |{key}| <= {MAX_VALUE:g}, got {_show(value)}")
        if op.check is not None:
            problem = op.check(self.hyper())
            if problem:
                raise _error("bad_hyper", f"{self.fn}: {problem}")
        names = self.trainable_names()
        if len(set(names)) < len(names):
            twice = sorted({n for n in names if names.count(n) > 1})
            raise _error("bad_trainable", f"trainable names {', '.join(map(repr, twice))} more than once; list each hyperparameter once")
        for name in names:
            if name not in op.trainable:
                can = ", ".join(op.trainable) or "none"
                raise _error("bad_trainable", f"{self.fn} has no trainable hyperparameter {name!r} (trainable: {can})")
        return self

    def hyper(self) -> dict[str, float]:
        if self.fn == CUSTOM:
            return {}
        op = ACTIVATIONS.get(self.fn)
        return {k: float((self.model_extra or {}).get(k, v)) for k, v in op.hyper.items()}

    def trainable_names(self) -> tuple[str, ...]:
        if self.fn == CUSTOM:
            return ()
        if self.trainable is True:
            return ACTIVATIONS.get(self.fn).trainable
        if self.trainable is False:
            return ()
        return tuple(self.trainable)


class CustomLayerSpec(_Model):
    """A user's layer: `impl` names it (path relative to the spec's folder); parameters `layers.<i>.<name>`."""

    type: Literal["custom"]
    impl: str
    init: InitSpec | None = None  # draw the parameters from the spec's seed instead of keeping the object's values

    @field_validator("impl")
    @classmethod
    def _impl(cls, impl: str, info: ValidationInfo) -> str:
        return _load_impl("layer", impl, info)

    def info(self):
        from .userops.adapters import layer_info

        return layer_info(self.impl)


RESIDUAL = "residual"


def _op_spec(op) -> type:
    """The spec model of a registered layer op: `type` plus the op's own options, unknown keys refused."""
    return type(f"{op.name.title().replace('_', '')}Spec", (_Model, op.options), {
        "__annotations__": {"type": Literal[op.name]},
        "__module__": __name__,
        "__doc__": op.doc,
    })


OP_SPECS = {op.name: _op_spec(op) for op in LAYERS}
LAYER_TYPES = ("dense", "activation", CUSTOM, RESIDUAL, *OP_SPECS)


def _layer_tag(v: Any) -> str | None:
    t = v.get("type") if isinstance(v, dict) else getattr(v, "type", None)
    return t if isinstance(t, str) and t in LAYER_TYPES else None


LayerSpec = Annotated[
    Union[
        Annotated[DenseSpec, Tag("dense")],
        Annotated[ActivationSpec, Tag("activation")],
        Annotated[CustomLayerSpec, Tag(CUSTOM)],
        Annotated["ResidualSpec", Tag(RESIDUAL)],
        *(Annotated[m, Tag(name)] for name, m in OP_SPECS.items()),
    ],
    Discriminator(
        _layer_tag,
        custom_error_type="bad_layer_type",
        custom_error_message="layer `type` must be one of " + ", ".join(map(repr, LAYER_TYPES)),
    ),
]


class ResidualSpec(_Model):
    """y = x + f(x) with f the block's layers; a projection P (dense on the last axis, or 1x1 conv on the
    channel axis) makes it y = P x + f(x): always with `projection: true`, and whenever f changes the shape."""

    type: Literal["residual"]
    layers: list[LayerSpec] = Field(min_length=1)
    projection: Union[StrictBool, Literal["dense", "conv"]] = False


ResidualSpec.model_rebuild()


class NetworkSpec(_Model):
    convention: Literal[dense_op.LAYOUTS] = "out_in"  # type: ignore[valid-type]
    init: InitSpec = InitSpec()
    layers: list[LayerSpec] = Field(min_length=1)


class LossSpec(_Model):
    fn: str
    reduction: Literal["sum", "mean"] | None = None  # default: the loss's own (mse: mean, others: sum)
    impl: str | None = Field(None, validate_default=True)  # with fn: custom, the user's loss

    @field_validator("fn")
    @classmethod
    def _known_fn(cls, fn: str) -> str:
        return _known_op(LOSSES, fn)

    @field_validator("impl")
    @classmethod
    def _impl(cls, impl: str | None, info: ValidationInfo) -> str | None:
        return _impl_for_custom_fn("loss", impl, info)

    def op(self):
        """The loss record: a registered one, or the user's wrapped into one."""
        if self.fn == CUSTOM:
            from .userops.adapters import loss_record

            return loss_record(self.impl)
        return LOSSES.get(self.fn)

    @property
    def effective_reduction(self) -> str:
        return self.reduction or ("sum" if self.fn == CUSTOM else LOSSES.get(self.fn).default_reduction)


class ToleranceSpec(_Model):
    """Overrides of the error model; unset means: derived from dtype and the numeric error estimate."""

    rtol: Tolerance | None = None
    atol: Tolerance | None = None


class NumericSpec(_Model):
    method: Literal[NUMERIC_METHODS] = "auto"  # type: ignore[valid-type]
    step: Annotated[StrictFloat, Field(gt=0, allow_inf_nan=False)] | None = None  # fixed relative step; unset: chosen per element

    @model_validator(mode="after")
    def _usable_step(self) -> "NumericSpec":
        """A step outside these ranges makes the referee's own error larger than any gradient: every bug would pass."""
        if self.step is None:
            return self
        low, high = STEP_RANGE["complex_step" if self.method == "complex_step" else "real"]
        if not low <= self.step <= high:
            which = "complex_step" if self.method == "complex_step" else f"method {self.method}" + (" (which may use real differences)" if self.method == "auto" else "")
            _fail("check.numeric.step", f"a relative step for {which} must lie in [{low:g}, {high:g}], got {self.step!r}; leave it unset to let gradlab choose")
        return self


_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([KMGT]i?B|B)?\s*$", re.IGNORECASE)
_UNITS = {"b": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


MAX_SIZE = 2**50  # 1 PiB: beyond any machine, still an exact integer


def parse_size(value: Any) -> int:
    """'2 GiB', '512MiB', 1.5 (GiB) -> bytes; a positive, finite size."""
    if isinstance(value, bool):
        raise ValueError(f"expected a size such as '2 GiB', got {value!r}")
    if isinstance(value, (int, float)):
        number = float(value) * 2**30 if math.isfinite(value) and abs(value) < 2**60 else math.inf
    else:
        m = _SIZE.match(str(value))
        if not m:
            raise ValueError(f"expected a size such as '2 GiB' or '512 MiB', got {_show(value)}")
        number = float(m.group(1)) * _UNITS[(m.group(2) or "GiB").lower()]
    if not (math.isfinite(number) and 0 < number <= MAX_SIZE):
        raise ValueError(f"expected a positive size up to 1 PiB such as '2 GiB', got {_show(value)}")
    return int(number)


class CheckSpec(_Model):
    engines: list[Literal[ENGINES]] = Field(default_factory=lambda: list(ENGINES), min_length=2)  # type: ignore[valid-type]
    devices: list[str] = Field(default_factory=lambda: ["cpu"], min_length=1)
    tolerance: ToleranceSpec = ToleranceSpec()
    numeric: NumericSpec = NumericSpec()
    mode: Literal["auto", "full", "fast"] = "auto"
    wrt_input: StrictBool = False  # also check dL/dx of the input batch
    memory_limit: Any = DEFAULT_MEMORY_LIMIT
    timeout: Annotated[StrictFloat, Field(gt=0, allow_inf_nan=False)] | None = None  # seconds per spec; unset: no limit

    @field_validator("devices")
    @classmethod
    def _devices(cls, devices: list[str]) -> list[str]:
        for d in devices:
            if not re.fullmatch(r"cpu|cuda(:\d{1,3})?", str(d)):
                raise _error("bad_device", f"unknown device {d!r}; expected 'cpu', 'cuda' or 'cuda:N'")
        return devices

    @field_validator("engines")
    @classmethod
    def _distinct(cls, engines: list[str]) -> list[str]:
        if len(set(engines)) < 2:
            raise _error("too_few_engines", f"need at least two different engines to compare, got {engines}")
        return engines

    @field_validator("memory_limit", mode="before")
    @classmethod
    def _size(cls, v: Any) -> int:
        try:
            return parse_size(v)
        except ValueError as e:
            raise _error("bad_size", str(e)) from None


class StatsSpec(_Model):
    """`gradlab stats`: how many initialisations, the SGD step, and the thresholds behind each verdict."""

    seeds: PositiveInt = 8  # initialisations drawn from seed, seed + 1, ...
    batch: PositiveInt | None = None  # rows per measurement; unset: input.batch (use >= 128 for stable numbers)
    lr: PositiveNumber = 0.01  # SGD step for update_ratio = |lr * dL/dW| / |W|
    vanishing_ratio: PositiveNumber = 0.01  # a row's dW rms / the output row's below this: `vanishing-dW`; else delta_rms / output's: `vanishing-delta`
    exploding_ratio: PositiveNumber = 100.0  # the same ratios above this: `exploding-dW`, else `exploding-delta`
    dead_frac: Number = 0.5  # this share of units dead for the whole batch: `dead`
    saturated_frac: Number = 0.5  # this share of (sample, unit) pairs saturated: `saturated`
    saturation_level: Number = 0.01  # saturated: |f'(z)| below this fraction of max f'

    @field_validator("dead_frac", "saturated_frac", "saturation_level")
    @classmethod
    def _fraction(cls, v: float) -> float:
        if not 0 < v <= 1:
            raise _error("bad_fraction", f"expected a fraction in (0, 1], got {v!r}")
        return v

    @model_validator(mode="after")
    def _ordered(self) -> "StatsSpec":
        if self.vanishing_ratio >= self.exploding_ratio:
            _fail("stats.vanishing_ratio", f"vanishing_ratio ({self.vanishing_ratio:g}) must be below exploding_ratio ({self.exploding_ratio:g})")
        return self


class Spec(_Model):
    name: str | None = None
    description: str | None = None
    seed: Annotated[StrictInt, Field(ge=0, lt=2**63)] = 0
    dtype: Literal[DTYPES] = "float64"  # type: ignore[valid-type]
    input: InputSpec
    target: TargetSpec = TargetSpec()
    network: NetworkSpec
    loss: LossSpec
    check: CheckSpec = CheckSpec()
    stats: StatsSpec = StatsSpec()

    @model_validator(mode="after")
    def _consistent(self) -> "Spec":
        layers = self.network.layers
        table = self.layer_table()
        if not any(row.params for row in table):
            _fail("network.layers", "the network has no parameters; add a `{type: dense, units: N}` layer")
        out = self.output_dim
        loss = self.loss.op()
        t = self.target
        if t.kind not in loss.targets:
            _fail("target.kind", f"loss {loss.name} needs a target of kind {' or '.join(loss.targets)}, got {t.kind!r}")
        if t.kind == "onehot" and t.classes is not None and t.classes != out:
            _fail("target.classes", f"dimension mismatch: {t.classes} classes but the network outputs {out} units; make the last dense layer `units: {t.classes}`")
        if t.dim is not None and t.dim != out:
            _fail("target.dim", f"dimension mismatch: target dim {t.dim} but the network outputs {out} units")
        if loss.fixed_reduction and self.loss.reduction not in (None, loss.default_reduction):
            _fail("loss.reduction", f"{loss.name} is defined with reduction {loss.default_reduction!r} (1/(2N) sum); for a summed loss use fn: sse")
        if loss.needs_probabilities:
            last = layers[-1]
            ok = isinstance(last, ActivationSpec) and _gives_probabilities(last)
            if not ok:
                _fail("loss.fn", f"{loss.name} takes probabilities, but the last layer is not a softmax or sigmoid; end the network with one, or use softmax_cross_entropy on logits")
            if loss.name == "binary_cross_entropy" and last.fn == "softmax" and out == 1:
                # found by `gradlab fuzz`: every engine returned NaN on such specs
                _fail("loss.fn", "a softmax over one unit is identically 1, so binary_cross_entropy's log(1 - p) is -inf; end with a sigmoid for one output")
        if self.loss.fn == CUSTOM:
            from .userops.adapters import check_loss_sums_rows
            from .userops.loading import TargetError

            try:
                check_loss_sums_rows(self.loss.impl, out)
            except TargetError as exc:
                _fail("loss.impl", str(exc))
        return self

    def layer_table(self) -> list["LayerShape"]:
        """Every layer (nested ones included) with its per-sample input and output shapes, inferred once."""
        rows: list[LayerShape] = []
        _walk(self.network.layers, self.input.sample_shape, "network.layers", self.input.batch, rows)
        return rows

    @property
    def output_shape(self) -> tuple[int, ...]:
        rows = [r for r in self.layer_table() if r.depth == 0]
        return rows[-1].out_shape if rows else self.input.sample_shape

    @property
    def output_dim(self) -> int:
        """Units on the output's last axis: what the target and the loss act on."""
        return self.output_shape[-1]


@dataclass(frozen=True)
class LayerShape:
    """One layer of a spec with its inferred per-sample shapes and its own parameter count."""

    path: str  # network.layers[1].layers[0]
    layer: Any
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    params: int  # elements of this layer's own parameters (a residual block's projection; not its layers')
    depth: int = 0  # 0 for top-level layers
    projection: str | None = None  # a residual block's projection: "dense", "conv" or None
    stride: int = 1  # of a conv projection
    workspace: int = 0  # elements per sample its forward holds beyond its output (attention's scores)


def _shape_text(shape) -> str:
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"


def _walk(layers, shape: tuple[int, ...], prefix: str, batch: int, rows: list, depth: int = 0) -> tuple[int, ...]:
    for i, layer in enumerate(layers):
        path = f"{prefix}[{i}]"
        start = len(rows)
        if isinstance(layer, DenseSpec):
            k = shape[-1] + (1 if layer.bias == "folded" else 0)
            out, n = shape[:-1] + (layer.units,), k * layer.units + (layer.units if layer.bias is True else 0)
        elif isinstance(layer, ActivationSpec):
            out, n = shape, len(layer.trainable_names())
        elif isinstance(layer, CustomLayerSpec):
            from .userops.adapters import short

            info = layer.info()
            if info.rowwise and info.n_in != shape[-1]:
                _fail(f"{path}.impl", f"dimension mismatch: {short(layer.impl)} takes {info.n_in} input features, but its input has {shape[-1]}"
                      + (f" on the last axis of {_shape_text(shape)}" if len(shape) > 1 else ""))
            if not info.rowwise and info.in_shape != tuple(shape):
                _fail(f"{path}.impl", f"shape mismatch: {short(layer.impl)} takes per-sample input of shape {_shape_text(info.in_shape)} "
                      f"(its input_shape without the batch), but its input has shape {_shape_text(shape)}")
            out = shape[:-1] + (info.n_out,) if info.rowwise else info.out_shape
            n = sum(v.size for v in info.params.values())
        elif isinstance(layer, ResidualSpec):
            rows.append(None)  # the block's own row goes before its layers'
            inner = _walk(layer.layers, shape, f"{path}.layers", batch, rows, depth + 1)
            kind, stride = _projection(layer, shape, inner, path)
            n = 0
            if kind == "dense":
                n = shape[-1] * inner[-1] + inner[-1]
            elif kind == "conv":
                n = shape[0] * inner[0] + inner[0]
            rows[start] = LayerShape(path, layer, shape, inner, n, depth, kind, stride)
            shape = inner
            continue
        else:
            op = LAYERS.get(layer.type)
            try:
                out = tuple(op.out_shape(tuple(shape), layer))
                if op.check_batch is not None:
                    op.check_batch(batch, tuple(shape), layer)
                n = sum(math.prod(p.shape) for p in op.params(tuple(shape), layer).values())
                work = op.workspace(tuple(shape), layer) if op.workspace else 0
            except ShapeError as exc:
                _fail(path, f"{layer.type} cannot take its input of shape {_shape_text(shape)}: {exc}")
            rows.append(LayerShape(path, layer, shape, out, n, depth, workspace=work))
            shape = out
            continue
        rows.append(LayerShape(path, layer, shape, out, n, depth))
        shape = out
    return shape


def _projection(layer: ResidualSpec, shape: tuple, inner: tuple, path: str) -> tuple[str | None, int]:
    """Which projection a residual block needs (None, "dense" or "conv") and the conv's stride."""
    if inner == shape and layer.projection is False:
        return None, 1
    kind = layer.projection if isinstance(layer.projection, str) else None
    if kind is None:
        kind = "dense" if len(shape) == 1 or inner[:-1] == shape[:-1] else "conv"
    if kind == "dense":
        if inner[:-1] != shape[:-1]:
            _fail(f"{path}.projection", f"a dense projection acts on the last axis, but the block maps {_shape_text(shape)} to {_shape_text(inner)}; "
                  "use projection: conv (1x1 convolution on the channel axis) or keep the other axes")
        return "dense", 1
    if len(shape) not in (2, 3) or len(inner) != len(shape):
        _fail(f"{path}.projection", f"a conv projection needs (C, L) or (C, H, W) input and output, but the block maps {_shape_text(shape)} to {_shape_text(inner)}")
    for s in range(1, max(shape[1:]) + 1):
        if all((n - 1) // s + 1 == m for n, m in zip(shape[1:], inner[1:])):
            return "conv", s
    _fail(f"{path}.projection", f"the block maps {_shape_text(shape)} to {_shape_text(inner)}: no 1x1 convolution with one stride maps the spatial axes "
          f"{list(shape[1:])} onto {list(inner[1:])}; make the block keep them, or shrink each by the same stride")


def _gives_probabilities(layer: ActivationSpec) -> bool:
    if layer.fn == CUSTOM:
        from .userops.adapters import gives_probabilities

        return gives_probabilities(layer.impl)
    return ACTIVATIONS.get(layer.fn).gives_probabilities(layer.hyper())


def _fail(path: str, message: str):
    raise _error("spec_mismatch", message, path=path)


# --- loading ---------------------------------------------------------------------------------


# YAML 1.1 reads `1e-2` (no dot) as a string; specs mean a number. Same float pattern, dot optional.
_FLOAT = re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?(?:[eE][-+]?[0-9]+)?
                    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                    |\.[0-9_]+(?:[eE][-+][0-9]+)?
                    |[-+]?\.(?:inf|Inf|INF)
                    |\.(?:nan|NaN|NAN))$""", re.X)

MAX_SPEC_BYTES = 2**20  # a spec is a few KiB; GRADLAB_MAX_SPEC_SIZE raises the cap (e.g. '8 MiB')
MAX_DEPTH = 64  # nesting of mappings and lists; real specs stay under 6
MAX_NODES = 100_000  # values after alias expansion; a "billion laughs" file is refused, not expanded


class _SpecLoaderError(yaml.YAMLError):
    def __init__(self, where: str, message: str):
        self.where, self.message = where, message
        super().__init__(message)


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader with bounds: duplicate keys, unhashable keys, deep nesting and alias bombs are errors."""

    _depth = 0

    def compose_node(self, parent, index):
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise _SpecLoaderError(f"line {mark.line + 1}, column {mark.column + 1}", f"nested more than {MAX_DEPTH} levels deep; a spec needs a handful")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def get_single_node(self):
        node = super().get_single_node()
        if node is not None:
            _expanded_size(node)
        return node


_UniqueKeyLoader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))


def _expanded_size(root) -> int:
    """How many values the document holds once aliases are expanded (shared nodes counted each time)."""
    sizes: dict[int, int] = {}
    stack = [(root, False)]
    while stack:
        node, done = stack.pop()
        if id(node) in sizes:
            continue
        children = [c for pair in node.value for c in pair] if isinstance(node, yaml.MappingNode) else node.value if isinstance(node, yaml.SequenceNode) else []
        if not done:
            stack.append((node, True))
            stack.extend((c, False) for c in children if id(c) not in sizes)
            continue
        sizes[id(node)] = 1 + sum(sizes.get(id(c), 1) for c in children)
        if sizes[id(node)] > MAX_NODES:
            mark = node.start_mark
            raise _SpecLoaderError(f"line {mark.line + 1}, column {mark.column + 1}", f"expands to more than {MAX_NODES:,} values through aliases (&anchor/*alias); write the spec out")
    return sizes[id(root)]


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False):
    explicit = sum(1 for key_node, _ in node.value if key_node.tag != "tag:yaml.org,2002:merge")
    loader.flatten_mapping(node)  # YAML merge keys (<<: *defaults) go first; a key written beside them wins
    merged = len(node.value) - explicit
    seen: dict = {}
    for k, (key_node, _) in enumerate(node.value):
        key = loader.construct_object(key_node, deep=deep)
        try:
            hash(key)
        except TypeError:
            mark = key_node.start_mark
            raise _SpecLoaderError(f"line {mark.line + 1}, column {mark.column + 1}", f"a key must be a plain name, got a {type(key).__name__}") from None
        if k < merged:
            continue
        if key in seen:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark, f"found duplicate key {_show(key)}", key_node.start_mark
            )
        seen[key] = True
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)

if getattr(yaml, "__with_libyaml__", False):

    class _FastSpecLoader(yaml.CSafeLoader):
        """The same rules on libyaml's parser and composer (~20x faster on a 1 MiB file). libyaml's composer
        recurses in C, so the nesting depth is checked first, on its (flat) event stream."""

    _FastSpecLoader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))
    _FastSpecLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
else:  # pragma: no cover - PyYAML built without libyaml
    _FastSpecLoader = None


def _check_depth(text: str) -> None:
    depth = 0
    for event in yaml.parse(text, Loader=yaml.CSafeLoader):
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                mark = event.start_mark
                raise _SpecLoaderError(f"line {mark.line + 1}, column {mark.column + 1}", f"nested more than {MAX_DEPTH} levels deep; a spec needs a handful")
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1


def _load(text: str) -> Any:
    """Bounded loading: libyaml when PyYAML has it (depth checked on events, alias expansion on the node graph)."""
    if _FastSpecLoader is None:
        return yaml.load(text, Loader=_UniqueKeyLoader)
    _check_depth(text)
    loader = _FastSpecLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded_size(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _clip(text: str, limit: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _show(value: Any, limit: int = 80) -> str:
    """repr(value), cut to a few dozen characters: error messages never echo a whole document."""
    import reprlib

    r = reprlib.Repr()
    r.maxstring, r.maxother, r.maxlist, r.maxdict, r.maxlevel = limit, limit, 6, 6, 3
    text = r.repr(value)
    return text if len(text) <= 2 * limit else text[: 2 * limit] + "..."


# The names pydantic gives the branches of a union and its wrapper schemas in an error's location:
# `stride.constrained-int`, `bias.function-after[...]`, `seed.lax-or-strict[...]` -- never keys the user wrote.
_PYDANTIC_TAG = re.compile(r"^(?:constrained-|function-|tagged-union|lax-or-strict|json-or-python|nullable|chain|definition-ref|"
                           r"is-instance|literal|default|model-fields|(?:bool|float|int|str|none|bytes|decimal|list|dict|tuple|set|any)$)")


def _format_loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in (*LAYER_TYPES, "function-after[_consistent()]"):
            continue  # union tags and validator names are not keys the user wrote
        elif _PYDANTIC_TAG.match(str(part)) or "[" in str(part):
            continue  # union members and constrained types: pydantic names the branch (constrained-int), not a key
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


_TYPE_WORDS = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "a string",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}


def _describe(err: dict) -> tuple[str, str]:
    """One pydantic error -> (key path, message a user can act on)."""
    loc = tuple(err["loc"])
    typ = err["type"]
    ctx = err.get("ctx") or {}
    got = err.get("input")
    if typ == "unknown_key":  # the key as the user wrote it, even one that looks like a pydantic tag
        where = _format_loc(loc)
        return (f"{where}.{ctx['key']}" if where != "(top level)" else str(ctx["key"])), err["msg"]
    if typ == "spec_mismatch":
        return ctx["path"], err["msg"]
    if typ == "missing":
        return _format_loc(loc), "required key is missing"
    if typ == "literal_error":
        expected = ctx.get("expected", "")
        options = re.findall(r"'([^']*)'", expected)
        return _format_loc(loc), f"expected one of {expected}, got {_show(got)}{_suggest(got, options)}"
    if typ == "bad_layer_type":
        hint = _suggest(got.get("type"), LAYER_TYPES) if isinstance(got, dict) else ""
        shown = got.get("type") if isinstance(got, dict) else got
        return _format_loc(loc) + ".type", f"expected one of {', '.join(map(repr, LAYER_TYPES))}, got {_show(shown)}{hint}"
    if typ in _TYPE_WORDS:
        return _format_loc(loc), f"expected {_TYPE_WORDS[typ]}, got {_show(got)}"
    if typ in ("greater_than", "greater_than_equal"):
        return _format_loc(loc), f"expected a number {'>' if typ == 'greater_than' else '>='} {ctx.get('gt', ctx.get('ge'))}, got {_show(got)}"
    if typ in ("less_than", "less_than_equal"):
        return _format_loc(loc), f"expected a number {'<' if typ == 'less_than' else '<='} {ctx.get('lt', ctx.get('le'))}, got {_show(got)}"
    if typ == "finite_number":
        return _format_loc(loc), f"expected a finite number, got {_show(got)}"
    if typ == "too_short":
        return _format_loc(loc), f"expected at least {ctx.get('min_length')} item(s), got {len(got) if hasattr(got, '__len__') else _show(got)}"
    return _format_loc(loc), _clip(err["msg"], 300)


def _from_validation_error(exc: ValidationError, file: str) -> SpecError:
    errors = exc.errors()
    # A union (e.g. `bias: true|false|folded`) reports one error per branch; show the first.
    path, message = _describe(errors[0])
    if errors[0]["type"] in ("bool_type", "bool_parsing", "literal_error") and path.endswith(".bias") and "init" not in path:
        message = f"expected true, false or 'folded', got {errors[0].get('input')!r}"
    elif path.endswith("init.bias") and errors[0]["type"] in ("literal_error", "float_type"):
        message = f"expected 'zeros', 'normal', 'uniform_fan_in' or a number, got {_show(errors[0].get('input'))}"
    more = len({_describe(e)[0] for e in errors}) - 1
    return SpecError(file, path, message, more=more)


def validate(data: Any, file: str = "<spec>", *, base_dir: str | Path | None = None) -> Spec:
    """Validate a spec mapping; custom ops' `impl` paths count from `base_dir` (default: the file's folder, else cwd)."""
    if not isinstance(data, dict):
        raise SpecError(file, "(top level)", f"expected a mapping of keys (name, input, network, loss, ...), got {type(data).__name__}")
    if base_dir is None and not file.startswith("<"):
        base_dir = Path(file).parent
    try:
        spec = Spec.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as exc:
        raise _from_validation_error(exc, file) from None
    from .memory import check_memory

    check_memory(spec, file)
    return spec


def max_spec_bytes() -> int:
    """The size cap for one spec file: 1 MiB, or GRADLAB_MAX_SPEC_SIZE ('8 MiB', or a number of bytes)."""
    import os

    raw = os.environ.get("GRADLAB_MAX_SPEC_SIZE", "").strip()
    if not raw:
        return MAX_SPEC_BYTES
    try:
        return int(raw) if raw.isdigit() else parse_size(raw)
    except ValueError:
        raise SpecError("$GRADLAB_MAX_SPEC_SIZE", "(environment)", f"expected a size such as '8 MiB', got {_show(raw)}") from None


_BOMS = ((b"\xff\xfe\x00\x00", "utf-32-le"), (b"\x00\x00\xfe\xff", "utf-32-be"), (b"\xef\xbb\xbf", "utf-8-sig"),
         (b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be"))


def read_spec_text(path: str | Path) -> str:
    """The text of a spec file: a regular file under the size cap, UTF-8 (or UTF-16/32 with a BOM, as YAML allows).

    FIFOs, devices and sockets are refused before they are opened (`/dev/zero` would never end).
    """
    import os
    import stat

    file, cap = str(path), max_spec_bytes()
    try:
        st = os.stat(file)
    except FileNotFoundError:
        raise SpecError(file, "(file)", "no such file") from None
    except (OSError, ValueError) as exc:
        raise SpecError(file, "(file)", f"cannot read: {exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise SpecError(file, "(file)", "is a directory; name a spec file, or pass the directory to check every spec under it")
    if not stat.S_ISREG(st.st_mode):
        raise SpecError(file, "(file)", "not a regular file (a FIFO, device or socket); gradlab reads spec files only")
    if st.st_size > cap:
        raise SpecError(file, "(file)", f"is {st.st_size / 2**20:.3g} MiB; a spec may be at most {cap / 2**20:.3g} MiB (raise it with GRADLAB_MAX_SPEC_SIZE)")
    try:
        with open(file, "rb") as f:
            raw = f.read(cap + 1)
    except OSError as exc:
        raise SpecError(file, "(file)", f"cannot read: {exc.strerror or exc}") from None
    if len(raw) > cap:
        raise SpecError(file, "(file)", f"is larger than {cap / 2**20:.3g} MiB (raise the cap with GRADLAB_MAX_SPEC_SIZE)")
    encoding = next((enc for bom, enc in _BOMS if raw.startswith(bom)), "utf-8")
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        raise SpecError(file, "(file)", f"not {encoding.upper().replace('-SIG', '')} text (byte {raw[exc.start]:#04x} at offset {exc.start}); save the spec as UTF-8") from None
    return text.lstrip("\ufeff")


def parse_yaml(text: str, file: str) -> Any:
    """YAML text -> Python data through the bounded loader; every problem is a SpecError with line and column."""
    try:
        return _load(text)
    except _SpecLoaderError as exc:
        raise SpecError(file, exc.where, exc.message) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(yaml)"
        problem = getattr(exc, "problem", None) or str(exc)
        if "maximum nesting depth" in problem:  # libyaml's own limit, met before ours on very deep files
            raise SpecError(file, where, f"nested more than {MAX_DEPTH} levels deep; a spec needs a handful") from None
        raise SpecError(file, where, f"not valid YAML: {_clip(problem)}") from None
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:  # e.g. a timestamp 2001-02-30
        raise SpecError(file, "(yaml)", f"not valid YAML: {_clip(str(exc))}") from None


def declared_timeout(data: Any) -> float | None:
    """`check.timeout` as written, read before validation so that importing and probing user code is bounded too."""
    value = data.get("check", {}).get("timeout") if isinstance(data, dict) and isinstance(data.get("check"), dict) else None
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    return float(value) if ok else None


def load_spec(path: str | Path, *, timeout: float | None = None) -> Spec:
    """Read and validate one YAML spec; raises `SpecError` naming file and key path.

    Validation imports and probes user ops (`impl:`); it runs under `timeout` (default: the spec's check.timeout).
    """
    from .usercode import deadline

    file = str(path)
    data = parse_yaml(read_spec_text(path), file)
    if data is None:
        raise SpecError(file, "(top level)", "the file is empty; expected a spec with input, network and loss")
    with deadline(timeout or declared_timeout(data), file):
        spec = validate(data, file)
    if spec.name is None:
        spec = spec.model_copy(update={"name": Path(path).stem})
    return spec
