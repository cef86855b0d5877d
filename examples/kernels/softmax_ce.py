"""Softmax cross-entropy (mean over the batch) whose backward is correct algebra -- (softmax - onehot) / N --
but computed entirely in bfloat16: the exponentials, the row sums and the division all round to 8 bits.

    gradlab compare examples/kernels/softmax_ce.py:SoftmaxCEBf16 examples/kernels/softmax_ce.py:reference --dtype bfloat16
"""

import torch
import torch.nn.functional as F


def example_inputs():
    return {"logits": (8, 10), "labels": {"shape": (8,), "dtype": "int64", "high": 10}}


def reference(logits, labels):
    return F.cross_entropy(logits, labels)


class SoftmaxCEBf16(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, labels):
        ctx.save_for_backward(logits, labels)
        return F.cross_entropy(logits.float(), labels).to(logits.dtype)  # the forward is accurate

    @staticmethod
    def backward(ctx, grad):
        logits, labels = ctx.saved_tensors
        z = logits.to(torch.bfloat16)
        e = torch.exp(z - z.max(-1, keepdim=True).values)  # bfloat16
        total = torch.zeros_like(e[:, :1])
        for j in range(e.shape[-1]):  # a row sum accumulated in bfloat16, element by element
            total = total + e[:, j:j + 1]
        p = e / total
        onehot = F.one_hot(labels, e.shape[-1]).to(torch.bfloat16)
        d = (p - onehot) * grad.to(torch.bfloat16) / torch.tensor(float(e.shape[0]), dtype=torch.bfloat16)
        return d.to(logits.dtype), None
