"""Hypothesis strategies for random valid specs, drawn from the op registries.

`specs()` draws the mapping a YAML spec holds: depth, widths, activations (with their
hyperparameters, sometimes trainable), losses with the targets and final layers they need,
both weight conventions, every bias mode and init scheme, float64 and float32, sum and mean
reductions, the numeric methods, and sometimes the input gradient. Everything is small, so
one spec runs through the three engines in milliseconds; shrinking ends at one dense layer
with one unit. New ops are drawn the moment they are registered.
"""

from __future__ import annotations

from hypothesis import strategies as st

from .ops import ACTIVATIONS, LOSSES
from .ops.init import SCHEMES

MAX_DEPTH, MAX_WIDTH, MAX_BATCH = 3, 5, 5


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
        if op.trainable and draw(st.booleans()):
            layer["trainable"] = True
    return layer


def init() -> st.SearchStrategy[dict]:
    return st.fixed_dictionaries({"scheme": st.sampled_from(SCHEMES)}, optional={
        "bias": st.one_of(st.sampled_from(["zeros", "normal", "uniform_fan_in"]), _number(-1.0, 1.0)),
    })


@st.composite
def specs(draw, *, dtypes=("float64", "float32")) -> dict:
    """A valid spec mapping (what `gradlab.spec.validate` takes, and `gradlab check` reads as YAML)."""
    loss = LOSSES.get(draw(st.sampled_from(LOSSES.names()), label="loss"))
    target = draw(st.sampled_from(loss.targets), label="target")
    final = draw(activation(probabilities=True)) if loss.needs_probabilities else None
    # A softmax-like output over one unit is the constant 1 (the validator refuses it before BCE).
    min_out = 2 if final is not None and not ACTIVATIONS.get(final["fn"]).elementwise else 1
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
    if final is not None:
        layers.append(final)
    spec: dict = {
        "seed": draw(st.integers(0, 2**16)),
        "dtype": draw(st.sampled_from(dtypes)),
        "input": {
            "dim": draw(st.integers(1, MAX_WIDTH)),
            "batch": draw(st.integers(1, MAX_BATCH)),
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
    method = draw(st.sampled_from(["auto", "richardson", "central"]))
    if method != "auto":
        check["numeric"] = {"method": method}
    if draw(st.booleans()):
        check["wrt_input"] = True
    if check:
        spec["check"] = check
    return spec
