"""The service's local workers: long-lived, warm processes, each checking one spec at a time.

`gradlab.executors.LocalExecutor` forks a fresh process for every job: right for `gradlab check --executor
local`, but for a server checking small specs all day the fork, pipe and reaping cost ~28 ms a job and every job
starts cold (a shipped spec took 49 ms in a fresh worker forked from a warm forkserver, 35 ms in a warm process).
`WarmPool` keeps one worker process per slot (forked once from the same warm forkserver) and sends it job after
job over a pipe; what a job is guaranteed does not change:

- a worker that dies while checking a spec (segfault, os._exit, the OOM killer, kill -9) fails that job alone with
  WorkerCrashed, worded as LocalExecutor words it, and the slot gets a new worker for the next job; a worker that
  died while idle (before it took the job: it writes each job's number into a file as it takes it) is replaced and
  the job goes to the new one, so that a job is never blamed for a death it did not cause;
- a job past its deadline kills its worker (JobTimeout), the slot gets a new one;
- user code runs only in a process of its own: a job submitted with `reuse=False` (the service sends every spec that
  names user code so) goes to a fresh process exactly as LocalExecutor runs it, so no user's code ever runs in a
  process that checks another spec afterwards. Specs without user code are checked by gradlab's own code only, as
  `gradlab check a.yaml b.yaml` checks several specs in one process.

A worker retires itself (and the slot starts another) after MAX_JOBS jobs, once its memory passes MAX_RSS bytes, or
after a job raised a BaseException that is not an Exception. What a job writes on stderr is passed on to the
server's stderr after the job, as LocalExecutor does.
"""

from __future__ import annotations

import os
import pickle
import sys

from ..executors import JobTimeout, LocalExecutor, WorkerCrashed, _crumb_file, _death, _ProcessState, _running, _said

MAX_JOBS = 2000
MAX_RSS = 2 * 2**30
WORKER_NAME = b"gradlab-worker"  # the process name (/proc/PID/comm) of a warm worker


class WarmPool(LocalExecutor):
    """LocalExecutor whose `reuse=True` jobs run in long-lived warm worker processes, one per slot (thread)."""

    reuses_workers = True

    def __init__(self, workers: int | None = None):
        super().__init__(workers)
        self._idle: list[_Worker] = []  # warm workers no job holds now (at most one per slot)
        self._warm: set[_Worker] = set()

    def submit(self, fn, *args, gpus: float = 0.0, timeout: float | None = None, reuse: bool = False, **kwargs):
        state = _ProcessState.here(threads=max(1, (os.cpu_count() or 1) // self.workers))
        run = self._run_warm if reuse else self._run
        return self._threads.submit(run, fn, args, kwargs, timeout, state)

    def start_workers(self, timeout: float = 300.0) -> None:
        """Start a warm worker for every slot now and wait until each has answered a first job (the forkserver's
        preload, torch's import, included), so that the first specs do not pay for it while clients wait."""
        from .jobs import ready

        state = _ProcessState.here(threads=max(1, (os.cpu_count() or 1) // self.workers))
        started = []
        for _ in range(self.workers - len(self._warm)):
            worker = _Worker(self._ctx)
            with self._lock:
                self._warm.add(worker)
            started.append(worker)
        for worker in started:
            try:
                up = worker.run(ready, (), {}, timeout, state) == (True, True) and not worker.retired
            except Exception:  # noqa: BLE001 - the slot starts another worker at its next job
                up = False
            if up:
                with self._lock:
                    self._idle.append(worker)
            else:
                self._drop(worker)

    def _run_warm(self, fn, args, kwargs, timeout, state):
        while True:
            worker = self._worker()
            try:
                outcome = worker.run(fn, args, kwargs, timeout, state)
            except BaseException:
                self._drop(worker)
                raise
            if outcome is not _NOT_TAKEN:
                break
            self._drop(worker)  # it died while idle, before it took the job: the job goes to a new worker
        if worker.retired:
            self._drop(worker)
        else:
            with self._lock:
                self._idle.append(worker)
        ok, value = outcome
        if ok:
            return value
        raise value

    def _worker(self) -> "_Worker":
        with self._lock:
            if self._closed:
                import concurrent.futures as cf

                raise cf.CancelledError("the executor was shut down")
            if self._idle:
                return self._idle.pop()
        worker = _Worker(self._ctx)
        with self._lock:
            self._warm.add(worker)
        return worker

    def _drop(self, worker: "_Worker") -> None:
        worker.stop()
        with self._lock:
            self._warm.discard(worker)

    def shutdown(self, wait: bool = True) -> None:
        with self._lock:
            warm = list(self._warm)
        for worker in warm:
            worker.stop(kill=not wait)
        super().shutdown(wait=wait)
        for worker in warm:
            worker.stop(kill=True)


_NOT_TAKEN = object()


class _Worker:
    """One warm worker process and the files it shares with its slot: its stderr, its crumb, the number of the job
    it took last."""

    def __init__(self, ctx):
        import tempfile

        handle, self.stderr = tempfile.mkstemp(prefix="gradlab-worker-", suffix=".stderr")
        os.close(handle)
        self.crumb = _crumb_file()
        handle, self.taken_file = tempfile.mkstemp(prefix="gradlab-worker-", suffix=".job")
        os.write(handle, bytes(8))
        os.close(handle)
        self.jobs, receive_jobs = ctx.Pipe(duplex=False)[::-1]  # (write end here, read end there)
        results, send_results = ctx.Pipe(duplex=False)
        self.results = results
        self.proc = ctx.Process(target=_serve, args=(receive_jobs, send_results, self.stderr, self.crumb, self.taken_file),
                                daemon=True, name="gradlab-worker")
        self.proc.start()
        receive_jobs.close()
        send_results.close()  # the worker holds the only write end: its death is an EOF here
        self.sent = 0
        self.retired = False
        self._stopped = False

    def run(self, fn, args, kwargs, timeout, state):
        """(ok, value) of one job; _NOT_TAKEN when the worker was dead before it took it."""
        self.sent += 1
        try:
            self.jobs.send_bytes(pickle.dumps((self.sent, fn, args, kwargs, state), protocol=pickle.HIGHEST_PROTOCOL))
        except OSError:  # a broken pipe: the worker is gone
            self.retired = True
            return _NOT_TAKEN
        if not self.results.poll(timeout):
            self.retired = True
            self.proc.kill()
            self.proc.join()
            self._pass_on_stderr()
            raise JobTimeout(timeout)
        try:
            payload = self.results.recv_bytes()
        except (EOFError, OSError):
            self.retired = True
            self.proc.join()
            if self._taken() != self.sent:
                return _NOT_TAKEN
            said = _said(self.stderr, last=True)
            self._pass_on_stderr(drop_last=True)
            raise WorkerCrashed(_death(self.proc.exitcode, said, _running(self.crumb))) from None
        ok, value, retire = pickle.loads(payload)
        self._pass_on_stderr()
        self.retired = retire
        return ok, value

    def _taken(self) -> int:
        try:
            with open(self.taken_file, "rb") as f:
                return int.from_bytes(f.read(8), "little")
        except OSError:
            return -1

    def _pass_on_stderr(self, drop_last: bool = False) -> None:
        """The job's warnings (and --debug tracebacks) to the server's stderr; the file starts empty for the next job
        (the worker appends: O_APPEND writes land at the new end)."""
        if os.path.getsize(self.stderr) == 0:
            return
        sys.stderr.write(_said(self.stderr, last=False, drop_last=drop_last))
        os.truncate(self.stderr, 0)

    def stop(self, kill: bool = False) -> None:
        if self._stopped:
            return
        self.retired = True
        if kill:
            self.proc.kill()
        try:
            self.jobs.close()  # an idle worker reads EOF and exits
        except OSError:
            pass
        if not kill:
            self.proc.join(5.0)
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join()
        self.results.close()
        self._stopped = True
        for path in (self.stderr, self.crumb, self.taken_file):
            try:
                os.unlink(path)
            except OSError:
                pass


def name_process(name: bytes) -> None:
    """The process's name as ps and /proc/PID/comm show it (Linux; elsewhere nothing)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        libc.prctl(15, ctypes.c_char_p(name[:15]), 0, 0, 0)  # PR_SET_NAME
    except Exception:  # noqa: BLE001 - a name is a convenience
        pass


def _rss() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _serve(jobs, results, stderr: str, crumb: str, taken_file: str) -> None:
    """A warm worker: job after job from `jobs`, each answered on `results` as (ok, value, retire), pickled."""
    from ..supervise import attach_crumb, breadcrumb

    handle = os.open(stderr, os.O_WRONLY | os.O_APPEND)
    os.dup2(handle, 2)
    os.close(handle)
    attach_crumb(crumb)
    name_process(WORKER_NAME)
    taken = os.open(taken_file, os.O_WRONLY)
    served = 0
    while True:
        try:
            payload = jobs.recv_bytes()
        except (EOFError, OSError):
            return
        number, fn, args, kwargs, state = pickle.loads(payload)
        os.pwrite(taken, number.to_bytes(8, "little"), 0)
        breadcrumb(None)
        retire = False
        try:
            state.apply()
            outcome = (True, fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - the slot raises it from the job's future
            outcome = (False, exc)
            retire = not isinstance(exc, Exception)
        served += 1
        retire = retire or served >= MAX_JOBS or _rss() > MAX_RSS
        try:
            answer = pickle.dumps((*outcome, retire), protocol=pickle.HIGHEST_PROTOCOL)
            pickle.loads(answer)  # an exception whose class cannot be rebuilt would break the slot's recv
        except Exception as exc:  # noqa: BLE001
            what = "result" if outcome[0] else f"exception ({type(outcome[1]).__name__}: {outcome[1]})"
            answer = pickle.dumps((False, RuntimeError(f"the job's {what} cannot be sent back: {exc}"), retire))
        try:
            sys.stderr.flush()
        except Exception:  # noqa: BLE001
            pass
        results.send_bytes(answer)
        if retire:
            return
