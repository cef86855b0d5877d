"""Layers as a from-scratch NumPy library writes them (deepnet style): constructors that take sizes,
params listed in self.params, backward(dout) -> (dX, [dW, db]). All values right; FullyConnected's
db has shape (out,) for b of shape (1, out): a shape that only broadcasts (a warning). Batchnorm's eps
is the library's 1e-8: on a constant batch the engine's step is far wider than sqrt(eps)."""
import numpy as np


def get_im2col_indices(x_shape, field_height, field_width, padding=1, stride=1):
    N, C, H, W = x_shape
    assert (H + 2 * padding - field_height) % stride == 0
    assert (W + 2 * padding - field_width) % stride == 0
    out_height = int((H + 2 * padding - field_height) / stride + 1)
    out_width = int((W + 2 * padding - field_width) / stride + 1)
    i0 = np.repeat(np.arange(field_height), field_width)
    i0 = np.tile(i0, C)
    i1 = stride * np.repeat(np.arange(out_height), out_width)
    j0 = np.tile(np.arange(field_width), field_height * C)
    j1 = stride * np.tile(np.arange(out_width), out_height)
    i = i0.reshape(-1, 1) + i1.reshape(1, -1)
    j = j0.reshape(-1, 1) + j1.reshape(1, -1)
    k = np.repeat(np.arange(C), field_height * field_width).reshape(-1, 1)
    return (k, i, j)


def im2col_indices(x, field_height, field_width, padding=1, stride=1):
    p = padding
    x_padded = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), mode="constant")
    k, i, j = get_im2col_indices(x.shape, field_height, field_width, padding, stride)
    cols = x_padded[:, k, i, j]
    C = x.shape[1]
    cols = cols.transpose(1, 2, 0).reshape(field_height * field_width * C, -1)
    return cols


def col2im_indices(cols, x_shape, field_height=3, field_width=3, padding=1, stride=1):
    N, C, H, W = x_shape
    H_padded, W_padded = H + 2 * padding, W + 2 * padding
    x_padded = np.zeros((N, C, H_padded, W_padded), dtype=cols.dtype)
    k, i, j = get_im2col_indices(x_shape, field_height, field_width, padding, stride)
    cols_reshaped = cols.reshape(C * field_height * field_width, -1, N)
    cols_reshaped = cols_reshaped.transpose(2, 0, 1)
    np.add.at(x_padded, (slice(None), k, i, j), cols_reshaped)
    if padding == 0:
        return x_padded
    return x_padded[:, :, padding:-padding, padding:-padding]


class Conv:
    def __init__(self, X_dim, n_filter, h_filter, w_filter, stride, padding):
        self.d_X, self.h_X, self.w_X = X_dim
        self.n_filter, self.h_filter, self.w_filter = n_filter, h_filter, w_filter
        self.stride, self.padding = stride, padding
        self.W = np.random.randn(n_filter, self.d_X, h_filter, w_filter) / np.sqrt(n_filter / 2.0)
        self.b = np.zeros((self.n_filter, 1))
        self.params = [self.W, self.b]
        self.h_out = (self.h_X - h_filter + 2 * padding) / stride + 1
        self.w_out = (self.w_X - w_filter + 2 * padding) / stride + 1
        if not self.h_out.is_integer() or not self.w_out.is_integer():
            raise Exception("Invalid dimensions!")
        self.h_out, self.w_out = int(self.h_out), int(self.w_out)
        self.out_dim = (self.n_filter, self.h_out, self.w_out)

    def forward(self, X):
        self.n_X = X.shape[0]
        self.X_col = im2col_indices(X, self.h_filter, self.w_filter, stride=self.stride, padding=self.padding)
        W_row = self.W.reshape(self.n_filter, -1)
        out = W_row @ self.X_col + self.b
        out = out.reshape(self.n_filter, self.h_out, self.w_out, self.n_X)
        return out.transpose(3, 0, 1, 2)

    def backward(self, dout):
        dout_flat = dout.transpose(1, 2, 3, 0).reshape(self.n_filter, -1)
        dW = (dout_flat @ self.X_col.T).reshape(self.W.shape)
        db = np.sum(dout, axis=(0, 2, 3)).reshape(self.n_filter, -1)
        W_flat = self.W.reshape(self.n_filter, -1)
        dX_col = W_flat.T @ dout_flat
        shape = (self.n_X, self.d_X, self.h_X, self.w_X)
        dX = col2im_indices(dX_col, shape, self.h_filter, self.w_filter, self.padding, self.stride)
        return dX, [dW, db]


class Maxpool:
    """Window `size` at `stride`: overlapping when stride < size (ties between windows: not judged)."""

    def __init__(self, X_dim, size, stride):
        self.d_X, self.h_X, self.w_X = X_dim
        self.params = []
        self.size, self.stride = size, stride
        self.h_out = (self.h_X - size) / stride + 1
        self.w_out = (self.w_X - size) / stride + 1
        if not self.h_out.is_integer() or not self.w_out.is_integer():
            raise Exception("Invalid dimensions!")
        self.h_out, self.w_out = int(self.h_out), int(self.w_out)

    def forward(self, X):
        self.n_X = X.shape[0]
        X_reshaped = X.reshape(X.shape[0] * X.shape[1], 1, X.shape[2], X.shape[3])
        self.X_col = im2col_indices(X_reshaped, self.size, self.size, padding=0, stride=self.stride)
        self.max_indexes = np.argmax(self.X_col, axis=0)
        out = self.X_col[self.max_indexes, range(self.max_indexes.size)]
        return out.reshape(self.h_out, self.w_out, self.n_X, self.d_X).transpose(2, 3, 0, 1)

    def backward(self, dout):
        dX_col = np.zeros_like(self.X_col)
        dout_flat = dout.transpose(2, 3, 0, 1).ravel()
        dX_col[self.max_indexes, range(self.max_indexes.size)] = dout_flat
        shape = (self.n_X * self.d_X, 1, self.h_X, self.w_X)
        dX = col2im_indices(dX_col, shape, self.size, self.size, padding=0, stride=self.stride)
        return dX.reshape(self.n_X, self.d_X, self.h_X, self.w_X), []


class FullyConnected:
    def __init__(self, in_size, out_size):
        self.W = np.random.randn(in_size, out_size) / np.sqrt(in_size / 2.0)
        self.b = np.zeros((1, out_size))
        self.params = [self.W, self.b]

    def forward(self, X):
        self.X = X
        return self.X @ self.W + self.b

    def backward(self, dout):
        dW = self.X.T @ dout
        db = np.sum(dout, axis=0)  # (out,) for b of (1, out)
        dX = dout @ self.W.T
        return dX, [dW, db]


class Batchnorm:
    def __init__(self, X_dim):
        self.d_X, self.h_X, self.w_X = X_dim
        self.gamma = np.ones((1, int(np.prod(X_dim))))
        self.beta = np.zeros((1, int(np.prod(X_dim))))
        self.params = [self.gamma, self.beta]

    def forward(self, X):
        self.n_X = X.shape[0]
        self.X_shape = X.shape
        self.X_flat = X.ravel().reshape(self.n_X, -1)
        self.mu = np.mean(self.X_flat, axis=0)
        self.var = np.var(self.X_flat, axis=0)
        self.X_norm = (self.X_flat - self.mu) / np.sqrt(self.var + 1e-8)
        out = self.gamma * self.X_norm + self.beta
        return out.reshape(self.X_shape)

    def backward(self, dout):
        dout = dout.ravel().reshape(dout.shape[0], -1)
        X_mu = self.X_flat - self.mu
        var_inv = 1.0 / np.sqrt(self.var + 1e-8)
        dbeta = np.sum(dout, axis=0, keepdims=True)
        dgamma = np.sum(dout * self.X_norm, axis=0, keepdims=True)
        dX_norm = dout * self.gamma
        dvar = np.sum(dX_norm * X_mu, axis=0) * -0.5 * (self.var + 1e-8) ** (-3 / 2)
        dmu = np.sum(dX_norm * -var_inv, axis=0) + dvar * 1 / self.n_X * np.sum(-2.0 * X_mu, axis=0)
        dX = (dX_norm * var_inv) + (dvar * 2 / self.n_X * X_mu) + (dmu / self.n_X)
        return dX.reshape(self.X_shape), [dgamma, dbeta]


class Dropout:
    """Unseeded: a new mask on every call (audited reseeded, with a warning)."""

    def __init__(self, prob=0.5):
        self.prob = prob
        self.params = []

    def forward(self, X):
        self.mask = np.random.binomial(1, self.prob, size=X.shape) / self.prob
        return (X * self.mask).reshape(X.shape)

    def backward(self, dout):
        return dout * self.mask, []


class ReLU:
    def __init__(self):
        self.params = []

    def forward(self, X):
        self.X = X
        return np.maximum(0, X)

    def backward(self, dout):
        dX = dout.copy()
        dX[self.X <= 0] = 0
        return dX, []
