"""Two-input Functions for --double-backward: y = tanh(x * s), elementwise.

ScaledTanh's backward is built from saved inputs with differentiable ops; ScaledTanhXDetached computes
grad s with x.detach(): its first order is right, and so is every second-order term but d(grad s)/dx,
so the Hessian-vector product is wrong with respect to x only.
"""

import torch


def example_inputs():
    return {"x": (6, 10), "s": (6, 10)}


def reference(x, s):
    return torch.tanh(x * s)


class ScaledTanh(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, s):
        ctx.save_for_backward(x, s)
        return torch.tanh(x * s)

    @staticmethod
    def backward(ctx, dy):
        x, s = ctx.saved_tensors
        d = dy * (1 - torch.tanh(x * s) ** 2)
        return d * s, d * x


class ScaledTanhXDetached(ScaledTanh):
    @staticmethod
    def backward(ctx, dy):
        x, s = ctx.saved_tensors
        d = dy * (1 - torch.tanh(x * s) ** 2)
        return d * s, d * x.detach()  # BUG (second order only): grad s no longer depends on x
