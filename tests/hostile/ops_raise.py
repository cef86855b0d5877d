"""User ops that raise, return garbage or break their contract: each is that op's error (exit 2, naming it)."""

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


class Good(Tanh):
    """Correct: the control case."""


class RaiseInForward(Tanh):
    def forward(self, z):
        raise ValueError("forward refuses")


class RaiseInBackward(Tanh):
    def backward(self, z, grad_out):
        raise RuntimeError("backward refuses")


class KeyboardInterruptInForward(Tanh):
    def forward(self, z):
        raise KeyboardInterrupt


class KeyboardInterruptInBackward(Tanh):
    def backward(self, z, grad_out):
        raise KeyboardInterrupt


class GeneratorExitInBackward(Tanh):
    def backward(self, z, grad_out):
        raise GeneratorExit


class MemoryErrorInBackward(Tanh):
    def backward(self, z, grad_out):
        raise MemoryError("pretend")


class RecursionInBackward(Tanh):
    def backward(self, z, grad_out):
        return self.backward(z, grad_out)


class WrongShapeBackward(Tanh):
    def backward(self, z, grad_out):
        return super().backward(z, grad_out).sum(axis=0)


class WrongShapeForward(Tanh):
    def forward(self, z):
        return np.tanh(z)[..., :1]


class NoneBackward(Tanh):
    def backward(self, z, grad_out):
        return None


class NoneForward(Tanh):
    def forward(self, z):
        return None


class StringBackward(Tanh):
    def backward(self, z, grad_out):
        return "gradient"


class ComplexBackward(Tanh):
    def backward(self, z, grad_out):
        return super().backward(z, grad_out) * (1 + 1j)


class NanForward(Tanh):
    def forward(self, z):
        return np.full_like(z, np.nan)


class InfForward(Tanh):
    def forward(self, z):
        return np.full_like(z, np.inf)


class NanBackward(Tanh):
    def backward(self, z, grad_out):
        return np.full_like(z, np.nan)


class TorchForwardRaises(Tanh):
    def torch_forward(self, z):
        raise RuntimeError("torch_forward refuses")


class TorchForwardNumpy(Tanh):
    def torch_forward(self, z):
        return np.tanh(z.detach().numpy())


class TorchForwardWrongShape(Tanh):
    def torch_forward(self, z):
        import torch

        return torch.tanh(z).sum()


class HugeMessage(Tanh):
    def forward(self, z):
        raise ValueError("x" * 1_000_000)


class RichMarkupMessage(Tanh):
    def forward(self, z):
        raise ValueError("[/] [bold]not markup[/bold] [link=http://e.invalid]x")


class InitRaises(Tanh):
    def __init__(self):
        raise RuntimeError("cannot construct")


class NeedsArgs(Tanh):
    def __init__(self, scale):
        self.scale = scale


NotCallable = 42


class BadAttributes:
    forward = "not a method"
    backward = "not a method"


class LossBackwardRaises:
    kind = "loss"
    target = "regression"

    def forward(self, pred, target):
        return 0.5 * float(np.sum((pred - target) ** 2))

    def backward(self, pred, target):
        raise RuntimeError("loss backward refuses")


class LossForwardNan(LossBackwardRaises):
    def forward(self, pred, target):
        return float("nan")

    def backward(self, pred, target):
        return pred - target


class LayerMissingGrad:
    kind = "layer"
    in_features = 2

    def __init__(self):
        self.params = {"s": np.linspace(0.5, 1.5, 2), "t": np.zeros(2)}

    def forward(self, x):
        return x * self.params["s"] + self.params["t"]

    def backward(self, x, grad_out):
        return grad_out * self.params["s"], {"s": np.sum(grad_out * x, axis=0)}  # "t" is missing


class LayerWrongGradX(LayerMissingGrad):
    def backward(self, x, grad_out):
        grads = {"s": np.sum(grad_out * x, axis=0), "t": grad_out.sum(axis=0)}
        return (grad_out * self.params["s"]).T, grads
