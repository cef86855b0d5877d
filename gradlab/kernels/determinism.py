"""--determinism N: the candidate's forward and backward N times on one input; every output and gradient
must be bitwise equal across runs, or (with --nondet-tol) spread no more than the tolerance."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from . import inputs as I
from .execute import Pair, forward_backward


@dataclass(frozen=True)
class Spread:
    name: str
    runs: int
    identical: bool
    spread: float  # max over runs of max|run_i - run_0|
    tol: float | None

    @property
    def passed(self) -> bool:
        return self.identical or (self.tol is not None and self.spread <= self.tol)

    def to_dict(self) -> dict:
        return {"name": self.name, "runs": self.runs, "identical": self.identical,
                "spread": self.spread if math.isfinite(self.spread) else str(self.spread), "tol": self.tol, "passed": self.passed}


def check(pair: Pair, runs: int, *, seed: int, tol: float | None) -> tuple[I.Case, list[Spread]]:
    case = I.Case(pair.specs, "normal", seed)
    cfg = pair.config
    low = I.build(case, cfg.dtype, cfg.device)
    params = {k: v.to(cfg.dtype).to(cfg.device) for k, v in I.parameter_values(pair.param_shapes, seed).items()}
    first = forward_backward(pair, pair.candidate, cfg.dtype, low, params, None, seed)
    named = lambda r: [("output" if len(r.outputs) == 1 else f"output[{i}]", o) for i, o in enumerate(r.outputs)] + [(f"grad {k}", g) for k, g in r.grads.items()]  # noqa: E731
    base = named(first)
    identical = {n: True for n, _ in base}
    spread = {n: 0.0 for n, _ in base}
    for _ in range(runs - 1):
        again = named(forward_backward(pair, pair.candidate, cfg.dtype, low, params, first.cotangents, seed))  # type: ignore[attr-defined]
        for (n, a), (_, b) in zip(base, again):
            same = torch.equal(a, b) or bool(torch.equal(torch.isnan(a), torch.isnan(b)) and torch.equal(torch.nan_to_num(a), torch.nan_to_num(b)))
            identical[n] = identical[n] and same
            if not same:
                spread[n] = max(spread[n], float((a.double() - b.double()).abs().nan_to_num(math.inf).max()))
    return case, [Spread(n, runs, identical[n], spread[n], tol) for n, _ in base]
