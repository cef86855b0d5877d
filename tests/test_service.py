"""gradlab serve end to end: the real server (uvicorn on 127.0.0.1, an ephemeral port, a temporary SQLite
database) started as a subprocess and spoken to over HTTP, as a client would.

This module's server asks for a token and runs no user code; tests/test_service_code.py runs one that
allows user code (history and diff, a killed worker, a restart, the full queue, the web UI in Chromium).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from .conftest import ROOT

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("sqlalchemy")

SEED003 = ROOT / "specs" / "seed003_two_layer.yaml"
TANH = ROOT / "specs" / "seed000_tanh.yaml"
TOKEN = "s3cret-token"
BAD_SPEC = "name: bad\ninput: {dim: 2, batch: 3}\nnetwork:\n  layers:\n    - {type: dense, units: 3, activaton: tanh}\nloss: {fn: mse}\n"


class Service:
    """`gradlab serve` in a subprocess of its own process group (its worker processes die with it)."""

    def __init__(self, folder: Path, *args: str, env: dict | None = None, token: str | None = None):
        self.folder, self.args, self.env, self.token = folder, list(args), env, token
        self.db = f"sqlite:///{folder / 'gradlab.db'}"
        self.proc = None
        self.start()

    def start(self, port: int = 0) -> None:
        """Start the server (again: pass the port it had, so that its clients find it)."""
        log = self.folder / f"server-{uuid.uuid4().hex[:6]}.log"
        self.log = log
        with open(log, "w") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "gradlab", "serve", "--port", str(port), "--db", self.db, *self.args],
                                         stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=self.env, cwd=self.folder)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            found = re.search(r"gradlab serve: (http://\S+)", log.read_text())
            if found:
                self.url = found.group(1)
                try:
                    self.call("GET", "/api/runs?limit=1")
                    return
                except OSError:
                    pass
            assert self.proc.poll() is None, f"the server exited: {log.read_text()}"
            time.sleep(0.2)
        raise AssertionError(f"the server did not start: {log.read_text()}")

    def kill(self) -> None:
        """SIGKILL to the server and its workers: nothing is cleaned up, as in a crash."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def call(self, method: str, path: str, body=None, *, token: str | None = "default", headers: dict | None = None, raw: bytes | None = None):
        """(status, JSON or text, headers) of one request."""
        token = self.token if token == "default" else token
        data = raw if raw is not None else json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method)
        if body is not None:
            request.add_header("Content-Type", "application/json")
        for key, value in (headers or {}).items():
            request.add_header(key, value)
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, text, head = response.status, response.read().decode(), response.headers
        except urllib.error.HTTPError as exc:
            status, text, head = exc.code, exc.read().decode(), exc.headers
        try:
            return status, json.loads(text), head
        except ValueError:
            return status, text, head

    def submit(self, specs: list[tuple[str, str]], options: dict | None = None) -> int:
        status, answer, _ = self.call("POST", "/api/runs", {"specs": [{"name": n, "yaml": t} for n, t in specs], "options": options or {}})
        assert status == 202, answer
        return answer["id"]

    def wait(self, run_id: int, until=("done", "error", "interrupted"), timeout: float = 90) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, run, _ = self.call("GET", f"/api/runs/{run_id}")
            assert status == 200, run
            if run["status"] in until:
                return run
            time.sleep(0.1)
        raise AssertionError(f"run {run_id} stayed {run['status']}: {self.log.read_text()[-2000:]}")


def multipart(files: list[tuple[str, bytes]], fields: dict[str, str] | None = None) -> tuple[bytes, str]:
    """A multipart/form-data body as curl -F sends it: (body, content type)."""
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode() for k, v in (fields or {}).items()]
    parts += [f'--{boundary}\r\nContent-Disposition: form-data; name="specs"; filename="{name}"\r\n'
              f"Content-Type: application/x-yaml\r\n\r\n".encode() + data + b"\r\n" for name, data in files]
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def gradlab_cli(*args: str, env: dict | None = None, cwd=None):
    """`gradlab ARGS` in this process (CliRunner): .returncode, .stdout, .stderr; `env` is added to os.environ."""
    from click.testing import CliRunner

    from gradlab.cli import main

    before = os.getcwd()
    os.chdir(cwd or before)
    try:
        result = CliRunner().invoke(main, list(args), env=env)
    finally:
        os.chdir(before)
    result.returncode = result.exit_code
    return result


def local_check(*args: str, env: dict | None = None, cwd=None):
    return gradlab_cli("check", *args, env=env, cwd=cwd)


def without_timings(text: str) -> str:
    return re.sub(r"in \d+(\.\d+)? s", "in T s", text)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("serve")
    (folder / "token.txt").write_text(TOKEN + "\n")
    service = Service(folder, "--workers", "2", "--token-file", str(folder / "token.txt"), token=TOKEN)
    yield service
    service.stop()


def test_submit_poll_result_is_the_check_document(server):
    run_id = server.submit([("seed003_two_layer.yaml", SEED003.read_text())], {"label": "ci@abc123"})
    run = server.wait(run_id)
    assert run["status"] == "done" and run["exit_code"] == 0 and run["label"] == "ci@abc123"
    local = json.loads(local_check(str(SEED003), "--format", "json").stdout)
    served = run["result"]
    assert served["passed"] is True and set(served) == set(local)
    def drop(spec):  # where the spec was and how long it took differ; nothing else may
        return {**{k: v for k, v in spec.items() if k not in ("seconds", "spec")},
                "comparisons": [{k: v for k, v in c.items() if k != "spec"} for c in spec["comparisons"]]}

    assert [drop(s) for s in served["specs"]] == [drop(s) for s in local["specs"]]
    assert served["specs"][0]["spec"] == "seed003_two_layer.yaml"
    assert served["environment"]["specs"]["seed003_two_layer.yaml"]["sha256"] == local["environment"]["specs"][str(SEED003)]["sha256"]


def test_multipart_upload_and_every_report_format(server):
    body, kind = multipart([("seed003_two_layer.yaml", SEED003.read_bytes()), ("tanh.yaml", TANH.read_bytes())],
                           {"options": json.dumps({"method": "central"}), "label": "upload"})
    status, answer, _ = server.call("POST", "/api/runs", raw=body, headers={"Content-Type": kind})
    assert status == 202, answer
    run = server.wait(answer["id"])
    assert run["status"] == "done" and run["options"]["method"] == "central" and run["label"] == "upload"
    assert [s["numeric_method"] for s in run["result"]["specs"]] == ["central", "central"]
    reports = {suffix: server.call("GET", f"/api/runs/{answer['id']}/report.{suffix}") for suffix in ("html", "md", "xml", "csv", "json")}
    assert all(status == 200 for status, _, _ in reports.values())
    assert reports["html"][1].lstrip().lower().startswith("<!doctype html>") and "seed003-two-layer" in reports["html"][1]
    assert "sandbox" in reports["html"][2]["Content-Security-Policy"]
    assert "seed000-tanh" in reports["md"][1]
    assert ET.fromstring(reports["xml"][1].encode()).tag in ("testsuites", "testsuite")
    assert reports["csv"][1].splitlines()[0].startswith(("spec", "name")) and len(reports["csv"][1].splitlines()) > 2
    assert isinstance(reports["json"][1], (dict, list))
    assert server.call("GET", f"/api/runs/{answer['id']}/report.pdf")[0] == 404
    assert server.call("GET", "/api/runs/999999/report.md")[0] == 404


def test_history_and_runs_by_spec(server):
    ids = [server.submit([("seed003_two_layer.yaml", SEED003.read_text())]) for _ in range(2)]
    for run_id in ids:
        server.wait(run_id)
    status, history, _ = server.call("GET", "/api/specs/seed003-two-layer/history")
    assert status == 200 and history["spec"] == "seed003-two-layer"
    assert {r["run"] for r in history["runs"]} >= set(ids)
    series = history["series"]
    assert series and all({"parameter", "candidate", "reference", "device", "points"} <= set(s) for s in series)
    weight = next(s for s in series if s["parameter"] == "layers.0.weight" and s["candidate"] == "analytic")
    assert {p["run"] for p in weight["points"]} >= set(ids)
    assert all(p["status"] == "pass" and p["max_rel_err"] is not None for p in weight["points"])
    server.wait(server.submit([("some/folder/seed003_two_layer.yaml", SEED003.read_text())]))
    by_file = server.call("GET", "/api/specs/seed003_two_layer.yaml/history")[1]
    assert by_file["spec"] == "seed003-two-layer" and len(by_file["runs"]) == len(history["runs"]) + 1
    listed = server.call("GET", "/api/runs?spec=seed003-two-layer&limit=3")[1]["runs"]
    assert [r["id"] for r in listed][1:] == sorted(ids, reverse=True)
    assert [r["specs"] for r in server.call("GET", "/api/runs?spec=seed003_two_layer.yaml&limit=1")[1]["runs"]] == [["some/folder/seed003_two_layer.yaml"]]
    assert server.call("GET", "/api/runs?spec=no-such-spec")[1]["runs"] == []


def _run_count(server) -> int:
    return len(server.call("GET", "/api/runs?limit=1000")[1]["runs"])


def test_bad_spec_is_422_with_the_cli_message_and_nothing_queued(server, tmp_path):
    before = _run_count(server)
    status, answer, _ = server.call("POST", "/api/runs", {"specs": [{"name": "good.yaml", "yaml": SEED003.read_text()},
                                                                    {"name": "bad.yaml", "yaml": BAD_SPEC}]})
    assert status == 422
    (tmp_path / "bad.yaml").write_text(BAD_SPEC)
    cli = local_check("bad.yaml", cwd=tmp_path)
    assert cli.returncode == 2
    assert f"Error: {answer['detail']}" == cli.stderr.strip().splitlines()[-1]
    assert answer["errors"] == [{"index": 1, "message": answer["detail"]}]
    bad_options = server.call("POST", "/api/runs", {"specs": [{"name": "a.yaml", "yaml": SEED003.read_text()}], "options": {"mode": "slow"}})
    assert bad_options[0] == 422 and bad_options[1]["detail"].startswith("options.mode")
    assert server.call("POST", "/api/runs", {"specs": []})[0] == 422
    odd_name = server.call("POST", "/api/runs", {"specs": [{"name": "../my spec.yaml", "yaml": SEED003.read_text()}]})
    assert odd_name[0] == 422 and odd_name[1]["detail"].startswith("specs[0].name: expected a spec file name")
    assert server.call("POST", "/api/runs", {"specs": [{"name": "x.yaml", "yaml": "[1, 2"}]})[0] == 422
    assert _run_count(server) == before


def test_user_code_is_403_without_allow_code(server):
    spec = (ROOT / "specs" / "custom" / "swish.yaml").read_text()
    status, answer, _ = server.call("POST", "/api/runs", {"specs": [{"name": "swish.yaml", "yaml": spec}]})
    assert status == 403
    assert answer["detail"].startswith("swish.yaml: network.layers[1].impl: names user code") and "--allow-code" in answer["detail"]
    huber = (ROOT / "specs" / "custom" / "layernorm_huber.yaml").read_text()
    status, answer, _ = server.call("POST", "/api/runs", {"specs": [{"name": "swish.yaml", "yaml": spec}, {"name": "huber.yaml", "yaml": huber}]})
    assert status == 403 and [e["index"] for e in answer["errors"]] == [0, 1]  # every such spec's message, not the first only
    assert answer["errors"][1]["message"].startswith("huber.yaml: ") and "names user code" in answer["errors"][1]["message"]
    assert answer["detail"].splitlines() == [e["message"] for e in answer["errors"]]


def test_a_user_code_spec_is_refused_alone_and_the_others_run(server, tmp_path):
    """Issue 21 item 2: on a server without --allow-code, specs naming user code are each that spec's error result and
    the run checks the others (done, exit 2), as a local `gradlab check --no-code` does."""
    swish, huber = (ROOT / "specs" / "custom" / "swish.yaml").read_text(), (ROOT / "specs" / "custom" / "layernorm_huber.yaml").read_text()
    run = server.wait(server.submit([("swish.yaml", swish), ("seed003_two_layer.yaml", SEED003.read_text()), ("huber.yaml", huber)]))
    assert (run["status"], run["exit_code"], run["progress"], run["error"]) == ("done", 2, {"done": 3, "total": 3}, None)
    specs = run["result"]["specs"]
    assert [s["error"] is None for s in specs] == [False, True, False] and specs[1]["comparisons"]
    assert specs[0]["error"].startswith("swish.yaml: network.layers[1].impl: names user code") and specs[2]["error"].startswith("huber.yaml: ")
    page = server.call("GET", f"/runs/{run['id']}")[1]
    assert page.count('class="badge pass"') == 1 and page.count('<span class="badge error">error</span>') == 2  # each spec its own verdict
    for name in ("swish.yaml", "huber.yaml"):
        (tmp_path / name).write_text({"swish.yaml": swish, "huber.yaml": huber}[name])
    remote = local_check("--remote", server.url, "swish.yaml", str(SEED003), "huber.yaml", env={"GRADLAB_TOKEN": TOKEN}, cwd=tmp_path)
    assert remote.returncode == 2 and "PASS  seed003-two-layer" in remote.stdout
    errors = [line for line in remote.stderr.splitlines() if line.startswith("Error: ")]
    assert [e.split(":")[1].strip() for e in errors] == ["swish.yaml", "huber.yaml"] and all("names user code" in e for e in errors)
    only_code = local_check("--remote", server.url, "swish.yaml", "huber.yaml", env={"GRADLAB_TOKEN": TOKEN}, cwd=tmp_path)
    assert only_code.returncode == 2 and only_code.stderr.count("names user code") == 2


def test_caps_on_spec_count_and_body_size(server):
    spec = {"name": "a.yaml", "yaml": SEED003.read_text()}
    assert server.call("POST", "/api/runs", {"specs": [spec] * 101})[0] == 413
    import http.client
    from urllib.parse import urlsplit

    where = urlsplit(server.url)
    conn = http.client.HTTPConnection(where.hostname, where.port, timeout=10)
    conn.putrequest("POST", "/api/runs")  # a 9 MiB body announced: refused before a byte of it is read
    for key, value in (("Content-Type", "application/json"), ("Content-Length", str(9 * 2**20)), ("Authorization", f"Bearer {TOKEN}")):
        conn.putheader(key, value)
    conn.endheaders()
    response = conn.getresponse()
    assert response.status == 413 and "at most" in json.loads(response.read())["detail"]
    conn.close()


def test_token_is_required(server):
    status, answer, headers = server.call("GET", "/api/runs", token=None)
    assert status == 401 and headers["WWW-Authenticate"] == "Bearer"
    assert server.call("POST", "/api/runs", {"specs": []}, token="wrong")[0] == 401
    request = urllib.request.Request(server.url + "/")
    opener = urllib.request.build_opener(type("NoRedirect", (urllib.request.HTTPRedirectHandler,), {"redirect_request": lambda *a, **k: None}))
    with pytest.raises(urllib.error.HTTPError) as refused:
        opener.open(request, timeout=10)
    assert refused.value.code == 303 and refused.value.headers["Location"] == "/login"


def test_remote_check_prints_what_a_local_check_prints(server, tmp_path):
    (tmp_path / "bad.yaml").write_text(BAD_SPEC)
    env = {"GRADLAB_TOKEN": TOKEN}
    args = [str(SEED003), str(TANH), str(tmp_path / "bad.yaml"), "--stats"]
    remote = local_check("--remote", server.url, "--label", "test", *args, "--report", str(tmp_path / "r.md"), env=env)
    local = local_check(*args)
    assert remote.returncode == local.returncode == 2
    assert without_timings(remote.stdout) == without_timings(local.stdout)
    assert remote.stderr.splitlines()[-1] == local.stderr.splitlines()[-1]
    assert "seed003-two-layer" in (tmp_path / "r.md").read_text()
    assert "verdict" in remote.stdout  # the --stats tables, after the check's
    stats = server.call("GET", "/api/specs/seed003-two-layer/history")[1]["stats"]
    assert stats and stats[-1]["summary"]["verdict"] == "ok" and stats[-1]["layers"][0]["layer"].startswith("layers.")
    as_json = local_check("--remote", server.url, str(SEED003), "--format", "json", env=env)
    assert as_json.returncode == 0 and json.loads(as_json.stdout)["specs"][0]["spec"] == str(SEED003)
    no_token = local_check("--remote", server.url, str(SEED003), env={"GRADLAB_TOKEN": None})
    assert no_token.returncode == 2 and "GRADLAB_TOKEN" in no_token.stderr


def test_database_of_another_schema_version_is_refused(tmp_path):
    from sqlalchemy import create_engine, text

    from gradlab.errors import GradlabError
    from gradlab.service.db import SCHEMA_VERSION, open_db

    url = f"sqlite:///{tmp_path / 'old.db'}"
    open_db(url)
    with create_engine(url).begin() as conn:
        conn.execute(text("UPDATE gradlab_meta SET value = :v WHERE key = 'schema_version'"), {"v": str(SCHEMA_VERSION + 1)})
    with pytest.raises(GradlabError, match=f"schema version {SCHEMA_VERSION + 1}, this gradlab reads version {SCHEMA_VERSION}"):
        open_db(url)
    foreign = f"sqlite:///{tmp_path / 'foreign.db'}"
    with create_engine(foreign).begin() as conn:
        conn.execute(text("CREATE TABLE users (id INTEGER)"))
    with pytest.raises(GradlabError, match="tables that are not gradlab's"):
        open_db(foreign)
    result = gradlab_cli("serve", "--db", "nosuchdriver://x")
    assert result.exit_code == 2 and result.output.startswith("Error: --db 'nosuchdriver://x'")



def test_out_of_range_and_malformed_run_ids_are_404_or_422_never_500(server):
    """Issue 21 item 5: an id the database cannot hold (>= 2**63), a negative one or a word is refused in one place."""
    for bad in (str(2**63), str(2**64 + 5), "-1", "0", "abc", "1e3"):
        for method, path in (("GET", f"/api/runs/{bad}"), ("GET", f"/api/runs/{bad}/report.md"), ("GET", f"/runs/{bad}"),
                             ("POST", f"/api/runs/{bad}/retry"), ("GET", f"/api/specs/seed003-two-layer/diff?before=1&after={bad}"),
                             ("GET", f"/api/specs/seed003-two-layer/diff?before={bad}&after=1"), ("GET", f"/specs/seed003-two-layer?before=1&after={bad}")):
            status = server.call(method, path)[0]
            assert status in (404, 422), (method, path, status)
    assert server.call("GET", f"/api/runs/{2**63 - 1}")[0] == 404
    assert "OverflowError" not in server.log.read_text() and "Traceback" not in server.log.read_text()


@pytest.mark.parametrize("url", ["postgresql+psycopg://gradlab:Hunter2pw@127.0.0.1:1/gradlab", "nosuchdriver://gradlab:Hunter2pw@db.internal/x",
                                 "postgresql+psycopg://gradlab:Hunter2pw@db.internal:notaport/x"])
def test_database_password_is_never_printed(url):
    """Issue 21 item 8: a --db URL's password is masked in every message (an error is pasted into tickets)."""
    result = gradlab_cli("serve", "--db", url)
    assert result.exit_code == 2 and result.output.startswith("Error: --db '")
    assert "Hunter2pw" not in result.output and "gradlab:***@" in result.output


def test_a_spec_name_with_a_slash_has_its_page_and_history(server):
    """Issue 21 item 4: names are data, never routes: `name: team/mlp-v2` has a spec page, history and diff, linked from its run."""
    from urllib.parse import quote

    text = re.sub(r"(?m)^name: .*$", "name: team/mlp-v2", SEED003.read_text())
    ids = [server.wait(server.submit([("mlp.yaml", text)]))["id"] for _ in range(2)]
    for spelled in ("team%2Fmlp-v2", "team/mlp-v2"):
        status, history, _ = server.call("GET", f"/api/specs/{spelled}/history")
        assert status == 200 and history["spec"] == "team/mlp-v2" and [r["run"] for r in history["runs"]] == ids
        status, diff, _ = server.call("GET", f"/api/specs/{spelled}/diff?before={ids[0]}&after={ids[1]}")
        assert status == 200 and diff["spec"] == "team/mlp-v2" and diff["only_before"] == diff["only_after"] == []
    page = server.call("GET", f"/runs/{ids[1]}")[1]
    link = re.search(r'href="(/specs/[^"]*)"', page).group(1)
    assert link == "/specs/" + quote("team/mlp-v2", safe="")
    status, spec_page, _ = server.call("GET", link)
    assert status == 200 and "team/mlp-v2" in spec_page and f"From run #{ids[0]} to run #{ids[1]}" in spec_page
    json_link = re.search(r'href="(/api/specs/[^"]*/history)"', spec_page).group(1)
    assert server.call("GET", json_link)[1]["spec"] == "team/mlp-v2"


def test_diff_of_a_run_that_does_not_exist_is_404_and_a_spec_sent_twice_is_one_point(server):
    """Issue 21 item 9: diff?after=99999 is 404, not 200 with every row under only_before; one history point per run."""
    run_id = server.wait(server.submit([("seed003_two_layer.yaml", SEED003.read_text()), ("again/seed003_two_layer.yaml", SEED003.read_text())]))["id"]
    status, answer, _ = server.call("GET", f"/api/specs/seed003-two-layer/diff?before={run_id}&after=99999")
    assert status == 404 and answer["detail"] == "no run 99999"
    assert server.call("GET", f"/specs/seed003-two-layer?before=99999&after={run_id}")[0] == 404
    history = server.call("GET", "/api/specs/seed003-two-layer/history")[1]
    assert [r["run"] for r in history["runs"]].count(run_id) == 1
    assert all([p["run"] for p in s["points"]].count(run_id) == 1 for s in history["series"])
    diff = server.call("GET", f"/api/specs/seed003-two-layer/diff?before={run_id}&after={run_id}")[1]
    assert diff["only_before"] == diff["only_after"] == diff["changed"] == []


def test_diff_changed_leaves_out_noise_level_rows(tmp_path):
    """Issue 21 item 9: 'changed > 10x' is not a passing row going from 0 to 1.5e-11; a real drift or a failure still is."""
    from sqlalchemy import insert

    from gradlab.service.db import ComparisonRow, Run, SpecResultRow, open_db, utcnow
    from gradlab.service.history import diff_runs

    sessions = open_db(f"sqlite:///{tmp_path / 'h.db'}")
    rows = {"noise": ("float64", 0.0, "pass", 1.5e-11, "pass"), "noise32": ("float32", 1e-7, "pass", 2e-5, "pass"),
            "drift": ("float64", 1e-9, "pass", 1e-5, "pass"), "broke": ("float64", 1e-12, "pass", 3e-1, "fail"),
            "shrank": ("float64", 0.4, "fail", 1e-3, "fail")}
    with sessions() as session, session.begin():
        for run_id, at in ((1, 1), (2, 3)):
            session.add(Run(id=run_id, status="done", options={}, n_specs=1, created=utcnow(), attempts=1))
            session.add(SpecResultRow(run_id=run_id, position=0, name="net", path="net.yaml", passed=True, seconds=0.1))
            session.flush()
            session.execute(insert(ComparisonRow), [dict(run_id=run_id, spec="net", parameter=p, candidate="analytic", reference="numeric",
                                                         device="cpu", dtype=v[0], status=v[at + 1], max_rel_err=v[at]) for p, v in rows.items()])
    with sessions() as session:
        diff = diff_runs(session, "net", 1, 2)
    assert sorted(d["parameter"] for d in diff["changed"]) == ["broke", "drift", "shrank"]
    assert [d["parameter"] for d in diff["started_failing"]] == ["broke"]


def test_a_wrong_token_is_not_told_where_to_put_one(server):
    """Issue 21 item 9: the $GRADLAB_TOKEN hint is for a missing token; a wrong one is told it is wrong."""
    wrong = local_check("--remote", server.url, str(SEED003), env={"GRADLAB_TOKEN": "not-the-token"})
    assert wrong.returncode == 2 and "put it in" not in wrong.stderr and "wrong token" in wrong.stderr


def test_other_sites_and_rebound_names_are_refused(server):
    """Issue 21 item 3: an Origin that is not the server's own, or a Host the server was not bound for (DNS rebinding),
    is 403 on every endpoint, reading or changing state; the server's own origin and non-browser clients pass."""
    port = server.url.rsplit(":", 1)[1]
    spec = {"specs": [{"name": "seed003_two_layer.yaml", "yaml": SEED003.read_text()}]}
    before = _run_count(server)
    for headers in ({"Origin": "http://evil.example"}, {"Host": f"evil.example:{port}"}, {"Origin": "null"},
                    {"Host": f"evil.example:{port}", "Origin": f"http://evil.example:{port}"}, {"Origin": f"http://127.0.0.1:{int(port) + 1}"},
                    {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"}):
        assert server.call("POST", "/api/runs", spec, headers=headers)[0] == 403, headers
        for path in ("/api/runs", "/api/runs/1", "/", "/runs/1", "/specs/seed003-two-layer", "/api/specs/seed003-two-layer/history", "/login"):
            status, answer, _ = server.call("GET", path, headers=headers)
            assert status == 403, (headers, path)
    assert _run_count(server) == before
    assert "is not a name this server answers to" in server.call("GET", "/api/runs", headers={"Host": "evil.example"})[1]["detail"]
    for own in ({"Origin": f"http://127.0.0.1:{port}"}, {"Host": f"localhost:{port}", "Origin": f"http://localhost:{port}"},
                {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"}, {"Sec-Fetch-Site": "same-origin"}):
        assert server.call("GET", "/api/runs?limit=1", headers=own)[0] == 200, own


def test_pages_send_csp_and_frame_headers_and_the_cookie_is_not_the_token(server):
    """Issue 21 item 3: UI pages forbid framing and scripts; the login cookie is an HttpOnly, SameSite=Strict HMAC
    session value; /login allows a few wrong tokens per minute per client, then 429."""
    import http.client
    from urllib.parse import urlencode, urlsplit

    status, _, headers = server.call("GET", "/")
    assert status == 200 and headers["X-Frame-Options"] == "DENY" and headers["X-Content-Type-Options"] == "nosniff"
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"] and "script-src" not in headers["Content-Security-Policy"]
    assert server.call("GET", "/api/runs?limit=1")[2]["X-Content-Type-Options"] == "nosniff"
    where = urlsplit(server.url)

    def login(token: str):
        conn = http.client.HTTPConnection(where.hostname, where.port, timeout=10)
        conn.request("POST", "/login", urlencode({"token": token}), {"Content-Type": "application/x-www-form-urlencoded"})
        response = conn.getresponse()
        response.read()
        conn.close()
        return response

    answer = login(TOKEN)
    cookie = answer.getheader("Set-Cookie")
    assert answer.status == 303 and TOKEN not in cookie and "httponly" in cookie.lower() and "samesite=strict" in cookie.lower()
    value = cookie.split(";")[0]
    assert server.call("GET", "/", token=None, headers={"Cookie": value})[0] == 200  # the session value opens the UI
    raw = server.call("GET", "/api/runs", token=None, headers={"Cookie": f"{value.split('=')[0]}={TOKEN}"})
    assert raw[0] == 401  # the raw token in the cookie is not a session
    statuses = [login("wrong-guess").status for _ in range(6)]
    assert statuses[:5] == [401] * 5 and statuses[5] == 429
    refused = login(TOKEN)  # the right token waits too: guessing stops
    assert refused.status == 429 and int(refused.getheader("Retry-After")) >= 1


def test_a_non_loopback_bind_without_a_token_is_refused():
    """Issue 21 item 3: `gradlab serve --host 0.0.0.0` with no token exits 2 saying why, before it listens."""
    result = gradlab_cli("serve", "--host", "0.0.0.0", "--port", "0", "--db", "sqlite://")
    assert result.exit_code == 2 and result.output.startswith("Error: --host 0.0.0.0: listening beyond this machine needs a token")
    assert "--token-file" in result.output


def test_allowed_host_adds_names_a_loopback_server_answers_to():
    """`gradlab serve --allowed-host NAME`: a proxy's name is accepted beside the loopback names, nothing else is."""
    from gradlab.service.guard import allowed_hosts

    plain, _ = allowed_hosts("127.0.0.1")
    extended, by_connection = allowed_hosts("127.0.0.1", ["grads.example.org"])
    assert "grads.example.org" not in plain and "grads.example.org" in extended and not by_connection
    assert {"localhost", "127.0.0.1"} <= extended and "evil.example" not in extended
