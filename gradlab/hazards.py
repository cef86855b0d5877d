"""Hazards of a spec around right values: warnings `gradlab check` prints beside its layers, never failures.

A hazard is a spec that checks clean but very likely does not compute what its author meant. The
gradients of such a network still agree (every engine differentiates the same function), so the exit
code is what the comparisons decide; the warning only says what was seen, where, and the usual fix.

dense-on-spatial-axis: a dense layer acts on the last axis of its input. After a conv or a pooling
layer that axis is a spatial one, of (C, *spatial): the dense layer maps each row of the feature map
on its own (and the loss then folds the rows into samples), where a CNN's classifier head meant to see
the whole map, behind a `flatten` (or `global_avgpool`). Spec shapes alone decide it (Spec.layer_table).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

# Layers whose output is (C, *spatial): after them the last axis is a spatial one.
SPATIAL_OPS = ("conv1d", "conv2d", "maxpool1d", "maxpool2d", "avgpool1d", "avgpool2d")
# Layers after which the last axis is a feature axis again (or unknown: a user's layer).
FEATURE_OPS = ("flatten", "global_avgpool", "dense", "custom", "attention")
KINDS = ("dense-on-spatial-axis",)


@dataclass(frozen=True)
class SpecWarning:
    kind: str  # one of KINDS
    path: str  # the spec key path of the layer it is about: network.layers[4]
    message: str

    def to_dict(self) -> dict:
        return {**asdict(self), "severity": "warning"}

    def text(self) -> str:
        return f"warning ({self.kind}): {self.path}: {self.message}"


def _shape(shape) -> str:
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"


def _walk(layers, prefix: str, shapes: dict, source, out: list):
    """Walk `layers` in order; `source` is (path, type) of the layer that made the last axis spatial, or None."""
    for i, layer in enumerate(layers):
        path = f"{prefix}[{i}]"
        kind = getattr(layer, "type", "")
        if kind == "residual":  # the block's output is its layers' output (plus a projection of the same layout)
            source = _walk(layer.layers, f"{path}.layers", shapes, source, out)
            continue
        row = shapes.get(path)
        if kind == "dense" and source is not None and row is not None:
            src_path, src_type = source
            shape = tuple(row.in_shape)
            rows = 1
            for n in shape[:-1]:
                rows *= int(n)
            out.append(SpecWarning("dense-on-spatial-axis", path, (
                f"dense acts on the last axis of its input {_shape(shape)}, a spatial axis of the {src_type} output at {src_path} "
                f"(channels first): it maps each of the {rows:,} rows of {shape[-1]} values per sample on its own; "
                "add {type: flatten} before it (or global_avgpool) if it should see the whole feature map")))
        if kind in SPATIAL_OPS and row is not None and len(row.out_shape) >= 2:
            source = (path, kind)
        elif kind in FEATURE_OPS:
            source = None
    return source


def of_spec(spec) -> list[SpecWarning]:
    """The hazards `spec` shows (empty for most specs)."""
    shapes = {r.path: r for r in spec.layer_table()}
    out: list[SpecWarning] = []
    _walk(spec.network.layers, "network.layers", shapes, None, out)
    return out
