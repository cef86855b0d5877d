"""The numeric engine: differences of the forward pass only, in float64.

It is the referee between the analytic and autograd engines, so it never calls a backward.

Methods (per element, step h chosen from the error model below):
  central       D(h) = (f(x+h) - f(x-h)) / 2h            truncation ~ h^2 f'''/6, rounding ~ eps |f| / h
  richardson    R = (4 D(h/2) - D(h)) / 3                truncation ~ h^4, error estimate |D(h/2) - D(h)| / 3
  complex_step  Im f(x + i h) / h, h = 1e-20 scale        no subtraction; error measured against D(1.5 h)
  auto          complex_step when every op is complex-safe (kinks and normalisations included), else richardson
Steps: h = c * max(|x|, rms(x over the tensor), 1e-2) with c = eps^(1/3) (central), 2e-4
(richardson: balances h^4 against eps/h) or 1e-20 (complex step).

Speed: the loss is a sum of per-sample losses and every layer acts on each sample's row
alone, so perturbing one weight W[j, k] only moves the pre-activation u[b, j] of unit j in
each sample b. The engine therefore differentiates the per-sample loss with respect to each
unit u[b, j] (B * units perturbations per layer instead of one per weight), reusing the
forward pass up to that layer: the perturbed unit goes through its activation, the next
layer's row changes by a rank-1 update (the change times one column of W), and only that
row is carried on to the loss -- many perturbations at once, in bounded chunks. Because u is
linear in W, dL/dW[j, k] = sum_b x[b, k] dL/du[b, j] exactly (bias: sum_b dL/du[b, j]), with
the error estimates carried along. A few elements per tensor are also differenced directly
(perturbing the weight itself and running the real forward pass); if they disagree with the
structured result the whole tensor falls back to direct per-element differences. Trainable
activation hyperparameters and layers without this row structure always use the direct path.

Attention (and any op that declares `inner_sites`): its q, k, v and output projections are sites affine in
their weights; the loss is differenced w.r.t. each site unit through the op's own contraction of its moved
output with dL/dy (one score row or column of one head), and the weights follow by linearity.

The complex step through kinks and normalisations (issue 23): the real part of every value stays exact, so a
relu, hardtanh or max-pool takes the branch of the unperturbed point and the imaginary part carries that
branch's derivative, exact away from the kink. During complex-step evaluations the layers with kinks report
the perturbations that move a unit within rounding of one (network.KinkWatch); those elements get real
differences (the treatment below), the rest keep the complex step's answer. Its error is measured, not assumed:
a second step 1.5 h rounds the tangent differently and holds the truncation (see _complex_step_error).

Kinks: an element is flagged when its real stencil straddles a point where the forward pass is
not differentiable -- detected without being told, from one-sided slopes (on a smooth function
the gap between forward and backward slopes shrinks in proportion to h; across a kink or a
jump it does not; a candidate is differenced again with a 4x wider step, where a kink stays and a
burst of rounding shrinks) -- or when a unit it influences sits on a declared kink of an op within the
rounding of the network's dtype (branch tracking; the only test the complex step needs).
Rounding noise: measured from the fourth differences of the other elements that share the same
loss, floored by eps times the scale of the loss's inputs (y and t), never assumed to be eps |f|.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..errors import GradlabError
from ..gradients import INPUT, Gradients
from ..memory import NUMERIC_CHUNK_BYTES
from ..network import _WATCHES, ActivationLayer, DenseLayer, Network, OpLayer, ResidualLayer, watching
from ..ops import dense as dense_op

EPS64 = np.finfo(np.float64).eps
METHODS = ("central", "richardson", "complex_step")
DEFAULT_STEP = {"central": EPS64 ** (1 / 3), "richardson": 2e-4, "complex_step": 1e-20}
REAL_STENCIL = (-1.0, -0.5, 0.5, 1.0)  # offsets in units of h for central and richardson
SPOT_CHECKS = 6  # direct per-element differences per tensor that vouch for the structured path
# The rounding noise of f is measured, not assumed as eps |f|: a loss summed from large terms (a confident
# softmax: log-sum-exp of logits ~ 70 minus the target logit, f ~ 1e-9) carries the rounding of those terms.
# Elements that share f's computation (the units of one sample at one site, the elements of one tensor) pool
# the fourth differences of their stencils; a lone element differences a wider table (More & Wild,
# "Estimating computational noise", 2011).
NOISE_OFFSETS = np.arange(-4.0, 5.0)  # a lone element's table, in units of h / 2
KINK_CONFIRM = 4.0  # a kink candidate is differenced again with this many times its step
STEP_RATIO = 1.5  # the complex step's second step, in units of h: not a power of two, so its tangent rounds differently


_MALLOC_TUNED = False


def _keep_freed_memory() -> None:
    """Ask glibc to keep freed blocks instead of handing each large array back to the kernel.

    The engine allocates and frees arrays of a few MiB thousands of times (a chunk of perturbations through a
    layer); with glibc's defaults each one is a fresh mmap whose pages fault in again, which doubled the
    time of a transformer block's check (30 s -> 47 s, measured). Peak memory is unchanged: only the return of
    freed memory to the system is deferred. Elsewhere (not glibc) this does nothing.
    """
    global _MALLOC_TUNED
    if _MALLOC_TUNED:
        return
    _MALLOC_TUNED = True
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-1, 512 * 2**20)  # M_TRIM_THRESHOLD: keep up to 512 MiB of freed heap
        libc.mallopt(-3, 32 * 2**20)  # M_MMAP_THRESHOLD: blocks below 32 MiB come from the heap, not mmap
    except (OSError, AttributeError):
        pass


def resolve_method(net: Network, method: str) -> str:
    layers = net.all_layers()
    acts = [l for l in layers if isinstance(l, ActivationLayer) and not l.op.complex_safe]
    unsafe = [l.op.name for l in acts]
    unsafe += [net.loss_op.name] if not net.loss_op.complex_safe else []
    # a residual block is as safe as its members, which are listed themselves
    others = [repr(l) for l in layers if not isinstance(l, (DenseLayer, ActivationLayer, ResidualLayer)) and not l.complex_safe]
    unsafe += others
    if unsafe and len(unsafe) == len(acts) and _complex_safe_here(net, acts):
        unsafe = []
    if method == "auto":
        return "richardson" if unsafe else "complex_step"
    if method == "complex_step" and unsafe:
        raise GradlabError(f"method complex_step needs complex-safe ops, but {', '.join(unsafe)} is not (declare complex_safe = True, or use richardson)")
    if method not in METHODS:
        raise GradlabError(f"unknown numeric method {method!r}; expected auto, {', '.join(METHODS)}")
    return method


PROBE_RTOL = 1e-6  # how closely a probed activation's complex step must match a central difference of its real forward


def _complex_safe_here(net: Network, acts) -> bool:
    """Whether activations that do not declare `complex_safe` (a user's op) are complex-safe *at this point*:
    N-d networks only, elementwise ops without trainable hyperparameters. Each is called at its inputs of the
    float64 forward pass moved by an imaginary step: the real part must be its real forward and Im f / h must
    match a central difference of the real forward at every unit. The complex step's evaluations all sit at
    these very real points (it moves imaginary parts only), so an op that passes behaves there as probed. An
    op that fails, raises, returns a real array or sits on an undeclared kink (the two disagree there) leaves
    the network to real differences, as before."""
    if net.flat or not all(l.op.elementwise and not l.trainable for l in acts):
        return False
    cached = getattr(net, "_complex_probe", None)
    if cached is not None:
        return cached
    params, x, _ = net.cast(np.float64)
    wanted = {id(l) for l in acts}
    inputs: dict[int, list] = {}

    ok = True
    try:
        with np.errstate(all="ignore"):
            for layer, h in _with_inputs(net.layers, params, x):
                if id(layer) in wanted:
                    inputs.setdefault(id(layer), []).append(h)
            for layer in acts:
                for z in inputs.get(id(layer), []):
                    hp = layer.hyper(params)
                    f0 = np.asarray(layer.op.forward(z, hp))
                    h = DEFAULT_STEP["complex_step"] * np.maximum(np.abs(z), 1e-2)
                    fc = np.asarray(layer.op.forward(z + 1j * h, hp))
                    s = 1e-6 * np.maximum(np.abs(z), 1.0)
                    central = (np.asarray(layer.op.forward(z + s, hp)) - np.asarray(layer.op.forward(z - s, hp))) / (2 * s)
                    if not np.iscomplexobj(fc) or fc.shape != f0.shape:
                        ok = False
                        break
                    dc = np.imag(fc) / h
                    scale = float(np.max(np.abs(central))) if central.size else 0.0
                    # the real part may round differently (a complex tanh is another algorithm), not more
                    if not (np.all(np.abs(np.real(fc) - f0) <= 64 * EPS64 * (np.abs(f0) + np.abs(z)) + 1e-300)
                            and np.all(np.abs(dc - central) <= PROBE_RTOL * (np.abs(central) + 1e-3 * scale) + 1e-12 * (np.abs(f0) + 1e-300) / s)):
                        ok = False
                        break
                if not ok:
                    break
    except Exception:  # the op cannot take complex input (its error is reported where the real path calls it)
        ok = False
    net._complex_probe = ok
    return ok


def steps(x: np.ndarray, rel: float) -> np.ndarray:
    """Per-element step: relative to the element, floored by the tensor's RMS (zeros need a step too)."""
    flat = np.abs(np.real(x)).reshape(-1)
    rms = float(np.sqrt(np.mean(flat**2))) if flat.size else 0.0
    return rel * np.maximum(flat, max(rms, 1e-2))


@dataclass(frozen=True)
class Derivative:
    """A numeric gradient with its own error estimate and the elements whose stencil hit a kink."""

    value: np.ndarray
    error: np.ndarray
    kinks: np.ndarray
    method: str


def noise_level(table: np.ndarray) -> np.ndarray:
    """Standard deviation of the rounding noise of f, from f at equally spaced points (axis 0).

    For independent noise of standard deviation s, the k-th differences have variance s^2 (2k)! / (k!)^2;
    the largest of the estimates from orders 4 to 6 is kept (a smooth part only makes it larger).
    """
    d = np.real(np.asarray(table))
    sigma = np.zeros(d.shape[1:])
    for k in range(1, 7):
        d = np.diff(d, axis=0)
        if k >= 4:
            gamma = math.factorial(k) ** 2 / math.factorial(2 * k)
            sigma = np.maximum(sigma, np.sqrt(gamma * np.mean(d**2, axis=0)))
    return np.nan_to_num(sigma, nan=0.0, posinf=0.0)


def _fourth(f0, f: np.ndarray) -> np.ndarray:
    """The fourth difference of a stencil (spacing h/2): noise, a kink, or h^4 f''''/16."""
    fm1, fmh, fph, fp1 = f
    return fp1 + fm1 - 4 * (fph + fmh) + 6 * f0


def pooled_noise(d4: np.ndarray) -> np.ndarray:
    """Noise of f for each element from the *other* elements' fourth differences (the last axis shares f).

    Leaving the element out keeps a kink from hiding itself; var(fourth difference) = 70 var(noise).
    """
    k = d4.shape[-1]
    if k < 2:
        return np.zeros(d4.shape)
    sq = d4**2
    others = (np.sum(sq, axis=-1, keepdims=True) - sq) / (k - 1)
    return np.sqrt(np.maximum(others, 0.0) / 70.0)


def _estimate_real(f0, f: np.ndarray, h: np.ndarray, method: str, noise=0.0):
    """Value, error estimate and kink flags from stencil values f[s] at offsets REAL_STENCIL[s] * h.

    `noise`: the measured standard deviation of f's rounding noise; eps |f| is the floor.
    """
    fm1, fmh, fph, fp1 = f
    d_h = (fp1 - fm1) / (2 * h)
    d_h2 = (fph - fmh) / h
    rounding = 16 * np.maximum(EPS64 * np.maximum(np.abs(f0), np.max(np.abs(f), axis=0)), noise) / h
    if method == "central":
        value, err = d_h, np.abs(d_h - d_h2) * 4 / 3 + rounding
    else:
        value, err = (4 * d_h2 - d_h) / 3, np.abs(d_h2 - d_h) / 3 + rounding
    # One-sided slopes at h and h/2: smooth => gap(h) = 2 gap(h/2) + h^3 f(4)/16; across a kink the
    # residual is the jump in slope, which does not shrink with h. Small residuals (an inflection
    # point, a kink too slight to matter) are not flagged but widen the error estimate instead.
    gap_h = (fp1 - f0) / h - (f0 - fm1) / h
    gap_h2 = (fph - f0) / (h / 2) - (f0 - fmh) / (h / 2)
    residual = np.abs(gap_h - 2 * gap_h2)
    kink = residual > 8 * rounding + 1e-3 * np.abs(gap_h) + 1e-6 * np.abs(value)
    return value, err + 0.5 * residual, kink


def _complex_step_error(value, other, axis=None):
    """The complex step's error, measured: D(h) against D(STEP_RATIO h) (`other`).

    Their difference holds the truncation, (STEP_RATIO^2 - 1) h^2 f(3) / 6 (all there is where the derivative
    is exactly zero: 0.5 silu(b)^2 at b = 0 gives -h^2 / 8), and the rounding of the tangent: the imaginary
    parts are a forward-mode derivative computed in float64, rounded at the scale of the terms it sums, which
    can be far above a few ulps of the result (a normalisation: O(1) terms cancel; pure-noise attention
    gradients of 1e-22). A step that is not a power of two times h rounds those terms differently, so the
    difference samples that rounding; its RMS over `axis` (elements that share the computation) keeps an
    element whose two roundings happened to agree from claiming none. A few ulps of the value is the floor.
    """
    d = np.abs(np.asarray(other) - np.asarray(value))
    if not d.size:
        return 64 * EPS64 * np.abs(value)
    # NaN in `other`: not evaluated (see _second_step_sample); such an element takes its group's largest
    keep = axis is not None
    with np.errstate(all="ignore"):
        rms = np.sqrt(np.nanmean(d**2, axis=axis, keepdims=keep))
        top = np.nanmax(d, axis=axis, keepdims=keep)
    d = np.where(np.isnan(d), top, d)
    return 64 * EPS64 * np.abs(value) + 3 * d + 3 * rms


SECOND_STEP_SAMPLE = 64  # elements per group that get the second complex step (the rest take the group's largest)


def _second_step_sample(groups: int, width: int) -> np.ndarray:
    """(groups * width,) bool: every k-th element of each group of `width`, at most SECOND_STEP_SAMPLE of them.

    The second step measures the rounding of the tangent and the truncation; elements sharing a loss (the units
    of one sample, the elements of one tensor) share its scale, so a strided sample of them sizes it for all:
    an unsampled element is given the group's largest measured difference, besides the group's RMS. Halves the
    complex step's evaluations wherever groups are larger than the sample."""
    stride = max(1, -(-width // SECOND_STEP_SAMPLE))
    one = np.zeros(width, bool)
    one[::stride] = True
    return np.tile(one, groups)


def differences(evaluate: Callable[[np.ndarray], np.ndarray], h: np.ndarray, f0, method: str, noise=0.0):
    """(value, error, kink) for each element, given `evaluate(offsets) -> f at x + offsets`."""
    if method == "complex_step":
        value = np.imag(evaluate(1j * h)) / h
        other = np.imag(evaluate(STEP_RATIO * 1j * h)) / (STEP_RATIO * h)
        return value, _complex_step_error(value, other), np.zeros(value.shape, bool)
    f = np.stack([np.real(evaluate(s * h)) for s in REAL_STENCIL])
    return _estimate_real(f0, f, h, method, noise)


def _suspects_by_real_differences(evaluate_some, sel, f0, h, floor, chunk: int):
    """Richardson differences (value, error, kink) for the elements `sel` of a complex-step evaluation that
    moved a unit on a kink (see network.KinkWatch): the treatment every element had before the complex step
    went through kinks -- the stencil's one-sided slopes judge whether the kink is within reach.
    `evaluate_some(sel, offsets)`: f with element sel[p] moved by offsets[p]; `h` the real steps of sel."""

    def some(part, off):
        out = [np.real(evaluate_some(part[s:s + chunk], off[s:s + chunk])) for s in range(0, len(part), chunk)]
        return np.concatenate(out) if out else np.zeros(0)

    f = np.stack([some(sel, s * h) for s in REAL_STENCIL])
    noise = pooled_noise(_fourth(f0, f)[None, :])[0] if len(sel) > 1 else np.zeros(len(sel))
    noise = np.maximum(noise, floor)
    value, err, kink = _estimate_real(f0, f, h, "richardson", noise)
    kink = _confirm_kinks(lambda s2, off: some(sel[s2], off), f0, h, "richardson", noise, kink)
    return value, err, kink


def _stencil(evaluate: Callable[[np.ndarray], np.ndarray], h: np.ndarray) -> np.ndarray:
    return np.stack([np.real(evaluate(s * h)) for s in REAL_STENCIL])


def _confirm_kinks(evaluate_some, f0, h, method: str, noise, kink: np.ndarray) -> np.ndarray:
    """Difference each kink candidate again with KINK_CONFIRM times its step; keep those that stay kinks.

    Across a kink the one-sided slopes differ by the jump at any step that straddles it, so the residual
    does not shrink; a burst of rounding (a loss that moved by one unit in the last place of a large
    intermediate) is the same few ulps at every step, so its residual falls as 1/h.
    `evaluate_some(sel, offsets)` evaluates the elements `sel` only.
    """
    sel = np.flatnonzero(kink)
    if sel.size == 0:
        return kink
    f0s = f0[sel] if np.ndim(f0) else f0
    ns = noise[sel] if np.ndim(noise) else noise
    wide = KINK_CONFIRM * h[sel]
    f = np.stack([np.real(evaluate_some(sel, s * wide)) for s in REAL_STENCIL])
    _, _, again = _estimate_real(f0s, f, wide, method, ns)
    out = np.zeros_like(kink)
    out[sel] = again
    return out


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
    and returns P values, which is much faster for vectorised code. `complex_step` needs an
    `f` that is complex-safe. Used by the audit of users' ops, whose forward gradlab does not control.
    """
    method = "richardson" if method == "auto" else method
    x = np.asarray(x, dtype=np.float64)
    h = steps(x, step or DEFAULT_STEP[method])
    flat = x.reshape(-1)
    n = flat.size
    f0 = float(np.real(f(x[None])[0] if batched else f(x)))
    value, err, kink = np.empty(n), np.empty(n), np.empty(n, bool)
    size = chunk if batched else n
    for start in range(0, n, max(1, size)):
        idx = np.arange(start, min(n, start + size))

        def evaluate(off, idx=idx):
            if batched:
                stack = np.broadcast_to(flat, (len(idx), n)).astype(np.result_type(flat, off))
                stack[np.arange(len(idx)), idx] += off
                return np.asarray(f(stack.reshape((len(idx),) + x.shape)))
            out = np.empty(len(idx), dtype=np.result_type(float, off))
            for p, i in enumerate(idx):
                xp = flat.astype(out.dtype)
                xp[i] += off[p]
                out[p] = f(xp.reshape(x.shape))
            return out

        value[idx], err[idx], kink[idx] = differences(evaluate, h[idx], f0, method)
    return Derivative(value.reshape(x.shape), err.reshape(x.shape), kink.reshape(x.shape), method)


# --- the network ---------------------------------------------------------------------------------


def _moved_row(values, b, j, off):
    """(rows, r): the row r[p] = j[p] // features of sample b[p] of `values` (batch, ..., features), with its
    unit j[p] % features moved by off[p] -- for a site after which everything acts row by row."""
    u = values.shape[-1]
    r, c = j // u, j % u
    rows = values.reshape(values.shape[0], -1, u)[b, r].astype(np.result_type(values, off))
    rows[np.arange(len(b)), c] += off
    return rows, r


def _one_row(rows, ndim: int) -> np.ndarray:
    """Rows (P, features) as a batch of P samples of one row each, (P, 1, ..., 1, features) with `ndim` axes:
    a row-wise layer must see its input's rank (a layernorm after a conv2d reads (C, H, W), not (T, D))."""
    return rows.reshape((rows.shape[0],) + (1,) * (ndim - 2) + rows.shape[-1:])


def _moved_unit(layer, before, after, b, j, v):
    """The layer's moved_unit (network.py: one input unit moves one output unit), or None for layers without one."""
    moved_unit = getattr(layer, "moved_unit", None)
    return moved_unit(before, after, b, j, v) if moved_unit is not None else None


def _with_unit(values, b, j, v):
    """The rows of samples b of `values` with flattened unit j[p] of row p set to v[p]."""
    rows = values[b].astype(np.result_type(values, v))
    rows.reshape(len(b), -1)[np.arange(len(b)), j] = v
    return rows


def _moved_units(before, after, layer, b, j, off):
    """(rows, applied): the rows of samples b with flattened unit j of `before` moved by off. When `layer`
    (the next one) moves one unit for it (layer.moved_unit), it is applied to that unit alone and the rows
    are its output `after` with that unit replaced (applied=True); otherwise the moved input rows (False)."""
    v = before[b].reshape(len(b), -1)[np.arange(len(b)), j] + off
    moved = _moved_unit(layer, before, after, b, j, v)
    if moved is not None:
        return _with_unit(after, b, *moved), True
    return _with_unit(before, b, j, v), False


def _loss_conditioning(net: Network, y: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(B,) sum over each sample's outputs of |dL_b/dy| |y|, from the loss's forward alone (the complex step
    where the loss is complex-safe, else central differences): how far relative rounding of y moves the loss.

    The loss acts on rows (the output's last axis); each row's loss is evaluated on its own, with one output
    feature moved in every row at once, so this costs as many loss evaluations as there are features.
    """
    B, f = y.shape[0], target.shape[-1]
    rows = net.as_rows(y).reshape(B, -1, 1, f)  # (B, R, 1, F): a loss sums its last two axes, so each row alone
    t = net.as_rows(target).reshape(rows.shape)
    h = 1e-20 if net.loss_op.complex_safe else 1e-7
    step = h * np.maximum(np.abs(rows), 1e-300)
    out = np.zeros(rows.shape[:2] + (f,))
    with np.errstate(all="ignore"):
        for k in range(f):
            if net.loss_op.complex_safe:
                moved = rows.astype(complex)
                moved[..., k] += 1j * step[..., k]
                slope = np.imag(net.loss_op.forward(moved, t)) / step[..., 0, k]
            else:
                ends = []
                for sign in (1.0, -1.0):
                    moved = rows.copy()
                    moved[..., k] += sign * step[..., k]
                    ends.append(net.loss_op.forward(moved, t))
                slope = (ends[0] - ends[1]) / (2 * step[..., 0, k])
            out[..., k] = np.abs(slope) * np.abs(rows[..., 0, k])
    out = np.where(np.isfinite(out), out, 0.0)
    return out.reshape(B, -1).sum(axis=-1) * net.loss_scale


@dataclass
class _Base:
    """One float64 forward pass of the network, kept for reuse by every perturbation."""

    net: Network
    params: dict
    target: np.ndarray
    hs: list  # hs[l]: input of layer l; hs[-1]: the output
    row_loss: np.ndarray  # per-sample loss (B,)
    near_kink: dict = field(default_factory=dict)  # layer index -> (B, width) bool: on a declared kink within rounding
    quiet: frozenset = frozenset()  # id() of N-d layers with kinks that no unit is near at this point (see _quiet_layers)
    _row_losses: np.ndarray | None = None
    loss_floor: np.ndarray | None = None  # (B,) the rounding a loss adds by working on its inputs' scale

    def __post_init__(self):
        # A loss is computed from y and t: its last unit in the place is that of their scale, not of f
        # (-log softmax of logits ~ 70 is m + log(sum) - y_t: f ~ 1e-9 rounded to ulp(70) ~ 1e-14).
        # And the loss moves by |dL/dy| eps |y| when its inputs y round: far more than eps |f| where the loss
        # is ill-conditioned (-log(1 - p) at p = 1 - 3.6e-8 moves by 3e-9 per ulp of p). Such noise can be a
        # sawtooth whose fourth differences vanish on a stencil and whose slope biases every difference.
        B = self.target.shape[0]
        y, t = np.abs(np.real(self.hs[-1])).reshape(B, -1), np.abs(np.real(self.target)).reshape(B, -1)
        scale = self.net.loss_scale
        self.loss_floor = EPS64 * (np.abs(np.real(self.row_loss)) + scale * (y.sum(axis=-1) + t.sum(axis=-1))
                                   + _loss_conditioning(self.net, np.real(self.hs[-1]), np.real(self.target)))

    @property
    def n_layers(self) -> int:
        return len(self.net.layers)

    def watch(self, n: int):
        """A KinkWatch over n rows of complex-step evaluations (see network.KinkWatch): N-d networks. The seeds'
        dense networks track their declared kinks per unit instead (`near_kink`, `_site_kinks`)."""
        return _unwatched(n) if self.net.flat else watching(n, float(np.finfo(self.net.dtype).eps), self.quiet)

    @property
    def batch_workspace(self) -> int:
        return self.net.workspace() * self.target.shape[0]

    def rows_loss(self, start: int, rows: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Per-sample loss of the rows `rows` (P, *sample shape) entering layer `start`, sample b[p] each.

        The rows go through the layers as a batch of P samples (only sound where no layer from `start` on
        mixes the batch); per-sample constants such as dropout masks follow `b`.
        """
        h = rows
        for layer in self.net.layers[start:]:
            h = layer.forward(self.params, h, b)
        if self.net.flat:
            return self.net.loss_of_output(h[:, None, :], self.target[b][:, None, :])
        rows = self.net.as_rows
        return self.net.loss_op.forward(rows(h)[:, None], rows(self.target[b])[:, None])[:, 0] * self.net.loss_scale

    def rowwise_from(self, start: int) -> bool:
        """Whether every layer from `start` on acts on the last axis row by row (dense, activations, layernorm
        over the last axis, blocks of those), on an output with positions: then a perturbed unit moves one row."""
        if len(self.target.shape) < 3:
            return False
        return all(getattr(l, "rowwise", False) and l.supports_stacking for l in self.net.layers[start:])

    @property
    def row_losses(self) -> np.ndarray:
        """Each output row's loss, (batch, rows)."""
        if self._row_losses is None:
            rows = self.net.as_rows
            y, t = rows(self.hs[-1])[:, :, None], rows(self.target)[:, :, None]
            self._row_losses = self.net.loss_op.forward(y, t) * self.net.loss_scale
        return self._row_losses

    def row_rest(self, start: int, rows: np.ndarray, b: np.ndarray, r: np.ndarray) -> np.ndarray:
        """Per-sample loss when only row r[p] of sample b[p] changed, to `rows` (P, features) entering layer
        `start`: the other rows' losses are the base pass's."""
        h = _one_row(rows, self.hs[start].ndim)
        for layer in self.net.layers[start:]:
            h = layer.forward(self.params, h)
        t = self.net.as_rows(self.target)[b, r][:, None, :]
        new = self.net.loss_op.forward(h.reshape(t.shape), t) * self.net.loss_scale
        return self.row_loss[b] - self.row_losses[b, r] + new

    def carried(self, l: int, b: np.ndarray, j: np.ndarray, v: np.ndarray):
        """(start, j, v): unit j[p] of hs[start][b[p]] takes the value v[p], everything else as in the base pass,
        after unit j[p] of hs[l][b[p]] took v[p] -- carried through the layers that move one unit for one (their
        `moved_unit`: elementwise activations, flatten, pools with disjoint windows) up to the first that moves more."""
        start = l
        while start < self.n_layers:
            moved = _moved_unit(self.net.layers[start], self.hs[start], self.hs[start + 1], b, j, v)
            if moved is None:
                break
            j, v = moved
            start += 1
        return start, j, v

    def rank_one_loss(self, d: int, b: np.ndarray, j: np.ndarray, change: np.ndarray) -> np.ndarray:
        """Per-sample loss when input unit j[p] of dense layer d changes by change[p] in sample b[p]: the layer's
        output row changes by that times one row of its (in, out) weight, and the rest runs from there."""
        dense = self.net.layers[d]
        w = dense_op.as_in_out(self.params[dense.weight], dense.layout)
        return self.rows_loss(d + 1, self.hs[d + 1][b] + change[:, None] * w[j], b)

    def site_loss(self, l: int, b: np.ndarray, j: np.ndarray, off: np.ndarray) -> np.ndarray:
        """Per-sample loss after hs[l][b[p], j[p]] += off[p] (j indexes the flattened sample), for all p at once."""
        layers, hs, L = self.net.layers, self.hs, self.n_layers
        if not self.net.flat and hs[l].ndim >= 3 and self.rowwise_from(l):
            rows, r = _moved_row(hs[l], b, j, off)
            return self.row_rest(l, rows, b, r)
        if not self.net.flat:
            start, j, v = self.carried(l, b, j, hs[l][b].reshape(len(b), -1)[np.arange(len(b)), j] + off)
            layer = layers[start] if start < L else None
            if isinstance(layer, DenseLayer) and hs[start].ndim == 2:  # one input unit: a rank-1 change of its output
                return self.rank_one_loss(start, b, j, v - hs[start][b, j])
            return self.rows_loss(start, _with_unit(hs[start], b, j, v), b)
        if l + 1 < L and isinstance(layers[l], ActivationLayer) and layers[l].op.elementwise and not layers[l].trainable and isinstance(layers[l + 1], DenseLayer):
            act = layers[l]
            a_new = act.op.forward((hs[l][b, j] + off)[:, None], act.fixed)[:, 0]
            return self.rank_one_loss(l + 1, b, j, a_new - hs[l + 1][b, j])
        if l < L and isinstance(layers[l], DenseLayer):
            return self.rank_one_loss(l, b, j, off)
        rows = hs[l][b].astype(np.result_type(hs[l], off))
        rows[np.arange(len(b)), j] += off
        return self.rows_loss(l, rows, b)


class _unwatched:
    def __init__(self, n: int):
        self.flags = np.zeros(n, bool)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


def _quiet_layers(net: Network, params: dict, x: np.ndarray) -> frozenset:
    """id() of the layers with kinks (nested ones too) none of whose units sits within twice the watch's radius
    of a kink at the base point, the radius taken at the scale of the whole batch: the complex step leaves real
    parts where they are (up to O(h^2)), so no evaluation can bring a unit near a kink there -- those layers
    need no watching (the common case; watching a max-pool costs as much as the pool)."""
    quiet = set()
    eps = float(np.finfo(net.dtype).eps)
    rng = np.random.default_rng(0)
    with np.errstate(all="ignore"):
        for layer, h in _with_inputs(net.layers, params, x):
            if getattr(getattr(layer, "op", None), "kinks", None) and layer.complex_safe:
                with watching(1, 2 * eps) as probe:  # every unit moving, each with its own tangent
                    layer.forward(params, (h + 1j * rng.uniform(1.0, 2.0, h.shape))[None])
                if not probe.flags.any():
                    quiet.add(id(layer))
    return frozenset(quiet)


def _with_inputs(layers, params: dict, h: np.ndarray):
    """(layer, its input) for every layer but a residual block, its members and projection included, in forward order."""
    for layer in layers:
        if isinstance(layer, ResidualLayer):
            yield from _with_inputs(layer.layers, params, h)
            if layer.projection is not None:
                yield from _with_inputs([layer.projection], params, h)
        else:
            yield layer, h
        h = layer.forward(params, h)


def _base_pass(net: Network, params: dict, x: np.ndarray, target: np.ndarray) -> _Base:
    hs = [x]
    for layer in net.layers:
        hs.append(layer.forward(params, hs[-1]))
    base = _Base(net, params, target, hs, net.sample_losses(hs[-1]))
    if not net.flat:
        base.quiet = _quiet_layers(net, params, x)
    eps_net = float(np.finfo(net.dtype).eps)
    for m, layer in enumerate(net.layers if net.flat else ()):
        if isinstance(layer, ActivationLayer) and layer.op.kink_points(layer.hyper(params)):
            prev = net.layers[m - 1] if m else None
            if isinstance(prev, DenseLayer):
                xa = dense_op.augment(np.abs(hs[m - 1]), prev.bias)
                mag = xa @ np.abs(dense_op.as_in_out(params[prev.weight], prev.layout))
                mag = mag + (np.abs(params[prev.bias_name]) if prev.bias_name else 0)
                radius = 8 * np.sqrt(xa.shape[-1]) * eps_net * mag
            else:
                radius = 8 * eps_net * np.abs(hs[m])
            z = np.real(hs[m])
            near = np.zeros(z.shape, bool)
            for k in layer.op.kink_points(layer.hyper(params)):
                near |= np.abs(z - k) <= radius + 4 * EPS64 * max(1.0, abs(k))
            base.near_kink[m] = near
    return base


def _site_kinks(base: _Base, l: int) -> np.ndarray:
    """Units of site l whose perturbation reaches a unit sitting on a declared kink."""
    shape = (base.hs[l].shape[0], base.hs[l][0].size)
    own = base.near_kink.get(l, np.zeros(shape, bool))
    if l < base.n_layers and l in base.near_kink and not base.net.layers[l].op.elementwise:
        own = np.repeat(own.any(axis=1, keepdims=True), shape[1], axis=1)
    downstream = np.zeros(shape[0], bool)
    for m, near in base.near_kink.items():
        if m > l:
            downstream |= near.any(axis=1)
    return own | downstream[:, None]


def _site_derivative(base: _Base, l: int, method: str, rel: float, tick: Callable[[float], None] | None = None):
    """dL/dh_l[b, j] for every sample b and unit j of the input of top-level layer l."""
    return _unit_derivative(base, base.hs[l], lambda b, j, off: base.site_loss(l, b, j, off), method, rel, tick, _site_kinks(base, l))


def _unit_derivative(base: _Base, values, site_loss, method: str, rel: float, tick, site_kinks):
    """d(sample b's loss)/d(values[b, j]) for every sample b and flattened unit j, by differences of
    `site_loss(b, j, off)`: the per-sample loss after values[b[p], j[p]] += off[p], for all p at once."""
    H = values.reshape(values.shape[0], -1)
    B, w_ = H.shape
    n = B * w_
    b_all, j_all = np.repeat(np.arange(B), w_), np.tile(np.arange(w_), B)
    h = steps(H, rel)
    width = max(max(x[0].size for x in base.hs), base.net.workspace()) + 1
    # bytes per perturbation: a complex row through the widest layer; the seeds' dense networks keep the
    # 4x slack the memory estimate was measured with, N-d networks count their layers' workspace instead
    chunk = max(1, NUMERIC_CHUNK_BYTES // ((16 * 4 if base.net.flat else 16 * 2) * width))
    value, err, kink = np.empty(n), np.empty(n), np.zeros(n, bool)
    if method == "complex_step":
        other, suspect = np.full(n, np.nan), np.zeros(n, bool)
        sampled = _second_step_sample(B, w_)
        for start in range(0, n, chunk):
            idx = slice(start, min(n, start + chunk))
            b, j = b_all[idx], j_all[idx]
            with base.watch(len(b)) as w:
                value[idx] = np.imag(site_loss(b, j, 1j * h[idx])) / h[idx]
            two = start + np.flatnonzero(sampled[idx])
            if two.size:
                other[two] = np.imag(site_loss(b_all[two], j_all[two], STEP_RATIO * 1j * h[two])) / (STEP_RATIO * h[two])
            suspect[idx] = w.flags
            if tick:
                tick(len(b) / n)
        err = _complex_step_error(value.reshape(B, w_), other.reshape(B, w_), axis=-1).reshape(-1)  # the units of one sample share its loss
        sel = np.flatnonzero(suspect)
        if sel.size:
            value[sel], err[sel], kink[sel] = _suspects_by_real_differences(
                lambda ii, off: site_loss(b_all[ii], j_all[ii], off), sel, base.row_loss[b_all[sel]],
                steps(H, DEFAULT_STEP["richardson"])[sel], base.loss_floor[b_all[sel]], chunk)
    else:
        f = np.empty((len(REAL_STENCIL), n))
        for start in range(0, n, chunk):
            idx = slice(start, min(n, start + chunk))
            b, j = b_all[idx], j_all[idx]
            f[:, idx] = _stencil(lambda off: site_loss(b, j, off), h[idx])
            if tick:
                tick(len(b) / n)
        f0 = base.row_loss[b_all]
        noise = pooled_noise(_fourth(f0, f).reshape(B, w_)).reshape(-1)  # the units of one sample share its loss
        noise = np.maximum(noise, base.loss_floor[b_all])
        value, err, kink = _estimate_real(f0, f, h, method, noise)
        kink = _confirm_kinks(lambda sel, off: site_loss(b_all[sel], j_all[sel], off), f0, h, method, noise, kink)
    value, err = value.reshape(B, w_), err.reshape(B, w_)
    # A floor for rounding in sums whose terms cancel (e.g. p - t of a confident softmax).
    err = err + 64 * EPS64 * (np.abs(value) + float(np.sqrt(np.mean(value**2))) if value.size else 0.0)
    return value, err, kink.reshape(B, w_) | site_kinks


def _element_derivative(base: _Base, name: str, owner: int, idx: np.ndarray, method: str, rel: float, h_all: np.ndarray | None = None):
    """Direct differences: perturb the elements `idx` of tensor `name` and run the real forward from layer `owner`."""
    net, params = base.net, base.params
    theta = base.hs[0] if name == INPUT else params[name]
    flat = theta.reshape(-1)
    h = (h_all if h_all is not None else steps(theta, rel))[idx]
    start = 0 if name == INPUT else owner
    x_in = base.hs[start]
    total0 = float(np.sum(base.row_loss))
    stackable = all(getattr(layer, "supports_stacking", True) for layer in net.layers[start:])
    per_item = 16 * 4 * (x_in.size + max(max(h_.size for h_ in base.hs), base.batch_workspace) + flat.size)
    chunk = max(1, NUMERIC_CHUNK_BYTES // per_item) if stackable else 1

    def loss_with(stack_flat):
        stack = stack_flat.reshape((len(stack_flat),) + theta.shape)
        if name == INPUT:
            y = net.forward(params, stack, start=0)
        else:
            y = net.forward({**params, name: stack}, x_in, start=start)
        return net.loss_of_output(y, base.target)

    def evaluate_some(ii, off):
        out = []
        for s in range(0, len(ii), chunk):
            part = ii[s:s + chunk]
            stack = np.broadcast_to(flat, (len(part), flat.size)).astype(np.result_type(flat, off))
            stack[np.arange(len(part)), part] += off[s:s + chunk]
            out.append(np.atleast_1d(loss_with(stack)))
        return np.concatenate(out)

    floor = float(np.sum(base.loss_floor))
    if method == "complex_step":
        with base.watch(len(idx)) as w:
            value = np.imag(evaluate_some(idx, 1j * h)) / h
        other = np.full(len(idx), np.nan)
        two = np.flatnonzero(_second_step_sample(1, len(idx)))
        other[two] = np.imag(evaluate_some(idx[two], STEP_RATIO * 1j * h[two])) / (STEP_RATIO * h[two])
        err, kink = _complex_step_error(value, other), np.zeros(len(idx), bool)  # every element's f is the same total loss
        sel = np.flatnonzero(w.flags)
        if sel.size:
            h_real = steps(theta, DEFAULT_STEP["richardson"])[idx[sel]]
            value[sel], err[sel], kink[sel] = _suspects_by_real_differences(
                lambda ii, off: evaluate_some(idx[ii], off), sel, np.full(sel.size, total0), h_real, floor, max(1, len(idx)))
        return value, err, kink
    f = _stencil(lambda off: evaluate_some(idx, off), h)
    if len(idx) > 1:  # every element's f is the same total loss: pool
        noise = pooled_noise(_fourth(total0, f)[None, :])[0]
    else:  # a lone element (a scalar hyperparameter): a wider table along it
        noise = noise_level(np.stack([evaluate_some(idx, o * h / 2) for o in NOISE_OFFSETS]))
    noise = np.maximum(noise, floor)
    value, err, kink = _estimate_real(total0, f, h, method, noise)
    kink = _confirm_kinks(lambda sel, off: evaluate_some(idx[sel], off), total0, h, method, noise, kink)
    return value, err, kink


@dataclass
class _Tensor:
    value: np.ndarray
    error: np.ndarray
    kinks: np.ndarray


def _dense_from_sites(base: _Base, layer: DenseLayer, delta, delta_err, delta_kink, x=None) -> dict[str, _Tensor]:
    """dL/dW and dL/db from dL/du by the exact linearity of u = [x, 1] W + b (rows: every sample and position)."""
    x = base.hs[layer.index] if x is None else x
    xa = dense_op.augment(x.reshape(-1, layer.n_in), layer.bias)
    delta, delta_err, delta_kink = (a.reshape(-1, layer.n_out) for a in (delta, delta_err, delta_kink))
    n = xa.shape[0]
    g = xa.T @ delta
    e = np.abs(xa).T @ delta_err + 2 * n * EPS64 * (np.abs(xa).T @ np.abs(delta))
    k = ((xa != 0).T.astype(float) @ delta_kink.astype(float)) > 0
    out_in = layer.layout == "out_in"
    tensors = {layer.weight: _Tensor(g.T if out_in else g, e.T if out_in else e, k.T if out_in else k)}
    if layer.bias_name:
        tensors[layer.bias_name] = _Tensor(delta.sum(0), delta_err.sum(0) + 2 * n * EPS64 * np.abs(delta).sum(0), delta_kink.any(0))
    return tensors


def _linear_from_sites(base: _Base, layer: OpLayer, names, delta, delta_err, delta_kink, x=None) -> dict[str, _Tensor]:
    """dL/dtheta for a layer affine in its parameters, from dL/du at its output: sum_e delta_e du_e/dtheta_k.

    du/dtheta_k is the layer's own forward with theta = the unit vector e_k and every other parameter 0
    (the affine part drops out), evaluated for many k at once: exact, and only the forward is used.
    """
    x = base.hs[layer.index] if x is None else x
    B = x.shape[0]
    d, de, dk = (a.reshape((B,) + layer.out_shape) for a in (delta, delta_err, delta_kink.astype(float)))
    zeros = {n: np.zeros_like(base.params[n]) for n in layer.param_names}
    out: dict[str, _Tensor] = {}
    per = 8 * 4 * max(1, d.size)
    chunk = max(1, NUMERIC_CHUNK_BYTES // per)
    channels = layer.op.channel_params
    for name in names:
        if name[len(layer.name) + 1:] in channels and base.params[name].shape[0] == layer.out_shape[0]:
            out[name] = _channel_linear(layer, base.params, zeros, name, x, d, de, dk, chunk)
            continue
        size = base.params[name].size
        value, err, kink = np.empty(size), np.empty(size), np.empty(size, bool)
        for start in range(0, size, chunk):
            k = np.arange(start, min(size, start + chunk))
            unit = np.zeros((len(k), size))
            unit[np.arange(len(k)), k] = 1.0
            cols = layer.forward({**base.params, **zeros, name: unit.reshape((len(k),) + base.params[name].shape)}, x)
            cols = cols.reshape(len(k), -1)
            value[k] = cols @ d.reshape(-1)
            err[k] = np.abs(cols) @ de.reshape(-1) + 2 * np.sqrt(d.size) * EPS64 * (np.abs(cols) @ np.abs(d.reshape(-1)))
            kink[k] = ((cols != 0) @ dk.reshape(-1)) > 0
        shape = base.params[name].shape
        out[name] = _Tensor(value.reshape(shape), err.reshape(shape), kink.reshape(shape))
    return out


def _channel_linear(layer: OpLayer, params, zeros, name: str, x, d, de, dk, chunk: int) -> _Tensor:
    """As _linear_from_sites for a parameter whose axis 0 is the output channel (see LayerOp.channel_params):
    the unit vector e_k of the slice moves element k of every channel's slice at once, and output channel o
    holds du_o/dtheta[o, k] alone."""
    shape = params[name].shape
    C, m = shape[0], int(np.prod(shape[1:]))
    B = d.shape[0]
    d3, de3, dk3 = (a.reshape(B, C, -1) for a in (d, de, dk))
    n_out = d3.shape[-1]
    value, err, kink = np.empty((m, C)), np.empty((m, C)), np.empty((m, C), bool)
    step = max(1, chunk // max(1, C))
    for start in range(0, m, step):
        k = np.arange(start, min(m, start + step))
        unit = np.zeros((len(k), C, m))
        unit[np.arange(len(k)), :, k] = 1.0
        cols = layer.forward({**params, **zeros, name: unit.reshape((len(k),) + shape)}, x).reshape(len(k), B, C, -1)
        value[k] = np.einsum("kbcs,bcs->kc", cols, d3)
        a = np.abs(cols)
        err[k] = np.einsum("kbcs,bcs->kc", a, de3) + 2 * np.sqrt(B * C * n_out) * EPS64 * np.einsum("kbcs,bcs->kc", a, np.abs(d3))
        kink[k] = np.einsum("kbcs,bcs->kc", (cols != 0).astype(float), dk3) > 0
    return _Tensor(value.T.reshape(shape), err.T.reshape(shape), kink.T.reshape(shape))


# --- inner sites an op declares (attention's projections) ---------------------------------------


def _op_site_layers(net: Network) -> list:
    """(top-level index, layer, block) for layers whose op declares inner sites and whose output's cotangent is
    the derivative at the next top-level site: top-level ones, or the last member of a residual block (its
    output adds to the skip connection). Only where no layer after them mixes the batch."""
    out = []
    for i, top in enumerate(net.layers):
        layer, block = (top, None) if not isinstance(top, ResidualLayer) else (top.layers[-1] if top.layers else None, top)
        if not isinstance(layer, OpLayer) or layer.op.inner_sites is None:
            continue
        if net.mixes_batch(i + 1) or not all(l.supports_stacking for l in net.layers[i + 1:]):
            continue
        out.append((i, layer, block))
    return out


def _affine_tensors(x_rows, delta, delta_err, delta_kink, weight: str, bias: str | None) -> dict[str, _Tensor]:
    """dL/dW (out, in) and dL/db of u = x W^T + b from dL/du on every row (sample and position), by linearity."""
    n = x_rows.shape[0]
    ax = np.abs(x_rows)
    out = {weight: _Tensor((delta.T @ x_rows), delta_err.T @ ax + 2 * n * EPS64 * (np.abs(delta).T @ ax),
                           (delta_kink.T.astype(float) @ (x_rows != 0).astype(float)) > 0)}
    if bias:
        out[bias] = _Tensor(delta.sum(0), delta_err.sum(0) + 2 * n * EPS64 * np.abs(delta).sum(0), delta_kink.any(0))
    return out


def _op_site_derivatives(base: _Base, wanted, method: str, rel: float, cotangent, progress) -> dict[str, _Tensor]:
    """Parameters of layers with inner sites (see ops InnerSite), from dL/d(site unit) by the complex step of
    the layer's own contraction with its output's cotangent, then linearity. `cotangent(i)`: the derivative
    (value, error, kinks) at the input of top-level layer i."""
    net, params = base.net, base.params
    out: dict[str, _Tensor] = {}
    if method != "complex_step":
        return out
    for i, layer, block in _op_site_layers(net):
        names = [n for n in layer.param_names if n in wanted]
        if not names:
            continue
        x_in = base.hs[i]
        if block is not None:
            for member in block.layers[:-1]:
                x_in = member.forward(params, x_in)
        g, g_err, g_kink = cotangent(i + 1)
        B = x_in.shape[0]
        g, g_err = g.reshape((B,) + layer.out_shape), g_err.reshape((B,) + layer.out_shape)
        local = {k: params[f"{layer.name}.{k}"] for k in layer.infos}
        sample_kink = np.asarray(g_kink).reshape(B, -1).any(axis=1)
        for site in layer.op.inner_sites(x_in, local, layer.options, g, g_err):
            pnames = [f"{layer.name}.{k}" for k in (site.weight, site.bias) if k]
            if not any(n in names for n in pnames):
                continue
            w = local[site.weight]
            value_site = site.x_in @ w.T + (local[site.bias] if site.bias else 0)
            rows_in = site.x_in.reshape(-1, site.x_in.shape[-1])
            if site.contract is None:
                delta, d_err, d_kink = g.reshape(B, -1), g_err.reshape(B, -1), np.asarray(g_kink).reshape(B, -1)
            else:
                delta, d_err = _contracted_units(site.contract, value_site, rel, layer.workspace)
                d_kink = np.repeat(sample_kink[:, None], delta.shape[1], axis=1)
            width = value_site.shape[-1]
            tensors = _affine_tensors(rows_in, delta.reshape(-1, width), d_err.reshape(-1, width), d_kink.reshape(-1, width),
                                      f"{layer.name}.{site.weight}", f"{layer.name}.{site.bias}" if site.bias else None)
            for n, t in tensors.items():
                if n in names:
                    out[n] = t
                    if progress:
                        progress(t.value.size)
    return out


def _contracted_units(contract, values, rel: float, workspace: int):
    """d<g, y>/d(values[b, j]) for every sample b and unit j by the complex step of `contract` (see InnerSite):
    (value, error), each (B, units). `workspace`: elements per sample the op holds at its peak (one sample's
    worth per perturbation: attention's T x T scores of one head, its output)."""
    H = values.reshape(values.shape[0], -1)
    B, w = H.shape
    n = B * w
    b_all, j_all = np.repeat(np.arange(B), w), np.tile(np.arange(w), B)
    h = steps(H, rel)
    chunk = max(1, NUMERIC_CHUNK_BYTES // (16 * 2 * max(1, values[0].size, workspace)))
    value, other, side = np.empty(n), np.empty(n), np.empty(n)
    for start in range(0, n, chunk):
        idx = slice(start, min(n, start + chunk))
        b, j = b_all[idx], j_all[idx]
        f, f_abs = contract(b, j, 1j * h[idx])
        value[idx], side[idx] = np.imag(f) / h[idx], np.real(f_abs) / h[idx]
        f2, _ = contract(b, j, STEP_RATIO * 1j * h[idx])
        other[idx] = np.imag(f2) / (STEP_RATIO * h[idx])
    value, other, side = value.reshape(B, w), other.reshape(B, w), side.reshape(B, w)
    err = _complex_step_error(value, other, axis=-1) + side
    err = err + 64 * EPS64 * (np.abs(value) + float(np.sqrt(np.mean(value**2))) if value.size else 0.0)
    return value, err


def _site_for(base: _Base, layer, wanted) -> bool:
    """Differentiate `layer`'s parameters through its output (dL/du per sample, then linearity) rather than
    element by element: sound when the layer is affine in them and no later layer mixes the batch;
    worth it when its output has fewer elements per sample than the parameters have, or when its units,
    each carried as one unit as far as the layers after it allow, cost less to perturb (see `_site_work`)."""
    net = base.net
    names = [n for n in layer.param_names if n in wanted]
    if not names or net.mixes_batch(layer.index + 1) or not all(l.supports_stacking for l in net.layers[layer.index + 1:]):
        return False
    if isinstance(layer, DenseLayer):
        return True
    if isinstance(layer, OpLayer) and set(layer.infos) <= set(layer.op.linear_in):
        size = sum(net.params[n].size for n in names)
        if int(np.prod(layer.out_shape)) < size:
            return True
        # direct differences run the batch from this layer on once per element
        return 2 * _site_work(base, layer.index + 1) < size * base.hs[0].shape[0] * sum(_work(l) for l in net.layers[layer.index:])
    return False


def _work(layer) -> float:
    """Multiply-adds (or element operations) of a layer's forward per sample: a cost model, not a timing, so
    that a choice between paths is the same on every run. A layer affine in its weight does out x (weight / out
    channels); anything else touches its input, output and workspace."""
    out = float(np.prod(layer.out_shape))
    if isinstance(layer, DenseLayer):
        return float(np.prod(layer.in_shape)) * layer.n_out
    if isinstance(layer, ResidualLayer):
        return sum(_work(m) for m in layer.members) + out
    infos = getattr(layer, "infos", {})
    weight = infos.get("weight")
    if weight is not None and "weight" in getattr(layer.op, "linear_in", ()):
        return out * float(np.prod(weight.shape)) / max(1, weight.shape[0])
    return float(np.prod(layer.in_shape)) + max(out, float(getattr(layer, "workspace", out)))


def _site_work(base: _Base, l: int) -> float:
    """The work of perturbing every unit of every sample at the input of layer l: each unit is carried through
    the layers that move one unit for one (see _Base.carried), then the rest of the network runs on one row --
    a dense layer reached by one unit as a rank-1 change."""
    net, hs = base.net, base.hs
    start, _, _ = base.carried(l, np.zeros(1, int), np.zeros(1, int), hs[l].reshape(hs[l].shape[0], -1)[:1, 0])
    rest = net.layers[start:]
    work = sum(_work(x) for x in rest)
    if rest and isinstance(rest[0], DenseLayer) and hs[start].ndim == 2:
        work -= _work(rest[0]) - rest[0].n_out  # one input unit: a rank-1 change of its output
    return hs[l].size * work


def _affine(layer) -> bool:
    return isinstance(layer, DenseLayer) or (isinstance(layer, OpLayer) and set(layer.infos) <= set(layer.op.linear_in))


@dataclass
class _InnerSite:
    """The output of layer j of a residual block at top level i, as a site: the block's other layers,
    its skip connection and the rest of the network carry a perturbed row to the loss."""

    base: _Base
    block: ResidualLayer
    j: int
    values: list  # values[k]: the input of the block's layer k; values[-1]: the block's f(x)
    skip: np.ndarray  # x, or P x

    @property
    def layer(self):
        return self.block.layers[self.j]

    @property
    def rowwise(self) -> bool:
        """Everything after the site acts row by row: a moved unit moves one row of its sample."""
        rest = self.block.layers[self.j + 1:]
        return self.values[self.j + 1].ndim >= 3 and all(getattr(l, "rowwise", False) for l in rest) \
            and self.base.rowwise_from(self.block.index + 1) and (self.block.projection is None or self.block.projection.rowwise)

    def loss(self, b, j, off):
        params, rest = self.base.params, self.block.layers[self.j + 1:]
        u_site = self.values[self.j + 1]
        if self.rowwise:
            # everything after the site acts row by row: only row r of sample b moves
            rank1 = _rank_one(self.values, self.j, rest, params, b, j, off)
            if rank1 is not None:  # an elementwise activation then a dense layer: one unit, one column
                h, r = rank1
                for layer in rest[2:]:
                    h = layer.forward(params, h)
            else:
                rows, r = _moved_row(u_site, b, j, off)
                h = _one_row(rows, u_site.ndim)
                for layer in rest:
                    h = layer.forward(params, h)
            skip = self.skip.reshape(self.skip.shape[0], -1, self.skip.shape[-1])[b, r]
            return self.base.row_rest(self.block.index + 1, h.reshape(len(b), -1) + skip, b, r)
        first = rest[0] if rest else None
        rows, applied = _moved_units(u_site, self.values[self.j + 2] if first is not None else None, first, b, j, off)
        for layer in rest[1:] if applied else rest:
            rows = layer.forward(params, rows, b)
        return self.base.rows_loss(self.block.index + 1, rows + self.skip[b], b)


def _rank_one(values, j: int, rest, params, b, unit, off):
    """(rows, r) after unit `unit` of sample b's site values[j + 1] moved by off, when the next two layers are an
    elementwise activation and a dense layer: the activation is applied to the moved unit alone and the dense
    layer's output row changes by (a_new - a_old) times one row of its weight (its forward is linear in the
    activation); rows (P, 1, ..., units) for the layers after those two. None where that does not apply."""
    if len(rest) < 2 or not isinstance(rest[1], DenseLayer) or rest[1].bias == "folded":
        return None
    act = rest[0]
    if not (isinstance(act, ActivationLayer) and act.op.elementwise and not act.trainable):
        return None
    u_site, a_site, d_out = values[j + 1], values[j + 2], values[j + 3]
    width = u_site.shape[-1]
    r, c = unit // width, unit % width
    u_rows = u_site.reshape(u_site.shape[0], -1, width)
    z = u_rows[b, r, c] + off
    if _WATCHES and act.op.kinks and _WATCHES[-1].watches(act):
        _WATCHES[-1].note(act.op.near_kink(z, act.fixed, _WATCHES[-1].radius(u_rows[b, r])))
    change = act.op.forward(z, act.fixed) - a_site.reshape(u_rows.shape)[b, r, c]
    w = dense_op.as_in_out(params[rest[1].weight], rest[1].layout)  # (in, out)
    out_rows = d_out.reshape(d_out.shape[0], -1, d_out.shape[-1])[b, r]
    rows = out_rows + change[:, None] * w[c]
    return _one_row(rows, u_site.ndim), r


def _inner_sites(base: _Base, wanted) -> list[_InnerSite]:
    """Sites inside residual blocks (one level deep) for their affine layers, where sound and worth it."""
    net, out = base.net, []
    for block in net.layers:
        if not isinstance(block, ResidualLayer) or net.mixes_batch(block.index) or not block.supports_stacking:
            continue
        if not all(l.supports_stacking for l in net.layers[block.index + 1:]):
            continue
        values = [base.hs[block.index]]
        for layer in block.layers:
            values.append(layer.forward(base.params, values[-1]))
        skip = block.projection.forward(base.params, values[0]) if block.projection is not None else values[0]
        for j, layer in enumerate(block.layers):
            names = [n for n in layer.param_names if n in wanted]
            if not names or not _affine(layer):
                continue
            site = _InnerSite(base, block, j, values, skip)
            # worth it when perturbing the site's units costs less than perturbing the parameters: a unit moves
            # one row (position) where everything after it is row-wise, a parameter moves every row
            per_unit = layer.out_shape[-1] if site.rowwise else int(np.prod(layer.out_shape))
            if isinstance(layer, OpLayer) and per_unit >= sum(net.params[n].size for n in names):
                continue
            out.append(site)
    return out


@dataclass
class _Cut:
    """dL/dh at the input of top-level layer `at`, per sample: upstream parameters are then differenced
    through layers owner..at-1 only, as the derivative of <delta, h_at(theta)> (the chain rule at a cut)."""

    at: int
    delta: np.ndarray
    error: np.ndarray
    kinks: np.ndarray


def _layer_seconds(base: _Base) -> list[float]:
    """Each top-level layer's forward time on the batch: the cost model that places the cuts."""
    out = []
    for i, layer in enumerate(base.net.layers):
        t0 = time.perf_counter()
        layer.forward(base.params, base.hs[i])
        out.append(max(time.perf_counter() - t0, 1e-6))
    return out


def _plan_cuts(base: _Base, direct: dict[int, int], ready=()) -> dict[int, int]:
    """For each owner layer (with `direct[owner]` elements left to difference), the cut to stop at, if any pays.

    Differencing n elements through layers o..L costs n T(o, L); stopping at c costs n T(o, c) plus, once per
    cut, size(h_c) T(c, L) for dL/dh_c (one sample per perturbation). Only where no layer from c on mixes the batch.
    """
    net = base.net
    L = len(net.layers)
    t = _layer_seconds(base)
    tail = [sum(t[c:]) for c in range(L + 1)]
    plan: dict[int, int] = {}
    made: set[int] = set(ready)  # cuts whose dL/dh is already known cost nothing more
    for o in sorted(direct):
        n = direct[o]
        best, where = n * tail[o], None
        for c in range(o + 1, L):
            if net.mixes_batch(c) or not all(l.supports_stacking for l in net.layers[o:]):
                continue
            cost = n * (tail[o] - tail[c]) + (0.0 if c in made else base.hs[c][0].size * tail[c])
            if cost < 0.5 * best:
                best, where = cost, c
        if where is not None:
            plan[o] = where
            made.add(where)
    return plan


def _cut_derivative(base: _Base, name: str, owner: int, cut: _Cut, method: str, rel: float):
    """Every element of `name` by differences of <delta, h_cut(theta)>: value, error (own + delta's), kinks."""
    net, params = base.net, base.params
    theta = params[name]
    flat = theta.reshape(-1)
    n = flat.size
    h = steps(theta, rel)
    x_in, h0 = base.hs[owner], base.hs[cut.at]
    d, de, dk = cut.delta.reshape(h0.shape), cut.error.reshape(h0.shape), cut.kinks.reshape(h0.shape).astype(float)
    axes = tuple(range(1, h0.ndim + 1))
    h_at = base.hs[cut.at].size
    per_item = 16 * (x_in.size + len(REAL_STENCIL) * h_at + max(max(a.size for a in base.hs[owner:cut.at + 1]), base.batch_workspace) + flat.size)
    chunk = max(1, NUMERIC_CHUNK_BYTES // per_item)

    def moved(ii, off):
        stack = np.broadcast_to(flat, (len(ii), n)).astype(np.result_type(flat, off))
        stack[np.arange(len(ii)), ii] += off
        return net.forward({**params, name: stack.reshape((len(ii),) + theta.shape)}, x_in, start=owner, stop=cut.at)

    value, err, kink = np.empty(n), np.empty(n), np.zeros(n, bool)
    side_err, side_kink = np.empty(n), np.zeros(n, bool)
    f = np.empty((len(REAL_STENCIL), n))
    other, suspect = np.empty(n), np.zeros(n, bool)
    for start in range(0, n, chunk):
        ii = np.arange(start, min(n, start + chunk))
        if method == "complex_step":
            with base.watch(len(ii)) as w:
                col = np.imag(moved(ii, 1j * h[ii])) / h[ii].reshape((-1,) + (1,) * h0.ndim)
            col2 = np.imag(moved(ii, STEP_RATIO * 1j * h[ii])) / (STEP_RATIO * h[ii].reshape((-1,) + (1,) * h0.ndim))
            suspect[ii] = w.flags
            value[ii] = np.sum(d * col, axis=axes)
            other[ii] = np.sum(d * col2, axis=axes)
            # the tangent's rounding at the cut, weighted by |delta|: no cancellation between the cut's units
            err[ii] = 64 * EPS64 * np.sum(np.abs(d * col), axis=axes) + 3 * np.sum(np.abs(d * (col2 - col)), axis=axes)
        else:
            hs_ = [np.real(moved(ii, s * h[ii])) for s in REAL_STENCIL]
            for k, hk in enumerate(hs_):
                f[k, ii] = np.sum(d * hk, axis=axes)
            col = (hs_[-1] - hs_[0]) / (2 * h[ii].reshape((-1,) + (1,) * h0.ndim))
        side_err[ii] = np.sum(de * np.abs(col), axis=axes)
        side_kink[ii] = np.sum(dk * np.abs(col), axis=axes) > 0
    f0 = float(np.sum(d * h0))
    if method != "complex_step":
        noise = np.maximum(pooled_noise(_fourth(f0, f)[None, :])[0], EPS64 * float(np.sum(np.abs(d * h0))))
        value, err, kink = _estimate_real(f0, f, h, method, noise)
    else:
        err = err + _complex_step_error(value, other)  # truncation, and a tangent rounding the pooled RMS sees
        sel = np.flatnonzero(suspect)
        if sel.size:
            def contracted(ii, off):
                return np.sum(d * np.real(moved(ii, off)), axis=axes)
            value[sel], err[sel], kink[sel] = _suspects_by_real_differences(
                contracted, sel, np.full(sel.size, f0), steps(theta, DEFAULT_STEP["richardson"])[sel],
                EPS64 * float(np.sum(np.abs(d * h0))), chunk)
    return value, err + side_err, kink | side_kink


def _structured(net: Network) -> bool:
    return net.flat or all(l.supports_stacking for l in net.layers)


def differentiate(
    net: Network,
    *,
    method: str = "auto",
    step: float | None = None,
    wrt_input: bool = False,
    names: list[str] | None = None,
    progress: Callable[[int], None] | None = None,
    structured: bool = True,
    seed: int = 0,
) -> Gradients:
    """Numeric gradients of the loss w.r.t. every element of every parameter (and the input)."""
    t0 = time.perf_counter()
    _keep_freed_memory()
    method = resolve_method(net, method)
    rel = step or DEFAULT_STEP[method]
    params, x, target = net.cast(np.float64)
    base = _base_pass(net, params, x, target)
    wanted = list(names or params) + ([INPUT] if wrt_input else [])
    owner = {name: layer.index for name, layer in net.param_layer().items()}
    owner[INPUT] = 0
    results: dict[str, _Tensor] = {}
    notes: list[str] = []
    rng = np.random.default_rng(seed)
    at_sites: dict[int, tuple] = {}

    def cotangent(at: int, tick=None) -> tuple:
        """dL/dh at the input of top-level layer `at` (value, error, kinks), computed once: sites, inner sites
        of ops and cuts share it."""
        if at not in at_sites:
            at_sites[at] = _site_derivative(base, at, method, rel, tick)
        return at_sites[at]

    if structured and _structured(net):
        sites = {}
        for layer in net.layers:
            if _site_for(base, layer, wanted):
                sites[layer.index + 1] = layer
        if INPUT in wanted and not net.mixes_batch():
            sites[0] = None
        for site, layer in sites.items():
            size = x.size if layer is None else sum(params[n].size for n in layer.param_names if n in wanted)
            tick = (lambda frac, size=size: progress(int(round(frac * size)))) if progress else None
            delta, d_err, d_kink = cotangent(site, tick)
            if layer is None:
                results[INPUT] = _Tensor(*(a.reshape(x.shape) for a in (delta, d_err, d_kink)))
            elif isinstance(layer, DenseLayer):
                results.update(_dense_from_sites(base, layer, delta, d_err, d_kink))
            else:
                results.update(_linear_from_sites(base, layer, [n for n in layer.param_names if n in wanted], delta, d_err, d_kink))
        for site in ([] if net.flat else _inner_sites(base, wanted)):
            layer, x_in = site.layer, site.values[site.j]
            size = sum(params[n].size for n in layer.param_names if n in wanted)
            tick = (lambda frac, size=size: progress(int(round(frac * size)))) if progress else None
            u = site.values[site.j + 1]
            none = np.zeros((u.shape[0], u[0].size), bool)
            delta, d_err, d_kink = _unit_derivative(base, u, site.loss, method, rel, tick, none)
            if isinstance(layer, DenseLayer):
                results.update(_dense_from_sites(base, layer, delta, d_err, d_kink, x_in))
            else:
                results.update(_linear_from_sites(base, layer, [n for n in layer.param_names if n in wanted], delta, d_err, d_kink, x_in))
        if not net.flat:
            results.update({k: v for k, v in _op_site_derivatives(base, wanted, method, rel, cotangent, progress).items() if k not in results})
        for name in [n for n in wanted if n in results]:
            if not _spot_check(base, name, owner[name], results[name], method, rel, rng):
                notes.append(f"{name}: structured differences disagreed with direct ones; differenced element by element")
                del results[name]
    cuts: dict[int, _Cut] = {}
    if structured and not net.flat:
        direct: dict[int, int] = {}
        for name in wanted:
            if name not in results and name != INPUT:
                direct[owner[name]] = direct.get(owner[name], 0) + params[name].size
        plan = _plan_cuts(base, direct, ready=set(at_sites))
        for at in sorted(set(plan.values())):
            cuts[at] = _Cut(at, *cotangent(at))
        cuts = {o: cuts[at] for o, at in plan.items()}
    for name in wanted:
        if name in results:
            continue
        cut = cuts.get(owner[name]) if name != INPUT else None
        if cut is not None:
            v, e, k = _cut_derivative(base, name, owner[name], cut, method, rel)
            t = _Tensor(v.reshape(params[name].shape), e.reshape(params[name].shape), k.reshape(params[name].shape))
            if _spot_check(base, name, owner[name], t, method, rel, rng):
                results[name] = t
                if progress:
                    progress(params[name].size)
                continue
            notes.append(f"{name}: differences through the cut at layers.{cut.at} disagreed with direct ones; differenced element by element")
    for name in wanted:
        if name not in results:
            theta = x if name == INPUT else params[name]
            v, e, k = _element_derivative(base, name, owner[name], np.arange(theta.size), method, rel)
            results[name] = _Tensor(v.reshape(theta.shape), e.reshape(theta.shape), k.reshape(theta.shape))
            if progress:
                progress(theta.size)
    return Gradients(
        "numeric", "cpu", "float64",
        {n: np.asarray(results[n].value, float) for n in wanted},
        error={n: np.asarray(results[n].error, float) for n in wanted},
        kinks={n: np.asarray(results[n].kinks, bool) for n in wanted},
        method=method,
        seconds=time.perf_counter() - t0,
        notes=tuple(notes),
    )


def _spot_check(base: _Base, name: str, owner: int, t: _Tensor, method: str, rel: float, rng) -> bool:
    """Difference a few elements directly through the real forward pass; they must agree."""
    candidates = np.flatnonzero(~t.kinks.reshape(-1))
    if candidates.size == 0:
        return True
    idx = rng.choice(candidates, size=min(SPOT_CHECKS, candidates.size), replace=False)
    v, e, k = _element_derivative(base, name, owner, idx, method, rel)
    vs, es = t.value.reshape(-1)[idx], t.error.reshape(-1)[idx]
    ok = np.abs(v - vs) <= 8 * (e + es) + 1e3 * EPS64 * (np.abs(v) + np.abs(vs)) + 1e-300
    return bool(np.all(ok | k))


# --- fast mode: directional derivatives --------------------------------------------------------


@dataclass(frozen=True)
class Directional:
    value: float  # d/dt L(theta + t u) at t = 0
    error: float  # the engine's own error estimate
    kink: bool  # the stencil straddled a kink even at the smallest step tried


def directional(net: Network, direction: dict[str, np.ndarray], *, method: str = "auto", rel: float | None = None) -> Directional:
    """The derivative of the loss along `direction` (some or all parameters at once): O(1) forward passes."""
    method = resolve_method(net, method)
    params, x, target = net.cast(np.float64)
    point = {**params, INPUT: x}  # `input` (dL/dx, check.wrt_input) moves the batch itself
    scale = max(float(np.sqrt(np.mean(np.concatenate([point[k].ravel() for k in direction]) ** 2))), 1e-2)
    unorm = max(float(np.max(np.abs(np.concatenate([u.ravel() for u in direction.values()])))), 1e-300)

    def per_sample(t):
        moved = {**params, **{k: params[k] + t * u for k, u in direction.items() if k != INPUT}}
        return net.sample_losses(net.forward(moved, x + t * direction[INPUT] if INPUT in direction else x))

    if method == "complex_step":
        h = DEFAULT_STEP["complex_step"] * scale / unorm
        with (watching(1, float(np.finfo(net.dtype).eps)) if not net.flat else _unwatched(1)) as w:
            d = np.imag(per_sample(1j * h)) / h
        if not w.flags[0]:  # no unit on a kink moved: the complex step's answer stands
            d2 = np.imag(per_sample(STEP_RATIO * 1j * h)) / (STEP_RATIO * h)
            err = float(64 * EPS64 * (np.sum(np.abs(d)) + abs(np.sum(d)))) + float(_complex_step_error(np.sum(d), np.sum(d2)))
            return Directional(float(np.sum(d)), err + 3 * float(np.sum(np.abs(d2 - d))), False)
        method, rel = "richardson", None  # within reach of a kink: real differences judge it
    h0 = (rel or DEFAULT_STEP[method]) * scale / unorm
    f0 = float(np.sum(per_sample(0.0)))
    for shrink in (1.0, 1e-2, 1e-4):  # a kink inside the stencil: retry closer in
        h = h0 * shrink
        f = np.array([[float(np.sum(per_sample(s * h)))] for s in REAL_STENCIL])
        noise = noise_level(np.array([[float(np.sum(per_sample(o * h / 2)))] for o in NOISE_OFFSETS]))
        value, err, kink = _estimate_real(np.array([f0]), f, np.array([h]), method, noise)
        if not kink[0]:
            break
    return Directional(float(value[0]), float(err[0]), bool(kink[0]))
