"""A torch.autograd.Function with a hand-written backward: p(x) = x^3 - 2x^2 + x.

    gradlab audit examples/ops/cubic.py:Cubic
"""

import torch


class Cubic(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x**3 - 2 * x**2 + x

    @staticmethod
    def backward(ctx, grad_out):
        (x,) = ctx.saved_tensors
        return grad_out * (3 * x**2 - 4 * x + 1)
