"""Layer normalisation over the features with a learned scale and shift: a layer for
`gradlab audit` and for specs (`{type: custom, impl: "examples/ops/layernorm.py:LayerNorm"}`).

    y = gamma * (x - mean(x)) / sqrt(var(x) + eps) + beta      (per row)

    gradlab audit examples/ops/layernorm.py:LayerNorm
"""

import numpy as np


class LayerNorm:
    in_features = 5
    eps = 1e-5

    def __init__(self):
        rng = np.random.default_rng(0)
        self.params = {"gamma": 1.0 + 0.1 * rng.normal(size=self.in_features), "beta": 0.1 * rng.normal(size=self.in_features)}

    def forward(self, x):
        mu = x.mean(axis=-1, keepdims=True)
        xhat = (x - mu) / np.sqrt(x.var(axis=-1, keepdims=True) + self.eps)
        return self.params["gamma"] * xhat + self.params["beta"]

    def backward(self, x, grad_out):
        n = x.shape[-1]
        mu = x.mean(axis=-1, keepdims=True)
        inv = 1.0 / np.sqrt(x.var(axis=-1, keepdims=True) + self.eps)
        xhat = (x - mu) * inv
        g = grad_out * self.params["gamma"]
        grad_x = inv / n * (n * g - g.sum(axis=-1, keepdims=True) - xhat * np.sum(g * xhat, axis=-1, keepdims=True))
        grads = {"gamma": np.sum(grad_out * xhat, axis=0), "beta": grad_out.sum(axis=0)}
        return grad_x, grads

    def torch_forward(self, x, params):
        import torch

        return torch.nn.functional.layer_norm(x, (self.in_features,), params["gamma"], params["beta"], self.eps)
