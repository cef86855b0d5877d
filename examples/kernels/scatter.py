"""A row gather (an embedding lookup) whose backward is a scatter-add, simulated as a GPU does it with
atomics: the contributions to each row are added in a different order on every call, in float32, so
repeated rows' sums differ in the last bits from run to run. Accurate by the rule; caught by --determinism.

    gradlab compare examples/kernels/scatter.py:GatherRows examples/kernels/scatter.py:reference --dtype float32 --determinism 20
"""

import torch


def example_inputs():
    # many lookups of few rows: each row of the table's gradient is a sum of many contributions
    return {"table": (12, 16), "index": {"shape": (200,), "dtype": "int64", "high": 12}}


def reference(table, index):
    return table[index]


class GatherRows(torch.autograd.Function):
    @staticmethod
    def forward(ctx, table, index):
        ctx.save_for_backward(index)
        ctx.rows = table.shape[0]
        return table[index]

    @staticmethod
    def backward(ctx, grad):
        (index,) = ctx.saved_tensors
        order = torch.randperm(index.shape[0], device=index.device)  # the order atomics happen to land in
        acc = torch.zeros(ctx.rows, grad.shape[-1], dtype=torch.float32, device=grad.device)
        acc.index_add_(0, index[order], grad[order].float())
        return acc.to(grad.dtype), None


class GatherRowsSorted(GatherRows):
    """The deterministic fix: always accumulate in index order."""

    @staticmethod
    def backward(ctx, grad):
        (index,) = ctx.saved_tensors
        acc = torch.zeros(ctx.rows, grad.shape[-1], dtype=torch.float32, device=grad.device)
        acc.index_add_(0, index, grad.float())
        return acc.to(grad.dtype), None
