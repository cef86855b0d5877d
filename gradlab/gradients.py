"""What every engine returns: gradients by parameter name, with provenance."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

INPUT = "input"  # the pseudo-parameter name for dL/dx when `check.wrt_input` is set


@dataclass(frozen=True)
class Gradients:
    engine: str  # analytic | numeric | autograd
    device: str  # cpu, cuda, cuda:1
    dtype: str  # the dtype the engine computed in
    values: dict[str, np.ndarray] = field(default_factory=dict)  # float64 copies
    skipped: str | None = None  # why this engine produced nothing (e.g. no CUDA)
    error: dict[str, np.ndarray] | None = None  # numeric: per-element error estimate
    kinks: dict[str, np.ndarray] | None = None  # numeric: stencil straddled a non-differentiable point
    method: str | None = None  # numeric: the difference method used
    seconds: float = 0.0
    notes: tuple[str, ...] = ()  # what the engine wants the user to know (fallbacks, ...)

    @property
    def label(self) -> str:
        return self.engine if self.engine != "autograd" else f"autograd[{self.device}]"
