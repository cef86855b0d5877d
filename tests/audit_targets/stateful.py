"""Stateful layer classes as from-scratch NumPy libraries write them (forward caches on self,
backward(dout) -> dx): correct ones and one wrong twin each, for tests/test_audit_stateful.py."""

import copy

import numpy as np


class Sigmoid:
    def forward(self, x):
        self.out = 1 / (1 + np.exp(-x))
        return self.out

    def backward(self, dout):
        return dout * self.out * (1 - self.out)


class SigmoidNoOneMinus:
    def forward(self, x):
        self.out = 1 / (1 + np.exp(-x))
        return self.out

    def backward(self, dout):
        return dout * self.out


class ReLU:
    def forward(self, x):
        self.mask = x > 0
        return x * self.mask

    def backward(self, dout):
        return dout * self.mask


class Upsample2x:
    def forward(self, x):
        return x.repeat(2, axis=2).repeat(2, axis=3)

    def backward(self, dout):
        n, c, h, w = dout.shape
        return dout.reshape(n, c, h // 2, 2, w // 2, 2).sum(axis=(3, 5))


class Upsample2xAveraging:
    def forward(self, x):
        return x.repeat(2, axis=2).repeat(2, axis=3)

    def backward(self, dout):
        n, c, h, w = dout.shape
        return dout.reshape(n, c, h // 2, 2, w // 2, 2).mean(axis=(3, 5))


class MaxPool2x2:
    """Non-overlapping 2x2 windows; the gradient goes to each window's maximum."""

    def forward(self, x):
        n, c, h, w = x.shape
        windows = x.reshape(n, c, h // 2, 2, w // 2, 2)
        out = windows.max(axis=(3, 5))
        self.mask = windows == out[:, :, :, None, :, None]
        return out

    def backward(self, dout):
        n, c, h2, _, w2, _ = self.mask.shape
        return (self.mask * dout[:, :, :, None, :, None]).reshape(n, c, 2 * h2, 2 * w2)


class Dense:
    def __init__(self, n_in=4, n_out=3):
        rng = np.random.default_rng(0)
        self.W = rng.normal(size=(n_in, n_out)) * 0.5
        self.b = rng.normal(size=n_out)

    def forward(self, X):
        self.X = X
        return X @ self.W + self.b

    def backward(self, dY):
        self.dW = self.X.T @ dY
        self.db = dY.sum(0)
        return dY @ self.W.T


class DenseWrongDW(Dense):
    """dW from the transposed product: right shape for a square W, wrong values."""

    def __init__(self):
        super().__init__(3, 3)

    def backward(self, dY):
        self.dW = dY.T @ self.X
        self.db = dY.sum(0)
        return dY @ self.W.T


class DenseNoBiasSum(Dense):
    """db of the first row only: the batch sum is missing."""

    def backward(self, dY):
        self.dW = self.X.T @ dY
        self.db = dY[0].copy()
        return dY @ self.W.T


class DenseGradsDict:
    """Weights (out, in), gradients in a dict keyed by the parameters' names."""

    def __init__(self):
        rng = np.random.default_rng(1)
        self.weight = rng.normal(size=(2, 5))
        self.bias = rng.normal(size=2)
        self.grads = {}

    def forward(self, x):
        self.x = x
        return x @ self.weight.T + self.bias

    def backward(self, dout):
        self.grads = {"weight": dout.T @ self.x, "bias": dout.sum(0)}
        return dout @ self.weight


class NoGradientKept:
    """A scale parameter whose gradient the layer never computes: not judged, never passed."""

    def __init__(self):
        self.scale = np.full(3, 2.0)

    def forward(self, x):
        return x * self.scale

    def backward(self, dout):
        return dout * self.scale


class OptimizerDense:
    """ML-From-Scratch style: initialize(optimizer) makes W, w0 and one optimizer each; backward_pass
    updates the weights through them and returns the gradient with respect to the input."""

    def __init__(self, n_units=3, input_shape=(4,)):
        self.n_units, self.input_shape = n_units, input_shape
        self.trainable = True
        self.W = None

    def initialize(self, optimizer):
        limit = 1 / np.sqrt(self.input_shape[0])
        self.W = np.random.default_rng(2).uniform(-limit, limit, (self.input_shape[0], self.n_units))
        self.w0 = np.zeros((1, self.n_units))
        self.W_opt = copy.copy(optimizer)
        self.w0_opt = copy.copy(optimizer)

    def forward_pass(self, X, training=True):
        self.layer_input = X
        return X.dot(self.W) + self.w0

    def backward_pass(self, accum_grad):
        W = self.W
        if self.trainable:
            grad_w = self.layer_input.T.dot(accum_grad)
            grad_w0 = np.sum(accum_grad, axis=0, keepdims=True)
            self.W = self.W_opt.update(self.W, grad_w)
            self.w0 = self.w0_opt.update(self.w0, grad_w0)
        return accum_grad.dot(W.T)


class OptimizerDenseWrongGrad(OptimizerDense):
    def backward_pass(self, accum_grad):
        W = self.W
        grad_w = self.layer_input.T.dot(accum_grad) * 0.5
        grad_w0 = np.sum(accum_grad, axis=0, keepdims=True)
        self.W = self.W_opt.update(self.W, grad_w)
        self.w0 = self.w0_opt.update(self.w0, grad_w0)
        return accum_grad.dot(W.T)


class SGDInsideBackward(Dense):
    """Replaces W with a new array during backward: the audit's mutation finding."""

    def backward(self, dY):
        dx = dY @ self.W.T
        self.dW = self.X.T @ dY
        self.db = dY.sum(0)
        self.W = self.W - 0.1 * self.dW
        return dx


class SigmoidCacheInPlace:
    """Right the first time, but backward multiplies its cache in place: a second backward is wrong."""

    def forward(self, x):
        self.out = 1 / (1 + np.exp(-x))
        return self.out

    def backward(self, dout):
        self.out *= 1 - self.out
        return dout * self.out


class TodoLayer:
    def forward(self, x):
        self.x = x
        return 2 * x

    def backward(self, dout):
        pass  # TODO


class BatchNormTrainFlag:
    """Textbook style: forward(x, train_flg) with the flag required (gradlab passes True);
    running statistics replaced by forward are caches, not parameters."""

    def __init__(self):
        self.gamma, self.beta = np.array([1.5, 0.5, 1.0]), np.array([0.1, -0.2, 0.0])
        self.running_mean, self.running_var = np.zeros(3), np.ones(3)

    def forward(self, x, train_flg):
        mu = x.mean(axis=0) if train_flg else self.running_mean
        self.xc = x - mu
        self.std = np.sqrt(np.mean(self.xc**2, axis=0) + 1e-3)
        self.xn = self.xc / self.std
        self.running_mean = 0.9 * self.running_mean + 0.1 * mu
        return self.gamma * self.xn + self.beta

    def backward(self, dout):
        n = dout.shape[0]
        self.dbeta, self.dgamma = dout.sum(axis=0), np.sum(self.xn * dout, axis=0)
        dxn = self.gamma * dout
        dxc = dxn / self.std
        dvar = 0.5 * -np.sum(dxn * self.xc / self.std**2, axis=0) / self.std
        dxc = dxc + (2.0 / n) * self.xc * dvar
        return dxc - dxc.sum(axis=0) / n
