"""The autograd engine: the same network built from the ops' torch mirrors, on cpu or cuda."""

from __future__ import annotations

import time

import numpy as np

from ..gradients import INPUT, Gradients
from ..network import Network


def device_unavailable(device: str) -> str | None:
    """Why `device` cannot be used here, or None when it can."""
    import torch

    if device == "cpu":
        return None
    if not torch.cuda.is_available():
        return "CUDA is not available on this machine"
    index = int(device.split(":")[1]) if ":" in device else 0
    if index >= torch.cuda.device_count():
        return f"{device} requested but only {torch.cuda.device_count()} CUDA device(s) present"
    return None


def device_name(device: str) -> str:
    import torch

    if device.startswith("cuda") and device_unavailable(device) is None:
        return torch.cuda.get_device_name(torch.device(device))
    return "cpu"


def gradients(net: Network, device: str = "cpu", *, wrt_input: bool = False) -> Gradients:
    import torch

    missing = net.torch_missing()
    if missing:  # the run is then incomplete (exit 4): say how to make it whole, or how to ask for less
        missing += "; add one, or leave autograd out with check.engines: [analytic, numeric]"
    reason = device_unavailable(device) or missing
    if reason:
        return Gradients("autograd", device, str(net.dtype), skipped=reason)
    t0 = time.perf_counter()
    tdtype = {"float64": torch.float64, "float32": torch.float32}[str(net.dtype)]

    def tensor(a, grad=False):
        return torch.tensor(np.asarray(a), dtype=tdtype, device=device, requires_grad=grad)

    params = {k: tensor(v, True) for k, v in net.params.items()}
    h = x = tensor(net.x, wrt_input)
    for layer in net.layers:
        h = layer.torch_forward(params, h)
    out = net.target.shape[1:]
    loss = net.loss_op.torch(h.reshape(-1, out[-1]), tensor(net.target.reshape(-1, out[-1]))) * net.loss_scale
    wrt = list(params.values()) + ([x] if wrt_input else [])
    grads = torch.autograd.grad(loss, wrt, allow_unused=True)
    values = {}
    for (name, p), g in zip(list(params.items()) + ([(INPUT, x)] if wrt_input else []), grads):
        values[name] = np.zeros(p.shape) if g is None else g.detach().to("cpu", torch.float64).numpy()
    return Gradients("autograd", device, str(net.dtype), values, seconds=time.perf_counter() - t0)
