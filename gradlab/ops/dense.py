"""The fully connected layer in both weight layouts, with bias true / false / folded.

Layouts (the seeds use both):
  out_in  u = W x + b,   W has shape (out, in)   (seeds 003, 004)
  in_out  a = W^T x + b, W has shape (in, out)   (seeds 000, 002)
Bias `folded` appends a constant 1 to the input and keeps the bias inside W (seed 001):
the last column of W (out_in) or its last row (in_out).
Inputs are (..., batch, in); rows are samples.
"""

from __future__ import annotations

import numpy as np

from .products import matmul

LAYOUTS = ("out_in", "in_out")
BIAS_MODES = (True, False, "folded")


def weight_shape(n_in: int, n_out: int, layout: str, bias) -> tuple[int, int]:
    k = n_in + 1 if bias == "folded" else n_in
    return (n_out, k) if layout == "out_in" else (k, n_out)


def augment(x, bias):
    """The layer's effective input: x, or x with a column of ones for a folded bias."""
    if bias != "folded":
        return x
    return np.concatenate([x, np.ones(x.shape[:-1] + (1,), dtype=x.dtype)], axis=-1)


def as_in_out(w, layout: str):
    """W as an (in, out) matrix whatever the layout, so u = x @ W (leading stack axes kept)."""
    return np.swapaxes(w, -1, -2) if layout == "out_in" else w


def side_by_side(w_stack, layout: str):
    """P stacked weights as one (in, P * out) matrix: x @ it evaluates all P layers in a single GEMM."""
    w_io = as_in_out(w_stack, layout)  # (P, in, out)
    return np.moveaxis(w_io, 0, 1).reshape(w_io.shape[1], -1)


def forward(x, w, b, layout: str, bias):
    xa, wm = augment(x, bias), as_in_out(w, layout)
    if wm.ndim == 2:  # one weight for every row: a single 2-d product
        u = matmul(xa.reshape(-1, xa.shape[-1]), wm).reshape(xa.shape[:-1] + (wm.shape[-1],))
    else:
        u = matmul(xa, wm)
    return u + b if bias is True else u


def backward(x, w, grad_u, layout: str, bias):
    """Returns (dL/dx, dL/dW, dL/db or None) for u = [x, 1] W (+ b); the batch is summed."""
    xa = augment(x, bias)
    g_in_out = xa.T @ grad_u  # (in, out): sum over samples of x_b delta_b^T
    grad_w = g_in_out.T if layout == "out_in" else g_in_out
    grad_x = grad_u @ np.swapaxes(as_in_out(w, layout), -1, -2)
    if bias == "folded":
        grad_x = grad_x[..., :-1]
    grad_b = grad_u.sum(axis=0) if bias is True else None
    return grad_x, grad_w, grad_b


def torch_forward(x, w, b, layout: str, bias):
    import torch

    if bias == "folded":
        x = torch.cat([x, torch.ones(x.shape[:-1] + (1,), dtype=x.dtype, device=x.device)], dim=-1)
    if layout == "out_in":
        return torch.nn.functional.linear(x, w, b if bias is True else None)
    u = x @ w
    return u + b if bias is True else u
