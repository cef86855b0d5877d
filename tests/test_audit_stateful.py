"""The stateful contract: forward(x) caching on self, backward(dout) -> dx, gradients left on self."""

from pathlib import Path

import pytest
from click.testing import CliRunner

from gradlab.audit import audit, audit_file, prepare
from gradlab.cli import main
from gradlab.userops.loading import TargetError

TARGETS = Path(__file__).parent / "audit_targets" / "stateful.py"
EXAMPLES = 12


def _audit(name: str):
    return audit(f"{TARGETS}:{name}", examples=EXAMPLES, seed=0)


@pytest.mark.parametrize("name", ["Sigmoid", "ReLU", "Upsample2x", "MaxPool2x2", "Dense", "DenseGradsDict", "OptimizerDense", "BatchNormTrainFlag"])
def test_correct_stateful_layers_pass(name):
    result = _audit(name)
    assert result.kind == "stateful"
    assert result.passed, result.findings


@pytest.mark.parametrize("name, wrt", [
    ("SigmoidNoOneMinus", "d/dx"),
    ("Upsample2xAveraging", "d/dx"),
    ("DenseWrongDW", "d/dparams['W']"),
    ("DenseNoBiasSum", "d/dparams['b']"),
    ("OptimizerDenseWrongGrad", "d/dparams['W']"),
])
def test_wrong_stateful_layers_fail_naming_the_tensor(name, wrt):
    result = _audit(name)
    assert [f.kind for f in result.findings] == ["mismatch"]
    assert wrt in result.findings[0].message


def test_where_shape_and_gradients_were_found_is_reported():
    assert prepare(f"{TARGETS}:Dense").input_shape[1:] == (4,)
    call = prepare(f"{TARGETS}:Dense").call_signature()
    assert "from W's shape (4, 3)" in call and "W (gradient self.dW)" in call and "b (gradient self.db)" in call
    assert "input_shape, batch prepended" in prepare(f"{TARGETS}:OptimizerDense").call_signature()
    assert "self.W_opt.update(w, grad)" in prepare(f"{TARGETS}:OptimizerDense").call_signature()
    assert "x (N, 2, 4, 4) from probing" in prepare(f"{TARGETS}:Upsample2x").call_signature()


def test_a_required_training_flag_is_passed_true_and_running_statistics_are_no_parameters():
    call = prepare(f"{TARGETS}:BatchNormTrainFlag").call_signature()
    assert "gamma (gradient self.dgamma), beta (gradient self.dbeta)" in call and "running" not in call


def test_a_parameter_without_gradient_is_not_judged():
    result = _audit("NoGradientKept")
    assert "not judged (no gradient found for scale)" in result.call
    assert not any(k.startswith("params[") for k in prepare(f"{TARGETS}:NoGradientKept").keys)


def test_an_update_step_inside_backward_is_a_mutation():
    result = _audit("SGDInsideBackward")
    assert [f.kind for f in result.findings] == ["mutation"]
    assert "self.W" in result.findings[0].message


def test_a_stub_backward_is_not_implemented():
    result = _audit("TodoLayer")
    assert [f.kind for f in result.findings] == ["not implemented"]
    assert "backward returned None" in result.findings[0].message


def test_a_backward_that_changes_its_cache_in_place_with_right_values_is_a_warning():
    result = _audit("SigmoidCacheInPlace")  # issue 20 item 4: was a 'mutation' failure; values first, the hazard a warning
    assert result.findings == [] and [w.kind for w in result.warnings] == ["in-place"]
    assert "self.out in place" in result.warnings[0].message


def test_cli_detects_the_kind_and_exits_1_on_a_wrong_layer():
    runner = CliRunner()
    ok = runner.invoke(main, ["audit", f"{TARGETS}:Sigmoid", "--examples", "5"])
    assert ok.exit_code == 0, ok.output
    assert "(stateful Sigmoid:" in ok.output
    bad = runner.invoke(main, ["audit", f"{TARGETS}:SigmoidNoOneMinus", "--examples", "5"])
    assert bad.exit_code == 1 and "reproduce(" in bad.output and "kind='stateful'" in bad.output


def test_a_class_whose_backward_takes_two_arguments_is_not_stateful(tmp_path):
    f = tmp_path / "act.py"
    f.write_text("import numpy as np\nclass Act:\n    def forward(self, z): return z * 2\n    def backward(self, z, g): return 2 * g\n")
    with pytest.raises(TargetError, match="one argument"):
        prepare(f"{f}:Act", kind="stateful")
    assert prepare(f"{f}:Act").kind == "activation"


def test_whole_file_lists_the_stateful_classes_it_defines(tmp_path):
    f = tmp_path / "lib.py"
    f.write_text(f"import numpy as np\nfrom importlib import import_module\n"
                 "class Tanh:\n    def forward(self, x):\n        self.y = np.tanh(x)\n        return self.y\n"
                 "    def backward(self, dout):\n        return dout * (1 - self.y ** 2)\n")
    result = audit_file(f, examples=5)
    assert [r.name for r in result.results] == ["Tanh"] and result.passed
