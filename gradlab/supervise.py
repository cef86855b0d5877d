"""User code never decides gradlab's verdict: the verdict comes from a process it cannot end or silence.

`gradlab` (the console script) is a small supervisor. It forks once, before torch is imported, and the
child runs the command; the child's last act is a *completion record* (its pid and exit code) written
to a pipe. The supervisor exits with the record's code, and only with it:

- no record (user code called `os._exit(0)`, a signal killed the child, a user `atexit` ended it, a
  forked grandchild tried to answer for it) -> `Error: ...` naming what was running, exit 2;
- a record, then user code that lingers (a non-daemon thread, an `atexit` handler that hangs or calls
  `os._exit(0)`) -> the record's code stands, and the child is killed after GRACE seconds.

In the child, file descriptor 1 is a copy of stderr, so `os.write(1, ...)` and `os.system("echo")`
cannot reach gradlab's stdout; gradlab's own output goes to a private duplicate of the real stdout,
through a stream that sends writes from user code (any frame outside gradlab, click and rich) to
stderr and ignores a `close()` from user code. A shared page holds what user code is running now
(`usercode.user_code` writes it), so that a death can be named.

The console script itself (gradlab/console.py) is the one place that runs the click command; this module
imports nothing of gradlab's, so every layer (usercode's breadcrumbs, the executors) may use it.
`call(fn, *args)` runs one function the same way (the pytest plugin's items for specs with user code):
the value comes back pickled, or `ProcessEnded` says how the process ended without one.
`GRADLAB_NO_SUPERVISOR=1` runs the command in this process (debuggers, profilers).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

GRACE = 5.0  # seconds a child may take to exit after its record (gradlab's own atexit clean-up)
FORWARDED = ("SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2")
CRUMB_BYTES = 2048

_state: dict = {"crumb": None}
_OURS: tuple[str, ...] = ()  # folders whose frames may write gradlab's stdout (set in the supervised child)


# --- what user code is running now: written by the child, read by the supervisor after a death ----------


def breadcrumb(text: str | None) -> None:
    """Record what is running now (None: nothing of the user's); free when not supervised."""
    page = _state["crumb"]
    if page is None:
        return
    data = (text or "").encode("utf-8", "replace")[: CRUMB_BYTES - 1]
    page[: len(data) + 1] = data + b"\0"


def attach_crumb(path: str) -> None:
    """Keep the breadcrumb in a file of CRUMB_BYTES (a forkserver's child: no shared memory is inherited)."""
    import mmap

    with open(path, "r+b") as f:
        _state["crumb"] = mmap.mmap(f.fileno(), CRUMB_BYTES)


def read_crumb(page) -> str:
    """What a breadcrumb page (or the bytes of a crumb file) says was running."""
    return bytes(page[:CRUMB_BYTES]).split(b"\0", 1)[0].decode("utf-8", "replace")


def _new_crumb():
    import mmap

    return mmap.mmap(-1, CRUMB_BYTES)  # anonymous and MAP_SHARED: the child's writes are seen here


# --- how a process ended, in words ---------------------------------------------------------------------


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def ended_how(status: int, crumb: str) -> str:
    """'called os._exit(0) while running X' / 'was killed by SIGSEGV while running X'."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        how = f"was killed by {_signal_name(sig)}" + (" (the out-of-memory killer, or another process)" if sig == signal.SIGKILL else "")
    else:
        how = f"ended with exit status {os.WEXITSTATUS(status)} (os._exit, or an atexit handler)"
    where = f" while running {crumb}" if crumb else " outside any op gradlab was running (a thread or handler the user's code left behind?)"
    return how + where


# --- the command line ------------------------------------------------------------------------------------


def enabled() -> bool:
    """Supervision is on (the default; GRADLAB_NO_SUPERVISOR=1 switches it off for debuggers and profilers)."""
    return hasattr(os, "fork") and os.environ.get("GRADLAB_NO_SUPERVISOR", "") in ("", "0")


def _fork():
    """Fork a child that dies with this process: (pid, the pipe's end this side keeps, the breadcrumb page).

    The child (pid 0) holds the write end, for its answer; this side the read end."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()  # nothing buffered here is written twice
        except (OSError, ValueError, AttributeError):
            pass
    _standard_fds_open()  # a closed 0/1/2 must not be reused by the pipe
    read_end, write_end = os.pipe()
    crumb = _new_crumb()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        _die_with(parent)
        return 0, write_end, crumb
    os.close(write_end)
    return pid, read_end, crumb


def _standard_fds_open() -> None:
    """Started with stdin, stdout or stderr closed (`>&-`): put /dev/null there, so no pipe of ours lands on them."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)


def _die_with(parent: int) -> None:
    """Linux: this child gets SIGKILL when the supervisor dies (`kill -9` of `gradlab serve` or of a CI job's
    gradlab must not leave the work running as an orphan). Elsewhere nothing is done."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the supervisor died before the request took effect
        os._exit(1)


def _exit_code(value) -> int:
    if value is None:
        return 0
    if isinstance(value, int) and not isinstance(value, bool):
        return value & 0xFF
    try:
        sys.stderr.write(f"{value}\n")
    except BaseException:  # noqa: BLE001
        pass
    return 1


def _record(fd: int | None, code: int) -> None:
    """The completion record: this process's pid and exit code, one JSON line (the supervisor requires it)."""
    if fd is None:
        return
    try:
        os.write(fd, json.dumps({"pid": os.getpid(), "exit": int(code)}).encode() + b"\n")
    except OSError:
        pass


def exit_now(code: int) -> None:
    """End this process now with `code`, as its verdict (the deadline's watchdog: a hang is never an option)."""
    _record(_state.get("record_fd"), code)
    os._exit(code)


def _finish(record_fd: int, code: int) -> None:
    """Flush gradlab's output, hand the record over, run the clean-up handlers, and end without waiting for threads."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a late Ctrl-C must not cut the record in half
    out = _state.get("stdout")
    for stream in (out, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except BrokenPipeError:
            code = code if code else 2
        except (OSError, ValueError):
            pass
    _record(record_fd, code)
    breadcrumb("the clean-up handlers (atexit) after gradlab finished")
    if out is not None:  # what runs from here on (atexit handlers, threads) can no longer reach stdout
        out.retire()
    try:
        import atexit

        atexit._run_exitfuncs()
    except BaseException:  # noqa: BLE001 -- the verdict is already recorded
        pass
    os._exit(code)


def _supervise(pid: int, read_end: int, crumb) -> int:
    """Wait for the child; its record's exit code, or 2 (130 for Ctrl-C) with the reason when it has none."""
    import select

    interrupts = {"n": 0}
    forwarded: set[int] = set()

    def on_interrupt(signum, frame):
        interrupts["n"] += 1
        if interrupts["n"] > 1 or not _from_terminal():
            _kill(pid, signal.SIGKILL if interrupts["n"] > 1 else signal.SIGINT)

    def forward(signum, frame):
        forwarded.add(signum)
        _kill(pid, signum)

    signal.signal(signal.SIGINT, on_interrupt)
    for name in FORWARDED:
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), forward)
    buffer, record, deadline, status, open_pipe = b"", None, None, None, True
    while status is None:
        wait = 0.05 if deadline is None else 0.005
        if open_pipe:
            ready, _, _ = select.select([read_end], [], [], wait)
            if ready:
                chunk = os.read(read_end, 65536)
                if not chunk:
                    open_pipe = False
                buffer += chunk
                record = record or _record_of(buffer, pid)
                if record is not None and deadline is None:
                    deadline = time.monotonic() + GRACE
        else:
            time.sleep(wait)
        done, status_now = os.waitpid(pid, os.WNOHANG)
        if done:
            status = status_now
        elif deadline is not None and time.monotonic() > deadline:
            _kill(pid, signal.SIGKILL)  # a thread or handler user code left behind; the verdict is in
    if record is None:  # the record is written before the child exits: whatever is left in the pipe
        try:
            os.set_blocking(read_end, False)
            while True:
                chunk = os.read(read_end, 65536)
                if not chunk:
                    break
                buffer += chunk
        except (BlockingIOError, OSError):
            pass
        record = _record_of(buffer, pid)
    if record is not None:
        return record
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig == signal.SIGINT or interrupts["n"]:
            sys.stderr.write("Interrupted (Ctrl-C).\n")
            return 130
        if sig in forwarded:
            return 128 + sig
    sys.stderr.write(f"Error: gradlab's run did not finish: its process {ended_how(status, read_crumb(crumb))}; "
                     "nothing is reported as checked (exit code 2: the user's code ended the run)\n")
    return 2


def _record_of(buffer: bytes, pid: int) -> int | None:
    """The exit code the child `pid` recorded (a forked grandchild's record does not count)."""
    for line in buffer.split(b"\n"):
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict) and doc.get("pid") == pid and isinstance(doc.get("exit"), int):
            return doc["exit"]
    return None


def _from_terminal() -> bool:
    """A Ctrl-C typed at the terminal reaches the child too (same foreground group); a `kill -INT` does not."""
    try:
        return os.tcgetpgrp(sys.stdin.fileno()) == os.getpgrp()
    except (OSError, ValueError, AttributeError):
        return False


def _kill(pid: int, sig) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


# --- gradlab's stdout in the child ------------------------------------------------------------------------


def _private_stdout() -> None:
    """fd 1 becomes a copy of stderr; sys.stdout writes to a private copy of the real stdout, for gradlab only."""
    import io

    global _OURS
    _OURS = _roots()
    old = sys.stdout
    try:
        private = os.dup(1)
    except OSError:  # started with stdout closed (`gradlab check ... >&-`): what would be printed goes nowhere, as before
        private = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(2, 1)
    except OSError:  # stderr closed too: user code's writes to fd 1 go nowhere
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    raw = io.FileIO(private, "w", closefd=True)
    interactive = raw.isatty()
    text = io.TextIOWrapper(io.BufferedWriter(raw) if not interactive else raw, encoding=getattr(old, "encoding", None) or "utf-8",
                            errors=getattr(old, "errors", None) or "strict", line_buffering=interactive, write_through=interactive)
    stream = _GradlabStdout(text)
    _state["stdout"] = stream
    sys.stdout = sys.__stdout__ = stream


def _ours(filename: str) -> bool:
    return filename.startswith(_OURS)


def _roots() -> tuple[str, ...]:
    """The folders whose code may write gradlab's stdout: gradlab's, click's (echo) and rich's (tables)."""
    import click
    import rich

    return tuple(os.path.dirname(os.path.abspath(m.__file__)) + os.sep for m in (sys.modules[__package__], click, rich))


class _GradlabStdout:
    """gradlab's stdout: writes from gradlab, click and rich go out; writes from anything else (the user's
    `print`, a thread it started) go to stderr; `close()` from user code is ignored."""

    def __init__(self, stream):
        self._stream, self._retired = stream, False

    def _target(self, depth: int = 2):
        if self._retired:
            return sys.__stderr__
        frame = sys._getframe(depth)
        return self._stream if _ours(frame.f_code.co_filename) else sys.__stderr__

    def write(self, text):
        return self._target().write(text)

    def writelines(self, lines):
        return self._target().writelines(lines)

    def flush(self):
        if not self._retired:
            self._stream.flush()

    def close(self):
        if _ours(sys._getframe(1).f_code.co_filename):
            self._stream.close()

    def retire(self):
        """From now on every write goes to stderr (the run is over: what comes now is left-over user code)."""
        try:
            self._stream.flush()
        except (OSError, ValueError):
            pass
        self._retired = True

    @property
    def closed(self):
        return False

    def __getattr__(self, name):  # fileno, isatty, encoding, buffer, ...
        return getattr(self._stream, name)


# --- one function in a supervised child (the pytest plugin) -------------------------------------------------


class ProcessEnded(Exception):
    """The child running user code ended without handing back a value."""


def call(fn, *args, **kwargs):
    """fn(*args, **kwargs) in a forked child: its value (or the exception it raised) comes back pickled.

    User code that ends the child (os._exit, a signal, an atexit handler) raises ProcessEnded naming
    what was running; a KeyboardInterrupt or SystemExit it raises comes back as that exception.
    """
    import pickle

    if not hasattr(os, "fork"):  # pragma: no cover - Windows: no isolation
        return fn(*args, **kwargs)
    pid, end, crumb = _fork()
    if pid == 0:  # the child: never returns
        _state.update(crumb=crumb)
        try:
            try:
                payload = pickle.dumps((os.getpid(), True, fn(*args, **kwargs)))
            except BaseException as exc:  # noqa: BLE001 -- handed back to the parent, raised there
                try:
                    payload = pickle.dumps((os.getpid(), False, exc))
                except BaseException:  # noqa: BLE001 -- an exception that does not pickle: its words
                    payload = pickle.dumps((os.getpid(), False, RuntimeError(f"{type(exc).__name__}: {str(exc)[:500]}")))
            _write_all(end, len(payload).to_bytes(8, "big") + payload)
        finally:
            os._exit(0)
    data, status = bytearray(), None
    try:
        while _payload(data) is None:  # until the length-prefixed answer is whole, or the pipe ends
            chunk = os.read(end, 1 << 20)
            if not chunk:
                break
            data += chunk
    finally:
        os.close(end)
        _, status = os.waitpid(pid, 0)
    payload = _payload(data)
    if payload is not None:
        who, ok, value = pickle.loads(payload)
        if who == pid:
            if ok:
                return value
            raise value
    raise ProcessEnded(f"the process running it {ended_how(status, read_crumb(crumb))}")


def _payload(data: bytearray) -> bytes | None:
    """The answer once its 8-byte length prefix and that many bytes have arrived, else None."""
    if len(data) < 8:
        return None
    size = int.from_bytes(data[:8], "big")
    return bytes(data[8: 8 + size]) if len(data) >= 8 + size else None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]

