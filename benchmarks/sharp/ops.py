"""Custom activations for the sharpness benchmark (issue 23): each exact, and a twin whose backward is off
by a relative 1e-8 (what a float32 constant in a float64 derivative, or a truncated series, looks like).

The numeric engine only sees `forward`; the analytic engine calls `backward`. With
`check.engines: [analytic, numeric]` the wrong twin must fail and the exact one pass.
"""

import math

import numpy as np

OFF = 1e-8  # the planted relative error of the wrong twins' backward


class Tanh:
    kind = "activation"
    elementwise = True
    complex_safe = True

    def forward(self, z):
        return np.tanh(z)

    def backward(self, z, grad_out):
        t = np.tanh(z)
        return grad_out * (1.0 - t * t)

    def torch_forward(self, z):
        import torch

        return torch.tanh(z)


class TanhOff(Tanh):
    def backward(self, z, grad_out):
        return super().backward(z, grad_out) * (1.0 + OFF)


class Gelu:  # no complex_safe: the engine probes it at the network's point (issue 23)
    """gelu, tanh approximation: 0.5 z (1 + tanh(c (z + 0.044715 z^3)))."""

    kind = "activation"
    elementwise = True
    c = math.sqrt(2.0 / math.pi)

    def forward(self, z):
        return 0.5 * z * (1.0 + np.tanh(self.c * (z + 0.044715 * z**3)))

    def backward(self, z, grad_out):
        t = np.tanh(self.c * (z + 0.044715 * z**3))
        return grad_out * (0.5 * (1.0 + t) + 0.5 * z * (1.0 - t * t) * self.c * (1.0 + 3 * 0.044715 * z * z))

    def torch_forward(self, z):
        import torch

        return 0.5 * z * (1.0 + torch.tanh(self.c * (z + 0.044715 * z**3)))


class GeluOff(Gelu):
    def backward(self, z, grad_out):
        return super().backward(z, grad_out) * (1.0 + OFF)
