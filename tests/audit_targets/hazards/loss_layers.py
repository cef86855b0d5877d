"""Loss layers: forward(x, t) -> loss with integer labels t, backward(dout=1) -> dx. SoftmaxWithLoss is
correct; SoftmaxWithLossNoMean forgets to divide dx by the batch size."""
import numpy as np


class SoftmaxWithLoss:
    def forward(self, x, t):
        self.t = t
        e = np.exp(x - x.max(axis=1, keepdims=True))
        self.y = e / e.sum(axis=1, keepdims=True)
        return -np.mean(np.log(self.y[np.arange(len(t)), t]))

    def backward(self, dout=1):
        dx = self.y.copy()
        dx[np.arange(len(self.t)), self.t] -= 1
        return dout * dx / len(self.t)


class SoftmaxWithLossNoMean(SoftmaxWithLoss):
    def backward(self, dout=1):
        dx = self.y.copy()
        dx[np.arange(len(self.t)), self.t] -= 1
        return dout * dx
