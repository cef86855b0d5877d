"""A fused tanh-GELU as a kernel author writes it, for --double-backward and --forward-ad.

FusedGelu's backward recomputes from the saved input with differentiable torch ops (accumulating in float32
for float16/bfloat16), so autograd can differentiate it again, and it defines a jvp for forward mode.
The others are what goes wrong:
  GeluDetached  the backward detaches tanh(u): first order right, second order wrong (d tanh/dx dropped)
  GeluOnce      @once_differentiable: double backward not supported (reported, not judged)
  GeluWrongJvp  the jvp forgets the x * d tanh/dx term

    gradlab compare examples/kernels/gelu.py:FusedGelu examples/kernels/gelu.py:reference --double-backward --forward-ad
    gradlab compare examples/kernels/gelu.py:GeluDetached examples/kernels/gelu.py:reference --double-backward
    gradlab compare examples/kernels/gelu.py:GeluDetached examples/kernels/gelu.py:reference --dtype float64 --double-backward
"""

import math

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

K = math.sqrt(2.0 / math.pi)
C = 0.044715


def example_inputs():
    return {"x": (8, 64)}


def reference(x):
    return F.gelu(x, approximate="tanh")


def _acc(dtype):
    return torch.float64 if dtype == torch.float64 else torch.float32


def _slope(xf, t):
    """dy/dx = 0.5 (1 + t) + 0.5 x (1 - t^2) k (1 + 3c x^2), t = tanh(k (x + c x^3))."""
    return 0.5 * (1 + t) + 0.5 * xf * (1 - t * t) * K * (1 + 3 * C * xf * xf)


def _tanh_u(xf):
    return torch.tanh(K * (xf + C * xf ** 3))


class FusedGelu(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        xf = x.to(_acc(x.dtype))
        ctx.save_for_backward(x)
        ctx.save_for_forward(x)
        return (0.5 * xf * (1 + _tanh_u(xf))).to(x.dtype)

    @staticmethod
    def backward(ctx, dy):
        (x,) = ctx.saved_tensors
        xf = x.to(_acc(x.dtype))  # differentiable: x is a saved input, so double backward reaches it
        return (dy.to(xf.dtype) * _slope(xf, _tanh_u(xf))).to(dy.dtype)

    @staticmethod
    def jvp(ctx, dx):
        (x,) = ctx.saved_tensors
        xf = x.to(_acc(x.dtype))
        return (dx.to(xf.dtype) * _slope(xf, _tanh_u(xf))).to(x.dtype)


class GeluDetached(FusedGelu):
    @staticmethod
    def backward(ctx, dy):
        (x,) = ctx.saved_tensors
        xf = x.to(_acc(x.dtype))
        t = _tanh_u(xf).detach()  # BUG for second order: tanh(u) treated as a constant
        return (dy.to(xf.dtype) * _slope(xf, t)).to(dy.dtype)


class GeluOnce(FusedGelu):
    @staticmethod
    @once_differentiable
    def backward(ctx, dy):
        (x,) = ctx.saved_tensors
        xf = x.to(_acc(x.dtype))
        return (dy.to(xf.dtype) * _slope(xf, _tanh_u(xf))).to(dy.dtype)


class GeluWrongJvp(FusedGelu):
    @staticmethod
    def jvp(ctx, dx):
        (x,) = ctx.saved_tensors
        xf = x.to(_acc(x.dtype))
        t = _tanh_u(xf)
        return (dx.to(xf.dtype) * 0.5 * (1 + t)).to(x.dtype)  # BUG: the x * dtanh/dx term is missing
