"""Ops that break their contract or misbehave in ways other than a wrong number."""

import numpy as np


class Sigmoid:
    def forward(self, z):
        return 1 / (1 + np.exp(-z))

    def backward(self, z, grad_out):
        s = self.forward(z)
        return grad_out * s * (1 - s)


class Dense:
    in_features = 3

    def __init__(self):
        self.params = {"W": np.arange(15.0).reshape(3, 5) / 10, "b": np.zeros(5)}

    def forward(self, x):
        return x @ self.params["W"] + self.params["b"]

    def backward(self, x, grad_out):
        return grad_out @ self.params["W"].T, {"W": x.T @ grad_out, "b": grad_out.sum(axis=0)}


class NoBackward:
    kind = "activation"

    def forward(self, z):
        return z


class Ambiguous:
    def forward(self, z):
        return z


class NeedsArgs:
    def __init__(self, scale):
        self.scale = scale

    def forward(self, z):
        return self.scale * z

    def backward(self, z, grad_out):
        return self.scale * grad_out


class RaisesOnWideInput(Sigmoid):
    """backward assumes at most 3 features."""

    def backward(self, z, grad_out):
        if z.shape[-1] > 3:
            raise IndexError("feature index out of range")
        return super().backward(z, grad_out)


class LogNoDomain:
    """log without a declared domain: NaN for negative input is a finding."""

    def forward(self, z):
        return np.log(z)

    def backward(self, z, grad_out):
        return grad_out / z


class Log:
    """The same op with its domain declared: passes."""

    domain = (0.0, None)

    def forward(self, z):
        return np.log(z)

    def backward(self, z, grad_out):
        return grad_out / z


class LogFarDomain(Log):
    """A domain that |z| <= 30 does not reach: inputs are drawn inside it anyway."""

    domain = (100.0, 200.0)


class InPlace(Sigmoid):
    """Scales grad_out in place."""

    def backward(self, z, grad_out):
        s = self.forward(z)
        grad_out *= s * (1 - s)
        return grad_out


class SGDInBackward(Dense):
    """Applies an update step inside backward."""

    def backward(self, x, grad_out):
        grad_x, grads = super().backward(x, grad_out)
        self.params["W"] -= 0.1 * grads["W"]
        return grad_x, grads


class Float32Forward(Sigmoid):
    def forward(self, z):
        return super().forward(z).astype(np.float32)


class WrongShape(Sigmoid):
    def backward(self, z, grad_out):
        return super().backward(z, grad_out).sum(axis=0)


class Stateful:
    """Keeps a call counter: every seventh backward is doubled."""

    calls = 0

    def forward(self, z):
        return z

    def backward(self, z, grad_out):
        self.calls += 1
        return grad_out * (2.0 if self.calls % 7 == 0 else 1.0)


sigmoid_instance = Sigmoid()


class SGDReplacesAttribute:
    """A from-scratch library's dense layer: forward reads self.W, the optimizer step inside backward
    rebinds it (self.W = self.W - lr * dW): params['W'] is no longer the array forward uses."""

    in_features = 3

    def __init__(self):
        self.W = np.arange(15.0).reshape(3, 5) / 10
        self.b = np.zeros(5)
        self.params = {"W": self.W, "b": self.b}

    def forward(self, x):
        return x @ self.W + self.b

    def backward(self, x, grad_out):
        grads = {"W": x.T @ grad_out, "b": grad_out.sum(axis=0)}
        grad_x = grad_out @ self.W.T
        self.W = self.W - 0.01 * grads["W"]
        return grad_x, grads


class SGDReplacesParams(Dense):
    """params['W'] = params['W'] - lr * dW inside backward: a new array in the dict."""

    def backward(self, x, grad_out):
        grad_x, grads = super().backward(x, grad_out)
        self.params["W"] = self.params["W"] - 0.1 * grads["W"]
        return grad_x, grads
