"""User ops that take forever: reported as a timeout of the op (exit 2), the other specs still run.

SleepInForward writes the file named by $GRADLAB_HOSTILE_MARKER when it starts sleeping, so a test
can send SIGINT while it sleeps.
"""

import os
import time

import numpy as np


class Tanh:
    kind = "activation"
    elementwise = True

    def forward(self, z):
        return np.tanh(z)

    def backward(self, z, grad_out):
        return grad_out * (1.0 - np.tanh(z) ** 2)

    def torch_forward(self, z):
        import torch

        return torch.tanh(z)


class SleepInForward(Tanh):
    def forward(self, z):
        marker = os.environ.get("GRADLAB_HOSTILE_MARKER")
        if marker:
            with open(marker, "w") as fh:
                fh.write("sleeping\n")
        time.sleep(60)
        return super().forward(z)


class SleepInBackward(Tanh):
    def backward(self, z, grad_out):
        time.sleep(60)
        return super().backward(z, grad_out)


class LoopInBackward(Tanh):
    def backward(self, z, grad_out):
        n = 0
        while True:
            n += 1


class LoopSwallowingEverything(Tanh):
    """Catches whatever is raised into it, the deadline's exception included."""

    def backward(self, z, grad_out):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                time.sleep(0.01)
            except BaseException:
                pass
        return super().backward(z, grad_out)
