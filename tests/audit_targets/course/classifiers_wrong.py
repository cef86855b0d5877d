"""Linear classifier losses with the slips students make in assignment 1: every one a mismatch.

Same contract as classifiers.py: (W, X, y, reg) -> (loss, dW)."""

import numpy as np


def svm_loss_naive(W, X, y, reg):
    """The regularisation gradient without the 2 of d/dW reg * sum(W * W)."""
    dW = np.zeros(W.shape)
    num_classes = W.shape[1]
    num_train = X.shape[0]
    loss = 0.0
    for i in range(num_train):
        scores = X[i].dot(W)
        correct_class_score = scores[y[i]]
        for j in range(num_classes):
            if j == y[i]:
                continue
            margin = scores[j] - correct_class_score + 1
            if margin > 0:
                loss += margin
                dW[:, j] += X[i]
                dW[:, y[i]] -= X[i]
    loss /= num_train
    dW /= num_train
    loss += reg * np.sum(W * W)
    dW += reg * W
    return loss, dW


def svm_loss_naive_every_margin(W, X, y, reg):
    """dW takes every wrong class's margin, not only the positive ones (the update outside `if margin > 0`)."""
    dW = np.zeros(W.shape)
    num_classes = W.shape[1]
    num_train = X.shape[0]
    loss = 0.0
    for i in range(num_train):
        scores = X[i].dot(W)
        correct_class_score = scores[y[i]]
        for j in range(num_classes):
            if j == y[i]:
                continue
            margin = scores[j] - correct_class_score + 1
            if margin > 0:
                loss += margin
            dW[:, j] += X[i]
            dW[:, y[i]] -= X[i]
    loss /= num_train
    dW /= num_train
    loss += reg * np.sum(W * W)
    dW += 2 * reg * W
    return loss, dW


def svm_loss_vectorized(W, X, y, reg):
    """The count of positive margins leaves the correct class's own margin of 1 in (margins not zeroed)."""
    num_train = X.shape[0]
    scores = X.dot(W)
    correct = scores[np.arange(num_train), y][:, None]
    margins = np.maximum(0, scores - correct + 1)
    loss = (np.sum(margins) - num_train) / num_train + reg * np.sum(W * W)
    binary = (margins > 0).astype(float)
    binary[np.arange(num_train), y] = -np.sum(binary, axis=1)
    dW = X.T.dot(binary) / num_train + 2 * reg * W
    return loss, dW


def softmax_loss_naive(W, X, y, reg):
    """dW summed over the batch but never divided by num_train (the loss is)."""
    loss = 0.0
    dW = np.zeros_like(W)
    num_train = X.shape[0]
    num_classes = W.shape[1]
    for i in range(num_train):
        scores = X[i].dot(W)
        scores -= np.max(scores)
        probs = np.exp(scores) / np.sum(np.exp(scores))
        loss += -np.log(probs[y[i]])
        for j in range(num_classes):
            dW[:, j] += (probs[j] - (j == y[i])) * X[i]
    loss /= num_train
    loss += reg * np.sum(W * W)
    dW += 2 * reg * W
    return loss, dW


def softmax_loss_naive_label_term_per_class(W, X, y, reg):
    """`dW[:, y[i]] -= X[i]` inside the loop over classes: the label's term taken C times, not once."""
    loss = 0.0
    dW = np.zeros_like(W)
    num_train = X.shape[0]
    num_classes = W.shape[1]
    for i in range(num_train):
        scores = X[i].dot(W)
        scores -= np.max(scores)
        probs = np.exp(scores) / np.sum(np.exp(scores))
        loss += -np.log(probs[y[i]])
        for j in range(num_classes):
            dW[:, j] += probs[j] * X[i]
            dW[:, y[i]] -= X[i]
    loss /= num_train
    dW /= num_train
    loss += reg * np.sum(W * W)
    dW += 2 * reg * W
    return loss, dW


def softmax_loss_vectorized(W, X, y, reg):
    """The one-hot subtracted from every row's first class instead of its label (probs[:, 0] -= 1)."""
    num_train = X.shape[0]
    scores = X.dot(W)
    scores -= np.max(scores, axis=1, keepdims=True)
    probs = np.exp(scores)
    probs /= np.sum(probs, axis=1, keepdims=True)
    loss = -np.sum(np.log(probs[np.arange(num_train), y])) / num_train + reg * np.sum(W * W)
    dscores = probs.copy()
    dscores[:, 0] -= 1
    dW = X.T.dot(dscores) / num_train + 2 * reg * W
    return loss, dW
