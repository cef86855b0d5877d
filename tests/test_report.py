"""Reports: every format written and read back; failures first; the environment in each; CLI wiring."""

import dataclasses
import io
import json
import re
import xml.etree.ElementTree as ET

import pandas as pd
import pytest
from click.testing import CliRunner
from rich.console import Console

import gradlab
from gradlab import runner
from gradlab.cli import main, numeric_elements
from gradlab.commands.report import depth_profile, report_environment
from gradlab.ops import ACTIVATIONS, Activation
from gradlab.report import format_for, render
from gradlab.report.markdown import PR_COMMENT_LIMIT
from gradlab.report.progress import RunProgress
from gradlab.report.terminal import render as render_terminal
from gradlab.spec import load_spec

from .conftest import SPECS, registered
from .test_engines import BUGGY, BUGGY_SPEC

PASSING = next(p for p in SPECS if p.stem == "seed003_two_layer")

# Only the gradient of the trainable `c` is wrong (twice the truth): one failing tensor, listed
# last in the network's own order, so "failures first" is visible.
_ss = ACTIVATIONS.get("scaled_sigmoid")
BUGGY_C = Activation(
    name="buggy_c_sigmoid", doc="scaled sigmoid whose dL/dc is doubled", hyper=_ss.hyper, trainable=_ss.trainable,
    forward=_ss.forward, torch=_ss.torch,
    backward=lambda z, a, g, hp: (lambda gz, hg: (gz, {**hg, "c": 2 * hg["c"]}))(*_ss.backward(z, a, g, hp)),
)
C_SPEC = """\
name: planted-c
input: {dim: 3, batch: 4}
network:
  layers:
    - {type: dense, units: 2}
    - {type: activation, fn: buggy_c_sigmoid, trainable: [c]}
loss: {fn: sse}
check: {devices: [cpu, "cuda:63"]}
"""


@pytest.fixture(autouse=True)
def no_step_summary(monkeypatch):
    """A developer's or CI's own $GITHUB_STEP_SUMMARY must not receive the tests' reports."""
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("planted")
    (folder / "planted.yaml").write_text(BUGGY_SPEC)
    (folder / "planted_c.yaml").write_text(C_SPEC)
    with registered(ACTIVATIONS, BUGGY), registered(ACTIVATIONS, BUGGY_C):
        bug = runner.check_file(folder / "planted.yaml")
        bug_c = runner.check_file(folder / "planted_c.yaml")
    return {"folder": folder, "bug": bug, "bug_c": bug_c, "pass": runner.check_file(PASSING)}


@pytest.fixture(scope="module")
def results(planted):
    """A passing spec given first, then the failing ones: reports must turn that order around."""
    return [planted["pass"], planted["bug"], planted["bug_c"]]


@pytest.fixture(scope="module")
def environment(results):
    return report_environment(results)


def _first_row(rows, spec_name):
    return next(r for r in rows if r["name"] == spec_name)


# --- Markdown ----------------------------------------------------------------------------------


def test_markdown_verdict_first_then_failing_specs_open(results, environment):
    md = render("md", results, environment)
    first = md.splitlines()[0]
    assert first.startswith("## ❌ gradlab FAIL: 2 of 3 spec(s)") and "planted" in first
    assert md.index("### ❌ planted") < md.index("<summary>✅ seed003-two-layer")
    assert "**`layers.2.weight`: analytic vs numeric, cpu, float64**" in md
    assert "| index | analytic | numeric | autograd[cpu] | difference | numeric err | allowed |" in md
    assert environment["torch"] in md and environment["specs"][str(PASSING)]["sha256"] in md


def test_markdown_lists_the_failing_tensor_first(results, environment):
    md = render("md", results, environment)
    section = md[md.index("### ❌ planted-c"):]
    table_rows = [line for line in section.splitlines() if "| `layers." in line]
    # the status leads the row, with the mismatch count: never behind a comment's horizontal scroll
    assert table_rows[0].startswith("| **fail** 1/1 | `layers.1.c` | analytic / numeric |")
    assert re.search(r"^\| skipped: .+ \(3 tensors\) \| \(all\) \| autograd\[cuda:63\] / numeric \|", section, re.M)


def test_markdown_shrinks_to_fit_a_pr_comment(results, environment):
    many = [dataclasses.replace(results[0], name=f"copy-{i}") for i in range(80)] + results[1:]
    md = render("md", many, environment)
    assert len(md) <= PR_COMMENT_LIMIT
    assert "80 passing spec(s)' tables left out to fit a comment" in md and "### ❌ planted" in md


# --- HTML --------------------------------------------------------------------------------------


def test_html_is_self_contained_with_tables_and_inline_images(results, environment, planted):
    with registered(ACTIVATIONS, BUGGY):
        profiles = {r.path: depth_profile(load_spec(r.path), r.path) for r in results[:2]}
    html = render("html", results, environment, depth=profiles)
    assert html.count('<table class="comparisons">') == 3 and '<table class="worst">' in html
    assert 'alt="relative error of layers.2.weight"' in html  # a failing weight matrix gets its heat map
    assert 'alt="relative error of layers.1.c"' not in html  # a scalar has no matrix to draw
    # depth is plotted where the spec fails (or stats flags a layer); a passing, unflagged spec gets its table only
    assert 'alt="gradient RMS and delta ratio per layer of planted"' in html
    assert 'alt="gradient RMS and delta ratio per layer of seed003-two-layer"' not in html
    assert "Not plotted: the spec passes and no layer is flagged." in html
    images = re.findall(r'<img [^>]*src="([^"]*)"', html)
    assert images and all(src.startswith("data:image/png;base64,") for src in images)
    assert not re.search(r"https?://", html), "the report must not fetch anything"
    assert not re.search(r"""(?:src|href)\s*=\s*["'](?!#|data:)""", html), "only in-page links and inline data"
    assert "<script" not in html and "default-src 'none'" in html


def test_html_lists_failing_spec_and_tensor_first(results, environment):
    html = render("html", results, environment)
    assert re.findall(r'<a href="#spec-\d+">([^<]+)</a>', html) == ["planted", "planted-c", "seed003-two-layer"]
    section = html[html.index("<h2>planted-c"):]
    first = re.search(r"<tr[^>]*><td class=\"status (\w+)\"[^>]*>[^<]*</td><td><code>([^<]+)</code></td><td>([^<]+)</td>", section)
    assert first.groups() == ("fail", "layers.1.c", "analytic vs numeric [cpu]")
    assert environment["numpy"] in html and environment["gradlab"] in html


def test_depth_profile_has_one_point_per_dense_layer():
    spec_path = next(p for p in SPECS if p.stem == "deep_sigmoid_10")
    spec = load_spec(spec_path)
    profile = depth_profile(spec, str(spec_path))
    n_dense = sum(layer.type == "dense" for layer in spec.network.layers)
    assert [p.depth for p in profile.layers] == list(range(1, n_dense + 1)) and n_dense > 5
    assert profile.layers[-1].delta_ratio == pytest.approx(1.0)
    assert profile.layers[0].delta_ratio < profile.layers[-1].delta_ratio  # sigmoids shrink delta going back
    assert profile.layers[0].verdict == "vanishing-dW" and profile.verdict == "vanishing-dW" and "8 initialisations" in profile.source


# --- JUnit -------------------------------------------------------------------------------------


def test_junit_is_what_ci_viewers_read(results, environment):
    root = ET.fromstring(render("junit", results, environment))
    assert root.tag == "testsuites"
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == ["planted", "planted-c", "seed003-two-layer"]
    for suite, result in zip(suites, [results[1], results[2], results[0]]):
        cases = suite.findall("testcase")
        assert len(cases) == int(suite.get("tests")) == len(result.comparisons)
        assert int(suite.get("failures")) == len(suite.findall("testcase/failure")) == len(result.failures)
        assert int(suite.get("skipped")) == len(suite.findall("testcase/skipped"))
        assert suite.get("errors") == "0" and float(suite.get("time")) >= 0
        props = {p.get("name"): p.get("value") for p in suite.findall("properties/property")}
        assert {"gradlab", "numpy", "torch", "dtype", "seed", "spec_sha256", "cpu", "cuda_devices"} <= set(props)
        assert props["spec_sha256"] == environment["specs"][result.path]["sha256"]
    assert int(root.get("tests")) == sum(len(r.comparisons) for r in results)
    assert int(root.get("failures")) == sum(len(r.failures) for r in results)


def test_junit_cases_have_a_time_that_adds_up_to_the_suite(results, environment):
    root = ET.fromstring(render("junit", results, environment))
    for suite in root.findall("testsuite"):
        times = [float(c.get("time")) for c in suite.findall("testcase")]
        assert times and all(t >= 0 for t in times)
        assert sum(times) == pytest.approx(float(suite.get("time")), abs=1e-3 * len(times))


def test_junit_failure_carries_the_numbers_and_skips_say_why(results, environment):
    root = ET.fromstring(render("junit", results, environment))
    suite = next(s for s in root.findall("testsuite") if s.get("name") == "planted-c")
    first = suite.find("testcase")
    assert first.get("name") == "layers.1.c: analytic vs numeric [cpu]"
    failure = first.find("failure")
    assert re.match(r"(suspect: [^;]+; )?1 / 1 elements mismatched; max abs \d\.\de[+-]\d\d, max rel", failure.get("message"))
    assert re.search(r"^index \| analytic +\| numeric +\| autograd\[cpu\] +\| difference", failure.text, re.MULTILINE)
    assert failure.text.splitlines()[:2] == ["suspect: backward of network.layers[1] (buggy_c_sigmoid): off by a factor of 2.0",
                                             "layers.1.c: analytic vs numeric, cpu, float64"]
    skipped = [c for c in suite.findall("testcase") if c.find("skipped") is not None]
    reasons = {c.note for c in results[2].comparisons if c.status == "skipped"}
    assert len(skipped) == 6 and all("[cuda:63]" in c.get("name") for c in skipped)
    assert {c.find("skipped").get("message") for c in skipped} == reasons and all(reasons)


# --- CSV / JSON --------------------------------------------------------------------------------


def test_csv_and_json_hold_the_same_rows_for_pandas(results, environment, tmp_path):
    (tmp_path / "r.csv").write_text(render("csv", results, environment))
    doc = json.loads(render("json", results, environment), parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    from_csv, from_json = pd.read_csv(tmp_path / "r.csv"), pd.DataFrame(doc["rows"])
    assert list(from_csv.columns) == list(from_json.columns)
    assert len(from_csv) == len(from_json) == sum(len(r.comparisons) for r in results)
    for col in ("spec", "parameter", "candidate", "reference", "device", "status", "mismatched"):
        assert from_csv[col].tolist() == from_json[col].tolist()
    pd.testing.assert_series_equal(from_csv["max_abs_err"], from_json["max_abs_err"].astype(float), check_exact=False, rtol=1e-12)
    assert {"gradlab", "numpy", "torch", "seed", "spec_sha256", "device_name", "dtype"} <= set(from_csv.columns)
    assert doc["passed"] is False and doc["verdict"].startswith("FAIL") and doc["environment"]["torch"]
    assert [s["name"] for s in doc["specs"]] == ["planted", "planted-c", "seed003-two-layer"]


def test_rows_put_the_failing_tensor_first(results, environment):
    doc = json.loads(render("json", results, environment))
    first = _first_row(doc["rows"], "planted-c")
    assert (first["parameter"], first["status"]) == ("layers.1.c", "fail")
    assert doc["rows"][0]["status"] == "fail"


# --- terminal ----------------------------------------------------------------------------------


def test_terminal_colours_only_on_a_terminal(results):
    plain, tty = io.StringIO(), io.StringIO()
    render_terminal(results, console=Console(file=plain, width=100))
    render_terminal(results, console=Console(file=tty, width=100, force_terminal=True))
    assert "\x1b[" not in plain.getvalue() and "\x1b[" in tty.getvalue()
    assert plain.getvalue().splitlines()[-1].startswith("FAIL: 2 of 3")


def test_quiet_prints_the_verdict_only_and_verbose_the_worst_elements():
    quiet = CliRunner().invoke(main, ["check", str(PASSING), "-q"])
    assert quiet.exit_code == 0 and quiet.output.strip().splitlines() == [quiet.output.strip()]
    assert quiet.output.startswith("PASS: 1 spec(s)")
    verbose = CliRunner().invoke(main, ["check", str(PASSING), "-v"], terminal_width=100)
    assert verbose.exit_code == 0 and "\x1b[" not in verbose.output
    for name in ("L0.weight", "L0.bias", "L2.weight", "L2.bias"):
        assert f"{name}: worst elements by ana/num (pass)" in verbose.output
    assert re.search(r"index\s+ana\s+num\s+autograd\[cpu\]\s+diff\s+num err\s+allowed", verbose.output)
    assert re.search(r"^parameter .* cosine ", verbose.output, re.MULTILINE)


def test_progress_bar_draws_on_a_terminal_only():
    for is_tty, expect in ((True, True), (False, False)):
        out = io.StringIO()
        console = Console(file=out, force_terminal=is_tty, width=100)
        with RunProgress(2, console=console, delay=0.0) as bar:
            bar.spec("first-spec", 10)(10)
            bar.spec("second-spec", 5)(5)
        assert ("second-spec" in out.getvalue()) is expect


def test_progress_total_is_what_the_numeric_engine_reports():
    for path in (PASSING, next(p for p in SPECS if p.stem == "deep_sigmoid_10")):
        counted = []
        runner.check_file(path, progress=counted.append)
        assert sum(counted) == numeric_elements(load_spec(path))


# --- CLI ---------------------------------------------------------------------------------------


def test_check_report_picks_each_format_from_the_suffix(tmp_path):
    names = ["r.md", "r.html", "r.json", "r.csv", "junit.xml"]
    args = [a for n in names for a in ("--report", str(tmp_path / n))]
    result = CliRunner().invoke(main, ["check", str(PASSING), "-q", *args])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "r.md").read_text().startswith("## ✅ gradlab PASS")
    assert "Gradient by depth" in (tmp_path / "r.html").read_text()  # a passing, unflagged spec: its table, no picture
    assert json.loads((tmp_path / "r.json").read_text())["passed"] is True
    assert len(pd.read_csv(tmp_path / "r.csv")) == 12
    assert ET.parse(tmp_path / "junit.xml").getroot().get("failures") == "0"


def test_check_report_with_unknown_suffix_is_a_usage_error(tmp_path):
    result = CliRunner().invoke(main, ["check", str(PASSING), "--report", str(tmp_path / "r.txt")])
    assert result.exit_code == 2 and ".md (md)" in result.output and ".xml (junit)" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "r.txt").exists()
    assert format_for("out/REPORT.HTML") == "html"


def test_report_command_exit_codes_and_formats(planted, tmp_path):
    spec = str(planted["folder"] / "planted.yaml")
    with registered(ACTIVATIONS, BUGGY):
        failing = CliRunner().invoke(main, ["report", spec, "--output", str(tmp_path / "r.xml"), "-q"])
        to_stdout = CliRunner().invoke(main, ["report", spec, str(PASSING), "--format", "json", "-q"])
    assert failing.exit_code == 1 and ET.parse(tmp_path / "r.xml").getroot().get("failures") == "8"
    assert to_stdout.exit_code == 1 and json.loads(to_stdout.stdout)["specs"][0]["name"] == "planted"
    ok = CliRunner().invoke(main, ["report", str(PASSING)])
    assert ok.exit_code == 0 and ok.stdout.startswith("## ✅ gradlab PASS")
    assert CliRunner().invoke(main, ["report", str(PASSING), "--format", "pdf"]).exit_code == 2


def test_markdown_goes_to_the_github_step_summary(tmp_path, monkeypatch):
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    CliRunner().invoke(main, ["check", str(PASSING), "-q", "--report", str(tmp_path / "r.html")])
    assert summary.read_text() == "earlier step\n"  # HTML alone: the summary is left alone
    result = CliRunner().invoke(main, ["check", str(PASSING), "-q", "--report", str(tmp_path / "r.md")])
    assert result.exit_code == 0
    assert summary.read_text().startswith("earlier step\n## ✅ gradlab PASS: 1 spec(s)")


# --- assert_gradients --------------------------------------------------------------------------


def test_assert_gradients_passes_quietly_and_fails_like_approx(planted):
    assert gradlab.assert_gradients(PASSING).passed
    with registered(ACTIVATIONS, BUGGY), pytest.raises(AssertionError) as err:
        gradlab.assert_gradients(planted["folder"] / "planted.yaml", devices=["cpu"])
    text = str(err.value)
    assert text.splitlines()[0].startswith("gradients of planted (") and "8 of 12 comparisons fail" in text
    block = text[text.index("layers.2.weight: analytic vs numeric, cpu, float64"):].splitlines()
    assert block[1] == "  Mismatched elements: 12 / 12"
    assert re.fullmatch(r"  Max absolute difference: \d\.\de[+-]\d\d", block[2])
    assert re.fullmatch(r"  Max relative difference: \d\.\de[+-]\d\d", block[3])
    assert re.fullmatch(r"  index\s+\| analytic\s+\| numeric\s+\| autograd\[cpu\]\s+\| difference\s+\| numeric err \| allowed", block[4])
    assert re.match(r"  \(\d,\d\)\s+\| -?\d", block[5])


# --- CI examples -------------------------------------------------------------------------------


def _reports(command: str) -> list[str]:
    words = command.split()
    return [words[i + 1] for i, w in enumerate(words) if w == "--report"]


def test_ci_examples_run_the_check_and_keep_the_html_report():
    import yaml

    from .conftest import ROOT

    github = yaml.safe_load((ROOT / "examples/ci/github-actions.yml").read_text())
    steps = github["jobs"]["gradlab"]["steps"]
    check = next(s["run"] for s in steps if s.get("run", "").startswith("gradlab check specs/ "))
    written = _reports(check)
    # a GPU-less runner: autograd on the CPU, or a spec asking for cuda would be INCOMPLETE (exit 4)
    assert "--device cpu" in check and {w.rsplit(".", 1)[1] for w in written} == {"md", "html", "xml"}
    upload = next(s for s in steps if s.get("uses", "").startswith("actions/upload-artifact"))
    assert upload["if"] == "always()" and all(w.startswith(upload["with"]["path"].strip()) for w in written)
    # pinned to something the user fills in, never to a tag that does not exist
    installs = [s["run"] for s in steps if "gradlab @ git+" in s.get("run", "")]
    assert installs and all(re.search(r"\.git@COMMIT-SHA\"", i) for i in installs)
    # torch's CPU wheels on a GPU-less runner, installed before gradlab pulls in the CUDA build
    torch_step = next(i for i, s in enumerate(steps) if "download.pytorch.org/whl/cpu" in s.get("run", ""))
    assert torch_step < next(i for i, s in enumerate(steps) if "gradlab @ git+" in s.get("run", ""))
    # one pull-request comment, edited on every push, not a new one each time, holding the check's Markdown
    comment = next(s for s in steps if "comment" in s.get("name", "").lower())
    assert comment["uses"].startswith("marocchino/sticky-pull-request-comment@")
    assert comment["with"]["header"] == "gradlab" and comment["with"]["path"] in written and comment["with"]["path"].endswith(".md")
    assert not any("gh pr comment" in s.get("run", "") for s in steps)

    job = yaml.safe_load((ROOT / "examples/ci/gitlab-ci.yml").read_text())["gradients"]
    check = next(line for line in job["script"] if line.startswith("gradlab check specs/ "))
    written = _reports(check)
    assert "--device cpu" in check and any("download.pytorch.org/whl/cpu" in line for line in job["script"])
    assert any(re.search(r"\.git@COMMIT-SHA\"", line) for line in job["script"])
    # expose_as links to the file itself only when it is the job's one artifact path
    html = next(w for w in written if w.endswith(".html"))
    assert job["artifacts"]["when"] == "always" and job["artifacts"]["paths"] == [html]
    assert job["artifacts"]["expose_as"] and job["artifacts"]["reports"]["junit"] == next(w for w in written if w.endswith(".xml"))


def test_results_frame_has_one_row_per_comparison():
    from gradlab import runner
    from gradlab.report.rows import results_frame

    from .conftest import SPECS

    results = [runner.check_file(p) for p in SPECS[:2]]
    frame = results_frame(results)
    assert len(frame) == sum(len(r.comparisons) for r in results)
    assert {"parameter", "candidate", "reference", "max_abs_err", "cosine", "status", "torch"} <= set(frame.columns)
    assert "rel_err_map" not in frame.columns


def test_environment_names_devices_that_ran_apart_from_those_skipped(results, environment):
    """A run asked for cuda:63, which is absent: "devices used" must not list it beside "cuda devices: none"."""
    md = render("md", results, environment)
    assert "| devices used | cpu |" in md and "| requested, not available (skipped) | cuda:63 |" in md
    html = render("html", results, environment)
    assert "<dt>devices used</dt><dd>cpu</dd>" in html and "<dd>cuda:63</dd>" in html
