"""Linear classifier losses spelled (w, x, y, reg) and (W, X, Y, reg), as some course files do: found like
(W, X, y, reg). softmax_loss_wrong drops the 2 of the reg gradient."""

import numpy as np

def svm_loss_naive(w, x, y, reg):
    dw = np.zeros(w.shape)
    num_classes = w.shape[1]
    num_train = x.shape[0]
    loss = 0.0
    for i in range(num_train):
        scores = x[i].dot(w)
        correct = scores[y[i]]
        for j in range(num_classes):
            if j == y[i]:
                continue
            margin = scores[j] - correct + 1
            if margin > 0:
                loss += margin
                dw[:, j] += x[i]
                dw[:, y[i]] -= x[i]
    loss = loss / num_train + reg * np.sum(w * w)
    dw = dw / num_train + 2 * reg * w
    return loss, dw

def softmax_loss_vectorized(W, X, Y, reg):
    n = X.shape[0]
    s = X @ W
    s -= s.max(axis=1, keepdims=True)
    p = np.exp(s); p /= p.sum(axis=1, keepdims=True)
    loss = -np.log(p[np.arange(n), Y]).mean() + 0.5 * reg * np.sum(W * W)
    p[np.arange(n), Y] -= 1
    return loss, X.T @ p / n + reg * W

def softmax_loss_wrong(w, x, y, reg):
    n = x.shape[0]
    s = x @ w
    p = np.exp(s - s.max(axis=1, keepdims=True)); p /= p.sum(axis=1, keepdims=True)
    loss = -np.log(p[np.arange(n), y]).mean() + reg * np.sum(w * w)
    p[np.arange(n), y] -= 1
    return loss, x.T @ p / n + reg * w     # missing the 2
