"""Dropout with a fixed mask: the gradient check is of the *masked* network.

Dropout is random, and a gradient check needs a deterministic function. So the mask is a buffer,
drawn once per check from the check's numpy Generator: every element is kept with probability
1 - p (rng.random(shape) >= p) and scaled by 1 / (1 - p) (inverted dropout, as torch in training
mode), or zeroed. With the mask fixed, the layer is the linear map x -> x * mask, and forward,
backward and the torch mirror all apply the same mask. What is checked is that masked network's
gradient, not an expectation over masks.
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
from pydantic import Field, StrictFloat, field_validator

from ._registry import LayerOp
from .options import Options


class DropoutOptions(Options):
    # torch's default p; an integer 0 is accepted as 0.0
    p: Annotated[StrictFloat, Field(ge=0, lt=1, allow_inf_nan=False)] = 0.5  # strict floats take ints (0) too

    @field_validator("p")
    @classmethod
    def _as_float(cls, v):
        return float(v)


def _buffers(rng, batch, in_shape, o) -> dict:
    """{"mask": (batch, *in_shape) float64 of 0 and 1 / (1 - p)}, drawn from the Generator `rng`."""
    keep = rng.random((int(batch),) + tuple(in_shape)) >= o.p
    return {"mask": keep * (1.0 / (1.0 - o.p))}


def _mask(p, x, stacked: bool):
    mask = np.asarray(p["mask"])
    want = x.shape[1:] if stacked else x.shape
    if mask.shape != want:
        raise ValueError(f"dropout mask has shape {mask.shape}, the input needs {want} (batch first)")
    return mask.astype(x.dtype, copy=False)


def _forward(x, p, o):
    return x * _mask(p, x, stacked=True)


def _backward(x, y, g, p, o):
    return (g * _mask(p, x, stacked=False)).astype(x.dtype, copy=False), {}


def _torch(x, p, o):
    return x * p["mask"].to(x.dtype)


OPS = (
    LayerOp(
        name="dropout",
        doc="inverted dropout with a fixed mask drawn once from the check's rng (buffer `mask`): "
            "x * mask, mask = 0 or 1/(1-p); the check is of the masked network",
        options=DropoutOptions,
        out_shape=lambda s, o: tuple(s),
        forward=_forward,
        backward=_backward,
        torch=_torch,
        buffers=_buffers,
        linear_in=(),
        examples=(
            ((5,), {"p": 0.5}),
            ((3, 4), {"p": 0.2}),
            ((2, 3, 4), {"p": 0.0}),
            ((4,), {"p": 0}),
            ((2, 3, 3), {"p": 0.9}),
            ((7,), {}),
        ),
    ),
)
