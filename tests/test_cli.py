"""CLI: exit codes 0/1/2, JSON shape, help and version."""

import json

from click.testing import CliRunner

from gradlab import __version__
from gradlab.cli import main

from .conftest import ROOT, SPECS

COMPARISON_KEYS = {"parameter", "reference", "candidate", "device", "dtype", "max_abs_err", "max_rel_err", "cosine", "worst_index", "status"}


def test_check_all_shipped_specs_exit_0():
    # seed002 asks for cuda too: on a machine without one, --device cpu is what it can check, all of it
    result = CliRunner().invoke(main, ["check", *map(str, SPECS), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "PASS" in result.output.splitlines()[-1]


def _tree(root):
    """A spec folder as a repository holds one: subfolders, a hidden folder, a venv, other YAML."""
    good = (ROOT / "specs" / "seed000_tanh.yaml").read_text()
    for rel in ("top.yaml", "nested/deeper/two.yml", ".hidden/no.yaml", "venv/no.yaml", "build/no.yaml"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(good.replace("seed000-tanh", rel.replace("/", "-").split(".")[0]))
    (root / "nested" / "ci.yml").write_text("on: push\njobs: {test: {runs-on: ubuntu-latest}}\n")
    return root


def test_check_directory_recurses_as_pytest_collects(tmp_path, pytester):
    """`gradlab check DIR` and `pytest DIR` take the same files: subfolders in, pytest's norecursedirs out."""
    tree = _tree(tmp_path / "specs")
    result = CliRunner().invoke(main, ["check", str(tree), "--format", "json"])
    assert result.exit_code == 0, result.output
    checked = sorted(s["spec"] for s in json.loads(result.stdout)["specs"])
    assert checked == [str(tree / "nested" / "deeper" / "two.yml"), str(tree / "top.yaml")]
    note = f"note: {tree / 'nested' / 'ci.yml'}: skipped, not a gradlab spec"
    assert result.stderr.count(note) == 1
    assert CliRunner().invoke(main, ["check", str(tree), "-q"]).stderr.count(note) == 1  # every command says it, once
    collected = pytester.runpytest_inprocess("--collect-only", "-q", str(tree)).outlines
    assert sorted(line.split("::")[0].split("/specs/")[1] for line in collected if "::" in line) == ["nested/deeper/two.yml", "top.yaml"]


def test_check_directory_without_specs_names_what_it_found(tmp_path):
    (tmp_path / "ci.yml").write_text("on: push\n")
    result = CliRunner().invoke(main, ["check", str(tmp_path)])
    assert result.exit_code == 2 and "no gradlab specs (*.yaml, *.yml) in this directory or its subfolders (1 other YAML" in result.output


def test_json_shape(tmp_path):
    out = tmp_path / "r.json"
    result = CliRunner().invoke(main, ["check", str(SPECS[0]), str(SPECS[1]), "--format", "json", "--output", str(out)])
    assert result.exit_code == 0
    doc = json.loads(out.read_text())
    assert doc["passed"] is True and len(doc["specs"]) == 2
    for s in doc["specs"]:
        assert {"spec", "name", "passed", "comparisons"} <= set(s)
        assert s["comparisons"] and all(COMPARISON_KEYS <= set(c) for c in s["comparisons"])
    assert doc["environment"]["torch"]


def test_json_to_stdout_is_parseable():
    result = CliRunner().invoke(main, ["check", str(SPECS[0]), "--format", "json"])
    assert json.loads(result.output)["specs"][0]["name"]


def test_version_and_help():
    assert __version__ in CliRunner().invoke(main, ["--version"]).output
    help_text = CliRunner().invoke(main, ["check", "--help"]).output
    assert "Examples:" in help_text and "--format" in help_text


def test_usage_errors_exit_2():
    assert CliRunner().invoke(main, ["check"]).exit_code == 2
    assert CliRunner().invoke(main, ["check", str(SPECS[0]), "--format", "xml"]).exit_code == 2
    r = CliRunner().invoke(main, ["check", str(SPECS[0]), "--device", "tpu"])
    assert r.exit_code == 2 and "unknown device" in r.output
    r = CliRunner().invoke(main, ["check", str(SPECS[0]), "--engines", "analytic"])
    assert r.exit_code == 2 and "at least two" in r.output


def test_table_fits_80_columns():
    import io

    from rich.console import Console

    from gradlab import runner
    from gradlab.report.terminal import render

    out = io.StringIO()  # a screen 80 columns wide: the table fits it (pipes are never wrapped: tests/test_terminal.py)
    render([runner.check_file(SPECS[0])], console=Console(file=out, width=80, force_terminal=True, color_system=None), verbose=True)
    # every table line; the title and the text lines are soft-wrapped by the terminal itself
    table = [line for line in out.getvalue().splitlines() if line and not line.startswith(("  ", "PASS")) and not line.endswith(" mode)")]
    assert "candidate/ref" in out.getvalue() and max(len(line) for line in table) <= 80


def test_fast_mode_from_the_command_line():
    result = CliRunner().invoke(main, ["check", str(SPECS[0]), "--mode", "fast", "--format", "json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["specs"][0]["mode"] == "fast"
    assert any("fast mode" in c["note"] for c in doc["specs"][0]["comparisons"])


def _help(*command):
    result = CliRunner().invoke(main, [*command, "--help"], terminal_width=80)
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())


def test_help_and_flags_say_the_same_thing_everywhere():
    top = CliRunner().invoke(main, ["--help"], terminal_width=80).output
    commands = top.split("Commands:")[1].strip().splitlines()
    assert len(commands) == len(main.commands) and not any(line.rstrip().endswith("...") for line in commands), top
    quiet = {c: _help(c).split("-q, --quiet")[1].split(" --")[0] for c in ("check", "report", "stats")}
    assert len(set(quiet.values())) == 1 and "verdict line" in quiet["check"], quiet
    for command, subject in (("audit", "TARGET"), ("compare", "CANDIDATE and REFERENCE")):
        no_code = _help(command).split("--no-code")[1].split(" --")[0]
        assert "spec" not in no_code and f"Refuse to import {subject}" in no_code, no_code
    compare_timeout = _help("compare").split("--timeout SECONDS")[1].split(" --")[0]
    assert "spec" not in compare_timeout and "check.timeout" not in compare_timeout
    assert "check.timeout" in _help("check").split("--timeout SECONDS")[1].split(" --")[0]


def test_quiet_prints_verdict_lines_only_also_with_stats():
    spec = str(ROOT / "specs" / "seed000_tanh.yaml")
    out = CliRunner().invoke(main, ["check", spec, "--stats", "-q"]).stdout.splitlines()
    assert out == ["PASS: 1 spec(s), gradients agree; 12 pass", "stats verdict over 1 spec: ok; ok: 1"], out
    out = CliRunner().invoke(main, ["stats", spec, "-q"]).stdout.splitlines()
    assert out == ["stats verdict over 1 spec: ok; ok: 1"], out
