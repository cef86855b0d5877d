"""A claimed gradient of a user's scalar function against differences of that function alone, in float64.

Two modes, both on the numeric engine's stencils (gradlab.engines.numeric: richardson or complex step,
its own error estimate, kink flags):
  elements     every element differenced (gradient_of), judged one by one -- for small tensors;
  projections  fastcheck's fast mode for any function: the directional derivative d/dt phi(theta + t u)
               along random u (random signs, |u_i| in [1, 2]) against claimed . u, and when a projection
               fails, bisection (fastcheck._localise) names the wrong elements in O(log n) more projections.
The verdict per element (or per projection, with |u| summed in) is gradlab audit's:
    |claimed - numeric| <= atol + rtol |numeric| + err_factor (err + rounding max|claimed|)
Used by `gradlab audit --kind module` (phi: a module's loss) and `gradlab compare --double-backward` in float64
(phi: <the candidate's own first-order gradient, v>).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .. import fastcheck
from ..engines.numeric import DEFAULT_STEP, differences, gradient_of
from .rule import ratio

ELEMENTWISE_LIMIT = 64  # tensors up to this size are differenced element by element; larger ones by projections
# An nn.Module's tensors (`audit --kind module`): element by element up to this size, by projections above it; a
# forward of a module costs far more than one of an elementwise op, and bisection names wrong elements all the same.
MODULE_ELEMENTWISE_LIMIT = 16
STEP_SHRINK = (1.0, 1 / 16, 1 / 256)  # a projection whose stencil looks kinked is differenced again with smaller steps
QUIET = 1e-6  # ... until its error estimate is below this fraction of its value
MAX_KINK_PROJECTIONS = 64  # projections spent splitting kinked ones (inputs with exact zeros into a ReLU) per tensor


@dataclass(frozen=True)
class Verdict:
    """One tensor: the claimed gradient against the numeric one."""

    name: str
    shape: tuple
    mode: str  # "elements" | "projections"
    method: str  # the numeric engine's method
    err: float  # |claimed - numeric| at the worst element (or projection)
    bound: float  # ... and the bound it had to meet
    index: tuple = ()  # the worst element; () when a projection failed and no single element was named
    claimed: float = math.nan
    numeric: float = math.nan
    wrong: list = field(default_factory=list)  # [(index, claimed, numeric, bound)] worst first
    kinks: int = 0  # elements (or projections) whose stencil straddled a kink: not judged
    evaluations: int = 0  # differenced elements or projections
    note: str = ""

    @property
    def ratio(self) -> float:
        return ratio(self.err, self.bound)

    @property
    def passed(self) -> bool:
        return not self.wrong and self.err <= self.bound

    def to_dict(self) -> dict:
        def num(x):
            return x if isinstance(x, (int, float)) and math.isfinite(x) else (None if x != x else str(x))

        return {"name": self.name, "shape": list(self.shape), "passed": self.passed, "mode": self.mode, "method": self.method,
                "err": num(self.err), "bound": num(self.bound), "ratio": num(self.ratio),
                "worst": {"index": list(self.index), "claimed": num(self.claimed), "numeric": num(self.numeric)},
                "wrong": [{"index": list(i), "claimed": num(c), "numeric": num(n), "bound": num(b)} for i, c, n, b in self.wrong],
                "kinks": self.kinks, "evaluations": self.evaluations, "note": self.note}


def _bound(tol: dict, numeric: float | np.ndarray, err, weight, scale: float):
    """atol |u|_1 + rtol |numeric| + err_factor (err + rounding max|claimed| |u|_1); weight = |u|_1 (1 for an element)."""
    return tol["atol"] * weight + tol["rtol"] * np.abs(numeric) + tol["err_factor"] * (err + tol["rounding"] * scale * weight)


@dataclass
class _Probe:
    """fastcheck's probe interface (project(u) -> agrees, numeric, claimed, bound; .cand) for any phi."""

    phi: Callable[[np.ndarray], complex | float]  # takes an array of `shape`
    theta: np.ndarray  # flat, float64
    shape: tuple
    cand: np.ndarray  # flat claimed gradient
    method: str
    tol: dict
    count: int = 0
    kinks: int = 0
    last_kink: bool = False  # the latest projection's stencil straddled a kink (it passed without being judged)
    worst: tuple = (0.0, 1.0, math.nan, math.nan)  # err, bound, claimed, numeric of the judged projection closest to failing

    def project(self, u: np.ndarray) -> tuple[bool, float, float, float]:
        self.count += 1
        rms = float(np.sqrt(np.mean(self.theta**2))) if self.theta.size else 0.0
        at = lambda t: self.phi((self.theta + t * u).reshape(self.shape))  # noqa: E731
        f0 = float(np.real(at(0.0)))
        best = None
        # A direction moves every element at once, so in a module with ReLUs some unit sits within a step of its
        # kink far more often than any single element does: the stencil sees the kink (flag, or an error estimate
        # widened by the one-sided slopes' gap). A smaller step crosses it proportionally less often.
        for shrink in STEP_SHRINK:
            h = np.array([DEFAULT_STEP[self.method] * max(rms, 1e-2) * shrink])
            value, err, kink = differences(lambda off: np.array([at(off[0])]), h, f0, self.method)
            got = (float(value[0]), float(err[0]), bool(kink[0]))
            if best is None or (best[2], best[1]) > (got[2], got[1]):
                best = got
            if self.method == "complex_step" or not got[2] and got[1] <= QUIET * abs(got[0]):
                break
        num, est, kink = best
        self.last_kink = kink
        claimed = float(np.dot(self.cand, u))
        scale = float(np.max(np.abs(self.cand))) if self.cand.size else 0.0
        bound = float(_bound(self.tol, num, est, float(np.sum(np.abs(u))), scale))
        if not kink and ratio(abs(claimed - num), bound) >= ratio(*self.worst[:2]):
            self.worst = (abs(claimed - num), bound, claimed, num)
        return kink or abs(claimed - num) <= bound, num, claimed, bound


def _index(flat: int, shape: tuple) -> tuple:
    return tuple(int(j) for j in np.unravel_index(flat, shape)) if shape else ()


def _around_kinks(probe: _Probe, u: np.ndarray, idx: np.ndarray, found: list, budget: list) -> None:
    """A projection that straddled a kink judged nothing: split it, judge the halves that are smooth (bisecting
    the failing ones to their wrong elements), split the kinked halves again; a kinked single element, or a
    part left when the budget of projections runs out, is counted as not judged (probe.kinks)."""
    half = len(idx) // 2
    for part in (idx[:half], idx[half:]):
        if len(part) == 0 or len(found) >= fastcheck.MAX_LOCALISED:
            continue
        if budget[0] <= 0:
            probe.kinks += len(part)
            continue
        budget[0] -= 1
        sub = np.zeros_like(u)
        sub[part] = u[part]
        ok, num, _, bound = probe.project(sub)
        if probe.last_kink:
            if len(part) == 1:
                probe.kinks += 1
            else:
                _around_kinks(probe, u, part, found, budget)
        elif not ok and len(part) == 1:  # as fastcheck._localise records a single wrong element
            i = int(part[0])
            found.append((i, num / u[i], float(probe.cand[i]), bound / abs(u[i])))
        elif not ok:
            fastcheck._localise(probe, u, part, found)


def by_projections(name: str, phi: Callable, theta: np.ndarray, claimed: np.ndarray, *, method: str, tol: dict, seed: int) -> Verdict:
    """Random projections; bisection names the wrong elements when one fails."""
    shape = tuple(theta.shape)
    probe = _Probe(phi, np.asarray(theta, np.float64).reshape(-1), shape, np.asarray(claimed, np.float64).reshape(-1), method, tol)
    rng = np.random.default_rng([seed, probe.theta.size])
    found: list = []
    budget = [MAX_KINK_PROJECTIONS]
    for _ in range(fastcheck.PROJECTIONS):
        u = rng.choice([-1.0, 1.0], size=probe.theta.size) * rng.uniform(1.0, 2.0, size=probe.theta.size)
        ok, *_ = probe.project(u)
        if probe.last_kink:
            _around_kinks(probe, u, np.arange(probe.theta.size), found, budget)
        elif not ok:
            fastcheck._localise(probe, u, np.arange(probe.theta.size), found)
        if found:
            break
    base = dict(name=name, shape=shape, mode="projections", method=method, kinks=probe.kinks, evaluations=probe.count)
    if not found:
        err, bound, c, num = probe.worst
        note = "" if err <= bound else "a projection failed but bisection named no single element (errors spread thinly)"
        if probe.kinks:
            note = (note + "; " if note else "") + f"{probe.kinks} element(s) not judged (on a kink, or left when the projections for kinks ran out)"
        return Verdict(err=err, bound=bound, claimed=c, numeric=num, note=note, **base)
    found.sort(key=lambda f: -abs(f[2] - f[1]) / max(f[3], 1e-300))
    wrong = [(_index(i, shape), c, n, b) for i, n, c, b in found]
    index, c, n, b = wrong[0]
    more = "+" if len(found) >= fastcheck.MAX_LOCALISED else ""
    return Verdict(err=abs(c - n), bound=b, index=index, claimed=c, numeric=n, wrong=wrong,
                   note=f"{len(found)}{more} wrong element(s) named by bisection", **base)


def by_elements(name: str, phi: Callable, theta: np.ndarray, claimed: np.ndarray, *, method: str, tol: dict) -> Verdict:
    """Every element differenced and judged."""
    shape = tuple(theta.shape)
    d = gradient_of(phi, np.asarray(theta, np.float64), method=method)
    c = np.asarray(claimed, np.float64).reshape(shape)
    scale = float(np.max(np.abs(c))) if c.size else 0.0
    bound = _bound(tol, d.value, d.error, 1.0, scale)
    diff = np.where(d.kinks, 0.0, np.abs(c - d.value))
    bad = np.flatnonzero((diff > bound).reshape(-1))
    excess = (diff / np.where(bound > 0, bound, 1e-300)).reshape(-1)
    base = dict(name=name, shape=shape, mode="elements", method=d.method, kinks=int(d.kinks.sum()), evaluations=int(c.size))
    if not c.size:
        return Verdict(err=0.0, bound=0.0, **base)
    flat_c, flat_n, flat_b = c.reshape(-1), d.value.reshape(-1), bound.reshape(-1)
    wrong = [(_index(int(i), shape), float(flat_c[i]), float(flat_n[i]), float(flat_b[i])) for i in bad[np.argsort(-excess[bad], kind="stable")]]
    k = int(np.argmax(excess))  # the worst element, failing or not
    return Verdict(err=float(diff.reshape(-1)[k]), bound=float(flat_b[k]), index=_index(k, shape), claimed=float(flat_c[k]),
                   numeric=float(flat_n[k]), wrong=wrong, **base)


def judge(name: str, phi: Callable, theta: np.ndarray, claimed: np.ndarray, *, method: str, tol: dict, seed: int,
          elementwise_limit: int = ELEMENTWISE_LIMIT) -> Verdict:
    """Elements for a small tensor, projections (with localisation) for a large one."""
    if np.size(theta) <= elementwise_limit:
        return by_elements(name, phi, theta, claimed, method=method, tol=tol)
    return by_projections(name, phi, theta, claimed, method=method, tol=tol, seed=seed)
