"""Running the user's code (custom ops, layers, losses): whatever it raises, exits or however long
it runs, that is the user's error, reported as such -- never gradlab's end, never a pass.

- `user_code(where)` wraps every call into user code. An exception, `sys.exit()` (SystemExit) or a
  KeyboardInterrupt the code raises itself becomes a `UserCodeError` naming the op and the line
  (exit code 2). A real Ctrl-C (SIGINT, once `install_sigint()` ran) passes through: exit 130.
- `deadline(seconds, what)` bounds a stretch of work (one spec) with SIGALRM; when it expires inside
  user code the `Timeout` names the op that was running.
"""

from __future__ import annotations

import functools
import contextlib
import signal
import threading
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import GradlabError
from .supervise import breadcrumb

_sigint = {"installed": False, "received": False}


class UserCodeError(GradlabError):
    """The user's op raised, exited, returned something unusable or ran out of time (exit code 2)."""


class Timeout(BaseException):
    """A deadline expired. A BaseException, so that a user's `except Exception:` cannot swallow it."""

    def __init__(self, seconds: float, what: str):
        self.seconds, self.what, self.inside = seconds, what, None
        super().__init__(f"{what}: timed out after {seconds:g} s")

    def message(self) -> str:
        where = f" while running {self.inside}" if self.inside else ""
        return f"{self.what}: timed out after {self.seconds:g} s{where} (raise the limit with --timeout or check.timeout)"


def _on_sigint(signum, frame):
    if _sigint["received"]:  # the run is already stopping (a Ctrl-C can arrive twice: from the terminal and the supervisor)
        return
    _sigint["received"] = True
    raise KeyboardInterrupt


def install_sigint() -> None:
    """Tell a real Ctrl-C from a KeyboardInterrupt the user's code raises (the CLI calls this once)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _on_sigint)
        _sigint["installed"] = True
        _sigint["received"] = False  # a new command: no Ctrl-C yet


def interrupted() -> bool:
    """A real Ctrl-C arrived (or, without install_sigint, any KeyboardInterrupt counts as one)."""
    return _sigint["received"] or not _sigint["installed"]


@functools.lru_cache(maxsize=1)
def _library_roots() -> tuple[str, ...]:
    """Folders whose frames are not the user's: gradlab itself, the standard library, installed packages."""
    import sysconfig

    roots = {str(Path(__file__).resolve().parent)}
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        try:
            roots.add(str(Path(sysconfig.get_paths()[key]).resolve()))
        except (KeyError, OSError, RuntimeError):
            pass
    return tuple(r.rstrip("/\\") + "/" for r in roots)


def _is_user_file(filename: str) -> bool:
    name = filename.replace("\\", "/")
    if name.startswith("<") or "site-packages/" in name or "dist-packages/" in name:
        return False  # <frozen importlib._bootstrap>, <string>, installed packages
    try:
        name = str(Path(filename).resolve()).replace("\\", "/")
    except (OSError, RuntimeError):
        pass
    return not name.startswith(_library_roots())


def user_frames(exc: BaseException) -> list[traceback.FrameSummary]:
    """The frames of `exc`'s traceback in the user's own files (not gradlab's, not the libraries'), outermost first."""
    try:
        return [f for f in traceback.extract_tb(exc.__traceback__) if _is_user_file(f.filename)]
    except Exception:  # noqa: BLE001 -- a traceback is gradlab's last resort for a line; never fail on it
        return []


def raised_by_user(exc: BaseException, also: tuple[str, ...] = ()) -> bool:
    """`exc` came out of the user's code: a frame in the user's files lies deeper than gradlab's innermost one
    (gradlab reading an attribute ran a property or __getattr__ that raised). A gradlab bug has gradlab innermost.
    `also`: folders that are the user's even among installed packages (the package a dotted target names)."""
    try:
        frames = traceback.extract_tb(exc.__traceback__)
    except Exception:  # noqa: BLE001
        return False
    own = str(Path(__file__).resolve().parent).replace("\\", "/") + "/"
    last_gradlab = max((i for i, f in enumerate(frames) if f.filename.replace("\\", "/").startswith(own)), default=-1)
    theirs = tuple(a.replace("\\", "/").rstrip("/") + "/" for a in also)
    return any(_is_user_file(f.filename) or f.filename.replace("\\", "/").startswith(theirs or ("\0",)) for f in frames[last_gradlab + 1:])


def user_line(exc: BaseException) -> str:
    """' (file.py, line 12)': the innermost frame of the traceback in the user's files (a SyntaxError: where it is)."""
    if isinstance(exc, SyntaxError) and exc.lineno and exc.filename and not str(exc.filename).startswith("<"):
        return f" ({Path(exc.filename).name}, line {exc.lineno})"
    frames = user_frames(exc)
    return f" ({Path(frames[-1].filename).name}, line {frames[-1].lineno})" if frames else ""


def _shown(show, obj, name: str) -> str:
    """str() / repr() of a user's object; one whose __str__ / __repr__ raises is described, never re-raised."""
    try:
        text = show(obj)
        if not isinstance(text, str):
            raise TypeError(f"returned {type(text).__name__}")
        return text
    except Exception as exc:  # noqa: BLE001 -- the user's __str__ is user code too
        try:
            why = type(exc).__name__
        except Exception:  # noqa: BLE001
            why = "an exception"
        return f"<{name} of the user's object raised {why}>"


def _type_name(obj) -> str:
    try:
        name = type(obj).__name__
        return name if isinstance(name, str) else "object"
    except Exception:  # noqa: BLE001 -- a metaclass whose __name__ raises
        return "object"


def describe(exc: BaseException) -> str:
    """'called sys.exit(0)', 'raised ValueError: bad shape', short enough for one line."""
    if isinstance(exc, SystemExit):
        return f"called sys.exit({_shown(repr, exc.code, '__repr__')})"
    text = _shown(str, exc, "__str__").strip()
    text = text.splitlines()[0] if text else ""
    text = text if len(text) <= 200 else text[:197] + "..."
    return f"raised {_type_name(exc)}" + (f": {text}" if text else "")


@contextmanager
def user_code(where: str) -> Iterator[None]:
    """Run user code; anything it raises or exits with becomes a UserCodeError naming `where`."""
    _running.append(where)
    breadcrumb(where)
    try:
        yield
    except Timeout as exc:
        exc.inside = exc.inside or where
        raise
    except GradlabError:
        raise
    except KeyboardInterrupt as exc:
        if interrupted():
            raise
        raise UserCodeError(f"{where} {describe(exc)}{user_line(exc)}") from None
    except GeneratorExit as exc:
        if not user_frames(exc):  # thrown in by a close() (this block garbage-collected mid-way): nothing of the user's
            raise
        raise UserCodeError(f"{where} {describe(exc)}{user_line(exc)}") from None
    except BaseException as exc:  # SystemExit, any Exception: the op's fault
        raise UserCodeError(f"{where} {describe(exc)}{user_line(exc)}") from None
    finally:
        _running.pop()
        breadcrumb(_running[-1] if _running else None)


_running: list[str] = []  # the user code being run now, innermost last (the watchdog names it)


@contextmanager
def deadline(seconds: float | None, what: str) -> Iterator[None]:
    """Raise Timeout in this thread after `seconds` (Unix main thread; elsewhere no limit is enforced)."""
    usable = seconds and hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if not usable:
        yield
        return
    import torch  # noqa: F401  -- never let a deadline cut an import of torch in half (it cannot be imported again)

    state = {"open": True}

    def _expired(signum, frame):
        # A tick while the block is being left (here or in contextlib's __exit__, before this generator's
        # finally runs) is not a timeout: raising there would leave the timer armed past the block.
        if state["open"] and not (frame is not None and frame.f_code.co_filename in _LEAVING):
            _expiry.append(Timeout(seconds, what))
            raise _expiry[-1]

    # Code that swallows every exception in a loop never lets the Timeout out: after a grace period the
    # watchdog ends the process with exit code 2 and says why -- a hang is never an option.
    grace = min(max(1.0, seconds), 5.0)
    previous = signal.signal(signal.SIGALRM, _expired)
    token = None
    try:
        # armed inside the try: a deadline shorter than arming the watchdog must still be disarmed below
        token = _WATCHDOG.arm(seconds + grace, seconds, what)
        signal.setitimer(signal.ITIMER_REAL, seconds, 0.25)  # and again every 0.25 s until the block is left
        yield
    finally:
        # A tick can land on any line here: keep disarming until it is done (a timer left running after the
        # handler is restored would kill the process with SIGALRM once the results are printed).
        while True:
            try:
                state["open"] = False
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, previous)
                _WATCHDOG.cancel(token)
                break
            except Timeout:
                continue
        _expiry.clear()


WATCHDOG_THREAD = "gradlab-watchdog"


class _Watchdog:
    """One daemon thread per process that calls _hard_stop when a deadline's grace has run out: arming and
    cancelling are a dict update under a lock (a thread started per deadline cost a millisecond per spec,
    a service worker's whole budget). A forked child starts its own thread on first use (threads do not
    survive a fork)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._due: dict[int, tuple[float, float, str]] = {}  # token -> (monotonic due time, seconds, what)
        self._next = 0
        self._pid = None

    def arm(self, after: float, seconds: float, what: str) -> int:
        import os
        import time

        if self._pid != os.getpid():  # first use in this process (deadlines are armed on the main thread only)
            self._pid = os.getpid()
            self._cond = threading.Condition()  # a lock another thread held at a fork is never released in the child
            self._due = {}
            threading.Thread(target=self._run, args=(self._cond,), name=WATCHDOG_THREAD, daemon=True).start()
        with self._cond:
            self._next += 1
            self._due[self._next] = (time.monotonic() + after, seconds, what)
            self._cond.notify()
            return self._next

    def cancel(self, token: int | None) -> None:
        if token is not None:
            with self._cond:
                self._due.pop(token, None)

    def _run(self, cond: threading.Condition) -> None:
        import time

        with cond:
            while True:
                now = time.monotonic()
                late = [v for v in self._due.values() if v[0] <= now]
                if late:
                    _hard_stop(late[0][1], late[0][2])
                    return
                cond.wait(min((v[0] for v in self._due.values()), default=now + 3600) - now)


_WATCHDOG = _Watchdog()


_expiry: list[Timeout] = []  # the Timeout of the deadline now open, once it has fired
_LEAVING = (__file__, contextlib.__file__)  # frames where a deadline is entered or left, never cut by its tick


def expired() -> Timeout | None:
    """The open deadline's Timeout once it has fired: code that catches broadly (a Hypothesis search that turns
    an exception into 'flaky') re-raises it instead of judging the op by it."""
    return _expiry[-1] if _expiry else None


def _hard_stop(seconds: float, what: str) -> None:
    import sys

    if _running:
        why = f" while running {_running[-1]}, and the user code caught every interrupt"
    else:  # no user code: a long call inside numpy or torch does not return to Python to hear the interrupt
        why = ", inside a computation that did not return within the grace period (shrink the spec, or raise the limit)"
    sys.stderr.write(f"Error: {what}: timed out after {seconds:g} s{why}; "
                     "gradlab stopped here (specs after this one were not checked, no report was written)\n")
    sys.stderr.flush()
    from .supervise import exit_now

    exit_now(2)


# --- the switch: `--no-code`, GRADLAB_NO_CODE=1, pytest's `gradlab_no_code = true` ----------------

_code = {"forbidden": False}


def forbid_code(forbid: bool = True) -> bool:
    """Refuse every spec that names user code (`impl:`) before anything is imported; returns the previous setting."""
    previous, _code["forbidden"] = _code["forbidden"], forbid
    return previous


def code_allowed() -> bool:
    import os

    return not (_code["forbidden"] or os.environ.get("GRADLAB_NO_CODE", "").strip().lower() in ("1", "true", "yes", "on"))
