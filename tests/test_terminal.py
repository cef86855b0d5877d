"""The terminal: right numbers beside an element, logs that grep, no number cut, a bar that stops at 100%."""

import io
import re

import pytest
from click.testing import CliRunner
from rich.console import Console

from gradlab import runner
from gradlab.batch import numeric_elements, progress_work
from gradlab.cli import main
from gradlab.ops import ACTIVATIONS
from gradlab.report import stats_table
from gradlab.report.labels import pair_label, short_engine
from gradlab.report.progress import RunProgress
from gradlab.report.terminal import SPEC_DROP_ORDER, failure_lines, render
from gradlab.spec import load_spec

from .conftest import SPECS, registered
from .test_engines import BUGGY, BUGGY_SPEC
from .test_report import BUGGY_C, C_SPEC, PASSING

# A number as the table prints it (1.2e-03, -0.0460581, 0.99386) and the same cut short by rich.
_CUT_NUMBER = re.compile(r"\d(?:\.\d*)?(?:e[+-]?\d*)?…")


@pytest.fixture(scope="module")
def failing(tmp_path_factory):
    folder = tmp_path_factory.mktemp("terminal")
    (folder / "planted.yaml").write_text(BUGGY_SPEC)
    (folder / "planted_c.yaml").write_text(C_SPEC)
    with registered(ACTIVATIONS, BUGGY), registered(ACTIVATIONS, BUGGY_C):
        return [runner.check_file(folder / "planted.yaml"), runner.check_file(folder / "planted_c.yaml")]


def _screen(results, width, **kw) -> str:
    out = io.StringIO()
    render(results, console=Console(file=out, width=width, force_terminal=True, color_system=None, legacy_windows=False), **kw)
    return out.getvalue()


# --- 1: every number next to an element is that element's ---------------------------------------


def test_failure_line_gives_the_worst_elements_own_numbers(failing):
    lines = failure_lines(failing[0])
    for line in lines:
        name = line.split(":")[0].strip()
        c = next(c for c in failing[0].failures if c.parameter == name and c.reference == "numeric" and c.candidate == "analytic")
        w = next(w for w in c.worst if tuple(w["index"]) == tuple(c.worst_index))
        head, element = line.split("; worst ")
        assert f"max abs err {c.max_abs_err:.1e}" in head  # the tensor's, before the element
        assert f"difference {w['abs_err']:.1e}" in element and f"numeric err est {w['numeric_err']:.1e}" in element
        assert f"allowed {w['bound']:.1e}" in element
        assert f"{c.max_abs_err:.1e}" not in element or w["abs_err"] == c.max_abs_err
    # the worst element is not the one with the largest difference here: the bug would show
    assert any(f"{c.max_abs_err:.1e}" not in line.split("; worst ")[1] for c, line in zip(failing[0].failures, lines))


def test_a_failing_tensor_is_listed_once_naming_its_other_failing_pairs(failing):
    lines = failure_lines(failing[0])
    names = [line.split(":")[0].strip() for line in lines]
    assert len(names) == len(set(names)) == 4
    assert all("(also fails: analytic vs autograd[cpu])" in line for line in lines)


# --- 5: pipes and CI logs -------------------------------------------------------------------------


def _named(text: str, name: str) -> str:
    return re.sub(r"(?m)^name:.*$", f"name: {name}", text) if re.search(r"(?m)^name:", text) else f"name: {name}\n{text}"


def test_pipes_are_never_wrapped_or_padded_and_the_verdict_is_one_line(tmp_path):
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(30):  # 18 passing, 12 failing, each with a name longer than a terminal
        long = f"a-spec-with-a-rather-long-name-to-overflow-any-terminal-width-{i:02d}"
        (folder / f"s{i:02d}.yaml").write_text(_named(PASSING.read_text() if i < 18 else BUGGY_SPEC, long))
    with registered(ACTIVATIONS, BUGGY):
        for args in ([], ["-q"], ["-v"]):
            result = CliRunner().invoke(main, ["check", str(folder), *args], terminal_width=80)
            assert result.exit_code == 1, result.output
            lines = result.output.splitlines()
            assert not [line for line in lines if line != line.rstrip()], args
            assert [line for line in lines if line.startswith("FAIL:")] == [lines[-1]]
            assert lines[-1].startswith("FAIL: 12 of 30 spec(s)") and lines[-1].endswith("fail")
            assert "-width-18, a-spec-with" in lines[-1] and len(lines[-1]) > 80
            if args != ["-q"]:  # the spec's title, whole, on one line
                title = next(line for line in lines if line.startswith("a-spec-with-a-rather-long-name-to-overflow-any-terminal-width-18  ("))
                assert title.endswith("full mode)")
        assert len(CliRunner().invoke(main, ["check", str(folder), "-q"]).output.splitlines()) == 1


def test_failing_output_in_a_pipe_keeps_each_row_and_line_whole(failing):
    out = io.StringIO()
    render(failing, console=Console(file=out, width=40))
    lines = out.getvalue().splitlines()
    assert not [line for line in lines if line != line.rstrip()]
    assert lines[-1].startswith("FAIL: 2 of 2 spec(s)") and lines[-1].endswith("skipped")
    row = next(line for line in lines if line.startswith("L1.c") and "ana/num" in line)
    assert re.search(r"\d\.\de[+-]\d\d\s+\S+\s+\d\.\de[+-]\d\d\s+\(\)\s+fail$", row)  # every column, one line
    assert any(line.startswith("  layers.1.c: analytic vs numeric") and "worst ()" in line for line in lines)


def test_force_color_colours_a_log_without_wrapping_it(failing):
    out = io.StringIO()  # FORCE_COLOR=1 in a CI log: a colour request, not a screen
    render(failing, console=Console(file=out, width=60, force_terminal=None, color_system="standard", _environ={"FORCE_COLOR": "1"}))
    text = out.getvalue()
    assert "\x1b[" in text
    assert max(len(re.sub(r"\x1b\[[0-9;]*m", "", line)) for line in text.splitlines()) > 60
    assert not [line for line in text.splitlines() if re.sub(r"\x1b\[[0-9;]*m", "", line).endswith(" ")]


# --- 6: narrow terminals drop columns, never cut a number -----------------------------------------


@pytest.mark.parametrize("width", [60, 80, 120])
@pytest.mark.parametrize("verbose", [False, True])
def test_a_screen_drops_columns_by_priority_and_never_cuts_a_number(failing, width, verbose):
    text = _screen(failing, width, verbose=verbose)
    assert not _CUT_NUMBER.search(text), _CUT_NUMBER.search(text)
    assert "L0.wei…" not in text and "skipp…" not in text and "skipped" in text
    headers = [line for line in text.splitlines() if line.startswith("parameter")]
    assert headers
    for header in headers:
        after = text.split(header, 1)[1].splitlines()[1:]
        table_lines = [header] + after[: next(i for i, line in enumerate(after) if not line or line.startswith("  "))]
        assert len(table_lines) > 3 and max(len(line) for line in table_lines) <= width
        shown = header.split()
        wanted = ["max abs", "num err", "max rel", "worst"] + (["cosine"] if verbose else [])
        dropped = [col for col in SPEC_DROP_ORDER if col in wanted and col.split()[0] not in shown]
        # what is gone is a prefix of the drop order: a column goes only after every one before it
        order = [col for col in SPEC_DROP_ORDER if col in wanted]
        assert dropped == order[: len(dropped)]
    if width >= 120:
        assert "worst" in headers[0] and "num err" in headers[0]
    if width == 60:
        assert "worst" not in headers[0]


def test_stats_table_drops_columns_at_60_and_keeps_the_verdict_whole():
    from gradlab import stats as stats_mod

    path = next(p for p in SPECS if p.stem == "deep_sigmoid_10")
    result = stats_mod.run(load_spec(path), path=str(path))
    out = io.StringIO()
    stats_table.render([result], console=Console(file=out, width=60, force_terminal=True, color_system=None))
    text = out.getvalue()
    assert "…" not in text
    table_lines = [line for line in text.splitlines() if line.startswith(("layer", "L"))]
    assert table_lines and max(len(line) for line in table_lines) <= 60
    assert "verdict" in table_lines[0] and "δ/δout" in table_lines[0] and "theory" not in table_lines[0]
    piped = io.StringIO()
    stats_table.render([result], console=Console(file=piped, width=60))
    assert "theory" in piped.getvalue() and not [line for line in piped.getvalue().splitlines() if line.endswith(" ")]


# --- 8: -v prints the cosine -----------------------------------------------------------------------


def test_verbose_prints_each_comparisons_cosine(failing):
    text = _screen(failing, 120, verbose=True)
    header = next(line for line in text.splitlines() if line.startswith("parameter"))
    assert "cosine" in header
    row = next(line for line in text.splitlines() if line.startswith("L0.weight") and "ana/num" in line)
    c = next(c for c in failing[0].comparisons if c.parameter == "layers.0.weight" and c.reference == "numeric" and c.candidate == "analytic")
    assert f"{c.cosine:.5f}" in row
    assert "cosine" not in _screen(failing, 120)


# --- 10: one vocabulary --------------------------------------------------------------------------


def test_engine_names_are_the_same_words_as_every_other_output(failing):
    assert short_engine("autograd[cuda:1]") == "autograd[cuda:1]" and short_engine("analytic") == "ana"
    text = _screen(failing, 120, verbose=True)
    assert "torch" not in text and "gpu" not in text and "ana/autograd[cpu]" in text and "ana/autograd[cuda:63]" in text
    c = next(c for c in failing[0].comparisons if c.reference == "autograd[cpu]")
    assert pair_label(c) == "analytic vs autograd[cpu]"
    n = next(c for c in failing[0].comparisons if c.reference == "numeric" and c.candidate == "analytic")
    assert pair_label(n) == "analytic vs numeric [cpu]"


# --- 12: volume ------------------------------------------------------------------------------------


def test_an_all_pass_run_prints_a_line_per_spec_and_the_verdict(tmp_path):
    import shutil

    (tmp_path / "sub").mkdir()
    names = ("seed000_tanh", "seed002_classifier", "seed003_two_layer", "deep_sigmoid_10")  # seed002 asks for cuda
    for name in names:
        shutil.copy(next(p for p in SPECS if p.stem == name), tmp_path / "sub" / f"{name}.yaml")
    specs = str(tmp_path)
    result = CliRunner().invoke(main, ["check", specs, "--allow-unchecked"])  # seed002's cuda rows: skipped without a GPU
    lines = result.output.splitlines()
    n = len(names)
    summary = [line for line in lines if line.startswith(("PASS  ", "INCOMPLETE  "))]  # INCOMPLETE: seed002's cuda, without a GPU
    assert result.exit_code == 0 and len(summary) == n
    assert all(re.search(r": \d+ (pass|zero-gradient)\b.* in \d+\.\d\d s$", line) for line in summary)
    assert "parameter" not in result.output and lines[-1].startswith(("PASS:", "INCOMPLETE:"))
    assert len(lines) < 2 * n + 1  # notes (zero gradient, skipped pairs) only, no tables
    verbose = CliRunner().invoke(main, ["check", specs, "-v"]).output
    assert verbose.count("candidate/ref") == n


def test_a_failing_spec_gets_its_table_and_a_passing_one_its_line(failing):
    out = io.StringIO()
    render(failing + [runner.check_file(PASSING)], console=Console(file=out))
    text = out.getvalue()
    assert text.count("candidate/ref") == 2 and "PASS  seed003-two-layer" in text


# --- 7: the progress bar ---------------------------------------------------------------------------


def _snapshots(bar):
    return [(t.description, t.completed, t.total) for t in bar._progress.tasks]


def test_progress_never_passes_its_total_and_says_what_follows_the_numeric_engine():
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100)
    seen = []
    with RunProgress(2, console=console, delay=0.0) as bar:
        tick = bar.spec("first", 10)
        for n in (4, 4, 4, 4):  # a caller that reports more than it announced
            tick(n)
            seen += _snapshots(bar)
        assert any("autograd and comparison" in d for d, _, _ in _snapshots(bar))
        tick = bar.spec("second", 6, stage="projections")
        tick(3)
        seen += _snapshots(bar)
    assert all(total is None or completed <= total for _, completed, total in seen)
    assert max(c for d, c, _ in seen if "first" in d) == 10
    assert ("  second: projections", 3, 6) in seen


def test_fast_mode_total_is_what_the_runner_reports():
    spec = load_spec(PASSING)
    work, stage = progress_work(spec, mode="fast", devices=["cpu"])
    counted = []
    runner.run(spec, path=str(PASSING), mode="fast", devices=["cpu"], progress=counted.append)
    assert stage == "projections" and sum(counted) == work == 2 * numeric_elements(spec)
    assert progress_work(spec, mode="full") == (numeric_elements(spec), "numeric")
