"""Running the user's code (custom ops, layers, losses): whatever it raises, exits or however long
it runs, that is the user's error, reported as such -- never gradlab's end, never a pass.

- `user_code(where)` wraps every call into user code. An exception, `sys.exit()` (SystemExit) or a
  KeyboardInterrupt the code raises itself becomes a `UserCodeError` naming the op and the line
  (exit code 2). A real Ctrl-C (SIGINT, once `install_sigint()` ran) passes through: exit 130.
- `deadline(seconds, what)` bounds a stretch of work (one spec) with SIGALRM; when it expires inside
  user code the `Timeout` names the op that was running.
"""

from __future__ import annotations

import signal
import threading
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import GradlabError

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
    _sigint["received"] = True
    raise KeyboardInterrupt


def install_sigint() -> None:
    """Tell a real Ctrl-C from a KeyboardInterrupt the user's code raises (the CLI calls this once)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _on_sigint)
        _sigint["installed"] = True


def interrupted() -> bool:
    """A real Ctrl-C arrived (or, without install_sigint, any KeyboardInterrupt counts as one)."""
    return _sigint["received"] or not _sigint["installed"]


def user_line(exc: BaseException) -> str:
    """' (file.py, line 12)': the innermost frame of the traceback outside gradlab and the libraries."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if "/gradlab/" not in f.filename.replace("\\", "/") and "site-packages" not in f.filename and "importlib" not in f.filename]
    if isinstance(exc, SyntaxError) and exc.lineno:
        return f" ({Path(exc.filename or '?').name}, line {exc.lineno})"
    return f" ({Path(frames[-1].filename).name}, line {frames[-1].lineno})" if frames else ""


def describe(exc: BaseException) -> str:
    """'called sys.exit(0)', 'raised ValueError: bad shape', short enough for one line."""
    if isinstance(exc, SystemExit):
        return f"called sys.exit({exc.code!r})"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = text if len(text) <= 200 else text[:197] + "..."
    return f"raised {type(exc).__name__}" + (f": {text}" if text else "")


@contextmanager
def user_code(where: str) -> Iterator[None]:
    """Run user code; anything it raises or exits with becomes a UserCodeError naming `where`."""
    _running.append(where)
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
    except BaseException as exc:  # SystemExit, GeneratorExit, any Exception: the op's fault
        raise UserCodeError(f"{where} {describe(exc)}{user_line(exc)}") from None
    finally:
        _running.pop()


_running: list[str] = []  # the user code being run now, innermost last (the watchdog names it)


@contextmanager
def deadline(seconds: float | None, what: str) -> Iterator[None]:
    """Raise Timeout in this thread after `seconds` (Unix main thread; elsewhere no limit is enforced)."""
    usable = seconds and hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if not usable:
        yield
        return
    import torch  # noqa: F401  -- never let a deadline cut an import of torch in half (it cannot be imported again)

    def _expired(signum, frame):
        raise Timeout(seconds, what)

    # Code that swallows every exception in a loop never lets the Timeout out: after a grace period the
    # watchdog ends the process with exit code 2 and says why -- a hang is never an option.
    grace = min(max(1.0, seconds), 5.0)
    watchdog = threading.Timer(seconds + grace, _hard_stop, args=(seconds, what))
    watchdog.daemon = True
    previous = signal.signal(signal.SIGALRM, _expired)
    signal.setitimer(signal.ITIMER_REAL, seconds, 0.25)  # and again every 0.25 s until the block is left
    watchdog.start()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        watchdog.cancel()


def _hard_stop(seconds: float, what: str) -> None:
    import os
    import sys

    inside = f" while running {_running[-1]}" if _running else ""
    sys.stderr.write(f"Error: {what}: timed out after {seconds:g} s{inside}, and the user code caught every interrupt; "
                     "gradlab stopped here (specs after this one were not checked, no report was written)\n")
    sys.stderr.flush()
    os._exit(2)


# --- the switch: `--no-code`, GRADLAB_NO_CODE=1, pytest's `gradlab_no_code = true` ----------------

_code = {"forbidden": False}


def forbid_code(forbid: bool = True) -> bool:
    """Refuse every spec that names user code (`impl:`) before anything is imported; returns the previous setting."""
    previous, _code["forbidden"] = _code["forbidden"], forbid
    return previous


def code_allowed() -> bool:
    import os

    return not (_code["forbidden"] or os.environ.get("GRADLAB_NO_CODE", "").strip().lower() in ("1", "true", "yes", "on"))
