"""Wrong layers in the course-assignment convention: each has the kind of slip students make."""
import numpy as np

from layers import (batchnorm_forward, conv_forward_naive, dropout_forward, layernorm_forward,  # noqa: F401
                    max_pool_forward_naive, relu_forward, spatial_batchnorm_forward, spatial_groupnorm_forward)


def affine_forward(x, w, b):
    return x.reshape(x.shape[0], -1) @ w + b, (x, w, b)


def affine_backward(dout, cache):  # db summed over the wrong axis... then averaged: off by a factor N
    x, w, b = cache
    dx = (dout @ w.T).reshape(x.shape)
    dw = x.reshape(x.shape[0], -1).T @ dout
    return dx, dw, dout.mean(axis=0)


def relu_backward(dout, cache):  # forgot dout
    return (cache > 0).astype(float)


def batchnorm_backward(dout, cache):  # dropped the mean term
    xhat, gamma, std, mode = cache
    dxhat = dout * gamma
    dx = (dxhat - xhat * (dxhat * xhat).mean(axis=0)) / std
    return dx, (dout * xhat).sum(axis=0), dout.sum(axis=0)


def batchnorm_backward_alt(dout, cache):  # right in training mode; in test mode too it subtracts the batch means
    xhat, gamma, std, mode = cache
    dxhat = dout * gamma
    dx = (dxhat - dxhat.mean(axis=0) - xhat * (dxhat * xhat).mean(axis=0)) / std
    return dx, (dout * xhat).sum(axis=0), dout.sum(axis=0)


def spatial_batchnorm_backward(dout, cache):  # reshapes dout (N, C, H, W) straight to (-1, C), without the transpose
    from layers import batchnorm_backward as right

    N, C, H, W = dout.shape
    dx, dgamma, dbeta = right(dout.reshape(-1, C), cache)
    return dx.reshape(N, C, H, W), dgamma, dbeta


def spatial_groupnorm_backward(dout, cache):  # the means run over the whole sample, not over each group
    xhat, gamma, std, G = cache
    N, C, H, W = dout.shape
    dxhat = dout * gamma
    axes = (1, 2, 3)
    dx = (dxhat - dxhat.mean(axis=axes, keepdims=True) - xhat * (dxhat * xhat).mean(axis=axes, keepdims=True))
    dx = (dx.reshape(N, G, C // G, H, W) / std).reshape(N, C, H, W)
    return dx, (dout * xhat).sum(axis=(0, 2, 3), keepdims=True), dout.sum(axis=(0, 2, 3), keepdims=True)


def layernorm_backward(dout, cache):  # means over the batch instead of the features
    xhat, gamma, std = cache
    dxhat = dout * gamma
    dx = (dxhat - dxhat.mean(axis=0, keepdims=True) - xhat * (dxhat * xhat).mean(axis=0, keepdims=True)) / std
    return dx, (dout * xhat).sum(axis=0), dout.sum(axis=0)


def dropout_backward(dout, cache):  # in test mode too, multiplies by a mask that is None -> uses ones / p
    dropout_param, mask = cache
    if dropout_param["mode"] == "train":
        return dout * mask
    return dout / dropout_param["p"]


def conv_backward_naive(dout, cache):  # crops the padding with pad:-pad, which is empty at pad 0
    x, w, b, conv_param = cache
    stride, pad = conv_param["stride"], conv_param["pad"]
    _, _, HH, WW = w.shape
    _, _, Ho, Wo = dout.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    dxp, dw = np.zeros_like(xp), np.zeros_like(w)
    for i in range(Ho):
        for j in range(Wo):
            sl = (slice(None), slice(None), slice(i * stride, i * stride + HH), slice(j * stride, j * stride + WW))
            dw += np.tensordot(dout[:, :, i, j], xp[sl], axes=([0], [0]))
            dxp[sl] += np.tensordot(dout[:, :, i, j], w, axes=([1], [0]))
    return dxp[:, :, pad:-pad, pad:-pad], dw, dout.sum(axis=(0, 2, 3))


def max_pool_backward_naive(dout, cache):  # `=` instead of `+=`: wrong when windows overlap
    x, pool_param = cache
    ph, pw, s = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
    N, C, Ho, Wo = dout.shape
    dx = np.zeros_like(x)
    for n in range(N):
        for c in range(C):
            for i in range(Ho):
                for j in range(Wo):
                    win = x[n, c, i * s:i * s + ph, j * s:j * s + pw]
                    a, b2 = np.unravel_index(np.argmax(win), win.shape)
                    dx[n, c, i * s + a, j * s + b2] = dout[n, c, i, j]
    return dx


def softmax_loss(x, y):  # forgot to divide dx by N
    shifted = x - x.max(axis=1, keepdims=True)
    probs = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    n = x.shape[0]
    loss = -np.log(probs[np.arange(n), y]).mean()
    dx = probs.copy()
    dx[np.arange(n), y] -= 1
    return loss, dx


def svm_loss(x, y):  # forgot the correct class's share of the gradient
    n = x.shape[0]
    correct = x[np.arange(n), y][:, None]
    margins = np.maximum(0, x - correct + 1.0)
    margins[np.arange(n), y] = 0
    dx = (margins > 0).astype(float)
    return margins.sum() / n, dx / n


def conv_backward_naive_nostride(dout, cache):  # windows advance by one pixel, whatever the stride: right only at stride 1
    x, w, b, conv_param = cache
    pad = conv_param["pad"]
    N, C, H, W = x.shape
    F, _, HH, WW = w.shape
    _, _, H_out, W_out = dout.shape
    x_pad = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), mode="constant")
    dx_pad, dw, db = np.zeros_like(x_pad), np.zeros_like(w), np.zeros_like(b)
    for n in range(N):
        for f in range(F):
            db[f] += dout[n, f].sum()
            for i in range(H_out):
                for j in range(W_out):
                    sl = (n, slice(None), slice(i, i + HH), slice(j, j + WW))
                    dw[f] += x_pad[sl] * dout[n, f, i, j]
                    dx_pad[sl] += w[f] * dout[n, f, i, j]
    return dx_pad[:, :, pad:pad + H, pad:pad + W], dw, db
