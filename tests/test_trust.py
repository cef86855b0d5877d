"""Exit codes that never lie, reports written whole, user code that cannot end gradlab, the no-code switch.

Each test names one class of the trust contract (README: Exit codes, Security); tests/test_hostile.py
runs the whole hostile corpus through subprocesses.
"""

import json
import os
import resource
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from gradlab import output
from gradlab.cli import main
from gradlab.errors import GradlabError

from .conftest import ROOT

GOOD = str(ROOT / "specs" / "seed003_two_layer.yaml")

TINY = """
name: {name}
input: {{dim: 3, batch: 4}}
network:
  layers:
    - {{type: dense, units: 3}}
    - {{type: activation, fn: {fn}}}
    - {{type: dense, units: 2}}
loss: {{fn: sse}}
"""

OPS = '''
import sys
import numpy as np

class ExitInBackward:
    def forward(self, z):
        return np.tanh(z)
    def backward(self, z, grad_out):
        if np.any(np.abs(z) > 0.1):
            sys.exit(0)
        return grad_out * (1 - np.tanh(z) ** 2)

class OwnInterrupt:
    def forward(self, z):
        return np.tanh(z)
    def backward(self, z, grad_out):
        raise KeyboardInterrupt

class WrongShape:
    def forward(self, z):
        return np.tanh(z)
    def backward(self, z, grad_out):
        return grad_out[:, :1]
'''


def custom_spec(tmp_path, name, cls):
    (tmp_path / "ops.py").write_text(OPS)
    path = tmp_path / f"{name}.yaml"
    path.write_text(TINY.format(name=name, fn=f"custom, impl: ops.py:{cls}"))
    return str(path)


def error_lines(text):
    return [line for line in text.splitlines() if line.startswith("Error:")]


# --- user code never ends gradlab, and never stops the other specs --------------------------------


@pytest.mark.parametrize("cls, says", [("ExitInBackward", "called sys.exit(0)"), ("OwnInterrupt", "raised KeyboardInterrupt"),
                                       ("WrongShape", "returned shape (4, 1), expected (4, 3)")])
def test_user_code_failure_is_exit_2_naming_the_op_and_the_next_spec_still_runs(tmp_path, cls, says):
    bad = custom_spec(tmp_path, "bad", cls)
    report = tmp_path / "r.json"
    result = CliRunner().invoke(main, ["check", bad, GOOD, "--report", str(report), "-v"])  # -v: every spec's table
    assert result.exit_code == 2, result.output
    (line,) = error_lines(result.output)
    assert f"ops.py:{cls}" in line and says in line and line.startswith(f"Error: {bad}")
    assert "seed003-two-layer" in result.output and "L0.weight" in result.output  # the good spec's table
    assert "Traceback" not in result.output
    doc = json.loads(report.read_text())
    assert [s["error"] is None for s in doc["specs"]] == [False, True]


def test_exit_1_only_for_a_discrepancy_and_exit_2_wins_over_it(tmp_path):
    planted = tmp_path / "planted.py"
    planted.write_text("import numpy as np\nclass Off:\n    def forward(self, z): return np.tanh(z)\n"
                       "    def backward(self, z, g): return 2 * g * (1 - np.tanh(z) ** 2)\n")
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(TINY.format(name="wrong", fn="custom, impl: planted.py:Off"))
    assert CliRunner().invoke(main, ["check", str(wrong)]).exit_code == 1
    both = CliRunner().invoke(main, ["check", str(wrong), custom_spec(tmp_path, "bad", "WrongShape")])
    assert both.exit_code == 2
    assert "ERROR: 1 of 2 spec(s) could not be checked (bad); 1 more have gradient discrepancies (wrong)" in " ".join(both.output.split())


def test_internal_error_is_exit_3_with_one_line_and_the_traceback_only_with_debug(monkeypatch):
    from gradlab import runner

    def broken(*args, **kwargs):
        raise ValueError("a bug in gradlab")

    monkeypatch.setattr(runner, "run", broken)
    quiet = CliRunner().invoke(main, ["check", GOOD])
    assert quiet.exit_code == 3
    assert error_lines(quiet.output) == [line for line in quiet.output.splitlines() if line.strip()]
    assert "internal error of gradlab (ValueError: a bug in gradlab)" in quiet.output and "Traceback" not in quiet.output
    loud = CliRunner().invoke(main, ["check", GOOD, "--debug"])
    assert loud.exit_code == 3 and "Traceback" in loud.output


def test_a_real_ctrl_c_is_130(tmp_path):
    (tmp_path / "slow.py").write_text("import time\nclass Slow:\n    def forward(self, z):\n        time.sleep(60)\n        return z\n"
                                      "    def backward(self, z, g):\n        return g\n")
    spec = tmp_path / "slow.yaml"
    spec.write_text(TINY.format(name="slow", fn="custom, impl: slow.py:Slow"))
    proc = subprocess.Popen([sys.executable, "-m", "gradlab", "check", str(spec)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    import time

    time.sleep(4)
    proc.send_signal(2)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 130, out
    assert "Traceback" not in out


# --- the loss not finite at the spec's point is no discrepancy ------------------------------------


SATURATED = """
dtype: {dtype}
input: {{dim: 2, batch: 4}}
target: {{kind: binary}}
network:
  init: {{bias: {bias}}}
  layers:
    - {{type: dense, units: 2}}
    - {{type: activation, fn: sigmoid}}
loss: {{fn: binary_cross_entropy}}
"""


def test_saturated_float32_bce_says_where_the_loss_went_non_finite(write_spec):
    result = CliRunner().invoke(main, ["check", str(write_spec(SATURATED.format(dtype="float32", bias=20.0)))])
    assert result.exit_code == 2, result.output
    (line,) = error_lines(result.output)
    assert "loss: binary_cross_entropy is" in line and "float32" in line


def test_saturated_float64_bce_agrees_with_an_unclamped_torch_mirror(write_spec):
    result = CliRunner().invoke(main, ["check", str(write_spec(SATURATED.format(dtype="float64", bias=30.0)))])
    assert result.exit_code == 0, result.output


# --- files written whole, paths checked first ----------------------------------------------------


def test_an_unwritable_report_is_refused_before_any_check(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = CliRunner().invoke(main, ["check", GOOD, "--report", str(blocker / "r.md")])
    assert result.exit_code == 2
    assert error_lines(result.output) and "--report: cannot write here" in result.output
    assert "L0.weight" not in result.output  # nothing ran


def test_write_atomic_leaves_the_previous_file_when_writing_fails(tmp_path, monkeypatch):
    target = tmp_path / "r.html"
    target.write_text("previous report")

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(GradlabError, match="No space left"):
        output.write_atomic(str(target), "new report" * 1000)
    assert target.read_text() == "previous report"
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]  # no temporary file left behind


def test_concurrent_writers_never_splice_documents(tmp_path):
    target = tmp_path / "same.html"
    docs = [f"<html>{i}" + str(i) * 200_000 + "</html>" for i in range(6)]
    threads = [threading.Thread(target=output.write_atomic, args=(str(target), d)) for d in docs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert target.read_text() in docs


def test_a_file_size_limit_keeps_the_previous_report(tmp_path):
    report = tmp_path / "r.html"
    report.write_text("previous report")

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (8 * 1024, 8 * 1024))

    proc = subprocess.run([sys.executable, "-m", "gradlab", "check", GOOD, "--report", str(report), "-q"],
                          capture_output=True, text=True, preexec_fn=limit, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "cannot write" in proc.stderr and "Traceback" not in proc.stderr
    assert report.read_text() == "previous report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.html"]


# --- the no-code switch and where dotted names are looked up ---------------------------------------


def test_no_code_refuses_impl_before_importing_anything(tmp_path, monkeypatch):
    marker = tmp_path / "imported"
    (tmp_path / "ops.py").write_text(f"open({str(marker)!r}, 'w').close()\nclass Act: pass\n")
    spec = tmp_path / "s.yaml"
    spec.write_text(TINY.format(name="s", fn="custom, impl: ops.py:Act"))
    monkeypatch.setenv("GRADLAB_NO_CODE", "1")
    result = CliRunner().invoke(main, ["check", str(spec)])
    assert result.exit_code == 2 and "user code is switched off" in result.output
    assert not marker.exists()


def test_no_code_flag(tmp_path):
    marker = tmp_path / "imported"
    (tmp_path / "ops.py").write_text(f"open({str(marker)!r}, 'w').close()\nclass Act: pass\n")
    spec = tmp_path / "s.yaml"
    spec.write_text(TINY.format(name="s", fn="custom, impl: ops.py:Act"))
    from gradlab import usercode

    result = CliRunner().invoke(main, ["check", "--no-code", str(spec)])
    assert result.exit_code == 2 and "--no-code" in result.output
    assert not marker.exists()
    assert usercode.code_allowed()  # the switch was for that command: an in-process caller gets its setting back


def test_a_dotted_impl_never_imports_from_the_working_directory(tmp_path, monkeypatch):
    marker = tmp_path / "ran"
    (tmp_path / "setup.py").write_text(f"open({str(marker)!r}, 'w').close()\nclass Act: pass\n")
    spec = tmp_path / "s.yaml"
    spec.write_text(TINY.format(name="s", fn="custom, impl: 'setup:Act'"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    result = CliRunner().invoke(main, ["check", str(spec)])
    assert result.exit_code == 2 and "among the installed packages" in result.output
    assert not marker.exists()


# --- YAML as people write it, and names that are markup -------------------------------------------


def test_scientific_notation_and_merge_keys_are_accepted(write_spec):
    text = """
input: {dim: 3, batch: 2, scale: 1e0}
network:
  layers:
    - &hidden {type: dense, units: 4}
    - {type: activation, fn: leaky_relu, slope: 1e-2}
    - {<<: *hidden, units: 2}
loss: {fn: sse}
check: {tolerance: {atol: 1e-12}}
"""
    from gradlab.spec import load_spec

    spec = load_spec(write_spec(text))
    assert spec.network.layers[2].units == 2 and spec.network.layers[1].hyper()["slope"] == 0.01
    assert spec.input.scale == 1.0 and spec.check.tolerance.atol == 1e-12
    assert CliRunner().invoke(main, ["check", str(write_spec(text))]).exit_code == 0


@pytest.mark.parametrize("name", ["'[/]'", "'[bold red]x[/]'"])
def test_rich_markup_in_a_name_is_printed_literally(write_spec, name):
    result = CliRunner().invoke(main, ["check", str(write_spec(TINY.format(name=name, fn="tanh")))])
    assert result.exit_code == 0, result.output
    assert name.strip("'") in result.output


def test_every_report_says_which_spec_could_not_be_checked(tmp_path):
    import xml.etree.ElementTree as ET

    bad = custom_spec(tmp_path, "bad", "WrongShape")
    paths = {fmt: tmp_path / f"r.{fmt}" for fmt in ("md", "html", "xml", "json")}
    args = ["check", bad, GOOD, "-q"] + [a for p in paths.values() for a in ("--report", str(p))]
    assert CliRunner().invoke(main, args).exit_code == 2
    says = "returned shape (4, 1), expected (4, 3)"
    md = paths["md"].read_text()
    assert md.startswith("## ❌ gradlab ERROR: 1 of 2 spec(s) could not be checked") and "### ⛔ bad: could not be checked" in md and says in md
    html = paths["html"].read_text()
    assert "Could not be checked:</strong>" in html and says in html and 'class="badge error"' in html
    suites = ET.parse(paths["xml"]).getroot()
    errored = [s for s in suites if s.get("errors") == "1"]
    assert len(errored) == 1 and says in errored[0].find("testcase/error").get("message")
    doc = json.loads(paths["json"].read_text())
    assert doc["passed"] is False and says in doc["specs"][0]["error"] and doc["specs"][1]["error"] is None


def test_no_report_when_no_spec_could_be_checked(tmp_path):
    report = tmp_path / "r.md"
    report.write_text("previous")
    result = CliRunner().invoke(main, ["check", custom_spec(tmp_path, "bad", "WrongShape"), "--report", str(report)])
    assert result.exit_code == 2 and len(error_lines(result.output)) == 1
    assert [line for line in result.output.splitlines() if line.strip()] == error_lines(result.output)
    assert report.read_text() == "previous"


def test_a_closed_pipe_is_no_internal_error():
    """`gradlab check specs/*.yaml -v | head -1`: the reader going away is exit 2 with one line, never exit 3 or a traceback."""
    specs = sorted(map(str, (ROOT / "specs").glob("*.yaml")))  # the top folder's: specs/ recurses into 33, all validated first
    proc = subprocess.Popen([sys.executable, "-m", "gradlab", "check", *specs, "-v"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 2, err
    assert "broken pipe" in err and "Traceback" not in err and "internal error" not in err


def test_stats_that_cannot_measure_a_spec_is_a_note_not_an_error():
    """`check --stats` on a spec with a custom layer: the check's verdict stands (exit 0); stats says why it skipped."""
    result = CliRunner().invoke(main, ["check", str(ROOT / "specs" / "custom" / "layernorm_huber.yaml"), "--stats", "-q"])
    assert result.exit_code == 0, result.output
    assert "note: --stats skipped:" in result.output and "custom layer" in result.output and not error_lines(result.output)


def test_an_invalid_spec_named_twice_is_reported_twice_not_a_crash(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("input: {dim: .nan}\n")
    result = CliRunner().invoke(main, ["check", str(broken), str(broken), GOOD, "-q"])
    assert result.exit_code == 2, result.output
    assert len(error_lines(result.output)) == 2 and "internal error" not in result.output
