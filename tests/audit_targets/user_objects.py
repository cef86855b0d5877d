"""Ops whose objects misbehave where gradlab looks at them (tests/test_user_objects.py): an exception whose
__str__ raises, a __getattr__ or property that raises, declared shapes that are negative or astronomically
large, backwards that return complex values, a str, a dict, a generator or an object array. Each must be the
user's error (exit 2, or a contract counterexample), never an internal error of gradlab and never a pass."""

import numpy as np
import torch


class Unprintable(Exception):
    def __str__(self):
        raise RuntimeError("no str for you")


class ForwardRaisesUnprintable:
    def forward(self, z):
        raise Unprintable()

    def backward(self, z, grad_out):
        return grad_out


class GetattrRaises:
    def __getattr__(self, name):
        raise RuntimeError(f"no attribute {name} here")

    def forward(self, z):
        return z

    def backward(self, z, grad_out):
        return grad_out


class ForwardPropertyRaises:
    @property
    def forward(self):
        raise RuntimeError("property boom")

    def backward(self, z, grad_out):
        return grad_out


class _Linear:
    """A stateful linear layer (forward(x) caching on self, backward(dout) -> dx, dW on self)."""

    def __init__(self):
        self.W = np.ones((4, 2))
        self.dW = np.zeros((4, 2))

    def forward(self, x):
        self.x = x
        return x @ self.W

    def backward(self, dout):
        self.dW = self.x.T @ dout
        return dout @ self.W.T


class NegativeInputShape(_Linear):
    input_shape = (-3, 4)


class HugeInputShape(_Linear):
    input_shape = (1000000, 1000000)


class HugeLayer:
    """The layer contract (params, backward(x, grad_out) -> (dx, grads)) with an input nobody can allocate."""

    input_shape = (1000000, 1000000)

    def __init__(self):
        self.params = {"W": np.ones((3, 2))}

    def forward(self, x):
        return x @ self.params["W"]

    def backward(self, x, grad_out):
        return grad_out @ self.params["W"].T, {"W": x.T @ grad_out}


# --- backwards returning what is no array of reals ----------------------------------------------


class _Double:
    def forward(self, z):
        return 2.0 * z


class ComplexBackward(_Double):
    def backward(self, z, grad_out):
        return (2.0 * grad_out).astype(complex)


class StrBackward(_Double):
    def backward(self, z, grad_out):
        return "nope"


class DictBackward(_Double):
    def backward(self, z, grad_out):
        return {"z": 2.0 * grad_out}


class GeneratorBackward(_Double):
    def backward(self, z, grad_out):
        return (g for g in 2.0 * grad_out)


class ObjectArrayBackward(_Double):
    def backward(self, z, grad_out):
        return np.array([object()] * z.size).reshape(z.shape)


def double_forward(x):
    return 2.0 * x, x


def double_backward(dout, cache):
    return "nope"


def cube_forward(x):
    return x**3, x


def cube_backward(dout, cache):
    return (3 * cache**2 * dout).astype(complex)


class StatefulStrBackward(_Linear):
    input_shape = (2, 4)

    def backward(self, dout):
        self.dW = self.x.T @ dout
        return "nope"


# --- gradlab compare: a kernel that declares an input nobody can allocate -----------------------


def example_inputs():
    return {"x": (1000000, 1000000)}


def tanh_reference(x):
    return torch.tanh(x)


def tanh_candidate(x):
    return torch.tanh(x)


# --- outputs far larger than their inputs: a broadcast view costs nothing to return ---------------


class BroadcastForward:
    def forward(self, z):
        return np.broadcast_to(z.reshape(-1)[:1], (100000, 100000))

    def backward(self, z, grad_out):
        return grad_out


def expand_candidate(x):
    return x.reshape(-1)[:1].expand(200000, 200000)


def expand_reference(x):
    return x.reshape(-1)[:1].expand(200000, 200000)


class HugeFeaturesLayer:
    """A spec's custom layer declaring a trillion input features: refused before gradlab probes its forward."""

    in_features = 10**12

    def __init__(self):
        self.params = {"W": np.ones((3, 2))}

    def forward(self, x):
        return x @ self.params["W"]

    def backward(self, x, grad_out):
        return grad_out @ self.params["W"].T, {"W": x.T @ grad_out}


class StrFunction(torch.autograd.Function):
    """A torch.autograd.Function whose forward returns no tensor."""

    @staticmethod
    def forward(ctx, x):
        return "x"

    @staticmethod
    def backward(ctx, grad):
        return grad
