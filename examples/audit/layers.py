"""Ops outside the course conventions, audited through audit.yaml (gradlab audit examples/audit/audit.yaml)."""
import numpy as np


def rbf_forward(x, centers, rbf_param):
    """Gaussian radial basis features: out[n, k] = exp(-gamma |x_n - c_k|^2); x (N, D), centers (K, D)."""
    diff = x[:, None, :] - centers[None, :, :]
    out = np.exp(-rbf_param["gamma"] * (diff**2).sum(axis=2))
    return out, (diff, out, rbf_param["gamma"])


def rbf_backward(dout, cache):
    diff, out, gamma = cache
    g = (dout * out)[:, :, None] * (-2 * gamma) * diff
    return g.sum(axis=1), -g.sum(axis=0)


def leaky_forward(x, slope):
    """A leaky ReLU whose slope is a plain number argument."""
    return np.where(x > 0, x, slope * x), (x, slope)


def leaky_backward(dout, cache):
    x, slope = cache
    return dout * np.where(x > 0, 1.0, slope)


def multiclass_hinge(scores, labels, margin):
    """(loss, dscores) with integer labels in [0, C) and a margin drawn from a range."""
    n = scores.shape[0]
    correct = scores[np.arange(n), labels][:, None]
    m = np.maximum(0, scores - correct + margin)
    m[np.arange(n), labels] = 0
    dscores = (m > 0).astype(float)
    dscores[np.arange(n), labels] -= dscores.sum(axis=1)
    return m.sum() / n, dscores / n


def grad_reverse(x):
    """Identity forward; the backward reverses the gradient on purpose (domain-adversarial training)."""
    return x.copy()


def grad_reverse_backward(dout, x):
    return -dout
