"""The Markdown report never outgrows a pull-request comment (65,536 characters), whatever the input,
and says how much it left out."""

import dataclasses
import re

import pytest

from gradlab import runner
from gradlab.commands.report import report_environment
from gradlab.ops import ACTIVATIONS
from gradlab.report import render
from gradlab.report.markdown import PR_COMMENT_LIMIT, _document

from .conftest import SPECS, registered
from .test_engines import BUGGY

# Every weight and bias below the buggy activation fails, against numeric and against autograd.
DEEP_BUGGY = """\
name: deep-planted
input: {dim: 6, batch: 4}
target: {kind: regression}
network:
  layers:
""" + "".join("    - {type: dense, units: 6}\n    - {type: activation, fn: tanh}\n" for _ in range(5)) + """\
    - {type: dense, units: 3}
    - {type: activation, fn: buggy_sigmoid}
loss: {fn: sse}
"""


@pytest.fixture(autouse=True)
def no_step_summary(monkeypatch):
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)


@pytest.fixture(scope="module")
def failing_and_passing(tmp_path_factory):
    path = tmp_path_factory.mktemp("deep") / "deep_planted.yaml"
    path.write_text(DEEP_BUGGY)
    with registered(ACTIVATIONS, BUGGY):
        bug = runner.check_file(path)
    good = runner.check_file(next(p for p in SPECS if p.stem == "seed003_two_layer"))
    assert not bug.passed and good.passed
    return bug, good


def _copies(result, n, stem):
    return [dataclasses.replace(result, name=f"{stem}-{i:03d}", path=f"specs/planted/{stem}_{i:03d}.yaml") for i in range(n)]


@pytest.mark.parametrize("n_failing", [12, 30])
def test_many_failing_specs_fit_a_comment_and_say_what_was_left_out(failing_and_passing, n_failing):
    bug, good = failing_and_passing
    results = _copies(bug, n_failing, "planted") + _copies(good, 5, "fine")
    environment = report_environment(results)
    assert len(_document(results, environment, 0)) > PR_COMMENT_LIMIT  # the limit is really in play
    md = render("md", results, environment)
    assert len(md) <= PR_COMMENT_LIMIT
    assert md.startswith("## ❌ gradlab FAIL")
    assert "5 passing spec(s)' tables left out" in md
    shown = len(re.findall(r"^### ❌ planted-\d+$", md, re.M))
    assert shown >= 1
    left = re.search(r"(\d+) failing spec\(s\) left out to fit a comment \(65,536 characters\): (\d+) failing row\(s\) in (\d+) tensor\(s\)", md)
    n_left = int(left.group(1)) if left else 0
    assert shown + n_left == n_failing
    failing_rows, failing_tensors = len(bug.failures), len({c.parameter for c in bug.failures})
    if left:
        assert int(left.group(2)) == n_left * failing_rows and int(left.group(3)) == n_left * failing_tensors
    # every spec is still named in the summary table, failures first
    assert all(f"| ❌ | planted-{i:03d} |" in md for i in range(n_failing))
    # a shown spec keeps its failing rows and the worst elements of its first tensors, and says what it dropped
    assert "**fail**" in md and "#### Worst elements of each failing tensor" in md
    assert re.search(r"\d+ (more )?failing tensor\(s\)' worst-element tables left out", md)
    if n_failing == 30:
        assert left is not None and n_left > 0


def test_thousands_of_specs_cut_the_summary_and_count_the_rest(failing_and_passing):
    bug, good = failing_and_passing
    results = _copies(bug, 600, "planted") + _copies(good, 900, "fine")
    md = render("md", results, report_environment(results))
    assert len(md) <= PR_COMMENT_LIMIT
    m = re.search(r"(\d+) more spec\(s\) not listed here \((\d+) passing, (\d+) failing or not checked\)", md)
    assert m and int(m.group(2)) == 900 and int(m.group(1)) == 900 + int(m.group(3))


def test_even_a_verdict_longer_than_a_comment_is_cut_and_says_so(failing_and_passing):
    bug, _ = failing_and_passing
    results = [dataclasses.replace(bug, name="x" * 2000 + str(i), path=f"p{i}.yaml") for i in range(60)]
    md = render("md", results, report_environment(results))
    assert len(md) <= PR_COMMENT_LIMIT and "cut here to fit a comment" in md


def test_tables_keep_to_seven_columns_with_the_status_first(failing_and_passing):
    bug, good = failing_and_passing
    md = render("md", [bug, good], report_environment([bug, good]))
    tables = [line for line in md.splitlines() if line.startswith("|")]
    assert max(line.count(" | ") + 1 for line in tables) <= 7
    assert "| status | parameter | candidate / reference | max rel | worst (max rel) | max abs | cosine |" in md
    assert "|  | spec | rows | dtype | params | seconds |" in md
