"""`gradlab stats` over many specs, its `--report` documents, and zeros in the depth plot (issue 10, items 9 and 13)."""

from __future__ import annotations

import csv
import io
import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from gradlab import stats
from gradlab.cli import main
from gradlab.report import stats_report
from gradlab.report.depth import DepthProfile, LayerPoint, from_stats
from gradlab.report.plots import depth_figure
from gradlab.spec import load_spec

from .conftest import ROOT

STEP = str(ROOT / "specs/seed001_step_perceptron.yaml")
DEAD = str(ROOT / "specs/stats/relu_dead_bias.yaml")
TANH = """\
name: tiny-tanh
input: {dim: 8, batch: 32}
network:
  layers:
    - {type: dense, units: 16}
    - {type: activation, fn: tanh}
    - {type: dense, units: 16}
    - {type: activation, fn: tanh}
    - {type: dense, units: 2}
loss: {fn: sse}
"""
FAST = ["--seeds", "2", "--batch", "32"]


def invoke(*args):
    return CliRunner().invoke(main, ["stats", *map(str, args)])


def _strict_json(text):
    def no_nan(token):
        raise ValueError(f"non-standard JSON token {token}")

    return json.loads(text, parse_constant=no_nan)


@pytest.fixture
def tiny(write_spec):
    return write_spec(TANH, "tiny.yaml")


# --- many specs ----------------------------------------------------------------------------------


def test_many_specs_each_get_a_table_and_one_verdict_line(tiny):
    r = invoke(STEP, DEAD, tiny, *FAST)
    assert r.exit_code == 0, r.output
    assert sum(line.startswith("verdict: ") for line in r.output.splitlines()) == 3  # each spec's, then the run's line
    assert "seed001-step-perceptron" in r.output and "relu-dead-bias" in r.output and "tiny-tanh" in r.output
    last = r.output.strip().splitlines()[-1]
    assert last.startswith("stats verdict over 3 specs: dead; dead: relu-dead-bias; zero-gradient: seed001-step-perceptron")


def test_a_directory_of_specs(tiny):
    r = invoke(tiny.parent, *FAST)
    assert r.exit_code == 0, r.output
    assert "tiny-tanh" in r.output


def test_one_bad_spec_gives_its_error_and_the_others_still_run(tiny, write_spec):
    bad = write_spec("input: {dim: 3\n", "bad.yaml")
    r = invoke(tiny, bad, STEP, *FAST)
    assert r.exit_code == 2, r.output
    errors = [line for line in r.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and errors[0].startswith(f"Error: {bad}: ")
    assert "tiny-tanh" in r.output and "verdict: zero-gradient" in r.output
    assert "1 could not be measured" in r.output


def test_an_error_while_measuring_is_that_specs_error(tiny, write_spec):
    custom = write_spec(TANH.replace("units: 2}", "units: 200000000}"), "huge.yaml")
    r = invoke(custom, tiny, *FAST)
    assert r.exit_code == 2, r.output
    errors = [line for line in r.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and errors[0].startswith(f"Error: {custom}: ") and f"{custom}: {custom}" not in errors[0]
    assert "tiny-tanh" in r.output


def test_an_internal_error_exits_3_and_the_others_still_run(tiny, monkeypatch):
    real = stats.run

    def flaky(spec, *, path, **kw):
        if path == STEP:
            raise RuntimeError("boom")
        return real(spec, path=path, **kw)

    monkeypatch.setattr(stats, "run", flaky)
    r = invoke(STEP, tiny, *FAST)
    assert r.exit_code == 3, r.output
    assert "Error: internal error of gradlab (RuntimeError: boom)" in r.output and "tiny-tanh" in r.output


def test_option_errors_with_several_specs_name_the_option_once(tiny):
    r = invoke(tiny, STEP, "--lr", "nan")
    assert r.exit_code == 2
    assert r.output.strip() == "Error: --lr: expected a finite number > 0, got nan"


def test_one_spec_keeps_its_json_object(tiny):
    r = invoke(tiny, *FAST, "--format", "json")
    assert r.exit_code == 0, r.output
    doc = _strict_json(r.output)
    assert isinstance(doc, dict) and doc["name"] == "tiny-tanh"


def test_several_specs_json_is_one_list(tiny):
    r = invoke(tiny, STEP, *FAST, "--format", "json")
    assert r.exit_code == 0, r.output
    doc = _strict_json(r.output)
    assert [d["name"] for d in doc] == ["tiny-tanh", "seed001-step-perceptron"]
    assert doc[1]["summary"]["verdict"] == "zero-gradient" and doc[1]["layers"][0]["verdict"] == "zero-gradient"


def test_several_specs_csv_is_one_table_with_a_spec_column(tiny):
    r = invoke(tiny, STEP, *FAST, "--format", "csv")
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(io.StringIO(r.output)))
    assert [row["spec"] for row in rows] == [str(tiny)] * 3 + [STEP]
    assert r.output.count("spec,name,layer") == 1


# --- --report --------------------------------------------------------------------------------------


def test_reports_in_every_format(tiny, tmp_path, write_spec):
    bad = write_spec("input: {dim: 3\n", "bad.yaml")
    paths = {kind: tmp_path / "out" / f"stats.{kind}" for kind in ("md", "html", "json", "csv")}
    r = invoke(STEP, DEAD, tiny, bad, *FAST, *[a for p in paths.values() for a in ("--report", p)])
    assert r.exit_code == 2, r.output
    for kind, path in paths.items():
        assert f"report: {path} ({kind})" in r.output

    md = paths["md"].read_text()
    assert md.startswith("# gradlab stats: dead\n")
    assert "| seed001-step-perceptron | `" in md and "**zero-gradient**" in md and "**dead**" in md
    assert "\\|f'\\|" in md  # a pipe in a header is escaped, the table keeps its columns
    assert "Could not be measured" in md and str(bad) in md

    page = paths["html"].read_text()
    assert page.startswith("<!DOCTYPE html>") and "Content-Security-Policy" in page and "default-src 'none'" in page
    assert page.count("data:image/png;base64,") == 3  # one depth plot per measured spec, the step perceptron's too
    assert "<script" not in page and "http://" not in page and "https://" not in page
    assert "zero-gradient" in page and str(bad) in page

    doc = _strict_json(paths["json"].read_text())
    assert doc["verdict"] == "dead"
    assert [s["summary"]["verdict"] for s in doc["specs"]] == ["zero-gradient", "dead", "ok"]
    assert doc["errors"][0]["spec"] == str(bad) and doc["errors"][0]["error"].startswith(str(bad))

    rows = list(csv.DictReader(io.StringIO(paths["csv"].read_text())))
    assert {row["spec"] for row in rows} == {STEP, DEAD, str(tiny)} and len(rows) == 1 + 5 + 3


def test_report_suffix_is_checked_before_anything_runs(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(stats, "run", lambda *a, **k: pytest.fail("stats ran before the usage error"))
    r = invoke(tiny, "--report", tmp_path / "stats.xml")
    assert r.exit_code == 2 and "cannot tell the report format from '.xml'" in r.output
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    r = invoke(tiny, "--report", blocker / "stats.md")
    assert r.exit_code == 2 and r.output.startswith(f"Error: {blocker / 'stats.md'}: --report: cannot write here")


def test_report_is_written_whole_and_nothing_when_no_spec_ran(tmp_path, write_spec):
    bad = write_spec("input: {dim: 3\n", "bad.yaml")
    target = tmp_path / "keep.md"
    target.write_text("previous")
    r = invoke(bad, "--report", target)
    assert r.exit_code == 2
    assert target.read_text() == "previous"  # nothing was measured: the previous report stays
    assert not list(tmp_path.glob(".keep.md.*"))


def test_markdown_report_goes_to_the_github_job_summary(tiny, tmp_path, monkeypatch):
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    r = invoke(tiny, *FAST, "--report", tmp_path / "s.md", "-q")
    assert r.exit_code == 0, r.output
    assert "report:" not in r.output
    assert summary.read_text().startswith("# gradlab stats: ok")


def test_user_strings_are_escaped_in_reports(write_spec, tmp_path):
    spec = write_spec(TANH.replace("name: tiny-tanh", "name: '<img src=x> @octocat'"), "evil.yaml")
    r = invoke(spec, *FAST, "--report", tmp_path / "s.html", "--report", tmp_path / "s.md")
    assert r.exit_code == 0, r.output
    assert "<img src=x>" not in (tmp_path / "s.html").read_text()
    md = (tmp_path / "s.md").read_text()
    assert "<img" not in md and "@octocat" not in md


# --- zeros in the depth plot ----------------------------------------------------------------------


def _zero_markers(ax):
    return [line for line in ax.get_lines() if line.get_label() == "exactly 0 (at the floor)"]


def _labels(ax):
    return [t.get_text() for t in ax.texts]


def test_zero_values_are_plotted_at_the_floor_and_labelled():
    result = stats.run(load_spec(DEAD), path=DEAD, seeds=2, batch=64)
    fig = depth_figure(from_stats(result))
    grad_ax, ratio_ax = fig.axes[:2]

    # δ ratio: L0-L6 are exactly 0, the output layer is 1: a log axis with the four zeros at its floor
    assert ratio_ax.get_yscale() == "log"
    (marker,) = _zero_markers(ratio_ax)
    floor = marker.get_ydata()[0]
    assert list(marker.get_xdata()) == [1, 2, 3, 4] and np.all(marker.get_ydata() == floor) and 0 < floor < 1
    assert ratio_ax.get_ylim()[0] < floor
    assert _labels(ratio_ax).count("0") == 4
    ticks = dict(zip(ratio_ax.get_yticks(), (t.get_text() for t in ratio_ax.get_yticklabels())))
    assert ticks[floor] == "0"

    # gradient RMS: every layer's dW is exactly 0 (nothing reaches the output layer's input either)
    (marker,) = _zero_markers(grad_ax)
    assert len(marker.get_xdata()) == 5 and _labels(grad_ax).count("0") == 5
    assert "all zero: nothing flows back" in _labels(grad_ax)


def test_step_perceptron_is_plotted_not_dropped():
    result = stats.run(load_spec(STEP), path=STEP, seeds=2)
    fig = depth_figure(from_stats(result))
    grad_ax, ratio_ax = fig.axes[:2]
    (marker,) = _zero_markers(grad_ax)
    assert list(marker.get_ydata()) == [0.0] and "0" in _labels(grad_ax)
    legend = [t.get_text() for t in grad_ax.get_legend().get_texts()]
    assert "zero-gradient" in legend  # ringed by its verdict
    assert any("0/0" in t for t in _labels(ratio_ax))  # δ/δout is undefined, and says so


def test_positive_values_and_zeros_share_a_panel_without_a_decade_under_the_zero():
    profile = DepthProfile(source="test", layers=(
        LayerPoint("layers.0", 1, 0.0, 0.0, verdict="dead"),
        LayerPoint("layers.2", 2, 3e-4, 2e-3, grad_norm_std=1e-4, delta_ratio_std=1e-3),
        LayerPoint("layers.4", 3, 2e-2, 1.0),
    ))
    fig = depth_figure(profile)
    for ax in fig.axes[:2]:
        (marker,) = _zero_markers(ax)
        floor = marker.get_ydata()[0]
        labels = dict(zip(ax.get_yticks(), (t.get_text() for t in ax.get_yticklabels())))
        assert labels[floor] == "0"
        assert all(tick > floor * 5 for tick in labels if tick != floor)  # the decades start above the break
        lines = [line for line in ax.get_lines() if line.get_label() not in ("exactly 0 (at the floor)", "dead")]
        drawn = np.concatenate([line.get_ydata() for line in lines])
        assert np.nanmin(drawn) > floor  # the positive values stay above the floor


def test_no_value_at_all_says_so():
    profile = DepthProfile(source="test", layers=(LayerPoint("layers.0", 1, math.nan, math.nan),))
    fig = depth_figure(profile)
    assert all(not _zero_markers(ax) for ax in fig.axes[:2])


def test_overall_verdict_follows_the_most_specific():
    class R:
        def __init__(self, verdict):
            self.verdict, self.name = verdict, verdict

    assert stats_report.overall_verdict([R("ok"), R("vanishing-delta"), R("vanishing-dW"), R("dead")]) == "dead"
    assert stats_report.overall_verdict([R("dead"), R("zero-gradient")]) == "dead"
    assert stats_report.overall_verdict([R("ok")]) == "ok"
    assert stats_report.overall_verdict([R("ok"), R("vanishing-delta"), R("vanishing-dW")]) == "vanishing-dW"


def test_a_long_title_is_never_wrapped_in_a_pipe():
    from click.testing import CliRunner

    from gradlab.cli import main

    from .conftest import ROOT

    spec = ROOT / "specs" / "stats" / "saturated_output_cross_entropy.yaml"
    out = CliRunner().invoke(main, ["stats", str(spec), "--seeds", "1", "--batch", "16"]).stdout.splitlines()
    assert out[0] == f"saturated-output-cross-entropy  ({spec})"  # wider than the table: one line all the same
