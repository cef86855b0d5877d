"""Option types shared by the layer ops' pydantic option models (ops import nothing else of gradlab)."""

from __future__ import annotations

from typing import Annotated, Union

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt

Size = Annotated[StrictInt, Field(ge=1, le=2**20)]
NonNegative = Annotated[StrictInt, Field(ge=0, le=2**20)]
Sizes = Union[Size, list[Size]]  # one value for every spatial axis, or one per axis
NonNegatives = Union[NonNegative, list[NonNegative]]
Positive = Annotated[StrictFloat, Field(gt=0, le=1e6, allow_inf_nan=False)]
Flag = StrictBool


class Options(BaseModel):
    """A layer's options: frozen; unknown keys are refused by the spec that embeds it."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def per_axis(value, n: int, what: str) -> tuple[int, ...]:
    """`3` or `[3, 3]` -> (3, 3) for n spatial axes; a list of the wrong length is a ShapeError."""
    from ._registry import ShapeError

    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ShapeError(f"{what} needs {n} value(s) (one per spatial axis), got {list(value)}")
        return tuple(int(v) for v in value)
    return (int(value),) * n


def stack_lead(p, shape) -> tuple:
    """The stack axes in front of a parameter's own shape."""
    return p.shape[: p.ndim - len(shape)]
