"""Activations: forward, hand-written backward (VJP) and torch mirror, one entry each.

Every forward works on arrays of any leading shape (features on the last axis) and on
complex input (branches compare real parts, softmax shifts by the real max), so the
numeric engine can evaluate many perturbations at once and use the complex step.
`backward(z, a, grad_out, hp)` returns `(grad_z, {hyper_name: grad})`; the dict holds
gradients for the hyperparameters a spec marks `trainable`.
"""

from __future__ import annotations

import math

import numpy as np

from ._registry import Activation, Registry

ACTIVATIONS: Registry[Activation] = Registry("activation")
register = ACTIVATIONS.register


def _sigmoid(z):
    # exp of a non-positive real part only: no overflow at |z| = 1000, complex-safe.
    pos = np.real(z) >= 0
    e = np.exp(np.where(pos, -z, z))
    return np.where(pos, 1.0 / (1.0 + e), e / (1.0 + e))


def _softmax(z):
    shifted = z - np.max(np.real(z), axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / np.sum(e, axis=-1, keepdims=True)


# --- identity ---------------------------------------------------------------------------
register(Activation(
    name="identity",
    doc="f(u) = u",
    forward=lambda z, hp: z,
    backward=lambda z, a, g, hp: (g, {}),
    torch=lambda z, hp: z,
    fprime_max=1.0,
))

# --- step (Heaviside) ---------------------------------------------------------------------
register(Activation(
    name="step",
    doc="f(u) = 1 if u > 0 else 0 (seed 001's perceptron); f' = 0 almost everywhere",
    forward=lambda z, hp: (np.real(z) > 0).astype(np.real(z).dtype) + 0 * z,
    backward=lambda z, a, g, hp: (np.zeros_like(g), {}),
    # (z > 0) carries no grad_fn; adding 0*z keeps the graph connected so autograd reports 0.
    torch=lambda z, hp: (z > 0).to(z.dtype) + 0 * z,
    kinks=lambda hp: (0.0,),
    continuous=False,
    zero_derivative=True,
))

# --- sigmoid ----------------------------------------------------------------------------
register(Activation(
    name="sigmoid",
    doc="f(u) = 1 / (1 + e^-u); f' = f (1 - f) <= 1/4",
    forward=lambda z, hp: _sigmoid(z),
    backward=lambda z, a, g, hp: (g * a * (1 - a), {}),
    torch=lambda z, hp: __import__("torch").sigmoid(z),
    fprime_max=0.25,
    saturates=True,
    produces_probabilities=True,
))


# --- scaled sigmoid ---------------------------------------------------------------------
def _scaled_sigmoid_backward(z, a, g, hp):
    c, beta = hp["c"], hp["beta"]
    s = _sigmoid(beta * z)
    ds = s * (1 - s)
    return g * c * beta * ds, {"c": np.sum(g * s), "beta": np.sum(g * c * ds * z)}


register(Activation(
    name="scaled_sigmoid",
    doc="f(u) = c / (1 + e^(-beta u)) (seed 002); c and beta fixed or trainable",
    hyper={"c": 1.0, "beta": 1.0},
    trainable=("c", "beta"),
    forward=lambda z, hp: hp["c"] * _sigmoid(hp["beta"] * z),
    backward=_scaled_sigmoid_backward,
    torch=lambda z, hp: hp["c"] * __import__("torch").sigmoid(hp["beta"] * z),
    fprime_max=lambda hp: abs(hp["c"] * hp["beta"]) / 4,
    saturates=True,
    produces_probabilities=lambda hp: 0 < float(hp["c"]) <= 1,
))

# --- tanh -------------------------------------------------------------------------------
register(Activation(
    name="tanh",
    doc="f(u) = tanh(u); f' = 1 - f^2",
    forward=lambda z, hp: np.tanh(z),
    backward=lambda z, a, g, hp: (g * (1 - a * a), {}),
    torch=lambda z, hp: __import__("torch").tanh(z),
    fprime_max=1.0,
    saturates=True,
))

# --- relu (with seed 000's threshold) -----------------------------------------------------
register(Activation(
    name="relu",
    doc="f(u) = u if u > eps else 0 (eps defaults to 0; seed 000)",
    hyper={"eps": 0.0},
    forward=lambda z, hp: np.where(np.real(z) > hp["eps"], z, 0 * z),
    backward=lambda z, a, g, hp: (np.where(np.real(z) > hp["eps"], g, 0 * g), {}),
    torch=lambda z, hp: z * (z > hp["eps"]).to(z.dtype),
    kinks=lambda hp: (float(hp["eps"]),),
    # With eps > 0 the function jumps from 0 to eps at the threshold.
    continuous=lambda hp: float(hp["eps"]) == 0.0,
    fprime_max=1.0,
    dead_threshold=lambda hp: float(hp["eps"]),
))

# --- leaky relu -------------------------------------------------------------------------
register(Activation(
    name="leaky_relu",
    doc="f(u) = u if u > 0 else slope * u",
    hyper={"slope": 0.01},
    forward=lambda z, hp: np.where(np.real(z) > 0, z, hp["slope"] * z),
    backward=lambda z, a, g, hp: (np.where(np.real(z) > 0, g, hp["slope"] * g), {}),
    torch=lambda z, hp: __import__("torch").nn.functional.leaky_relu(z, float(hp["slope"])),
    kinks=lambda hp: (0.0,),
    fprime_max=lambda hp: max(1.0, abs(float(hp["slope"]))),
    dead_threshold=lambda hp: 0.0,
))


# --- silu -------------------------------------------------------------------------------
def _silu_backward(z, a, g, hp):
    s = _sigmoid(z)
    return g * (s + z * s * (1 - s)), {}


register(Activation(
    name="silu",
    doc="f(u) = u / (1 + e^-u) (seed 001); f' = s + u s (1 - s)",
    forward=lambda z, hp: z * _sigmoid(z),
    backward=_silu_backward,
    torch=lambda z, hp: __import__("torch").nn.functional.silu(z),
    fprime_max=1.0998,  # max of s + u s (1 - s), reached at u ~ 2.4
    saturates=True,
))

# --- softmax (full Jacobian along the last axis) -----------------------------------------
register(Activation(
    name="softmax",
    doc="f(u)_k = e^u_k / sum_j e^u_j; J = diag(f) - f f^T, applied as a VJP",
    forward=lambda z, hp: _softmax(z),
    backward=lambda z, a, g, hp: (a * (g - np.sum(g * a, axis=-1, keepdims=True)), {}),
    torch=lambda z, hp: __import__("torch").softmax(z, dim=-1),
    elementwise=False,
    produces_probabilities=True,
))


# --- gelu (exact, x Phi(x)) ---------------------------------------------------------------
# NumPy has no erf. Real input: torch.special.erfc in float64 (torch is a dependency), back in the
# input's dtype. Complex input (the complex step): an erfc built from analytic operations only, so
# Im f(x + ih) / h is the derivative of the same function; it is accurate near the real axis.
_SQRT_PI = math.sqrt(math.pi)
_SQRT1_2 = math.sqrt(0.5)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def _exp_minus_square(v):
    """e^(-v^2) with v^2 split as v0^2 + (v - v0)(v + v0), v0 = Re v to 1/16: the rounding of v^2 (up to
    1e-13 relative at |v| = 25) no longer reaches the exponent. v0 is locally constant: still analytic."""
    v0 = np.round(16.0 * np.real(v)) / 16.0
    return np.exp(-v0 * v0) * np.exp(-(v - v0) * (v + v0))


def _erfc_analytic(w):
    """erfc(w) for complex w near the real axis, by complex-analytic arithmetic only (2e-14 relative on it).

    |Re w| < 1.5: erfc = 1 - erf, erf(w) = 2/sqrt(pi) e^(-w^2) sum_k 2^k w^(2k+1) / (2k+1)!! (positive terms
    on the real axis: no cancellation inside the sum; 32 terms reach 1e-17). |Re w| >= 1.5: Laplace's
    continued fraction erfc(w) = e^(-w^2) / sqrt(pi) / (w + (1/2) / (w + 1 / (w + (3/2) / (w + ...)))) for
    Re w > 0 (80 levels), and erfc(w) = 2 - erfc(-w) for Re w < 0. The same accuracy holds for its
    complex-step derivative, and to ~1e-14 for |Im w| up to 0.3.
    """
    w = np.asarray(w, dtype=np.complex128)
    out = np.empty_like(w)
    mid = np.abs(np.real(w)) < 1.5
    if np.any(mid):
        v = w[mid]
        v2 = v * v
        term, total = v, v
        for k in range(32):
            term = term * v2 * (2.0 / (2 * k + 3))
            total = total + term
        out[mid] = 1.0 - (2.0 / _SQRT_PI) * _exp_minus_square(v) * total
    far = ~mid
    if np.any(far):
        v = w[far]
        neg = np.real(v) < 0
        v = np.where(neg, -v, v)
        frac = v
        for k in range(80, 0, -1):
            frac = v + (0.5 * k) / frac
        tail = _exp_minus_square(v) / _SQRT_PI / frac
        out[far] = np.where(neg, 2.0 - tail, tail)
    return out


def _gauss_cdf(z):
    """Phi(z) = erfc(-z / sqrt 2) / 2 in z's dtype (erfc, not 1 + erf: the left tail keeps its digits)."""
    z = np.asarray(z)
    if np.iscomplexobj(z):
        w = z.astype(np.complex128) * -_SQRT1_2
        y = np.imag(w)
        if np.all(np.abs(y) <= 1e-12 * np.maximum(1.0, np.abs(np.real(w)))):
            # the complex step's tiny imaginary parts: erfc(x + iy) = erfc(x) - iy 2/sqrt(pi) e^(-x^2) + O(y^2),
            # exact to far below an ulp there, and ~30x faster than the analytic series
            # (real and imaginary parts written apart: complex temporaries made this 10x slower than erfc itself)
            x = np.real(w)
            out = np.empty(w.shape, np.complex128)
            out.real = _gauss_cdf(-x * (1 / _SQRT1_2))
            out.imag = np.exp(-x * x) * (y * (-1.0 / _SQRT_PI))
            return out.astype(z.dtype, copy=False)
        return (0.5 * _erfc_analytic(w)).astype(z.dtype, copy=False)
    import torch

    w = np.array(z, dtype=np.float64, order="C")  # a fresh C-ordered float64 copy, 0-d kept, for from_numpy
    w *= -_SQRT1_2
    return (0.5 * torch.special.erfc(torch.from_numpy(w)).numpy()).astype(z.dtype, copy=False)


def _gelu_backward(z, a, g, hp):
    phi = np.exp(-0.5 * z * z) * _INV_SQRT_2PI
    return g * (_gauss_cdf(z) + z * phi), {}


register(Activation(
    name="gelu",
    doc="f(u) = u Phi(u), Phi the standard normal CDF (torch's gelu); f' = Phi(u) + u phi(u)",
    forward=lambda z, hp: z * _gauss_cdf(z),
    backward=_gelu_backward,
    torch=lambda z, hp: __import__("torch").nn.functional.gelu(z),
    fprime_max=1.129,  # max of Phi + u phi: 1.12890 at u = sqrt 2; min -0.12890 at -sqrt 2
    saturates=True,
    rounds_at=lambda z, hp: np.abs(z),  # torch: u * 0.5 (1 + erf(u / sqrt 2)), the sum at the scale of 1
))


# --- gelu, tanh approximation ---------------------------------------------------------------
_GELU_C = math.sqrt(2.0 / math.pi)
_GELU_K = 0.044715


def _gelu_tanh_backward(z, a, g, hp):
    z2 = z * z
    t = np.tanh(_GELU_C * (z + _GELU_K * z2 * z))
    return g * (0.5 * (1 + t) + 0.5 * z * (1 - t * t) * _GELU_C * (1 + 3 * _GELU_K * z2)), {}


register(Activation(
    name="gelu_tanh",
    doc="f(u) = u (1 + tanh(sqrt(2/pi) (u + 0.044715 u^3))) / 2 (torch's gelu, approximate='tanh')",
    forward=lambda z, hp: 0.5 * z * (1 + np.tanh(_GELU_C * (z + _GELU_K * z * z * z))),
    backward=_gelu_tanh_backward,
    torch=lambda z, hp: __import__("torch").nn.functional.gelu(z, approximate="tanh"),
    fprime_max=1.129,  # 1.128993 at u ~ 1.4185
    saturates=True,
    rounds_at=lambda z, hp: np.abs(z),  # 0.5 u (1 + tanh(...)): the sum at the scale of 1
))


# --- softplus ---------------------------------------------------------------------------------
def _softplus(z, hp):
    beta, threshold = float(hp["beta"]), float(hp["threshold"])
    u = beta * z
    pos = np.real(u) > 0
    # log(1 + e^u) = max(u, 0) + log1p(e^-|u|), each branch analytic: no overflow, complex-safe
    soft = (np.where(pos, u, 0 * u) + np.log1p(np.exp(np.where(pos, -u, u)))) / beta
    return np.where(np.real(u) > threshold, z, soft)


def _softplus_backward(z, a, g, hp):
    u = float(hp["beta"]) * z
    return np.where(np.real(u) > float(hp["threshold"]), g, g * _sigmoid(u)), {}


def _softplus_kinks(hp):
    # torch switches to the identity where beta u > threshold: a jump of log1p(e^-threshold) / beta
    # (2e-9 at the default 20), which central differences across it see as a slope error of jump / 2h.
    beta = float(hp["beta"])
    return (float(hp["threshold"]) / beta,) if beta != 0 else ()


register(Activation(
    name="softplus",
    doc="f(u) = log(1 + e^(beta u)) / beta, and u where beta u > threshold (as torch); f' = sigma(beta u)",
    hyper={"beta": 1.0, "threshold": 20.0},
    forward=_softplus,
    backward=_softplus_backward,
    torch=lambda z, hp: __import__("torch").nn.functional.softplus(z, beta=float(hp["beta"]), threshold=float(hp["threshold"])),
    kinks=_softplus_kinks,
    continuous=False,
    fprime_max=1.0,
    saturates=True,
    check=lambda hp: None if hp["beta"] != 0 else "beta must be non-zero (softplus divides by it)",
))


# --- elu --------------------------------------------------------------------------------------
def _elu(z, hp):
    pos = np.real(z) > 0
    return np.where(pos, z, float(hp["alpha"]) * np.expm1(np.where(pos, 0 * z, z)))


def _elu_backward(z, a, g, hp):
    pos = np.real(z) > 0
    return np.where(pos, g, g * float(hp["alpha"]) * np.exp(np.where(pos, 0 * z, z))), {}


register(Activation(
    name="elu",
    doc="f(u) = u if u > 0 else alpha (e^u - 1); f' jumps from alpha to 1 at 0 (a kink unless alpha = 1)",
    hyper={"alpha": 1.0},
    forward=_elu,
    backward=_elu_backward,
    torch=lambda z, hp: __import__("torch").nn.functional.elu(z, alpha=float(hp["alpha"])),
    kinks=lambda hp: (0.0,) if float(hp["alpha"]) != 1.0 else (),
    fprime_max=lambda hp: max(1.0, abs(float(hp["alpha"]))),
    saturates=True,
))


# --- hardtanh ---------------------------------------------------------------------------------
def _hardtanh(z, hp):
    lo, hi = float(hp["min_val"]), float(hp["max_val"])
    r = np.real(z)
    return np.where(r < lo, lo + 0 * z, np.where(r > hi, hi + 0 * z, z))


def _hardtanh_backward(z, a, g, hp):
    # torch: f' = 0 at the ends themselves (u <= min_val or u >= max_val)
    r = np.real(z)
    return np.where((r > float(hp["min_val"])) & (r < float(hp["max_val"])), g, 0 * g), {}


register(Activation(
    name="hardtanh",
    doc="f(u) = min(max(u, min_val), max_val); f' = 1 strictly between them, 0 outside and at the ends",
    hyper={"min_val": -1.0, "max_val": 1.0},
    forward=_hardtanh,
    backward=_hardtanh_backward,
    torch=lambda z, hp: __import__("torch").nn.functional.hardtanh(z, float(hp["min_val"]), float(hp["max_val"])),
    kinks=lambda hp: (float(hp["min_val"]), float(hp["max_val"])),
    fprime_max=1.0,
    saturates=True,
    dead_threshold=lambda hp: float(hp["min_val"]),
    check=lambda hp: None if hp["min_val"] < hp["max_val"] else
    f"min_val ({hp['min_val']:g}) must be below max_val ({hp['max_val']:g})",
))
