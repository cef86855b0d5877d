"""A fused LayerNorm as a kernel author writes it: forward and a hand-written backward that accumulate
in float32 for float16/bfloat16 inputs, like a Triton/CUDA kernel (and in float64 for float32 inputs: a
float32 kernel that also accumulates in float32 is a few ulps less accurate than torch's own reductions
on short sums, and the rule says so) -- and the same kernel with a classic bug.

    gradlab compare examples/kernels/layernorm.py:FusedLayerNorm examples/kernels/layernorm.py:reference --dtype bfloat16
    gradlab compare examples/kernels/layernorm.py:BuggyLayerNorm examples/kernels/layernorm.py:reference --dtype float16
"""

import torch
import torch.nn.functional as F

EPS = 1e-5


def example_inputs():
    """Argument name -> shape; gradlab varies the sizes (equal sizes together: x's 64 and w's 64)."""
    return {"x": (8, 64), "w": (64,), "b": (64,)}


def reference(x, w, b):
    return F.layer_norm(x, (x.shape[-1],), w, b, EPS)


def _acc(dtype):
    """The accumulation type: wider than the inputs."""
    return torch.float64 if dtype in (torch.float32, torch.float64) else torch.float32


def _column_sums(t):
    """Sum over every row in float32, as a tree (like a kernel's block reduction), not row after row."""
    return t.reshape(-1, t.shape[-1]).t().contiguous().sum(-1)


class FusedLayerNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, b):
        xf = x.to(_acc(x.dtype))
        mean = xf.mean(-1, keepdim=True)
        rstd = torch.rsqrt(((xf - mean) ** 2).mean(-1, keepdim=True) + EPS)
        xhat = (xf - mean) * rstd
        ctx.save_for_backward(xhat, rstd, w)
        return (xhat * w.to(xf.dtype) + b.to(xf.dtype)).to(x.dtype)

    @staticmethod
    def backward(ctx, dy):
        xhat, rstd, w = ctx.saved_tensors
        dyf = dy.to(_acc(dy.dtype))
        g = dyf * w.to(dyf.dtype)  # d loss / d xhat
        # dx = rstd * (g - mean(g) - xhat * mean(g * xhat))
        dx = rstd * (g - g.mean(-1, keepdim=True) - xhat * (g * xhat).mean(-1, keepdim=True))
        dw = _column_sums(dyf * xhat)
        db = _column_sums(dyf)
        return dx.to(dy.dtype), dw.to(w.dtype), db.to(w.dtype)


class BuggyLayerNorm(FusedLayerNorm):
    """The mean-of-(dy * xhat) term dropped from dx: right only where it happens to vanish."""

    @staticmethod
    def backward(ctx, dy):
        xhat, rstd, w = ctx.saved_tensors
        dyf = dy.to(_acc(dy.dtype))
        g = dyf * w.to(dyf.dtype)
        dx = rstd * (g - g.mean(-1, keepdim=True))  # BUG: - xhat * mean(g * xhat) is missing
        dw = _column_sums(dyf * xhat)
        db = _column_sums(dyf)
        return dx.to(dy.dtype), dw.to(w.dtype), db.to(w.dtype)
