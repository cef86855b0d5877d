"""Networks as people build them: conv, pooling, normalisation, dropout, residual and attention in specs.

The three documents of issue 11 pass as written (float64 and float32); a planted wrong backward in a
conv, a pooling, a normalisation and an attention layer makes the check fail naming the tensor; shape
mismatches are spec errors naming the layer; structure (nesting, names) is what the issue says.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from gradlab import runner
from gradlab.cli import main
from gradlab.errors import SpecError
from gradlab.network import build
from gradlab.ops import LAYERS
from gradlab.spec import load_spec, validate

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted((ROOT / "specs" / "layers").glob("*.yaml"))


def _doc(name: str) -> dict:
    return yaml.safe_load((ROOT / "specs" / "layers" / f"{name}.yaml").read_text())


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.stem)
def test_shipped_layer_specs_pass(path):
    res = CliRunner().invoke(main, ["check", str(path)])
    assert res.exit_code == 0, res.output


@pytest.mark.parametrize("name", ["small_cnn", "residual_mlp", "tiny_transformer_block"])
def test_documents_pass_in_float32(name):
    data = {**_doc(name), "dtype": "float32"}
    result = runner.run(validate(data, f"{name}.yaml"))
    assert result.error is None and result.passed, [c.to_dict() for c in result.comparisons if not c.passed][:2]


def test_parameter_names_follow_the_tree():
    net = build(validate(_doc("tiny_transformer_block")))
    names = set(net.params)
    assert {"layers.0.layers.0.weight", "layers.0.layers.1.q.weight", "layers.0.layers.1.o.bias",
            "layers.1.layers.3.weight", "layers.2.weight"} <= names
    cnn = build(validate(_doc("small_cnn")))
    assert cnn.params["layers.0.weight"].shape == (4, 1, 3, 3)  # (out, in/groups, *kernel) as torch
    assert cnn.params["layers.1.weight"].shape == (4,) and np.all(cnn.params["layers.1.weight"] == 1)


def test_dense_on_nd_input_acts_on_the_last_axis():
    spec = validate({"input": {"shape": [5, 3], "batch": 2}, "network": {"layers": [{"type": "dense", "units": 4}]}, "loss": {"fn": "sse"}})
    net = build(spec)
    y = net.forward(net.params)
    assert y.shape == (2, 5, 4)
    np.testing.assert_allclose(y, net.x @ net.params["layers.0.weight"].T + net.params["layers.0.bias"])
    assert runner.run(spec).passed


@pytest.mark.parametrize("layers,path,fragment", [
    ([{"type": "conv2d", "channels": 2, "kernel": 3}], "network.layers[0]", "conv2d cannot take its input of shape (12,)"),
    ([{"type": "dense", "units": 4}, {"type": "maxpool2d", "kernel": 2}], "network.layers[1]", "maxpool2d cannot take its input of shape (4,)"),
    ([{"type": "attention", "heads": 3}], "network.layers[0]", "attention cannot take its input of shape (12,)"),
    ([{"type": "residual", "layers": [{"type": "dense", "units": 3}, {"type": "conv1d", "channels": 1, "kernel": 2}]}],
     "network.layers[0].layers[1]", "conv1d cannot take"),
])
def test_shape_mismatch_is_a_spec_error_naming_the_layer(layers, path, fragment):
    with pytest.raises(SpecError) as info:
        validate({"input": {"dim": 12, "batch": 2}, "network": {"layers": layers}, "loss": {"fn": "sse"}}, "s.yaml")
    assert info.value.path == path and fragment in info.value.message, str(info.value)


def test_batchnorm_of_one_row_is_refused_before_anything_runs():
    with pytest.raises(SpecError) as info:
        validate({"input": {"dim": 3, "batch": 1}, "network": {"layers": [{"type": "dense", "units": 3}, {"type": "batchnorm"}]}, "loss": {"fn": "sse"}}, "s.yaml")
    assert info.value.path == "network.layers[1]" and "more than one value per channel" in info.value.message


def test_residual_projection_when_shapes_differ():
    spec = validate({"input": {"shape": [2, 8, 8], "batch": 2}, "network": {"layers": [
        {"type": "residual", "layers": [{"type": "conv2d", "channels": 4, "kernel": 3, "stride": 2, "padding": 1}]},
        {"type": "flatten"}, {"type": "dense", "units": 2}]}, "loss": {"fn": "sse"}})
    net = build(spec)
    assert net.params["layers.0.projection.weight"].shape == (4, 2, 1, 1)
    assert runner.run(spec).passed
    with pytest.raises(SpecError) as info:
        validate({"input": {"dim": 4}, "network": {"layers": [{"type": "residual", "layers": [{"type": "dense", "units": 3}], "projection": "conv"}]}, "loss": {"fn": "sse"}}, "s.yaml")
    assert info.value.path == "network.layers[0].projection"


def test_unknown_layer_type_lists_the_new_types():
    with pytest.raises(SpecError) as info:
        validate({"input": {"dim": 4}, "network": {"layers": [{"type": "conv3d", "channels": 1, "kernel": 1}]}, "loss": {"fn": "sse"}}, "s.yaml")
    assert "conv2d" in info.value.message and "attention" in info.value.message


def test_unknown_option_suggests_the_nearest():
    with pytest.raises(SpecError) as info:
        validate({"input": {"shape": [1, 6, 6]}, "network": {"layers": [{"type": "conv2d", "channels": 1, "kernal": 3}]}, "loss": {"fn": "sse"}}, "s.yaml")
    assert info.value.path.startswith("network.layers[0]") and "kernel" in info.value.message


# --- planted bugs -------------------------------------------------------------------------------


def _flip_weight(gx, grads, x, g, p):
    return gx, {**grads, "weight": grads["weight"][..., ::-1]}


def _flip_dx(gx, grads, x, g, p):
    return gx[..., ::-1], grads


def _batchnorm_without_mean_terms(gx, grads, x, g, p):
    axes = (0,) + tuple(range(2, x.ndim))
    var = x.var(axis=axes, keepdims=True)
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return g * p["weight"].reshape(shape) / np.sqrt(var + 1e-5), grads


def _transposed_key_weight(gx, grads, x, g, p):
    return gx, {**grads, "k.weight": grads["k.weight"].T}


BUGS = [
    ("conv2d", _flip_weight, "small_cnn", "layers.4.weight"),
    ("maxpool2d", _flip_dx, "small_cnn", "layers.0.weight"),
    ("batchnorm", _batchnorm_without_mean_terms, "small_cnn", "layers.0.weight"),
    ("attention", _transposed_key_weight, "tiny_transformer_block", "layers.0.layers.1.k.weight"),
    ("layernorm", _flip_dx, "residual_mlp", "layers.0.weight"),
]


@pytest.fixture
def planted(request):
    name, bug = request.param
    op = LAYERS.unregister(name)

    def backward(x, y, g, p, o):
        gx, grads = op.backward(x, y, g, p, o)
        return bug(gx, grads, x, g, p)

    LAYERS.register(dataclasses.replace(op, backward=backward))
    try:
        yield name
    finally:
        LAYERS.unregister(name)
        LAYERS.register(op)


@pytest.mark.parametrize("planted,doc,tensor", [((n, b), d, t) for n, b, d, t in BUGS], indirect=["planted"], ids=[b[0] for b in BUGS])
def test_planted_wrong_backward_fails_naming_the_tensor(planted, doc, tensor, tmp_path):
    path = tmp_path / f"{doc}.yaml"
    path.write_text(yaml.safe_dump(_doc(doc)))
    res = CliRunner().invoke(main, ["check", str(path), "--format", "json"])
    assert res.exit_code == 1, res.output
    failing = {c["parameter"] for s in __import__("json").loads(res.output)["specs"] for c in s["comparisons"] if c["status"] == "fail"}
    assert tensor in failing, failing


# --- a user's N-d layer inside a spec -------------------------------------------------------------

TARGETS = Path(__file__).resolve().parent / "layer_targets"


def _user_conv_spec(tmp_path, name):
    text = f"""
input: {{shape: [2, 6, 6], batch: 2}}
network:
  layers:
    - {{type: custom, impl: '{TARGETS / "user_conv.py"}:{name}'}}
    - {{type: activation, fn: tanh}}
    - {{type: maxpool2d, kernel: 2}}
    - {{type: flatten}}
    - {{type: dense, units: 2}}
loss: {{fn: sse}}
"""
    path = tmp_path / "user_conv.yaml"
    path.write_text(text)
    return path


def test_users_nd_layer_sits_in_a_spec(tmp_path):
    res = CliRunner().invoke(main, ["check", str(_user_conv_spec(tmp_path, "Conv3x3"))])
    assert res.exit_code == 0, res.output


def test_users_nd_layer_with_a_wrong_backward_fails(tmp_path):
    res = CliRunner().invoke(main, ["check", str(_user_conv_spec(tmp_path, "Conv3x3WrongFlip")), "--format", "json"])
    assert res.exit_code == 1, res.output
    import json

    failing = {c["parameter"] for s in json.loads(res.output)["specs"] for c in s["comparisons"] if c["status"] == "fail"}
    assert "layers.0.w" in failing


def test_users_nd_layer_shape_mismatch_names_the_layer(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(f"input: {{shape: [3, 6, 6]}}\nnetwork: {{layers: [{{type: custom, impl: '{TARGETS / 'user_conv.py'}:Conv3x3'}}]}}\nloss: {{fn: sse}}\n")
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert info.value.path == "network.layers[0].impl" and "(2, 6, 6)" in info.value.message


def test_gelu_approximate_tanh_as_torch_spells_it():
    spec = validate({"input": {"dim": 3}, "network": {"layers": [{"type": "dense", "units": 3}, {"type": "activation", "fn": "gelu", "approximate": "tanh"}]}, "loss": {"fn": "sse"}})
    assert spec.network.layers[1].fn == "gelu_tanh"
    with pytest.raises(SpecError):
        validate({"input": {"dim": 3}, "network": {"layers": [{"type": "dense", "units": 3}, {"type": "activation", "fn": "gelu", "approximate": "tan"}]}, "loss": {"fn": "sse"}}, "s.yaml")


@pytest.mark.parametrize("layers,shape,fragment", [
    ([{"type": "groupnorm", "groups": 2}], [2, 1], "more than one value per group"),
    ([{"type": "layernorm"}], [3, 1], "single value"),
    ([{"type": "dense", "units": 2}, {"type": "activation", "fn": "hardtanh", "min_val": 1.0, "max_val": -1.0}], [3], "min_val (1) must be below max_val (-1)"),
])
def test_degenerate_layers_are_refused_at_load(layers, shape, fragment):
    with pytest.raises(SpecError) as info:
        validate({"input": {"shape": shape, "batch": 2}, "network": {"layers": [{"type": "dense", "units": shape[-1]}] + layers}, "loss": {"fn": "sse"}}, "s.yaml")
    assert fragment in info.value.message, str(info.value)


def test_auto_method_uses_the_complex_step_through_kinks_and_norms():
    """Issue 23: the complex step takes the branch of the real part, exact away from a kink, and measures its own
    rounding, so `auto` picks it for max-pools and normalisations too (it picked richardson there before)."""
    from gradlab.engines.numeric import resolve_method

    smooth = build(validate({"input": {"shape": [2, 6], "batch": 2}, "network": {"layers": [{"type": "conv1d", "channels": 2, "kernel": 3}, {"type": "activation", "fn": "tanh"}]}, "loss": {"fn": "sse"}}))
    kinked = build(validate({"input": {"shape": [2, 6], "batch": 2}, "network": {"layers": [{"type": "conv1d", "channels": 2, "kernel": 3}, {"type": "maxpool1d", "kernel": 2}]}, "loss": {"fn": "sse"}}))
    normed = build(validate({"input": {"shape": [2, 6], "batch": 2}, "network": {"layers": [{"type": "conv1d", "channels": 2, "kernel": 3}, {"type": "batchnorm"}]}, "loss": {"fn": "sse"}}))
    assert {resolve_method(n, "auto") for n in (smooth, kinked, normed)} == {"complex_step"}


def test_numeric_structured_paths_agree_with_element_by_element():
    """Sites (per-sample dL/du, then linearity), sites inside residual blocks and cuts are shortcuts: the
    numeric engine's answer must equal plain element-by-element differences on a network that uses all three."""
    spec = validate({"seed": 4, "input": {"shape": [2, 9], "batch": 3}, "network": {"layers": [
        {"type": "conv1d", "channels": 3, "kernel": 3, "padding": 1},
        {"type": "activation", "fn": "tanh"},
        {"type": "residual", "layers": [{"type": "dense", "units": 9}, {"type": "activation", "fn": "gelu_tanh"}, {"type": "dense", "units": 9}]},
        {"type": "dropout", "p": 0.3},
        {"type": "flatten"}, {"type": "dense", "units": 4}]}, "loss": {"fn": "sse"}})
    _structured_equals_element_by_element(spec)


def _structured_equals_element_by_element(spec) -> None:
    """The numeric engine's structured paths (sites, cuts, row-wise) give what plain differences give."""
    from gradlab.engines import numeric

    net = build(spec)
    fast = numeric.differentiate(net, method="richardson")
    slow = numeric.differentiate(net, method="richardson", structured=False)
    for name in net.params:
        np.testing.assert_allclose(fast.values[name], slow.values[name], rtol=1e-6, atol=1e-9, err_msg=name)
    assert not fast.notes, fast.notes


def test_rowwise_sites_agree_with_element_by_element():
    """A dense/gelu/layernorm stack on (T, D) moves one row per perturbed unit: the numeric engine then runs
    only that row; its answer must equal plain element-by-element differences."""
    spec = validate({"seed": 5, "input": {"shape": [5, 6], "batch": 2}, "network": {"layers": [
        {"type": "residual", "layers": [{"type": "layernorm"}, {"type": "attention", "heads": 2, "causal": True}]},
        {"type": "residual", "layers": [{"type": "layernorm"}, {"type": "dense", "units": 12}, {"type": "activation", "fn": "gelu"}, {"type": "dense", "units": 6}]},
        {"type": "dense", "units": 3}]}, "loss": {"fn": "sse"}})
    _structured_equals_element_by_element(spec)
