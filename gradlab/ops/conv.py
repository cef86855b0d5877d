"""Convolutions: conv1d, conv2d (torch's cross-correlation, with stride, padding, dilation, groups).

Forward is an im2col (a strided view of the padded input, copied in chunks of at most COLS_BYTES
along the stack axis N) and a matrix product per chunk: with one weight the stack joins the
columns, with stacked weights and one input (or an input broadcast along N) it joins the output
channels, and only when both are stacked is it a batched product. Backward is written by hand:
dW correlates the input with the output gradient, dx is the transposed convolution (col2im,
accumulating over the kernel offsets into a padded buffer, then cropping the padding).

Shared helpers (`padded`, `windows`, `spatial_dims`, `axes`) are used by pool.py as well.
"""

from __future__ import annotations

import math
import warnings
from typing import Literal, Union

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ._registry import LayerOp, ParamInfo, ShapeError
from .options import Flag, NonNegatives, Options, Size, Sizes, per_axis
from .products import matmul

_DIMS = {1: ("L",), 2: ("H", "W"), 3: ("D", "H", "W")}


def spatial_dims(nd: int) -> str:
    """(C, L) / (C, H, W): the input a layer with nd spatial axes needs."""
    return "(C, " + ", ".join(_DIMS[nd]) + ")"


def need_rank(name: str, in_shape: tuple, nd: int) -> None:
    if len(in_shape) != nd + 1:
        raise ShapeError(f"{name} needs an input of shape {spatial_dims(nd)}, got {tuple(in_shape)}")


def axes(name: str, value, nd: int, what: str) -> tuple[int, ...]:
    """per_axis with the layer's name in front of its message."""
    try:
        return per_axis(value, nd, what)
    except ShapeError as exc:
        raise ShapeError(f"{name}: {exc}") from None


def fmt(t) -> str:
    return "x".join(map(str, t))


def padded(x, lo, hi, value=0):
    """x with its last len(lo) axes padded by lo before and hi after, filled with `value`."""
    if not any(lo) and not any(hi):
        return x
    nd = len(lo)
    out = np.full(x.shape[:-nd] + tuple(s + a + b for s, a, b in zip(x.shape[-nd:], lo, hi)), value, dtype=x.dtype)
    out[(Ellipsis,) + tuple(slice(a, a + s) for a, s in zip(lo, x.shape[-nd:]))] = x
    return out


def windows(xp, out, kernel, stride, dilation):
    """Read-only view (..., *out, *kernel) of the windows of xp over its last len(kernel) axes."""
    nd = len(kernel)
    st = xp.strides[-nd:]
    return as_strided(
        xp,
        shape=xp.shape[:-nd] + tuple(out) + tuple(kernel),
        strides=xp.strides[:-nd] + tuple(a * s for a, s in zip(st, stride)) + tuple(a * d for a, d in zip(st, dilation)),
        writeable=False,
    )


def offset_slices(k, out, stride, dilation):
    """Slices of the padded input that kernel offset k touches, one position per output position."""
    return tuple(slice(ki * d, ki * d + s * (o - 1) + 1, s) for ki, o, s, d in zip(k, out, stride, dilation))


# --- conv ----------------------------------------------------------------------------------------


class ConvOptions(Options):
    channels: Size
    kernel: Sizes
    stride: Sizes = 1
    padding: Union[NonNegatives, Literal["same"]] = 0
    dilation: Sizes = 1
    groups: Size = 1
    bias: Flag = True


class _Geom:
    """Everything a convolution needs from (in_shape, options), checked."""

    def __init__(self, name: str, nd: int, in_shape: tuple, o: ConvOptions):
        need_rank(name, in_shape, nd)
        self.nd = nd
        self.c_in, *spatial = (int(s) for s in in_shape)
        self.spatial = tuple(spatial)
        self.c_out, self.groups = o.channels, o.groups
        self.kernel = axes(name, o.kernel, nd, "kernel")
        self.stride = axes(name, o.stride, nd, "stride")
        self.dilation = axes(name, o.dilation, nd, "dilation")
        if self.c_in % self.groups:
            raise ShapeError(f"{name}: input channels {self.c_in} are not divisible by groups {self.groups}")
        if self.c_out % self.groups:
            raise ShapeError(f"{name}: output channels {self.c_out} are not divisible by groups {self.groups}")
        extent = tuple(d * (k - 1) + 1 for k, d in zip(self.kernel, self.dilation))
        if o.padding == "same":
            if any(s != 1 for s in self.stride):
                raise ShapeError(f"{name}: padding 'same' needs stride 1, got stride {list(self.stride)}")
            # as torch: total d(k-1) per axis, half on the left, the odd one out on the right
            total = tuple(e - 1 for e in extent)
            self.lo = tuple(t // 2 for t in total)
            self.hi = tuple(t - t // 2 for t in total)
        else:
            self.lo = self.hi = axes(name, o.padding, nd, "padding")
        size = tuple(s + a + b for s, a, b in zip(self.spatial, self.lo, self.hi))
        if any(e > s for e, s in zip(extent, size)):
            what = f"kernel {fmt(self.kernel)}" + (f" (dilated extent {fmt(extent)})" if extent != self.kernel else "")
            raise ShapeError(f"{name}: {what} is larger than the padded input {fmt(size)} "
                             f"(input {fmt(self.spatial)}, padding {fmt(self.lo)}"
                             + (f"+{fmt(self.hi)}" if self.hi != self.lo else "") + ")")
        self.out = tuple((s - e) // st + 1 for s, e, st in zip(size, extent, self.stride))
        self.cg, self.og = self.c_in // self.groups, self.c_out // self.groups
        self.kp = math.prod(self.kernel)

    def cols(self, x):
        """(..., C, *S) -> windows (..., g, Cg, *out, *kernel) of the padded input (a view)."""
        w = windows(padded(x, self.lo, self.hi), self.out, self.kernel, self.stride, self.dilation)
        return w.reshape(w.shape[:-(2 * self.nd + 1)] + (self.groups, self.cg) + w.shape[-2 * self.nd:])


COLS_BYTES = 8 * 2**20  # the im2col copy is built this many bytes at a time along the stack axis: cache-sized (64 MiB: LeNet-5 numeric 0.42 -> 0.38 s warm at 8, 0.50 -> 0.38 s cold)


def _unbroadcast(a):
    return a[:1] if a.shape[0] > 1 and a.strides[0] == 0 else a


def _forward(nd: int, name: str):
    def forward(x, p, o):
        G = _Geom(name, nd, x.shape[2:], o)
        w, b = p["weight"], p.get("bias") if o.bias else None
        M = max(x.shape[0], w.shape[0], 1 if b is None else b.shape[0])
        # a stack that is a broadcast (stride 0, as the network passes the input when only the
        # weights are perturbed) is computed once
        x, w = _unbroadcast(x), _unbroadcast(w)
        N, B = x.shape[:2]
        nw = w.shape[0]
        P, CK = math.prod(G.out), G.cg * G.kp
        wm = w.reshape(nw, G.groups, G.og, CK)
        dtype = np.result_type(x, w) if b is None else np.result_type(x, w, b)
        y = np.empty((M, B, G.groups, G.og, P), dtype=dtype)
        o_ax = tuple(range(4, 4 + nd))
        k_ax = tuple(range(4 + nd, 4 + 2 * nd))
        step = max(1, COLS_BYTES // (B * G.groups * CK * P * dtype.itemsize)) if max(N, nw) > 1 else M
        for s in range(0, M, step):  # chunks of the stack, not single evaluations
            e = min(M, s + step)
            xs = x[s:e] if N > 1 else x
            n = xs.shape[0]
            win = G.cols(xs)  # (n, B, g, Cg, *out, *kernel), a view
            if nw == 1:
                # one product per group for the whole chunk: (g, Og, CgK) @ (g, CgK, n*B*P)
                cols = win.transpose((2, 3) + k_ax + (0, 1) + o_ax).reshape(G.groups, CK, n * B * P)
                y[s:e] = matmul(wm[0], cols).reshape(G.groups, G.og, n, B, P).transpose(2, 3, 0, 1, 4)
            elif N == 1:
                # one input, stacked weights: the stack joins the output channels, (g, m*Og, CgK) @ (g, CgK, B*P)
                ws = wm[s:e].transpose(1, 0, 2, 3).reshape(G.groups, -1, CK)
                cols = win.transpose((2, 3) + k_ax + (0, 1) + o_ax).reshape(G.groups, CK, B * P)
                y[s:e] = matmul(ws, cols).reshape(G.groups, e - s, G.og, B, P).transpose(1, 3, 0, 2, 4)
            else:
                # both stacked: (e-s, g, Og, CgK) @ (e-s, g, CgK, B*P)
                cols = win.transpose((0, 2, 3) + k_ax + (1,) + o_ax).reshape(n, G.groups, CK, B * P)
                y[s:e] = matmul(wm[s:e], cols).reshape(-1, G.groups, G.og, B, P).transpose(0, 3, 1, 2, 4)
        y = y.reshape((M, B, G.c_out) + G.out)
        if b is not None:
            y += b.reshape((b.shape[0], 1, G.c_out) + (1,) * nd)
        return y

    return forward


def _backward(nd: int, name: str):
    def backward(x, y, g, p, o):
        G = _Geom(name, nd, x.shape[1:], o)
        B = x.shape[0]
        P = math.prod(G.out)
        w = p["weight"]
        dtype = np.result_type(x, g, w)
        o_ax = tuple(range(3, 3 + nd))
        k_ax = tuple(range(3 + nd, 3 + 2 * nd))
        # (B, g, Cg, *out, *kernel) -> (g, B*P, Cg*K)
        cols = G.cols(x).transpose((1, 0) + o_ax + (2,) + k_ax).reshape(G.groups, B * P, G.cg * G.kp)
        gm = g.reshape(B, G.groups, G.og, P).transpose(1, 2, 0, 3).reshape(G.groups, G.og, B * P)
        wm = w.reshape(G.groups, G.og, G.cg * G.kp)
        grads = {"weight": (gm @ cols).reshape(w.shape).astype(dtype, copy=False)}
        if o.bias:
            grads["bias"] = g.sum(axis=(0,) + tuple(range(2, 2 + nd))).astype(dtype, copy=False)
        # dx: the transposed convolution, col2im with accumulation over kernel offsets
        dcols = (wm.transpose(0, 2, 1) @ gm).reshape((G.groups, G.cg) + G.kernel + (B,) + G.out)
        dcols = np.moveaxis(dcols, 2 + nd, 0)  # (B, g, Cg, *kernel, *out): one offset's slice lines up with dxp's
        size = tuple(s + a + b for s, a, b in zip(G.spatial, G.lo, G.hi))
        dxp = np.zeros((B, G.groups, G.cg) + size, dtype=dtype)
        for k in np.ndindex(*G.kernel):
            dxp[(slice(None),) * 3 + offset_slices(k, G.out, G.stride, G.dilation)] += dcols[(slice(None),) * 3 + k]
        dx = dxp.reshape((B, G.c_in) + size)[(Ellipsis,) + tuple(slice(a, a + s) for a, s in zip(G.lo, G.spatial))]
        return np.ascontiguousarray(dx), grads

    return backward


def _torch(nd: int):
    def fn(x, p, o):
        import torch.nn.functional as F

        conv = F.conv1d if nd == 1 else F.conv2d
        padding = "same" if o.padding == "same" else per_axis(o.padding, nd, "padding")
        with warnings.catch_warnings():  # 'same' with an even kernel: torch notes it pads a copy
            warnings.filterwarnings("ignore", message="Using padding='same'")
            return conv(x, p["weight"], p.get("bias") if o.bias else None, stride=per_axis(o.stride, nd, "stride"),
                        padding=padding, dilation=per_axis(o.dilation, nd, "dilation"), groups=o.groups)

    return fn


def _out_shape(nd: int, name: str):
    def out_shape(in_shape, o):
        G = _Geom(name, nd, tuple(in_shape), o)
        return (G.c_out,) + G.out

    return out_shape


def _params(nd: int, name: str):
    def params(in_shape, o):
        G = _Geom(name, nd, tuple(in_shape), o)
        # torch.nn.init._calculate_fan_in_and_fan_out: size(1) and size(0) times the kernel area
        fan_in, fan_out = G.cg * G.kp, G.c_out * G.kp
        out = {"weight": ParamInfo((G.c_out, G.cg) + G.kernel, "weight", fan_in, fan_out)}
        if o.bias:
            out["bias"] = ParamInfo((G.c_out,), "bias", fan_in, fan_out)
        return out

    return params


def _conv(nd: int, doc: str, examples) -> LayerOp:
    name = f"conv{nd}d"
    return LayerOp(
        name=name,
        doc=doc,
        options=ConvOptions,
        out_shape=_out_shape(nd, name),
        forward=_forward(nd, name),
        backward=_backward(nd, name),
        torch=_torch(nd),
        params=_params(nd, name),
        complex_safe=True,
        linear_in=("weight", "bias"),
        channel_params=("weight", "bias"),  # output channel o reads weight[o] and bias[o] alone (groups too)
        examples=examples,
    )


OPS = (
    _conv(1, "(C, L) -> (channels, L'), as torch.nn.functional.conv1d", (
        ((3, 11), {"channels": 4, "kernel": 3}),
        ((4, 13), {"channels": 2, "kernel": 4, "stride": 3, "padding": 2, "groups": 2}),
        ((2, 10), {"channels": 3, "kernel": 4, "padding": "same"}),  # even kernel: 1 left, 2 right
        ((2, 9), {"channels": 3, "kernel": 2, "dilation": 3, "padding": "same"}),  # total 3: odd
        ((2, 12), {"channels": 3, "kernel": [3], "dilation": 2, "stride": 2, "bias": False}),
        ((6, 7), {"channels": 3, "kernel": 3, "groups": 3, "padding": [1]}),
    )),
    _conv(2, "(C, H, W) -> (channels, H', W'), as torch.nn.functional.conv2d", (
        ((3, 7, 6), {"channels": 4, "kernel": 3}),
        ((2, 9, 8), {"channels": 3, "kernel": [2, 3], "stride": 2, "padding": 1}),
        ((4, 6, 7), {"channels": 4, "kernel": 3, "groups": 2}),
        ((2, 8, 7), {"channels": 3, "kernel": 3, "dilation": 2, "padding": "same"}),
        ((2, 6, 7), {"channels": 2, "kernel": [2, 4], "padding": "same"}),  # even: asymmetric
        ((3, 5, 5), {"channels": 2, "kernel": 3, "stride": [1, 2], "padding": [2, 0], "dilation": [1, 2], "bias": False}),
        ((3, 6, 5), {"channels": 6, "kernel": [3, 2], "groups": 3, "stride": [2, 1]}),
        ((1, 4, 4), {"channels": 2, "kernel": 4}),  # kernel covers the whole input: a 1x1 output
    )),
)
