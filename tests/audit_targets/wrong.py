"""Ops whose backward is wrong somewhere; each must be caught with a counterexample.

Self-contained (a file loaded by path cannot use relative imports): each forward is right.
"""

import numpy as np


def _sigmoid(z):
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


class Relu:
    def forward(self, z):
        return np.where(z > 0, z, 0.0)


class Sigmoid:
    def forward(self, z):
        return _sigmoid(z)


class Softmax:
    def forward(self, z):
        e = np.exp(z - z.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)


class MSE:
    target = "regression"

    def forward(self, pred, target):
        return 0.5 * np.sum((pred - target) ** 2) / pred.shape[0]


class Dense:
    in_features = 3

    def __init__(self):
        rng = np.random.default_rng(0)
        self.params = {"W": rng.normal(size=(3, 5)), "b": np.zeros(5)}

    def forward(self, x):
        return x @ self.params["W"] + self.params["b"]

    def backward(self, x, grad_out):
        return grad_out @ self.params["W"].T, {"W": x.T @ grad_out, "b": grad_out.sum(axis=0)}


class ReluWrongSide(Relu):
    """The derivative of the other branch: 1 where z < 0, 0 where z > 0."""

    def backward(self, z, grad_out):
        return np.where(z < 0, grad_out, 0.0)


class SigmoidPlus(Sigmoid):
    """s (1 + s) instead of s (1 - s)."""

    def backward(self, z, grad_out):
        s = _sigmoid(z)
        return grad_out * s * (1 + s)


class SoftmaxDiagonal(Softmax):
    """Keeps only the Jacobian's diagonal s (1 - s): right only for one feature."""

    def backward(self, z, grad_out):
        s = self.forward(z)
        return grad_out * s * (1 - s)


class MSENoMean(MSE):
    """Forgets the 1/N of the forward: right only for a batch of one row."""

    def backward(self, pred, target):
        return pred - target


class DenseWrongTranspose(Dense):
    """grad_x = grad_out @ W instead of grad_out @ W.T (only square layers even run)."""

    def backward(self, x, grad_out):
        _, grads = super().backward(x, grad_out)
        return grad_out @ self.params["W"], grads


class DenseWrongTransposeSquare(Dense):
    """The same slip in a square 3 -> 3 layer: it runs, and is wrong unless W is symmetric."""

    def __init__(self):
        rng = np.random.default_rng(1)
        self.params = {"W": rng.normal(size=(3, 3)), "b": np.zeros(3)}

    def backward(self, x, grad_out):
        _, grads = super().backward(x, grad_out)
        return grad_out @ self.params["W"], grads


class SigmoidClippedAbove10(Sigmoid):
    """Clips z to [-10, 10] 'for stability' in backward only: wrong only for |z| > 10."""

    def backward(self, z, grad_out):
        s = _sigmoid(np.clip(z, None, 10.0))
        return grad_out * s * (1 - s)


CATALOGUE = ["ReluWrongSide", "SigmoidPlus", "SoftmaxDiagonal", "MSENoMean", "DenseWrongTransposeSquare", "SigmoidClippedAbove10"]
