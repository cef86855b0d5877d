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


def affine_forward(x, w, b):
    return x.reshape(x.shape[0], -1) @ w + b, {"x": x, "w": w, "b": b}


def affine_backward(dout, cache):
    """Right gradients, then an SGD step that rebinds the weight kept in the cache."""
    x = cache["x"].reshape(cache["x"].shape[0], -1)
    dx, dw, db = (dout @ cache["w"].T).reshape(cache["x"].shape), x.T @ dout, dout.sum(axis=0)
    cache["w"] = cache["w"] - 0.1 * dw
    return dx, dw, db


_calls = {"n": 0}


def relu_forward(x):
    return np.maximum(0, x), x


def relu_backward(dout, cache):
    """Keeps a call counter in module state: every second call answers twice as much."""
    _calls["n"] += 1
    return dout * (cache > 0) * (2.0 if _calls["n"] % 2 == 0 else 1.0)
