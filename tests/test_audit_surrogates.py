"""Declared surrogate gradients (tests/audit_targets/surrogates.py): the judge checks the declared
relation, says so, and still catches a backward that breaks it."""

import pytest
from click.testing import CliRunner

from gradlab.audit import TargetError, audit
from gradlab.cli import main

from .conftest import ROOT

SURROGATES = ROOT / "tests" / "audit_targets" / "surrogates.py"
BUDGET = 12


def op(name: str) -> str:
    return f"{SURROGATES}:{name}"


@pytest.mark.parametrize("name,relation", [
    ("GradientReversal", "reverse (x -1)"),
    ("ScaledReversal", "reverse (x -alpha elementwise)"),
    ("RoundSTE", "straight-through (grad_out passed through)"),
    ("SignClippedSTE", "SignClippedSTE.surrogate(true_grad, *inputs, grad_out)"),
])
def test_declared_surrogate_passes_and_is_named(name, relation):
    result = audit(op(name), examples=BUDGET)
    assert result.passed, [f.message for f in result.findings]
    assert result.surrogate == relation and result.coverage.judged > 0


def test_the_same_backward_undeclared_is_a_mismatch():
    result = audit(op("RoundUndeclared"), examples=BUDGET)
    assert [f.kind for f in result.findings] == ["mismatch"] and not result.surrogate


def test_an_undeclared_gradient_reversal_is_judged_as_one_with_a_warning():
    """Zero configuration: a Function named like a gradient reversal whose forward is the identity is checked against
    -lambda x the gradient (its purpose), and says that the relation was inferred; --strict fails on the warning."""
    result = audit(op("GradientReversalUndeclared"), examples=BUDGET)
    assert result.passed and result.surrogate == "reverse (x -1)", [f.message for f in result.findings]
    assert [w.kind for w in result.warnings] == ["inferred surrogate"]
    strict = CliRunner().invoke(main, ["audit", op("GradientReversalUndeclared"), "--examples", "10", "--strict"])
    assert strict.exit_code == 1 and "inferred surrogate" in strict.output


@pytest.mark.parametrize("name", ["ReversalWrongSign", "SignClippedSTEWrong"])
def test_a_backward_that_breaks_its_declared_surrogate_is_a_mismatch(name):
    result = audit(op(name), examples=BUDGET)
    assert [f.kind for f in result.findings] == ["mismatch"]
    assert "declared surrogate" in result.findings[0].message


def test_report_says_which_relation_was_checked():
    out = CliRunner().invoke(main, ["audit", op("GradientReversal"), "--examples", "10"])
    assert out.exit_code == 0, out.output
    assert "checked against the declared surrogate: reverse (x -1)" in out.output


def test_an_unreadable_surrogate_is_a_contract_error(tmp_path):
    path = tmp_path / "bad.py"
    path.write_text("import torch\n\nclass Odd(torch.autograd.Function):\n    surrogate = 'sideways'\n\n"
                    "    @staticmethod\n    def forward(ctx, x):\n        return x * 1\n\n"
                    "    @staticmethod\n    def backward(ctx, g):\n        return g\n")
    with pytest.raises(TargetError, match="surrogate: expected 'reverse', 'straight-through'"):
        audit(f"{path}:Odd", examples=5)
