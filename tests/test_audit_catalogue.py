"""The catalogue of issue 12, every verdict asserted: correct and wrong pairs in the course-assignment
convention (affine, relu, batchnorm and its alt, layernorm, groupnorm, dropout, naive conv at pad 0 and
stride 2, overlapping max-pool, spatial batchnorm, softmax and SVM losses), seeded and unseeded dropout,
TODO stubs, mutation (in place, replaced, stateful), gradient reversal. Zero adapter code: each file
is audited as a user would, `gradlab audit layers.py`. One audit per file, shared by the tests."""

import shlex
import subprocess
import sys

import numpy as np
import pytest

from gradlab.audit import audit, audit_file, report, reproduce

from .conftest import ROOT

COURSE = ROOT / "tests" / "audit_targets" / "course"
BUDGET = 20

CORRECT = ["affine_forward / affine_backward", "relu_forward / relu_backward", "batchnorm_forward / batchnorm_backward",
           "batchnorm_forward / batchnorm_backward_alt", "layernorm_forward / layernorm_backward",
           "spatial_batchnorm_forward / spatial_batchnorm_backward", "spatial_groupnorm_forward / spatial_groupnorm_backward",
           "dropout_forward / dropout_backward", "conv_forward_naive / conv_backward_naive",
           "max_pool_forward_naive / max_pool_backward_naive", "softmax_loss", "svm_loss"]
WRONG = {
    "affine_forward / affine_backward": ["mismatch"],
    "relu_forward / relu_backward": ["mismatch"],
    "batchnorm_forward / batchnorm_backward": ["mismatch"],
    "batchnorm_forward / batchnorm_backward_alt": ["mismatch"],  # test mode only
    "layernorm_forward / layernorm_backward": ["mismatch"],
    "spatial_batchnorm_forward / spatial_batchnorm_backward": ["mismatch"],
    "spatial_groupnorm_forward / spatial_groupnorm_backward": ["mismatch"],
    "dropout_forward / dropout_backward": ["mismatch"],  # test mode only
    "conv_forward_naive / conv_backward_naive": ["contract"],  # dx cropped with pad:-pad is empty at pad 0
    "conv_forward_naive / conv_backward_naive_nostride": ["mismatch"],  # stride 2 only
    "max_pool_forward_naive / max_pool_backward_naive": ["mismatch"],  # overlapping windows only
    "softmax_loss": ["mismatch"],
    "svm_loss": ["mismatch"],
}


def op(file: str, name: str) -> str:
    return f"{COURSE / file}.py:{name}"


def verdicts(result) -> dict[str, list[str]]:
    return {r.name: [f.kind for f in r.findings] for r in result.results}


def finding(result, name: str):
    return next(r for r in result.results if r.name == name).findings[0]


@pytest.fixture(scope="module")
def correct_file():
    return audit_file(COURSE / "layers.py", examples=BUDGET)


@pytest.fixture(scope="module")
def wrong_file():
    return audit_file(COURSE / "wrong.py", examples=BUDGET)


def test_every_correct_op_passes(correct_file):
    assert verdicts(correct_file) == {name: [] for name in CORRECT}
    assert not correct_file.notes
    for r in correct_file.results:
        assert r.coverage.judged > 0, r.name


def test_every_wrong_op_fails_with_its_kind(wrong_file):
    assert verdicts(wrong_file) == WRONG


@pytest.mark.parametrize("name,where,expected", [
    ("conv_forward_naive / conv_backward_naive", ("conv_param", "pad"), 0),
    ("conv_forward_naive / conv_backward_naive_nostride", ("conv_param", "stride"), 2),
    ("dropout_forward / dropout_backward", ("dropout_param", "mode"), "test"),
    ("batchnorm_forward / batchnorm_backward_alt", ("bn_param", "mode"), "test"),
])
def test_each_slip_is_shown_where_it_lives(wrong_file, name, where, expected):
    dict_name, key = where
    assert finding(wrong_file, name).case.hyper[dict_name][key] == expected


def test_overlapping_pool_bug_is_shown_with_overlap_and_no_ties(wrong_file):
    f = finding(wrong_file, "max_pool_forward_naive / max_pool_backward_naive")
    pp = f.case.hyper["pool_param"]
    assert pp["stride"] < max(pp["pool_height"], pp["pool_width"])
    x = f.case.inputs["x"]
    assert len(np.unique(x)) == x.size  # a real failure, not a subgradient at a tie


def test_batchnorm_test_mode_reads_running_statistics(wrong_file):
    bn = finding(wrong_file, "batchnorm_forward / batchnorm_backward_alt").case.hyper["bn_param"]
    assert {"running_mean", "running_var"} <= set(bn)


def test_stubs_are_not_implemented():
    result = audit_file(COURSE / "stubs.py", examples=5)
    assert verdicts(result) == {"affine_forward / affine_backward": ["not implemented"], "relu_forward / relu_backward": ["not implemented"]}
    assert "returned None" in finding(result, "relu_forward / relu_backward").message


def test_seeded_dropout_passes_unseeded_is_reseeded_automatically_with_a_warning(correct_file):
    assert verdicts(correct_file)["dropout_forward / dropout_backward"] == []  # np.random.seed(dropout_param['seed'])
    plain = audit_file(COURSE / "unseeded.py", examples=10)  # issue 20 item 4: was 'random forward' unless --reseed
    assert verdicts(plain) == {"dropout_forward / dropout_backward": [],
                               "inverted_dropout_forward / inverted_dropout_backward": ["mismatch"]}
    assert all([w.kind for w in r.warnings] == ["reseeded"] and r.reseed == 0 for r in plain.results)
    reseeded = audit_file(COURSE / "unseeded.py", examples=10, reseed=True)
    assert verdicts(reseeded) == {"dropout_forward / dropout_backward": [],
                                  "inverted_dropout_forward / inverted_dropout_backward": ["mismatch"]}


def test_mutation_in_place_replaced_and_stateful():
    result = audit_file(COURSE / "mutating.py", examples=10)
    # issue 20 item 4: var += eps in the cache with right values is a warning (was a 'mutation' failure)
    assert verdicts(result) == {"batchnorm_forward / batchnorm_backward_alt": [], "affine_forward / affine_backward": ["mutation"],
                                "relu_forward / relu_backward": ["mutation"]}
    warned = next(r for r in result.results if r.name == "batchnorm_forward / batchnorm_backward_alt").warnings
    assert [w.kind for w in warned] == ["in-place"] and "cache[2]" in warned[0].message  # var += eps
    assert "replaced its cache['w'] (the forward's argument w)" in finding(result, "affine_forward / affine_backward").message
    assert "different answer when called twice on one cache" in finding(result, "relu_forward / relu_backward").message


def test_gradient_reversal_passes_declared_and_with_a_warning_undeclared():
    functions = ROOT / "tests" / "audit_targets" / "surrogates.py"
    declared = audit(f"{functions}:GradientReversal", examples=10)
    assert declared.passed and declared.surrogate == "reverse (x -1)" and not declared.warnings
    undeclared = audit(f"{functions}:GradientReversalUndeclared", examples=10)
    assert undeclared.passed and [w.kind for w in undeclared.warnings] == ["inferred surrogate"]


# --- every failure reproduces from its printed line ----------------------------------------------


def test_pair_reproduce_line_recomputes_the_failure_in_a_fresh_process(wrong_file):
    """The test-mode case carries running statistics (arrays inside bn_param) and the variant twin."""
    alt = next(r for r in wrong_file.results if r.name == "batchnorm_forward / batchnorm_backward_alt")
    line = report.reproduce_line(alt.target, alt.kind, alt.findings[0])
    assert "backward='batchnorm_backward_alt'" in line and "'running_var': np.array(" in line
    out = subprocess.run([sys.executable, *shlex.split(line)[1:]], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "FAIL  mismatch" in out.stdout and "d/dx" in out.stdout


@pytest.mark.parametrize("name", sorted(WRONG))
def test_every_printed_line_gives_the_same_verdict(wrong_file, name):
    result = next(r for r in wrong_file.results if r.name == name)
    code = shlex.split(report.reproduce_line(result.target, result.kind, result.findings[0]))[2]
    assert code.startswith("import numpy as np; from gradlab.audit import reproduce; reproduce(")
    found = eval(code.split("; ", 2)[2][:-1] + ", quiet=True)", {"np": np, "reproduce": reproduce})  # noqa: S307 -- our own line
    assert found is not None and found.kind == WRONG[name][0]
