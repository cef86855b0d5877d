"""Spatial group norm as CS231n's 2019 assignment writes it: gamma and beta of shape (1, C, 1, 1). Correct."""
import numpy as np


def spatial_groupnorm_forward(x, gamma, beta, G, gn_param):
    eps = gn_param.get("eps", 1e-5)
    N, C, H, W = x.shape
    xg = x.reshape(N, G, C // G, H, W)
    mu = xg.mean(axis=(2, 3, 4), keepdims=True)
    std = np.sqrt(xg.var(axis=(2, 3, 4), keepdims=True) + eps)
    xhat = ((xg - mu) / std).reshape(N, C, H, W)
    return gamma * xhat + beta, (xhat, gamma, std, G)


def spatial_groupnorm_backward(dout, cache):
    xhat, gamma, std, G = cache
    N, C, H, W = dout.shape
    dgamma = (dout * xhat).sum(axis=(0, 2, 3), keepdims=True)
    dbeta = dout.sum(axis=(0, 2, 3), keepdims=True)
    dxhat = (dout * gamma).reshape(N, G, C // G, H, W)
    xh = xhat.reshape(N, G, C // G, H, W)
    axes = (2, 3, 4)
    dx = (dxhat - dxhat.mean(axis=axes, keepdims=True) - xh * (dxhat * xh).mean(axis=axes, keepdims=True)) / std
    return dx.reshape(N, C, H, W), dgamma, dbeta
