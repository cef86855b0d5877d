"""Losses: forward, hand-written dL/dpred and torch mirror, one entry each.

Each sums over the batch and feature axes (the last two) and keeps any leading axes,
so the numeric engine can evaluate a stack of perturbed predictions in one call.

A torch mirror computes the *same* function as its forward, written with the same plain
logs / log-softmax: never a library loss that clamps (torch's binary_cross_entropy clamps
log at -100 and its gradient's denominator at 1e-12, so at a saturated sigmoid it checks a
different function and the autograd engine disagrees with a correct backward).
tests/test_ops.py holds every mirror to its forward and backward at saturated points.
"""

from __future__ import annotations

import numpy as np

from ._registry import Loss, Registry

LOSSES: Registry[Loss] = Registry("loss")
register = LOSSES.register


def _sum2(x):
    return np.sum(x, axis=(-2, -1))


def _log_softmax(z):
    shifted = z - np.max(np.real(z), axis=-1, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))


def _torch():
    import torch

    return torch


register(Loss(
    name="sse",
    doc="E = 1/2 sum (y - t)^2 over the batch (seeds 001, 003, 004); dE/dy = y - t",
    forward=lambda y, t: 0.5 * _sum2((y - t) ** 2),
    backward=lambda y, t: y - t,
    torch=lambda y, t: 0.5 * ((y - t) ** 2).sum(),
    targets=("regression", "onehot", "binary", "probabilities"),
))

register(Loss(
    name="mse",
    doc="E = 1/(2N) sum (y - t)^2 (seed 002): sse averaged over the batch",
    forward=lambda y, t: 0.5 * _sum2((y - t) ** 2),
    backward=lambda y, t: y - t,
    torch=lambda y, t: 0.5 * ((y - t) ** 2).sum(),
    targets=("regression", "onehot", "binary", "probabilities"),
    default_reduction="mean",
    fixed_reduction=True,
))

register(Loss(
    name="cross_entropy",
    doc="E = -sum t log p on probabilities p (after softmax/sigmoid); dE/dp = -t / p",
    forward=lambda p, t: -_sum2(t * np.log(p)),
    backward=lambda p, t: -t / p,
    torch=lambda p, t: -(t * _torch().log(p)).sum(),
    targets=("onehot", "probabilities"),
    needs_probabilities=True,
))

register(Loss(
    name="softmax_cross_entropy",
    doc="E = -sum t log softmax(z) on logits z, fused (seed 000); dE/dz = softmax(z) sum(t) - t",
    forward=lambda z, t: -_sum2(t * _log_softmax(z)),
    backward=lambda z, t: np.exp(_log_softmax(z)) * np.sum(t, axis=-1, keepdims=True) - t,
    torch=lambda z, t: -(t * _torch().log_softmax(z, dim=-1)).sum(),
    targets=("onehot", "probabilities"),
))

register(Loss(
    name="binary_cross_entropy",
    doc="E = -sum [t log p + (1 - t) log(1 - p)]; dE/dp = (p - t) / (p (1 - p))",
    forward=lambda p, t: -_sum2(t * np.log(p) + (1 - t) * np.log(1 - p)),
    backward=lambda p, t: (p - t) / (p * (1 - p)),
    torch=lambda p, t: -(t * _torch().log(p) + (1 - t) * _torch().log(1 - p)).sum(),
    targets=("binary", "probabilities"),
    needs_probabilities=True,
))
