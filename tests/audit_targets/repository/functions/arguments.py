"""Functions whose forward takes an axis without a default (passed -1, never drawn as a tensor), and a
gradient reversal as domain-adaptation repositories write it: undeclared it is a mismatch (with a hint to
declare it), declared it passes."""
import torch
from torch.autograd import Function


class SoftmaxDim(Function):
    @staticmethod
    def forward(ctx, x, dim):
        y = torch.softmax(x, dim)
        ctx.save_for_backward(y)
        ctx.dim = dim
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return y * (g - (g * y).sum(ctx.dim, keepdim=True)), None


class SoftmaxDimWrong(SoftmaxDim):
    """Forgets the sum over the axis: y * g."""

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return y * g, None


class GradientReversalFunction(Function):
    @staticmethod
    def forward(ctx, x, lambda_):
        ctx.lambda_ = lambda_
        return x.clone()

    @staticmethod
    def backward(ctx, grads):
        return -ctx.lambda_ * grads, None


class GradientReversalDeclared(GradientReversalFunction):
    surrogate = "reverse"
