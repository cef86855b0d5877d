"""Swish, f(z) = z * sigmoid(beta z) (Ramachandran et al. 2017): an activation for `gradlab audit`
and for specs (`{type: activation, fn: custom, impl: "examples/ops/swish.py:Swish"}`).

    gradlab audit examples/ops/swish.py:Swish
"""

import numpy as np


def _sigmoid(z):
    e = np.exp(-np.abs(z))  # never overflows
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


class Swish:
    kind = "activation"
    beta = 1.5
    elementwise = True  # acts on each element alone (lets gradlab's numeric engine take shortcuts)

    def forward(self, z):
        return z * _sigmoid(self.beta * z)

    def backward(self, z, grad_out):
        s = _sigmoid(self.beta * z)
        return grad_out * (s + self.beta * z * s * (1.0 - s))

    def torch_forward(self, z):  # optional: the autograd engine's mirror in a spec
        import torch

        return z * torch.sigmoid(self.beta * z)
