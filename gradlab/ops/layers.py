"""The layer registry: every N-d layer type a spec can name, one module per family.

| family        | module          | types                                                        |
|---------------|-----------------|--------------------------------------------------------------|
| shape         | shape.py        | flatten                                                      |
| convolution   | conv.py         | conv1d, conv2d                                               |
| pooling       | pool.py         | maxpool1d, maxpool2d, avgpool1d, avgpool2d, global_avgpool   |
| normalization | norm.py         | batchnorm, layernorm, groupnorm                              |
| dropout       | dropout.py      | dropout                                                      |
| attention     | attention.py    | attention                                                    |

dense, activation, residual and custom layers are built by gradlab.network itself.
"""

from __future__ import annotations

import importlib

from ._registry import LayerOp, Registry

LAYERS: Registry[LayerOp] = Registry("layer")

FAMILIES = ("shape", "conv", "pool", "norm", "dropout", "attention")
for _family in FAMILIES:
    for _op in importlib.import_module(f".{_family}", __package__).OPS:
        LAYERS.register(_op)
