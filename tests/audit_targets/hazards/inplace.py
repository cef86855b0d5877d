"""Function pairs that write in place with every value right (warnings), and one whose values are wrong
as well (a failure): relu's `dx = dout; dx[x <= 0] = 0`, a softmax loss's `x -= max`, and a leaky relu
whose in-place backward uses the wrong slope."""
import numpy as np


def relu_forward(x):
    return np.maximum(0, x), x


def relu_backward(dout, cache):
    x = cache
    dx = dout
    dx[x <= 0] = 0  # writes into dout
    return dx


def softmax_loss(x, y):
    x -= np.max(x, axis=1, keepdims=True)  # writes into the caller's scores
    probs = np.exp(x) / np.sum(np.exp(x), axis=1, keepdims=True)
    N = x.shape[0]
    loss = -np.sum(np.log(probs[np.arange(N), y])) / N
    dx = probs.copy()
    dx[np.arange(N), y] -= 1
    return loss, dx / N


def leaky_relu_forward(x):
    return np.where(x > 0, x, 0.01 * x), x


def leaky_relu_backward(dout, cache):
    x = cache
    dout[x < 0] *= 0.1  # in place, and the forward's slope is 0.01
    return dout
