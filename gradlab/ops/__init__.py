"""The op library: activations, losses, the dense layer and init schemes.

Adding an activation or a loss is one `register(...)` entry in `activations.py` or
`losses.py`; specs, engines and tests pick it up from the registries.
"""

from ._registry import Activation, Loss, Registry, UnknownOpError
from .activations import ACTIVATIONS
from .losses import LOSSES

__all__ = ["ACTIVATIONS", "LOSSES", "Activation", "Loss", "Registry", "UnknownOpError"]
