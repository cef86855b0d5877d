"""CS231n 2016-17 classifiers/neural_net.py: TwoLayerNet(input_size, hidden_size, output_size, std=1e-4),
loss(X, y=None, reg=0.0) -> (loss, grads). Correct: reg regularises W1 and W2 only, in the loss and in grads."""
import numpy as np


class TwoLayerNet:
    def __init__(self, input_size, hidden_size, output_size, std=1e-4):
        self.params = {}
        self.params["W1"] = std * np.random.randn(input_size, hidden_size)
        self.params["b1"] = np.zeros(hidden_size)
        self.params["W2"] = std * np.random.randn(hidden_size, output_size)
        self.params["b2"] = np.zeros(output_size)

    def loss(self, X, y=None, reg=0.0):
        W1, b1 = self.params["W1"], self.params["b1"]
        W2, b2 = self.params["W2"], self.params["b2"]
        N, D = X.shape
        hidden = np.maximum(0, X.dot(W1) + b1)
        scores = hidden.dot(W2) + b2
        if y is None:
            return scores
        exp_scores = np.exp(scores - np.max(scores, axis=1, keepdims=True))
        probs = exp_scores / np.sum(exp_scores, axis=1, keepdims=True)
        loss = np.sum(-np.log(probs[range(N), y])) / N + 0.5 * reg * (np.sum(W1 * W1) + np.sum(W2 * W2))
        grads = {}
        dscores = probs
        dscores[range(N), y] -= 1
        dscores /= N
        grads["W2"] = hidden.T.dot(dscores) + reg * W2
        grads["b2"] = np.sum(dscores, axis=0)
        dhidden = dscores.dot(W2.T)
        dhidden[hidden <= 0] = 0
        grads["W1"] = X.T.dot(dhidden) + reg * W1
        grads["b1"] = np.sum(dhidden, axis=0)
        return loss, grads
