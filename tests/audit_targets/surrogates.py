"""Deliberate surrogate gradients: gradient reversal (as in domain-adaptation repositories) and a
straight-through round; each declared, and each also as an undeclared twin that must be flagged."""
import torch


class GradientReversal(torch.autograd.Function):
    surrogate = "reverse"
    lambda_ = 1.0

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad_output):
        return grad_output.neg() * GradientReversal.lambda_


class GradientReversalUndeclared(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad_output):
        return grad_output.neg()


class ScaledReversal(torch.autograd.Function):
    """lambda as an argument: GradReverse.apply(x, alpha)."""

    surrogate = "reverse"

    @staticmethod
    def forward(ctx, x, alpha):
        ctx.save_for_backward(alpha)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad_output):
        (alpha,) = ctx.saved_tensors
        return -alpha * grad_output, None


class ReversalWrongSign(torch.autograd.Function):
    """Declares reversal but forgets the minus sign."""

    surrogate = ("scale", -0.5)

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad_output):
        return 0.5 * grad_output


class RoundSTE(torch.autograd.Function):
    surrogate = "straight-through"

    @staticmethod
    def forward(ctx, x):
        return torch.round(x)

    @staticmethod
    def backward(ctx, grad_output):
        return grad_output.clone()


class SignClippedSTE(torch.autograd.Function):
    """sign(x) forward; backward grad_out * (|x| <= 1): the hardtanh straight-through estimator."""

    @staticmethod
    def surrogate(true_grad, x, grad_out):
        return grad_out * (abs(x) <= 1)

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.sign(x)

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        return grad_output * (x.abs() <= 1)


class SignClippedSTEWrong(torch.autograd.Function):
    """The same declaration, but the backward forgets the clip."""

    surrogate = SignClippedSTE.surrogate

    @staticmethod
    def forward(ctx, x):
        return torch.sign(x)

    @staticmethod
    def backward(ctx, grad_output):
        return grad_output.clone()


class RoundUndeclared(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return torch.round(x)

    @staticmethod
    def backward(ctx, grad_output):
        return grad_output.clone()
