"""The three engines agree on every shipped spec, and disagree loudly on a planted bug."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from gradlab import runner
from gradlab.cli import main
from gradlab.engines import analytic, autograd, numeric
from gradlab.network import build
from gradlab.ops import ACTIVATIONS, LOSSES, Activation, Loss
from gradlab.spec import load_spec

from .conftest import SPECS, registered


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_engines_agree_on_shipped_spec(path):
    result = runner.check_file(path)
    statuses = {c.status for c in result.comparisons}
    assert result.passed, [c for c in result.comparisons if c.status == "fail"]
    assert statuses <= {"pass", "skipped", "zero-gradient"}
    assert "pass" in statuses or "zero-gradient" in statuses


def test_step_network_is_reported_zero_gradient_not_pass():
    result = runner.check_file(next(p for p in SPECS if "step" in p.stem))
    assert {c.status for c in result.comparisons} == {"zero-gradient"}


def test_all_engines_read_the_same_parameters():
    spec = load_spec(SPECS[0])
    a, b = build(spec), build(spec)
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])
    np.testing.assert_array_equal(a.x, b.x)


def test_wrt_input(write_spec):
    text = (SPECS[0].read_text() + "check: {wrt_input: true}\n")
    result = runner.check_file(write_spec(text))
    rows = [c for c in result.comparisons if c.parameter == "input"]
    assert len(rows) == 3 and all(c.status == "pass" for c in rows)


def test_float32_network_passes(write_spec):
    text = SPECS[0].read_text().replace("dtype: float64", "dtype: float32")
    if "dtype: float32" not in text:
        text = "dtype: float32\n" + text
    result = runner.check_file(write_spec(text))
    assert result.dtype == "float32" and result.passed


def test_cuda_is_skipped_with_reason_when_absent():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the cuda test below covers it")
    g = autograd.gradients(build(load_spec(SPECS[0])), "cuda")
    assert g.skipped and "CUDA" in g.skipped


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA device")
def test_cuda_agrees_with_cpu():
    net = build(load_spec(SPECS[0]))
    cpu, gpu = autograd.gradients(net, "cpu"), autograd.gradients(net, "cuda")
    for k in cpu.values:
        np.testing.assert_allclose(gpu.values[k], cpu.values[k], rtol=1e-10, atol=1e-14)


def test_analytic_matches_autograd_exactly_enough():
    for path in SPECS:
        net = build(load_spec(path))
        a, t = analytic.gradients(net), autograd.gradients(net, "cpu")
        for k in a.values:
            np.testing.assert_allclose(a.values[k], t.values[k], rtol=1e-9, atol=1e-14, err_msg=f"{path.stem}:{k}")


def test_numeric_engine_is_forward_only_and_float64(write_spec):
    text = SPECS[0].read_text().replace("dtype: float64", "dtype: float32")
    net = build(load_spec(write_spec(text)))
    g = numeric.differentiate(net)
    assert g.dtype == "float64" and all(v.dtype == np.float64 for v in g.values.values())


# --- a planted bug ----------------------------------------------------------------------------

BUGGY_SPEC = """\
name: planted
input: {dim: 3, batch: 5}
target: {kind: regression}
network:
  layers:
    - {type: dense, units: 4}
    - {type: activation, fn: sigmoid}
    - {type: dense, units: 3}
    - {type: activation, fn: buggy_sigmoid}
loss: {fn: sse}
"""

_sig = ACTIVATIONS.get("sigmoid")
# seed 003's slip in spirit: a derivative that is almost right -- s(1 + s) instead of s(1 - s)
BUGGY = Activation(
    name="buggy_sigmoid",
    doc="sigmoid with a wrong backward",
    forward=_sig.forward,
    backward=lambda z, a, g, hp: (g * a * (1 + a), {}),
    torch=_sig.torch,
)


def test_planted_wrong_backward_exits_1_and_names_parameter(write_spec):
    path = write_spec(BUGGY_SPEC)
    with registered(ACTIVATIONS, BUGGY):
        result = CliRunner().invoke(main, ["check", str(path)])
        js = CliRunner().invoke(main, ["check", str(path), "--format", "json"])
    assert result.exit_code == 1, result.output
    assert "layers.2.weight" in result.output and "FAIL" in result.output
    doc = json.loads(js.output)
    failed = {(c["parameter"], c["candidate"], c["reference"]) for c in doc["specs"][0]["comparisons"] if c["status"] == "fail"}
    # the analytic engine is wrong everywhere below the buggy layer; autograd stays right
    assert ("layers.2.weight", "analytic", "numeric") in failed
    assert ("layers.0.weight", "analytic", "numeric") in failed
    assert not any(c == "autograd[cpu]" for _, c, _ in failed)


def test_planted_wrong_loss_sign_fails(write_spec):
    """Seed 003's delta^L = f'(u)(t - y) has the sign of dE/dy backwards."""
    sse = LOSSES.get("sse")
    wrong = Loss(name="sse_seed003", doc="t - y", forward=sse.forward, backward=lambda y, t: t - y, torch=sse.torch, targets=sse.targets)
    with registered(LOSSES, wrong):
        path = write_spec(BUGGY_SPEC.replace("buggy_sigmoid", "sigmoid").replace("fn: sse", "fn: sse_seed003"))
        result = runner.check_file(path)
    fails = [c for c in result.comparisons if c.status == "fail"]
    assert fails and all(c.candidate == "analytic" for c in fails)
    assert all(c.cosine < -0.99 for c in fails if c.reference == "numeric")
