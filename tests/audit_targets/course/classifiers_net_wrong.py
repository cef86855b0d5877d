"""A two-layer net as CS231n assignment 2's fc_net.py writes it (affine - relu - affine - softmax): with a slip, the relu mask taken on the scores of the second layer's input before the bias (h is recomputed without b1)."""

import numpy as np


class TwoLayerNet:
    def __init__(self, input_dim=3 * 32 * 32, hidden_dim=100, num_classes=10, weight_scale=1e-3, reg=0.0):
        self.params = {}
        self.reg = reg
        self.params["W1"] = weight_scale * np.random.randn(input_dim, hidden_dim)
        self.params["b1"] = np.zeros(hidden_dim)
        self.params["W2"] = weight_scale * np.random.randn(hidden_dim, num_classes)
        self.params["b2"] = np.zeros(num_classes)

    def loss(self, X, y=None):
        W1, b1, W2, b2 = self.params["W1"], self.params["b1"], self.params["W2"], self.params["b2"]
        h = np.maximum(0, X.reshape(X.shape[0], -1).dot(W1) + b1)
        scores = h.dot(W2) + b2
        if y is None:
            return scores
        shifted = scores - np.max(scores, axis=1, keepdims=True)
        probs = np.exp(shifted) / np.sum(np.exp(shifted), axis=1, keepdims=True)
        N = X.shape[0]
        loss = -np.sum(np.log(probs[np.arange(N), y])) / N
        loss += 0.5 * self.reg * (np.sum(W1 * W1) + np.sum(W2 * W2))
        dscores = probs.copy()
        dscores[np.arange(N), y] -= 1
        dscores /= N
        grads = {"W2": h.T.dot(dscores) + self.reg * W2, "b2": np.sum(dscores, axis=0)}
        dh = dscores.dot(W2.T) * (X.reshape(N, -1).dot(W1) > 0)
        grads["W1"] = X.reshape(N, -1).T.dot(dh) + self.reg * W1
        grads["b1"] = np.sum(dh, axis=0)
        return loss, grads
