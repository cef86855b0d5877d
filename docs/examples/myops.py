"""Two softsign activations for the tutorial (docs/tutorial/first-check.md): one right, one with the
classic slip of a derivative that forgets to square its denominator."""

import numpy as np


class Softsign:
    """f(u) = u / (1 + |u|), f'(u) = 1 / (1 + |u|)^2."""

    elementwise = True

    def forward(self, z):
        return z / (1.0 + np.abs(z))

    def backward(self, z, grad_out):
        return grad_out / (1.0 + np.abs(z)) ** 2

    def torch_forward(self, z):
        return z / (1.0 + z.abs())


class SoftsignWrong(Softsign):
    """The same forward; the backward's denominator is not squared."""

    def backward(self, z, grad_out):
        return grad_out / (1.0 + np.abs(z))
