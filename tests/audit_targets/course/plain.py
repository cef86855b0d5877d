"""Plain functions with a derivative twin: sigmoid / sigmoid_grad (right), tanh / tanh_grad (wrong)."""
import numpy as np


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def sigmoid_grad(x):
    s = sigmoid(x)
    return s * (1 - s)


def tanh(x):
    return np.tanh(x)


def tanh_grad(x):
    return 1 - x**2  # should be 1 - tanh(x)**2
