"""Where a spec runs when it does not run in this process: a bounded pool of local worker processes, or Ray.

Both executors take any picklable module-level function and hand back a `concurrent.futures.Future`;
`check_spec_path` / `check_spec_text` are the jobs gradlab sends them (the CLI's `--executor`, the
service's workers). A job that kills its process (a segfault, `os._exit`, the OOM killer) fails its own
future with `WorkerCrashed` and nothing else; a job past its `timeout` is killed (`JobTimeout`).

    with make_executor("local", workers=4) as ex:
        futures = [ex.submit(check_spec_path, p, {"mode": "full"}) for p in paths]
        results = [f.result() for f in futures]
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import pickle
import sys
import threading
from dataclasses import dataclass, replace
from pathlib import Path

from .errors import GradlabError

__all__ = [
    "Executor", "LocalExecutor", "RayExecutor", "WorkerCrashed", "JobTimeout", "make_executor",
    "check_spec_text", "check_spec_path", "gpu_share", "run_on", "check_specs_on", "executor_options",
]

KINDS = ("local", "ray")
CHECK_OPTIONS = ("devices", "engines", "method", "mode", "stats")


class WorkerCrashed(Exception):
    """The process running a job died before it answered (the message says how: a signal or an exit code)."""


class JobTimeout(TimeoutError):
    """A job ran past its executor timeout; its process was killed."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        super().__init__(f"timed out after {seconds:g} s; the worker was killed")


# --- the jobs: one spec each, exactly as `gradlab check` checks one spec ----------------------------------


def check_spec_path(path: str, options: dict | None = None, timeout: float | None = None, *,
                    shown: str | None = None, allow_code: bool | None = None):
    """Load and check one spec file like `gradlab check PATH` (memory guard, deadline): its SpecResult.

    A bad spec or failing user code is an error SpecResult, never an exception. `options`: check's keyword
    options (devices, engines, method, mode) and `stats` (then `result.stats` holds the StatsResult, or an
    error result when stats cannot measure the spec). `shown`: the path to name in the result and its
    messages (default `path`). `allow_code`: whether `impl:` user code may run (default: this process's
    setting, i.e. --no-code / GRADLAB_NO_CODE).
    """
    from . import batch
    from .usercode import code_allowed, forbid_code

    options = check_options(options)
    shown = shown or path
    stats = options.pop("stats", False)
    previous = forbid_code(not (code_allowed() if allow_code is None else allow_code))
    try:
        def work():
            if Path(path).is_dir():
                return batch.error_result(path, f"{path}: (file): is a directory; name one spec file")
            loaded, invalid = batch.load_all([path], timeout=timeout)
            if invalid:
                return invalid[0]
            result = batch.run_loaded(loaded, progress=False, timeout=timeout, **options)[0]
            if stats:
                _, spec = loaded[0]
                result.stats = batch.guarded(path, lambda: batch.stats_within(spec, path, timeout))
            return result

        result = batch.guarded(path, work)
    finally:
        forbid_code(previous)
    return _renamed(result, path, shown)


def check_spec_text(name: str, text: str, options: dict | None = None, timeout: float | None = None, *,
                    allow_code: bool | None = None):
    """Check one spec sent as YAML text (as an HTTP client sends it), named `name` in the result.

    The text is written to a private temporary folder under the name's last part (the name's folders
    are dropped: nothing is written where it points); a name that is not a plain file name is an error
    result. Otherwise exactly `check_spec_path`.
    """
    from . import batch

    base = plain_name(name)
    if base is None:
        shown = _printable(name)
        return batch.error_result(shown, f"{shown}: (name): expected a spec file name such as net.yaml "
                                          "(letters, digits, '.', '_', '-', '+'; at most 200 characters)")
    if not isinstance(text, str):
        return batch.error_result(name, f"{name}: (file): expected the spec's YAML text, got {type(text).__name__}")
    import tempfile

    with tempfile.TemporaryDirectory(prefix="gradlab-spec-") as folder:
        path = os.path.join(folder, base)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return check_spec_path(path, options, timeout, shown=name, allow_code=allow_code)


def check_options(options: dict | None) -> dict:
    """check's keyword options as a fresh dict; an unknown key or a bad value is a GradlabError."""
    from .batch import check_devices, parse_engines

    options = dict(options or {})
    unknown = sorted(set(options) - set(CHECK_OPTIONS))
    if unknown:
        raise GradlabError(f"options: unknown key(s) {', '.join(map(repr, unknown))}; expected some of {', '.join(CHECK_OPTIONS)}")
    if isinstance(options.get("engines"), str):
        options["engines"] = parse_engines(options["engines"])
    elif options.get("engines"):
        options["engines"] = parse_engines(",".join(map(str, options["engines"])))
    if options.get("devices"):
        options["devices"] = [options["devices"]] if isinstance(options["devices"], str) else list(options["devices"])
        check_devices(options["devices"])
    for key, allowed in (("method", ("auto", "central", "richardson", "complex_step")), ("mode", ("auto", "full", "fast"))):
        if options.get(key) is not None and options[key] not in allowed:
            raise GradlabError(f"options.{key}: expected one of {', '.join(allowed)}, got {str(options[key])[:100]!r}")
    options["stats"] = bool(options.get("stats"))
    return options


def plain_name(name) -> str | None:
    """The file-name part of `name` when it is a plain, printable file name; else None."""
    import re

    if not isinstance(name, str):
        return None
    base = re.split(r"[\\/]", name)[-1]
    ok = re.fullmatch(r"[A-Za-z0-9_+\-][A-Za-z0-9_.+\-]{0,199}", base) and len(name) <= 1000 and name.isprintable()
    return base if ok and base not in (".", "..") else None


def _printable(name) -> str:
    text = name if isinstance(name, str) else repr(name)
    return text if text.isprintable() and len(text) <= 200 else repr(text[:200])


def _renamed(result, actual: str, shown: str):
    """The result of checking `actual`, naming `shown` instead (the temporary or absolute path is never shown)."""
    if actual == shown:
        return result

    def fix(text):
        return text.replace(actual, shown) if isinstance(text, str) else text

    result.path = shown
    result.error = fix(result.error)
    result.notes = [fix(n) for n in result.notes]
    result.comparisons = [replace(c, spec=shown) if c.spec == actual else c for c in result.comparisons]
    stats = getattr(result, "stats", None)
    if stats is not None:  # a StatsResult (frozen), or an error result when stats could not measure the spec
        result.stats = _renamed(stats, actual, shown) if hasattr(stats, "comparisons") else replace(stats, path=shown)
    return result


def gpu_share(spec, *, devices=None, engines=None) -> float:
    """The fraction of one GPU a spec's check asks for: 0 unless autograd runs on cuda; else its memory
    estimate over GPU_BYTES, between 0.1 and 1 (so several small cuda checks share one GPU)."""
    from .memory import estimate_bytes

    devices = devices or spec.check.devices
    engines = engines or spec.check.engines
    if "autograd" not in engines or not any(str(d).startswith("cuda") for d in devices):
        return 0.0
    need = estimate_bytes(spec, devices=devices, engines=engines)
    return min(1.0, max(0.1, round(need / GPU_BYTES + 0.05, 1)))


GPU_BYTES = 16 * 2**30  # what a share of 1.0 stands for: a modest GPU's memory


# --- the executors ----------------------------------------------------------------------------------------


class Executor:
    """Runs picklable module-level functions somewhere else; every job gets its own Future."""

    name = ""
    shares_files = True  # the workers see this machine's files (a spec path can be sent instead of its text)

    def submit(self, fn, *args, gpus: float = 0.0, timeout: float | None = None, **kwargs) -> cf.Future:
        raise NotImplementedError

    def shutdown(self, wait: bool = True) -> None:
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.shutdown(wait=exc_type is None)  # on an error or Ctrl-C: kill what runs, drop what waits


# What a job imports, imported once in the forkserver (what a first check in a fresh process would import lazily).
PRELOAD = ["gradlab.executors", "gradlab.batch", "gradlab.runner", "gradlab.stats", "gradlab.cli", "gradlab.commands.fuzz",
           "gradlab.report.progress", "gradlab.userops.loading", "numpy.random", "torch"]


class LocalExecutor(Executor):
    """At most `workers` jobs at once, each in a process of its own, forked from a server that has gradlab and
    torch imported already (multiprocessing's forkserver): a job starts in a few tens of milliseconds, and a
    job that dies takes nothing else with it (unlike ProcessPoolExecutor, whose pool breaks). `gpus` is not
    enforced: every process sees this machine's GPUs."""

    name = "local"

    def __init__(self, workers: int | None = None):
        import multiprocessing as mp

        self.workers = workers or os.cpu_count() or 1
        if "forkserver" in mp.get_all_start_methods():
            self._ctx = mp.get_context("forkserver")
            self._ctx.set_forkserver_preload(PRELOAD)
            from multiprocessing import forkserver

            forkserver.ensure_running()  # start (and import torch) now, while the caller validates its specs
        else:  # pragma: no cover - Windows
            self._ctx = mp.get_context("spawn")
        self._threads = cf.ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="gradlab-job")
        self._live: set = set()
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, fn, *args, gpus: float = 0.0, timeout: float | None = None, **kwargs) -> cf.Future:
        state = _ProcessState.here(threads=max(1, (os.cpu_count() or 1) // self.workers))
        return self._threads.submit(self._run, fn, args, kwargs, timeout, state)

    def _run(self, fn, args, kwargs, timeout, state):
        import tempfile

        receive, send = self._ctx.Pipe(duplex=False)
        handle, stderr = tempfile.mkstemp(prefix="gradlab-job-", suffix=".stderr")
        os.close(handle)
        crumb = _crumb_file()
        proc = self._ctx.Process(target=_child, args=(send, fn, args, kwargs, state, stderr, crumb), daemon=True, name="gradlab-job")
        last_words = False
        try:
            with self._lock:
                if self._closed:
                    raise cf.CancelledError("the executor was shut down")
                proc.start()
                self._live.add(proc)
            send.close()  # the child holds the only write end: its death is an EOF here
            if not receive.poll(timeout):
                proc.kill()
                raise JobTimeout(timeout)
            try:
                payload = receive.recv_bytes()
            except EOFError:
                proc.join()
                last_words = True
                raise WorkerCrashed(_death(proc.exitcode, _said(stderr, last=True), _running(crumb))) from None
            ok, value = pickle.loads(payload)
            if ok:
                return value
            raise value
        finally:
            receive.close()
            if proc.pid is not None:
                if proc.is_alive():
                    proc.join(1.0)  # a child that answered exits on its own
                if proc.is_alive():
                    proc.kill()
                proc.join()
            with self._lock:
                self._live.discard(proc)
            sys.stderr.write(_said(stderr, last=False, drop_last=last_words))  # the job's warnings, --debug tracebacks
            os.unlink(stderr)
            os.unlink(crumb)

    def shutdown(self, wait: bool = True) -> None:
        with self._lock:
            self._closed = not wait or self._closed
            if not wait:
                for proc in list(self._live):
                    proc.kill()
        self._threads.shutdown(wait=wait, cancel_futures=not wait)
        self._closed = True


@dataclass(frozen=True)
class _ProcessState:
    """What a forked child would have inherited from the submitting process, but a forkserver child does not."""

    cwd: str
    environ: dict
    no_code: bool
    debug: bool
    threads: int

    @classmethod
    def here(cls, threads: int, *, local: bool = True) -> "_ProcessState":
        """This process's state; not `local` (a Ray task): only gradlab's switches, never the environment."""
        from .batch import _debug
        from .usercode import _code

        where = (os.getcwd(), dict(os.environ)) if local else ("", {})
        return cls(*where, _code["forbidden"], _debug["on"], threads)

    def apply(self, *, local: bool = True) -> None:
        from .batch import _debug
        from .usercode import forbid_code

        if local:
            os.chdir(self.cwd)
            os.environ.clear()
            os.environ.update(self.environ)
            if "torch" in sys.modules:  # two jobs on two cores: one thread each, not two fighting over both
                sys.modules["torch"].set_num_threads(self.threads)
        forbid_code(self.no_code)
        _debug["on"] = self.debug


def _child(send, fn, args, kwargs, state: _ProcessState, stderr: str, crumb: str | None = None) -> None:
    """A job's process: run fn and send back (True, value) or (False, the exception), pickled. Its stderr
    goes to a file the parent passes on (and whose last line says why, when the process dies); what user
    code it is running is kept in the `crumb` file (gradlab.supervise.breadcrumb), to name it if it dies."""
    handle = os.open(stderr, os.O_WRONLY | os.O_APPEND)
    os.dup2(handle, 2)
    os.close(handle)
    if crumb is not None:
        from .supervise import attach_crumb

        attach_crumb(crumb)
    try:
        state.apply()
        outcome = (True, fn(*args, **kwargs))
    except BaseException as exc:  # noqa: BLE001 - the parent raises it from the job's future
        outcome = (False, exc)
    try:
        payload = pickle.dumps(outcome)
        pickle.loads(payload)  # an exception whose class cannot be rebuilt would break the parent's recv
    except Exception as exc:
        what = "result" if outcome[0] else f"exception ({type(outcome[1]).__name__}: {outcome[1]})"
        payload = pickle.dumps((False, RuntimeError(f"the job's {what} cannot be sent back: {exc}")))
    send.send_bytes(payload)
    send.close()


def _said(stderr: str, *, last: bool, drop_last: bool = False) -> str:
    """What a job wrote on stderr: its last non-empty line (`last`), or all of it (without that line: `drop_last`)."""
    try:
        with open(stderr, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return ""
    while lines and not lines[-1].strip():
        lines.pop()
    if last:
        return lines[-1].removeprefix("Error: ")[:500] if lines else ""
    lines = lines[:-1] if drop_last else lines
    return "".join(line + "\n" for line in lines)


def _crumb_file() -> str:
    import tempfile

    from .supervise import CRUMB_BYTES

    handle, path = tempfile.mkstemp(prefix="gradlab-job-", suffix=".running")
    os.write(handle, bytes(CRUMB_BYTES))
    os.close(handle)
    return path


def _running(crumb: str) -> str:
    from .supervise import read_crumb

    try:
        with open(crumb, "rb") as f:
            return read_crumb(f.read())
    except OSError:
        return ""


def _death(exitcode: int | None, said: str = "", running: str = "") -> str:
    import signal

    said = f": {said}" if said else f", while running {running}" if running else ""

    if exitcode is not None and exitcode < 0:
        try:
            sig = signal.Signals(-exitcode).name
        except ValueError:
            sig = f"signal {-exitcode}"
        why = {"SIGKILL": " (out of memory? the OOM killer sends SIGKILL)", "SIGSEGV": " (a segmentation fault)"}.get(sig, "")
        return f"the worker process was killed by {sig}{why}{said}"
    return f"the worker process exited with code {exitcode} before it answered{said}"


class RayExecutor(Executor):
    """Each job a Ray task: `ray.init(address=...)`, or a local Ray instance for this process when
    address is None. A job asking for `gpus` gets `num_gpus=gpus` (a fraction shares one GPU)."""

    name = "ray"

    def __init__(self, address: str | None = None, *, workers: int | None = None):
        ray = _import_ray()
        self._ray = ray
        self._owns = not ray.is_initialized()
        if self._owns:
            import logging

            local = dict(num_cpus=workers, object_store_memory=RAY_OBJECT_STORE_BYTES) if address in (None, "local") else {}
            try:  # "local": a new instance, even where a cluster runs on this machine (None would join that one)
                ray.init(address=address or "local", include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR,
                         configure_logging=True, **local)
            except Exception as exc:  # ConnectionError, a ray:// address without ray[client], a local start that failed
                where = f"--address {address}: cannot join the Ray cluster there" if address else "--executor ray: cannot start a local Ray instance"
                raise GradlabError(f"{where} ({type(exc).__name__}: {' '.join(str(exc).split())[:300]})") from None
        self.shares_files = address is None or address in ("local", "auto")
        self._task = ray.remote(_ray_job)
        resources = ray.cluster_resources()
        self._has_gpus = bool(resources.get("GPU"))
        self.workers = workers or int(resources.get("CPU", 1))
        self._timers: set = set()

    def submit(self, fn, *args, gpus: float = 0.0, timeout: float | None = None, **kwargs) -> cf.Future:
        ray = self._ray
        state = _ProcessState.here(threads=1, local=False)
        if gpus and not self._has_gpus:
            gpus = 0  # a cluster without GPUs would hold the task forever; its cuda comparisons are skipped, as locally
        ref = self._task.options(num_gpus=gpus or 0, num_cpus=1, max_retries=0).remote(fn, args, kwargs, state)
        out: cf.Future = cf.Future()
        out.set_running_or_notify_cancel()
        timed_out = threading.Event()
        timer = None
        if timeout is not None:
            def expire():
                timed_out.set()
                ray.cancel(ref, force=True)

            timer = threading.Timer(timeout, expire)
            timer.daemon = True
            self._timers.add(timer)
            timer.start()

        def settle(done: cf.Future) -> None:
            if timer is not None:
                timer.cancel()
                self._timers.discard(timer)
            try:
                out.set_result(done.result())
            except BaseException as exc:  # noqa: BLE001
                out.set_exception(JobTimeout(timeout) if timed_out.is_set() else _from_ray(ray, exc))

        ref.future().add_done_callback(settle)
        return out

    def shutdown(self, wait: bool = True) -> None:
        for timer in list(self._timers):
            timer.cancel()
        if self._owns and self._ray.is_initialized():
            self._ray.shutdown()


RAY_OBJECT_STORE_BYTES = 128 * 2**20  # results are small; Ray's minimum is 75 MiB


def _ray_job(fn, args, kwargs, state: _ProcessState):
    """A Ray task: the submitting process's gradlab switches (--no-code, --debug), then the job."""
    state.apply(local=False)
    return fn(*args, **kwargs)


def _from_ray(ray, exc: BaseException) -> BaseException:
    """Ray's errors as the executor's: a dead worker is WorkerCrashed, a job's own exception is itself."""
    errors = ray.exceptions
    if isinstance(exc, errors.RayTaskError):
        cause = getattr(exc, "cause", None)
        return cause if isinstance(cause, BaseException) else exc
    if isinstance(exc, (errors.WorkerCrashedError, errors.NodeDiedError, errors.ObjectLostError,
                        getattr(errors, "OutOfMemoryError", errors.WorkerCrashedError))):
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return WorkerCrashed(f"the Ray worker died before it answered ({type(exc).__name__}: {first[:300]})")
    return exc


def _import_ray():
    try:
        import ray
    except ImportError:
        raise GradlabError("--executor ray needs Ray, an optional extra: pip install 'gradlab[ray]'") from None
    return ray


def make_executor(kind: str = "local", *, workers: int | None = None, address: str | None = None) -> Executor:
    """`local` (a bounded pool of worker processes, `workers` default: the cores) or `ray` (`address`
    default: a local Ray instance for this process)."""
    if workers is not None and workers < 1:
        raise GradlabError(f"--workers: expected a number >= 1, got {workers}")
    if kind == "local":
        if address is not None:
            raise GradlabError("--address names a Ray cluster; use it with --executor ray")
        return LocalExecutor(workers)
    if kind == "ray":
        return RayExecutor(address, workers=workers)
    raise GradlabError(f"--executor: expected one of {', '.join(KINDS)}, got {str(kind)[:100]!r}")


# --- the command line: `--executor local|ray [--workers N] [--address ADDR]` ------------------------------


@dataclass(frozen=True)
class ExecutorChoice:
    """What the command line asked for; `make()` starts it."""

    kind: str
    workers: int | None = None
    address: str | None = None

    def make(self) -> Executor:
        return make_executor(self.kind, workers=self.workers, address=self.address)


def executor_options(f):
    """--executor, --workers, --address on a command; it receives one `executor`: an ExecutorChoice or None."""
    import functools

    import click

    @functools.wraps(f)
    def wrapper(*args, executor=None, workers=None, address=None, **kwargs):
        if executor is None and (workers is not None or address is not None):
            raise GradlabError(f"{'--workers' if workers is not None else '--address'}: needs --executor local or --executor ray")
        if executor == "local" and address is not None:
            raise GradlabError("--address names a Ray cluster; use it with --executor ray")
        return f(*args, executor=ExecutorChoice(executor, workers, address) if executor else None, **kwargs)

    wrapper = click.option("--address", metavar="ADDR",
                           help="With --executor ray: the cluster to join, e.g. ray://head:10001 or auto (default: a local Ray instance).")(wrapper)
    wrapper = click.option("--workers", type=click.IntRange(min=1), metavar="N",
                           help="With --executor: at most N jobs at once (default: the cores; for ray, the local instance's CPUs).")(wrapper)
    wrapper = click.option("--executor", type=click.Choice(KINDS),
                           help="Run each job in its own worker process (local) or as a Ray task (ray; pip install 'gradlab[ray]').")(wrapper)
    return wrapper


def run_on(executor: Executor, loaded, *, progress: bool = True, timeout: float | None = None, **options) -> list:
    """`batch.run_loaded` on an executor: every validated (path, spec) pair is a job; the results come back
    in the order given, a worker that crashed or was killed becomes that spec's error result. One line per
    finished spec on stderr with `progress`."""
    import click

    from .batch import error_result, internal_message

    jobs = [(path, _submit_check(executor, path, spec, timeout, options)) for path, spec in loaded]
    if progress and jobs:
        where = {future: path for path, future in jobs}
        for n, future in enumerate(cf.as_completed(where), 1):
            click.echo(f"[{n}/{len(jobs)}] {where[future]}: {_verdict(future)}", err=True)
    results = []
    for path, future in jobs:
        try:
            results.append(future.result())
        except JobTimeout as exc:
            results.append(error_result(path, f"{path}: {exc} (raise the limit with --timeout or check.timeout)"))
        except WorkerCrashed as exc:
            results.append(error_result(path, f"{path}: {_crash_text(exc, path)}"))
        except Exception as exc:
            results.append(error_result(path, internal_message(exc), kind="internal"))
    return results


def _submit_check(executor: Executor, path: str, spec, timeout: float | None, options: dict) -> cf.Future:
    import re

    limit = timeout or spec.check.timeout
    hard = 2 * limit + 10 if limit else None  # a backstop: loading and checking each have the deadline, plus its grace
    share = gpu_share(spec, devices=options.get("devices"), engines=options.get("engines"))
    if executor.shares_files:
        return executor.submit(check_spec_path, os.path.abspath(path), options, timeout, shown=path, gpus=share, timeout=hard)
    from .spec import read_spec_text  # a cluster elsewhere: send the text (user code named by impl: is not sent)

    name = re.sub(r"[^\w.+\-]", "_", Path(path).name).lstrip(".") or "spec.yaml"
    future = executor.submit(check_spec_text, name, read_spec_text(path), options, timeout, gpus=share, timeout=hard)
    shown: cf.Future = cf.Future()

    def settle(done: cf.Future) -> None:
        try:
            shown.set_result(_renamed(done.result(), name, path))
        except BaseException as exc:  # noqa: BLE001
            shown.set_exception(exc)

    future.add_done_callback(settle)
    return shown


def _crash_text(exc: WorkerCrashed, path: str) -> str:
    """A dead worker's last words about one spec, naming it once, as given. The watchdog's own tail (that
    the specs after this one were not checked) speaks of an in-process run: here only this spec stopped."""
    text = str(exc).replace(os.path.abspath(path), path).replace(f": {path}: ", ": ")
    return text.split("; gradlab stopped here")[0]


def _verdict(future: cf.Future) -> str:
    try:
        result = future.result()
    except BaseException:  # noqa: BLE001 - the Error line after the table says why
        return "ERROR"
    if result.error is not None:
        return "ERROR"
    return f"{'PASS' if result.passed else 'FAIL'} ({result.seconds:.1f} s)"


def check_specs_on(choice: ExecutorChoice, paths, *, progress: bool = True, timeout: float | None = None, **options) -> tuple[list, list]:
    """`batch.check_specs` with every valid spec checked on the executor `choice` names."""
    from .batch import in_order, load_all

    with choice.make() as executor:  # started first: a local pool's server imports torch while the specs load here
        loaded, invalid = load_all(paths, timeout=timeout, isolate=True)
        ran = run_on(executor, loaded, progress=progress, timeout=timeout, **options)
    return loaded, in_order(paths, invalid, ran)
