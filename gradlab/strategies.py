"""Hypothesis strategies for random valid specs, drawn from the op registries.

`specs()` draws the mapping a YAML spec holds: depth, widths, activations (with their
hyperparameters, sometimes trainable), losses with the targets and final layers they need,
both weight conventions, every bias mode and init scheme, float64 and float32, sum and mean
reductions, the numeric methods, and sometimes the input gradient. Everything is small, so
one spec runs through the three engines in milliseconds; shrinking ends at one dense layer
with one unit. New ops are drawn the moment they are registered.

`specs(architectures=...)` also draws N-d networks (issue 11), one family per draw (the N-d
ones also ask for `method: complex_step` by name where every op is complex-safe):

- `mlp`: the dense-only networks above (the default, and what shrinking ends at);
- `cnn`: small CNNs on (C, L) or (C, H, W) input: conv1d/conv2d with random kernel, stride,
  padding (numbers, per-axis lists, "same"), dilation, groups and bias; max/avg pools (overlapping
  windows, padding); batchnorm, groupnorm, layernorm; activations; dropout; then flatten or
  global_avgpool (or neither: the loss folds positions into rows) and a dense head;
- `residual`: residual MLPs on (n,) or (T, D), and residual CNN blocks (strided, channel-changing),
  with every valid `projection` (false, true, dense, conv), now and then one block nested in another;
- `transformer`: pre-norm stacks on (T, D): layernorm, attention (heads dividing D, causal or not,
  with or without bias), dense/gelu MLP blocks, dropout, a dense head per position or after flatten.

Shapes are tracked while drawing with the ops' own `out_shape` and `params`, so every drawn spec
validates (no rejection sampling); sizes stay tiny (< MAX_PARAMS parameters, < MAX_VALUES values
per sample after any layer) and batch >= 2 wherever batchnorm is drawn.
"""

from __future__ import annotations

import math

from hypothesis import strategies as st

from .ops import ACTIVATIONS, LAYERS, LOSSES, ShapeError
from .ops.init import SCHEMES

MAX_DEPTH, MAX_WIDTH, MAX_BATCH = 3, 5, 5
ARCHITECTURES = ("mlp", "cnn", "residual", "transformer")
ND_ARCHITECTURES = ARCHITECTURES[1:]
MAX_PARAMS = 1200  # the numeric engine differentiates every parameter: keep each N-d spec well under a second
MAX_VALUES = 160  # values per sample after any layer of an N-d network
ND_MAX_BATCH = 4


def _number(lo: float, hi: float):
    """A short decimal (readable in a written-out YAML file)."""
    return st.floats(lo, hi, allow_nan=False, allow_subnormal=False).map(lambda v: round(v, 3))


@st.composite
def activation(draw, *, probabilities: bool = False) -> dict:
    """One activation layer; with `probabilities`, one whose outputs lie in (0, 1)."""
    names = [op.name for op in ACTIVATIONS if not probabilities or op.gives_probabilities(op.hyper)]
    op = ACTIVATIONS.get(draw(st.sampled_from(names)))
    layer: dict = {"type": "activation", "fn": op.name}
    if not probabilities:  # keep the defaults where the hyperparameters decide the output range
        for name, default in op.hyper.items():
            layer[name] = draw(st.one_of(st.just(default), _number(-2.0, 2.0)))
        check = getattr(op, "check", None)
        if check is not None and check({**op.hyper, **{k: float(layer[k]) for k in op.hyper}}):
            layer.update(op.hyper)  # hyperparameters the op refuses together (hardtanh min_val >= max_val): its defaults
        if op.trainable and draw(st.booleans()):
            layer["trainable"] = True
    return layer


def init() -> st.SearchStrategy[dict]:
    return st.fixed_dictionaries({"scheme": st.sampled_from(SCHEMES)}, optional={
        "bias": st.one_of(st.sampled_from(["zeros", "normal", "uniform_fan_in"]), _number(-1.0, 1.0)),
    })


# --- N-d layers, each valid for the shape it is drawn for ------------------------------------------


def _options(layer: dict):
    """A layer op's options model for a drawn layer mapping."""
    return LAYERS.get(layer["type"]).options.model_validate({k: v for k, v in layer.items() if k != "type"})


def _projections(shape: tuple, inner: tuple) -> list:
    """The `projection` values a residual block mapping `shape` to `inner` validates with (as gradlab.spec)."""
    dense_ok = inner[:-1] == shape[:-1]
    conv_ok = len(shape) in (2, 3) and len(inner) == len(shape) and any(
        all((n - 1) // s + 1 == m for n, m in zip(shape[1:], inner[1:])) for s in range(1, max(shape[1:]) + 1))
    auto_ok = dense_ok if len(shape) == 1 or dense_ok else conv_ok
    return ([False] if inner == shape else []) + ([True] if auto_ok else []) + (["dense"] if dense_ok else []) + (["conv"] if conv_ok else [])


def _after(layer: dict, shape: tuple) -> tuple[tuple, int]:
    """(output shape, parameter count) of a drawn layer, from the ops' own out_shape and params."""
    kind = layer["type"]
    if kind == "dense":
        bias = layer.get("bias", True)
        k = shape[-1] + (bias == "folded")
        return shape[:-1] + (layer["units"],), layer["units"] * (k + (bias is True))
    if kind == "activation":
        trainable = layer.get("trainable", False)
        return shape, len(ACTIVATIONS.get(layer["fn"]).trainable) if trainable is True else 0
    if kind == "residual":
        inner, n = shape, 0
        for sub in layer["layers"]:
            inner, m = _after(sub, inner)
            n += m
        projection = layer.get("projection", False)
        if inner != shape or projection is not False:
            if projection is True:
                projection = "dense" if len(shape) == 1 or inner[:-1] == shape[:-1] else "conv"
            n += shape[-1] * inner[-1] + inner[-1] if projection == "dense" else shape[0] * inner[0] + inner[0]
        return inner, n
    op, o = LAYERS.get(kind), _options(layer)
    return tuple(op.out_shape(tuple(shape), o)), sum(math.prod(p.shape) for p in op.params(tuple(shape), o).values())


class _Net:
    """The layers drawn so far, the running per-sample shape and the parameter count."""

    def __init__(self, shape: tuple, params: int = 0):
        self.shape, self.layers, self.params, self.batchnorm = tuple(shape), [], params, False

    def add(self, layer: dict | None) -> bool:
        """Append `layer` if it keeps the network tiny; a layer that would not is left out (as is one its op
        refuses for this shape: the draws above are valid by construction, this keeps a new op rule from
        turning into invalid specs)."""
        if layer is None:
            return False
        try:
            out, n = _after(layer, self.shape)
        except ShapeError:
            return False
        if self.params + n > MAX_PARAMS or math.prod(out) > MAX_VALUES:
            return False
        self.layers.append(layer)
        self.shape, self.params = out, self.params + n
        self.batchnorm |= _has_batchnorm(layer)
        return True


def _has_batchnorm(layer: dict) -> bool:
    return any(sub["type"] == "batchnorm" for sub in _all_layers([layer]))


def _divisors(n: int, most: int = 4) -> list[int]:
    return [d for d in range(1, min(n, most) + 1) if n % d == 0]


def _axes(draw, values: list[int]):
    """One value per spatial axis: a number when they agree (and now and then still a list)."""
    if len(set(values)) == 1 and draw(st.integers(0, 3)):
        return values[0]
    return list(values)


@st.composite
def conv(draw, shape: tuple, *, keep_spatial: bool = False, stride: int | None = None) -> dict:
    """conv1d/conv2d on (C, *spatial): groups dividing both channel counts, kernel up to 3, dilation up to 2,
    stride up to 2, padding a number, per-axis list or "same". With `keep_spatial` (residual blocks) the
    padding is symmetric and "same"-like, so the spatial sizes become (n - 1) // stride + 1."""
    nd, c_in, spatial = len(shape) - 1, shape[0], shape[1:]
    groups = draw(st.sampled_from(_divisors(c_in)), label="groups")
    layer: dict = {"type": f"conv{nd}d", "channels": groups * draw(st.integers(1, max(1, 4 // groups)))}
    same = not draw(st.integers(0, 2)) if stride in (None, 1) else False
    kernel, dilation, strides, padding = [], [], [], []
    for n in spatial:
        if keep_spatial and not same:  # odd extent, padded (extent - 1) / 2 each side
            k = draw(st.sampled_from([1, 3]))
            d = draw(st.integers(1, 2)) if k > 1 else 1
            e = d * (k - 1) + 1
            p, s = (e - 1) // 2, stride or 1
        else:
            k = draw(st.integers(1, 3))
            d = draw(st.integers(1, 2)) if k > 1 else 1
            e = d * (k - 1) + 1
            # padding: enough for the (dilated) kernel to fit, at most half of it (or 1 for a 1x1 kernel)
            lo = max(0, -((n - e) // 2))
            p = draw(st.integers(lo, max(lo, e // 2, 1)))
            s = 1 if same else stride or draw(st.integers(1, 2))
        kernel.append(k)
        dilation.append(d)
        strides.append(s)
        padding.append(p)
    layer["kernel"] = _axes(draw, kernel)
    if any(s != 1 for s in strides) or draw(st.booleans()):
        layer["stride"] = _axes(draw, strides)
    if same:
        layer["padding"] = "same"
    elif any(padding) or draw(st.booleans()):
        layer["padding"] = _axes(draw, padding)
    if any(d != 1 for d in dilation):
        layer["dilation"] = _axes(draw, dilation)
    if groups > 1:
        layer["groups"] = groups
    if not draw(st.integers(0, 3)):
        layer["bias"] = False
    return layer


@st.composite
def pool(draw, shape: tuple) -> dict:
    """max/avg pool on (C, *spatial): kernel up to 3, stride from 1 to 3 or the kernel's (so overlapping
    windows, e.g. kernel 3 stride 2), padding up to half the kernel and enough for it to fit."""
    nd = len(shape) - 1
    layer: dict = {"type": f"{draw(st.sampled_from(['max', 'avg']))}pool{nd}d"}
    if draw(st.integers(0, 3)) == 0:  # the classic overlapping pool
        kernel, strides = [3] * nd, [2] * nd
    else:
        kernel = [draw(st.integers(1, 3)) for _ in range(nd)]
        strides = None if draw(st.booleans()) else [draw(st.integers(1, 3)) for _ in range(nd)]
    padding = [draw(st.integers(max(0, -((n - k) // 2)), k // 2)) for n, k in zip(shape[1:], kernel)]
    layer["kernel"] = _axes(draw, kernel)
    if strides is not None:
        layer["stride"] = _axes(draw, strides)
    if any(padding):
        layer["padding"] = _axes(draw, padding)
    return layer


@st.composite
def norm(draw, shape: tuple, *, kinds=("batchnorm", "layernorm", "groupnorm")) -> dict | None:
    """batchnorm, layernorm (over the last axis or any trailing axes) or groupnorm (groups dividing C), each
    over more than one value (a norm of one value is its bias: refused at load); None where none of `kinds` fits."""
    over = {n: math.prod(shape[len(shape) - n:]) for n in range(1, len(shape) + 1)}  # layernorm: trailing axes -> values
    groups = [g for g in _divisors(shape[0]) if shape[0] // g * math.prod(shape[1:]) > 1]
    fits = {"batchnorm": True, "layernorm": max(over.values()) > 1, "groupnorm": bool(groups)}
    kinds = [k for k in kinds if fits[k]]
    if not kinds:
        return None
    kind = draw(st.sampled_from(kinds))
    layer: dict = {"type": kind}
    if kind == "layernorm":
        n = draw(st.sampled_from([0] + [n for n, values in over.items() if values > 1]))
        if n == 0 and over[1] == 1:  # the default (the last axis) holds one value here
            n = min(n for n, values in over.items() if values > 1)
        if n:
            trailing = list(shape[len(shape) - n:])
            layer["normalized_shape"] = trailing[0] if n == 1 and draw(st.booleans()) else trailing
    elif kind == "groupnorm":
        layer["groups"] = draw(st.sampled_from(groups))
    if not draw(st.integers(0, 3)):
        layer["affine"] = False
    if not draw(st.integers(0, 3)):
        layer["eps"] = draw(st.sampled_from([1e-3, 0.1]))
    return layer


def dropout() -> st.SearchStrategy[dict]:
    return st.builds(lambda p: {"type": "dropout", "p": p}, st.sampled_from([0.5, 0.0, 0.1, 0.25, 0.9]))


def _dense(draw, lo: int = 1, hi: int = MAX_WIDTH, units: int | None = None) -> dict:
    layer = {"type": "dense", "units": units if units is not None else draw(st.integers(lo, hi))}
    bias = draw(st.sampled_from([True, False, "folded"]))
    if bias is not True:
        layer["bias"] = bias
    return layer


def _hidden_activation(draw) -> dict:
    """Mostly the activations of deep nets (relu, gelu, tanh, ...), sometimes any registered one."""
    common = [n for n in ("relu", "gelu", "tanh", "gelu_tanh", "silu", "elu", "softplus", "leaky_relu") if n in ACTIVATIONS]
    if common and draw(st.integers(0, 2)):
        return {"type": "activation", "fn": draw(st.sampled_from(common))}
    return draw(activation())


# --- the N-d architectures: each returns (input shape, _Net) ---------------------------------------


@st.composite
def _cnn(draw):
    nd = draw(st.integers(1, 2), label="spatial axes")
    spatial = [draw(st.integers(3, 10 if nd == 1 else 6)) for _ in range(nd)]
    shape = (draw(st.integers(1, 3)),) + tuple(spatial)
    net = _Net(shape)
    for _ in range(draw(st.integers(1, 3), label="blocks")):
        if len(net.shape) != nd + 1:
            break
        net.add(draw(conv(net.shape)))
        if draw(st.booleans()):
            net.add(draw(norm(net.shape)))
        if draw(st.integers(0, 3)):
            net.add(_hidden_activation(draw))
        if draw(st.booleans()):
            net.add(draw(pool(net.shape)))
        if not draw(st.integers(0, 4)):
            net.add(draw(dropout()))
    head = draw(st.sampled_from(["flatten", "global_avgpool", "none"]), label="head")
    if head == "flatten" and not net.add({"type": "flatten"}):
        head = "global_avgpool"
    if head == "global_avgpool":
        net.add({"type": "global_avgpool"})
    if head != "none" and not draw(st.integers(0, 3)):
        net.add(draw(norm(net.shape, kinds=("batchnorm", "layernorm"))))
    if head != "none" and draw(st.booleans()):
        net.add(_dense(draw))
        net.add(_hidden_activation(draw))
    return shape, net


@st.composite
def _residual_mlp_block(draw, shape: tuple, depth: int = 0) -> dict:
    inner = _Net(shape)
    if draw(st.booleans()):
        inner.add(draw(norm(shape, kinds=("layernorm", "batchnorm"))))
    inner.add(_dense(draw))
    inner.add(_hidden_activation(draw))
    if not draw(st.integers(0, 3)):
        inner.add(draw(dropout()))
    if depth == 0 and not draw(st.integers(0, 5)):
        inner.add(draw(_residual_mlp_block(inner.shape, depth + 1)))
    if draw(st.integers(0, 3)):  # back to the block's width, or to another (a projection then)
        inner.add(_dense(draw, units=shape[-1] if draw(st.integers(0, 2)) else None))
    return _block(draw, shape, inner)


@st.composite
def _residual_cnn_block(draw, shape: tuple) -> dict:
    inner = _Net(shape)
    stride = 2 if min(shape[1:]) >= 2 and not draw(st.integers(0, 2)) else 1
    first = draw(conv(shape, keep_spatial=True, stride=stride))
    if not inner.add(first):
        inner.add({"type": f"conv{len(shape) - 1}d", "channels": shape[0], "kernel": 1, "stride": stride})
    if draw(st.booleans()):
        inner.add(draw(norm(inner.shape)))
    inner.add(_hidden_activation(draw))
    if draw(st.booleans()):
        inner.add(draw(conv(inner.shape, keep_spatial=True, stride=1)))
    return _block(draw, shape, inner)


def _block(draw, shape: tuple, inner: _Net) -> dict:
    layer: dict = {"type": "residual", "layers": inner.layers}
    projection = draw(st.sampled_from(_projections(shape, inner.shape)), label="projection")
    if projection is not False:
        layer["projection"] = projection
    return layer


@st.composite
def _residual(draw):
    if draw(st.booleans(), label="convolutional"):
        nd = draw(st.integers(1, 2))
        shape = (draw(st.integers(1, 3)),) + tuple(draw(st.integers(2, 8 if nd == 1 else 5)) for _ in range(nd))
        net = _Net(shape)
        if draw(st.booleans()):
            net.add(draw(conv(shape, keep_spatial=True, stride=1)))
        for _ in range(draw(st.integers(1, 2), label="blocks")):
            net.add(draw(_residual_cnn_block(net.shape)))
        net.add({"type": draw(st.sampled_from(["global_avgpool", "flatten"]))})
        return shape, net
    shape = (draw(st.integers(1, 6)),) if draw(st.integers(0, 2)) else (draw(st.integers(1, 3)), draw(st.integers(1, 5)))
    net = _Net(shape)
    if draw(st.booleans()):
        net.add(_dense(draw))
    for _ in range(draw(st.integers(1, 2), label="blocks")):
        net.add(draw(_residual_mlp_block(net.shape)))
        if not draw(st.integers(0, 3)):
            net.add(draw(dropout()))
    return shape, net


@st.composite
def _transformer(draw):
    shape = (draw(st.integers(1, 4)), draw(st.sampled_from([2, 4, 6, 3, 8])))
    net = _Net(shape)
    if not draw(st.integers(0, 3)):
        net.add(_dense(draw, units=draw(st.sampled_from([2, 4, 6]))))
    for _ in range(draw(st.integers(1, 2), label="blocks")):
        d = net.shape[-1]
        attention = {"type": "attention", "heads": draw(st.sampled_from(_divisors(d))), "causal": draw(st.booleans())}
        if not draw(st.integers(0, 3)):
            attention["bias"] = False
        pre_norm = [draw(norm(net.shape, kinds=("layernorm",)))] if draw(st.integers(0, 3)) else []
        pre_norm = [layer for layer in pre_norm if layer is not None]  # (None: D = 1, nothing to normalise)
        if draw(st.integers(0, 4)):
            net.add({"type": "residual", "layers": pre_norm + [attention]})
        else:
            net.add(pre_norm[0] if pre_norm else None)
            net.add(attention)
        if draw(st.booleans()):
            mlp = [draw(norm(net.shape, kinds=("layernorm",)))] if draw(st.integers(0, 3)) else []
            mlp = [layer for layer in mlp if layer is not None] + [_dense(draw, 1, 2 * d), {"type": "activation", "fn": draw(st.sampled_from(["gelu", "gelu_tanh", "relu"]))}]
            if not draw(st.integers(0, 3)):
                mlp.append(draw(dropout()))
            mlp.append(_dense(draw, units=d))
            net.add({"type": "residual", "layers": mlp})
    if draw(st.booleans()):
        net.add(draw(norm(net.shape, kinds=("layernorm",))))
    head = draw(st.sampled_from(["positions", "flatten", "global_avgpool"]), label="head")
    if head != "positions":
        net.add({"type": head})
    return shape, net


_BODIES = {"cnn": _cnn, "residual": _residual, "transformer": _transformer}


# --- whole specs -----------------------------------------------------------------------------------


def specs(*, dtypes=("float64", "float32"), architectures=("mlp",)) -> st.SearchStrategy[dict]:
    """Valid spec mappings (what `gradlab.spec.validate` takes, and `gradlab check` reads as YAML).

    `architectures`: the families drawn from (see the module docstring); the first is what shrinking
    heads for. The default draws the dense-only networks of the original fuzzer, draw for draw (where an op
    refuses a drawn combination of hyperparameters, e.g. hardtanh min_val >= max_val, it gets its defaults)."""
    unknown = set(architectures) - set(ARCHITECTURES)
    if unknown or not architectures:
        raise ValueError(f"unknown architectures {sorted(unknown)}; expected some of {', '.join(ARCHITECTURES)}")
    return _specs(tuple(dtypes), tuple(architectures))


@st.composite
def _specs(draw, dtypes: tuple, architectures: tuple) -> dict:
    arch = draw(st.sampled_from(list(architectures)), label="architecture")
    loss = LOSSES.get(draw(st.sampled_from(LOSSES.names()), label="loss"))
    target = draw(st.sampled_from(loss.targets), label="target")
    final = draw(activation(probabilities=True)) if loss.needs_probabilities else None
    # A softmax-like output over one unit is the constant 1 (the validator refuses it before BCE).
    min_out = 2 if final is not None and not ACTIVATIONS.get(final["fn"]).elementwise else 1
    if arch == "mlp":
        layers = []
        depth = draw(st.integers(1, MAX_DEPTH), label="depth")
        for i in range(depth):
            dense = {"type": "dense", "units": draw(st.integers(min_out if i == depth - 1 else 1, MAX_WIDTH))}
            bias = draw(st.sampled_from([True, False, "folded"]))
            if bias is not True:
                dense["bias"] = bias
            layers.append(dense)
            if draw(st.booleans()):
                layers.append(draw(activation()))
        shape = None
    else:
        shape, net = draw(_BODIES[arch]())
        # the output layer: a dense head on the last axis (always where the loss needs >= 2 units there)
        if net.shape[-1] < min_out or net.params == 0 or draw(st.integers(0, 4), label="dense head"):
            head = _dense(draw, min_out, 4)
            net.layers.append(head)
            net.shape = net.shape[:-1] + (head["units"],)
        layers = net.layers
    if final is not None:
        layers.append(final)
    seed, dtype = draw(st.integers(0, 2**16)), draw(st.sampled_from(dtypes))
    if shape is None:  # the dense-only draws, in their original order
        size, batch = {"dim": draw(st.integers(1, MAX_WIDTH))}, draw(st.integers(1, MAX_BATCH))
    else:
        size = {"dim": shape[0]} if len(shape) == 1 and draw(st.booleans()) else {"shape": list(shape)}
        batch = draw(st.integers(2 if net.batchnorm else 1, ND_MAX_BATCH), label="batch")
    spec: dict = {
        "seed": seed,
        "dtype": dtype,
        "input": {
            **size,
            "batch": batch,
            "distribution": draw(st.sampled_from(["normal", "uniform"])),
            "scale": draw(st.sampled_from([1.0, 0.5, 2.0])),
        },
        "target": {"kind": target},
        "network": {"convention": draw(st.sampled_from(["out_in", "in_out"])), "init": draw(init()), "layers": layers},
        "loss": {"fn": loss.name},
    }
    if not loss.fixed_reduction:
        reduction = draw(st.sampled_from([None, "sum", "mean"]))
        if reduction:
            spec["loss"]["reduction"] = reduction
    check: dict = {}
    methods = ["auto", "richardson", "central"]
    if arch != "mlp" and _complex_safe(layers, loss):  # (the dense-only draws keep their original three)
        methods.append("complex_step")
    method = draw(st.sampled_from(methods))
    if method != "auto":
        check["numeric"] = {"method": method}
    if draw(st.booleans()):
        check["wrt_input"] = True
    if check:
        spec["check"] = check
    return spec


def _complex_safe(layers: list, loss) -> bool:
    """Whether `method: complex_step` may be asked for: every op of the network and the loss is complex-safe."""
    for layer in _all_layers(layers):
        if layer["type"] == "activation" and not ACTIVATIONS.get(layer["fn"]).complex_safe:
            return False
        if layer["type"] in LAYERS and not LAYERS.get(layer["type"]).complex_safe:
            return False
    return loss.complex_safe


def _all_layers(layers: list):
    for layer in layers:
        yield layer
        yield from _all_layers(layer.get("layers", ()))


def nd_specs(**kwargs) -> st.SearchStrategy[dict]:
    """Specs of the N-d architectures only (cnn, residual, transformer)."""
    return specs(architectures=kwargs.pop("architectures", ND_ARCHITECTURES), **kwargs)
