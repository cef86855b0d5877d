"""Issue 20 items 2, 4 and 5, with zero configuration on the catalogue in tests/audit_targets/hazards/:
classes whose constructors take sizes, arrays or hyperparameters are built (and say so); hazards around right
values (in-place writes, gradients whose shape only broadcasts, an unseeded random forward) are warnings, failures
under --strict, and never hide a wrong value; parameter shapes that differ between course years are probed; a
max-pool's tie whose kinks cancel in sum(grad_out * forward) is not judged, while a real overlap bug still fails."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from gradlab.audit import audit, audit_file, reproduce
from gradlab.cli import main

from .conftest import ROOT

HAZARDS = ROOT / "tests" / "audit_targets" / "hazards"


def verdicts(result) -> dict[str, list[str]]:
    return {r.name: [f.kind for f in r.findings] for r in result.results}


def warnings_of(result) -> dict[str, list[str]]:
    return {r.name: [w.kind for w in r.warnings] for r in result.results}


def op(result, name):
    return next(r for r in result.results if r.name == name)


# --- construction --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def deepnet():
    return audit_file(HAZARDS / "deepnet_layers.py", examples=10)


def test_a_librarys_layers_are_built_from_their_parameter_names_and_judged(deepnet):
    assert deepnet.notes == []
    assert verdicts(deepnet) == {"Conv": [], "Maxpool": [], "FullyConnected": [], "Batchnorm": [], "Dropout": [], "ReLU": []}
    assert warnings_of(deepnet) == {"Conv": [], "Maxpool": [], "FullyConnected": ["shape"], "Batchnorm": [], "Dropout": ["reseeded"], "ReLU": []}
    assert op(deepnet, "Conv").built == ("Conv(X_dim=(2, 4, 5), n_filter=3, h_filter=3, w_filter=3, stride=1, padding=1) / "
                                         "Conv(X_dim=(3, 5, 4), n_filter=2, h_filter=3, w_filter=3, stride=1, padding=1)")  # two sets of sizes
    assert op(deepnet, "Batchnorm").built == "Batchnorm(X_dim=(2, 4, 5)) / Batchnorm(X_dim=(3, 5, 4))"
    assert {s[1:] for s in op(deepnet, "Conv").coverage.shapes} == {(2, 4, 5), (3, 5, 4)}  # both sizes drawn
    assert "gradient backward's returned gradients [0] (self.params order)" in op(deepnet, "Conv").call  # dX, [dW, db]
    assert all(r.coverage.judged > 0 for r in deepnet.results)


def test_the_unsummed_dgamma_of_a_built_batchnorm_is_a_failure_and_reproduces():
    (result,) = audit_file(HAZARDS / "deepnet_wrong.py", examples=10).results
    assert [f.kind for f in result.findings] == ["contract"]
    finding = result.findings[0]
    assert "params['gamma']" in finding.message and "sum over the batch" in finding.message
    params = {k[len("params['"):-2]: v for k, v in finding.case.inputs.items() if k.startswith("params[")}
    again = reproduce(f"{HAZARDS / 'deepnet_wrong.py'}:Batchnorm", kind="stateful", quiet=True, x=finding.case.inputs["x"],
                      params=params, grad_out=finding.upstream)
    assert again is not None and again.kind == "contract"


def test_textbook_layers_taking_arrays_and_hyperparameters_are_built_and_pass():
    result = audit_file(HAZARDS / "textbook_layers.py", examples=20)
    assert result.notes == []
    assert verdicts(result) == {name: [] for name in ("Relu", "Affine", "Dropout", "BatchNormalization", "Convolution", "Pooling")}
    assert warnings_of(result) == {"Relu": ["in-place"], "Affine": [], "Dropout": ["reseeded"], "BatchNormalization": [],
                                   "Convolution": [], "Pooling": []}
    assert op(result, "Affine").built == "Affine(W=<array (4, 3)>, b=<array (3,)>) / Affine(W=<array (5, 2)>, b=<array (2,)>)"
    assert op(result, "Convolution").built.startswith("Convolution(W=<array (3, 2, 3, 3)>, b=<array (3,)>) / ")
    assert op(result, "Pooling").built.startswith("Pooling(pool_h=2, pool_w=2)")  # stride 1: overlapping windows


def test_a_two_layer_net_with_loss_reg_is_audited_at_reg_0_and_above_and_the_b_regularisation_bug_is_caught():
    good = audit(f"{HAZARDS / 'neural_net.py'}:TwoLayerNet", examples=15)
    assert good.passed and good.kind == "model"
    assert "loss(X, y, reg=...)" in good.call and "TwoLayerNet(input_size=3, hidden_size=5, output_size=4)" in good.built
    bad = audit(f"{HAZARDS / 'neural_net_wrong.py'}:TwoLayerNet", examples=15)
    assert [f.kind for f in bad.findings] == ["mismatch"]
    finding = bad.findings[0]
    assert finding.case.hyper["reg"] > 0 and ("params['b1']" in finding.message or "params['b2']" in finding.message)


def test_a_textbook_net_with_loss_and_gradient_and_layers_around_its_params_passes():
    result = audit(f"{HAZARDS / 'textbook_net.py'}:TwoLayerNet", examples=10)
    assert result.passed and result.kind == "model" and result.coverage.judged > 0, [f.message for f in result.findings]
    assert "gradient(X, y) when loss returns a number" in result.call


def test_a_named_loss_layer_is_audited_with_integer_labels_and_reproduces():
    good = audit(f"{HAZARDS / 'loss_layers.py'}:SoftmaxWithLoss", examples=10)
    assert good.passed and good.coverage.judged > 0, [f.message for f in good.findings]
    bad = audit(f"{HAZARDS / 'loss_layers.py'}:SoftmaxWithLossNoMean", examples=10)
    assert [f.kind for f in bad.findings] == ["mismatch"]
    f = bad.findings[0]
    again = reproduce(f"{HAZARDS / 'loss_layers.py'}:SoftmaxWithLossNoMean", kind="stateful", quiet=True,
                      x=f.case.inputs["x"], hyper=f.case.hyper)
    assert again is not None and again.kind == "mismatch" and f.case.inputs["x"].shape[0] > 1


def test_a_class_that_cannot_be_built_is_a_skip_and_never_exit_0(tmp_path):
    path = tmp_path / "layers.py"
    path.write_text("class Layer:\n    def __init__(self, config):\n        self.config = config\n\n"
                    "    def forward(self, x):\n        return 2 * x\n\n    def backward(self, dout):\n        return 2 * dout\n")
    out = CliRunner().invoke(main, ["audit", str(path), "--examples", "3"])
    assert out.exit_code == 4, out.output
    assert "SKIP" in out.output and "'config'" in out.output and "give it a default" in out.output


# --- hazards apart from values -------------------------------------------------------------------


def test_in_place_writers_with_right_values_warn_and_a_wrong_one_fails():
    result = audit_file(HAZARDS / "inplace.py", examples=10)
    assert verdicts(result) == {"relu_forward / relu_backward": [], "softmax_loss": [], "leaky_relu_forward / leaky_relu_backward": ["mismatch"]}
    assert warnings_of(result) == {name: ["in-place"] for name in verdicts(result)}
    assert "upstream gradient argument" in op(result, "relu_forward / relu_backward").warnings[0].message
    assert "argument x in place" in op(result, "softmax_loss").warnings[0].message


def test_gradients_whose_shape_only_broadcasts_warn_and_an_unsummed_one_fails():
    result = audit_file(HAZARDS / "shapes.py", examples=10)
    assert verdicts(result) == {"affine_forward / affine_backward": [], "batchnorm_forward / batchnorm_backward": [],
                                "batchnorm_forward / batchnorm_backward_unsummed": ["contract"]}
    assert [w.kind for w in op(result, "affine_forward / affine_backward").warnings] == ["shape"]
    assert "sum over the batch" in op(result, "batchnorm_forward / batchnorm_backward_unsummed").findings[0].message


def test_a_random_forward_from_a_generator_gradlab_cannot_reseed_stays_random():
    result = audit(f"{HAZARDS / 'random_rng.py'}:GeneratorDropout", examples=5)
    assert [f.kind for f in result.findings] == ["random forward"] and "reseeded" in result.findings[0].message


def test_strict_makes_warnings_failures_in_text_and_json():
    runner = CliRunner()
    target = f"{HAZARDS / 'inplace.py'}:relu_forward"
    plain = runner.invoke(main, ["audit", target, "--examples", "5"])
    assert plain.exit_code == 0, plain.output
    assert "WARN  in-place:" in plain.output and "PASS with 1 warning(s) (in-place)" in plain.output
    strict = runner.invoke(main, ["audit", target, "--examples", "5", "--strict"])
    assert strict.exit_code == 1, strict.output
    assert "FAIL: 1 warning(s) under --strict (in-place)" in strict.output
    doc = json.loads(runner.invoke(main, ["audit", target, "--examples", "5", "--format", "json"]).output)
    assert doc["passed"] is True and doc["counterexamples"] == [] and [w["kind"] for w in doc["warnings"]] == ["in-place"]
    assert doc["warnings"][0]["severity"] == "warning"
    whole = runner.invoke(main, ["audit", str(HAZARDS / "inplace.py"), "--examples", "5", "--strict", "--format", "json"])
    assert whole.exit_code == 1
    assert sorted(json.loads(whole.output)["warned"]) == ["leaky_relu_forward / leaky_relu_backward", "relu_forward / relu_backward", "softmax_loss"]


def test_an_unseeded_dropout_says_it_was_reseeded():
    out = CliRunner().invoke(main, ["audit", str(HAZARDS / "deepnet_layers.py") + ":Dropout", "--examples", "5"])
    assert out.exit_code == 0, out.output
    assert "reseeded to 0 before every call (automatically: its forward is random)" in out.output and "WARN  reseeded:" in out.output


# --- conventions probed, not assumed --------------------------------------------------------------


@pytest.mark.parametrize("year, shape", [("2019", "(1, C, 1, 1)"), ("2022", "(C,)")])
def test_both_groupnorm_conventions_are_probed_and_pass(year, shape):
    result = audit(f"{HAZARDS / f'groupnorm_{year}.py'}:spatial_groupnorm_forward", examples=8)
    assert result.passed and not result.warnings, [f.message for f in result.findings]
    assert f"gamma of shape {shape}" in result.call


def test_a_groupnorm_stub_in_the_2022_convention_is_not_implemented():
    result = audit(f"{HAZARDS / 'groupnorm_stub.py'}:spatial_groupnorm_forward", examples=5)
    assert [f.kind for f in result.findings] == ["not implemented"] and "dx = 0" in result.findings[0].message


# --- ties --------------------------------------------------------------------------------------------


def test_an_overlapping_max_pool_at_ties_is_not_a_false_alarm():
    for target in (f"{HAZARDS / 'ties.py'}:OverlapPool", f"{HAZARDS / 'textbook_layers.py'}:Pooling"):
        result = audit(target, examples=30)
        assert result.passed, [f.message for f in result.findings]
        assert result.coverage.judged > 0


def test_a_real_overlap_bug_fails_on_elements_without_ties():
    result = audit(f"{HAZARDS / 'ties.py'}:OverlapPoolNoAccumulate", examples=30)
    assert [f.kind for f in result.findings] == ["mismatch"]
    finding = result.findings[0]
    x = finding.case.inputs["x"]
    (check,) = [c for c in finding.checks if c.mismatch.any()]
    for at in zip(*np.nonzero(check.mismatch)):
        assert np.sum(x == x[at]) == 1  # the mismatched element is tied with no other


def test_reproduce_of_right_values_with_a_hazard_says_warn_not_pass(capsys):
    x = np.array([[1.0, -2.0], [0.5, 3.0]])
    assert reproduce(f"{HAZARDS / 'inplace.py'}:relu_forward", kind="pair", x=x, grad_out=np.ones((2, 2))) is None  # the values are right
    out = capsys.readouterr().out
    assert out.startswith("WARN: ") and "with 1 warning(s) (in-place)" in out and "PASS" not in out
    reproduce(f"{HAZARDS / 'inplace.py'}:relu_forward", kind="pair", x=x, grad_out=np.ones((2, 2)), quiet=True)
    assert capsys.readouterr().out == ""


def test_a_whole_file_audit_lists_its_loss_layers():
    """A textbook file's SoftmaxWithLoss is audited with the file, as it is when named: the right one passes, the one
    that forgets to divide by the batch fails."""
    result = audit_file(HAZARDS / "loss_layers.py", examples=10)
    assert verdicts(result) == {"SoftmaxWithLoss": [], "SoftmaxWithLossNoMean": ["mismatch"]}
    assert "SoftmaxWithLoss" in verdicts(audit_file(HAZARDS / "textbook_net.py", examples=5))
