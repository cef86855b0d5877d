"""The error model's margin: correct networks pass, and by how much.

For every comparison row the largest |c - r| / bound over its elements is the share of the
tolerance a correct gradient used. The sweep covers every numeric method, float32 and float64,
trainable scaled_sigmoid c and beta (saturated too), dL/dx (`wrt_input`) and the built-in
activations; each correct spec must pass, spurious kinks must not appear on smooth networks,
and the worst ratio must stay below MAX_RATIO so the margin is visible, not just positive.
`python -m tests.test_margins` prints the table that benchmarks/README.md quotes.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from gradlab import runner
from gradlab.spec import validate

MAX_RATIO = 0.5
METHODS = ("central", "richardson", "complex_step")
DTYPES = ("float64", "float32")
SMOOTH = {"sigmoid", "tanh", "silu", "softmax", "scaled_sigmoid"}


def _doc(sizes, act, *, dtype, method, seed, loss="softmax_cross_entropy", bias="normal", scheme="xavier_uniform", std=0.1,
         scale=1.0, act_extra=None, batch=8, wrt_input=True):
    layers = []
    for n in sizes[1:-1]:
        layers += [{"type": "dense", "units": n}, {"type": "activation", "fn": act, **(act_extra or {})}]
    layers.append({"type": "dense", "units": sizes[-1]})
    target = {"kind": "onehot"} if "entropy" in loss else {"kind": "regression"}
    return {"seed": seed, "dtype": dtype, "input": {"dim": sizes[0], "batch": batch, "scale": scale}, "target": target,
            "network": {"layers": layers, "init": {"scheme": scheme, "bias": bias, "std": std}}, "loss": {"fn": loss},
            "check": {"numeric": {"method": method}, "wrt_input": wrt_input}}


TRAINABLE = {"type": "activation", "c": 1.0, "beta": 1.0, "trainable": True}


def _cases(method, dtype):
    """Correct specs for one (method, dtype): ids and documents."""
    out = []
    pairs = itertools.product(("sigmoid", "tanh", "silu", "softmax", "relu"), ("sse", "softmax_cross_entropy"))
    for seed, ((act, loss), sizes) in enumerate(zip(pairs, itertools.cycle([(4, 8, 3), (3, 16, 16, 2), (5, 12, 8, 4)]))):
        out.append((f"{act}-{'x'.join(map(str, sizes))}-{loss}", _doc(sizes, act, dtype=dtype, method=method, seed=seed, loss=loss)))
    # saturating inits: a confident softmax (the loss rounds on the logits' scale), a chain of saturated units
    out.append(("tanh-wide-normal", _doc((2, 4, 16, 2), "tanh", dtype=dtype, method=method, seed=779, scheme="normal", std=1.0, batch=32)))
    out.append(("silu-bias3-small-input", _doc((3, 8, 16, 2), "silu", dtype=dtype, method=method, seed=443, scheme="he_normal", bias=3.0, scale=0.1)))
    out.append(("sigmoid-bias20", _doc((8, 4, 2, 3), "sigmoid", dtype=dtype, method=method, seed=184, scheme="normal", std=3.0, bias=20.0, scale=5.0)))
    out.append(("tanh-bias20-deep", _doc((3, 8, 8, 8, 2), "tanh", dtype=dtype, method=method, seed=855, scheme="normal", bias=20.0, scale=5.0)))
    # trainable scaled_sigmoid: c and beta, moderate, saturated (bias 20, 30), steep and flat beta
    for seed, (c, beta, bias, std) in enumerate([(1.0, 1.0, "normal", 1.0), (2.0, 0.5, "normal", 1.0), (0.5, 3.0, 3.0, 3.0),
                                                  (2.0, 1.0, 20.0, 0.1), (1.0, 0.5, 30.0, 1.0), (0.5, 1.0, 30.0, 0.1)]):
        extra = {**TRAINABLE, "c": c, "beta": beta}
        out.append((f"scaled_sigmoid-c{c}-beta{beta}-bias{bias}",
                    _doc((3, 8, 4, 2), "scaled_sigmoid", dtype=dtype, method=method, seed=600 + seed, loss="sse", bias=bias,
                         scheme="normal", std=std, scale=2.0, act_extra=extra, batch=4)))
    return out


def margins(method, dtype):
    """(worst ratio, its label, failures, spurious kinks) over the sweep for one method and dtype."""
    worst, label, failed, kinked = 0.0, "", [], []
    for name, doc in _cases(method, dtype):
        act = doc["network"]["layers"][1]["fn"]
        result = runner.run(validate(doc))
        if not result.passed:
            failed.append(name)
        if act in SMOOTH and any(c.kinks for c in result.comparisons):
            kinked.append(name)
        for c in result.comparisons:
            for w in c.worst:
                ratio = w["abs_err"] / w["bound"] if w["bound"] > 0 else np.inf
                if ratio > worst:
                    worst, label = ratio, f"{name}: {c.parameter} {c.candidate}/{c.reference}"
    return worst, label, failed, kinked


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("method", METHODS)
def test_correct_networks_pass_with_margin(method, dtype):
    worst, label, failed, kinked = margins(method, dtype)
    assert not failed, f"correct specs failed ({method}, {dtype}): {failed}"
    assert not kinked, f"kinks reported on smooth networks ({method}, {dtype}): {kinked}"
    assert worst < MAX_RATIO, f"a correct gradient used {worst:.2f} of its bound ({label})"


# --- the three reproductions of issue 9 -------------------------------------------------------------


def _check(doc, **kwargs):
    return runner.run(validate(doc), **kwargs)


@pytest.mark.parametrize("method", ["central", "richardson"])
def test_confident_softmax_noise_is_measured_not_assumed(method):
    """float64 silu net, confident softmax: the per-sample loss rounds on the logits' scale, not its own.

    The old estimate (16 eps |f| / h) put the numeric error at 1e-14 where the difference was 1e-12.
    """
    doc = _doc((8, 16, 2), "silu", dtype="float64", method=method, seed=734, scheme="he_normal", std=1.0, scale=5.0)
    result = _check(doc)
    assert result.passed, result.failures
    assert not any(c.kinks for c in result.comparisons)


def test_wrt_input_reports_no_kinks_on_a_smooth_network():
    """tanh net, wrt_input: one confident sample's loss (f = 0.008, logits ~4) used to be '3 kinks'."""
    doc = _doc((2, 4, 16, 2), "tanh", dtype="float64", method="central", seed=779, scheme="normal", std=1.0, batch=32)
    result = _check(doc)
    assert result.passed
    assert sum(c.kinks for c in result.comparisons) == 0


@pytest.mark.parametrize("dtype", DTYPES)
def test_saturated_trainable_beta(dtype):
    """c u s (1 - s) keeps few digits of 1 - s once s ~ 1: float32 gives 0 where the truth is 1.4e-5."""
    doc = _doc((8, 8, 1), "scaled_sigmoid", dtype=dtype, method="complex_step", seed=349, loss="sse", bias=20.0,
               act_extra={**TRAINABLE, "c": 2.0}, batch=1)
    result = _check(doc)
    assert result.passed, result.failures
    beta = next(c for c in result.comparisons if c.parameter == "layers.1.beta" and c.candidate == "analytic")
    if dtype == "float64":  # float32 cannot resolve it at all (s rounds to 1.0); float64 keeps ~7 digits
        assert beta.worst[0]["bound"] < 1e-5 * abs(beta.worst[0]["reference"])


@pytest.mark.parametrize("method", METHODS)
def test_float32_trainable_beta_steep(method):
    """beta = 3 on pre-activations ~ 5: float32 rounds s(1 - s) to 5e-4 relative; the model must know."""
    doc = _doc((2, 2, 2), "scaled_sigmoid", dtype="float32", method=method, seed=609, loss="mse", bias=3.0, scheme="normal",
               std=3.0, scale=0.1, act_extra={**TRAINABLE, "c": 0.5, "beta": 3.0}, batch=2)
    assert _check(doc).passed


def test_float32_underflow_in_the_forward():
    """torch's float32 sigmoid is 0 below -88, so silu(-90) is 0 instead of -7e-38: a forward error."""
    doc = _doc((5, 4, 8, 4, 2), "silu", dtype="float32", method="complex_step", seed=405, loss="sse", bias=20.0, scheme="normal",
               std=3.0, scale=0.1, batch=32)
    doc["network"]["layers"].insert(0, {"type": "activation", "fn": "silu"})
    assert _check(doc).passed


if __name__ == "__main__":  # the table in benchmarks/README.md
    print("| method | dtype | max ratio | where |")
    print("|---|---|---|---|")
    for method, dtype in itertools.product(METHODS, DTYPES):
        worst, label, failed, kinked = margins(method, dtype)
        print(f"| {method} | {dtype} | {worst:.3f} | {label} |" + (f" FAILED {failed}" if failed else "") + (f" KINKS {kinked}" if kinked else ""))
