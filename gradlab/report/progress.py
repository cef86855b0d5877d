"""A progress bar for runs that take more than a moment: many specs, large numeric checks.

It draws on stderr, so stdout stays clean for `--format json` and pipes; only when stderr
is a terminal; and only once the run has lasted `delay` seconds, so a quick check prints
nothing extra. It is transient: the finished bar disappears and leaves the tables alone.
"""

from __future__ import annotations

import time
from typing import Callable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn

DELAY_S = 0.5


class RunProgress:
    """Overall progress over specs, plus the numeric engine's elements of the current spec.

        with RunProgress(n_specs) as bar:
            for spec in specs:
                run(spec, progress=bar.spec(name, n_elements))
    """

    def __init__(self, n_specs: int, *, enabled: bool = True, console: Console | None = None, delay: float = DELAY_S):
        self.console = console or Console(stderr=True)
        self.enabled = enabled and self.console.is_terminal and not self.console.is_dumb_terminal
        self.delay = delay
        self._progress = Progress(
            TextColumn("{task.description}", markup=False), BarColumn(),  # a spec's name is not rich markup
            MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
            console=self.console, transient=True, disable=not self.enabled,
        )
        self._specs = self._progress.add_task("specs", total=n_specs)
        self._current: TaskID | None = None
        self._t0 = time.monotonic()
        self._live = False

    def __enter__(self) -> "RunProgress":
        return self

    def __exit__(self, *exc) -> None:
        self._finish_current()
        if self._live:
            self._progress.stop()

    def _show_if_slow(self) -> None:
        if self.enabled and not self._live and time.monotonic() - self._t0 >= self.delay:
            self._progress.start()
            self._live = True

    def _finish_current(self) -> None:
        if self._current is not None:
            self._progress.remove_task(self._current)
            self._progress.advance(self._specs)
            self._current = None

    def spec(self, name: str, elements: int, *, stage: str = "numeric") -> Callable[[int], None]:
        """Start the next spec; returns the callback the numeric engine calls with element counts.

        `elements` is the whole of the stage's work (fast mode: every tensor once per candidate
        engine, `gradlab.batch.progress_work`). The bar never passes it: counts beyond it are
        dropped. When the stage is done the spec is not: autograd and the comparison follow, so the
        task then says so and pulses (no total, no made-up ETA) until the next spec starts.
        """
        self._finish_current()
        self._show_if_slow()
        total = max(int(elements), 1)
        self._current = task = self._progress.add_task(f"  {name}: {stage}", total=total)
        done = [0]

        def advance(n: int) -> None:
            step = max(0, min(int(n), total - done[0]))  # never past the total
            if step:
                done[0] += step
                self._progress.advance(task, step)
                if done[0] >= total:
                    self._progress.update(task, description=f"  {name}: autograd and comparison", total=None)
            self._show_if_slow()

        return advance
