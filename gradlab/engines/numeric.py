"""The numeric engine: differences of the forward pass only, in float64, element by element.

It must stay a pure function of forward passes so that it can referee the other two.
Perturbations are evaluated as a stack (leading axis) in bounded chunks, so the network's
forward runs once per chunk instead of once per element.

Per element i with step h_i = c * max(|theta_i|, rms(theta), 1e-2):
  central     D(h)   = (f(+h) - f(-h)) / 2h                       truncation O(h^2)
  richardson  R      = (4 D(h/2) - D(h)) / 3                      truncation O(h^4)
The error estimate is |D(h/2) - D(h)| / 3 plus the rounding of the differences,
16 eps |f| / h. A stencil that straddles a kink or a jump is detected from the one-sided
slopes: on a smooth function the gap between forward and backward slopes shrinks in
proportion to h; across a kink it does not.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..gradients import INPUT, Gradients
from ..memory import NUMERIC_CHUNK_BYTES
from ..network import Network

EPS64 = np.finfo(np.float64).eps
# Relative step per method: balances truncation (h^2 or h^4) against rounding (eps/h).
DEFAULT_STEP = {"central": EPS64 ** (1 / 3), "richardson": 1e-4}
# The finite set of offsets (in units of h) each method evaluates.
STENCIL = (-1.0, -0.5, 0.5, 1.0)


def resolve_method(net: Network, method: str) -> str:
    return "richardson" if method == "auto" else method


def _steps(theta: np.ndarray, rel: float) -> np.ndarray:
    flat = theta.reshape(-1)
    rms = float(np.sqrt(np.mean(flat**2))) if flat.size else 0.0
    return rel * np.maximum(np.abs(flat), max(rms, 1e-2))


def _stacked_loss(net: Network, params: dict, name: str, theta: np.ndarray, idx: np.ndarray, offsets: np.ndarray, x, target) -> np.ndarray:
    """Loss with theta.flat[idx[p]] += offsets[p], for all p at once (a leading stack axis)."""
    p = len(idx)
    stack = np.broadcast_to(theta.reshape(-1), (p, theta.size)).copy()
    stack[np.arange(p), idx] += offsets
    # Pad so the stacked tensor broadcasts against (stack, batch, features).
    shape = (p,) + (1,) * max(0, 2 - theta.ndim) + theta.shape
    stack = stack.reshape(shape)
    if name == INPUT:
        y = net.forward(params, stack)
    else:
        y = net.forward({**params, name: stack}, x)
    return np.real(net.loss_of_output(y, target))


def _chunk_size(net: Network) -> int:
    width = max([net.x.shape[1]] + [getattr(l, "n_out", 0) for l in net.layers] + [getattr(l, "n_in", 0) + 1 for l in net.layers])
    biggest = max([p.size for p in net.params.values()] + [net.x.size])
    per_item = 8 * (net.batch * width * 4 + biggest)
    return int(max(1, min(4096, NUMERIC_CHUNK_BYTES // per_item)))


@dataclass(frozen=True)
class Derivative:
    """A numeric gradient with its own error estimate and the elements whose stencil hit a kink."""

    value: np.ndarray
    error: np.ndarray
    kinks: np.ndarray
    method: str


def _estimate(f0: float, f: np.ndarray, h: np.ndarray, method: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Value, error estimate and kink flags from the stencil values f[s] at offsets STENCIL[s] * h."""
    fm1, fmh, fph, fp1 = f
    d_h = (fp1 - fm1) / (2 * h)
    d_h2 = (fph - fmh) / h
    rounding = 16 * EPS64 * max(abs(f0), float(np.max(np.abs(f))) if f.size else 0.0) / h
    if method == "central":
        value, err = d_h, np.abs(d_h - d_h2) * 4 / 3 + rounding
    else:
        value, err = (4 * d_h2 - d_h) / 3, np.abs(d_h2 - d_h) / 3 + rounding
    # One-sided slopes at h and h/2: smooth => gap(h) = 2 gap(h/2) + O(h^3); a kink breaks that.
    gap_h = (fp1 - f0) / h - (f0 - fm1) / h
    gap_h2 = (fph - f0) / (h / 2) - (f0 - fmh) / (h / 2)
    kink = np.abs(gap_h - 2 * gap_h2) > 8 * rounding + 1e-3 * np.abs(gap_h)
    return value, err, kink


def gradient_of(
    f: Callable[[np.ndarray], float | np.ndarray],
    x: np.ndarray,
    *,
    method: str = "richardson",
    step: float | None = None,
    batched: bool = False,
    chunk: int = 1024,
) -> Derivative:
    """df/dx of a scalar function by differences of f alone, kink-aware, in float64.

    `f(x)` returns a float. With `batched=True`, `f` takes a stack of shape (P, *x.shape)
    and returns P values, which is much faster for vectorised code. Used by the audit of
    users' ops, whose forward gradlab does not control.
    """
    method = "richardson" if method == "auto" else method
    x = np.asarray(x, dtype=np.float64)
    h = _steps(x, step or DEFAULT_STEP[method])
    flat = x.reshape(-1)
    n = flat.size
    f0 = float(np.real(f(x[None])[0] if batched else f(x)))
    vals = np.empty((len(STENCIL), n))
    for start in range(0, n, chunk if batched else n):
        idx = np.arange(start, min(n, start + (chunk if batched else n)))
        for s, off in enumerate(STENCIL):
            if batched:
                stack = np.broadcast_to(flat, (len(idx), n)).copy()
                stack[np.arange(len(idx)), idx] += off * h[idx]
                vals[s, idx] = np.real(np.asarray(f(stack.reshape((len(idx),) + x.shape)), dtype=float))
            else:
                for i in idx:
                    xp = flat.copy()
                    xp[i] += off * h[i]
                    vals[s, i] = float(np.real(f(xp.reshape(x.shape))))
    value, err, kink = _estimate(f0, vals, h, method)
    return Derivative(value.reshape(x.shape), err.reshape(x.shape), kink.reshape(x.shape), method)


def differentiate(
    net: Network,
    *,
    method: str = "auto",
    step: float | None = None,
    wrt_input: bool = False,
    names: list[str] | None = None,
    progress: Callable[[int], None] | None = None,
) -> Gradients:
    """Numeric gradients of the network's loss w.r.t. every element of every parameter."""
    t0 = time.perf_counter()
    method = resolve_method(net, method)
    rel = step or DEFAULT_STEP[method]
    params, x, target = net.cast(np.float64)
    f0 = float(np.real(net.loss_of_output(net.forward(params, x), target)))
    tensors = {k: params[k] for k in (names or list(params))}
    if wrt_input:
        tensors[INPUT] = x
    chunk = _chunk_size(net)
    values, errors, kinks = {}, {}, {}
    for name, theta in tensors.items():
        h = _steps(theta, rel)
        n = theta.size
        f = np.empty((len(STENCIL), n))
        for start in range(0, n, chunk):
            idx = np.arange(start, min(n, start + chunk))
            for s, off in enumerate(STENCIL):
                f[s, idx] = _stacked_loss(net, params, name, theta, idx, off * h[idx], x, target)
            if progress:
                progress(len(idx))
        value, err, kink = _estimate(f0, f, h, method)
        values[name] = value.reshape(theta.shape)
        errors[name] = err.reshape(theta.shape)
        kinks[name] = kink.reshape(theta.shape)
    return Gradients("numeric", "cpu", "float64", values, error=errors, kinks=kinks, method=method, seconds=time.perf_counter() - t0)
