"""gradlab serve with --allow-code, one worker and a queue of three runs: a spec's history and the diff of two runs,
a worker killed mid-spec, a full queue (429), a server killed mid-run (interrupted, then retried), and the web UI
in headless Chromium.

The spec's activation is a user op (tests write it to a folder on the server's PYTHONPATH) steered by flag files:
`wrong` makes its backward 1.5x too large, `hang` holds it (it writes `pid-<pid>` first) until the flag is removed,
`exit` makes its backward end the process (os._exit(7)).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from .test_service import Service, local_check, without_timings

FLAKY_OP = '''
import os, time
import numpy as np

FLAGS = os.environ["GL_FLAGS"]


def _flag(name):
    return os.path.exists(os.path.join(FLAGS, name))


class FlakyTanh:
    kind = "activation"
    elementwise = True

    def forward(self, z):
        if _flag("hang"):
            open(os.path.join(FLAGS, f"pid-{os.getpid()}"), "w").close()
            while _flag("hang"):
                time.sleep(0.05)
        return np.tanh(z)

    def backward(self, z, grad_out):
        if _flag("exit"):
            os._exit(7)
        return grad_out * (1 - np.tanh(z) ** 2) * (1.5 if _flag("wrong") else 1.0)

    def torch_forward(self, z):
        import torch

        return torch.tanh(z)
'''

FLAKY_SPEC = """name: flaky
seed: 0
input: {dim: 3, batch: 4}
target: {kind: regression}
network:
  layers:
    - {type: dense, units: 4}
    - {type: activation, fn: custom, impl: "gl_flaky:FlakyTanh"}
    - {type: dense, units: 2}
loss: {fn: sse}
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("serve-code")
    (folder / "ops").mkdir()
    (folder / "ops" / "gl_flaky.py").write_text(FLAKY_OP)
    (folder / "flags").mkdir()
    (folder / "flaky.yaml").write_text(FLAKY_SPEC)
    env = {**os.environ, "PYTHONPATH": str(folder / "ops"), "GL_FLAGS": str(folder / "flags")}
    service = Service(folder, "--allow-code", "--workers", "1", "--max-queue", "3", "--reports-dir", str(folder / "reports"), env=env)
    yield service, folder, env
    (folder / "flags" / "hang").unlink(missing_ok=True)
    service.stop()


@pytest.fixture
def server(setup):
    service, folder, _ = setup
    yield service
    for flag in (folder / "flags").iterdir():  # each test starts with a well-behaved op
        flag.unlink()


def flag(setup, name: str, on: bool = True) -> None:
    path = setup[1] / "flags" / name
    path.touch() if on else path.unlink(missing_ok=True)


def hung_worker(setup, timeout: float = 60) -> int:
    """The pid of the worker held by the `hang` flag (its pid file is taken away)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid_file in (setup[1] / "flags").glob("pid-*"):
            pid_file.unlink()
            return int(pid_file.name[4:])
        time.sleep(0.05)
    raise AssertionError(f"no worker reached the op: {setup[0].log.read_text()[-2000:]}")


def submit_flaky(server) -> int:
    return server.submit([("flaky.yaml", FLAKY_SPEC)])


def test_history_and_diff_show_what_started_failing(server, setup):
    good = server.wait(submit_flaky(server))
    flag(setup, "wrong")
    bad = server.wait(submit_flaky(server))
    assert (good["status"], good["exit_code"], bad["status"], bad["exit_code"]) == ("done", 0, "done", 1)
    history = server.call("GET", "/api/specs/flaky/history")[1]
    weight = next(s for s in history["series"] if s["parameter"] == "layers.0.weight" and s["candidate"] == "analytic"
                  and s["reference"] == "numeric")
    points = {p["run"]: p for p in weight["points"]}
    assert points[good["id"]]["status"] == "pass" and points[bad["id"]]["status"] == "fail"
    assert points[bad["id"]]["max_rel_err"] > 0.1 > points[good["id"]]["max_rel_err"]
    diff = server.call("GET", f"/api/specs/flaky/diff?before={good['id']}&after={bad['id']}")[1]
    started = {(d["parameter"], d["pair"]) for d in diff["started_failing"]}
    assert ("layers.0.weight", "analytic vs numeric") in started and diff["fixed"] == []
    assert any(d["parameter"] == "layers.0.weight" and d["factor"] > 10 for d in diff["changed"])
    report = setup[1] / "reports" / str(bad["id"]) / "report.md"  # --reports-dir: files named by the run id only
    assert report.read_text() == server.call("GET", f"/api/runs/{bad['id']}/report.md")[1] and "flaky" in report.read_text()
    page = server.call("GET", f"/specs/flaky?before={good['id']}&after={bad['id']}")[1]
    assert "Started failing (" in page and "layers.0.weight" in page and "data:image/png;base64," in page


def test_remote_check_of_a_failing_spec_prints_and_exits_as_local(server, setup, monkeypatch):
    flag(setup, "wrong")
    folder, env = setup[1], setup[2]
    monkeypatch.syspath_prepend(env["PYTHONPATH"])  # the local check imports the op here
    remote = local_check("--remote", server.url, "flaky.yaml", cwd=folder)
    local = local_check("flaky.yaml", env={"GL_FLAGS": env["GL_FLAGS"]}, cwd=folder)
    assert remote.returncode == local.returncode == 1, remote.stderr
    assert without_timings(remote.stdout) == without_timings(local.stdout)
    assert "layers.0.weight" in remote.stdout and "FAIL" in remote.stdout


def test_full_queue_is_429_and_a_killed_worker_fails_only_its_run(server, setup):
    flag(setup, "hang")
    first = submit_flaky(server)
    pid = hung_worker(setup)
    queued = [submit_flaky(server), submit_flaky(server)]
    status, answer, headers = server.call("POST", "/api/runs", {"specs": [{"name": "flaky.yaml", "yaml": FLAKY_SPEC}]})
    assert status == 429 and int(headers["Retry-After"]) >= 1 and "queue is full" in answer["detail"]
    os.kill(pid, signal.SIGKILL)
    failed = server.wait(first)  # the spec's own error result; the run is done (exit 2)
    assert (failed["status"], failed["exit_code"], failed["error"]) == ("done", 2, None)
    assert failed["result"]["specs"][0]["error"].startswith("flaky.yaml: the worker process was killed by SIGKILL")
    flag(setup, "hang", False)
    for run_id in queued:  # the server goes on with the next runs
        run = server.wait(run_id)
        assert run["status"] == "done" and run["exit_code"] == 0


@pytest.mark.slow
def test_remote_client_waits_through_a_restart_and_retries_the_interrupted_run(server, setup):
    """A server killed while `gradlab check --remote` waits: the client waits for the restart and retries the run."""
    from urllib.parse import urlsplit

    flag(setup, "hang")
    client = subprocess.Popen([sys.executable, "-m", "gradlab", "check", "--remote", server.url, "flaky.yaml"], cwd=setup[1],
                              env=setup[2], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        hung_worker(setup)
        run_id = server.call("GET", "/api/runs?limit=1")[1]["runs"][0]["id"]
        assert server.call("GET", f"/api/runs/{run_id}")[1]["status"] == "running"
        server.kill()
        flag(setup, "hang", False)
        server.start(port=urlsplit(server.url).port)
        out, err = client.communicate(timeout=120)
    finally:
        client.kill()
    assert client.returncode == 0, err
    assert out.splitlines()[-1].startswith("PASS: 1 spec(s)")
    run = server.call("GET", f"/api/runs/{run_id}")[1]
    assert run["status"] == "done" and run["exit_code"] == 0 and run["attempts"] == 2 and run["error"] is None
    assert server.call("POST", f"/api/runs/{run_id}/retry")[0] == 409


def test_a_run_left_running_is_interrupted_at_start_up(server, setup):
    """A server killed mid-run: at the restart the run is `interrupted`; POST retry completes it."""
    flag(setup, "hang")
    run_id = submit_flaky(server)
    hung_worker(setup)
    server.kill()
    flag(setup, "hang", False)
    server.start()
    run = server.call("GET", f"/api/runs/{run_id}")[1]
    assert run["status"] == "interrupted" and "retry" in run["error"]
    assert server.call("POST", f"/api/runs/{run_id}/retry")[0] == 202
    assert server.wait(run_id)["status"] == "done"


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)


def dump_dom(url: str) -> str:
    args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
            "--disable-dev-shm-usage", "--dump-dom", url]
    return subprocess.run(args, capture_output=True, text=True, timeout=60).stdout


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium (/usr/bin/chromium) is not installed: the web UI is not browser-tested")
def test_web_ui_in_headless_chromium(server, setup):
    flag(setup, "wrong")
    run_id = server.wait(submit_flaky(server))["id"]
    runs = dump_dom(server.url + "/")
    assert '<table id="runs">' in runs and f'href="/runs/{run_id}"' in runs and 'class="badge fail"' in runs
    page = dump_dom(f"{server.url}/runs/{run_id}")
    assert f"Run #{run_id}" in page and "flaky.yaml" in page and f'src="/api/runs/{run_id}/report.html"' in page
    assert 'href="/specs/flaky"' in page


def test_a_deleted_report_file_is_410_saying_it_is_missing_on_the_server(server, setup, tmp_path):
    """Issue 21 item 9: a report file removed from --reports-dir is a clear 410, not the 'nothing could be checked' 404."""
    run_id = server.wait(submit_flaky(server))["id"]
    (setup[1] / "reports" / str(run_id) / "report.md").unlink()
    status, answer, _ = server.call("GET", f"/api/runs/{run_id}/report.md")
    assert status == 410 and "the report file report.md is missing on the server" in answer["detail"], answer
    assert server.call("GET", f"/api/runs/{run_id}/report.html")[0] == 200  # the others are still there
    (setup[1] / "reports" / str(run_id) / "report.html").unlink()
    assert "report files are missing on the server" in server.call("GET", f"/runs/{run_id}")[1]


def test_a_crashed_worker_fails_only_its_spec_as_a_local_executor_check_reports_it(server, setup):
    """Issue 21 item 2: a worker that dies (os._exit in user code) is that spec's error result; the other spec's result is
    kept (progress 2/2, done, exit 2), and --remote prints what `gradlab check --executor local` prints."""
    from .test_service import SEED003

    flag(setup, "exit")
    run = server.wait(server.submit([("flaky.yaml", FLAKY_SPEC), ("seed003_two_layer.yaml", SEED003.read_text())]))
    assert (run["status"], run["exit_code"], run["progress"], run["error"]) == ("done", 2, {"done": 2, "total": 2}, None)
    crashed, kept = run["result"]["specs"]
    assert crashed["error"].startswith("flaky.yaml: the worker process exited with code 7 before it answered, while running ")
    assert kept["error"] is None and kept["comparisons"] and all(c["status"] == "pass" for c in kept["comparisons"])
    args = ["flaky.yaml", str(SEED003)]
    remote = local_check("--remote", server.url, *args, cwd=setup[1])
    local = subprocess.run([sys.executable, "-m", "gradlab", "check", "--executor", "local", "--workers", "1", *args], cwd=setup[1],
                           env=setup[2], capture_output=True, text=True, timeout=120)
    assert remote.returncode == local.returncode == 2, (remote.stderr, local.stderr)
    assert without_timings(remote.stdout) == without_timings(local.stdout)
    assert remote.stderr.splitlines()[-1] == local.stderr.splitlines()[-1] == f"Error: {crashed['error']}"


def test_the_token_less_server_refuses_other_sites(server):
    """Issue 21 item 3: the default server (loopback, no token) queues nothing for a page of another site."""
    port = server.url.rsplit(":", 1)[1]
    before = server.call("GET", "/api/runs?limit=1000")[1]["runs"]
    for headers in ({"Origin": "http://evil.example"}, {"Host": f"evil.example:{port}"}):
        assert server.call("POST", "/api/runs", {"specs": [{"name": "flaky.yaml", "yaml": FLAKY_SPEC}]}, headers=headers)[0] == 403
        assert server.call("GET", "/api/runs", headers=headers)[0] == 403
    assert server.call("GET", "/api/runs?limit=1000")[1]["runs"] == before


def test_remote_sends_the_op_files_relative_impl_paths_name(server, setup):
    """Issue 21 item 6: `--remote` sends the op files a spec's relative impl: paths name (multipart, shown in the run);
    the server writes them where the spec looks, in the run's private folder, and prints what a local check prints."""
    from .test_service import ROOT

    args = ["specs/custom/swish.yaml", "specs/custom/layernorm_huber.yaml"]
    remote = local_check("--remote", server.url, *args, cwd=ROOT)
    local = local_check(*args, cwd=ROOT)
    assert remote.returncode == local.returncode == 0, remote.stderr
    assert without_timings(remote.stdout) == without_timings(local.stdout) and "PASS  custom-swish" in remote.stdout
    run = server.call("GET", "/api/runs?limit=1")[1]["runs"][0]
    shown = server.call("GET", f"/api/runs/{run['id']}")[1]["files"]
    assert [(f["index"], f["path"]) for f in shown] == [(0, "../../examples/ops/swish.py"), (1, "../../examples/ops/huber.py"),
                                                       (1, "../../examples/ops/layernorm.py")]
    assert shown[0]["bytes"] == len((ROOT / "examples/ops/swish.py").read_bytes())
    assert "../../examples/ops/swish.py" in server.call("GET", f"/runs/{run['id']}")[1]
    spec = (ROOT / "specs/custom/swish.yaml").read_text()
    for name in ("/etc/evil.py", "../../examples/ops/other.py", "swish.py\x00"):  # a file the spec does not name: refused, nothing runs
        status, answer, _ = server.call("POST", "/api/runs", {"specs": [{"name": "swish.yaml", "yaml": spec, "files": [{"name": name, "text": "x = 1"}]}]})
        assert status == 422 and answer["errors"][0]["index"] == 0 and "impl: paths name '../../examples/ops/swish.py'" in answer["detail"]
    absolute = spec.replace("../../examples/ops/swish.py", "/tmp/gl-not-sent.py")
    status, answer, _ = server.call("POST", "/api/runs", {"specs": [{"name": "swish.yaml", "yaml": absolute, "files": [{"name": "/tmp/gl-not-sent.py", "text": "x = 1"}]}]})
    assert status == 422 and not os.path.exists("/tmp/gl-not-sent.py")
    by_name = server.wait(server.submit([("swish.yaml", spec)]))  # without its file: the spec's own error, as a local check of a lone spec
    assert by_name["exit_code"] == 2 and "no such file" in by_name["result"]["specs"][0]["error"]


def _processes_in_group(pgid: int) -> dict[int, tuple[int, str]]:
    """{pid: (parent pid, command line)} of the live processes in a process group (Linux /proc)."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()
            cmdline = open(f"/proc/{entry}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if int(stat[2]) == pgid and stat[0] != "Z":
            found[int(entry)] = (int(stat[1]), cmdline)
    return found


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="finds the store process through /proc")
def test_a_dead_store_process_loses_no_run(server, setup):
    """Runs are rendered and written by the server's store process; if it dies, the web process writes the run itself
    and a new store process takes the next ones: no run is lost or left running."""
    server.wait(submit_flaky(server))  # the store process has written a run: it is up
    group = _processes_in_group(server.proc.pid)
    stores = [pid for pid in group if open(f"/proc/{pid}/comm").read().strip() == "gradlab-store"]  # runs.STORE_NAME
    assert len(stores) == 1, group
    os.kill(stores[0], signal.SIGKILL)
    first, second = server.wait(submit_flaky(server)), server.wait(submit_flaky(server))
    assert (first["status"], first["exit_code"], second["status"], second["exit_code"]) == ("done", 0, "done", 0)
    assert server.call("GET", f"/api/runs/{first['id']}/report.md")[0] == 200
    assert "the store process died" in server.log.read_text()


def test_pages_refresh_while_a_run_is_in_progress_and_tables_scroll(server, setup):
    """Issue 21 UI: the runs page and a run's page refresh themselves while a run is queued or running (no script:
    the CSP allows none), and stop once it is done; wide tables scroll inside the page at 390 px."""
    flag(setup, "hang")
    run_id = submit_flaky(server)
    hung_worker(setup)
    assert '<meta http-equiv="refresh"' in server.call("GET", f"/runs/{run_id}")[1]
    assert '<meta http-equiv="refresh"' in server.call("GET", "/")[1]
    flag(setup, "hang", False)
    server.wait(run_id)
    page = server.call("GET", f"/runs/{run_id}")[1]
    assert '<meta http-equiv="refresh"' not in page and '<div class="scroll"><table id="specs">' in page
    assert '<meta http-equiv="refresh"' not in server.call("GET", "/")[1]


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="finds the workers through /proc")
def test_user_code_never_runs_in_a_warm_worker_and_an_idle_workers_death_blames_no_spec(server, setup):
    """Specs without user code go to long-lived warm workers (service.pool); a spec naming user code runs in a process of
    its own, never in a warm one; a warm worker killed while idle is replaced and the next spec is checked normally."""
    from .test_service import SEED003

    def warm_workers():
        return [pid for pid in _processes_in_group(server.proc.pid) if open(f"/proc/{pid}/comm").read().strip() == "gradlab-worker"]

    assert server.wait(server.submit([("seed003_two_layer.yaml", SEED003.read_text())]))["exit_code"] == 0
    (warm,) = warm_workers()  # --workers 1: one slot
    flag(setup, "hang")
    run_id = submit_flaky(server)
    assert hung_worker(setup) != warm  # the user's op runs elsewhere
    flag(setup, "hang", False)
    assert server.wait(run_id)["exit_code"] == 0
    os.kill(warm, signal.SIGKILL)
    time.sleep(0.2)
    run = server.wait(server.submit([("seed003_two_layer.yaml", SEED003.read_text())]))
    assert (run["status"], run["exit_code"], run["result"]["specs"][0]["error"]) == ("done", 0, None)
    assert warm_workers() not in ([], [warm])
