"""User ops that call sys.exit(): gradlab must report them as the op's error (exit 2), never end quietly."""

import sys

import numpy as np


class Tanh:
    kind = "activation"
    elementwise = True

    def forward(self, z):
        return np.tanh(z)

    def backward(self, z, grad_out):
        return grad_out * (1.0 - np.tanh(z) ** 2)

    def torch_forward(self, z):
        import torch

        return torch.tanh(z)


class ExitInForward(Tanh):
    def forward(self, z):
        sys.exit(0)


class ExitInBackward(Tanh):
    def backward(self, z, grad_out):
        sys.exit(0)


class ExitOnLargeInput(Tanh):
    """Exits only for |z| > 1.5: a check at small inputs would never see it."""

    def backward(self, z, grad_out):
        if np.max(np.abs(z)) > 1.5:
            sys.exit(0)
        return super().backward(z, grad_out)


class ExitOneInBackward(Tanh):
    def backward(self, z, grad_out):
        sys.exit(1)


class ExitInTorchForward(Tanh):
    def torch_forward(self, z):
        sys.exit(0)


class ExitInInit(Tanh):
    def __init__(self):
        sys.exit(0)


class LossExit:
    kind = "loss"
    target = "regression"

    def forward(self, pred, target):
        sys.exit(0)

    def backward(self, pred, target):
        return pred - target


class LayerExit:
    kind = "layer"
    in_features = 2

    def __init__(self):
        self.params = {"s": np.ones(2)}

    def forward(self, x):
        return x * self.params["s"]

    def backward(self, x, grad_out):
        sys.exit(0)
