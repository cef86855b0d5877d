"""torch's own layers as `gradlab audit --kind module` targets: each a subclass that fixes the constructor
arguments and declares its inputs (the sizes baked into parameters stay; the others are varied)."""

import torch


class Conv2d(torch.nn.Conv2d):
    def __init__(self):
        super().__init__(3, 4, kernel_size=3, padding=1, stride=2)

    @staticmethod
    def example_inputs():
        return {"input": (2, 3, 7, 6)}


class LayerNorm(torch.nn.LayerNorm):
    def __init__(self):
        super().__init__(12)

    @staticmethod
    def example_inputs():
        return {"input": (5, 12)}


class MultiheadAttention(torch.nn.MultiheadAttention):
    def __init__(self):
        super().__init__(embed_dim=8, num_heads=2)

    @staticmethod
    def example_inputs():
        # (L, N, E): query, key and value of one length, so that sizes stay consistent when varied
        return {"query": (5, 3, 8), "key": (5, 3, 8), "value": (5, 3, 8)}
