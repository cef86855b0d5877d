"""Correct ops with hand-written backward passes. None declares its kinks: the auditor must
find relu's, step's and hardtanh's non-differentiable points by itself and not fail on them."""

import numpy as np


def _sigmoid(z):
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


class Relu:
    def forward(self, z):
        return np.where(z > 0, z, 0.0)

    def backward(self, z, grad_out):
        return np.where(z > 0, grad_out, 0.0)


class LeakyRelu:
    slope = 0.1

    def forward(self, z):
        return np.where(z > 0, z, self.slope * z)

    def backward(self, z, grad_out):
        return np.where(z > 0, grad_out, self.slope * grad_out)


class Sigmoid:
    def forward(self, z):
        return _sigmoid(z)

    def backward(self, z, grad_out):
        s = _sigmoid(z)
        return grad_out * s * (1 - s)


class Tanh:
    def forward(self, z):
        return np.tanh(z)

    def backward(self, z, grad_out):
        return grad_out * (1 - np.tanh(z) ** 2)


class Silu:
    def forward(self, z):
        return z * _sigmoid(z)

    def backward(self, z, grad_out):
        s = _sigmoid(z)
        return grad_out * (s + z * s * (1 - s))


class Softmax:
    """Along the last axis; backward is the full Jacobian's VJP, diag(s) - s s^T."""

    def forward(self, z):
        e = np.exp(z - z.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    def backward(self, z, grad_out):
        s = self.forward(z)
        return s * (grad_out - np.sum(grad_out * s, axis=-1, keepdims=True))


class Step:
    def forward(self, z):
        return (z > 0).astype(float)

    def backward(self, z, grad_out):
        return np.zeros_like(grad_out)


class Hardtanh:
    def forward(self, z):
        return np.clip(z, -1.0, 1.0)

    def backward(self, z, grad_out):
        return np.where(np.abs(z) < 1, grad_out, 0.0)


class MSE:
    """1/(2N) sum (pred - target)^2 over a batch of N rows."""

    target = "regression"

    def forward(self, pred, target):
        return 0.5 * np.sum((pred - target) ** 2) / pred.shape[0]

    def backward(self, pred, target):
        return (pred - target) / pred.shape[0]


class CrossEntropy:
    """-sum t log p on probabilities."""

    target = "probabilities"
    domain = (0.0, 1.0)

    def forward(self, pred, target):
        return -np.sum(target * np.log(pred))

    def backward(self, pred, target):
        return -target / pred


class CrossEntropyNoDomain:
    """The issue's loss: mean -sum t log p on probabilities, no `domain` declared. Undefined at
    p = 0 (log 0): the auditor infers (0, 1] instead of failing on pred = [[0.]]."""

    target = "onehot"

    def forward(self, pred, target):
        return -(target * np.log(pred)).sum() / pred.shape[0]

    def backward(self, pred, target):
        return -target / pred / pred.shape[0]


class BinaryCrossEntropyNoDomain:
    """-sum [t log p + (1 - t) log(1 - p)], no `domain`: undefined at 0 and at 1, inferred (0, 1)."""

    target = "binary"

    def forward(self, pred, target):
        return -np.sum(target * np.log(pred) + (1 - target) * np.log(1 - pred))

    def backward(self, pred, target):
        return (pred - target) / (pred * (1 - pred))


class SoftCrossEntropyNoDomain(CrossEntropyNoDomain):
    """Probability targets: t log p with every t > 0, still finite at p = 1."""

    target = "probabilities"


class Dense:
    """y = x W + b with W (in, out): a non-square 3 -> 5 layer."""

    in_features = 3

    def __init__(self):
        rng = np.random.default_rng(0)
        self.params = {"W": rng.normal(size=(3, 5)), "b": np.zeros(5)}

    def forward(self, x):
        return x @ self.params["W"] + self.params["b"]

    def backward(self, x, grad_out):
        return grad_out @ self.params["W"].T, {"W": x.T @ grad_out, "b": grad_out.sum(axis=0)}


CATALOGUE = ["Relu", "LeakyRelu", "Sigmoid", "Tanh", "Silu", "Softmax", "Step", "Hardtanh", "MSE", "CrossEntropy",
             "CrossEntropyNoDomain", "BinaryCrossEntropyNoDomain", "SoftCrossEntropyNoDomain", "Dense"]
