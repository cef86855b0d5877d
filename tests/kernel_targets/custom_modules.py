"""Modules with a custom torch.autograd.Function inside, for `gradlab audit --kind module`.

FusedLinear is right; MeanLinear's backward averages the weight gradient over the batch (a classic bug that
a batch of one hides); ScaledTanh's init comes from the `init` dict; Dropped uses dropout (pinned by the audit).
"""

import torch


def example_inputs():
    return {"x": (4, 6)}


class _Linear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        return x @ weight.t() + bias

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        return grad @ weight, grad.t() @ x, grad.sum(0)


class _MeanLinear(_Linear):
    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        return grad @ weight, grad.t() @ x / x.shape[0], grad.sum(0)  # BUG: weight gradient averaged over the batch


class FusedLinear(torch.nn.Module):
    def __init__(self, width=6, out=5):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(out, width) / width**0.5)
        self.bias = torch.nn.Parameter(torch.zeros(out))

    def forward(self, x):
        return torch.tanh(_Linear.apply(x, self.weight, self.bias))


class MeanLinear(FusedLinear):
    def forward(self, x):
        return torch.tanh(_MeanLinear.apply(x, self.weight, self.bias))


class Block(torch.nn.Module):
    """Two layers, the buggy one second: the audit names `second.weight`, not the first layer's."""

    def __init__(self):
        super().__init__()
        self.first = FusedLinear(6, 6)
        self.second = MeanLinear(6, 3)

    def forward(self, x):
        return self.second(torch.relu(self.first(x)))


class Dropped(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(6, 5)
        self.drop = torch.nn.Dropout(0.3)

    def forward(self, x):
        return self.drop(self.lin(x))


class Wide(torch.nn.Module):
    init = {"width": 6, "hidden": 40}

    def __init__(self, width, hidden):
        super().__init__()
        self.up = torch.nn.Linear(width, hidden)
        self.down = torch.nn.Linear(hidden, width)

    def forward(self, x):
        return self.down(torch.nn.functional.gelu(self.up(x)))


class NeedsArgs(torch.nn.Module):
    def __init__(self, width):
        super().__init__()
        self.lin = torch.nn.Linear(width, width)


class Rectified(torch.nn.Module):
    """relu(x) * w: inputs with exact zeros sit on the kink."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(6))

    def forward(self, x):
        return torch.relu(x) * self.w
