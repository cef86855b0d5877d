"""The HTTP side of `gradlab serve`: the JSON API under /api and the web UI, one FastAPI app.

    POST /api/runs                      specs (JSON or multipart upload) -> 202 {"id"}; 422 bad spec, 403 every spec user code, 429 queue full
    GET  /api/runs/{id}                 {"id", "status", "result", ...}; result: the `gradlab check --format json` document
    GET  /api/runs/{id}/report.{html,md,xml,csv,json}
    GET  /api/runs?spec=NAME&limit=N    runs, newest first
    GET  /api/specs/{name}/history      per tensor and engine pair: max relative error and status over runs
    GET  /api/specs/{name}/diff?before=A&after=B
                                        ({name} is the rest of the path: a name with `/` in it, raw or as %2F, is one name)
    POST /api/runs/{id}/retry           an interrupted or error run, queued again
    GET  /  /runs/{id}  /specs/{name}   the web UI

With a token (--token-file) every route but /login needs `Authorization: Bearer TOKEN` (or the cookie /login sets:
an HMAC of the token, never the token). Every request first passes guard.Guard: a Host the server was not bound or
configured for, or an Origin that is not the server's own, is 403 (other web sites, DNS rebinding).
"""

from __future__ import annotations

import hmac
import json
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Form, HTTPException
from fastapi import Path as PathParam
from fastapi import Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from sqlalchemy import bindparam, or_, select

from . import intake
from .guard import LOOPBACK_NAMES, Guard, LoginLimiter, session_value
from .db import Run, RunSpec, SpecFile, SpecResultRow, interrupt_unfinished, iso
from .history import NotFound, diff_runs, sent_as, spec_history, trend_png
from .runs import REPORT_SUFFIXES, NotRetryable, QueueFull, ReportStore, RunQueue

COOKIE = "gradlab_session"
MEDIA = {"html": "text/html; charset=utf-8", "md": "text/markdown; charset=utf-8", "junit": "application/xml",
         "csv": "text/csv; charset=utf-8", "json": "application/json"}
# the columns a run's summary shows, read as plain rows (SQLAlchemy Core) by the routes clients poll: no ORM object per run
SUMMARY = (Run.id, Run.status, Run.label, Run.n_specs, Run.created, Run.started, Run.finished, Run.attempts, Run.passed,
           Run.exit_code, Run.error)
POLLED = (*SUMMARY, Run.options, Run.stats_output, Run.result)  # GET /api/runs/{id} adds these
# The polled routes' statements, built once with bound parameters: building the expressions per request (Run.id == ...)
# was a tenth of the web process's CPU under load.
_POLLED_RUN = select(*POLLED).where(Run.id == bindparam("run_id"))
_SPEC_NAMES = select(RunSpec.name).where(RunSpec.run_id == bindparam("run_id")).order_by(RunSpec.position)
_SENT_FILES = (select(SpecFile.position, SpecFile.path, SpecFile.size, SpecFile.sha256)
               .where(SpecFile.run_id == bindparam("run_id")).order_by(SpecFile.position, SpecFile.path))
_NEWEST_RUNS = select(*SUMMARY).order_by(Run.id.desc()).limit(bindparam("limit"))
_NAMES_OF_RUNS = (select(RunSpec.run_id, RunSpec.name).where(RunSpec.run_id.in_(bindparam("ids", expanding=True)))
                  .order_by(RunSpec.run_id, RunSpec.position))
# A report is the user's data shown in the browser: no scripts, nothing fetched, images inline only.
# Framed by the run's page of this server only (frame-ancestors 'self'); no other site can frame it.
REPORT_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; sandbox; frame-ancestors 'self'"
REPORT_HEADERS = {"Content-Security-Policy": REPORT_CSP, "X-Frame-Options": "SAMEORIGIN"}
# A run id, wherever a client names one (a path segment or ?before= / ?after=): the database's ids are 1 ... 2**63 - 1
# (SQLite's INTEGER, PostgreSQL's bigint); anything else is a 422 here, never an OverflowError in a query.
MAX_ID = 2**63 - 1
RunId = Annotated[int, PathParam(ge=1, le=MAX_ID, description="a run's id")]
RunIdQuery = Annotated[int, Query(ge=1, le=MAX_ID)]
MaybeRunId = Annotated[int | None, Query(ge=1, le=MAX_ID)]


@dataclass
class ServiceConfig:
    sessions: object  # a sessionmaker from db.open_db
    executor: object  # from gradlab.executors.make_executor
    capacity: int = 1  # specs in flight at once (the workers)
    allow_code: bool = False
    token: str | None = None
    reports_dir: str | None = None
    max_queued: int = 1000
    max_body: int = intake.MAX_BODY_BYTES
    timeout: float = 600.0  # a spec's deadline when neither the client nor the spec names one
    hosts: frozenset | None = LOOPBACK_NAMES  # the Host names requests may use (guard.allowed_hosts); None: any
    connection_address: bool = False  # a wildcard bind: the address a connection was made to counts as a name too
    db_url: str | None = None  # given: finished runs are rendered and written by a store process (runs.StoreProcess)


def create_app(config: ServiceConfig) -> FastAPI:
    sessions = config.sessions

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        interrupt_unfinished(sessions)
        app.state.runs = RunQueue(sessions, config.executor, capacity=config.capacity, max_queued=config.max_queued,
                                  reports=ReportStore(config.reports_dir), allow_code=config.allow_code, timeout=config.timeout,
                                  db_url=config.db_url)
        app.state.runs.start()
        import gc

        gc.collect()
        gc.freeze()  # what start-up made (modules, tables, the app) stays out of every later collection: no long pauses
        try:
            yield
        finally:
            app.state.runs.stop()
            config.executor.shutdown(wait=False)  # a run cut short stays `running`: interrupted at the next start

    app = FastAPI(title="gradlab", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(Guard, hosts=config.hosts, connection_address=config.connection_address)
    session = session_value(config.token) if config.token is not None else None
    logins = LoginLimiter()

    async def authorized(request: Request) -> None:  # async: no thread hop for a header comparison
        if config.token is None:
            return
        header = request.headers.get("authorization", "")
        if header[:7].lower() == "bearer ":
            offered, expected = header[7:], config.token
        else:  # the UI's cookie holds the session value /login set, never the token
            offered, expected = request.cookies.get(COOKIE, ""), session
        if not hmac.compare_digest(offered.encode("utf-8", "surrogateescape"), expected.encode("utf-8")):
            if request.url.path.startswith("/api/"):
                raise HTTPException(401, "missing or wrong token: send the header 'Authorization: Bearer TOKEN'",
                                    headers={"WWW-Authenticate": "Bearer"})
            raise HTTPException(303, headers={"Location": "/login"})

    api = APIRouter(prefix="/api", dependencies=[Depends(authorized)])
    ui = APIRouter(dependencies=[Depends(authorized)])

    # --- the API -----------------------------------------------------------------------------------

    @api.post("/runs", status_code=202)
    async def submit(request: Request):
        try:
            body = await _read_body(request, config.max_body)
            submission = await _parse_submission(request, body)
            run_id = await run_in_threadpool(_accept, submission, config.allow_code, request.app.state.runs)  # one thread hop
        except intake.Refused as exc:
            return JSONResponse({"detail": str(exc), "errors": [{"index": i, "message": m} for i, m in exc.errors]}, exc.status)
        except QueueFull as exc:
            return JSONResponse({"detail": str(exc)}, 429, headers={"Retry-After": str(exc.retry_after)})
        return JSONResponse({"id": run_id}, 202, headers={"Location": f"/api/runs/{run_id}"})

    polled = RunCache()
    local_file = sessions.kw["bind"].dialect.name == "sqlite"

    async def read(fn, *args):
        """A polled route's read: on the event loop for SQLite (a WAL reader never waits for a writer, and a read of a few
        indexed rows costs less than the hop to a thread and back, ~0.3 ms of CPU and ~0.8 ms of latency measured), in
        the thread pool for a database across a network."""
        return fn(*args) if local_file else await run_in_threadpool(fn, *args)

    @api.get("/runs/{run_id}")
    async def get_run(run_id: RunId, request: Request):
        # Clients poll this: a run that has not changed since it was last read is answered from memory, on the event
        # loop, without a thread or a query (RunQueue.run_version changes after every committed change of the run).
        queue = request.app.state.runs
        version = queue.run_version(run_id)
        body = polled.get(run_id, version)
        if body is None:
            body = await read(_run_document, sessions, queue, run_id)
            if body is None:
                raise HTTPException(404, f"no run {run_id}")
            polled.put(run_id, version, body)
        return Response(body, media_type="application/json")

    @api.get("/runs/{run_id}/report.{suffix}")
    def get_report(run_id: RunId, suffix: str):
        fmt = next((f for f, s in REPORT_SUFFIXES.items() if s == suffix), None)
        if fmt is None:
            raise HTTPException(404, f"no report format {suffix!r}; expected one of {', '.join(REPORT_SUFFIXES.values())}")
        with sessions() as session:
            run = _run_or_404(session, run_id)
            if run.status != "done":
                raise HTTPException(409, f"run {run_id} is {run.status}; its reports exist once it is done")
            store = ReportStore(config.reports_dir)
            text = store.load(session, run_id, fmt)
            # a run with a checked spec was written with its reports: none found now means they were lost on the server
            expected = text is None and session.scalar(select(SpecResultRow.run_id).where(
                SpecResultRow.run_id == run_id, SpecResultRow.error.is_(None)).limit(1)) is not None
        if expected:
            where = (f"the file {run_id}/report.{suffix} under the server's --reports-dir" if config.reports_dir is not None
                     else "its row in the server's database")
            raise HTTPException(410, f"run {run_id}: the report file report.{suffix} is missing on the server ({where} was deleted "
                                     f"or moved); the run's results are still at /api/runs/{run_id}: submit its specs again for a "
                                     "fresh report")
        if text is None:
            raise HTTPException(404, f"run {run_id} has no report: none of its specs could be checked (see its result's errors)")
        return Response(text, media_type=MEDIA[fmt], headers=REPORT_HEADERS if fmt == "html" else {})

    listed = RunCache(entries=64, max_bytes=8 * 2**20)

    @api.get("/runs")
    async def list_runs(request: Request, spec: str | None = Query(None, max_length=300), limit: int = Query(50, ge=1, le=1000)):
        queue = request.app.state.runs
        version, key = queue.version, (spec, limit)  # read before the query: a change after it is a new version
        body = listed.get(key, version)
        if body is None:
            body = await read(_runs_document, sessions, spec, limit, queue)
            listed.put(key, version, body)
        return Response(body, media_type="application/json")

    @api.get("/specs/{name:path}/history")
    def history(name: str, limit: int = Query(50, ge=1, le=1000)):
        with sessions() as session:
            return spec_history(session, name, limit)

    @api.get("/specs/{name:path}/diff")
    def diff(name: str, before: RunIdQuery, after: RunIdQuery):
        with sessions() as session:
            try:
                return diff_runs(session, name, before, after)
            except NotFound as exc:
                raise HTTPException(404, str(exc)) from None

    @api.post("/runs/{run_id}/retry", status_code=202)
    def retry(run_id: RunId, request: Request):
        try:
            request.app.state.runs.retry(run_id)
        except KeyError:
            raise HTTPException(404, f"no run {run_id}") from None
        except NotRetryable as exc:
            raise HTTPException(409, str(exc)) from None
        except QueueFull as exc:
            return JSONResponse({"detail": str(exc)}, 429, headers={"Retry-After": str(exc.retry_after)})
        return JSONResponse({"id": run_id}, 202)

    # --- the web UI --------------------------------------------------------------------------------

    @ui.get("/", response_class=HTMLResponse)
    def runs_page(request: Request, spec: str | None = Query(None, max_length=300)):
        with sessions() as session:
            runs = _runs(session, spec, 200, request.app.state.runs)
        return _page("runs.html.j2", runs=runs, spec=spec)

    @ui.get("/runs/{run_id}", response_class=HTMLResponse)
    def run_page(run_id: RunId, request: Request):
        with sessions() as session:
            run = _run_or_404(session, run_id)
            names = session.scalars(select(RunSpec.name).where(RunSpec.run_id == run_id).order_by(RunSpec.position)).all()
            results = session.scalars(select(SpecResultRow).where(SpecResultRow.run_id == run_id).order_by(SpecResultRow.position)).all()
            has_report = run.status == "done" and ReportStore(config.reports_dir).load(session, run_id, "md") is not None
            # checked specs but no report: the report files were lost on the server (deleted from --reports-dir)
            reports_missing = not has_report and run.status == "done" and any(r.error is None for r in results)
            files: dict[str, list] = {}
            for f in _files(session, run_id, names):
                files.setdefault(f["index"], []).append(f)
            return _page("run.html.j2", run=_summary(run, names, request.app.state.runs.progress(run_id)), results=results,
                         has_report=has_report, reports_missing=reports_missing, suffixes=REPORT_SUFFIXES, files=files)

    @ui.get("/specs/{name:path}", response_class=HTMLResponse)
    def spec_page(name: str, before: MaybeRunId = None, after: MaybeRunId = None):
        with sessions() as session:
            found = spec_history(session, name)
            runs = [r["run"] for r in found["runs"]]
            if (before is None or after is None) and len(runs) >= 2:
                before, after = runs[-2], runs[-1]
            try:
                changes = diff_runs(session, name, before, after) if before is not None and after is not None else None
            except NotFound as exc:
                raise HTTPException(404, str(exc)) from None
        return _page("spec.html.j2", name=found["spec"], history=found, plot=trend_png(found), diff=changes, runs=runs)

    login = APIRouter()

    @login.get("/login", response_class=HTMLResponse)
    def login_form():
        return _page("login.html.j2", wrong=False)

    @login.post("/login")
    def login_submit(request: Request, token: str = Form(..., max_length=4096)):
        client = request.client.host if request.client else ""
        wait = logins.retry_after(client)
        if wait is not None:  # too many wrong tokens from this address lately: guessing stops here
            return HTMLResponse(_page("login.html.j2", wrong=False, wait=wait), 429, headers={"Retry-After": str(wait)})
        if config.token is None or not hmac.compare_digest(token.encode("utf-8", "surrogateescape"), config.token.encode("utf-8")):
            logins.failed(client)
            return HTMLResponse(_page("login.html.j2", wrong=True), 401)
        logins.succeeded(client)
        response = RedirectResponse("/", 303)
        response.set_cookie(COOKIE, session, httponly=True, samesite="strict", path="/", secure=request.url.scheme == "https")
        return response

    app.include_router(api)
    app.include_router(ui)
    app.include_router(login)
    return app


# --- helpers ----------------------------------------------------------------------------------------


async def _read_body(request: Request, cap: int) -> bytes:
    """The request body, refused (413) past `cap` bytes before more of it is read."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cap:
        raise intake.Refused(413, [(None, f"body: {int(declared):,} bytes; at most {cap:,} bytes in one request")])
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > cap:
            raise intake.Refused(413, [(None, f"body: more than {cap:,} bytes; at most {cap:,} bytes in one request")])
    return bytes(body)


async def _parse_submission(request: Request, body: bytes) -> intake.Submission:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/json":
        try:
            doc = json.loads(body)
        except (ValueError, RecursionError) as exc:
            raise intake.Refused(422, [(None, f"body: not valid JSON ({' '.join(str(exc).split())[:120]})")]) from None
        return intake.from_json(doc)
    if kind == "multipart/form-data":
        async def replay():
            return {"type": "http.request", "body": body, "more_body": False}

        form = await Request(request.scope, replay).form(max_files=intake.MAX_SPECS * (1 + intake.MAX_FILES), max_fields=16)
        specs, files = [], {}
        for key, value in form.multi_items():  # a `files` part is an op file of the spec part before it
            if isinstance(value, str):
                continue
            name, raw = value.filename or key, await value.read()
            if key != "files":
                specs.append((name, intake.decode_upload(name, raw)))
            elif not specs:
                raise intake.Refused(422, [(None, f"files: {name[:100]!r} comes before any spec; send each op file after its spec "
                                                  "(-F specs=@net.yaml -F files=@ops.py)")])
            else:
                files.setdefault(len(specs) - 1, []).append((name, intake.decode_upload(name, raw)))
        specs = intake.counted(specs)
        options = form.get("options")
        try:
            raw = json.loads(options) if isinstance(options, str) and options.strip() else {}
        except ValueError:
            raise intake.Refused(422, [(None, "options: expected a JSON object such as {\"mode\": \"fast\"}")]) from None
        if isinstance(form.get("label"), str) and isinstance(raw, dict):
            raw = {**raw, "label": form["label"]}
        parsed = intake.parse_options(raw)
        return intake.Submission(specs, parsed, parsed.get("label"), files or None)
    raise intake.Refused(415, [(None, f"body: Content-Type {kind or 'none'!r}; send application/json or multipart/form-data")])


def _validated(submission: intake.Submission, allow_code: bool) -> tuple[dict, list]:
    """The specs validated (intake.validate_specs), then their op files matched to their impl: paths: (files, facts)."""
    facts = intake.validate_specs(submission.specs, allow_code=allow_code)
    return intake.match_files(submission.specs, submission.files), facts


def _accept(submission: intake.Submission, allow_code: bool, queue: RunQueue) -> int:
    """A submission validated and queued: its run's id."""
    files, facts = _validated(submission, allow_code)
    return queue.submit(submission.specs, submission.options, submission.label, files, facts)


class RunCache:
    """The last body answered for each key, with the version it was made at (LRU; at most `entries`, `max_bytes`)."""

    def __init__(self, entries: int = 4096, max_bytes: int = 64 * 2**20):
        from collections import OrderedDict

        self.entries, self.max_bytes = entries, max_bytes
        self._bodies: OrderedDict = OrderedDict()
        self._bytes = 0

    def get(self, key, version) -> bytes | None:
        found = self._bodies.get(key)
        if found is None or found[0] != version:
            return None
        self._bodies.move_to_end(key)
        return found[1]

    def put(self, key, version, body: bytes) -> None:
        old = self._bodies.pop(key, None)
        if old is not None:
            self._bytes -= len(old[1])
        if len(body) > self.max_bytes // 8:  # a huge document is not kept
            return
        self._bodies[key] = (version, body)
        self._bytes += len(body)
        while len(self._bodies) > self.entries or self._bytes > self.max_bytes:
            self._bytes -= len(self._bodies.popitem(last=False)[1][1])


def _reading(sessions):
    """A plain connection for the polled routes' Core reads: no ORM session around them (its set-up and its compile
    layer were a third of a poll's CPU)."""
    return sessions.kw["bind"].connect()


def _run_document(sessions, queue: RunQueue, run_id: int) -> bytes | None:
    """GET /api/runs/{id}'s body, or None when there is no such run."""
    with _reading(sessions) as session:
        run = session.execute(_POLLED_RUN, {"run_id": run_id}).first()
        if run is None:
            return None
        names = session.scalars(_SPEC_NAMES, {"run_id": run_id}).all()
        files = _files(session, run_id, names)
    head = json.dumps({**_summary(run, names, queue.progress(run_id)), "options": run.options,
                       "stats_output": run.stats_output, "files": files})
    # the stored document goes out as it was written: no parse and re-encode of every tensor's row per poll
    return f'{head[:-1]}, "result": {run.result or "null"}}}'.encode()


def _runs_document(sessions, spec: str | None, limit: int, queue: RunQueue) -> bytes:
    with _reading(sessions) as session:
        return json.dumps({"runs": _runs(session, spec, limit, queue)}).encode()


def _files(session, run_id: int, names) -> list[dict]:
    """The op files sent with the run's specs, without their text: [{index, spec, path, bytes, sha256}]."""
    rows = session.execute(_SENT_FILES, {"run_id": run_id}).all()
    return [{"index": r.position, "spec": names[r.position] if r.position < len(names) else str(r.position), "path": r.path,
             "bytes": r.size, "sha256": r.sha256} for r in rows]


def _run_or_404(session, run_id: int) -> Run:
    run = session.get(Run, run_id)
    if run is None:
        raise HTTPException(404, f"no run {run_id}")
    return run


def _summary(run, names, progress) -> dict:
    """A run's status as the API shows it; `run` a Run or a row of the same columns."""
    done, total = progress if progress is not None else ((run.n_specs if run.status == "done" else 0), run.n_specs)
    return {"id": run.id, "status": run.status, "label": run.label, "specs": list(names), "progress": {"done": done, "total": total},
            "created": iso(run.created), "started": iso(run.started), "finished": iso(run.finished), "attempts": run.attempts,
            "passed": run.passed, "exit_code": run.exit_code, "error": run.error}


def _runs(session, spec: str | None, limit: int, queue: RunQueue) -> list[dict]:
    """Newest first; with `spec`, the runs that hold a spec of that name (its `name:`, or the file name or path sent)."""
    if spec:
        query = select(*SUMMARY).order_by(Run.id.desc()).limit(limit).where(
            or_(Run.id.in_(select(SpecResultRow.run_id).where(SpecResultRow.name == spec)),
                Run.id.in_(select(RunSpec.run_id).where(sent_as(RunSpec.name, spec)))))
        runs = session.execute(query).all()
    else:
        runs = session.execute(_NEWEST_RUNS, {"limit": limit}).all()
    names: dict[int, list[str]] = {}
    for run_id, name in session.execute(_NAMES_OF_RUNS, {"ids": [r.id for r in runs]}):
        names.setdefault(run_id, []).append(name)
    return [_summary(r, names.get(r.id, []), queue.progress(r.id)) for r in runs]


_templates = {}


def segment(name) -> str:
    """A name as one percent-encoded URL path segment or query value (`team/mlp-v2` -> `team%2Fmlp-v2`): names are
    data, never routes; the /specs/{name:path} routes take the name whole, slashes and all."""
    from urllib.parse import quote

    return quote(str(name), safe="")


def _page(template: str, **context) -> str:
    """A UI page from ui/ (jinja2, autoescaped: every name a client sent is shown, never obeyed)."""
    if "env" not in _templates:
        from jinja2 import Environment, FileSystemLoader, select_autoescape

        env = Environment(loader=FileSystemLoader(Path(__file__).parent / "ui"), autoescape=select_autoescape(default=True))
        env.filters["segment"] = segment
        _templates["env"] = env
    return _templates["env"].get_template(template).render(**context)


__all__ = ["ServiceConfig", "create_app"]
