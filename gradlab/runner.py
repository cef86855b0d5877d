"""Spec -> Network -> the three engines -> comparisons: one SpecResult per spec."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd

from . import compare as cmp
from . import tolerance
from .engines import analytic, autograd, numeric
from .gradients import INPUT, Gradients
from .network import Network, build
from .spec import Spec, load_spec


@dataclass
class SpecResult:
    path: str
    name: str
    dtype: str
    comparisons: list[cmp.Comparison]
    n_params: int = 0
    method: str | None = None
    seconds: float = 0.0
    engines: dict[str, float] = field(default_factory=dict)  # label -> seconds
    seed: int = 0
    network: str = ""

    @property
    def passed(self) -> bool:
        return not any(c.status == "fail" for c in self.comparisons)

    @property
    def failures(self) -> list[cmp.Comparison]:
        return [c for c in self.comparisons if c.status == "fail"]

    def to_dict(self) -> dict:
        return {
            "spec": self.path,
            "name": self.name,
            "passed": self.passed,
            "dtype": self.dtype,
            "seed": self.seed,
            "n_params": self.n_params,
            "numeric_method": self.method,
            "seconds": round(self.seconds, 4),
            "comparisons": [c.to_dict() for c in self.comparisons],
        }


def _pairs(grads: list[Gradients]) -> list[tuple[Gradients, Gradients]]:
    """(reference, candidate) pairs: the numeric engine referees; analytic is also held against autograd."""
    by = {g.engine: [x for x in grads if x.engine == g.engine] for g in grads}
    pairs = []
    for ref in by.get("numeric", []):
        for cand in by.get("analytic", []) + by.get("autograd", []):
            pairs.append((ref, cand))
    for ref in by.get("autograd", []):
        for cand in by.get("analytic", []):
            pairs.append((ref, cand))
    return pairs


def run(
    spec: Spec,
    *,
    path: str = "<spec>",
    devices: list[str] | None = None,
    engines: list[str] | None = None,
    method: str | None = None,
    net: Network | None = None,
    progress: Callable[[int], None] | None = None,
) -> SpecResult:
    """Check one validated spec. CLI options, when given, override the spec's `check` section."""
    t0 = time.perf_counter()
    net = net or build(spec)
    chk = spec.check
    devices = devices or chk.devices
    engines = engines or chk.engines
    wrt = chk.wrt_input
    grads: list[Gradients] = []
    if "analytic" in engines:
        grads.append(analytic.gradients(net, wrt_input=wrt))
    if "numeric" in engines:
        grads.append(numeric.differentiate(net, method=method or chk.numeric.method, step=chk.numeric.step, wrt_input=wrt, progress=progress))
    if "autograd" in engines:
        for d in dict.fromkeys(devices):
            grads.append(autograd.gradients(net, d, wrt_input=wrt))
    names = list(net.params) + ([INPUT] if wrt else [])
    rounding = {str(net.dtype): tolerance.rounding_bounds(net, wrt_input=wrt)}
    tol = cmp.tolerance(str(net.dtype), chk.tolerance)
    rows: list[cmp.Comparison] = []
    for ref, cand in _pairs(grads):
        rows += cmp.compare(path, ref, cand, names, tol=tol, rounding=rounding)
    num = next((g for g in grads if g.engine == "numeric"), None)
    return SpecResult(
        path=path,
        name=spec.name or Path(path).stem,
        dtype=str(net.dtype),
        comparisons=rows,
        n_params=net.n_params,
        method=num.method if num else None,
        seconds=time.perf_counter() - t0,
        engines={g.label: g.seconds for g in grads if not g.skipped},
        seed=net.seed,
        network=repr(net),
    )


def check_file(path: str | Path, **kwargs) -> SpecResult:
    return run(load_spec(path), path=str(path), **kwargs)


def results_frame(results: list[SpecResult]) -> pd.DataFrame:
    """All comparison rows of all specs as one DataFrame (for reports and pandas users)."""
    rows = [c.to_dict() for r in results for c in r.comparisons]
    return pd.DataFrame(rows, columns=list(cmp.Comparison.__dataclass_fields__))
