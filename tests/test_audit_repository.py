"""Issue 20, items 1 and 3: code audited as it sits in its repository, with zero configuration.

Files inside a package (relative imports, absolute imports of their own package, a namespace package, a
textbook's sibling folder) are imported from the root that makes their imports resolve, and the output says
which; torch.autograd.Functions (static- and classmethod) are audited in a whole-file audit; six-nested-loop
convolutions are judged by directional differences. Every verdict of tests/audit_targets/repository/ is
asserted. Budgets are small: the verdicts need no more (the timings at the default budget are in
benchmarks/README.md, measured by hand)."""

import json
import subprocess
import sys

import numpy as np
import pytest

from gradlab.audit import audit, audit_file
from gradlab.audit.judge import Counterexample, examine, projected, tolerance
from gradlab.usercode import forbid_code
from gradlab.userops.loading import TargetError

from .conftest import ROOT

REPO = ROOT / "tests" / "audit_targets" / "repository"


def verdicts(result) -> dict[str, list[str]]:
    return {r.name: [f.kind for f in r.findings] for r in result.results}


@pytest.mark.parametrize("rel, module, why, expected", [
    ("nets/layers.py", "nets.layers", "names its own package",
     {"affine_forward / affine_backward": [], "relu_forward / relu_backward": []}),
    ("nets/classifiers/fc.py", "nets.classifiers.fc", "__init__.py; from ..layers import *",
     {"affine_relu_forward / affine_relu_backward": []}),
    ("nets/classifiers/fc_wrong.py", "nets.classifiers.fc_wrong", "from ..layers import *",
     {"affine_relu_forward / affine_relu_backward": ["mismatch"]}),
    ("nspkg/ops/scale.py", "nspkg.ops.scale", "a namespace package", {"cube_forward / cube_backward": []}),
    ("book/common/layers.py", "common.layers", "names its own package", {"logistic_forward / logistic_backward": []}),
    ("book/ch05/two_layer.py", "two_layer (private name)", "names the folder common/",
     {"double_sigmoid_forward / double_sigmoid_backward": [], "wrong_sigmoid_forward / wrong_sigmoid_backward": ["mismatch"]}),
], ids=lambda v: v if isinstance(v, str) and v.endswith(".py") else None)
def test_files_in_a_package_are_imported_from_their_root(rel, module, why, expected):
    result = audit_file(str(REPO / rel), examples=10)
    assert verdicts(result) == expected
    assert result.imported.startswith(f"imported as {module} from the root ") and why in result.imported
    assert all(r.imported == result.imported for r in result.results)


def test_a_single_target_in_a_package_says_its_root_in_the_header():
    result = audit(str(REPO / "nets" / "classifiers" / "fc.py") + ":affine_relu_forward", examples=5)
    assert result.passed and "imported as nets.classifiers.fc" in result.imported
    from gradlab.audit import report

    assert "  imported as nets.classifiers.fc from the root " in report.text(result)
    assert json.loads(report.to_json(result))["imported"] == result.imported


def test_an_import_no_root_resolves_is_exit_2_naming_it(tmp_path):
    with pytest.raises(TargetError) as err:
        audit_file(str(REPO / "broken" / "needs_missing.py"), examples=5)
    message = str(err.value)
    assert "No module named 'nowhere_pkg'" in message and "from nowhere_pkg.layers import affine_forward" in message
    assert "no folder from" in message and "holds 'nowhere_pkg'" in message
    run = subprocess.run([sys.executable, "-m", "gradlab", "audit", str(REPO / "broken" / "needs_missing.py"), "--examples", "3"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert run.returncode == 2 and "nowhere_pkg" in run.stderr


def test_no_code_still_refuses_a_file_in_a_package():
    before = forbid_code(True)
    try:
        with pytest.raises(TargetError, match="user code is switched off"):
            audit_file(str(REPO / "nets" / "classifiers" / "fc.py"), examples=3)
    finally:
        forbid_code(before)


def test_cli_whole_file_prints_the_root_first(tmp_path):
    run = subprocess.run([sys.executable, "-m", "gradlab", "audit", str(REPO / "nspkg" / "ops" / "scale.py"), "--examples", "5"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    first = run.stdout.splitlines()[0]
    assert first.startswith("imported as nspkg.ops.scale from the root ") and str(REPO) in first


# --- torch.autograd.Functions in a whole-file audit ------------------------------------------------


@pytest.fixture(scope="module")
def functions():
    pytest.importorskip("torch")
    return audit_file(str(REPO / "functions" / "sparsemax.py"), examples=25)


def test_static_and_classmethod_functions_are_audited_in_a_whole_file(functions):
    got = verdicts(functions)
    assert got["SparsemaxStatic"] == [] and got["SparsemaxClass"] == []
    assert got["SparsemaxShapeBug"] and set(got["SparsemaxShapeBug"]) <= {"raised", "mismatch"}
    assert got["CubeOneElement"] == ["mismatch"]
    assert not functions.notes and all(r.kind == "function" for r in functions.results)
    sparsemax = next(r for r in functions.results if r.name == "SparsemaxClass").coverage
    assert 0 < sparsemax.by_directions <= sparsemax.examples == 25  # most cases need no element differenced


def test_a_bug_in_one_element_is_localised_and_named(functions):
    (finding,) = next(r for r in functions.results if r.name == "CubeOneElement").findings
    (check,) = [c for c in finding.checks if c.mismatch.any()]
    assert check.projections == 0 and int(check.mismatch.sum()) == 1  # differenced element by element
    assert np.flatnonzero(check.mismatch.reshape(-1)).tolist() == [0]


def test_the_shape_bug_shows_on_a_square_input_as_a_mismatch():
    pytest.importorskip("torch")
    from gradlab.audit import reproduce

    x = np.array([[0.3, 0.1], [0.2, 0.9]])
    finding = reproduce(str(REPO / "functions" / "sparsemax.py") + ":SparsemaxShapeBug", kind="function", X=x,
                        grad_out=np.array([[1.0, -2.0], [0.5, 3.0]]), quiet=True)
    assert finding is not None and finding.kind == "mismatch"


# --- directional differences ---------------------------------------------------------------------


def test_loop_convs_pass_and_fail_with_zero_configuration():
    result = audit_file(str(REPO / "convs" / "loop_conv.py"), examples=6)
    got = verdicts(result)
    assert got["conv_forward_naive / conv_backward_naive"] == [] and got["Conv2D"] == []
    assert got["conv_forward_naive / conv_backward_naive_transposed"] and got["Conv2DTransposed"] == ["mismatch"]
    # shrunk on decisive directional disagreements, then localised: the report names dW's wrong elements
    (finding,) = next(r for r in result.results if r.name == "Conv2DTransposed").findings
    assert not getattr(finding, "deferred", False) and "judged elements (d/dparams['W'])" in finding.message
    (w,) = [c for c in finding.checks if c.mismatch.any()]
    assert w.name == "params['W']" and w.projections == 0 and np.isfinite(w.numeric).all()


def test_a_passing_case_is_judged_by_directions_and_a_wrong_one_element_by_element():
    from gradlab.audit import prepare
    from gradlab.audit.strategies import Case

    subject = prepare(str(REPO / "convs" / "loop_conv.py") + ":conv_forward_naive")
    rng = np.random.default_rng(0)
    case = Case({"x": rng.normal(size=(2, 2, 4, 4)), "w": rng.normal(size=(2, 2, 3, 3)), "b": rng.normal(size=2)}, {},
                {"conv_param": {"stride": 1, "pad": 1}})
    upstream = rng.normal(size=(2, 2, 4, 4))
    checks = examine(subject, case, lambda shape: upstream, tolerance())
    assert [c.projections for c in checks] == [2, 2, 2] and sum(c.judged for c in checks) == 64 + 36 + 2
    wrong = prepare(str(REPO / "convs" / "loop_conv.py") + ":conv_forward_naive", backward="conv_backward_naive_transposed")
    with pytest.raises(Counterexample) as err:
        examine(wrong, case, lambda shape: upstream, tolerance())
    by_name = {c.name: c for c in err.value.finding.checks}
    assert by_name["w"].projections == 0 and by_name["w"].mismatch.any()  # localised to dw's elements
    assert by_name["x"].projections == 2 and not by_name["x"].mismatch.any()  # x's own directions agree


def test_directions_are_the_same_for_the_same_case():
    """Hypothesis replays a case while shrinking: its directions (and so its verdict) must not change."""
    from gradlab.audit import prepare
    from gradlab.audit.strategies import Case

    subject = prepare(str(REPO / "nspkg" / "ops" / "scale.py") + ":cube_forward")
    x = np.linspace(-2, 2, 12).reshape(3, 4)
    grads = {"x": 3 * x**2 * 0.5}
    case = Case({"x": x}, {}, {})
    one = projected(subject, case, np.full((3, 4), 0.5), grads, tolerance())
    assert one is not None and one[0].projections == 2
    wrong = projected(subject, case, np.full((3, 4), 0.5), {"x": grads["x"] + np.eye(3, 4) * 1e-3}, tolerance())
    assert wrong is None  # a direction disagrees: the judge goes element by element


def test_axis_arguments_and_an_undeclared_reversal():
    pytest.importorskip("torch")
    result = audit_file(str(REPO / "functions" / "arguments.py"), examples=15)
    # an undeclared reversal (name + identity forward) is judged against -lambda x the gradient, with a warning
    assert verdicts(result) == {"SoftmaxDim": [], "SoftmaxDimWrong": ["mismatch"], "GradientReversalFunction": [],
                                "GradientReversalDeclared": []}
    by_name = {r.name: r for r in result.results}
    assert by_name["SoftmaxDim"].call == "apply(x, dim=-1)"  # an axis without a default is passed, never drawn
    assert [w.kind for w in by_name["GradientReversalFunction"].warnings] == ["inferred surrogate"]
    assert not by_name["GradientReversalDeclared"].warnings
    assert "declare surrogate" not in by_name["SoftmaxDimWrong"].findings[0].message
