"""gradlab audit on the course's recurrent layers (CS231n rnn_layers.py style) with no configuration:
rnn and lstm steps and sequences, word embedding, temporal affine, temporal softmax loss. Every correct op
passes, every wrong op (tests/audit_targets/course/rnn_wrong.py) is a mismatch, nothing is skipped, and
the drawn cases share their dimensions and reach repeated word ids and all-True / all-False masks."""

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings

from gradlab.audit import audit_file
from gradlab.audit.pairs import PairSubject, make_pair, pair_cases
from gradlab.audit.strategies import Envelope
from gradlab.cli import main
from gradlab.userops.loading import load_module

from .conftest import ROOT

COURSE = ROOT / "tests" / "audit_targets" / "course"
BUDGET = 15

OPS = ["rnn_step_forward / rnn_step_backward", "rnn_forward / rnn_backward", "word_embedding_forward / word_embedding_backward",
       "lstm_step_forward / lstm_step_backward", "lstm_forward / lstm_backward",
       "temporal_affine_forward / temporal_affine_backward", "temporal_softmax_loss"]
WRONG = ["rnn_step_forward / rnn_step_backward", "rnn_step_forward / rnn_step_backward_next_h", "rnn_forward / rnn_backward",
         "word_embedding_forward / word_embedding_backward", "lstm_step_forward / lstm_step_backward",
         "lstm_forward / lstm_backward", "temporal_softmax_loss"]


@pytest.fixture(scope="module")
def correct_file():
    return audit_file(COURSE / "rnn_layers.py", examples=BUDGET)


@pytest.fixture(scope="module")
def wrong_file():
    return audit_file(COURSE / "rnn_wrong.py", examples=BUDGET)


def test_every_correct_recurrent_op_is_found_and_passes(correct_file):
    assert sorted(r.name for r in correct_file.results) == sorted(OPS)
    assert {r.name: [f.kind for f in r.findings] for r in correct_file.results} == {name: [] for name in OPS}
    assert correct_file.notes == []  # nothing skipped: the sigmoid helper has no twin and is no op


@pytest.mark.parametrize("name", WRONG)
def test_every_wrong_recurrent_op_is_a_mismatch(wrong_file, name):
    result = next(r for r in wrong_file.results if r.name == name)
    assert [f.kind for f in result.findings] == ["mismatch"]


def test_the_lstm_step_takes_one_upstream_gradient_per_output(wrong_file):
    finding = next(r for r in wrong_file.results if r.name == "lstm_step_forward / lstm_step_backward").findings[0]
    assert "d/dprev_c" in finding.message  # the slip drops dnext_c: only the second upstream shows it
    subject = PairSubject(make_pair(load_module(str(COURSE / "rnn_layers.py")), "lstm_step_forward", "rnn_layers.py"), "t")
    assert subject.outputs == 2 and "out1, out2, cache = lstm_step_forward" in subject.call_signature()


def test_whole_file_cli_prints_no_skip_line():
    out = CliRunner().invoke(main, ["audit", str(COURSE / "rnn_layers.py"), "--examples", "3"])
    assert out.exit_code == 0, out.output
    assert "SKIP" not in out.output and "PASS: 7 of 7 op(s) passed" in out.output


def _draws(name: str, n: int = 80) -> list:
    pair = make_pair(load_module(str(COURSE / "rnn_layers.py")), name, "rnn_layers.py")
    seen = []

    @settings(max_examples=n, database=None, deadline=None, derandomize=True)  # the same draws every run: no flaky coverage
    @given(case=pair_cases(pair, Envelope()))
    def collect(case):
        seen.append(case)

    collect()
    return seen


def test_lstm_cases_share_their_dimensions_and_stay_off_saturation():
    for case in _draws("lstm_forward", 40):
        x, h0, Wx, Wh, b = (case.inputs[k] for k in ("x", "h0", "Wx", "Wh", "b"))
        N, T, D = x.shape
        H = h0.shape[1]
        assert h0.shape[0] == N and Wx.shape == (D, 4 * H) and Wh.shape == (H, 4 * H) and b.shape == (4 * H,)
        assert max(np.abs(a).max() for a in case.inputs.values()) <= 1.5


def test_embedding_cases_repeat_word_ids_in_range():
    cases = _draws("word_embedding_forward")
    for case in cases:
        assert case.const["x"].dtype.kind == "i" and 0 <= case.const["x"].min() and case.const["x"].max() < case.inputs["W"].shape[0]
    assert any(len(np.unique(c.const["x"])) < c.const["x"].size for c in cases)


def test_temporal_loss_masks_reach_all_true_all_false_and_false_rows():
    cases = _draws("temporal_softmax_loss")
    masks = [c.const["mask"] for c in cases]
    assert all(m.dtype == bool and m.shape == c.const["y"].shape == c.inputs["x"].shape[:2] for m, c in zip(masks, cases))
    assert any(m.all() for m in masks) and any(not m.any() for m in masks)
    assert any((~m).all(axis=1).any() and m.any() for m in masks)
