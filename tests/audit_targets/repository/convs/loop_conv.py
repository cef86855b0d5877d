"""Convolutions in six nested Python loops, forward and backward: a course-style function pair and a
from-scratch stateful layer, each correct and with a planted bug (dw's kernel indices transposed)."""
import numpy as np


def conv_forward_naive(x, w, b, conv_param):
    stride, pad = conv_param["stride"], conv_param["pad"]
    N, C, H, W = x.shape
    F, _, HH, WW = w.shape
    Ho = 1 + (H + 2 * pad - HH) // stride
    Wo = 1 + (W + 2 * pad - WW) // stride
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    out = np.zeros((N, F, Ho, Wo))
    for n in range(N):
        for f in range(F):
            for i in range(Ho):
                for j in range(Wo):
                    s = b[f]
                    for c in range(C):
                        for di in range(HH):
                            for dj in range(WW):
                                s += xp[n, c, i * stride + di, j * stride + dj] * w[f, c, di, dj]
                    out[n, f, i, j] = s
    return out, (x, w, b, conv_param)


def conv_backward_naive(dout, cache):
    x, w, b, conv_param = cache
    stride, pad = conv_param["stride"], conv_param["pad"]
    N, C, H, W = x.shape
    F, _, HH, WW = w.shape
    _, _, Ho, Wo = dout.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    dxp, dw, db = np.zeros_like(xp), np.zeros_like(w), np.zeros_like(b)
    for n in range(N):
        for f in range(F):
            for i in range(Ho):
                for j in range(Wo):
                    g = dout[n, f, i, j]
                    db[f] += g
                    for c in range(C):
                        for di in range(HH):
                            for dj in range(WW):
                                dw[f, c, di, dj] += xp[n, c, i * stride + di, j * stride + dj] * g
                                dxp[n, c, i * stride + di, j * stride + dj] += w[f, c, di, dj] * g
    return dxp[:, :, pad:pad + H, pad:pad + W], dw, db


def conv_backward_naive_transposed(dout, cache):
    x, w, b, conv_param = cache
    stride, pad = conv_param["stride"], conv_param["pad"]
    N, C, H, W = x.shape
    F, _, HH, WW = w.shape
    _, _, Ho, Wo = dout.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    dxp, dw, db = np.zeros_like(xp), np.zeros_like(w), np.zeros_like(b)
    for n in range(N):
        for f in range(F):
            for i in range(Ho):
                for j in range(Wo):
                    g = dout[n, f, i, j]
                    db[f] += g
                    for c in range(C):
                        for di in range(HH):
                            for dj in range(WW):
                                dw[f, c, di, dj] += xp[n, c, i * stride + dj, j * stride + di] * g
                                dxp[n, c, i * stride + di, j * stride + dj] += w[f, c, di, dj] * g
    return dxp[:, :, pad:pad + H, pad:pad + W], dw, db



class Conv2D:
    """A from-scratch conv layer: six nested Python loops forward and backward, cache on self."""

    def __init__(self, in_channels=2, out_channels=3, kernel_size=3, stride=1, padding=1):
        rng = np.random.default_rng(0)
        self.W = rng.normal(size=(out_channels, in_channels, kernel_size, kernel_size)) * 0.1
        self.b = np.zeros(out_channels)
        self.stride, self.padding = stride, padding

    def forward(self, x):
        self.x = x
        N, C, H, W = x.shape
        F, _, HH, WW = self.W.shape
        s, p = self.stride, self.padding
        Ho, Wo = 1 + (H + 2 * p - HH) // s, 1 + (W + 2 * p - WW) // s
        xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
        out = np.zeros((N, F, Ho, Wo))
        for n in range(N):
            for f in range(F):
                for i in range(Ho):
                    for j in range(Wo):
                        acc = self.b[f]
                        for c in range(C):
                            for di in range(HH):
                                for dj in range(WW):
                                    acc += xp[n, c, i * s + di, j * s + dj] * self.W[f, c, di, dj]
                        out[n, f, i, j] = acc
        return out

    def backward(self, dout):
        x = self.x
        N, C, H, W = x.shape
        F, _, HH, WW = self.W.shape
        s, p = self.stride, self.padding
        xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
        dxp = np.zeros_like(xp)
        self.dW, self.db = np.zeros_like(self.W), np.zeros_like(self.b)
        for n in range(N):
            for f in range(F):
                for i in range(dout.shape[2]):
                    for j in range(dout.shape[3]):
                        g = dout[n, f, i, j]
                        self.db[f] += g
                        for c in range(C):
                            for di in range(HH):
                                for dj in range(WW):
                                    self.dW[f, c, di, dj] += xp[n, c, i * s + di, j * s + dj] * g
                                    dxp[n, c, i * s + di, j * s + dj] += self.W[f, c, di, dj] * g
        return dxp[:, :, p:p + H, p:p + W]



class Conv2DTransposed:
    """Conv2D with dW's kernel indices transposed."""

    def __init__(self, in_channels=2, out_channels=3, kernel_size=3, stride=1, padding=1):
        rng = np.random.default_rng(0)
        self.W = rng.normal(size=(out_channels, in_channels, kernel_size, kernel_size)) * 0.1
        self.b = np.zeros(out_channels)
        self.stride, self.padding = stride, padding

    def forward(self, x):
        self.x = x
        N, C, H, W = x.shape
        F, _, HH, WW = self.W.shape
        s, p = self.stride, self.padding
        Ho, Wo = 1 + (H + 2 * p - HH) // s, 1 + (W + 2 * p - WW) // s
        xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
        out = np.zeros((N, F, Ho, Wo))
        for n in range(N):
            for f in range(F):
                for i in range(Ho):
                    for j in range(Wo):
                        acc = self.b[f]
                        for c in range(C):
                            for di in range(HH):
                                for dj in range(WW):
                                    acc += xp[n, c, i * s + di, j * s + dj] * self.W[f, c, di, dj]
                        out[n, f, i, j] = acc
        return out

    def backward(self, dout):
        x = self.x
        N, C, H, W = x.shape
        F, _, HH, WW = self.W.shape
        s, p = self.stride, self.padding
        xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
        dxp = np.zeros_like(xp)
        self.dW, self.db = np.zeros_like(self.W), np.zeros_like(self.b)
        for n in range(N):
            for f in range(F):
                for i in range(dout.shape[2]):
                    for j in range(dout.shape[3]):
                        g = dout[n, f, i, j]
                        self.db[f] += g
                        for c in range(C):
                            for di in range(HH):
                                for dj in range(WW):
                                    self.dW[f, c, di, dj] += xp[n, c, i * s + dj, j * s + di] * g
                                    dxp[n, c, i * s + di, j * s + dj] += self.W[f, c, di, dj] * g
        return dxp[:, :, p:p + H, p:p + W]
