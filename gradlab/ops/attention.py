"""Multi-head self-attention on a (T, D) sequence: forward, hand-written backward and torch mirror.

    Q = x Wq^T + bq,  K = x Wk^T + bk,  V = x Wv^T + bv          (torch Linear layout: W is (out, in))
    per head h (features h*D/H .. (h+1)*D/H):  S_h = Q_h K_h^T / sqrt(D/H),  A_h = softmax(S_h),  O_h = A_h V_h
    y = concat_h(O_h) Wo^T + bo

`causal: true` hides the keys after each query (j > i) before the softmax. The softmax shifts by the max
of the real part over the visible keys and masks with np.where, so the forward stays complex-analytic in
x and in the weights (the complex step works). The output is not affine in any parameter (S is bilinear
in Wq and Wk, and A depends on both), so `linear_in` is empty.

The key bias has no effect: it adds q_i . bk / sqrt(D/H) to every score of row i, the same for every key,
and the softmax is invariant to that shift (with or without the causal mask). Its gradient is exactly 0.
`k.bias` stays a parameter (torch.nn.MultiheadAttention has it in in_proj_bias: weights map one to one), but forward,
backward and torch mirror all leave it out: computing it would only give every engine rounding noise
(~1e-19) to compare against a true zero, which the error model cannot size (the softmax VJP cancels even
on magnitudes) and reports as a mismatch. Left out, all three engines agree on an exact 0 (zero-gradient).
"""

from __future__ import annotations

import math

import numpy as np

from ._registry import InnerSite, LayerOp, ParamInfo, ShapeError
from .options import Flag, Options, Size
from .products import matmul

PROJECTIONS = ("q", "k", "v", "o")
UNUSED = "k.bias"  # see the module docstring: the softmax cancels it exactly


class AttentionOptions(Options):
    heads: Size = 1
    causal: Flag = False
    bias: Flag = True


def _dims(in_shape, o) -> tuple[int, int, int]:
    """(T, D, D/H), or a ShapeError naming what attention needs."""
    if len(in_shape) != 2:
        raise ShapeError(f"attention needs a (T, D) input per sample (sequence length, features); got per-sample shape {tuple(in_shape)}")
    t, d = in_shape
    if d % o.heads:
        raise ShapeError(f"attention needs the feature size D to be divisible by heads: D = {d} is not divisible by heads = {o.heads}")
    return int(t), int(d), int(d // o.heads)


def _out_shape(in_shape, o) -> tuple[int, int]:
    t, d, _ = _dims(in_shape, o)
    return (t, d)


def _params(in_shape, o) -> dict[str, ParamInfo]:
    _, d, _ = _dims(in_shape, o)
    out = {}
    for k in PROJECTIONS:
        out[f"{k}.weight"] = ParamInfo((d, d), "weight", d, d)
        if o.bias:
            out[f"{k}.bias"] = ParamInfo((d,), "bias", d, d)
    return out


def _visible(t: int) -> np.ndarray:
    """(T, T) bool: key j is visible from query i when j <= i."""
    return np.tril(np.ones((t, t), dtype=bool))


# --- forward on stacked input --------------------------------------------------------------------


def _linear(x, w, b):
    """x (N, B, T, D_in) @ W^T + b with W (1 or N, D_out, D_in) and b (1 or N, D_out) or None."""
    lead = x.shape[:-1]
    shared_x = x.shape[0] > 1 and x.strides[0] == 0  # the same input broadcast over the stack
    if w.shape[0] == 1 and shared_x:  # the same product for every stacked evaluation: compute it once
        y = np.ascontiguousarray(np.broadcast_to(_linear(x[:1], w, None), lead + (w.shape[-2],)))
    elif w.shape[0] == 1:  # one weight for every stacked evaluation: a single GEMM
        y = matmul(x.reshape(-1, x.shape[-1]), w[0].T).reshape(lead + (w.shape[-2],))
    elif shared_x:  # one input, stacked weights: one GEMM against every weight side by side
        n, d_out = w.shape[0], w.shape[-2]
        y = matmul(x[0].reshape(-1, x.shape[-1]), w.reshape(n * d_out, -1).T)  # (B T, N D_out)
        y = np.moveaxis(y.reshape(-1, n, d_out), 1, 0).reshape((n,) + lead[1:] + (d_out,))
    else:
        y = matmul(x.reshape(x.shape[0], -1, x.shape[-1]), np.swapaxes(w, -1, -2))
        y = y.reshape(y.shape[:1] + lead[1:] + (w.shape[-2],))
    if b is not None:
        y = y + b[:, None, None, :]
    return y


def _split(z, heads):
    """(..., T, D) -> (..., H, T, D/H)."""
    return np.swapaxes(z.reshape(z.shape[:-1] + (heads, z.shape[-1] // heads)), -2, -3)


def _merge(z):
    """(..., H, T, D/H) -> (..., T, D)."""
    z = np.swapaxes(z, -2, -3)
    return z.reshape(z.shape[:-2] + (-1,))


def _softmax_keys(s, causal: bool):
    """Softmax over the last axis (keys), hidden keys (j > i) at exactly 0 when causal; complex-safe."""
    if causal:
        # hidden scores become -inf (+0j): exp gives exactly 0 there, without a warning, real or complex
        s = np.where(_visible(s.shape[-1]), s, -np.inf)
    e = np.exp(s - np.max(np.real(s), axis=-1, keepdims=True))  # the diagonal is always visible: a finite shift
    return e / np.sum(e, axis=-1, keepdims=True)


def _attend(q, k, v, o):
    """(..., T, D) projections -> attention weights (..., H, T, T) and head outputs (..., H, T, D/H)."""
    qh, kh, vh = (_split(z, o.heads) for z in (q, k, v))
    scale = 1.0 / math.sqrt(q.shape[-1] // o.heads)
    a = _softmax_keys(matmul(qh, np.swapaxes(kh, -1, -2)) * scale, o.causal)
    return (qh, kh, vh), a, matmul(a, vh)


def _forward(x, p, o):
    if x.ndim != 4:
        raise ShapeError(f"attention forward needs stacked input (N, B, T, D); got shape {x.shape}")
    proj = {k: _linear(x, p[f"{k}.weight"], p.get(f"{k}.bias") if k != "k" else None) for k in "qkv"}
    _, _, heads_out = _attend(proj["q"], proj["k"], proj["v"], o)
    return _linear(_merge(heads_out), p["o.weight"], p.get("o.bias"))


# --- hand-written backward (plain arrays) --------------------------------------------------------


def _backward(x, y, g, p, o):
    dtype = x.dtype
    bias = {k: p.get(f"{k}.bias") if k != "k" else None for k in PROJECTIONS}
    w = {k: p[f"{k}.weight"] for k in PROJECTIONS}
    q, k, v = (x @ w[n].T + (bias[n] if bias[n] is not None else 0) for n in "qkv")
    (qh, kh, vh), a, heads_out = _attend(q, k, v, o)
    concat = _merge(heads_out)  # (B, T, D)
    grads = {}

    # y = concat Wo^T + bo
    grads["o.weight"] = np.einsum("btd,bte->de", g, concat)
    if bias["o"] is not None:
        grads["o.bias"] = g.sum(axis=(0, 1))
    d_heads = _split(g @ w["o"], o.heads)  # dL/dO_h, (B, H, T, D/H)

    # O_h = A_h V_h
    da = np.matmul(d_heads, np.swapaxes(vh, -1, -2))  # (B, H, T, T)
    dvh = np.matmul(np.swapaxes(a, -1, -2), d_heads)
    # A = softmax(S) row by row: dS = A (dA - sum_j dA A); hidden keys have A = 0, so dS = 0 there
    ds = a * (da - np.sum(da * a, axis=-1, keepdims=True))
    # S_h = Q_h K_h^T / sqrt(D/H)
    scale = 1.0 / math.sqrt(x.shape[-1] // o.heads)
    dqh = np.matmul(ds, kh) * scale
    dkh = np.matmul(np.swapaxes(ds, -1, -2), qh) * scale

    dx = 0
    for n, dz in (("q", _merge(dqh)), ("k", _merge(dkh)), ("v", _merge(dvh))):
        grads[f"{n}.weight"] = np.einsum("btd,bte->de", dz, x)
        if bias[n] is not None:
            grads[f"{n}.bias"] = dz.sum(axis=(0, 1))
        dx = dx + dz @ w[n]
    if UNUSED in p:
        grads[UNUSED] = np.zeros(p[UNUSED].shape, dtype)
    order = [name for n in PROJECTIONS for name in (f"{n}.weight", f"{n}.bias") if name in grads]
    return np.asarray(dx).astype(dtype, copy=False), {name: grads[name].astype(dtype, copy=False) for name in order}


# --- rounding the error model cannot see by perturbing the inputs --------------------------------


def _rounding(x, g, p, o, eps):
    """Bounds on the rounding of a correct backward in a dtype of unit roundoff `eps`: (output, dL/dx, {param}).

    The softmax VJP dS = A (dA - sum_j A dA) cancels: where the scores barely depend on the key (small or
    nearly equal scores, nearly equal value rows) dA's entries agree to many digits and dS is their tiny
    difference, but every implementation rounds dA = dO V^T (dot products of length D/H) and the sum at the
    scale of |dO| |V|, not of dS (torch's float32 autograd: 2e-18 on a q gradient of 1e-20 whose terms are
    1e-11). Relative perturbations of x, the weights and g move those entries together and cannot see it.
    The probabilities A carry the rounding of the scores (dot products at the scale of |Q| |K|) too. The
    bound on dS is carried to the q and k projections, their weights and biases, and to dL/dx.
    """
    w = {k: p[f"{k}.weight"] for k in PROJECTIONS}
    bias = {k: p.get(f"{k}.bias") if k != "k" else None for k in PROJECTIONS}
    q, k, v = (x @ w[n].T + (bias[n] if bias[n] is not None else 0) for n in "qkv")
    (qh, kh, vh), a, _ = _attend(q, k, v, o)
    dh = x.shape[-1] // o.heads
    scale = 1.0 / math.sqrt(dh)
    t = x.shape[-2]
    d_heads = _split(np.abs(g) @ np.abs(w["o"]), o.heads)  # |dO|, bounded by |g| |Wo|
    da_size = np.matmul(d_heads, np.swapaxes(np.abs(vh), -1, -2))  # the scale dA = dO V^T rounds at, (B, H, T, T)
    s_size = np.matmul(np.abs(qh), np.swapaxes(np.abs(kh), -1, -2)) * scale  # and S = Q K^T / sqrt(D/H)
    e_a = a * (2 * (dh + 2) * eps * np.max(s_size, axis=-1, keepdims=True) + 4 * eps)  # softmax of rounded scores
    ds_size = a * (da_size + np.sum(a * da_size, axis=-1, keepdims=True))
    e_ds = (dh + t + 4) * eps * ds_size + a * np.sum(e_a * da_size, axis=-1, keepdims=True) + e_a * da_size
    e_dq = _merge(np.matmul(e_ds, np.abs(kh)) * scale)
    e_dk = _merge(np.matmul(np.swapaxes(e_ds, -1, -2), np.abs(qh)) * scale)
    ax = np.abs(x)
    grads = {}
    for n, e in (("q", e_dq), ("k", e_dk)):
        grads[f"{n}.weight"] = np.einsum("btd,bte->de", e, ax)
        if bias[n] is not None:
            grads[f"{n}.bias"] = e.sum(axis=(0, 1))
    e_dx = e_dq @ np.abs(w["q"]) + e_dk @ np.abs(w["k"])
    return np.zeros(np.shape(x)), e_dx, grads


# --- inner sites for the numeric engine (forward only) -------------------------------------------


def _inner_sites(x, p, o, g, e):
    """q, k, v and the output projection as sites (see InnerSite): each is affine in its projection's weight and
    bias, so the numeric engine differences the loss with respect to the site's units and reaches the 4 D^2
    weights by linearity, instead of differencing each weight through the whole layer.

    x (B, T, D) float64, g = dL/dy (B, T, D) and its error bound e. A unit of one head moves that head's output
    alone, and every head output meets g through the output projection, which is linear: gc = g Wo (the
    cotangent of the concatenated heads, Wo applied to the unit vectors of y's features) is contracted with
    the moved head output. Moving q[t] moves row t of the scores (one row of one head); moving k[t] moves
    column t (every row of one head, re-normalised); moving v[t] moves row t of V (one column of the head's
    output). Each contraction is evaluated from the moved forward values -- never from a derivative formula.
    """
    B, T, D = x.shape
    H = o.heads
    dh = D // H
    bias = {n: p.get(f"{n}.bias") if n != "k" else None for n in "qkv"}
    proj = {n: x @ p[f"{n}.weight"].T + (bias[n] if bias[n] is not None else 0) for n in "qkv"}
    (qh, kh, vh), a, heads_out = _attend(proj["q"], proj["k"], proj["v"], o)
    scale = 1.0 / math.sqrt(dh)
    s_base = np.matmul(qh, np.swapaxes(kh, -1, -2)) * scale  # (B, H, T, T)
    wo = p["o.weight"]
    gh = _split(g @ wo, H)  # (B, H, T, dh): the cotangent of each head's output
    eh = _split(np.abs(e) @ np.abs(wo), H)
    hidden = ~_visible(T) if o.causal else None

    def where(j):
        t, c = np.divmod(j, D)
        h, ci = np.divmod(c, dh)
        return t, h, ci

    def q_contract(b, j, off):
        t, h, ci = where(j)
        P = len(b)
        row = qh[b, h, t].astype(np.result_type(qh, off))  # (P, dh)
        row[np.arange(P), ci] += off
        s = np.einsum("pd,ptd->pt", row, kh[b, h]) * scale  # (P, T): row t of the scores
        if hidden is not None:
            s = np.where(hidden[t], -np.inf, s)
        w = np.exp(s - np.max(np.real(s), axis=-1, keepdims=True))
        w = w / np.sum(w, axis=-1, keepdims=True)
        out = np.einsum("pt,ptd->pd", w, vh[b, h])  # (P, dh): row t of the head's output
        moved = np.imag(out) - np.imag(heads_out[b, h, t])
        return np.sum(gh[b, h, t] * out, axis=-1), np.sum(eh[b, h, t] * np.abs(moved), axis=-1)

    def k_contract(b, j, off):
        t, h, ci = where(j)
        P = len(b)
        krow = kh[b, h, t].astype(np.result_type(kh, off))
        krow[np.arange(P), ci] += off
        col = np.einsum("ptd,pd->pt", qh[b, h], krow) * scale  # (P, T): column t of the scores
        s = s_base[b, h].astype(col.dtype)  # (P, T, T)
        s[np.arange(P), :, t] = col
        if hidden is not None:
            s = np.where(hidden, -np.inf, s)
        w = np.exp(s - np.max(np.real(s), axis=-1, keepdims=True))
        w = w / np.sum(w, axis=-1, keepdims=True)
        out = np.matmul(w, vh[b, h])  # (P, T, dh)
        moved = np.imag(out) - np.imag(heads_out[b, h])
        return np.sum(gh[b, h] * out, axis=(1, 2)), np.sum(eh[b, h] * np.abs(moved), axis=(1, 2))

    def v_contract(b, j, off):
        t, h, ci = where(j)
        P = len(b)
        vcol = vh[b, h, :, ci].astype(np.result_type(vh, off))  # (P, T): column ci of V
        vcol[np.arange(P), t] += off
        out = np.einsum("pst,pt->ps", a[b, h], vcol)  # (P, T): column ci of the head's output
        moved = np.imag(out) - np.imag(heads_out[b, h, :, ci])
        g_col, e_col = gh[b, h, :, ci], eh[b, h, :, ci]
        return np.sum(g_col * out, axis=-1), np.sum(e_col * np.abs(moved), axis=-1)

    return [
        InnerSite("q", x, "q.weight", "q.bias" if bias["q"] is not None else None, q_contract),
        InnerSite("k", x, "k.weight", None, k_contract),  # k.bias does not enter the forward (see UNUSED)
        InnerSite("v", x, "v.weight", "v.bias" if bias["v"] is not None else None, v_contract),
        InnerSite("o", _merge(heads_out), "o.weight", "o.bias" if p.get("o.bias") is not None else None, None),
    ]


# --- torch mirror ---------------------------------------------------------------------------------


def _torch(x, p, o):
    import torch
    import torch.nn.functional as F

    b, t, d = x.shape
    h, dh = o.heads, d // o.heads

    def heads(z):
        return z.reshape(b, t, h, dh).transpose(1, 2)

    q, k, v = (heads(F.linear(x, p[f"{n}.weight"], p.get(f"{n}.bias") if n != "k" else None)) for n in "qkv")
    s = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(dh)
    if o.causal:
        hidden = torch.ones(t, t, dtype=torch.bool, device=x.device).triu(1)
        s = s.masked_fill(hidden, float("-inf"))
    out = torch.matmul(torch.softmax(s, dim=-1), v)
    return F.linear(out.transpose(1, 2).reshape(b, t, d), p["o.weight"], p.get("o.bias"))


OPS = (
    LayerOp(
        name="attention",
        doc="multi-head self-attention on (T, D): q/k/v/o projections (torch Linear layout), "
            "softmax(Q K^T / sqrt(D/H)) V per head, optional causal mask",
        options=AttentionOptions,
        out_shape=_out_shape,
        forward=_forward,
        backward=_backward,
        torch=_torch,
        params=_params,
        complex_safe=True,
        rounding=_rounding,
        linear_in=(),
        inner_sites=_inner_sites,
        workspace=lambda s, o: 3 * o.heads * s[0] * s[0] + 6 * s[0] * s[1],  # scores, exp, weights; q, k, v and heads
        examples=(
            ((4, 6), {"heads": 2}),
            ((5, 4), {"heads": 1, "causal": True}),
            ((3, 8), {"heads": 4, "causal": True, "bias": False}),
            ((1, 4), {"heads": 2}),
            ((4, 6), {"heads": 3, "causal": True}),
        ),
    ),
)
