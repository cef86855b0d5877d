"""Wrong recurrent layers in the course-assignment convention: each has the kind of slip students make."""
import numpy as np

import rnn_layers as right
from rnn_layers import (lstm_forward, lstm_step_forward, rnn_forward, rnn_step_forward,  # noqa: F401
                        sigmoid, word_embedding_forward)


def rnn_step_backward(dnext_h, cache):  # dprev_h without the (1 - tanh^2) of next_h
    x, prev_h, Wx, Wh, next_h = cache
    da = dnext_h * (1 - next_h**2)
    return da @ Wx.T, dnext_h @ Wh.T, x.T @ da, prev_h.T @ da, da.sum(axis=0)


def rnn_step_backward_next_h(dnext_h, cache):  # dWh accumulated with h_t instead of h_{t-1}
    x, prev_h, Wx, Wh, next_h = cache
    da = dnext_h * (1 - next_h**2)
    return da @ Wx.T, da @ Wh.T, x.T @ da, next_h.T @ da, da.sum(axis=0)


def rnn_backward(dh, cache):  # forgets to add the gradient flowing back from step t + 1
    N, T, H = dh.shape
    D = cache[0][0].shape[1]
    dx, dWx, dWh, db = np.zeros((N, T, D)), np.zeros((D, H)), np.zeros((H, H)), np.zeros(H)
    dprev_h = np.zeros((N, H))
    for t in reversed(range(T)):
        dx[:, t, :], dprev_h, dWx_t, dWh_t, db_t = right.rnn_step_backward(dh[:, t, :], cache[t])
        dWx += dWx_t
        dWh += dWh_t
        db += db_t
    return dx, dprev_h, dWx, dWh, db


def word_embedding_backward(dout, cache):  # fancy-index += drops repeated words: np.add.at is right
    x, W = cache
    dW = np.zeros_like(W)
    dW[x] += dout
    return dW


def lstm_step_backward(dnext_h, dnext_c, cache):  # dc forgets the upstream dnext_c
    x, prev_h, prev_c, Wx, Wh, i, f, o, g, tanh_c = cache
    do = dnext_h * tanh_c
    dc = dnext_h * o * (1 - tanh_c**2)
    da = np.hstack((dc * g * i * (1 - i), dc * prev_c * f * (1 - f), do * o * (1 - o), dc * i * (1 - g**2)))
    return da @ Wx.T, da @ Wh.T, dc * f, x.T @ da, prev_h.T @ da, da.sum(axis=0)


def lstm_backward(dh, cache):  # the cell gradient of step t + 1 (through the forget gate) is dropped
    N, T, H = dh.shape
    D = cache[0][0].shape[1]
    dx, dWx, dWh, db = np.zeros((N, T, D)), np.zeros((D, 4 * H)), np.zeros((H, 4 * H)), np.zeros(4 * H)
    dprev_h = np.zeros((N, H))
    for t in reversed(range(T)):
        dx[:, t, :], dprev_h, _, dWx_t, dWh_t, db_t = right.lstm_step_backward(dh[:, t, :] + dprev_h, np.zeros((N, H)), cache[t])
        dWx += dWx_t
        dWh += dWh_t
        db += db_t
    return dx, dprev_h, dWx, dWh, db


def temporal_softmax_loss(x, y, mask, verbose=False):  # the loss is masked, dx is not
    N, T, V = x.shape
    x_flat, y_flat, mask_flat = x.reshape(N * T, V), y.reshape(N * T), mask.reshape(N * T)
    probs = np.exp(x_flat - np.max(x_flat, axis=1, keepdims=True))
    probs /= np.sum(probs, axis=1, keepdims=True)
    loss = -np.sum(mask_flat * np.log(probs[np.arange(N * T), y_flat])) / N
    dx_flat = probs.copy()
    dx_flat[np.arange(N * T), y_flat] -= 1
    return loss, (dx_flat / N).reshape(N, T, V)
