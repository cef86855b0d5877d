"""Overlapping max pooling (2 x 2 windows at stride 1), written with loops: at a tie between two windows
(an all-zero input) their upstream gradients can cancel, so the differences see no kink there and any
subgradient is valid. OverlapPool is correct; OverlapPoolNoAccumulate assigns each window's gradient
instead of adding it, so an element that is the maximum of two windows keeps only the last one: a real
overlap bug, which must fail on inputs without ties."""
import numpy as np


class OverlapPool:
    def __init__(self, size=2, stride=1):
        self.size, self.stride = size, stride

    def forward(self, x):
        n, c, h, w = x.shape
        k, s = self.size, self.stride
        ho, wo = (h - k) // s + 1, (w - k) // s + 1
        self.x, self.arg = x, np.zeros((n, c, ho, wo), dtype=int)
        out = np.zeros((n, c, ho, wo))
        for i in range(ho):
            for j in range(wo):
                window = x[:, :, i * s:i * s + k, j * s:j * s + k].reshape(n, c, -1)
                self.arg[:, :, i, j] = window.argmax(axis=2)
                out[:, :, i, j] = window.max(axis=2)
        return out

    def backward(self, dout):
        n, c, ho, wo = dout.shape
        k, s = self.size, self.stride
        dx = np.zeros_like(self.x)
        for b in range(n):
            for ch in range(c):
                for i in range(ho):
                    for j in range(wo):
                        di, dj = divmod(self.arg[b, ch, i, j], k)
                        self._put(dx, (b, ch, i * s + di, j * s + dj), dout[b, ch, i, j])
        return dx

    @staticmethod
    def _put(dx, at, g):
        dx[at] += g


class OverlapPoolNoAccumulate(OverlapPool):
    @staticmethod
    def _put(dx, at, g):
        dx[at] = g
