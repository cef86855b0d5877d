"""Ops that try to end gradlab (sys.exit, a KeyboardInterrupt of their own) and losses whose
domain must be inferred: each must become a counterexample or pass -- never gradlab's exit 0."""

import sys

import numpy as np


class Identity:
    def forward(self, z):
        return z

    def backward(self, z, grad_out):
        return grad_out


class ExitInForward(Identity):
    def forward(self, z):
        sys.exit(0)


class ExitInBackwardAboveOneAndAHalf(Identity):
    """Right everywhere, but exits for |z| > 1.5: only a search finds it."""

    def backward(self, z, grad_out):
        if np.any(np.abs(z) > 1.5):
            sys.exit(0)
        return grad_out


class RaisesKeyboardInterrupt(Identity):
    def backward(self, z, grad_out):
        raise KeyboardInterrupt


class ExitInForwardNextToOneHalf(Identity):
    """forward exits only within 0.05 of 0.5, never at 0.5 itself: on the difference stencil around z = 0.5."""

    def forward(self, z):
        if np.any((np.abs(z - 0.5) > 0) & (np.abs(z - 0.5) < 0.05)):
            sys.exit(3)
        return z


class CrossEntropyNoMinus:
    """A wrong loss on probabilities without a domain: still caught inside the inferred (0, 1]."""

    target = "onehot"

    def forward(self, pred, target):
        return -(target * np.log(pred)).sum()

    def backward(self, pred, target):
        return target / pred


class CrossEntropyNaNBackwardNearZero:
    """Right forward, but a backward that gives NaN for p < 1e-6: strictly inside the inferred domain."""

    target = "onehot"

    def forward(self, pred, target):
        return -(target * np.log(pred)).sum()

    def backward(self, pred, target):
        return np.where(pred < 1e-6, np.nan, -target / pred)


class CrossEntropyNaNInside:
    """NaN strictly inside (0, 1) (at p > 0.99), declared domain (0, 1): a non-finite finding."""

    target = "onehot"
    domain = (0.0, 1.0)

    def forward(self, pred, target):
        return -(target * np.log(pred)).sum() + np.sum(np.where(pred > 0.99, np.nan, 0.0))

    def backward(self, pred, target):
        return -target / pred


class PoissonNoDomain:
    """Poisson negative log-likelihood on rates: defined on (0, inf), inferred so for regression targets."""

    target = "regression"

    def forward(self, pred, target):
        return np.sum(pred - target * np.log(pred))

    def backward(self, pred, target):
        return 1 - target / pred


class DeadlineExpires(Identity):
    """Stands in for gradlab's --timeout firing while the op runs: it must stop the audit."""

    def backward(self, z, grad_out):
        from gradlab.usercode import Timeout

        raise Timeout(1.0, "audit")


class Sleeps(Identity):
    """A forward that hangs: `gradlab audit --timeout` must give up on it (exit 2)."""

    def forward(self, z):
        import time

        time.sleep(60)
        return z
