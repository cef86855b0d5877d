"""A progress line on stderr while an op is audited: `auditing conv_forward_naive: 23/80 examples, 12 s`.

On a terminal the line is rewritten in place (at most a few times a second) and cleared when the
op is done; otherwise (a CI log, a pipe) one line is written every 10 s, so a slow op is never
silent and a fast one leaves no trace. Never on stdout: gradlab's JSON stays clean.
"""

from __future__ import annotations

import sys
import time
from typing import Callable, TextIO

TTY_INTERVAL = 0.25  # seconds between rewrites of the line on a terminal
LOG_INTERVAL = 10.0  # seconds between lines elsewhere


class Progress:
    def __init__(self, stream: TextIO | None = None, *, clock: Callable[[], float] = time.monotonic,
                 log_interval: float = LOG_INTERVAL):
        self._stream, self.clock, self.log_interval = stream, clock, log_interval
        self.name, self.budget, self.t0, self.last, self.shown = "", 0, 0.0, 0.0, False

    @property
    def stream(self) -> TextIO:
        return self._stream or sys.stderr  # looked up late: CliRunner and pytest swap sys.stderr

    @property
    def tty(self) -> bool:
        isatty = getattr(self.stream, "isatty", None)
        return bool(isatty and isatty())

    def start(self, name: str, budget: int) -> None:
        self.name, self.budget = name, budget
        self.t0 = self.last = self.clock()

    def line(self, done: int, shrinking: bool, now: float) -> str:
        what = "shrinking a counterexample" if shrinking else f"{done}/{self.budget} examples"
        return f"auditing {self.name}: {what}, {now - self.t0:.0f} s"

    def update(self, done: int, shrinking: bool = False) -> None:
        now = self.clock()
        if now - self.last < (TTY_INTERVAL if self.tty else self.log_interval):
            return
        self.last = now
        text = self.line(done, shrinking, now)
        if self.tty:
            self.stream.write("\r\x1b[2K" + text)
            self.shown = True
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def finish(self) -> None:
        if self.shown:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()
            self.shown = False
