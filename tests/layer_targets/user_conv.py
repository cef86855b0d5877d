"""A user's 2-d convolution (3x3, stride 1, no padding) as a course would write it: loops over the kernel."""

import numpy as np


class Conv3x3:
    input_shape = (2, 2, 6, 6)  # batch first: (B, C, H, W)

    def __init__(self):
        rng = np.random.default_rng(0)
        self.params = {"w": rng.normal(0, 0.3, (3, 2, 3, 3)), "b": np.zeros(3)}

    def forward(self, x):
        w, b = self.params["w"], self.params["b"]
        h, wd = x.shape[2] - 2, x.shape[3] - 2
        out = np.zeros((x.shape[0], 3, h, wd))
        for i in range(3):
            for j in range(3):
                out += np.einsum("bchw,oc->bohw", x[:, :, i:i + h, j:j + wd], w[:, :, i, j])
        return out + b[None, :, None, None]

    def backward(self, x, g):
        w = self.params["w"]
        h, wd = g.shape[2], g.shape[3]
        dx, dw = np.zeros_like(x), np.zeros_like(w)
        for i in range(3):
            for j in range(3):
                dw[:, :, i, j] = np.einsum("bohw,bchw->oc", g, x[:, :, i:i + h, j:j + wd])
                dx[:, :, i:i + h, j:j + wd] += np.einsum("bohw,oc->bchw", g, w[:, :, i, j])
        return dx, {"w": dw, "b": g.sum(axis=(0, 2, 3))}

    def torch_forward(self, x, params):
        import torch

        return torch.nn.functional.conv2d(x, params["w"], params["b"])


class Conv3x3WrongFlip(Conv3x3):
    """The classic bug: the weight gradient's kernel flipped."""

    def backward(self, x, g):
        dx, grads = super().backward(x, g)
        return dx, {**grads, "w": grads["w"][:, :, ::-1, ::-1]}
