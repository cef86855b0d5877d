"""gradlab audit on assignment 1's linear classifier losses (linear_svm.py, softmax.py style) with no
configuration: `loss, dW = f(W, X, y, reg)` is found by its arguments (not its name), W is
differentiated, X and y are drawn and passed, reg ranges over 0 and positive values. Every correct
loss passes (the SVM's hinge kinks over several seeds too), every wrong one
(tests/audit_targets/course/classifiers_wrong.py) is a mismatch. Course model classes
(TwoLayerNet(input_dim=..., ...).loss(X, y) -> (loss, grads)) are built small and every params entry
is differentiated."""

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings

from gradlab.audit import audit, audit_file, reproduce
from gradlab.audit.pairs import make_pair, pair_cases
from gradlab.audit.strategies import Envelope
from gradlab.cli import main
from gradlab.userops.loading import load_module

from .conftest import ROOT

COURSE = ROOT / "tests" / "audit_targets" / "course"
BUDGET = 30

CORRECT = ["svm_loss_naive", "svm_loss_vectorized", "softmax_loss_naive", "softmax_loss_vectorized"]
WRONG = ["svm_loss_naive", "svm_loss_naive_every_margin", "svm_loss_vectorized",
         "softmax_loss_naive", "softmax_loss_naive_label_term_per_class", "softmax_loss_vectorized"]


@pytest.fixture(scope="module")
def correct_file():
    return audit_file(COURSE / "classifiers.py", examples=BUDGET)


@pytest.fixture(scope="module")
def wrong_file():
    return audit_file(COURSE / "classifiers_wrong.py", examples=BUDGET)


def test_every_correct_classifier_loss_is_found_and_passes(correct_file):
    assert sorted(r.name for r in correct_file.results) == sorted(CORRECT)
    assert {r.name: [f.kind for f in r.findings] for r in correct_file.results} == {name: [] for name in CORRECT}
    assert correct_file.notes == []


@pytest.mark.parametrize("name", WRONG)
def test_every_wrong_classifier_loss_is_a_mismatch_in_dW(wrong_file, name):
    result = next(r for r in wrong_file.results if r.name == name)
    assert [f.kind for f in result.findings] == ["mismatch"]
    assert "d/dW" in result.findings[0].message


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("name", ["svm_loss_naive", "svm_loss_vectorized"])
def test_a_correct_svm_passes_across_its_hinge_kinks(name, seed):
    result = audit(f"{COURSE / 'classifiers.py'}:{name}", examples=40, seed=seed)
    assert result.passed, [f.message for f in result.findings]


def test_the_missing_2_of_the_reg_term_shrinks_to_a_positive_reg(wrong_file):
    finding = next(r for r in wrong_file.results if r.name == "svm_loss_naive").findings[0]
    assert finding.case.hyper["reg"] > 0
    assert set(finding.case.const) == {"X", "y"}  # data and labels are passed, never differentiated


def test_cli_lists_every_loss_of_a_file_and_exits_1_on_a_wrong_one():
    runner = CliRunner()
    ok = runner.invoke(main, ["audit", str(COURSE / "classifiers.py"), "--examples", "5"])
    assert ok.exit_code == 0, ok.output
    assert "PASS: 4 of 4 op(s) passed" in ok.output and "no function pairs found" not in ok.output
    assert all(f"PASS  {name}" in ok.output for name in CORRECT)
    bad = runner.invoke(main, ["audit", f"{COURSE / 'classifiers_wrong.py'}:softmax_loss_vectorized", "--examples", "20"])
    assert bad.exit_code == 1, bad.output
    assert "loss, dW = softmax_loss_vectorized(W, X, y, reg)" in bad.output and "reg      =" in bad.output


def test_cases_share_N_D_C_draw_labels_below_C_and_reg_from_zero_and_positive():
    pair = make_pair(load_module(str(COURSE / "classifiers.py")), "softmax_loss_naive", "classifiers.py")
    assert pair.mode == "loss" and pair.arrays == ("W",)
    assert dict(pair.args) == {"W": "array", "X": "labels", "y": "labels", "reg": "hyper"}
    regs, classes = set(), set()

    @settings(max_examples=60, database=None, deadline=None)
    @given(case=pair_cases(pair, Envelope()))
    def check(case):
        W, X, y = case.inputs["W"], case.const["X"], case.const["y"]
        D, C = W.shape
        assert X.shape == (y.shape[0], D) and X.dtype == np.float64
        assert 1 <= y.shape[0] <= 5 and 1 <= D <= 6 and 2 <= C <= 5
        assert y.dtype.kind == "i" and np.all((0 <= y) & (y < C))
        regs.add(case.hyper["reg"])
        classes.add(C)

    check()
    assert 0.0 in regs and any(r > 0 for r in regs) and len(classes) > 1


def test_reproduce_takes_the_data_and_the_reg():
    args = dict(W=np.full((1, 2), 1.0), X=np.array([[0.0]]), y=np.array([0]), hyper={"reg": 0.1})
    assert reproduce(f"{COURSE / 'classifiers.py'}:svm_loss_naive", kind="loss", **args) is None
    finding = reproduce(f"{COURSE / 'classifiers_wrong.py'}:svm_loss_naive", kind="loss", **args)
    assert finding.kind == "mismatch"


# --- course model classes: TwoLayerNet(input_dim=..., ...).loss(X, y) -> (loss, grads) --------------


def test_a_correct_two_layer_net_passes_with_small_sizes_and_reg():
    result = audit(f"{COURSE / 'classifiers_net.py'}:TwoLayerNet", examples=15)
    assert result.passed, [f.message for f in result.findings]
    assert result.kind == "model" and "TwoLayerNet(input_dim=4, hidden_dim=3, num_classes=3, reg=...).loss(X, y)" in result.call


def test_a_wrong_two_layer_net_is_a_mismatch_in_its_params_and_reproduces():
    file = audit_file(COURSE / "classifiers_net_wrong.py", examples=15)
    (result,) = file.results
    assert result.name == "TwoLayerNet" and [f.kind for f in result.findings] == ["mismatch"]
    finding = result.findings[0]
    assert "d/dparams['b1']" in finding.message and set(finding.case.const) == {"X", "y"}
    params = {k[len("params['"):-2]: v for k, v in finding.case.inputs.items()}
    again = reproduce(f"{COURSE / 'classifiers_net_wrong.py'}:TwoLayerNet", kind="model", quiet=True, params=params,
                      hyper=finding.case.hyper, **finding.case.const)
    assert again is not None and again.kind == "mismatch"


def test_a_model_whose_constructor_needs_an_unknown_argument_is_skipped_with_the_reason(tmp_path):
    path = tmp_path / "nets.py"
    path.write_text("import numpy as np\n\nclass Net:\n    def __init__(self, layer_sizes, input_dim=5):\n"
                    "        self.params = {'W': np.zeros((input_dim, 2))}\n\n    def loss(self, X, y):\n"
                    "        return 0.0, {'W': np.zeros((5, 2))}\n")
    file = audit_file(path, examples=3)
    assert file.results == [] and len(file.notes) == 1
    assert "'layer_sizes'" in file.notes[0] and "give it a default" in file.notes[0]


def test_other_spellings_of_the_arguments_are_found_and_judged():
    result = audit_file(COURSE / "classifiers_spellings.py", examples=BUDGET)
    verdicts = {r.name: [f.kind for f in r.findings] for r in result.results}
    assert verdicts == {"svm_loss_naive": [], "softmax_loss_vectorized": [], "softmax_loss_wrong": ["mismatch"]}
    wrong = next(r for r in result.results if r.name == "softmax_loss_wrong")
    assert "d/dw" in wrong.findings[0].message
