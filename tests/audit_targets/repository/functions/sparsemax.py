"""torch.autograd.Functions as repositories write them: sparsemax over the last axis with @staticmethod and
(as entmax does) @classmethod forward/backward, a sparsemax whose backward broadcasts v_hat along the wrong
axis (a shape bug: wrong values on square inputs, an error on the others), and a cube whose backward is
wrong in one element only."""
import torch
from torch.autograd import Function


def _threshold(z):
    """tau and the support size of sparsemax along the last axis (z already shifted by its max)."""
    srt, _ = torch.sort(z, dim=-1, descending=True)
    cumsum = srt.cumsum(-1) - 1
    rho = torch.arange(1, z.shape[-1] + 1, dtype=z.dtype)
    support = rho * srt > cumsum
    k = support.sum(dim=-1, keepdim=True)
    tau = cumsum.gather(-1, k - 1) / k.to(z.dtype)
    return tau, k


class SparsemaxStatic(Function):
    @staticmethod
    def forward(ctx, z):
        z = z - z.max(dim=-1, keepdim=True).values
        tau, _ = _threshold(z)
        out = torch.clamp(z - tau, min=0)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        (out,) = ctx.saved_tensors
        support = (out > 0).to(grad_out.dtype)
        v_hat = (grad_out * support).sum(-1, keepdim=True) / support.sum(-1, keepdim=True)
        return support * (grad_out - v_hat)


class SparsemaxClass(Function):
    """entmax's layout: classmethods, extra arguments with defaults, None for them in backward."""

    @classmethod
    def forward(cls, ctx, X, dim=-1, k=None):
        ctx.dim = dim
        X = X - X.max(dim=dim, keepdim=True).values
        tau, supp_size = _threshold(X)
        output = torch.clamp(X - tau, min=0)
        ctx.save_for_backward(supp_size, output)
        return output

    @classmethod
    def backward(cls, ctx, grad_output):
        supp_size, output = ctx.saved_tensors
        grad_input = grad_output.clone()
        grad_input[output == 0] = 0
        v_hat = grad_input.sum(dim=ctx.dim) / supp_size.to(output.dtype).squeeze(ctx.dim)
        grad_input = torch.where(output != 0, grad_input - v_hat.unsqueeze(ctx.dim), grad_input)
        return grad_input, None, None


class SparsemaxShapeBug(SparsemaxClass):
    """v_hat is not unsqueezed: it broadcasts along the last axis (right only for one row)."""

    @classmethod
    def backward(cls, ctx, grad_output):
        supp_size, output = ctx.saved_tensors
        grad_input = grad_output.clone()
        grad_input[output == 0] = 0
        v_hat = grad_input.sum(dim=ctx.dim) / supp_size.to(output.dtype).squeeze(ctx.dim)
        grad_input = torch.where(output != 0, grad_input - v_hat, grad_input)
        return grad_input, None, None


class CubeOneElement(Function):
    """x^3 with a backward that is wrong in the first element only."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x ** 3

    @staticmethod
    def backward(ctx, grad_out):
        (x,) = ctx.saved_tensors
        g = 3 * x ** 2 * grad_out
        g.view(-1)[0] = g.view(-1)[0] * 1.01
        return g
