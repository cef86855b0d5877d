"""`gradlab audit audit.yaml`: ops declared in an audit file (shapes, hyperparameter spaces, labels,
tolerances, surrogates); the shipped example passes, a wrong op is caught, a bad file is one line, exit 2."""

import json
import shutil

import pytest
from click.testing import CliRunner

from gradlab.audit.auditfile import audit_yaml
from gradlab.cli import main

from .conftest import ROOT

EXAMPLE = ROOT / "examples" / "audit"


@pytest.fixture
def example(tmp_path):
    """The shipped example with a smaller budget (the file's own `defaults: examples` wins over --examples)."""
    shutil.copy(EXAMPLE / "layers.py", tmp_path / "layers.py")
    text = (EXAMPLE / "audit.yaml").read_text()
    assert "  examples: 60" in text
    (tmp_path / "audit.yaml").write_text(text.replace("  examples: 60", "  examples: 12"))
    return tmp_path


def test_shipped_example_passes_with_every_op_judged(example):
    result = audit_yaml(example / "audit.yaml", examples=200)
    assert [r.name for r in result.results] == ["rbf_forward / rbf_backward", "leaky_forward / leaky_backward", "multiclass_hinge",
                                                "grad_reverse / grad_reverse_backward"]
    for r in result.results:
        assert r.passed, (r.name, [f.message for f in r.findings])
        assert r.coverage.examples == 12 and r.coverage.judged > 0
    hinge = result.results[2]
    assert hinge.kind == "pair" and "loss" in hinge.call
    assert result.results[3].surrogate == "reverse (x -1)"


def test_declared_spaces_are_what_is_drawn(example):
    from hypothesis import given, settings

    from gradlab.audit.auditfile import load, subject_for

    doc = load(example / "audit.yaml")
    subject = subject_for(doc.ops[2], "audit.yaml", 2, example, 30.0)
    seen = []

    @settings(max_examples=40, database=None, deadline=None)
    @given(case=subject.strategy())
    def check(case):
        n, c = case.inputs["scores"].shape
        assert 1 <= n <= 4 and 2 <= c <= 5
        assert case.const["labels"].shape == (n,) and case.const["labels"].dtype.kind == "i"
        assert ((0 <= case.const["labels"]) & (case.const["labels"] < c)).all()
        assert 0.5 <= case.hyper["margin"] <= 2.0
        seen.append(c)

    check()
    assert len(set(seen)) > 1


def test_a_wrong_op_declared_in_a_file_is_caught(tmp_path):
    (tmp_path / "ops.py").write_text(
        "import numpy as np\n\n"
        "def leaky_forward(x, slope):\n    return np.where(x > 0, x, slope * x), (x, slope)\n\n"
        "def leaky_backward(dout, cache):  # ignores the slope\n    x, slope = cache\n    return dout * np.where(x > 0, 1.0, 0.01)\n")
    (tmp_path / "audit.yaml").write_text("ops:\n  - target: ops.py:leaky_forward\n    inputs: {x: [N, D]}\n"
                                         "    dims: {N: [1, 2], D: [1, 3]}\n    hyper: {slope: [0.01, 0.5]}\n    examples: 30\n")
    out = CliRunner().invoke(main, ["audit", str(tmp_path / "audit.yaml"), "--format", "json"])
    assert out.exit_code == 1, out.output
    doc = json.loads(out.stdout)
    assert doc["passed"] is False
    cx = doc["ops"][0]["counterexamples"][0]
    assert cx["kind"] == "mismatch" and cx["hyperparameters"]["slope"] == 0.5


@pytest.mark.parametrize("text,line", [
    ("ops: []", "Error: {f}: ops: expected at least 1 item(s), got 0"),
    ("ops:\n  - target: layers.py:rbf_forward\n    inputs: {x: [N, D], centers: [K, D]}\n    dims: {N: 2, D: 2}",
     "Error: {f}: ops[0].inputs.centers: dimension 'K' is not declared under dims (declared: N, D)"),
    ("ops:\n  - target: layers.py:rbf_forward\n    inputz: {x: [N]}", "Error: {f}: ops[0].inputz: unknown key 'inputz'"),
    ("ops:\n  - target: layers.py:leaky_forward\n    inputs: {x: [N]}\n    dims: {N: {min: 3, max: 1}}",
     "Error: {f}: ops[0].dims.N: min 3 is above max 1"),
    ("ops:\n  - target: layers.py:leaky_forward\n    inputs: {x: [N]}\n    dims: {N: 2}",
     "Error: {f}: ops[0].inputs: leaky_forward takes 'slope': declare it under inputs (an array), hyper or labels"),
    ("ops:\n  - target: layers.py:grad_reverse\n    kind: layer", "Error: {f}: ops[0].kind: layers.py:grad_reverse is a function"),
])
def test_a_bad_audit_file_is_one_error_line_exit_2(example, text, line):
    path = example / "bad.yaml"
    path.write_text(text)
    out = CliRunner().invoke(main, ["audit", str(path)])
    assert out.exit_code == 2, out.output
    assert out.output.startswith(line.format(f=path)) and len(out.output.strip().splitlines()) == 1


def test_declared_ops_reproduce_from_their_printed_line(tmp_path):
    """Argument names no convention knows (centers, margin, labels), a declared loss and a declared
    surrogate: the line rebuilds all of it, from another folder."""
    import shlex
    import subprocess
    import sys

    from gradlab.audit import report

    (tmp_path / "ops.py").write_text(
        "import numpy as np\n\n"
        "def hinge(scores, labels, margin):  # forgets the correct class's share\n"
        "    n = scores.shape[0]\n    m = np.maximum(0, scores - scores[np.arange(n), labels][:, None] + margin)\n"
        "    m[np.arange(n), labels] = 0\n    return m.sum() / n, (m > 0) / n\n\n"
        "def flip(x):\n    return x.copy()\n\n"
        "def flip_backward(dout, x):  # declared reverse x -1, returns x -2\n    return -2 * dout\n")
    (tmp_path / "audit.yaml").write_text(
        "defaults: {examples: 20}\nops:\n"
        "  - target: ops.py:hinge\n    inputs: {scores: [N, C]}\n    dims: {N: [1, 2], C: [2, 3]}\n"
        "    labels: {labels: {classes: C}}\n    hyper: {margin: [1.0, 0.5]}\n"
        "  - target: ops.py:flip\n    inputs: {x: [N]}\n    dims: {N: 2}\n    surrogate: reverse\n")
    result = audit_yaml(tmp_path / "audit.yaml", examples=200)
    assert [[f.kind for f in r.findings] for r in result.results] == [["mismatch"], ["mismatch"]]
    for r in result.results:
        line = report.reproduce_line(r.target, r.pair_mode, r.findings[0], r.reseed, r.surrogate_declared)
        out = subprocess.run([sys.executable, *shlex.split(line)[1:]], capture_output=True, text=True, cwd=ROOT, timeout=120)
        assert out.returncode == 0, out.stderr
        assert "FAIL  mismatch" in out.stdout, (line, out.stdout)
        assert ("the declared surrogate reverse (x -1)" in out.stdout) == (r.name.startswith("flip"))
    assert "surrogate='reverse'" in report.reproduce_line(result.results[1].target, "plain", result.results[1].findings[0], None,
                                                          result.results[1].surrogate_declared)
