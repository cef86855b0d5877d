"""The queue between the API and the workers: accepts runs, feeds their specs to the executor, stores what comes back.

One thread (the dispatcher) owns the bookkeeping: it keeps at most `capacity` specs in flight on the
executor (gradlab.executors, or service.pool's warm workers), runs first come first served, and, when a
run's last spec is back, hands it to the writer. The writer has the run's check document, per-tensor
rows and reports made (`render_run`) by a store process of its own (given the database URL), then writes
them in one transaction of a few Core statements (`apply_run`), so the web process does only I/O: a worker
hands back each spec's result pickled, the web process passes the bytes on without reading them. The web
process never runs a check itself and never imports user code. It is the only process that writes the
database, one transaction at a time (a lock of its own, not SQLite's sleeping busy handler), and a run's
changes are versioned (`run_version`) so that the API answers polls of an unchanged run from memory.

Outcomes are per spec, as in `gradlab check --executor local`: a worker that crashed (WorkerCrashed) or ran
past its deadline (JobTimeout) is that spec's error result naming how the worker died, a spec naming user
code on a server without --allow-code is that spec's error result, and the run is `done` with every other
spec's result (exit code 2, as the local check's). A run is `error` only when the server could not store it.
A run left `running` by a server that was killed becomes `interrupted` at the next start
(db.interrupt_unfinished) and `retry` queues it again; runs still `queued` in the database are queued again
at start-up.
"""

from __future__ import annotations

import hashlib
import math
import os
import pickle
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import bindparam, delete, insert, select, update

from .render import REPORT_SUFFIXES, RunWrite, render_run
from .db import ComparisonRow, Report, Run, RunSpec, SpecFile, SpecResultRow, checkpoint, utcnow

_START_RUN = (update(Run).where(Run.id == bindparam("run_id"), Run.status == "queued")
              .values(status="running", started=bindparam("started"), attempts=Run.attempts + 1))
CHECKPOINT_EVERY = 16  # runs written between two checkpoints of SQLite's write-ahead log (db.checkpoint) under load


class QueueFull(Exception):
    """More runs are waiting than the server accepts (HTTP 429); `retry_after` is the wait worth trying, in seconds."""

    def __init__(self, retry_after: int):
        super().__init__(f"the queue is full; retry in {retry_after} s")
        self.retry_after = retry_after


class NotRetryable(Exception):
    """Only an interrupted or failed run can be queued again (HTTP 409)."""


class ReportStore:
    """Finished runs' reports: rows of the database, or files `DIR/<run id>/report.<suffix>` with --reports-dir.

    Only the run id (an integer the server made) and the fixed suffixes ever name a file."""

    def __init__(self, folder: str | Path | None = None):
        self.folder = Path(folder) if folder is not None else None

    def _path(self, run_id: int, fmt: str) -> Path:
        return self.folder / str(int(run_id)) / f"report.{REPORT_SUFFIXES[fmt]}"

    def save(self, session, run_id: int, texts: dict[str, str]) -> None:
        if self.folder is None:
            if texts:
                session.execute(insert(Report), [dict(run_id=run_id, fmt=fmt, text=text) for fmt, text in texts.items()])
            return
        from ..output import write_atomic

        for fmt, text in texts.items():
            write_atomic(str(self._path(run_id, fmt)), text)

    def load(self, session, run_id: int, fmt: str) -> str | None:
        if self.folder is None:
            row = session.get(Report, (run_id, fmt))
            return row.text if row is not None else None
        try:
            return self._path(run_id, fmt).read_text(encoding="utf-8")
        except OSError:
            return None

    def drop(self, session, run_id: int) -> None:
        session.execute(delete(Report).where(Report.run_id == run_id))
        if self.folder is not None:
            for fmt in REPORT_SUFFIXES:
                self._path(run_id, fmt).unlink(missing_ok=True)


@dataclass
class _Active:
    """A run whose specs are being fed to the executor."""

    id: int
    names: list[str]
    texts: list[str]
    options: dict
    results: list = field(default_factory=list)
    pending: deque = field(default_factory=deque)  # indexes of the specs still to hand to the executor
    files: dict = field(default_factory=dict)  # spec index -> [(impl path, text)]: the op files sent with it
    facts: list = field(default_factory=list)  # intake.SpecFacts of each spec (None: not a spec; its worker says why)
    returned: int = 0  # specs with a result (checked, or refused without running)

    def __post_init__(self):
        from .intake import spec_facts

        self.results = [None] * len(self.names)
        self.pending = deque(range(len(self.names)))
        if len(self.facts) != len(self.names):  # read again from the text (a run queued before a restart)
            self.facts = [spec_facts(name, text) for name, text in zip(self.names, self.texts)]


class RunQueue:
    """Bounded FIFO of runs; `capacity` specs at a time on `executor`; results into the database."""

    def __init__(self, sessions, executor, *, capacity: int, max_queued: int, reports: ReportStore, allow_code: bool = False,
                 timeout: float = 600.0, db_url: str | None = None):
        self.sessions, self.executor, self.reports, self.allow_code = sessions, executor, reports, allow_code
        self.db_url = db_url  # with it, finished runs are rendered and written by a store process (StoreProcess)
        self._store: StoreProcess | None = None
        self.timeout = timeout  # seconds per spec when neither the client nor the spec says
        self.capacity, self.max_queued = max(1, capacity), max_queued
        self._environment_job = None  # versions and devices where the checks run, asked of a worker at start-up
        self._worker_environment: dict | None = None
        self._lock = threading.Lock()
        self._waiting: deque[int] = deque()
        self._active: dict[int, _Active] = {}
        self._in_flight = 0
        self._spec_seconds: deque[float] = deque(maxlen=64)  # recent specs' wall times on a worker, for Retry-After
        self._submitted_at: dict[tuple[int, int], float] = {}
        self._events: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._dispatch, name="gradlab-dispatcher", daemon=True)
        # Writing a finished run (its document, rows and reports) happens beside the dispatching, never in its way.
        self._finishing: dict[int, _Active] = {}
        self._finished: queue.Queue = queue.Queue()
        self._writer = threading.Thread(target=self._write, name="gradlab-writer", daemon=True)
        # What submit() already knows of a queued run (its specs, options, files, SpecFacts): the dispatcher starts it
        # without reading it back from the database.
        self._prepared: dict[int, tuple] = {}
        # Each run's version: bumped after every change of what GET /api/runs/{id} shows (always after the change is
        # committed), so that the API can answer polls of an unchanged run from what it answered last (app.RunCache).
        self._versions: dict[int, int] = {}
        self._generation = 0  # a new generation when _versions is emptied (it stays bounded)
        self.version = 0  # bumped after any run's change: the runs list's version
        self._version_lock = threading.Lock()
        # One write transaction at a time in this process, the only one that writes: a writer waits here for the one
        # before it, never in SQLite's busy handler (which sleeps 1, 2, 5, 10, ... ms between tries).
        self._write_lock = threading.Lock()
        self._written = 0  # runs written: the writer checkpoints SQLite's log every CHECKPOINT_EVERY, and when idle

    def run_version(self, run_id: int) -> tuple[int, int]:
        """The run's version: an equal value later means nothing GET /api/runs/{id} shows has changed since."""
        return self._generation, self._versions.get(run_id, 0)

    def _changed(self, run_id: int) -> None:
        with self._version_lock:
            if len(self._versions) >= 100_000:
                self._versions.clear()
                self._generation += 1
            self.version += 1
            self._versions[run_id] = self.version

    # --- what the API calls ----------------------------------------------------------------------------

    def start(self) -> None:
        """Queue again the runs the database holds as `queued` (a server stopped before starting them), then dispatch."""
        with self.sessions() as session:
            self._waiting.extend(session.scalars(select(Run.id).where(Run.status == "queued").order_by(Run.id)).all())
        from .jobs import worker_environment

        if self.db_url is not None:
            self._store = StoreProcess(self.db_url, self.reports.folder)
        if getattr(self.executor, "reuses_workers", False):  # warm workers up before the first request (service.pool)
            self.executor.start_workers()
            self._environment_job = self.executor.submit(worker_environment, reuse=True)
        else:
            self._environment_job = self.executor.submit(worker_environment)
        if self._store is not None:
            self._store.wait_ready()
        self._thread.start()
        self._writer.start()
        self._events.put(("wake",))

    def stop(self) -> None:
        self._events.put(("stop",))
        self._thread.join(timeout=10)
        self._finished.put(None)
        self._writer.join(timeout=30)
        if self._store is not None:
            self._store.close()

    def submit(self, specs: list[tuple[str, str]], options: dict, label: str | None, files: dict | None = None,
               facts: list | None = None) -> int:
        """Store a validated run as `queued` and wake the dispatcher; QueueFull when max_queued runs wait already.
        `files`: {spec index: [(impl path, text)]}, the op files sent with the specs (intake.match_files); `facts`: each
        spec's intake.SpecFacts (validate_specs)."""
        with self._lock:
            self._refuse_if_full()
            with self._write_lock, _engine(self.sessions).begin() as session:  # Core inserts on a plain connection
                run_id = session.execute(insert(Run).values(status="queued", label=label, options=options, n_specs=len(specs),
                                                            created=utcnow(), attempts=0)).inserted_primary_key[0]
                session.execute(insert(RunSpec), [dict(run_id=run_id, position=i, name=name, yaml=text)
                                                  for i, (name, text) in enumerate(specs)])
                sent = [dict(run_id=run_id, position=i, path=path, text=text, size=len(text.encode("utf-8")),
                             sha256=hashlib.sha256(text.encode("utf-8")).hexdigest())
                        for i, pairs in (files or {}).items() for path, text in pairs]
                if sent:
                    session.execute(insert(SpecFile), sent)
            self._prepared[run_id] = ([n for n, _ in specs], [t for _, t in specs], dict(options or {}),
                                      {i: list(pairs) for i, pairs in (files or {}).items()}, list(facts or []))
            self._waiting.append(run_id)
        self._changed(run_id)
        self._events.put(("wake",))
        return run_id

    def retry(self, run_id: int) -> None:
        """An `interrupted` or `error` run goes back into the queue, its partial results dropped."""
        with self._lock:
            with self._write_lock, self.sessions() as session, session.begin():
                run = session.get(Run, run_id)
                if run is None:
                    raise KeyError(run_id)
                if run.status not in ("interrupted", "error"):
                    raise NotRetryable(f"run {run_id} is {run.status}; only an interrupted or error run can be retried")
                self._refuse_if_full()
                for table in (SpecResultRow, ComparisonRow):
                    session.execute(delete(table).where(table.run_id == run_id))
                self.reports.drop(session, run_id)
                run.status, run.error, run.result, run.passed, run.exit_code, run.stats_output = "queued", None, None, None, None, None
                run.started = run.finished = None
            self._waiting.append(run_id)
        self._changed(run_id)
        self._events.put(("wake",))

    def progress(self, run_id: int) -> tuple[int, int] | None:
        """(specs back, specs in the run) while the run is being checked; None otherwise."""
        active = self._active.get(run_id) or self._finishing.get(run_id)
        return (active.returned, len(active.names)) if active is not None else None

    def _refuse_if_full(self) -> None:
        if len(self._waiting) + len(self._active) >= self.max_queued:
            raise QueueFull(self._retry_after())

    def _retry_after(self) -> int:
        """Seconds until a queue slot is likely free: the specs the nearest-to-done active run has left, through
        the workers at the recent seconds per spec (at least 1, at most 10 minutes)."""
        per_spec = sum(self._spec_seconds) / len(self._spec_seconds) if self._spec_seconds else 1.0
        left = min((len(a.names) - a.returned for a in list(self._active.values())), default=1)
        return int(min(600, max(1, math.ceil(per_spec * left / self.capacity))))

    # --- the dispatcher thread ---------------------------------------------------------------------

    def _dispatch(self) -> None:
        while True:
            event = self._events.get()
            if event[0] == "stop":
                return
            try:
                if event[0] == "done":
                    self._collect(*event[1:])
                self._fill()
            except Exception as exc:  # the dispatcher must outlive anything one run does
                import traceback

                traceback.print_exception(type(exc), exc, exc.__traceback__)

    def _fill(self) -> None:
        """Hand specs to the executor until `capacity` are in flight, oldest run first."""
        while self._in_flight < self.capacity:
            active = next((a for a in self._active.values() if a.pending), None)
            if active is None:
                with self._lock:
                    if not self._waiting:
                        return
                    run_id = self._waiting[0]  # counted as waiting until it counts as active: the bound stays exact
                active = self._begin(run_id)
                with self._lock:
                    self._waiting.popleft()  # only this thread takes from the left
                if active is None:
                    continue
            self._submit_next(active)

    def _begin(self, run_id: int) -> _Active | None:
        prepared = self._prepared.pop(run_id, None)
        if prepared is not None:  # submitted to this server: what it holds is known; only its status changes
            with self._write_lock, _engine(self.sessions).begin() as connection:
                changed = connection.execute(_START_RUN, {"run_id": run_id, "started": utcnow()}).rowcount
            if changed != 1:
                return None
            names, texts, options, files, facts = prepared
            active = _Active(run_id, names, texts, options, files=files, facts=facts)
        else:
            active = self._begin_stored(run_id)
            if active is None:
                return None
        self._changed(run_id)
        return self._refuse_code(active)

    def _begin_stored(self, run_id: int) -> _Active | None:
        """A run queued before a restart, or retried: read back from the database."""
        with self._write_lock, self.sessions() as session, session.begin():
            run = session.get(Run, run_id)
            if run is None or run.status != "queued":
                return None
            run.status, run.started, run.attempts = "running", utcnow(), run.attempts + 1
            active = _Active(run.id, [s.name for s in run.specs], [s.yaml for s in run.specs], dict(run.options or {}))
            for sent in session.scalars(select(SpecFile).where(SpecFile.run_id == run_id).order_by(SpecFile.position, SpecFile.path)):
                active.files.setdefault(sent.position, []).append((sent.path, sent.text))
        return active

    def _refuse_code(self, active: _Active) -> _Active | None:
        """The run active, its specs that name user code refused alone on a server without --allow-code; None when no
        spec is left to check (the run is then handed to the writer)."""
        run_id = active.id
        if not self.allow_code:  # this server runs no user code: such a spec is refused alone, as a local --no-code check does
            from ..batch import error_result

            for index, message in _names_code(active):
                active.pending.remove(index)
                active.results[index] = error_result(active.names[index], message)
                active.returned += 1
        self._active[run_id] = active
        if active.returned == len(active.names):  # nothing left to check: written now
            self._finished_run(active)
            return None
        return active

    def _submit_next(self, active: _Active) -> None:
        from .jobs import check_below_the_api

        index = active.pending.popleft()
        self._in_flight += 1
        name, text = active.names[index], active.texts[index]
        self._submitted_at[active.id, index] = time.monotonic()
        options = {k: v for k, v in active.options.items() if k not in ("label", "timeout")}
        facts = active.facts[index]
        limit = float(active.options.get("timeout") or (facts.timeout if facts is not None else None) or self.timeout)
        extra = {}
        if getattr(self.executor, "reuses_workers", False):  # a warm worker, unless the spec runs user code (service.pool)
            extra["reuse"] = facts is not None and facts.code is None and not active.files.get(index)
        if extra.get("reuse") and len(active.names) == 1 and (environment := self._known_environment()) is not None:
            extra["render"] = {"options": active.options, "worker": environment}  # rendered where it ran (render.py)
        try:
            future = self.executor.submit(check_below_the_api, name, text, options, limit, allow_code=self.allow_code,
                                          nice=getattr(self.executor, "name", "") == "local", files=active.files.get(index),
                                          pickled=self._store is not None and self._store.usable,
                                          gpus=self._gpus(name, text, options), timeout=2 * limit + 10, **extra)
        except Exception as exc:  # the executor itself is gone (a lost Ray cluster)
            self._events.put(("done", active.id, index, exc))
            return
        future.add_done_callback(lambda f, run_id=active.id, index=index: self._events.put(("done", run_id, index, f)))

    def _gpus(self, name: str, text: str, options: dict) -> float:
        """The GPU share a Ray task asks for (the local pool shares this machine's GPUs as they are)."""
        if getattr(self.executor, "name", "") != "ray":
            return 0.0
        from ..executors import gpu_share
        from ..spec import parse_yaml, validate
        from .intake import user_code_key

        try:
            if user_code_key(name, text) is None:
                return gpu_share(validate(parse_yaml(text, name), name, base_dir="."), devices=options.get("devices"),
                                 engines=options.get("engines"))
        except Exception:  # the worker reports what is wrong with the spec
            return 0.0
        return 1.0 if any(str(d).startswith("cuda") for d in options.get("devices") or ["cuda"]) else 0.0

    def _collect(self, run_id: int, index: int, outcome) -> None:
        """One spec back: its result, or its error result, worded as `gradlab check --executor local` words it."""
        from ..batch import error_result, internal_message
        from ..executors import JobTimeout, WorkerCrashed, _crash_text

        self._in_flight -= 1
        active = self._active[run_id]
        active.returned += 1
        started = self._submitted_at.pop((run_id, index), None)
        name = active.names[index]
        try:
            if isinstance(outcome, BaseException):
                raise outcome
            result = outcome.result()
            if started is not None:
                self._spec_seconds.append(time.monotonic() - started)
        except JobTimeout as exc:  # user code that ignored its deadline: that spec's error, like a local check's
            result = error_result(name, f"{name}: {exc} (raise the limit with --timeout or check.timeout)")
        except WorkerCrashed as exc:  # a segfault, os._exit, the OOM killer: that spec's error, the others go on
            result = error_result(name, f"{name}: {_scrub_folder(_crash_text(exc, name))}")
        except Exception as exc:  # the executor itself failed (a lost Ray cluster): gradlab's error, exit 3
            result = error_result(name, internal_message(exc), kind="internal")
        active.results[index] = result
        self._changed(run_id)
        if active.returned == len(active.names):
            self._finished_run(active)

    def _finished_run(self, active: _Active) -> None:
        """Every spec of the run has its result: hand it to the writer (still counted as in progress until written)."""
        self._finishing[active.id] = active
        self._active.pop(active.id, None)
        self._finished.put(active)

    def _write(self) -> None:
        while (active := self._finished.get()) is not None:
            try:
                self._finish(active)
            except Exception as exc:  # a run that cannot be written must not stop the writing of the others
                import traceback

                traceback.print_exception(type(exc), exc, exc.__traceback__)
                self._fail(active, f"the server could not store the run's results ({type(exc).__name__}: "
                                   f"{' '.join(str(exc).split())[:200]}); POST /api/runs/{active.id}/retry runs it again")
            finally:
                self._finishing.pop(active.id, None)
                self._changed(active.id)

    def _fail(self, active: _Active, why: str) -> None:
        try:
            with self._write_lock, self.sessions() as session, session.begin():
                run = session.get(Run, active.id)
                run.status, run.error, run.finished, run.exit_code = "error", why, utcnow(), 3
        except Exception as exc:  # the database itself is gone: the run stays `running`, interrupted at the next start
            import traceback

            traceback.print_exception(type(exc), exc, exc.__traceback__)

    def _finish(self, active: _Active) -> None:
        """The run's document, rows and reports, rendered by the store process when there is one (else here), then
        written here in one transaction: a run is done whole or not at all."""
        written = active.results[0] if len(active.results) == 1 and isinstance(active.results[0], RunWrite) else None
        worker = self._worker_env() if written is None else None
        if written is None and self._store is not None and self._store.usable:
            blobs = [r if isinstance(r, bytes) else pickle.dumps(r, protocol=pickle.HIGHEST_PROTOCOL) for r in active.results]
            written = self._store.render(blobs, active.texts, active.options, worker)  # None: the store process died
        if written is None:
            results = [pickle.loads(r) if isinstance(r, bytes) else r for r in active.results]
            written = render_run(results, active.texts, active.options, worker)
        with self._write_lock:
            apply_run(self.sessions, self.reports, active.id, written)
        self._written += 1
        if self._written % CHECKPOINT_EVERY == 0 or self._finished.empty():  # the log into the database, off the API's path
            try:
                checkpoint(self.sessions)
            except Exception:  # noqa: BLE001 - the next one tries again; the log only grows meanwhile
                pass

    def _known_environment(self) -> dict | None:
        """The workers' environment if a worker has told it already (never waits)."""
        if self._worker_environment is None and self._environment_job is not None and self._environment_job.done():
            return self._worker_env()
        return self._worker_environment

    def _worker_env(self) -> dict:
        """The workers' environment (versions and devices), asked of a worker at start-up."""
        if self._worker_environment is None:
            try:
                self._worker_environment = self._environment_job.result(timeout=300)
            except Exception:  # the worker could not say: this process's view (imports torch here, once)
                from .jobs import worker_environment

                self._worker_environment = worker_environment()
        return self._worker_environment


class StoreProcess:
    """A process of the server's own that renders each finished run's document, rows and reports (render_run): the CPU
    this takes is not the web process's, whose requests then never wait behind it. One run at a time, in order. If the
    process dies, `render` answers None (the caller renders the run itself) and a new one is started; after
    MAX_RESTARTS deaths in a row there is none (`usable` is False) and the caller renders every run itself."""

    MAX_RESTARTS = 3

    def __init__(self, db_url: str, reports_dir):
        self.db_url, self.reports_dir = db_url, str(reports_dir) if reports_dir is not None else None
        self._pool = None
        self._deaths = 0
        self._start()

    @property
    def usable(self) -> bool:
        return self._deaths < self.MAX_RESTARTS

    def _start(self) -> None:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
        self._pool = ProcessPoolExecutor(1, mp_context=mp.get_context(method), initializer=_store_open,
                                         initargs=(self.db_url, self.reports_dir, os.getpid()))
        self._ready = self._pool.submit(_store_ready)  # started now, not at the first finished run

    def wait_ready(self, timeout: float = 300.0) -> None:
        """Until the process is up, its imports done and its report templates compiled (or it failed: `write` says)."""
        try:
            self._ready.result(timeout)
        except Exception:  # noqa: BLE001 - a store process that cannot start shows at the first write
            pass

    def render(self, blobs: list[bytes], texts: list[str], options: dict, worker: dict) -> RunWrite | None:
        """The run rendered (render_run) there; None when the process died (the caller renders it)."""
        from concurrent.futures.process import BrokenProcessPool

        try:
            written = self._pool.submit(_store_render, blobs, texts, options, worker).result()
            self._deaths = 0
            return written
        except BrokenProcessPool as exc:
            import sys

            self._deaths += 1
            print(f"gradlab serve: the store process died ({exc}); this run is rendered by the web process", file=sys.stderr)
            self._pool.shutdown(wait=False, cancel_futures=True)
            if self.usable:
                self._start()
            return None

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=False)


STORE_NAME = b"gradlab-store"  # the store process's name (/proc/PID/comm)


def _watch_server(pid: int) -> None:
    """The store process ends when the web process is gone (a kill -9 of it alone leaves nobody to feed it; its queue's
    pipe never reads EOF, both ends being in this process)."""
    import os

    while True:
        time.sleep(1.0)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            os._exit(0)
        except OSError:  # not ours to signal: it exists
            pass


def _store_open(db_url: str, reports_dir: str | None, server_pid: int | None = None) -> None:
    """The store process's imports, done once (it runs no check and no user code, and writes nothing: the web process
    writes what it renders). It renders at the workers' lower CPU priority: the web process's requests come first."""
    import os

    from .jobs import WORKER_NICENESS
    from .pool import name_process

    name_process(STORE_NAME)
    if server_pid is not None:
        threading.Thread(target=_watch_server, args=(server_pid,), name="gradlab-store-watch", daemon=True).start()

    try:
        os.setpriority(os.PRIO_PROCESS, 0, WORKER_NICENESS)
    except (AttributeError, OSError):
        pass

    from importlib import import_module

    from ..report import FORMATS

    for module in FORMATS.values():  # imported once here, not at the first run
        import_module(f"gradlab.report.{module}")
    from ..report.html import _env

    _env().get_template("report.html.j2")  # jinja2 imported and the template compiled now: ~1 s, not the first run's


def _store_ready() -> bool:
    return True


def _store_render(blobs: list[bytes], texts: list[str], options: dict, worker: dict) -> RunWrite:
    return render_run([pickle.loads(b) for b in blobs], texts, options, worker)


def apply_run(sessions, reports: ReportStore, run_id: int, written: RunWrite) -> None:
    """A rendered run written in one transaction of a few Core statements: a run is done whole or not at all."""
    with _engine(sessions).begin() as session:  # a plain connection: no ORM bulk-insert layer
        if written.specs:
            session.execute(insert(SpecResultRow), [{**row, "run_id": run_id} for row in written.specs])
        if written.comparisons:
            session.execute(insert(ComparisonRow), [{**row, "run_id": run_id} for row in written.comparisons])
        reports.save(session, run_id, written.reports)
        session.execute(update(Run).where(Run.id == run_id).values(
            status="done", finished=utcnow(), result=written.document, passed=written.passed, exit_code=written.exit_code,
            stats_output=written.stats_output))


def _engine(sessions):
    """The engine behind a sessionmaker: Core statements on its connections skip the ORM's layers."""
    return sessions.kw["bind"]


def write_run(sessions, reports: ReportStore, run_id: int, results: list, texts: list[str], options: dict, worker: dict) -> None:
    """A finished run rendered (render_run) and written in one transaction (apply_run)."""
    apply_run(sessions, reports, run_id, render_run(results, texts, options, worker))


def _names_code(active: _Active) -> list[tuple[int, str]]:
    """(index, message) of each spec that names user code: refused alone on a server without --allow-code."""
    from .intake import code_refused

    refused = []
    for index, (name, facts) in enumerate(zip(active.names, active.facts)):
        if facts is not None and facts.code:  # None: not a spec, a worker reports it
            refused.append((index, code_refused(name, facts.code)))
    return refused


def _scrub_folder(text: str) -> str:
    """A dead worker's last words without the private temporary folder its spec was written to."""
    import re

    return re.sub(r"\S*gradlab-spec-[^/\s]*/", "", text)


