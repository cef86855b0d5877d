"""A torch.autograd.Function that draws its own noise with torch's default generator (unseeded)."""
import torch


class RandomScale(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        scale = torch.rand_like(x) + 0.5
        ctx.save_for_backward(scale)
        return x * scale

    @staticmethod
    def backward(ctx, grad):
        (scale,) = ctx.saved_tensors
        return grad * scale
