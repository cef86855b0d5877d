"""The op library: activations, losses, the dense layer and init schemes.

Adding an activation or a loss is one `register(...)` entry in `activations.py` or
`losses.py`; specs, engines and tests pick it up from the registries.
"""

from ._registry import Activation, LayerOp, Loss, ParamInfo, Registry, ShapeError, UnknownOpError
from .activations import ACTIVATIONS
from .losses import LOSSES

from .layers import LAYERS

__all__ = ["ACTIVATIONS", "LAYERS", "LOSSES", "Activation", "LayerOp", "Loss", "ParamInfo", "Registry", "ShapeError", "UnknownOpError"]
