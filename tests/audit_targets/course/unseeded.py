"""Dropout that ignores dropout_param['seed']: a new mask on every call."""
import numpy as np


def dropout_forward(x, dropout_param):
    p = dropout_param["p"]
    mask = (np.random.rand(*x.shape) < p) / p
    return x * mask, mask


def dropout_backward(dout, cache):
    return dout * cache


def inverted_dropout_forward(x, dropout_param):
    p = dropout_param["p"]
    mask = (np.random.rand(*x.shape) < p) / p
    return x * mask, mask


def inverted_dropout_backward(dout, cache):  # forgot the 1 / p the forward scaled by
    return dout * (cache > 0)
