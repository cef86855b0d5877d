"""`gradlab check --remote URL SPEC...`: the checks run on a `gradlab serve` machine (the one with the GPU), the
output is what `gradlab check` prints here, with the same exit codes, and --report files are the server's reports.

Only the standard library talks HTTP, so the client adds nothing to a CI job's install. The server's
check document is turned back into SpecResults (`results_from_document`) and rendered by the same
terminal renderer a local check uses. $GRADLAB_TOKEN is sent as the bearer token.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from dataclasses import fields

import click

from ..errors import GradlabError

POLL_S = (0.1, 1.0)  # first and longest wait between two polls
UNREACHABLE_S = 60.0  # how long a server that stopped answering is waited for (a restart)
TOKEN_ENV = "GRADLAB_TOKEN"


class Server:
    """The few calls the client makes, each a GradlabError (exit 2) naming --remote when it cannot be made."""

    def __init__(self, url: str):
        if not url.startswith(("http://", "https://")):
            raise GradlabError(f"--remote {url}: expected the server's URL, such as http://gpu-box:8750")
        self.url = url.rstrip("/")
        self.token = os.environ.get(TOKEN_ENV, "").strip() or None

    def call(self, method: str, path: str, body: dict | None = None, *, raw: bool = False,
             form: tuple[bytes, str] | None = None) -> tuple[int, dict | str, dict]:
        """(status, the JSON answer, or its text with `raw`, headers); `form`: a multipart body and its content type."""
        data = json.dumps(body).encode("utf-8") if body is not None else form[0] if form is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json" if form is None else form[1])
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, _decoded(response, raw), dict(response.headers)
        except urllib.error.HTTPError as exc:
            status, payload, headers = exc.code, _decoded(exc, raw), dict(exc.headers)
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise GradlabError(f"--remote {self.url}: cannot reach the server ({reason})") from None
        if status == 401 and self.token is None:
            raise GradlabError(f"--remote {self.url}: the server asks for a token; put it in ${TOKEN_ENV}")
        if status == 401:  # a token was sent: the hint is that it is the wrong one, not where to put it
            raise GradlabError(f"--remote {self.url}: the server refused the token in ${TOKEN_ENV} (401: wrong token); "
                               "send the one in the server's --token-file")
        return status, payload, headers


def _decoded(response, raw: bool) -> dict | str:
    text = response.read().decode("utf-8", "replace")
    if raw:
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


def check_remote(url: str, paths, *, label=None, fmt="table", output=None, reports=(), devices=(), method=None, mode=None,
                 engines=None, quiet=False, verbose=False, stats=False, timeout=None) -> int:
    """Submit, wait, print as `gradlab check` prints; the exit code."""
    from ..batch import EXIT_INTERNAL, EXIT_USAGE, echo_errors, error_result, exit_code, expand_specs, in_order
    from ..commands.report import report_targets
    from ..output import check_writable
    from ..spec import read_spec_text

    targets = report_targets(reports)
    for path in ([output] if output else []) + [p for p, _ in targets]:
        check_writable(path, "--output" if path == output else "--report")
    server = Server(url)
    invalid, specs = [], []
    for p in expand_specs(paths, note=True):
        try:
            specs.append((str(p), read_spec_text(p)))
        except GradlabError as exc:
            invalid.append(error_result(str(p), str(exc)))
    files = {name: op_files(name, text) for name, text in specs}
    options = {k: v for k, v in {"devices": list(devices) or None, "engines": engines, "method": method, "mode": mode,
                                 "stats": bool(stats), "timeout": timeout, "label": label}.items() if v not in (None, False)}
    run, refused = _submit(server, specs, options, files) if specs else (None, [])
    invalid += refused
    if run is not None and run["status"] != "done":  # no results to show: never a pass, never a crash
        click.echo(f"Error: --remote {server.url}: run {run['id']} ended {run['status']}: {run.get('error') or 'no reason given'}; "
                   "nothing was checked to completion", err=True)
        return EXIT_USAGE
    results = _results(run) if run is not None else []
    results = in_order(paths, invalid, results)
    _print(results, run, fmt=fmt, output=output, quiet=quiet, verbose=verbose)
    if run is not None:
        _write_reports(server, run["id"], targets, quiet=quiet)
    echo_errors(results)
    code = exit_code(results)
    return EXIT_INTERNAL if run is not None and run.get("exit_code") == EXIT_INTERNAL else code


def op_files(path: str, text: str) -> list[tuple[str, bytes]]:
    """The op files a spec's relative `impl:` paths name, that exist here: [(the path as the spec writes it, its bytes)].
    They go with the spec (the server writes them where the spec looks for them, and runs them only with --allow-code)."""
    from pathlib import Path

    from ..spec import parse_yaml
    from .intake import impl_targets

    try:
        data = parse_yaml(text, path)
    except GradlabError:  # the server says what is wrong with the spec
        return []
    sent, out = set(), []
    for _, target in impl_targets(data):
        source = target.rpartition(":")[0]
        if not (source.endswith(".py") or "/" in source or "\\" in source) or Path(source).expanduser().is_absolute() or source in sent:
            continue
        local = Path(path).parent / source
        if local.is_file():
            sent.add(source)
            out.append((source, local.read_bytes()))
    return out


def _multipart(specs: list[tuple[str, str]], options: dict, files: dict) -> tuple[bytes, str]:
    """POST /api/runs as a multipart upload: each spec part followed by its op files' parts, `options` as JSON."""
    import uuid

    boundary = f"gradlab-{uuid.uuid4().hex}"

    def part(field: str, filename: str | None, data: bytes) -> bytes:
        quoted = (filename or "").replace("\\", "\\\\").replace('"', '\\"').replace("\r", "").replace("\n", "")
        disposition = f'form-data; name="{field}"' + (f'; filename="{quoted}"' if filename is not None else "")
        kind = "" if filename is None else "Content-Type: application/octet-stream\r\n"
        return f"--{boundary}\r\nContent-Disposition: {disposition}\r\n{kind}\r\n".encode("utf-8") + data + b"\r\n"

    body = [part("options", None, json.dumps(options).encode("utf-8"))]
    for name, text in specs:
        body.append(part("specs", name, text.encode("utf-8")))
        body += [part("files", source, data) for source, data in files.get(name, [])]
    return b"".join(body) + f"--{boundary}--\r\n".encode("utf-8"), f"multipart/form-data; boundary={boundary}"


def _submit(server: Server, specs: list[tuple[str, str]], options: dict, files: dict | None = None) -> tuple[dict | None, list]:
    """POST the run (waiting out 429s), leaving out specs the server finds invalid as error results, as a local check
    does; then wait for it. (the finished run, error results of the refused specs). Specs with op files go as a
    multipart upload (their files after them), others as JSON."""
    from ..batch import error_result

    refused = []
    while specs:
        if any(files.get(name) for name, _ in specs) if files else False:
            status, payload, headers = server.call("POST", "/api/runs", form=_multipart(specs, options, files))
        else:
            status, payload, headers = server.call("POST", "/api/runs", {"specs": [{"name": n, "yaml": t} for n, t in specs], "options": options})
        if status == 202:
            return _wait(server, payload["id"]), refused
        if status == 429:
            time.sleep(min(60.0, float(headers.get("Retry-After", "5") or 5)))
            continue
        detail = payload if isinstance(payload, str) else payload.get("detail", payload)
        errors = payload.get("errors", []) if isinstance(payload, dict) else []
        # 422: invalid specs; 403: specs naming user code on a server that runs none. Either way they are left out and
        # reported as error results, the others submitted again, as a local check reports them and checks the rest.
        if status in (403, 422) and errors and all(e.get("index") is not None for e in errors):
            bad = {e["index"]: e["message"] for e in errors}
            refused += [error_result(name, bad[i]) for i, (name, _) in enumerate(specs) if i in bad]
            specs = [s for i, s in enumerate(specs) if i not in bad]
            continue
        if status in (403, 413, 422):
            raise GradlabError(str(detail))
        raise GradlabError(f"--remote {server.url}: the server answered {status}: {str(detail)[:300]}")
    return None, refused


def _wait(server: Server, run_id: int) -> dict:
    """Poll until the run is no longer queued or running; a progress bar on stderr when that is a terminal."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    bar = Progress(TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=console, transient=True, disable=not console.is_terminal or console.is_dumb_terminal)
    pause, retried, unreachable_since = POLL_S[0], False, None
    with bar:
        task = None
        while True:
            try:
                status, run, _ = server.call("GET", f"/api/runs/{run_id}")
                unreachable_since = None
            except GradlabError:  # the server restarts: wait for it a while
                unreachable_since = unreachable_since or time.monotonic()
                if time.monotonic() - unreachable_since > UNREACHABLE_S:
                    raise
                time.sleep(1.0)
                continue
            if status != 200 or not isinstance(run, dict):
                raise GradlabError(f"--remote {server.url}: run {run_id}: the server answered {status}: {str(run)[:300]}")
            if run["status"] == "interrupted" and not retried:  # the server was restarted mid-run: once more
                retried = True
                server.call("POST", f"/api/runs/{run_id}/retry")
                continue
            if run["status"] not in ("queued", "running"):
                return run
            done, total = run["progress"]["done"], run["progress"]["total"]
            what = f"{server.url} run {run_id}: {run['status']}"
            if task is None:
                task = bar.add_task(what, total=total)
            bar.update(task, description=what, completed=done)
            time.sleep(pause)
            pause = min(POLL_S[1], pause * 1.5)


def _results(run: dict) -> list:
    return results_from_document(run["result"]) if run.get("status") == "done" and run.get("result") else []


def results_from_document(doc: dict) -> list:
    """SpecResults back from a `gradlab check --format json` document: what the terminal renderer reads."""
    from ..compare import Comparison
    from ..diagnosis import Diagnosis
    from ..hazards import SpecWarning
    from ..runner import SpecResult

    floats = {f.name for f in fields(Comparison) if isinstance(f.default, float)}
    names = {f.name for f in fields(Comparison)}

    def comparison(d: dict) -> Comparison:
        values = {k: (float("nan") if v is None and k in floats else v) for k, v in d.items() if k in names}
        values["shape"] = tuple(values.get("shape") or ())
        values["worst_index"] = tuple(values["worst_index"]) if values.get("worst_index") is not None else None
        values["kink_indices"] = [tuple(i) for i in values.get("kink_indices") or []]
        return Comparison(**values)

    return [SpecResult(path=s["spec"], name=s["name"], dtype=s["dtype"], comparisons=[comparison(c) for c in s["comparisons"]],
                       n_params=s["n_params"], method=s["numeric_method"], mode=s["mode"], seconds=s["seconds"], seed=s["seed"],
                       notes=list(s["notes"]), error=s["error"], error_kind="user" if s["error"] is not None else "",
                       diagnosis=[Diagnosis(**d) for d in s.get("diagnosis") or []],
                       warnings=[SpecWarning(w["kind"], w["path"], w["message"]) for w in s.get("warnings") or []])
            for s in doc["specs"]]


def _print(results, run: dict | None, *, fmt: str, output: str | None, quiet: bool, verbose: bool) -> None:
    """Exactly what `gradlab check` prints for these results: the JSON document, or the terminal tables."""
    from ..output import write_text
    from ..report.terminal import render

    stats = (run or {}).get("stats_output") or {"text": "", "skipped": []}
    for reason in stats["skipped"]:
        click.echo(f"note: --stats skipped: {reason}", err=True)
    if fmt == "json":
        from ..batch import check_document

        # specs refused here keep their place, as in a local run
        doc = check_document(results, (run or {}).get("result", {}).get("environment", {}) if run is not None else {})
        write_text(json.dumps(doc, indent=2, default=float), output)
        return
    if output:
        import io

        from rich.console import Console

        console = Console(file=io.StringIO(), no_color=True)
        render(results, console=console, quiet=quiet, verbose=verbose)
        write_text(console.file.getvalue() + stats["text"], output)
    render(results, quiet=quiet, verbose=verbose)
    click.echo(stats["text"], nl=False)  # the server's plain rendering: as a local run prints it into a pipe or file


def _write_reports(server: Server, run_id: int, targets: list[tuple[str, str]], *, quiet: bool) -> None:
    """Each --report PATH from the server's report in that format, all fetched before any is written."""
    from ..commands.report import write_rendered
    from .runs import REPORT_SUFFIXES

    rendered = []
    for path, fmt in targets:
        status, text, _ = server.call("GET", f"/api/runs/{run_id}/report.{REPORT_SUFFIXES[fmt]}", raw=True)
        if status == 404:
            return  # nothing could be checked: no report, as a local check writes none
        if status == 410:  # the run was checked but the server lost its report: say so, never a silent "no report"
            detail = text
            try:
                detail = json.loads(text).get("detail", text)
            except (ValueError, AttributeError):
                pass
            raise GradlabError(f"--remote {server.url}: {str(detail)[:400]}")
        if status != 200:
            raise GradlabError(f"--remote {server.url}: report.{REPORT_SUFFIXES[fmt]} of run {run_id}: the server answered {status}")
        rendered.append((path, fmt, text))
    write_rendered(rendered, quiet=quiet)
