"""A zero-gradient tensor's note names its cause where the network's structure shows one, and is a
neutral statement of what was seen otherwise (issue 22, item 5: "nothing flows back through this
network" was printed for attention's key bias, which the softmax cancels)."""

from __future__ import annotations

import pytest

from gradlab import runner, zeros
from gradlab.compare import ZERO_NOTE
from gradlab.network import build
from gradlab.report.terminal import _notes
from gradlab.spec import validate


def _spec(layers, *, dim=3, init=None, shape=None) -> dict:
    net = {"layers": layers, **({"init": init} if init else {})}
    inp = {"shape": shape, "batch": 4} if shape else {"dim": dim, "batch": 4}
    return {"name": "zero", "input": inp, "target": {"kind": "regression"}, "loss": {"fn": "sse"}, "network": net}


ATTENTION = _spec([{"type": "attention", "heads": 1}, {"type": "flatten"}, {"type": "dense", "units": 2}], shape=[3, 4])
STEP = _spec([{"type": "dense", "units": 3}, {"type": "activation", "fn": "step"}, {"type": "dense", "units": 1}])
DEAD = _spec([{"type": "dense", "units": 3}, {"type": "activation", "fn": "relu"}, {"type": "dense", "units": 1}],
             init={"scheme": "he_normal", "bias": -50.0})
# the output layer's weights are all 0: δ of the layer below is W^T δ = 0, no step, no dead unit, no zero input
ZERO_WEIGHTS = _spec([{"type": "dense", "units": 3}, {"type": "activation", "fn": "tanh"},
                      {"type": "dense", "units": 1, "init": {"scheme": "zeros"}}])


def _checked(data):
    return runner.run(validate(data), engines=["analytic", "numeric"])


def test_attention_key_bias_note_says_the_softmax_cancels_it():
    r = _checked(ATTENTION)
    zero = {c.parameter: c.note for c in r.comparisons if c.status == "zero-gradient"}
    assert zero == {"layers.0.k.bias": zeros.KEY_BIAS_REASON}
    (line,) = [text for text, _ in _notes(r) if "zero gradient" in text]
    assert line == f"  note: zero gradient for layers.0.k.bias: {zeros.KEY_BIAS_REASON}"
    assert "nothing flows back" not in line


def test_step_dead_relu_and_zero_input_are_named():
    step = _checked(STEP)
    assert {c.note for c in step.comparisons if c.status == "zero-gradient"} == {
        "behind the step at network.layers[1]: f′ = 0 almost everywhere"}
    dead = _checked(DEAD)
    notes = {c.parameter: c.note for c in dead.comparisons if c.status == "zero-gradient"}
    off = "the relu at network.layers[1] is off for every unit and sample of the batch, so nothing flows back past it"
    assert notes == {"layers.0.weight": off, "layers.0.bias": off,
                     "layers.2.weight": "the input of network.layers[2] is exactly 0 for every sample, and this weight multiplies it"}
    lines = [text for text, _ in _notes(dead) if "zero gradient" in text]
    assert lines == [f"  note: zero gradient for layers.0.weight, layers.0.bias: {off}",
                     f"  note: zero gradient for layers.2.weight: {notes['layers.2.weight']}"]


def test_no_structural_cause_gives_the_neutral_note():
    r = _checked(ZERO_WEIGHTS)
    zero = {c.parameter: c.note for c in r.comparisons if c.status == "zero-gradient"}
    assert set(zero) == {"layers.0.weight", "layers.0.bias"} and set(zero.values()) == {ZERO_NOTE}
    assert ZERO_NOTE == "exactly 0 in every element, by both engines, at this spec's point"


@pytest.mark.parametrize("data, name", [(STEP, "layers.0.weight"), (ATTENTION, "layers.0.k.bias")])
def test_reasons_reads_only_the_network(data, name):
    """The cause comes from the network's structure and one forward pass, never from an engine's answer."""
    assert zeros.reasons(build(validate(data)), [name])[name] != ZERO_NOTE
