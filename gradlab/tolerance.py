"""The error model: how far a correct backprop in a given dtype may drift from the exact gradient.

For every parameter element this returns a first-order bound E_i on the rounding error of a
correct backward pass carried out in the network's dtype (unit roundoff u = eps/2 ... we use
eps): forward errors are propagated through each layer, backward errors through each VJP,
and every dot product of length n contributes gamma_n = n * eps times the sum of the absolute
values of its terms (Higham, Accuracy and Stability of Numerical Algorithms, ch. 3):

  dense forward    E_u  = E_x |W| + gamma_n (|x| |W| + |b|)
  activation fwd   E_a  = |f'(u)| E_u + eps |a|
  loss gradient    E_g  = |g(y + E_y) - g(y)| + eps (|g| + |y| + |t|)
  activation VJP   E_gu = |f'(u)| E_ga + |VJP(u +- E_u, a +- E_a, g_a) - VJP(u, a, g_a)| + 4 eps max|f'| |g_a| + eps |g_u|
  dense VJP        E_gW = |x|^T E_gu + E_x^T |g_u| + gamma_B |x|^T |g_u|,  E_gx = E_gu |W|^T + gamma_m |g_u| |W|^T

A comparison then fails element i when |c_i - r_i| > K (E_i(c) + E_i(r) + err_i) + atol + rtol |r_i|
with err_i the numeric engine's own error estimate, K = SAFETY and rtol = atol = 0 unless
the spec overrides them. The model is evaluated at the same float64 point the engines use;
it reads only forward values and the ops' derivative magnitudes, never another engine's answer.
"""

from __future__ import annotations

import numpy as np

from .gradients import INPUT
from .network import ActivationLayer, DenseLayer, Network
from .ops import dense as dense_op

SAFETY = 4.0  # how many times the modelled error a discrepancy may reach


def _abs_vjp(layer: ActivationLayer, z, a, e, hp):
    """|J|^T e for an activation: exact for elementwise ops, softmax-shaped bound otherwise."""
    if layer.op.elementwise:
        g, _ = layer.op.backward(z, a, e, hp)
        return np.abs(g)
    g, _ = layer.op.backward(z, a, e, hp)
    return np.abs(g) + 2 * np.abs(a) * np.max(e, axis=-1, keepdims=True)


def _fprime(op, z, hp):
    """f'(u) elementwise from the forward alone (complex step, or a central difference)."""
    z = np.asarray(np.real(z), float)
    if op.complex_safe:
        step = 1e-30 * np.maximum(np.abs(z), 1.0)
        return np.real(np.imag(op.forward(z + 1j * step, hp)) / step)
    step = 1e-6 * np.maximum(np.abs(z), 1.0)
    return (np.real(op.forward(z + step, hp)) - np.real(op.forward(z - step, hp))) / (2 * step)


def _hyper_rounding(layer: ActivationLayer, z, hp, name: str, eps: float) -> np.ndarray:
    """Rounding of d f / d theta per element, from the rounding of the op's own value f(u).

    A saturating op computes its derivatives from an internal value (scaled_sigmoid: s = sigma(beta u))
    that is only known to eps |f|: as if u were off by eps |f| / |f'|. That moves d f / d theta by
    |d^2 f / d theta du| eps |f| / |f'| = eps |f| |d log|f'| / d theta|. For beta, |u| eps |f| at
    saturation, where c u s (1 - s) keeps only a few digits of 1 - s (float32: none from beta u ~ 17).
    """
    theta = float(np.real(hp[name]))
    delta = 1e-5 * max(abs(theta), 1e-3)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        logs = [np.log(np.abs(_fprime(layer.op, z, {**hp, name: theta + s * delta}))) for s in (1.0, -1.0)]
        dlog = np.nan_to_num(np.abs(logs[0] - logs[1]) / (2 * delta), nan=0.0, posinf=0.0)
        f = np.abs(np.real(layer.op.forward(np.asarray(np.real(z), float), hp)))
    return eps * f * dlog


def rounding_bounds(net: Network, dtype=None, *, wrt_input: bool = False) -> dict[str, np.ndarray]:
    """Per-element bound on the rounding error of a correct backward pass in `dtype` (default: the network's)."""
    if not net.flat:
        return composite_bounds(net, dtype, wrt_input=wrt_input)
    eps = float(np.finfo(np.dtype(dtype or net.dtype)).eps)
    tiny = float(np.finfo(np.dtype(dtype or net.dtype)).tiny)
    params, x, t = net.cast(np.float64)
    hs, errs = [x], [np.zeros_like(x)]
    for layer in net.layers:
        h, e = hs[-1], errs[-1]
        if isinstance(layer, DenseLayer):
            w = np.abs(dense_op.as_in_out(params[layer.weight], layer.layout))
            xa, ea = dense_op.augment(np.abs(h), layer.bias), dense_op.augment(e, layer.bias)
            ea[..., -1:] = 0 if layer.bias == "folded" else ea[..., -1:]
            b = np.abs(params[layer.bias_name]) if layer.bias_name else 0.0
            out = layer.forward(params, h)
            err = ea @ w + eps * xa.shape[-1] * (xa @ w + b)
        elif isinstance(layer, ActivationLayer):
            hp = layer.hyper(params)
            out = layer.forward(params, h)
            # Values below the smallest normal number are flushed: torch's float32 sigmoid is 0 below
            # u = -88, so silu(-90) = u * sigmoid(u) comes out 0 instead of -7e-38.
            err = _abs_vjp(layer, h, out, e, hp) + eps * np.abs(out) + 4 * tiny * (1 + np.abs(h))
        else:  # a user's layer: no structure to exploit; bound its output error by eps times its size
            out = layer.forward(params, h)
            err = 8 * eps * (np.abs(out) + np.max(np.abs(out)))
        hs.append(out)
        errs.append(err)
    y, ey = hs[-1], errs[-1]
    scale = net.loss_scale
    g = net.loss_op.backward(y, t) * scale
    eg = np.maximum(np.abs(net.loss_op.backward(y + ey, t) * scale - g), np.abs(net.loss_op.backward(y - ey, t) * scale - g))
    eg = np.nan_to_num(eg, nan=0.0, posinf=0.0) + eps * (np.abs(g) + (np.abs(y) + np.abs(t)) * scale)
    bounds: dict[str, np.ndarray] = {}
    for i in range(len(net.layers) - 1, -1, -1):
        layer, h, e_h = net.layers[i], hs[i], errs[i]
        if isinstance(layer, DenseLayer):
            w_signed = dense_op.as_in_out(params[layer.weight], layer.layout)
            w = np.abs(w_signed)
            xa, ea = dense_op.augment(np.abs(h), layer.bias), dense_op.augment(e_h, layer.bias)
            n = xa.shape[0]
            e_w = xa.T @ eg + ea.T @ np.abs(g) + eps * n * (xa.T @ np.abs(g))
            bounds[layer.weight] = e_w.T if layer.layout == "out_in" else e_w
            if layer.bias_name:
                bounds[layer.bias_name] = eg.sum(0) + eps * n * np.abs(g).sum(0)
            g_next = g @ w_signed.T
            eg = eg @ w.T + eps * w.shape[1] * (np.abs(g) @ w.T)
            if layer.bias == "folded":
                g_next, eg = g_next[..., :-1], eg[..., :-1]
            g = g_next
        elif isinstance(layer, ActivationLayer):
            hp = layer.hyper(params)
            a = hs[i + 1]
            g_z, hyper_g = layer.op.backward(h, a, g, hp)
            # The VJP reads u and f(u) (sigmoid's s(1 - s) reads only f(u)): both carry forward error.
            e_a = errs[i + 1]
            sensitivity = np.zeros_like(g_z, dtype=float)
            for su, sa in ((1, 1), (1, -1), (-1, 1), (-1, -1)):
                gs, _ = layer.op.backward(h + su * e_h, a + sa * e_a, g, hp)
                sensitivity = np.maximum(sensitivity, np.nan_to_num(np.abs(gs - g_z), nan=0.0, posinf=0.0))
            # f' itself is computed in dtype: where f(u) rounds to its asymptote (s -> 1.0 in float32),
            # s(1 - s) loses everything. Its absolute error stays below ~4 eps max|f'|.
            # That error multiplies the incoming gradient *and* its error: a computed f' of 0 does not
            # stop the error carried in from the loss side (a chain of saturated layers).
            fmax = layer.op.max_fprime(hp)
            g_all = np.abs(g) + eg
            if fmax is None or not layer.op.elementwise:
                own = 4 * eps * np.abs(a) * (g_all + np.max(g_all, axis=-1, keepdims=True))
            else:
                own = 4 * eps * abs(float(np.real(fmax))) * g_all
            e_z = _abs_vjp(layer, h, a, eg, hp) + sensitivity + own + eps * np.abs(g_z)
            for name in layer.trainable:
                # sum_i g_i df/dtheta(u_i): the error carried in by g (not only its rounding), the sum's own
                # rounding, and the rounding of each df/dtheta. The magnitudes are evaluated at |u|.
                a_abs = layer.op.forward(np.abs(h), hp)
                carried = np.abs(layer.op.backward(np.abs(h), a_abs, eg, hp)[1][name])
                summed = np.abs(layer.op.backward(np.abs(h), a_abs, np.abs(g), hp)[1][name])
                internal = np.sum(g_all * _hyper_rounding(layer, h, hp, name, eps))
                bounds[layer.param_name(name)] = np.asarray(carried + eps * h.size * summed + np.abs(hyper_g[name]) * 8 * eps + 4 * internal)
            g, eg = g_z, e_z
        else:
            bounds.update({n: 8 * eps * np.abs(params[n]).size * np.ones(params[n].shape) for n in layer.param_names})
            g, eg = None, None
            break
    if wrt_input and g is not None:
        bounds[INPUT] = eg
    # Gradients below the dtype's smallest normal number underflow (float32: 1e-86 becomes 0).
    floor = 64 * tiny
    return {k: np.nan_to_num(np.asarray(v, float), nan=0.0, posinf=0.0) + floor for k, v in bounds.items()}


def _abs_terms(layer, params, x, y, g, out: dict) -> None:
    """The size of the sums behind each parameter's gradient: the layer's VJP applied to magnitudes.

    For a layer linear in its weights (dense, conv, projections) this is exactly sum |x| |g| (and sum |g|
    for a bias), the quantity a dot product's rounding is proportional to; for the others it is a
    magnitude of the same order. Residual blocks recurse into their members.
    """
    from .network import ResidualLayer

    if isinstance(layer, ResidualLayer):
        hs = [x]
        for member in layer.layers:
            hs.append(member.forward(params, hs[-1]))
        grad = g
        for i in range(len(layer.layers) - 1, -1, -1):
            _abs_terms(layer.layers[i], params, hs[i], hs[i + 1], grad, out)
            grad, _ = layer.layers[i].backward(params, hs[i], hs[i + 1], grad)
        if layer.projection is not None:
            _abs_terms(layer.projection, params, x, layer.projection.forward(params, x), g, out)
        return
    if not layer.param_names:
        return
    magnitudes = {**params, **{n: np.abs(params[n]) for n in layer.param_names}}
    with np.errstate(all="ignore"):
        try:
            _, grads = layer.backward(magnitudes, np.abs(x), np.abs(y), np.abs(g))
        except Exception:  # a user's layer may refuse such input: fall back to the gradient's own size
            grads = {}
    for n in layer.param_names:
        out[n] = np.abs(np.asarray(grads.get(n, 0.0), float)) * np.ones(params[n].shape)


def composite_bounds(net: Network, dtype=None, *, wrt_input: bool = False) -> dict[str, np.ndarray]:
    """The error model of networks with conv, pooling, normalisation, attention or residual layers.

    No per-op propagation formulas: the hand-written backward is run at the same point in float64 and
    in `dtype`, and its drift is the measured rounding of a backward in that dtype; another correct
    implementation (torch's) rounds differently but to the same extent, so each element's bound is its
    own drift plus the tensor's RMS drift, plus the rounding of the sums behind each gradient
    (eps times the VJP of magnitudes, see `_abs_terms`). The drift says nothing about a wrong formula:
    a bug computes the same wrong value in both dtypes.
    """
    from .engines.analytic import backprop

    dt = np.dtype(dtype or net.dtype)
    eps, tiny = float(np.finfo(dt).eps), float(np.finfo(dt).tiny)
    params64, x64, _ = net.cast(np.float64)
    with np.errstate(all="ignore"):
        exact = backprop(net, params64, x64)
        if dt == np.float64:
            low = exact
        else:
            low = backprop(net, {k: v.astype(dt) for k, v in params64.items()}, x64.astype(dt))
        sums: dict[str, np.ndarray] = {}
        for i, layer in enumerate(net.layers):
            _abs_terms(layer, params64, exact.inputs[i], exact.inputs[i + 1], exact.grad_outputs[i], sums)
    names = list(net.params) + ([INPUT] if wrt_input else [])

    def rms(a):
        a = np.asarray(a, float)
        return float(np.sqrt(np.mean(a**2))) if a.size else 0.0

    # A gradient that is exactly 0 by an invariance (the key bias of attention: softmax ignores a shift
    # shared by every key; a bias before batchnorm) comes out as rounding noise of the size of its
    # layer's other gradients: the layer's largest RMS gradient is every tensor's floor.
    floor: dict[str, float] = {}
    for layer in net.all_layers():
        own = [n for n in getattr(layer, "param_names", ()) if n in exact.grads and not hasattr(layer, "members")]
        level = max((rms(exact.grads[n]) + rms(sums.get(n, 0.0)) for n in own), default=0.0)
        floor.update({n: level for n in own})
    bounds = {}
    for n in names:
        g = np.asarray(exact.grad_input if n == INPUT else exact.grads[n], float)
        gl = np.asarray(low.grad_input if n == INPUT else low.grads[n], float)
        drift = np.abs(gl - g)
        spread = rms(drift)
        own = sums.get(n, np.abs(g) + (float(np.sqrt(np.mean(g**2))) if g.size else 0.0))
        bounds[n] = drift + spread + 16 * eps * (np.abs(g) + own + floor.get(n, 0.0))
    return {k: np.nan_to_num(np.asarray(v, float), nan=0.0, posinf=0.0) + 64 * tiny for k, v in bounds.items()}
