"""Activations: forward, hand-written backward (VJP) and torch mirror, one entry each.

Every forward works on arrays of any leading shape (features on the last axis) and on
complex input (branches compare real parts, softmax shifts by the real max), so the
numeric engine can evaluate many perturbations at once and use the complex step.
`backward(z, a, grad_out, hp)` returns `(grad_z, {hyper_name: grad})`; the dict holds
gradients for the hyperparameters a spec marks `trainable`.
"""

from __future__ import annotations

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
