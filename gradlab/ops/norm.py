"""Normalization layers: batchnorm (training mode), layernorm, groupnorm.

Each normalises its input over a set of axes, x_hat = (x - mean) / sqrt(var + eps) with the biased
variance var = mean((x - mean)**2), then (when `affine`) scales and shifts it: y = weight * x_hat + bias.

| type      | statistics over                                  | weight / bias shape       |
|-----------|--------------------------------------------------|---------------------------|
| batchnorm | the batch and every spatial axis, per channel    | (C,)                      |
| layernorm | the trailing `normalized_shape` axes, per sample | normalized_shape          |
| groupnorm | (C / groups, *spatial), per sample and group     | (C,)                      |

The variance is written without abs or conj and the scale as 1 / sqrt(var + eps), so the forward
is complex-analytic near real input: the complex-step check can run through it.
On stacked input (N, B, *shape) the statistics are taken per stacked evaluation.
"""

from __future__ import annotations

import math
from typing import Annotated, Union

import numpy as np
from pydantic import Field

from ._registry import LayerOp, ParamInfo, ShapeError
from .options import Flag, Options, Positive, Size, stack_lead

# --- shared helpers ----------------------------------------------------------------------------


def _normalize(x, axes, eps):
    """(x_hat, 1 / sqrt(var + eps)) with the statistics over `axes` (kept as size-1 axes)."""
    xc = x - x.mean(axis=axes, keepdims=True)
    invstd = 1 / np.sqrt((xc * xc).mean(axis=axes, keepdims=True) + eps)
    return xc * invstd, invstd


def _normalize_backward(xhat, invstd, dxhat, axes):
    """dL/dx from dL/dx_hat: invstd * (dxhat - mean(dxhat) - x_hat * mean(dxhat * x_hat)).

    The three-term formula; with m values per group it is
    (1/m) * invstd * (m * dxhat - sum(dxhat) - x_hat * sum(dxhat * x_hat)).
    """
    mean_d = dxhat.mean(axis=axes, keepdims=True)
    mean_dx = (dxhat * xhat).mean(axis=axes, keepdims=True)
    return invstd * (dxhat - mean_d - xhat * mean_dx)


def _rounding_terms(x, axes, dxhat, eps_num, eps):
    """Rounding bounds of a normalisation in a dtype of unit roundoff `eps`: of x_hat (x - mean cancels
    to the size of sigma while rounding to eps |x|, then is scaled by 1/sigma: a constant channel's
    residue becomes O(eps |x| / sqrt(eps_num))) and of the backward's three cancelling terms."""
    mean = x.mean(axis=axes, keepdims=True)
    xc = x - mean
    invstd = 1 / np.sqrt((xc * xc).mean(axis=axes, keepdims=True) + eps_num)
    xhat = xc * invstd
    e_xhat = 4 * eps * ((np.abs(x) + np.abs(mean)) * invstd + np.abs(xhat))
    ad = np.abs(dxhat)
    e_dx = 4 * eps * invstd * (ad + ad.mean(axis=axes, keepdims=True) + np.abs(xhat) * (ad * np.abs(xhat)).mean(axis=axes, keepdims=True))
    e_dx = e_dx + invstd * (ad * e_xhat).mean(axis=axes, keepdims=True) * (1 + np.abs(xhat))
    return e_xhat, e_dx


def _rounding(arrange):
    """A norm op's `rounding(x, g, p, o, eps)` from `arrange(x, g, p, o) -> (x', axes, dxhat', w, undo, sum_axes)`."""

    def rounding(x, g, p, o, eps):
        xv, axes, dxhat, w, undo, sum_axes = arrange(x, g, p, o)
        e_xhat, e_dx = _rounding_terms(xv, axes, dxhat, o.eps, eps)
        e_xhat, e_dx = undo(e_xhat), undo(e_dx)
        fwd = e_xhat * np.abs(w) if w is not None else e_xhat
        grads = {"weight": (np.abs(g) * e_xhat).sum(axis=sum_axes), "bias": np.zeros(np.shape(p["bias"]))} if o.affine else {}
        return fwd, e_dx, grads

    return rounding


def _bn_arrange(x, g, p, o):
    axes = _bn_axes(x.ndim, 1)
    w = _place(p["weight"], (x.shape[1],), x.ndim, 1) if o.affine else None
    return x, axes, g * w if w is not None else g, w, lambda a: a, axes


def _ln_arrange(x, g, p, o):
    ns = _ln_shape(x.shape[1:], o)
    axes = tuple(range(x.ndim - len(ns), x.ndim))
    w = p["weight"] if o.affine else None
    return x, axes, g * w if w is not None else g, w, lambda a: a, tuple(range(x.ndim - len(ns)))


def _gn_arrange(x, g, p, o):
    xg, axes = _grouped(x, 1, o.groups)
    w = _place(p["weight"], (x.shape[1],), x.ndim, 1) if o.affine else None
    dxhat = (g * w if w is not None else g).reshape(xg.shape)
    return xg, axes, dxhat, w, lambda a: np.broadcast_to(a, xg.shape).reshape(x.shape), (0,) + tuple(range(2, x.ndim))


def _place(p, shape, ndim, at):
    """A parameter of `shape` (stack axes first, if any) reshaped to broadcast against an array of
    `ndim` axes in which its own axes start at axis `at`."""
    lead = stack_lead(p, shape)
    if len(lead) > at:
        raise ValueError(f"parameter of shape {p.shape} has more stack axes than the input allows")
    return p.reshape(lead + (1,) * (at - len(lead)) + tuple(shape) + (1,) * (ndim - at - len(shape)))


def _affine_params(shape, o) -> dict[str, ParamInfo]:
    if not o.affine:
        return {}
    return {"weight": ParamInfo(tuple(shape), "ones"), "bias": ParamInfo(tuple(shape), "zeros")}


def _linear_grads(g, xhat, sum_axes, o, dtype) -> dict:
    if not o.affine:
        return {}
    return {"weight": (g * xhat).sum(axis=sum_axes).astype(dtype, copy=False),
            "bias": g.sum(axis=sum_axes).astype(dtype, copy=False)}


def _needs_channels(name, in_shape):
    if len(in_shape) < 1:
        raise ShapeError(f"{name} needs an input with a channel axis, (C,) or (C, *spatial); got per-sample shape {tuple(in_shape)}")


def _torch_affine(p, o):
    return (p["weight"], p["bias"]) if o.affine else (None, None)


# --- batchnorm ---------------------------------------------------------------------------------


class BatchNormOptions(Options):
    eps: Positive = 1e-5
    affine: Flag = True


def check_batch(batch: int, in_shape) -> None:
    """Refuse a batch in which some channel has only one value (batch 1 and no spatial axes, or
    every spatial axis of size 1): its variance is 0 and torch refuses it in training mode too."""
    in_shape = tuple(in_shape)
    _needs_channels("batchnorm", in_shape)
    values = int(batch) * math.prod(in_shape[1:])
    if values <= 1:
        raise ShapeError(
            f"batchnorm needs more than one value per channel: batch {batch} with input shape {in_shape} "
            f"gives {values} value(s) per channel; use batch >= 2 or layernorm")


def _bn_out_shape(in_shape, o):
    _needs_channels("batchnorm", in_shape)
    return tuple(in_shape)


def _bn_axes(ndim, channel_axis):
    """The batch axis and every spatial axis (everything after the channel axis)."""
    return (channel_axis - 1,) + tuple(range(channel_axis + 1, ndim))


def _bn_forward(x, p, o):
    check_batch(x.shape[1], x.shape[2:])
    xhat, _ = _normalize(x, _bn_axes(x.ndim, 2), o.eps)
    if not o.affine:
        return xhat
    c = (x.shape[2],)
    return xhat * _place(p["weight"], c, x.ndim, 2) + _place(p["bias"], c, x.ndim, 2)


def _bn_backward(x, y, g, p, o):
    check_batch(x.shape[0], x.shape[1:])
    axes = _bn_axes(x.ndim, 1)
    xhat, invstd = _normalize(x, axes, o.eps)
    dxhat = g * _place(p["weight"], (x.shape[1],), x.ndim, 1) if o.affine else g
    dx = _normalize_backward(xhat, invstd, dxhat, axes)
    return dx.astype(x.dtype, copy=False), _linear_grads(g, xhat, axes, o, x.dtype)


def _bn_torch(x, p, o):
    import torch.nn.functional as F

    w, b = _torch_affine(p, o)
    return F.batch_norm(x, None, None, w, b, training=True, eps=o.eps)


# --- layernorm ---------------------------------------------------------------------------------


class LayerNormOptions(Options):
    normalized_shape: Union[Size, Annotated[list[Size], Field(min_length=1)], None] = None
    eps: Positive = 1e-5
    affine: Flag = True


def _ln_shape(in_shape, o) -> tuple[int, ...]:
    """The normalized (trailing) shape, checked against the input's trailing sizes."""
    in_shape = tuple(in_shape)
    if len(in_shape) < 1:
        raise ShapeError(f"layernorm needs an input with at least one axis; got per-sample shape {in_shape}")
    ns = o.normalized_shape
    if ns is None:
        return in_shape[-1:]
    ns = (ns,) if isinstance(ns, int) else tuple(ns)
    if len(ns) > len(in_shape) or in_shape[len(in_shape) - len(ns):] != ns:
        raise ShapeError(
            f"layernorm normalized_shape {list(ns)} must equal the input's trailing sizes; "
            f"got per-sample input shape {in_shape}")
    return ns


def _ln_out_shape(in_shape, o):
    ns = _ln_shape(in_shape, o)
    if math.prod(ns) == 1:
        raise ShapeError(f"layernorm over a single value (normalized shape {list(ns)}) outputs its bias whatever the input: "
                         "normalise over more values, or drop the layer")
    return tuple(in_shape)


def _ln_forward(x, p, o):
    ns = _ln_shape(x.shape[2:], o)
    xhat, _ = _normalize(x, tuple(range(x.ndim - len(ns), x.ndim)), o.eps)
    if not o.affine:
        return xhat
    at = x.ndim - len(ns)
    return xhat * _place(p["weight"], ns, x.ndim, at) + _place(p["bias"], ns, x.ndim, at)


def _ln_backward(x, y, g, p, o):
    ns = _ln_shape(x.shape[1:], o)
    axes = tuple(range(x.ndim - len(ns), x.ndim))
    xhat, invstd = _normalize(x, axes, o.eps)
    dxhat = g * p["weight"] if o.affine else g
    dx = _normalize_backward(xhat, invstd, dxhat, axes)
    return dx.astype(x.dtype, copy=False), _linear_grads(g, xhat, tuple(range(x.ndim - len(ns))), o, x.dtype)


def _ln_torch(x, p, o):
    import torch.nn.functional as F

    w, b = _torch_affine(p, o)
    return F.layer_norm(x, _ln_shape(tuple(x.shape[1:]), o), w, b, eps=o.eps)


# --- groupnorm ---------------------------------------------------------------------------------


class GroupNormOptions(Options):
    groups: Size
    eps: Positive = 1e-5
    affine: Flag = True


def _gn_out_shape(in_shape, o):
    in_shape = tuple(in_shape)
    _needs_channels("groupnorm", in_shape)
    if in_shape[0] % o.groups:
        raise ShapeError(f"groupnorm needs the channel count to be divisible by groups: {in_shape[0]} channels "
                         f"(input shape {in_shape}) into {o.groups} groups")
    per_group = in_shape[0] // o.groups * math.prod(in_shape[1:])
    if per_group == 1:
        raise ShapeError(f"groupnorm needs more than one value per group: {in_shape[0]} channel(s) x {math.prod(in_shape[1:])} "
                         f"position(s) in {o.groups} groups leaves one, which normalises to 0 whatever the input (torch refuses it); use fewer groups")
    return in_shape


def _grouped(x, channel_axis, groups):
    """x with its channel axis split into (groups, C / groups), and the axes of one group."""
    c = x.shape[channel_axis]
    xg = x.reshape(x.shape[:channel_axis] + (groups, c // groups) + x.shape[channel_axis + 1:])
    return xg, tuple(range(channel_axis + 1, xg.ndim))


def _gn_forward(x, p, o):
    _gn_out_shape(x.shape[2:], o)
    xg, axes = _grouped(x, 2, o.groups)
    xhat = _normalize(xg, axes, o.eps)[0].reshape(x.shape)
    if not o.affine:
        return xhat
    c = (x.shape[2],)
    return xhat * _place(p["weight"], c, x.ndim, 2) + _place(p["bias"], c, x.ndim, 2)


def _gn_backward(x, y, g, p, o):
    _gn_out_shape(x.shape[1:], o)
    xg, axes = _grouped(x, 1, o.groups)
    xhat_g, invstd = _normalize(xg, axes, o.eps)
    dxhat = g * _place(p["weight"], (x.shape[1],), x.ndim, 1) if o.affine else g
    dx = _normalize_backward(xhat_g, invstd, dxhat.reshape(xg.shape), axes).reshape(x.shape)
    sum_axes = (0,) + tuple(range(2, x.ndim))
    return dx.astype(x.dtype, copy=False), _linear_grads(g, xhat_g.reshape(x.shape), sum_axes, o, x.dtype)


def _gn_torch(x, p, o):
    import torch.nn.functional as F

    w, b = _torch_affine(p, o)
    return F.group_norm(x, o.groups, w, b, eps=o.eps)


OPS = (
    LayerOp(
        name="batchnorm",
        cancels=True,
        rounding=_rounding(_bn_arrange),
        doc="batch normalisation in training mode: per-channel batch statistics over the batch and "
            "spatial axes (channel = first per-sample axis), as torch.nn.functional.batch_norm(training=True)",
        options=BatchNormOptions,
        out_shape=_bn_out_shape,
        forward=_bn_forward,
        backward=_bn_backward,
        torch=_bn_torch,
        params=lambda s, o: _affine_params(s[:1], o),
        mixes_batch=True,
        check_batch=lambda batch, shape, o: check_batch(batch, shape),
        linear_in=("weight", "bias"),
        examples=(
            ((4,), {}),
            ((3, 5), {}),
            ((2, 3, 4), {}),
            ((5, 7), {"eps": 1e-3}),
            ((3,), {"affine": False}),
            ((3, 3, 5), {"affine": False, "eps": 0.1}),
            ((1, 2), {}),
        ),
    ),
    LayerOp(
        name="layernorm",
        rowwise=lambda s, o: len(_ln_shape(s, o)) == 1,
        cancels=True,
        rounding=_rounding(_ln_arrange),
        doc="layer normalisation over the trailing normalized_shape axes of each sample, as torch.nn.functional.layer_norm",
        options=LayerNormOptions,
        out_shape=_ln_out_shape,
        forward=_ln_forward,
        backward=_ln_backward,
        torch=_ln_torch,
        params=lambda s, o: _affine_params(_ln_shape(s, o), o),
        linear_in=("weight", "bias"),
        examples=(
            ((5,), {}),
            ((4,), {"normalized_shape": 4}),
            ((3, 5), {}),
            ((3, 5), {"normalized_shape": [3, 5]}),
            ((2, 3, 4), {"normalized_shape": [3, 4], "eps": 1e-3}),
            ((2, 3, 5), {"normalized_shape": [2, 3, 5], "affine": False}),
            ((7,), {"affine": False, "eps": 0.5}),
        ),
    ),
    LayerOp(
        name="groupnorm",
        cancels=True,
        rounding=_rounding(_gn_arrange),
        doc="group normalisation: per-sample statistics over each group of C/groups channels and the "
            "spatial axes, per-channel weight and bias, as torch.nn.functional.group_norm",
        options=GroupNormOptions,
        out_shape=_gn_out_shape,
        forward=_gn_forward,
        backward=_gn_backward,
        torch=_gn_torch,
        params=lambda s, o: _affine_params(s[:1], o),
        linear_in=("weight", "bias"),
        examples=(
            ((4,), {"groups": 2}),
            ((6, 5), {"groups": 1}),
            ((6, 5), {"groups": 2}),
            ((6, 5), {"groups": 6}),
            ((4, 3, 3), {"groups": 2, "eps": 1e-3}),
            ((3, 3, 5), {"groups": 3, "affine": False}),
            ((6,), {"groups": 3, "eps": 0.5}),
        ),
    ),
)
