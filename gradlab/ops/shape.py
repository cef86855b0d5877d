"""Shape-only layers: flatten."""

from __future__ import annotations

import math

from ._registry import LayerOp
from .options import Options


class FlattenOptions(Options):
    pass


def _flatten_torch(x, p, o):
    return x.reshape(x.shape[0], -1)


OPS = (
    LayerOp(
        name="flatten",
        doc="(B, *shape) -> (B, prod(shape)), as torch.flatten(x, 1)",
        options=FlattenOptions,
        out_shape=lambda s, o: (math.prod(s),),
        forward=lambda x, p, o: x.reshape(x.shape[:2] + (-1,)),
        backward=lambda x, y, g, p, o: (g.reshape(x.shape), {}),
        torch=_flatten_torch,
        moved_unit=lambda x, y, b, j, v, o, radius=None: (j, v, None),  # a unit keeps its flat index
        examples=(((2, 3, 4), {}), ((5,), {})),
    ),
)
