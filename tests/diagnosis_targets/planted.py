"""Planted bugs for gradlab's diagnosis (tests/test_diagnosis.py): each op's forward is right.

Not a test module (no `test_` prefix) and no YAML here: the tests write their specs to tmp_path.
"""

import numpy as np


def _sigmoid(z):
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


class Swish:
    """z * sigmoid(beta z), everything right."""

    kind = "activation"
    beta = 1.5
    elementwise = True

    def forward(self, z):
        return z * _sigmoid(self.beta * z)

    def backward(self, z, grad_out):
        s = _sigmoid(self.beta * z)
        return grad_out * (s + self.beta * z * s * (1.0 - s))

    def torch_forward(self, z):
        import torch

        return z * torch.sigmoid(self.beta * z)


class SwishWrongBeta(Swish):
    """The backward forgets beta inside the sigmoid: s(z) instead of s(beta z)."""

    def backward(self, z, grad_out):
        s = _sigmoid(z)
        return grad_out * (s + z * s * (1.0 - s))


class SwishWrongMirror(Swish):
    """Forward and backward right; the torch mirror uses beta = 1."""

    def torch_forward(self, z):
        import torch

        return z * torch.sigmoid(z)


class SwishWrongForward(Swish):
    """Backward and torch mirror agree on beta = 1.5; the forward uses beta = 1.0."""

    def forward(self, z):
        return z * _sigmoid(z)


class SwishNegated(Swish):
    """The backward's sign flipped."""

    def backward(self, z, grad_out):
        return -super().backward(z, grad_out)


class SwishDoubled(Swish):
    """The backward twice too large (a stray factor 2)."""

    def backward(self, z, grad_out):
        return 2.0 * super().backward(z, grad_out)


class SwishClipped(Swish):
    """Clips z at 0.45 in backward only ('for stability'): wrong only for the few z > 0.45."""

    def backward(self, z, grad_out):
        return super().backward(np.minimum(z, 0.45), grad_out)


class Huber:
    """The Huber loss summed over a batch, right."""

    target = "regression"
    delta = 1.0

    def forward(self, pred, target):
        r = np.abs(pred - target)
        return np.sum(np.where(r <= self.delta, 0.5 * r**2, self.delta * (r - 0.5 * self.delta)))

    def backward(self, pred, target):
        return np.clip(pred - target, -self.delta, self.delta)

    def torch_forward(self, pred, target):
        import torch

        return torch.nn.functional.huber_loss(pred, target, reduction="sum", delta=self.delta)


class HuberNoClip(Huber):
    """The backward forgets the clip: r instead of clip(r, -delta, delta)."""

    def backward(self, pred, target):
        return pred - target
