"""A batchnorm whose alt backward adds eps to the variance it keeps in the cache (var += eps)."""
import numpy as np


def batchnorm_forward(x, gamma, beta, bn_param):
    eps = bn_param.get("eps", 1e-5)
    mu = x.mean(axis=0)
    var = x.var(axis=0)
    xhat = (x - mu) / np.sqrt(var + eps)
    return gamma * xhat + beta, (x, mu, var, gamma, eps)


def batchnorm_backward_alt(dout, cache):
    x, mu, var, gamma, eps = cache
    var += eps  # in place: the cache is different after this call
    xhat = (x - mu) / np.sqrt(var)
    dxhat = dout * gamma
    dx = (dxhat - dxhat.mean(axis=0) - xhat * (dxhat * xhat).mean(axis=0)) / np.sqrt(var)
    return dx, (dout * xhat).sum(axis=0), dout.sum(axis=0)
