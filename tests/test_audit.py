"""gradlab audit: correct ops pass, wrong ones are caught with a shrunk counterexample,
contract errors exit 2, and custom ops work inside specs."""

import json
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from gradlab import runner
from gradlab.audit import TargetError, audit, prepare, reproduce
from gradlab.audit.strategies import SATURATED
from gradlab.cli import main
from gradlab.errors import SpecError
from gradlab.spec import load_spec

from .audit_targets import correct, wrong
from .conftest import ROOT

TARGETS = Path(__file__).parent / "audit_targets"
BUDGET = 60  # small budgets keep the suite fast; the CLI default is 200


def target(module: str, name: str) -> str:
    return f"{TARGETS / module}.py:{name}"


# --- the catalogue of correct ops ------------------------------------------------------------


@pytest.mark.parametrize("name", correct.CATALOGUE)
def test_correct_op_passes_without_declared_kinks(name):
    assert not hasattr(getattr(correct, name), "kinks")  # relu, step, hardtanh: kinks found, not told
    result = audit(target("correct", name), examples=BUDGET)
    assert result.passed, [f.message for f in result.findings]
    assert result.coverage.examples == BUDGET and result.coverage.judged > 0


def test_search_reaches_saturation_zeros_signs_and_non_square_batches():
    c = audit(target("correct", "Sigmoid"), examples=200).coverage
    assert c.max_abs >= 30 and c.saturated > 0 and c.zeros > 0 and c.near_zero > 0
    assert c.negative > 0 and c.positive > 0
    assert any(len(s) >= 2 and s[-2] > 1 for s in c.shapes), "batches of more than one row"
    assert any(len(s) >= 2 and s[-1] != s[-2] for s in c.shapes), "non-square shapes"
    assert {len(s) for s in c.shapes} >= {1, 2, 3}


def test_relu_kinks_are_found_by_the_stencil_not_judged():
    result = audit(target("correct", "Relu"), examples=BUDGET)
    assert result.passed and result.coverage.kink_stencils > 0


# --- the catalogue of wrong ops --------------------------------------------------------------


def _mismatch(name: str, examples: int = 150):
    result = audit(target("wrong", name), examples=examples)
    assert not result.passed
    finding = result.findings[0]
    assert finding.kind == "mismatch", finding.message
    return finding


def test_relu_derivative_from_the_wrong_side():
    f = _mismatch("ReluWrongSide")
    z = f.case.inputs["z"]
    bad = f.checks[0].mismatch
    assert np.all(z[bad] != 0)  # away from the kink: a real error, not a kink


def test_sigmoid_s_times_one_plus_s():
    f = _mismatch("SigmoidPlus")
    c = f.checks[0]
    assert np.all(np.abs(c.backward - c.numeric)[c.mismatch] > 1e-3)


def test_softmax_diagonal_only_needs_two_features():
    f = _mismatch("SoftmaxDiagonal")
    assert f.case.inputs["z"].shape[-1] >= 2  # right for one feature: the shrinker cannot go below two


def test_mse_missing_one_over_n_needs_two_rows():
    f = _mismatch("MSENoMean")
    pred = f.case.inputs["pred"]
    assert pred.shape[0] >= 2  # right for a batch of one row
    c = f.checks[0]
    np.testing.assert_allclose(c.backward[c.mismatch], pred.shape[0] * c.numeric[c.mismatch], rtol=1e-6)


def test_dense_wrong_transpose_non_square_raises_with_traceback():
    result = audit(target("wrong", "DenseWrongTranspose"), examples=BUDGET)
    f = result.findings[0]
    assert f.kind == "raised" and f.stage == "backward"
    assert "wrong.py" in f.traceback and "ValueError" in f.traceback
    assert "gradlab/audit" not in f.traceback  # only the user's frames


def test_dense_wrong_transpose_square_is_a_wrong_input_gradient():
    f = _mismatch("DenseWrongTransposeSquare")
    assert [c.name for c in f.checks if c.mismatch.any()] == ["x"]  # W and b gradients are right


def test_sigmoid_wrong_only_above_10_is_found_there():
    f = _mismatch("SigmoidClippedAbove10")
    z = f.case.inputs["z"]
    assert np.all(z[f.checks[0].mismatch] > 10)


def test_counterexamples_are_shrunk_to_small_inputs():
    for name in ("SigmoidPlus", "ReluWrongSide", "SigmoidClippedAbove10"):
        assert _mismatch(name).case.inputs["z"].size == 1


# --- torch.autograd.Function -----------------------------------------------------------------


def test_cubic_function_right_and_wrong():
    assert audit(target("functions", "Cubic"), examples=BUDGET).passed
    result = audit(target("functions", "CubicWrong"), examples=BUDGET)
    f = result.findings[0]
    assert result.kind == "function" and f.kind == "mismatch"
    x = f.case.inputs["x"][f.checks[0].mismatch]
    np.testing.assert_allclose(f.checks[0].backward[f.checks[0].mismatch], f.upstream[f.checks[0].mismatch] * (3 * x**2 - 2 * x + 1))


def test_function_with_two_tensor_arguments_checks_both():
    result = audit(target("functions", "Mul"), examples=20)
    assert result.passed and result.call == "apply(a, b)"


# --- kinds and contracts ---------------------------------------------------------------------


@pytest.mark.parametrize("module, name, kind", [
    ("correct", "Relu", "activation"), ("correct", "MSE", "loss"), ("correct", "Dense", "layer"),
    ("functions", "Cubic", "function"), ("broken", "NoBackward", None),
])
def test_kind_is_detected(module, name, kind):
    if kind is None:
        with pytest.raises(TargetError, match="no method 'backward'"):
            prepare(target(module, name))
    else:
        assert prepare(target(module, name)).kind == kind


def test_ambiguous_kind_asks_for_kind():
    with pytest.raises(TargetError, match="--kind"):
        prepare(target("broken", "Ambiguous"))


def test_instances_and_module_paths_load():
    assert prepare(target("broken", "sigmoid_instance")).kind == "activation"
    assert prepare("tests.audit_targets.correct:Tanh").kind == "activation"


@pytest.mark.parametrize("args, fragments", [
    (["broken.py:NoBackward"], ["broken.py", "no method 'backward'", "backward(z, grad_out)"]),
    (["missing.py:Op"], ["missing.py", "no such file"]),
    (["correct.py:Sigmod"], ["no class or object named 'Sigmod'", "did you mean 'Sigmoid'"]),
    (["broken.py:NeedsArgs"], ["NeedsArgs() with no arguments"]),
    (["broken.py:Ambiguous"], ["cannot tell what kind", "--kind"]),
    (["correct.py:Relu", "--kind", "loss"], ["a loss needs forward(pred, target)", "takes 1 argument"]),
    (["correct.py"], ["expected path/to/file.py:Name"]),
])
def test_usage_errors_exit_2_with_a_clear_message(args, fragments):
    args = [str(TARGETS / args[0]) if ".py" in args[0] else args[0]] + args[1:]
    result = CliRunner().invoke(main, ["audit", *args])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in result.output


# --- other ways to be wrong ------------------------------------------------------------------


@pytest.mark.parametrize("name, kind, fragment", [
    ("RaisesOnWideInput", "raised", "IndexError"),
    ("LogNoDomain", "non-finite", "declare domain"),
    ("SGDInBackward", "mutation", "'W'"),
    ("SGDReplacesAttribute", "mutation", "replaced self.W (params['W']) with new arrays"),  # was a mismatch: forward read the new self.W
    ("SGDReplacesParams", "mutation", "replaced params['W'] with new arrays"),
    ("Float32Forward", "precision", "float32"),
    ("WrongShape", "contract", "shape"),
    ("Stateful", "nondeterministic", "keep state between calls"),
])
def test_misbehaviour_is_a_counterexample_of_its_own_kind(name, kind, fragment):
    result = audit(target("broken", name), examples=BUDGET)
    assert [f.kind for f in result.findings] == [kind]
    assert fragment in result.findings[0].message + result.findings[0].traceback


def test_an_in_place_write_to_grad_out_with_right_values_is_a_warning():
    result = audit(target("broken", "InPlace"), examples=BUDGET)  # issue 20 item 4: was a 'mutation' failure
    assert result.passed and [w.kind for w in result.warnings] == ["in-place"] and "grad_out" in result.warnings[0].message
    result.strict = True  # --strict
    assert not result.passed


def test_exception_counterexample_is_shrunk_to_the_smallest_failing_width():
    f = audit(target("broken", "RaisesOnWideInput"), examples=BUDGET).findings[0]
    assert f.case.inputs["z"].shape[-1] == 4 and "broken.py" in f.traceback


def test_declared_domain_is_respected():
    result = audit(target("broken", "Log"), examples=BUDGET)
    assert result.passed and result.coverage.negative == 0
    far = audit(target("broken", "LogFarDomain"), examples=20)
    assert far.passed and far.coverage.max_abs > 100


def test_layer_parameters_are_restored_after_the_audit():
    subject = prepare(target("correct", "Dense"))
    before = {k: v.copy() for k, v in subject.obj.params.items()}
    from gradlab.audit.search import run
    from gradlab.audit.judge import tolerance

    run(subject, examples=10, seed=0, tol=tolerance())
    for k, v in before.items():
        np.testing.assert_array_equal(subject.obj.params[k], v)


# --- determinism, reproduction, CLI ----------------------------------------------------------


def test_same_seed_same_counterexample_and_nothing_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    a = audit(target("wrong", "SigmoidClippedAbove10"), examples=BUDGET, seed=3)
    b = audit(target("wrong", "SigmoidClippedAbove10"), examples=BUDGET, seed=3)
    np.testing.assert_array_equal(a.findings[0].case.inputs["z"], b.findings[0].case.inputs["z"])
    assert a.coverage.to_dict() == b.coverage.to_dict()
    assert list(tmp_path.iterdir()) == []  # no .hypothesis example database in the user's tree


def test_reproduce_line_runs_and_shows_the_same_failure(tmp_path):
    result = CliRunner().invoke(main, ["audit", target("wrong", "SigmoidPlus"), "--examples", "30"])
    assert result.exit_code == 1
    line = next(l.strip() for l in result.output.splitlines() if l.strip().startswith("python -c"))
    argv = shlex.split(line)
    out = subprocess.run([sys.executable, *argv[1:]], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "FAIL  mismatch" in out.stdout


def test_reproduce_returns_none_when_right():
    assert reproduce(target("correct", "Sigmoid"), z=np.array([[0.5, -2.0]]), grad_out=np.ones((1, 2)), quiet=True) is None
    f = reproduce(target("wrong", "MSENoMean"), pred=np.zeros((2, 1)), target=np.ones((2, 1)), quiet=True)
    assert f is not None and f.kind == "mismatch"


def test_cli_exit_codes_and_counterexample_report():
    ok = CliRunner().invoke(main, ["audit", target("correct", "Silu"), "--examples", "20"])
    assert ok.exit_code == 0 and ok.output.splitlines()[-1].startswith("PASS")
    bad = CliRunner().invoke(main, ["audit", target("wrong", "SoftmaxDiagonal"), "--examples", "40"])
    assert bad.exit_code == 1
    for fragment in ("counterexample (shrunk)", "grad_out", "backward", "numeric", "abs err", "reproduce:", "FAIL"):
        assert fragment in bad.output


def test_cli_json_output(tmp_path):
    out = tmp_path / "audit.json"
    result = CliRunner().invoke(main, ["audit", target("wrong", "MSENoMean"), "--examples", "30", "--format", "json", "--output", str(out)])
    assert result.exit_code == 1
    doc = json.loads(out.read_text())
    assert doc["passed"] is False and doc["kind"] == "loss" and doc["tolerance"]["rtol"] == 1e-6
    cx = doc["counterexamples"][0]
    assert cx["kind"] == "mismatch" and cx["tensors"][0]["mismatched"] and cx["reproduce"].startswith("python -c")
    assert {"pred", "target"} <= set(cx["inputs"])


# --- custom ops in specs ---------------------------------------------------------------------

SPEC = """\
input: {{dim: 3, batch: 4}}
target: {{kind: regression}}
network:
  layers:
    - {{type: dense, units: {units}}}
    - {layer}
    - {{type: dense, units: 2}}
loss: {loss}
"""


def _spec(tmp_path, layer="{type: activation, fn: custom, impl: 'ops.py:Sigmoid'}", loss="{fn: sse}", units=5, module="correct"):
    (tmp_path / "ops.py").write_text((TARGETS / f"{module}.py").read_text())
    path = tmp_path / "net.yaml"
    path.write_text(SPEC.format(layer=layer, loss=loss, units=units))
    return path


def test_shipped_custom_specs_pass_on_all_three_engines():
    for path in sorted((ROOT / "specs" / "custom").glob("*.yaml")):
        result = runner.check_file(path)
        assert result.passed, path
        assert {c.status for c in result.comparisons} == {"pass"}  # autograd ran through torch_forward


def test_custom_activation_path_is_relative_to_the_spec(tmp_path, monkeypatch):
    path = _spec(tmp_path)
    monkeypatch.chdir(ROOT)
    result = runner.check_file(path)
    assert result.passed
    skipped = [c for c in result.comparisons if c.status == "skipped"]
    assert skipped and all("torch_forward" in c.note for c in skipped)  # no torch mirror: autograd skipped
    assert {c.status for c in result.comparisons if c.candidate == "analytic" and c.reference == "numeric"} == {"pass"}


def test_wrong_custom_activation_fails_the_check(tmp_path):
    path = _spec(tmp_path, layer="{type: activation, fn: custom, impl: 'ops.py:SigmoidPlus'}", module="wrong")
    result = CliRunner().invoke(main, ["check", str(path)])
    assert result.exit_code == 1 and "layers.0.weight" in result.output


def test_custom_layer_and_loss(tmp_path):
    path = _spec(tmp_path, layer="{type: custom, impl: 'ops.py:Dense'}", units=3)
    result = runner.check_file(path)
    assert result.passed
    assert {"layers.1.W", "layers.1.b"} <= {c.parameter for c in result.comparisons}


def test_wrong_custom_layer_fails_below_it(tmp_path):
    (tmp_path / "ops.py").write_text((TARGETS / "wrong.py").read_text())
    path = tmp_path / "net.yaml"
    path.write_text(SPEC.format(layer="{type: custom, impl: 'ops.py:DenseWrongTransposeSquare'}", loss="{fn: sse}", units=3))
    fails = {c.parameter for c in runner.check_file(path).failures}
    assert "layers.0.weight" in fails and "layers.1.W" not in fails


@pytest.mark.parametrize("layer, loss, units, path, fragment", [
    ("{type: activation, fn: custom, impl: 'nothere.py:Sigmoid'}", "{fn: sse}", 5, "network.layers[1].impl", "no such file"),
    ("{type: activation, fn: custom, impl: 'ops.py:Sigmod'}", "{fn: sse}", 5, "network.layers[1].impl", "did you mean 'Sigmoid'"),
    ("{type: activation, fn: custom, impl: 'ops.py:MSE'}", "{fn: sse}", 5, "network.layers[1].impl", "an activation needs forward(z)"),
    ("{type: activation, fn: custom, impl: 'ops.py:Dense'}", "{fn: sse}", 5, "network.layers[1].impl", "must keep its input's shape"),
    ("{type: activation, fn: custom}", "{fn: sse}", 5, "network.layers[1].impl", "fn: custom needs impl"),
    ("{type: activation, fn: tanh, impl: 'ops.py:Tanh'}", "{fn: sse}", 5, "network.layers[1].impl", "only read with fn: custom"),
    ("{type: custom, impl: 'ops.py:Dense'}", "{fn: sse}", 5, "network.layers[1].impl", "takes 3 input features, but its input has 5"),
    ("{type: activation, fn: tanh}", "{fn: custom, impl: 'ops.py:MSE'}", 5, "loss.impl", "sum over the batch's rows"),
    ("{type: activation, fn: tanh}", "{fn: custom, impl: 'ops.py:Relu'}", 5, "loss.impl", "a loss needs"),
])
def test_custom_op_spec_errors_name_the_key_path(tmp_path, layer, loss, units, path, fragment):
    spec = _spec(tmp_path, layer=layer, loss=loss, units=units)
    with pytest.raises(SpecError) as info:
        load_spec(spec)
    assert info.value.path == path and fragment in info.value.message
    result = CliRunner().invoke(main, ["check", str(spec)])
    assert result.exit_code == 2 and path in result.output


def test_custom_op_missing_method_in_a_spec(tmp_path):
    spec = _spec(tmp_path, layer="{type: activation, fn: custom, impl: 'ops.py:NoBackward'}", module="broken")
    with pytest.raises(SpecError) as info:
        load_spec(spec)
    assert info.value.path == "network.layers[1].impl"
    assert "ops.py:NoBackward" in info.value.message and "no method 'backward'" in info.value.message


def test_custom_layer_evaluates_stacks_slice_by_slice(tmp_path):
    from gradlab.network import CustomLayer, build

    net = build(load_spec(_spec(tmp_path, layer="{type: custom, impl: 'ops.py:Dense'}", units=3)))
    layer = next(l for l in net.layers if isinstance(l, CustomLayer))
    x = np.arange(12.0).reshape(4, 3) / 10
    b = net.params["layers.1.b"]
    stacked_b = np.stack([b, b + 1.0])  # (P, out): stack axes in front of the parameter's own shape
    y = layer.forward({**net.params, "layers.1.b": stacked_b}, x)
    assert y.shape == (2, 4, 5)
    np.testing.assert_allclose(y[1] - y[0], np.ones((4, 5)))
    np.testing.assert_allclose(layer.forward(net.params, np.stack([x, 2 * x]))[1], layer.forward(net.params, 2 * x))


# --- user code that tries to end gradlab ------------------------------------------------------


@pytest.fixture
def cli_sigint(monkeypatch):
    """As under the CLI: the SIGINT handler is installed and no real Ctrl-C has arrived."""
    from gradlab import usercode

    monkeypatch.setitem(usercode._sigint, "installed", True)
    monkeypatch.setitem(usercode._sigint, "received", False)
    return usercode._sigint


@pytest.mark.parametrize("name, stage, fragment", [
    ("ExitInForward", "forward", "called sys.exit(0)"),
    ("ExitInBackwardAboveOneAndAHalf", "backward", "called sys.exit(0)"),
    ("RaisesKeyboardInterrupt", "backward", "raised KeyboardInterrupt"),
    ("ExitInForwardNextToOneHalf", "forward", "called sys.exit(3) at a point of the finite-difference stencil"),
])
def test_exit_or_keyboard_interrupt_in_user_code_is_a_raised_counterexample(cli_sigint, name, stage, fragment):
    result = audit(target("hostile", name), examples=BUDGET)
    assert [f.kind for f in result.findings] == ["raised"]
    f = result.findings[0]
    assert f.stage == stage and fragment in f.message and "hostile.py" in f.traceback


def test_exit_only_for_large_inputs_is_found_and_shrunk(cli_sigint):
    f = audit(target("hostile", "ExitInBackwardAboveOneAndAHalf"), examples=BUDGET).findings[0]
    np.testing.assert_array_equal(f.case.inputs["z"], [2.0])  # the simplest value with |z| > 1.5


@pytest.mark.parametrize("name", ["ExitInForward", "ExitInBackwardAboveOneAndAHalf", "RaisesKeyboardInterrupt"])
def test_cli_never_exits_0_when_user_code_exits(tmp_path, name):
    """A real process: sys.exit(0) inside the op must give exit 1, a report and the `raised` kind."""
    out = tmp_path / "audit.json"
    proc = subprocess.run([sys.executable, "-m", "gradlab", "audit", target("hostile", name), "--examples", "30",
                           "--format", "json", "--output", str(out)], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    doc = json.loads(out.read_text())
    assert doc["passed"] is False and [c["kind"] for c in doc["counterexamples"]] == ["raised"]
    assert "hostile.py" in doc["counterexamples"][0]["traceback"]


def test_text_report_names_the_raised_kind(cli_sigint):
    result = CliRunner().invoke(main, ["audit", target("hostile", "ExitInForward"), "--examples", "10"])
    assert result.exit_code == 1
    assert "FAIL  raised: forward called sys.exit(0)" in result.output
    assert result.output.splitlines()[-1] == "FAIL: 1 counterexample(s) (raised)"


def test_real_ctrl_c_and_deadline_still_stop_the_audit(cli_sigint):
    from gradlab.usercode import Timeout

    cli_sigint["received"] = True  # the SIGINT handler saw a real Ctrl-C
    with pytest.raises(KeyboardInterrupt):
        audit(target("hostile", "RaisesKeyboardInterrupt"), examples=5)
    cli_sigint["received"] = False
    with pytest.raises(Timeout):
        audit(target("hostile", "DeadlineExpires"), examples=5)


def test_sys_exit_while_importing_the_target_exits_2(tmp_path):
    ops = tmp_path / "ops.py"
    ops.write_text("import sys\nsys.exit(0)\n\nclass Op:\n    pass\n")
    proc = subprocess.run([sys.executable, "-m", "gradlab", "audit", f"{ops}:Op"], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.startswith("Error:") and "ops.py" in proc.stderr and "Traceback" not in proc.stderr


# --- domains a loss does not declare ----------------------------------------------------------


@pytest.mark.parametrize("module, name, domain", [
    ("correct", "CrossEntropyNoDomain", "(0, 1]"),  # the loss: it used to fail on pred = [[0.]]
    ("correct", "SoftCrossEntropyNoDomain", "(0, 1]"),
    ("correct", "BinaryCrossEntropyNoDomain", "(0, 1)"),  # log(1 - p): open at 1 too
    ("hostile", "PoissonNoDomain", "(0, inf)"),  # regression targets, finite above 1: a rate, not a probability
])
def test_loss_on_probabilities_gets_its_domain_inferred(module, name, domain):
    result = audit(target(module, name), examples=BUDGET)
    assert result.passed, [f.message for f in result.findings]
    assert result.domain == domain and "not at 0" in result.domain_note
    assert result.coverage.negative == 0 and result.coverage.zeros == 0


def test_inferred_domain_is_drawn_up_to_a_closed_bound():
    c = audit(target("correct", "CrossEntropyNoDomain"), examples=200).coverage
    assert c.max_abs == 1.0 and c.near_zero > 0  # p = 1 exactly (log 1 = 0 is defined) and p near 0


def test_losses_defined_everywhere_get_no_domain():
    for module, name in (("correct", "MSE"), ("wrong", "MSENoMean")):
        subject = prepare(target(module, name))
        assert subject.envelope.low == -np.inf and subject.envelope.high == np.inf and not subject.domain_note


def test_wrong_loss_is_still_caught_inside_the_inferred_domain():
    result = audit(target("hostile", "CrossEntropyNoMinus"), examples=BUDGET)
    assert [f.kind for f in result.findings] == ["mismatch"] and result.domain == "(0, 1]"
    assert np.all(result.findings[0].case.inputs["pred"] > 0)


@pytest.mark.parametrize("name, fragment", [
    ("CrossEntropyNaNBackwardNearZero", "inside the domain (0, 1] (inferred)"),  # strictly inside an inferred domain
    ("CrossEntropyNaNInside", "inside the domain (0, 1)"),  # strictly inside a declared one
])
def test_nan_strictly_inside_the_domain_is_still_a_finding(name, fragment):
    result = audit(target("hostile", name), examples=BUDGET)
    assert [f.kind for f in result.findings] == ["non-finite"]
    assert fragment in result.findings[0].message


def test_non_finite_on_a_domain_bound_is_undetermined_not_a_failure(capsys):
    ce = target("correct", "CrossEntropyNoDomain")
    assert reproduce(ce, pred=np.array([[0.0]]), target=np.array([[1.0]])) is None  # the first example
    assert "UNDETERMINED" in capsys.readouterr().out
    f = reproduce(ce, pred=np.array([[-0.5]]), target=np.array([[1.0]]), quiet=True)
    assert f is not None and f.kind == "non-finite"  # outside the domain, not on it: still reported


def test_search_discards_cases_on_a_bound_where_the_op_is_undefined():
    from dataclasses import replace

    from gradlab.audit.judge import tolerance
    from gradlab.audit.search import run

    subject = prepare(target("correct", "CrossEntropyNoDomain"))
    subject.envelope = replace(subject.envelope, low_closed=True)  # draw p = 0 too: log 0 there
    result = run(subject, examples=BUDGET, seed=0, tol=tolerance())
    assert result.passed and result.coverage.discarded > 0


def test_json_and_text_say_the_domain_was_inferred(tmp_path):
    out = tmp_path / "audit.json"
    result = CliRunner().invoke(main, ["audit", target("correct", "CrossEntropyNoDomain"), "--examples", "20", "--format", "json", "--output", str(out)])
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert doc["domain"] == "(0, 1]" and "not at 0" in doc["domain_inferred"]
    text = CliRunner().invoke(main, ["audit", target("correct", "CrossEntropyNoDomain"), "--examples", "20"]).output
    assert "domain: (0, 1] (inferred: forward is finite on (0, 1) but not at 0" in text


def test_audit_timeout_and_unwritable_output_exit_2(tmp_path):
    hang = subprocess.run([sys.executable, "-m", "gradlab", "audit", target("hostile", "Sleeps"), "--timeout", "1"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert hang.returncode == 2 and "timed out after 1 s" in hang.stderr and "Traceback" not in hang.stderr
    blocked = tmp_path / "file"
    blocked.write_text("")
    bad = CliRunner().invoke(main, ["audit", target("correct", "Silu"), "--output", str(blocked / "audit.json")])
    assert bad.exit_code == 2 and "cannot write here" in bad.output and "searched" not in bad.output


def test_a_failing_audits_coverage_line_says_it_describes_the_passing_examples():
    from gradlab.audit import audit, report

    result = audit(f"{ROOT / 'docs' / 'examples' / 'myops.py'}:SoftsignWrong", examples=20)
    line = report.text(result).splitlines()[-2]
    assert not result.passed and line.startswith("failing case found after ") and "), which covered: " in line, line
