"""The slips in the seed write-ups (shared/seeds), written down as ops, for `gradlab audit` to catch.

Each class implements what a reader would code from the text; the docstring says where the
text goes wrong. Every one of them fails the audit with a shrunk counterexample:

    gradlab audit examples/ops/seed_errata.py:Seed003OutputDelta
    gradlab audit examples/ops/seed_errata.py:Seed001ReLU
    gradlab audit examples/ops/seed_errata.py:Seed002CrossEntropyGradient
    gradlab audit examples/ops/seed_errata.py:Seed002TanhDerivative
"""

import numpy as np


class Seed003OutputDelta:
    """Seed 003: "delta^L = f'(u^L) o (t - y)" for E = 1/2 ||t - y||^2. The sign is backwards:
    dE/dy = y - t, so backprop with this delta climbs the loss instead of descending it."""

    kind = "loss"
    target = "regression"

    def forward(self, pred, target):
        return 0.5 * np.sum((target - pred) ** 2)

    def backward(self, pred, target):
        return target - pred


class Seed001ReLU:
    """Seed 001, eq. 3: "R(x) = x if x < 0, 0 otherwise" -- the inequality is flipped (that is
    min(x, 0)); paired with the usual derivative (1 for x > 0) the backward is wrong on both sides."""

    kind = "activation"

    def forward(self, z):
        return np.where(z < 0, z, 0.0)

    def backward(self, z, grad_out):
        return np.where(z > 0, grad_out, 0.0)


class Seed002CrossEntropyGradient:
    """Seed 002, "Summing it up": the gradient of cross-entropy w.r.t. the output is given as
    Y / Z; with L = -sum Y log Z it is -Y / Z."""

    kind = "loss"
    target = "onehot"
    domain = (1e-3, 1.0)

    def forward(self, pred, target):
        return -np.sum(target * np.log(pred))

    def backward(self, pred, target):
        return target / pred


class Seed002TanhDerivative:
    """Seed 002's tanh derivation writes 4 s (1 - s) with s = sigma(2a) as
    4 (tanh + 1)/2 (1 - (tanh - 1)/2): the second factor should be (1 - tanh)/2. Coded as
    written it gives (1 + t)(3 - t) instead of 1 - t^2 (the text's final line is right)."""

    kind = "activation"

    def forward(self, z):
        return np.tanh(z)

    def backward(self, z, grad_out):
        t = np.tanh(z)
        return grad_out * 4 * (t + 1) / 2 * (1 - (t - 1) / 2)
