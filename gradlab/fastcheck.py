"""Fast mode: random projections instead of every element, and group testing to name the wrong ones.

For a candidate gradient c (analytic or autograd) and the numeric engine, each parameter
tensor is checked along two random directions u (random signs, magnitudes in [1, 2] so no
element is weighted near zero and no two wrong elements cancel except on a set of measure
zero): the numeric directional derivative of the loss, d/dt L(theta + t u), costs O(1)
forward passes whatever the size, and must match c . u within the error model
(sum_i |u_i| E_i for the candidate's rounding, plus the numeric estimate). When a projection
fails, the index set is bisected and both halves are projected again, recursing into the
halves that fail (adaptive group testing): a single wrong element among N is named after
2 + 2 log2(N) projections, and its numeric value is then the directional derivative along
that one element.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .compare import SAFETY, Comparison
from .engines import numeric
from .gradients import INPUT, Gradients
from .network import Network

MAX_LOCALISED = 16  # stop bisecting after naming this many wrong elements in one tensor
PROJECTIONS = 2  # random directions per tensor before any bisection


@dataclass
class _Probe:
    net: Network
    name: str
    cand: np.ndarray  # flat candidate gradient
    model: np.ndarray  # flat rounding bound of the candidate (and of a non-numeric reference)
    method: str
    tol: dict
    count: int = 0
    kinks: int = 0

    def project(self, u_flat: np.ndarray) -> tuple[bool, float, float, float]:
        """(agrees, numeric, candidate, bound) for direction u_flat (zero outside the tested set)."""
        self.count += 1
        shape = _tensor(self.net, self.name).shape
        d = numeric.directional(self.net, {self.name: u_flat.reshape(shape)}, method=self.method)
        self.kinks += d.kink
        cand = float(np.dot(self.cand, u_flat))
        bound = SAFETY * (d.error + float(np.dot(np.abs(u_flat), self.model)) + 4 * self.cand.size * np.finfo(float).eps * float(np.dot(np.abs(self.cand), np.abs(u_flat))))
        bound += self.tol["atol"] * float(np.sum(np.abs(u_flat))) + self.tol["rtol"] * abs(d.value)
        return d.kink or abs(cand - d.value) <= bound, d.value, cand, bound


def _tensor(net: Network, name: str) -> np.ndarray:
    """A parameter, or the batch itself for `input` (check.wrt_input)."""
    return net.x if name == INPUT else net.params[name]


def _localise(probe: _Probe, u: np.ndarray, idx: np.ndarray, found: list) -> None:
    """Bisect a failing index set: project both halves, recurse into the ones that fail."""
    half = len(idx) // 2
    for part in (idx[:half], idx[half:]):
        if len(found) >= MAX_LOCALISED or len(part) == 0:
            return
        sub = np.zeros_like(u)
        sub[part] = u[part]
        ok, num, cand, bound = probe.project(sub)
        if ok:
            continue
        if len(part) == 1:  # the projection along u_i e_i is u_i times the element's derivative
            i = int(part[0])
            found.append((i, num / u[i], float(probe.cand[i]), bound / abs(u[i])))
        else:
            _localise(probe, u, part, found)


def check_tensor(spec: str, net: Network, cand: Gradients, name: str, *, model: np.ndarray, method: str, tol: dict, seed: int = 0) -> Comparison:
    """Fast-mode Comparison of one tensor of `cand` against the numeric engine."""
    theta = _tensor(net, name)
    probe = _Probe(net, name, cand.values[name].reshape(-1), model.reshape(-1), method, tol)
    rng = np.random.default_rng([seed, theta.size])
    found: list = []
    worst_disc = 0.0
    for _ in range(PROJECTIONS):
        u = rng.choice([-1.0, 1.0], size=theta.size) * rng.uniform(1.0, 2.0, size=theta.size)
        ok, num, c, bound = probe.project(u)
        worst_disc = max(worst_disc, abs(c - num) / max(float(np.sum(np.abs(u))), 1e-300))
        if not ok:
            _localise(probe, u, np.arange(theta.size), found)
            break
    base = dict(spec=spec, parameter=name, reference="numeric", candidate=cand.label, device=cand.device, dtype=cand.dtype,
                shape=tuple(theta.shape), size=int(theta.size), rtol=tol["rtol"], atol=tol["atol"], kinks=probe.kinks)
    note = f"fast mode: {probe.count} projections ({method})"
    if not found and probe.count > PROJECTIONS:
        note += "; a projection failed but bisection named no single element (errors spread thinly)"
        return Comparison(status="fail", max_abs_err=worst_disc, mismatched=0, note=note, **base)
    if not found:
        return Comparison(status="pass", max_abs_err=worst_disc, note=note, **base)
    found.sort(key=lambda f: -abs(f[2] - f[1]) / max(f[3], 1e-300))
    i, num, c, bound = found[0]
    index = tuple(int(j) for j in np.unravel_index(i, theta.shape))
    worst = [{"index": [int(j) for j in np.unravel_index(k, theta.shape)], "reference": n, "candidate": cc, "abs_err": abs(cc - n),
              "numeric_err": None, "bound": b} for k, n, cc, b in found[:5]]
    rel = max(abs(cc - n) / max(abs(cc), abs(n), 1e-300) for _, n, cc, _ in found)
    note += f"; {len(found)}{'+' if len(found) >= MAX_LOCALISED else ''} wrong element(s) named by bisection"
    return Comparison(status="fail", max_abs_err=max(abs(cc - n) for _, n, cc, _ in found), max_rel_err=rel, worst_index=index,
                      worst_reference=num, worst_candidate=c, mismatched=len(found), worst=worst, note=note, **base)


def projections_bound(n: int) -> int:
    """The documented budget: a single wrong element among n is named within this many projections."""
    return PROJECTIONS + 2 * math.ceil(math.log2(max(n, 2)))
