"""Gradients in a shape that only broadcasts, with right values (warnings), and one with one value per
sample (a failure): affine's db of shape (1, M) for b of shape (M,), a batchnorm's dgamma and dbeta of
shape (1, D) for (D,), and a batchnorm whose dgamma is never summed over the batch (N, D)."""
import numpy as np


def affine_forward(x, w, b):
    return x.reshape(x.shape[0], -1) @ w + b, (x, w)


def affine_backward(dout, cache):
    x, w = cache
    dx = (dout @ w.T).reshape(x.shape)
    return dx, x.reshape(x.shape[0], -1).T @ dout, dout.sum(axis=0, keepdims=True)


def batchnorm_forward(x, gamma, beta, bn_param):
    eps = bn_param.get("eps", 1e-5)
    mu, var = x.mean(axis=0), x.var(axis=0)
    std = np.sqrt(var + eps)
    xhat = (x - mu) / std
    return gamma * xhat + beta, (xhat, gamma, std)


def batchnorm_backward(dout, cache):
    xhat, gamma, std = cache
    dgamma = (dout * xhat).sum(axis=0, keepdims=True)
    dbeta = dout.sum(axis=0, keepdims=True)
    dxhat = dout * gamma
    dx = (dxhat - dxhat.mean(axis=0) - xhat * (dxhat * xhat).mean(axis=0)) / std
    return dx, dgamma, dbeta


def batchnorm_backward_unsummed(dout, cache):
    xhat, gamma, std = cache
    dxhat = dout * gamma
    dx = (dxhat - dxhat.mean(axis=0) - xhat * (dxhat * xhat).mean(axis=0)) / std
    return dx, dout * xhat, dout.sum(axis=0)
