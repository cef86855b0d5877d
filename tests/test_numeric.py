"""The numeric engine as referee: methods, kinks, the error model, full and fast mode."""

import dataclasses
import shutil

import numpy as np
import pytest

from gradlab import compare as cmp
from gradlab import fastcheck, runner, tolerance
from gradlab.engines import analytic, autograd, numeric
from gradlab.network import build
from gradlab.ops import ACTIVATIONS, Activation
from gradlab.spec import validate

from .conftest import registered


def mlp(sizes, act="tanh", batch=8, dtype="float64", loss="softmax_cross_entropy", seed=0, **extra):
    layers = []
    for n in sizes[1:-1]:
        layers += [{"type": "dense", "units": n}, {"type": "activation", "fn": act}]
    layers.append({"type": "dense", "units": sizes[-1]})
    target = {"kind": "onehot"} if "entropy" in loss else {"kind": "regression"}
    doc = {"seed": seed, "dtype": dtype, "input": {"dim": sizes[0], "batch": batch}, "target": target,
           "network": {"layers": layers, "init": {"scheme": "xavier_uniform", "bias": "normal"}}, "loss": {"fn": loss}}
    doc.update(extra)
    return validate(doc)


def _rel(a, b):
    return np.abs(a - b) / np.maximum(np.maximum(np.abs(a), np.abs(b)), 1e-8 * np.abs(b).max())


@pytest.mark.parametrize("method,median_target", [("complex_step", 1e-12), ("richardson", 1e-9), ("central", 1e-7)])
def test_method_accuracy_against_autograd(method, median_target):
    net = build(mlp((6, 12, 12, 4)))
    num = numeric.differentiate(net, method=method)
    ref = autograd.gradients(net)
    rel = np.concatenate([_rel(num.values[k], ref.values[k]).ravel() for k in ref.values])
    assert np.median(rel) <= median_target
    # the engine's own error estimate covers the actual error
    for k in ref.values:
        assert np.all(np.abs(num.values[k] - ref.values[k]) <= 4 * num.error[k] + 1e-15)


def test_auto_is_complex_step_for_builtin_ops_and_complex_step_agrees_with_richardson():
    net = build(mlp((5, 9, 3), act="silu"))
    cs, ri = numeric.differentiate(net), numeric.differentiate(net, method="richardson")
    assert cs.method == "complex_step" and ri.method == "richardson"
    for k in cs.values:
        assert np.all(np.abs(cs.values[k] - ri.values[k]) <= 4 * (cs.error[k] + ri.error[k]))


def test_structured_path_equals_direct_per_element_differences():
    for conv in ("out_in", "in_out"):
        doc = {"input": {"dim": 4, "batch": 5}, "target": {"kind": "regression"},
               "network": {"convention": conv, "layers": [{"type": "dense", "units": 7, "bias": "folded"}, {"type": "activation", "fn": "tanh"},
                                                          {"type": "dense", "units": 5}, {"type": "activation", "fn": "softmax"},
                                                          {"type": "dense", "units": 3, "bias": False}]},
               "loss": {"fn": "sse"}, "check": {"wrt_input": True}}
        net = build(validate(doc))
        fast = numeric.differentiate(net, wrt_input=True)
        slow = numeric.differentiate(net, wrt_input=True, structured=False)
        for k in slow.values:
            np.testing.assert_allclose(fast.values[k], slow.values[k], rtol=1e-12, atol=1e-15, err_msg=f"{conv} {k}")


@pytest.mark.parametrize("act, pool, carried_to", [
    ("tanh", {"type": "maxpool2d", "kernel": 2}, 4),  # the edge row and column of a 5x5 map fall in no window
    ("relu", {"type": "maxpool2d", "kernel": 2}, 4),  # dead units tie at 0 in windows: watched, ties reported per window
    ("gelu", {"type": "avgpool2d", "kernel": 2, "stride": 3, "padding": 1}, 4),  # gaps between windows, padding
    ("tanh", {"type": "maxpool2d", "kernel": 3, "stride": 2}, 2),  # overlapping windows: the forward runs whole
    ("silu", {"type": "global_avgpool"}, 4),  # a channel's mean moves by the change over the area
])
def test_a_site_unit_carried_through_pool_and_flatten_is_the_whole_forward(act, pool, carried_to, monkeypatch):
    """A conv whose output is smaller than its weight is reached through a site at its output; each perturbed unit
    is carried through the activation, the pool and flatten as one unit (Op.moved_unit) and into the dense layer as
    a rank-1 change: the same values as differencing every element through the whole forward."""
    reached = []
    carried = numeric._Base.carried

    def spy(self, l, b, j, v):
        out = carried(self, l, b, j, v)
        if l == 1 and numeric._WATCHES:  # the conv's output, by the complex step
            reached.append(out[0])
        return out

    monkeypatch.setattr(numeric._Base, "carried", spy)
    net = build(validate({
        "seed": 4, "input": {"shape": [6, 7, 7], "batch": 3}, "target": {"kind": "onehot", "classes": 3},
        "network": {"layers": [{"type": "conv2d", "channels": 6, "kernel": 3}, {"type": "activation", "fn": act}, pool,
                               {"type": "flatten"}, {"type": "dense", "units": 3}]},
        "loss": {"fn": "softmax_cross_entropy"}}))
    fast = numeric.differentiate(net)
    # the conv's parameters came through the site (a disagreement would be noted and differenced directly), its
    # units carried past the pool (to the dense layer, index 4) where that is sound
    assert not fast.notes and reached
    assert set(reached) == {carried_to}
    slow = numeric.differentiate(net, structured=False)
    ref = autograd.gradients(net, "cpu")
    for k in slow.values:
        np.testing.assert_allclose(fast.values[k], slow.values[k], rtol=1e-10, atol=1e-14, err_msg=k)
        np.testing.assert_allclose(fast.values[k], ref.values[k], rtol=1e-10, atol=1e-14, err_msg=k)


def test_non_complex_safe_op_falls_back_to_richardson(write_spec):
    tanh = ACTIVATIONS.get("tanh")
    opaque = dataclasses.replace(tanh, name="opaque_tanh", complex_safe=False)
    with registered(ACTIVATIONS, opaque):
        net = build(mlp((3, 4, 2), act="opaque_tanh"))
        assert numeric.resolve_method(net, "auto") == "richardson"
        with pytest.raises(Exception, match="complex_step needs complex-safe"):
            numeric.resolve_method(net, "complex_step")


def test_gradient_of_a_plain_function_and_its_kinks():
    x = np.array([[0.3, -1.2], [2.0, 0.0]])
    d = numeric.gradient_of(lambda v: float(np.sum(np.abs(v) + np.sin(v))), x)
    expect = np.sign(x) + np.cos(x)
    assert d.kinks.tolist() == [[False, False], [False, True]]
    ok = ~d.kinks
    np.testing.assert_allclose(d.value[ok], expect[ok], rtol=1e-9)
    batched = numeric.gradient_of(lambda s: np.sum(np.sin(s), axis=(1, 2)), x, batched=True, method="complex_step")
    np.testing.assert_allclose(batched.value, np.cos(x), rtol=1e-14)


# --- kinks -------------------------------------------------------------------------------------------


def _relu_at_kink(act="relu", method="auto"):
    spec = mlp((4, 6, 3), act=act, batch=5, loss="sse")
    net = build(spec)
    net.x[0] = 0.0  # sample 0: the hidden pre-activation is the bias alone
    net.params["layers.0.bias"][:3] = [0.0, 1e-9, -1e-9]
    return runner.run(spec, net=net, method=method)


@pytest.mark.parametrize("method", ["auto", "richardson", "central"])
@pytest.mark.parametrize("act", ["relu", "leaky_relu"])
def test_relu_exactly_at_and_near_zero_passes_with_kinks(act, method):
    result = _relu_at_kink(act, method)
    assert result.passed, [c for c in result.comparisons if c.status == "fail"]
    bias = [c for c in result.comparisons if c.parameter == "layers.0.bias" and c.reference == "numeric"]
    assert all(c.kinks >= 1 and (0,) in [tuple(i) for i in c.kink_indices] for c in bias)


def test_wrong_backward_away_from_kinks_still_fails():
    relu = ACTIVATIONS.get("relu")
    wrong = dataclasses.replace(relu, name="relu_wrong_side", backward=lambda z, a, g, hp: (np.where(np.real(z) >= -0.5, g, 0 * g), {}))
    with registered(ACTIVATIONS, wrong):
        spec = mlp((4, 16, 3), act="relu_wrong_side", batch=16, loss="sse")
        result = runner.run(spec)
    assert not result.passed
    assert {c.parameter for c in result.failures} >= {"layers.0.weight", "layers.0.bias"}


def test_step_jump_is_a_kink_not_a_failure():
    spec = validate({"input": {"dim": 2, "batch": 3}, "target": {"kind": "binary"},
                     "network": {"layers": [{"type": "dense", "units": 1}, {"type": "activation", "fn": "step"}]}, "loss": {"fn": "sse"}})
    net = build(spec)
    net.x[0] = 0.0
    net.params["layers.0.bias"][:] = 0.0  # sample 0 sits exactly on the jump
    for method in ("richardson", "complex_step"):
        result = runner.run(spec, net=net, method=method)
        assert result.passed
        bias = next(c for c in result.comparisons if c.parameter == "layers.0.bias" and c.candidate == "analytic")
        assert bias.kinks == 1 and bias.status == "kink"


# --- the error model and float32 -----------------------------------------------------------------


def test_error_model_scales_with_dtype():
    net64 = build(mlp((5, 8, 3)))
    net32 = build(mlp((5, 8, 3), dtype="float32"))
    b64, b32 = tolerance.rounding_bounds(net64), tolerance.rounding_bounds(net32)
    for k in b64:
        assert np.all(b64[k] > 0) and np.all(b32[k] > 1e6 * b64[k])


@pytest.mark.parametrize("act", ["sigmoid", "tanh", "relu", "silu", "softmax"])
def test_correct_float32_network_passes(act):
    spec = mlp((16, 32, 32, 5), act=act, batch=32, dtype="float32", seed=3)
    assert runner.run(spec).passed


def test_float32_wrong_backward_fails():
    sig = ACTIVATIONS.get("sigmoid")
    wrong = Activation(name="sig_1pct", doc="1% off", forward=sig.forward, backward=lambda z, a, g, hp: (g * a * (1 - a) * 1.01, {}), torch=sig.torch)
    with registered(ACTIVATIONS, wrong):
        result = runner.run(mlp((8, 16, 4), act="sig_1pct", batch=16, dtype="float32", loss="sse"))
    assert not result.passed and all(c.candidate == "analytic" for c in result.failures)


def test_saturated_float32_sigmoid_passes():
    """s rounds to 1.0 in float32, so s(1 - s) = 0 where the truth is 1e-9: the model must allow it."""
    spec = mlp((6, 10, 3), act="sigmoid", batch=16, dtype="float32", loss="mse")
    net = build(spec)
    for k in net.params:
        net.params[k] = (net.params[k] * 30).astype(np.float32)
    assert runner.run(spec, net=net).passed


# --- planted bugs, full and fast mode ---------------------------------------------------------------


def _doctored(net, name, fn):
    g = analytic.gradients(net)
    vals = dict(g.values)
    vals[name] = fn(vals[name].copy())
    return dataclasses.replace(g, values=vals)


def _element(w):
    w[3, 5] += 0.05 * np.abs(w).max()
    return w


def _row(w):
    w[2] *= 1.1
    return w


@pytest.mark.parametrize("plant,expect_mismatch", [(_element, 1), (_row, None)], ids=["one-element", "one-row"])
def test_planted_bug_full_mode(plant, expect_mismatch):
    net = build(mlp((8, 16, 12, 4)))
    name = "layers.2.weight"
    bad = _doctored(net, name, plant)
    num = numeric.differentiate(net)
    row = cmp.compare_tensor("t", name, num, bad, tol=cmp.tolerance("float64"), rounding={"float64": tolerance.rounding_bounds(net)})
    assert row.status == "fail"
    if expect_mismatch == 1:
        assert row.mismatched == 1 and row.worst_index == (3, 5)
    else:
        assert row.worst_index[0] == 2 and row.mismatched >= 10


@pytest.mark.parametrize("plant", [_element, _row], ids=["one-element", "one-row"])
def test_planted_bug_fast_mode(plant):
    net = build(mlp((8, 16, 12, 4)))
    name = "layers.2.weight"
    bad = _doctored(net, name, plant)
    row = fastcheck.check_tensor("t", net, bad, name, model=tolerance.rounding_bounds(net)[name], method="complex_step", tol={"rtol": 0, "atol": 0})
    assert row.status == "fail"
    named = [tuple(w["index"]) for w in row.worst]
    if plant is _element:
        assert row.worst_index == (3, 5) and row.mismatched == 1
    else:
        assert all(i[0] == 2 for i in named)


def test_fast_mode_names_one_wrong_element_among_100k():
    net = build(mlp((128, 256, 256, 10), batch=4))
    name = "layers.2.weight"
    assert net.params[name].size == 65536 and net.n_params > 100_000
    bad = _doctored(net, name, lambda w: (w.__setitem__((17, 101), w[17, 101] * 1.5 + 1e-3), w)[1])
    row = fastcheck.check_tensor("t", net, bad, name, model=tolerance.rounding_bounds(net)[name], method="complex_step", tol={"rtol": 0, "atol": 0})
    assert row.status == "fail" and row.worst_index == (17, 101) and row.mismatched == 1
    projections = int(row.note.split("fast mode: ")[1].split(" ")[0])
    assert projections <= fastcheck.projections_bound(65536) <= 2 * 16 + 10


def test_sign_flip_in_one_layer_caught_in_full_and_fast_mode():
    tanh = ACTIVATIONS.get("tanh")
    flipped = dataclasses.replace(tanh, name="tanh_flipped", backward=lambda z, a, g, hp: (-g * (1 - a * a), {}))
    with registered(ACTIVATIONS, flipped):
        doc = {"input": {"dim": 6, "batch": 8}, "target": {"kind": "regression"},
               "network": {"layers": [{"type": "dense", "units": 10}, {"type": "activation", "fn": "tanh"},
                                      {"type": "dense", "units": 10}, {"type": "activation", "fn": "tanh_flipped"},
                                      {"type": "dense", "units": 3}]}, "loss": {"fn": "sse"}}
        for mode in ("full", "fast"):
            result = runner.run(validate(doc), mode=mode)
            failed = {c.parameter for c in result.failures if c.candidate == "analytic" and c.reference == "numeric"}
            assert failed == {"layers.0.weight", "layers.0.bias", "layers.2.weight", "layers.2.bias"}, mode
            assert all(c.cosine < -0.99 for c in result.failures if mode == "full" and c.reference == "numeric")


def test_fast_mode_passes_correct_network_and_auto_mode_threshold():
    spec = mlp((8, 16, 4))
    result = runner.run(spec, mode="fast")
    assert result.passed and result.mode == "fast"
    assert all("fast mode" in c.note for c in result.comparisons if c.reference == "numeric")
    assert runner.resolve_mode("auto", build(spec)) == "full"


# --- issue 23: the complex step through kinks and norms, attention's inner sites, sharpness ---------------

def _sharp_spec(tmp_path, wrong: bool, kind: str):
    """A small CNN (conv, custom tanh, max-pool, dense) or pre-LN transformer block (layernorm, attention, custom
    gelu MLP) whose custom activation's backward is exact, or off by a relative 1e-8 (`wrong`): the benchmark's
    ops (benchmarks/sharp/ops.py), Tanh / TanhOff and Gelu / GeluOff."""
    from gradlab.spec import load_spec

    from .conftest import ROOT

    tmp_path.mkdir()
    shutil.copy(ROOT / "benchmarks" / "sharp" / "ops.py", tmp_path / "sharp_ops.py")
    off = "Off" if wrong else ""
    if kind == "cnn":
        body = """input: {shape: [1, 10, 10], batch: 2}
target: {kind: onehot, classes: 3}
network:
  layers:
    - {type: conv2d, channels: 3, kernel: 3}
    - {type: activation, fn: custom, impl: 'sharp_ops.py:Tanh'}
    - {type: maxpool2d, kernel: 2}
    - {type: conv2d, channels: 4, kernel: 3}
    - {type: activation, fn: relu}
    - {type: flatten}
    - {type: dense, units: 3}
loss: {fn: softmax_cross_entropy}
"""
    else:
        body = """input: {shape: [5, 8], batch: 2}
target: {kind: regression}
network:
  layers:
    - type: residual
      layers: [{type: layernorm}, {type: attention, heads: 2}]
    - type: residual
      layers: [{type: layernorm}, {type: dense, units: 16}, {type: activation, fn: custom, impl: 'sharp_ops.py:Gelu'}, {type: dense, units: 8}]
loss: {fn: sse}
"""
    body = body.replace(":Tanh'", f":Tanh{off}'").replace(":Gelu'", f":Gelu{off}'")
    path = tmp_path / f"{kind}.yaml"
    path.write_text(f"name: sharp-{kind}\nseed: 1\n{body}check: {{engines: [analytic, numeric]}}\n")
    return load_spec(path)


@pytest.mark.parametrize("kind", ["cnn", "transformer"])
def test_analytic_and_numeric_alone_catch_a_backward_off_by_1e8(tmp_path, kind):
    """Issue 23: with no torch mirror to compare against, the numeric engine alone must fail a custom activation
    whose backward is off by a relative 1e-8 (inside a CNN with a max-pool and a relu, and inside a transformer
    block's MLP after layernorm and attention), and pass its exact twin."""
    exact = runner.run(_sharp_spec(tmp_path / "a", False, kind))
    assert exact.passed, [(c.parameter, c.note) for c in exact.failures]
    assert exact.method == "complex_step"
    wrong = runner.run(_sharp_spec(tmp_path / "b", True, kind))
    assert not wrong.passed
    assert {c.candidate for c in wrong.failures} | {c.reference for c in wrong.failures} == {"analytic", "numeric"}


def test_an_undeclared_user_activation_is_probed_for_the_complex_step(tmp_path):
    """A user's elementwise activation that does not declare complex_safe gets the complex step in an N-d network
    when, at the network's own point, its complex evaluation is its real forward plus the tangent (the complex
    step only ever evaluates it at those real points); one that is not analytic (abs inside) keeps richardson."""
    from gradlab.engines.numeric import resolve_method

    tmp_path = tmp_path / "t"
    spec = _sharp_spec(tmp_path, False, "transformer")
    assert resolve_method(build(spec), "auto") == "complex_step"
    (tmp_path / "not_analytic.py").write_text(
        "import numpy as np\n\nclass Swish:\n    kind = 'activation'\n    elementwise = True\n"
        "    def forward(self, z):\n        e = np.exp(-np.abs(z))\n        return z * np.where(np.real(z) >= 0, 1 / (1 + e), e / (1 + e))\n"
        "    def backward(self, z, g):\n        return g\n")
    path = tmp_path / "transformer.yaml"
    path.write_text(path.read_text().replace("sharp_ops.py:Gelu", "not_analytic.py:Swish"))
    from gradlab.spec import load_spec

    assert resolve_method(build(load_spec(path)), "auto") == "richardson"


def _tie_net():
    """conv1d (kernel 1) then max-pool 2 on an input whose first two positions are equal: the pool's first window
    ties, and moving x[0] or x[1] decides which one wins (a kink in the input); the rest is smooth."""
    net = build(validate({"seed": 2, "input": {"shape": [1, 6], "batch": 2}, "target": {"kind": "regression"},
                          "network": {"layers": [{"type": "conv1d", "channels": 2, "kernel": 1},
                                                 {"type": "maxpool1d", "kernel": 2}, {"type": "flatten"},
                                                 {"type": "dense", "units": 2}]}, "loss": {"fn": "sse"}}))
    net.x[:, 0, 1] = net.x[:, 0, 0]
    return net


def test_the_complex_step_sends_elements_on_a_max_pool_tie_to_real_differences():
    """Elements whose move decides a max-pool's tie get the real-difference treatment (value and error as
    richardson gives them: here the stencil straddles the kink, the value is the mean of the one-sided slopes
    and the error covers both); every other element keeps the complex step's exact answer."""
    net = _tie_net()
    cs = numeric.differentiate(net, method="complex_step", wrt_input=True)
    rich = numeric.differentiate(net, method="richardson", wrt_input=True)
    tied = np.zeros(net.x.shape, bool)
    tied[:, 0, :2] = True
    v, e = cs.values["input"], cs.error["input"]
    np.testing.assert_allclose(v[tied], rich.values["input"][tied], rtol=1e-9)
    assert np.all(e[tied] > 0.1 * np.abs(v[tied]))  # the kink's two slopes differ by |v| or more
    np.testing.assert_allclose(v[~tied], rich.values["input"][~tied], rtol=1e-7, atol=1e-10)
    assert np.all(e[~tied] < 1e-12 * np.abs(v).max())  # exact away from the tie


def test_the_complex_step_error_covers_pure_noise_attention_gradients():
    """Second attention of two, small weights: its q.bias gradient is rounding noise (~1e-22). The complex step
    claimed a few ulps of that noise (4.5e-36); measured against a second step, it claims at least the noise."""
    from pathlib import Path

    from gradlab.spec import load_spec

    path = Path(__file__).parent / "fuzz_found" / "complex_step_error_estimate_tiny_attention_gradients.yaml"
    for seed in (3, 9):
        net = build(load_spec(path).model_copy(update={"seed": seed}))
        g = numeric.differentiate(net, names=["layers.1.q.bias"])
        assert g.method == "complex_step"
        value, err = g.values["layers.1.q.bias"], g.error["layers.1.q.bias"]
        assert np.abs(value).max() < 1e-20 and np.all(err >= np.abs(value))


@pytest.mark.parametrize("causal", [False, True])
def test_attention_inner_sites_agree_with_element_by_element(causal):
    """q, k, v and the output projection reached through their sites (complex step of the op's own contraction,
    then linearity) give what differencing each weight through the whole network gives."""
    net = build(validate({"seed": 5, "input": {"shape": [4, 6], "batch": 2}, "target": {"kind": "regression"},
                          "network": {"layers": [{"type": "attention", "heads": 2, "causal": causal},
                                                 {"type": "activation", "fn": "tanh"}, {"type": "dense", "units": 3}]},
                          "loss": {"fn": "sse"}}))
    names = [n for n in net.params if n.startswith("layers.0.")]
    fast = numeric.differentiate(net, method="complex_step", names=names)
    assert not fast.notes
    slow = numeric.differentiate(net, method="complex_step", names=names, structured=False)
    for n in names:
        np.testing.assert_allclose(fast.values[n], slow.values[n], rtol=1e-12, atol=1e-15, err_msg=n)
        assert np.all(np.abs(fast.values[n] - slow.values[n]) <= fast.error[n] + slow.error[n] + 1e-300), n


def test_conv_weights_through_their_output_channels_agree_with_element_by_element():
    """A conv whose output is smaller than its parameters is a site: its weight and bias come from dL/du by
    forwards on unit vectors, one per slice element for all output channels at once (LayerOp.channel_params)."""
    net = build(validate({"seed": 7, "input": {"shape": [2, 7, 7], "batch": 2}, "target": {"kind": "regression"},
                          "network": {"layers": [{"type": "conv2d", "channels": 4, "kernel": 3, "stride": 2, "groups": 2},
                                                 {"type": "activation", "fn": "tanh"}, {"type": "flatten"},
                                                 {"type": "dense", "units": 2}]}, "loss": {"fn": "sse"}}))
    names = ["layers.0.weight", "layers.0.bias"]
    params, x, target = net.cast(np.float64)
    assert numeric._site_for(numeric._base_pass(net, params, x, target), net.layers[0], names)
    fast = numeric.differentiate(net, method="complex_step", names=names)
    slow = numeric.differentiate(net, method="complex_step", names=names, structured=False)
    for n in names:
        np.testing.assert_allclose(fast.values[n], slow.values[n], rtol=1e-12, atol=1e-15, err_msg=n)
        assert np.all(np.abs(fast.values[n] - slow.values[n]) <= fast.error[n] + slow.error[n] + 1e-300), n


def test_error_model_pushes_one_sample_alone_as_the_whole_batch_would(monkeypatch):
    """The composite error model pushes each sample's error through a layer whose samples never meet on that
    sample alone (tolerance._samples_apart); the bounds are those of pushing a batch zero but for it (to the
    rounding of the pushes' responses, which are differences of two VJPs: ~0.3% for layernorm's)."""
    net = build(validate({
        "name": "apart", "seed": 3, "input": {"shape": [2, 9, 9], "batch": 3},
        "target": {"kind": "onehot", "classes": 4},
        "network": {"layers": [
            {"type": "conv2d", "channels": 3, "kernel": 3}, {"type": "activation", "fn": "tanh"},
            {"type": "maxpool2d", "kernel": 2}, {"type": "layernorm"}, {"type": "flatten"},
            {"type": "dense", "units": 5}, {"type": "activation", "fn": "gelu"}, {"type": "dense", "units": 4},
        ]},
        "loss": {"fn": "softmax_cross_entropy"},
    }))
    apart = tolerance.rounding_bounds(net)
    calls = []
    monkeypatch.setattr(tolerance, "_samples_apart", lambda layer, x: calls.append(layer) and False)
    together = tolerance.rounding_bounds(net)
    assert calls and apart.keys() == together.keys()
    for name in apart:
        np.testing.assert_allclose(apart[name], together[name], rtol=1e-2, err_msg=name)


def _conv_net(channels_in: int, first: dict, act: str = "tanh", second_conv: bool = False):
    layers = [first, {"type": "activation", "fn": act}, {"type": "maxpool2d", "kernel": 2}]
    if second_conv:
        layers += [{"type": "conv2d", "channels": 16, "kernel": 3, "padding": 1}, {"type": "activation", "fn": act}]
    layers += [{"type": "flatten"}, {"type": "dense", "units": 3}]
    return build(validate({"seed": 5, "input": {"shape": [channels_in, 8, 8], "batch": 3},
                           "target": {"kind": "onehot", "classes": 3}, "network": {"layers": layers},
                           "loss": {"fn": "softmax_cross_entropy"}}))


@pytest.mark.parametrize("act", ["tanh", "relu"])
def test_a_conv_larger_than_its_weight_is_a_site_when_its_units_carry_to_a_dense_head(act):
    """The site is chosen by work, not by size alone: a conv whose 384 output units per sample outnumber its 222
    parameters is still reached through its output when each unit carries through the activation, a disjoint
    max-pool and flatten into the dense head (a few multiply-adds each); where the units meet another conv
    (which moves a whole window for one unit) it is differenced element by element, as before. Either way the
    values are the direct differences'."""
    conv = {"type": "conv2d", "channels": 6, "kernel": 3, "padding": 1}
    for second, expect_site in ((False, True), (True, False)):
        net = _conv_net(4, conv, act, second)
        params, x, target = net.cast(np.float64)
        base = numeric._base_pass(net, params, x, target)
        names = list(net.layers[0].param_names)
        assert int(np.prod(net.layers[0].out_shape)) > sum(net.params[n].size for n in names)
        assert numeric._site_for(base, net.layers[0], names) == expect_site
        fast = numeric.differentiate(net, names=names)
        slow = numeric.differentiate(net, names=names, structured=False)
        assert not fast.notes
        for n in names:
            np.testing.assert_allclose(fast.values[n], slow.values[n], rtol=1e-10, atol=1e-14, err_msg=n)
