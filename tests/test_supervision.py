"""A green means checked (issue 19): user code cannot end gradlab with a pass, nothing unchecked passes.

The `gradlab` command runs its work in a supervised child (gradlab.supervise): these tests run the real
console script in a subprocess, because what they guard against -- os._exit, atexit, threads, writes to
file descriptor 1 -- is exactly what an in-process CliRunner cannot see. The pytest plugin's items for
specs with user code run in a child too (pytester, in process). Accounting (exit 4) and the deadline's
clean-up are tested in process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from gradlab.cli import main

ROOT = Path(__file__).resolve().parents[1]
TARGETS = ROOT / "tests" / "supervision_targets"
SPEC = TARGETS / "swish.yaml"
GRADLAB = [sys.executable, "-c", "from gradlab.console import main; main()"]  # exactly what the console script runs


def gradlab(*args, mode: str = "", where: str = "forward", wrong: float = 1.0, timeout: float = 120):
    env = {**os.environ, "GRADLAB_TEST_HOSTILE": mode, "GRADLAB_TEST_WHERE": where, "GRADLAB_TEST_WRONG": str(wrong)}
    env.pop("GRADLAB_NO_SUPERVISOR", None)
    return subprocess.run([*GRADLAB, *map(str, args)], capture_output=True, text=True, env=env, timeout=timeout, cwd=ROOT)


@pytest.mark.parametrize("mode,where", [("exit0", "forward"), ("exit3", "backward"), ("kill_self", "backward")])
def test_user_code_that_ends_the_process_is_an_error_naming_the_op(mode, where):
    run = gradlab("check", SPEC, "--format", "json", mode=mode, where=where)
    assert run.returncode == 2, (run.stdout, run.stderr)
    assert run.stdout == ""  # no verdict was recorded, so none is printed
    error = [line for line in run.stderr.splitlines() if line.startswith("Error:")]
    assert len(error) == 1 and "did not finish" in error[0] and "swish.py:Swish" in error[0], run.stderr
    assert ("SIGKILL" if mode == "kill_self" else "exit status") in error[0]


def test_an_atexit_handler_cannot_turn_a_failure_into_a_pass():
    run = gradlab("check", SPEC, "-q", mode="atexit", wrong=1.01)
    assert run.returncode == 1, (run.stdout, run.stderr)
    assert run.stdout.startswith("FAIL:")


def test_user_code_cannot_corrupt_stdout_or_hold_the_process():
    """os.write(1, ...), os.system("echo"), print, a non-daemon thread and sys.stdout.close() in every forward call."""
    run = gradlab("check", SPEC, "--format", "json", mode="everything", timeout=60)  # the thread must not hang it
    assert run.returncode == 0, (run.stdout, run.stderr)
    doc = json.loads(run.stdout)  # whatever the op wrote went to stderr
    assert doc["passed"] is True and doc["complete"] is True
    for junk in ("JUNK ON FD 1", "JUNK FROM A SHELL", "JUNK FROM PRINT"):
        assert junk in run.stderr and junk not in run.stdout


def test_ctrl_c_still_ends_a_supervised_run_with_130(tmp_path):
    env = {**os.environ, "GRADLAB_TEST_HOSTILE": "", "GRADLAB_TEST_WHERE": "forward"}
    slow = tmp_path / "slow.yaml"
    slow.write_text(SPEC.read_text().replace("swish.py:Swish", str(TARGETS / "swish.py") + ":Swish")
                    .replace("batch: 4", "batch: 4096").replace("units: 4", "units: 400"))
    proc = subprocess.Popen([*GRADLAB, "check", str(slow), "-q"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            cwd=ROOT, start_new_session=True)
    try:
        import time

        time.sleep(4)
        os.killpg(proc.pid, signal.SIGINT)  # as a terminal does: the whole foreground group
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, (out, err)


# --- the pytest plugin: specs with user code run in a child -------------------------------------------------


def test_pytest_items_survive_user_code_that_exits_or_interrupts(pytester, monkeypatch):
    for name in ("swish.py", "swish.yaml", "interrupting.yaml"):
        (pytester.path / name).write_text((TARGETS / name).read_text())
    monkeypatch.setenv("GRADLAB_TEST_HOSTILE", "exit0")
    monkeypatch.setenv("GRADLAB_TEST_WHERE", "backward")
    result = pytester.runpytest("-p", "no:cacheprovider", "swish.yaml", "interrupting.yaml")
    result.assert_outcomes(failed=2)  # neither ends the session; each is its own failure
    result.stdout.fnmatch_lines(["*swish.yaml*user code ended the check*exit status 0*swish.py:Swish*",
                                 "*interrupting.yaml*raised KeyboardInterrupt*"])
    monkeypatch.setenv("GRADLAB_TEST_HOSTILE", "")
    pytester.runpytest("-p", "no:cacheprovider", "swish.yaml").assert_outcomes(passed=1)


# --- accounting: nothing unchecked passes -------------------------------------------------------------------


def test_a_device_that_is_not_there_makes_the_run_incomplete_not_a_pass():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is here: seed002 is checked in full")
    spec = str(ROOT / "specs" / "seed002_classifier.yaml")
    run = CliRunner().invoke(main, ["check", spec, "--format", "json"])
    assert run.exit_code == 4, run.output
    doc = json.loads(run.output)
    assert doc["passed"] is False and doc["complete"] is False
    assert {u["reason"] for u in doc["unchecked"]} == {"CUDA is not available on this machine"}
    table = CliRunner().invoke(main, ["check", spec, "-q"])
    assert table.exit_code == 4 and table.output.startswith("INCOMPLETE:") and "autograd[cuda]" in table.output
    accepted = CliRunner().invoke(main, ["check", spec, "-q", "--allow-unchecked"])
    assert accepted.exit_code == 0, accepted.output
    assert CliRunner().invoke(main, ["check", spec, "-q", "--device", "cpu"]).exit_code == 0  # what is asked for is all there


def test_a_run_that_checked_nothing_is_never_a_pass_even_when_skips_are_accepted(write_spec):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is here")
    spec = write_spec("input: {dim: 2, batch: 3}\ntarget: {kind: regression}\nnetwork:\n  layers:\n    - {type: dense, units: 2}\n"
                      "loss: {fn: sse}\ncheck: {engines: [analytic, autograd], devices: [cuda]}\n")
    run = CliRunner().invoke(main, ["check", str(spec), "--allow-unchecked"])
    assert run.exit_code == 4, run.output
    assert "every gradient" in run.output


def test_wrt_input_is_checked_in_fast_mode_too(write_spec):
    spec = write_spec("input: {dim: 3, batch: 4}\ntarget: {kind: regression}\nnetwork:\n  layers:\n    - {type: dense, units: 3}\n"
                      "    - {type: activation, fn: tanh}\n    - {type: dense, units: 2}\nloss: {fn: sse}\ncheck: {wrt_input: true}\n")
    run = CliRunner().invoke(main, ["check", str(spec), "--mode", "fast", "--format", "json"])
    assert run.exit_code == 0, run.output
    rows = [c for s in json.loads(run.output)["specs"] for c in s["comparisons"] if c["parameter"] == "input"]
    assert {(c["reference"], c["candidate"]) for c in rows} == {("numeric", "analytic"), ("numeric", "autograd[cpu]"), ("autograd[cpu]", "analytic")}
    assert all(c["status"] == "pass" for c in rows)


def test_wrt_input_in_fast_mode_catches_a_wrong_input_gradient(monkeypatch):
    run = gradlab("check", SPEC, "--mode", "fast", "-q", wrong=1.01)
    assert run.returncode == 1, (run.stdout, run.stderr)


def test_an_audit_whose_every_op_was_skipped_is_incomplete(tmp_path):
    (tmp_path / "only_function.py").write_text(
        "import torch\n\nclass Cube(torch.autograd.Function):\n    @staticmethod\n    def forward(ctx, x):\n        ctx.save_for_backward(x)\n"
        "        return x ** 3\n\n    @staticmethod\n    def backward(ctx, g):\n        (x,) = ctx.saved_tensors\n        return g * 2 * x ** 2\n")
    run = CliRunner().invoke(main, ["audit", str(tmp_path / "only_function.py")])
    if run.exit_code == 1:  # whole-file audits judge Functions: then the wrong one must fail
        assert "FAIL" in run.output
        return
    assert run.exit_code == 4, run.output
    assert "INCOMPLETE: nothing was checked" in run.output and "PASS" not in run.output


# --- deadlines leave nothing armed --------------------------------------------------------------------------


def test_a_deadline_shorter_than_its_own_set_up_never_leaves_the_timer_armed():
    import threading

    from gradlab.usercode import Timeout, deadline

    assert threading.current_thread() is threading.main_thread()
    before = signal.getsignal(signal.SIGALRM)
    for seconds in [1e-6, 1e-5, 1e-4, 1e-3] * 25:
        try:
            with deadline(seconds, "spec.yaml"):
                sum(range(20000))
        except Timeout:
            pass
        assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
        assert signal.getsignal(signal.SIGALRM) is before


def test_an_audit_timeout_is_a_timeout_never_a_nondeterministic_op(tmp_path):
    (tmp_path / "slow.py").write_text(
        "import time\nimport numpy as np\n\nclass Slow:\n    def forward(self, z):\n        time.sleep(0.002)\n        return np.tanh(z)\n\n"
        "    def backward(self, z, g):\n        time.sleep(0.002)\n        return g * (1 - np.tanh(z) ** 2)\n")
    for limit in ("0.2", "0.45", "0.7"):
        run = CliRunner().invoke(main, ["audit", f"{tmp_path / 'slow.py'}:Slow", "--timeout", limit])
        assert run.exit_code == 2, run.output
        assert "timed out" in run.output and "nondeterministic" not in run.output


# --- --remote: a run that did not finish is never a pass (and never a crash) -----------------------------------


@pytest.mark.parametrize("status", ["error", "interrupted"])
def test_remote_run_that_ended_without_results_is_an_error_with_its_reason(monkeypatch, capsys, status):
    from gradlab.service import client

    run = {"id": 7, "status": status, "error": "worker died (exit status 0) while running net.py:Op", "result": None}
    monkeypatch.setattr(client, "_submit", lambda *args, **kwargs: (run, []))
    code = client.check_remote("http://127.0.0.1:9", [str(ROOT / "specs" / "seed003_two_layer.yaml")])
    err = capsys.readouterr().err
    assert code == 2
    assert f"run 7 ended {status}: worker died (exit status 0) while running net.py:Op" in err


def test_killing_the_supervisor_takes_the_work_with_it(tmp_path):
    """kill -9 of gradlab (a CI job cancelled, a server stopped) must not leave its work running as an orphan."""
    import time

    children = Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children")
    if not children.exists():
        pytest.skip("needs Linux's /proc children lists")
    slow = tmp_path / "slow.yaml"
    slow.write_text("input: {dim: 64, batch: 512}\ntarget: {kind: regression}\nnetwork:\n  layers:\n"
                    + "    - {type: dense, units: 256}\n    - {type: activation, fn: tanh}\n" * 4 + "loss: {fn: sse}\n")
    proc = subprocess.Popen([*GRADLAB, "check", str(slow), "-q"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    try:
        listing = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
        deadline = time.monotonic() + 30
        while not listing.read_text().split() and time.monotonic() < deadline:
            time.sleep(0.05)
        child = int(listing.read_text().split()[0])
        proc.kill()
        proc.wait(10)
        deadline = time.monotonic() + 10
        while Path(f"/proc/{child}").exists() and "Z" not in _state(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not Path(f"/proc/{child}").exists() or "Z" in _state(child), "the supervised child outlived its supervisor"
    finally:
        if proc.poll() is None:
            proc.kill()


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


KINK_ONLY = """name: all-kink
input: {dim: 3, batch: 4}
target: {kind: regression}
network:
  init: {scheme: zeros}
  layers:
    - {type: dense, units: 3}
    - {type: activation, fn: relu}
    - {type: dense, units: 2, init: {scheme: normal}}
loss: {fn: sse}
check: {engines: [%s]}
"""


def test_a_tensor_every_element_of_which_sits_on_a_kink_is_not_checked_unless_another_pair_judges_it(write_spec, tmp_path):
    import xml.etree.ElementTree as ET

    alone = write_spec(KINK_ONLY % "analytic, numeric", "alone.yaml")  # pre-activations all exactly 0: relu's kink
    junit = tmp_path / "junit.xml"
    run = CliRunner().invoke(main, ["check", str(alone), "--report", str(junit)])
    assert run.exit_code == 4, run.output
    assert "not checked: layers.0.bias (analytic vs numeric): every element's stencil straddles a kink" in run.output
    assert run.output.startswith("INCOMPLETE  all-kink")
    skipped = [c.get("name") for c in ET.parse(junit).getroot().iter("testcase") if c.find("skipped") is not None]
    assert any("layers.0.bias" in name for name in skipped), skipped
    both = write_spec(KINK_ONLY % "analytic, numeric, autograd", "both.yaml")  # analytic vs autograd judges those tensors
    assert CliRunner().invoke(main, ["check", str(both), "-q"]).exit_code == 0


def test_a_closed_stdout_and_stderr_do_not_confuse_the_supervisor():
    """Started with fds 1 and 2 closed (`>&- 2>&-`), the record pipe must not land on them: the verdict stands."""
    def close_both():
        os.close(1)
        os.close(2)

    run = subprocess.run([*GRADLAB, "check", str(ROOT / "specs" / "seed003_two_layer.yaml"), "-q"], preexec_fn=close_both, cwd=ROOT, timeout=120)
    assert run.returncode == 0


def test_the_environment_accepts_skips_like_the_flag(monkeypatch):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is here: seed002 is checked in full")
    spec = str(ROOT / "specs" / "seed002_classifier.yaml")
    monkeypatch.setenv("GRADLAB_ALLOW_UNCHECKED", "1")
    run = CliRunner().invoke(main, ["check", spec, "-q"])
    assert run.exit_code == 0 and run.output.startswith("INCOMPLETE:"), run.output  # accepted, still named
    monkeypatch.setenv("GRADLAB_ALLOW_UNCHECKED", "0")
    assert CliRunner().invoke(main, ["check", spec, "-q"]).exit_code == 4


def _swallow_inside_a_deadline():
    import time

    from gradlab.usercode import deadline

    with deadline(0.2, "the swallowing op"):
        end = time.monotonic() + 10
        while time.monotonic() < end:
            try:
                time.sleep(0.01)
            except BaseException:  # noqa: BLE001 -- the deadline's Timeout included
                pass
    return "returned"


def test_the_watchdog_outlives_a_fork_and_stops_code_that_swallows_the_timeout():
    """One watchdog thread per process: a forked child (threads do not survive a fork) starts its own, and
    code that catches every interrupt is ended after the grace period, not after its own 10 s."""
    import time

    from gradlab.supervise import ProcessEnded, call
    from gradlab.usercode import deadline

    with deadline(30, "the parent's deadline"):  # the parent's watchdog thread is running at the fork
        t0 = time.monotonic()
        with pytest.raises(ProcessEnded, match="exit status 2"):
            call(_swallow_inside_a_deadline)
    assert time.monotonic() - t0 < 5
