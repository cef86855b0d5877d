"""torch.autograd.Function examples: a cubic polynomial with a right and a wrong backward."""

import torch


class Cubic(torch.autograd.Function):
    """p(x) = x^3 - 2x^2 + x; p'(x) = 3x^2 - 4x + 1."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x**3 - 2 * x**2 + x

    @staticmethod
    def backward(ctx, grad_out):
        (x,) = ctx.saved_tensors
        return grad_out * (3 * x**2 - 4 * x + 1)


class CubicWrong(Cubic):
    """Cubic's forward; its backward differentiates -2x^2 as -2x."""

    @staticmethod
    def backward(ctx, grad_out):
        (x,) = ctx.saved_tensors
        return grad_out * (3 * x**2 - 2 * x + 1)


class Mul(torch.autograd.Function):
    """Two tensor arguments: both gradients are audited."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a * b

    @staticmethod
    def backward(ctx, grad_out):
        a, b = ctx.saved_tensors
        return grad_out * b, grad_out * a
