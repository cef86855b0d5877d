"""The spec reference page, generated from the pydantic models in gradlab/spec.py and the op registries.

Every key, its type, allowed values, default and meaning come from the models themselves (a field's
`description`, else the comment beside it in the source); the activations, losses and layer types from
the registries. docs/hooks/spec_reference.py puts the result into docs/reference/spec.md at build time,
so the page cannot drift from the code. `python -m gradlab.docs_reference` prints it.
"""

from __future__ import annotations

import inspect
import re
import textwrap
import types
import typing
from typing import Annotated, Any, Literal, Union

import annotated_types
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from . import spec as S
from .ops import ACTIVATIONS, LAYERS, LOSSES

# Meanings of fields whose source carries no comment. Keyed by "Model.field"; tests/test_docs_reference.py
# fails when a key names no field, so a renamed field cannot leave a stale line here.
NOTES: dict[str, str] = {
    "Spec.name": "shown in tables and reports; default: the file name",
    "Spec.description": "free text",
    "Spec.seed": "draws parameters, inputs and targets (the same numbers for every engine)",
    "Spec.dtype": "dtype of the analytic and autograd engines; the numeric engine always runs in float64",
    "Spec.input": "the input batch",
    "Spec.target": "how targets are drawn",
    "Spec.network": "the layers, input side first",
    "Spec.loss": "the loss, on the network's output",
    "Spec.check": "what `gradlab check` runs and how it judges",
    "Spec.stats": "settings and verdict thresholds of `gradlab stats`",
    "InputSpec.dim": "input features: the shorthand for `shape: [dim]`; give `dim` or `shape`",
    "InputSpec.shape": "per-sample input shape: `[C, H, W]` or `[C, L]` for convolutions, `[T, D]` for attention",
    "InputSpec.batch": "rows in the batch",
    "InputSpec.distribution": "N(mean, scale²) or U[mean − scale, mean + scale]",
    "InputSpec.mean": "mean (centre) of the input distribution",
    "TargetSpec.kind": "regression: N(0, scale²); onehot: one class per row; binary: 0/1; probabilities: rows of a Dirichlet",
    "InitSpec.scheme": "weight initialisation; `uniform_fan_in` is U[−1/√n, 1/√n]",
    "InitSpec.bias": "bias initialisation; a number sets every bias to it (e.g. `-3.0`)",
    "DenseSpec.units": "output width",
    "DenseSpec.bias": "`folded`: a constant 1 is appended to the input and the bias lives in W (seed 001)",
    "ActivationSpec.fn": "a registered activation (below) or `custom`; its hyperparameters sit beside it",
    "ActivationSpec.trainable": "make hyperparameters parameters: `true` (all trainable ones) or a list of names",
    "ActivationSpec.impl": "with `fn: custom`: `path/to/file.py:Name` (relative to the spec's folder) or `package.module:Name`",
    "CustomLayerSpec.impl": "`path/to/file.py:Name` (relative to the spec's folder) or `package.module:Name`",
    "ResidualSpec.layers": "the block's layers f",
    "ResidualSpec.projection": "P: `true` or `dense` (dense on the last axis), `conv` (a 1×1 conv); always used when f changes the shape",
    "NetworkSpec.convention": "`out_in`: u = W x + b, W is (out, in) (seeds 003/004); `in_out`: a = Wᵀx + b, W is (in, out) (seeds 000/002)",
    "NetworkSpec.init": "default initialisation of every layer",
    "NetworkSpec.layers": "layers, input side first (types below)",
    "LossSpec.fn": "a registered loss (below) or `custom`",
    "ToleranceSpec.rtol": "added to the error model's bound: rtol · |reference|",
    "ToleranceSpec.atol": "added to the error model's bound",
    "NumericSpec.method": "difference method; `auto`: complex step when every op is complex-safe, else richardson",
    "CheckSpec.engines": "the engines to compare; at least two",
    "CheckSpec.devices": "autograd devices: `cpu`, `cuda`, `cuda:N`; a device not on the machine is reported unchecked (exit 4), not an error",
    "CheckSpec.tolerance": "additions to the error model",
    "CheckSpec.numeric": "the numeric engine's method and step",
    "CheckSpec.mode": "`full`: every element; `fast`: random projections with bisection; `auto`: full up to 250,000 parameters",
    "CheckSpec.memory_limit": "a size (`2 GiB`, `512 MiB`, or a number of GiB), at most 1 PiB: specs whose estimated peak is above it are refused before anything is allocated",
    "ConvOptions.channels": "output channels",
    "ConvOptions.kernel": "kernel size: one number for every spatial axis, or one per axis",
    "ConvOptions.stride": "one number, or one per axis",
    "ConvOptions.padding": "zero padding per side; `same` keeps the spatial size (stride 1)",
    "ConvOptions.dilation": "one number, or one per axis",
    "ConvOptions.groups": "in and out channels split into this many groups",
    "PoolOptions.kernel": "window size: one number, or one per axis",
    "PoolOptions.padding": "at most half the kernel; max-pool pads with −∞, avg-pool counts the padding (torch's defaults)",
    "LayerNormOptions.normalized_shape": "the trailing axes normalised; unset: the last axis",
    "GroupNormOptions.groups": "channel groups; the channels must be a multiple of it",
    "AttentionOptions.heads": "attention heads; D must be a multiple of it",
    "AttentionOptions.causal": "mask out later positions",
}
for _cls in ("BatchNormOptions", "LayerNormOptions", "GroupNormOptions"):
    NOTES[f"{_cls}.eps"] = "added to the variance"
    NOTES[f"{_cls}.affine"] = "learnable `weight` and `bias`"
NOTES["ConvOptions.bias"] = NOTES["AttentionOptions.bias"] = "learnable bias(es)"


def _comments(cls: type) -> dict[str, str]:
    """Field name -> the comment on its line (or the comment lines just above it) in the class's source."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    out: dict[str, str] = {}
    above: list[str] = []
    for line in source.splitlines()[1:]:
        m = re.match(r"^    (\w+)\s*:[^#]*?(?:#\s*(.*))?$", line)
        c = re.match(r"^    #\s*(.*)$", line)
        if c:
            above.append(c.group(1))
            continue
        if m:
            comment = re.sub(r"\s*type:\s*ignore\[[^\]]*\]\s*", "", m.group(2) or "").strip()
            out[m.group(1)] = "; ".join(x for x in [*above, comment] if x)
        above = []
    return out


def _number(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, int) and abs(v) >= 2**20 and (v & (v - 1)) == 0:
        return f"2^{v.bit_length() - 1}"
    return repr(v)


def _bounds(metadata) -> str:
    parts = []
    for m in metadata:
        for attr, sym in (("gt", ">"), ("ge", "≥"), ("lt", "<"), ("le", "≤")):
            v = getattr(m, attr, None)
            if v is not None and not (attr in ("lt", "le") and isinstance(v, int) and 2**20 <= v < 2**60):
                parts.append(f"{sym} {_number(v)}")
        if isinstance(m, annotated_types.MinLen) and m.min_length > 0:
            parts.append(f"at least {m.min_length}")
        if isinstance(m, annotated_types.MaxLen):
            parts.append(f"at most {m.max_length}")
        if getattr(m, "min_length", None) and not isinstance(m, annotated_types.MinLen):
            parts.append(f"at least {m.min_length}")
        if getattr(m, "max_length", None) and not isinstance(m, annotated_types.MaxLen):
            parts.append(f"at most {m.max_length}")
    return ", ".join(parts)


def _is_model(tp: Any) -> bool:
    if typing.get_origin(tp) is Annotated:
        tp = typing.get_args(tp)[0]
    return isinstance(tp, str) or (inspect.isclass(tp) and issubclass(tp, BaseModel))


def type_text(tp: Any, metadata=()) -> str:
    """A field type as a reader writes it in YAML: `integer > 0`, `` `sum`, `mean` ``, `list of ...`."""
    origin = typing.get_origin(tp)
    if origin is Annotated:
        base, *meta = typing.get_args(tp)
        flat = []
        for m in meta:
            flat.extend(getattr(m, "metadata", [m]))
        return type_text(base, flat)
    if origin is Literal:
        return ", ".join(f"`{a}`" if not isinstance(a, bool) else f"`{str(a).lower()}`" for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) > 2 and all(_is_model(a) for a in args):
            return "layer (see Layer types)"
        return " or ".join(type_text(a) for a in args)
    if origin is list:
        (item,) = typing.get_args(tp)
        bounds = _bounds(metadata)
        return f"list of {type_text(item)}" + (f" ({bounds})" if bounds else "")
    if _is_model(tp):
        return "mapping: as `network.init`" if tp is S.InitSpec else "mapping (below)"
    name = {int: "integer", float: "number", bool: "`true`, `false`", str: "string"}.get(tp, None)
    if name is None:
        text = str(tp)
        if "StrictInt" in text:
            name = "integer"
        elif "StrictFloat" in text:
            name = "number"
        elif "StrictBool" in text:
            name = "`true`, `false`"
        elif "LayerSpec" in text or "Discriminator" in text:
            name = "layer (see Layer types)"
        elif tp is Any:
            name = "any"
        else:
            name = text.replace("typing.", "")
    bounds = _bounds(metadata)
    return name + (f" {bounds}" if bounds else "")


def _default(field) -> str:
    if field.default_factory is not None:
        value = field.default_factory()
    elif field.default is PydanticUndefined:
        return "required"
    else:
        value = field.default
    if value is None:
        return "—"
    if isinstance(value, BaseModel):
        return "(defaults below)"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, list):
        return "`[" + ", ".join(map(str, value)) + "]`"
    if isinstance(value, int) and value >= 2**30 and value % 2**30 == 0:
        return f"`{value // 2**30} GiB`"
    return f"`{value}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def model_table(model: type, prefix: str = "", skip=("type",)) -> list[str]:
    """One row per field: key, type / values, default, meaning."""
    rows = ["| key | type / values | default | meaning |", "|---|---|---|---|"]
    comments: dict[str, str] = {}
    for klass in reversed(model.__mro__):
        if inspect.isclass(klass) and issubclass(klass, BaseModel) and klass is not BaseModel:
            comments.update(_comments(klass))
    owner = {name: next((k.__name__ for k in model.__mro__ if name in getattr(k, "__annotations__", {})), model.__name__)
             for name in model.model_fields}
    for name, field in model.model_fields.items():
        if name in skip:
            continue
        meaning = field.description or comments.get(name) or NOTES.get(f"{owner[name]}.{name}") or NOTES.get(f"{model.__name__}.{name}", "")
        tp = type_text(field.annotation, field.metadata)
        rows.append(f"| `{prefix}{name}` | {_cell(tp)} | {_cell(_default(field))} | {_cell(meaning)} |")
    return rows


def _doc(model: type) -> str:
    doc = inspect.getdoc(model) or ""
    if doc.startswith(("Usage docs", "A base class")) or model.__doc__ is None:
        return ""
    return " ".join(doc.split())


SECTIONS = [  # (heading, model, key prefix)
    ("Top level", S.Spec, ""),
    ("`input`", S.InputSpec, "input."),
    ("`target`", S.TargetSpec, "target."),
    ("`network`", S.NetworkSpec, "network."),
    ("`network.init` (and a layer's `init`)", S.InitSpec, "init."),
    ("`loss`", S.LossSpec, "loss."),
    ("`check`", S.CheckSpec, "check."),
    ("`check.tolerance`", S.ToleranceSpec, "check.tolerance."),
    ("`check.numeric`", S.NumericSpec, "check.numeric."),
    ("`stats`", S.StatsSpec, "stats."),
]


def layer_models() -> list[tuple[str, type]]:
    core = [("dense", S.DenseSpec), ("activation", S.ActivationSpec), (S.CUSTOM, S.CustomLayerSpec), (S.RESIDUAL, S.ResidualSpec)]
    return core + list(S.OP_SPECS.items())


def generate() -> str:
    out = [
        "<!-- generated by gradlab/docs_reference.py from gradlab/spec.py and the op registries: edit those, not this -->",
        "",
        "Every key is checked; an unknown key is an error that names the nearest valid one. "
        "Types are YAML's: a number is an integer or a float (never a quoted string or a boolean), "
        "a key marked *required* must be given.",
        "",
    ]
    for heading, model, prefix in SECTIONS:
        out += [f"### {heading}", ""]
        doc = _doc(model)
        if doc and model is not S.Spec:
            out += [doc, ""]
        out += model_table(model, prefix) + [""]
    out += ["### Layer types", "",
            "`network.layers` is a list of mappings, each with a `type`: " + ", ".join(f"`{t}`" for t in S.LAYER_TYPES) + ".", ""]
    for name, model in layer_models():
        op = LAYERS.get(name) if name in S.OP_SPECS else None
        out += [f"#### `type: {name}`", ""]
        doc = op.doc if op is not None else _doc(model)
        if doc:
            out += [" ".join(doc.split()), ""]
        if len([f for f in model.model_fields if f != "type"]) == 0:
            out += ["No options.", ""]
        else:
            out += model_table(model) + [""]
    out += ["### Activations (`fn`)", "",
            "Hyperparameters sit beside `fn` (`{type: activation, fn: leaky_relu, slope: 0.2}`); trainable ones may be listed in `trainable`.", "",
            "| fn | hyperparameters (default) | trainable | definition |", "|---|---|---|---|"]
    for op in ACTIVATIONS:
        hyper = ", ".join(f"`{k}` = {v:g}" for k, v in op.hyper.items()) or "—"
        out.append(f"| `{op.name}` | {hyper} | {', '.join(f'`{t}`' for t in op.trainable) or '—'} | {_cell(op.doc)} |")
    out += ["| `custom` | — | — | a user's activation named by `impl` |", "",
            "### Losses (`loss.fn`)", "",
            "| fn | targets | default reduction | definition |", "|---|---|---|---|"]
    for op in LOSSES:
        fixed = " (fixed)" if op.fixed_reduction else ""
        out.append(f"| `{op.name}` | {', '.join(f'`{t}`' for t in op.targets)} | `{op.default_reduction}`{fixed} | {_cell(op.doc)} |")
    out += ["| `custom` | the op's `target` | `sum` | a user's loss named by `impl` |", ""]
    return "\n".join(out)


def all_fields() -> set[str]:
    """Every key the reference must name (the models' fields)."""
    models = [m for _, m, _ in SECTIONS] + [m for _, m in layer_models()]
    return {name for m in models for name in m.model_fields}


if __name__ == "__main__":
    print(generate())
