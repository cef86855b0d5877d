"""Pooling: maxpool1d/2d, avgpool1d/2d (as torch, ceil_mode off) and global_avgpool.

Windows may overlap (stride < kernel): backward accumulates over kernel offsets into a padded
buffer, so an input element in several windows collects every window's share.
Max pool pads with -inf and picks, per window, the first maximal element in row-major window
order (torch's strict `>` scan); its gradient goes there alone. On complex input (the complex
step) the real parts choose the element and the chosen complex value is returned, so the
imaginary part carries exactly the routed derivative.
Avg pool pads with zeros and divides by the full kernel area (torch's count_include_pad=True).
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from ._registry import LayerOp, ShapeError
from .conv import axes, fmt, need_rank, offset_slices, padded, windows
from .options import NonNegatives, Options, Sizes


class PoolOptions(Options):
    kernel: Sizes
    stride: Optional[Sizes] = None  # None: the kernel
    padding: NonNegatives = 0


class GlobalAvgPoolOptions(Options):
    pass


class _Geom:
    def __init__(self, name: str, nd: int, in_shape: tuple, o: PoolOptions):
        need_rank(name, in_shape, nd)
        self.nd = nd
        self.spatial = tuple(int(s) for s in in_shape[1:])
        self.kernel = axes(name, o.kernel, nd, "kernel")
        self.stride = self.kernel if o.stride is None else axes(name, o.stride, nd, "stride")
        self.pad = axes(name, o.padding, nd, "padding")
        if any(2 * p > k for p, k in zip(self.pad, self.kernel)):
            raise ShapeError(f"{name}: padding {fmt(self.pad)} is more than half the kernel {fmt(self.kernel)} "
                             f"(torch needs padding <= kernel/2)")
        size = tuple(s + 2 * p for s, p in zip(self.spatial, self.pad))
        if any(k > s for k, s in zip(self.kernel, size)):
            raise ShapeError(f"{name}: kernel {fmt(self.kernel)} is larger than the padded input {fmt(size)} "
                             f"(input {fmt(self.spatial)}, padding {fmt(self.pad)})")
        self.size = size
        self.out = tuple((s - k) // st + 1 for s, k, st in zip(size, self.kernel, self.stride))
        self.kp = math.prod(self.kernel)
        self.ones = (1,) * nd

    def crop(self, dxp):
        return np.ascontiguousarray(dxp[(Ellipsis,) + tuple(slice(p, p + s) for p, s in zip(self.pad, self.spatial))])

    def scatter(self, shape, dtype, part):
        """Sum of part(j) over kernel offsets j, each added where offset j of every window sits; cropped."""
        dxp = np.zeros(shape[:-self.nd] + self.size, dtype=dtype)
        for j, k in enumerate(np.ndindex(*self.kernel)):
            dxp[(Ellipsis,) + offset_slices(k, self.out, self.stride, self.ones)] += part(j)
        return self.crop(dxp)


def _argmax(G: _Geom, x):
    """Flattened windows (..., *out, K) of the -inf padded input and each window's first argmax."""
    win = windows(padded(x, G.pad, G.pad, -np.inf), G.out, G.kernel, G.stride, G.ones)
    flat = win.reshape(win.shape[:-G.nd] + (G.kp,))
    idx = np.argmax(flat.real if np.iscomplexobj(flat) else flat, axis=-1)
    return flat, idx


def _max_forward(nd: int, name: str):
    def forward(x, p, o):
        # one pass per kernel offset over strided views (no window copies): keep the first strictly larger real
        # part, in row-major window order -- the element _argmax picks (torch's strict `>` scan)
        G = _Geom(name, nd, x.shape[2:], o)
        xp = padded(x, G.pad, G.pad, -np.inf)
        best = None
        for k in np.ndindex(*G.kernel):
            part = xp[(Ellipsis,) + offset_slices(k, G.out, G.stride, G.ones)]
            if best is None:
                best = part.copy()
                best_re = np.real(best) if np.iscomplexobj(best) else best
                continue
            part_re = np.real(part) if np.iscomplexobj(part) else part
            larger = part_re > best_re
            larger |= np.isnan(part_re) & ~np.isnan(best_re)  # argmax's first NaN wins
            np.copyto(best, part, where=larger)  # best_re is best's real part (a view): it follows
        return best

    return forward


def _tied_apart(re, im, r):
    """Over the last axis (a window's values: real parts re, tangents im): whether the top values tie within r
    (broadcast against re) while their tangents differ -- which one the max picks then decides the derivative.
    `im` is read only for the tied windows (a callable giving them, or an array)."""
    close = re >= np.max(re, axis=-1, keepdims=True) - r
    tied = np.count_nonzero(close, axis=-1) > 1
    out = np.zeros(tied.shape, bool)
    if tied.any():  # rare: look at the tangents of the tied windows only
        t = im(tied) if callable(im) else im[tied]
        c = close[tied]
        out[tied] = np.max(np.where(c, t, -np.inf), axis=-1) > np.min(np.where(c, t, np.inf), axis=-1)
    return out


def _max_near_kink(nd: int, name: str):
    def near_kink(x, o, radius):
        """Windows (N, B, C, *out) whose top values tie within `radius` (a scalar or one per leading row) while
        their tangents differ: which one the max picks then decides the derivative (a max-pool's kink)."""
        G = _Geom(name, nd, x.shape[2:], o)
        win = windows(padded(x, G.pad, G.pad, -np.inf), G.out, G.kernel, G.stride, G.ones)
        k_axes = tuple(range(-G.nd, 0))
        moving = np.any(np.imag(win) != 0, axis=k_axes)  # a window whose tangents are all 0 has none that differ
        out = np.zeros(moving.shape, bool)
        if not moving.any():
            return out
        r = np.broadcast_to(np.reshape(radius, np.shape(radius) + (1,) * (moving.ndim - np.ndim(radius))), moving.shape)
        flat = win[moving].reshape(-1, G.kp)  # the moving windows' values, (M, K)
        out[moving] = _tied_apart(np.real(flat), np.imag(flat), r[moving][:, None])
        return out

    return near_kink


def _max_backward(nd: int, name: str):
    def backward(x, y, g, p, o):
        G = _Geom(name, nd, x.shape[1:], o)
        _, idx = _argmax(G, x)
        zero = np.zeros((), dtype=np.result_type(x, g))
        return G.scatter(x.shape, np.result_type(x, g), lambda j: np.where(idx == j, g, zero)), {}

    return backward


def _avg_forward(nd: int, name: str):
    def forward(x, p, o):
        G = _Geom(name, nd, x.shape[2:], o)
        win = windows(padded(x, G.pad, G.pad, 0), G.out, G.kernel, G.stride, G.ones)
        return win.sum(axis=tuple(range(-nd, 0))) / G.kp

    return forward


def _avg_backward(nd: int, name: str):
    def backward(x, y, g, p, o):
        G = _Geom(name, nd, x.shape[1:], o)
        share = g / G.kp  # every window element, padding included, gets 1/area of its window's gradient
        return G.scatter(x.shape, np.result_type(x, g), lambda j: share), {}

    return backward


def _moved_unit(kind: str, nd: int, name: str):
    def moved_unit(x, y, b, j, v, o, radius=None):
        """Non-overlapping windows (stride >= kernel): input unit j of sample b[p] set to v[p] moves the one output
        unit whose window holds it (none in a gap or a dropped edge: the output's unit 0, unchanged). Its value is
        the window's max (by real part, the first in row-major order, as the forward) or mean, recomputed. With a
        radius per p (a watched max-pool), also whether that window ties within it (see near_kink): the only
        window whose tangents can differ."""
        G = _Geom(name, nd, x.shape[1:], o)
        if any(s < k for s, k in zip(G.stride, G.kernel)):
            return None
        area = math.prod(G.spatial)
        c, pos = j // area, np.unravel_index(j % area, G.spatial)
        at = [q + p_ for q, p_ in zip(pos, G.pad)]  # in the padded input
        win = [a // s for a, s in zip(at, G.stride)]
        inside = np.ones(len(j), bool)
        for a, w_, s, k, n in zip(at, win, G.stride, G.kernel, G.out):
            inside &= (w_ < n) & (a - w_ * s < k)
        xp = padded(x, G.pad, G.pad, -np.inf if kind == "max" else 0)
        offsets = list(np.ndindex(*G.kernel))
        vals = np.empty((len(j), len(offsets)), dtype=np.result_type(x, v))
        for i, k in enumerate(offsets):
            where = tuple(np.minimum(w_ * s + kk, size - 1) for w_, s, kk, size in zip(win, G.stride, k, xp.shape[2:]))
            vals[:, i] = xp[(b, c) + where]
        own = np.ravel_multi_index(tuple(np.minimum(a - w_ * s, k - 1) for a, w_, s, k in zip(at, win, G.stride, G.kernel)), G.kernel)
        vals[np.arange(len(j)), own] = v
        near = None
        if kind == "max":
            new = vals[np.arange(len(j)), np.argmax(np.real(vals), axis=1)]
            if radius is not None:
                near = inside & _tied_apart(np.real(vals), np.imag(vals), np.reshape(radius, (-1, 1)))
        else:
            new = vals.sum(axis=1) / G.kp
        out = c * math.prod(G.out) + np.ravel_multi_index(tuple(np.minimum(w_, n - 1) for w_, n in zip(win, G.out)), G.out)
        out = np.where(inside, out, 0)
        return out, np.where(inside, new, y.reshape(len(y), -1)[b, 0]), near

    return moved_unit


def _torch(kind: str, nd: int):
    def fn(x, p, o):
        import torch.nn.functional as F

        f = getattr(F, f"{kind}_pool{nd}d")
        kernel = axes(kind, o.kernel, nd, "kernel")
        stride = kernel if o.stride is None else axes(kind, o.stride, nd, "stride")
        return f(x, kernel, stride, axes(kind, o.padding, nd, "padding"))

    return fn


def _out_shape(nd: int, name: str):
    def out_shape(in_shape, o):
        return (int(in_shape[0]),) + _Geom(name, nd, tuple(in_shape), o).out

    return out_shape


def _pool(kind: str, nd: int, doc: str, examples) -> LayerOp:
    name = f"{kind}pool{nd}d"
    fwd, bwd = (_max_forward, _max_backward) if kind == "max" else (_avg_forward, _avg_backward)
    return LayerOp(
        name=name,
        doc=doc,
        options=PoolOptions,
        out_shape=_out_shape(nd, name),
        forward=fwd(nd, name),
        backward=bwd(nd, name),
        torch=_torch(kind, nd),
        complex_safe=True,
        kinks=kind == "max",
        near_kink=_max_near_kink(nd, name) if kind == "max" else None,
        moved_unit=_moved_unit(kind, nd, name),
        examples=examples,
    )


# --- global average pool -------------------------------------------------------------------------


def _global_out_shape(in_shape, o):
    if len(in_shape) < 2:
        raise ShapeError(f"global_avgpool needs an input of shape (C, *spatial) with at least one spatial axis, "
                         f"got {tuple(in_shape)}")
    return (int(in_shape[0]),)


def _global_forward(x, p, o):
    _global_out_shape(x.shape[2:], o)
    return x.mean(axis=tuple(range(3, x.ndim)))


def _global_backward(x, y, g, p, o):
    area = math.prod(x.shape[2:])
    share = (g / area).reshape(g.shape + (1,) * (x.ndim - 2))
    return np.ascontiguousarray(np.broadcast_to(share, x.shape), dtype=np.result_type(x, g)), {}


def _global_moved_unit(x, y, b, j, v, o, radius=None):
    """Input unit j of sample b[p] set to v[p] moves its channel's mean alone, by the change over the area."""
    area = math.prod(x.shape[2:])
    c = j // area
    return c, y[b, c] + (v - x.reshape(len(x), -1)[b, j]) / area, None


def _global_torch(x, p, o):
    return x.mean(dim=tuple(range(2, x.ndim)))


_MAX2D = (
    ((2, 7, 7), {"kernel": 3, "stride": 2}),  # overlapping windows
    ((3, 6, 8), {"kernel": 2}),
    ((2, 7, 6), {"kernel": [2, 3], "stride": [1, 2], "padding": [1, 1]}),
    ((1, 5, 5), {"kernel": 3, "stride": 1, "padding": 1}),
    ((2, 6, 7), {"kernel": [3, 2], "stride": 2, "padding": [1, 0]}),
    ((2, 9, 8), {"kernel": 2, "stride": 3, "padding": 1}),  # gaps between windows, padded edges
)
_MAX1D = (
    ((3, 11), {"kernel": 3, "stride": 2}),
    ((2, 9), {"kernel": 4, "stride": 2, "padding": 2}),
    ((2, 8), {"kernel": 2}),
    ((2, 7), {"kernel": [3], "stride": [1], "padding": [1]}),
    ((2, 10), {"kernel": 2, "stride": 3, "padding": 1}),  # gaps between windows, padded edges
)

OPS = (
    _pool("max", 1, "(C, L) -> (C, L'), as torch.nn.functional.max_pool1d", _MAX1D),
    _pool("max", 2, "(C, H, W) -> (C, H', W'), as torch.nn.functional.max_pool2d", _MAX2D),
    _pool("avg", 1, "(C, L) -> (C, L'), as torch.nn.functional.avg_pool1d (padding counted)", _MAX1D),
    _pool("avg", 2, "(C, H, W) -> (C, H', W'), as torch.nn.functional.avg_pool2d (padding counted)", _MAX2D),
    LayerOp(
        name="global_avgpool",
        doc="(C, *spatial) -> (C,): the mean over all spatial axes",
        options=GlobalAvgPoolOptions,
        out_shape=_global_out_shape,
        forward=_global_forward,
        backward=_global_backward,
        torch=_global_torch,
        moved_unit=_global_moved_unit,
        examples=(((3, 5, 4), {}), ((4, 7), {}), ((2, 3, 4, 2), {}), ((5, 1, 1), {})),
    ),
)
