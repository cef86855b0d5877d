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


def _rounds_at(layer: ActivationLayer, z, hp):
    """The scale an activation's value rounds at besides |f| (declared by the op: gelu's u (1 + erf) / 2 at |u|)."""
    rounds_at = getattr(layer.op, "rounds_at", None)
    return np.abs(rounds_at(np.real(z), hp)) if rounds_at is not None else 0.0


def _fprime_rounding(layer: ActivationLayer, hp, a, g_all, eps: float) -> np.ndarray:
    """The rounding of an activation's f' times the gradient it multiplies (its size |g| + its error).

    f' is computed in the dtype from values that round to an asymptote: sigmoid's s (1 - s) at s -> 1.0,
    gelu's Phi(u) as 0.5 (1 + erf(u / sqrt 2)) with erf -> -1 (torch's backward: 1% of gelu'(-10.3), whose
    terms are 1e-23). Its absolute error stays below ~4 eps max|f'|, whatever f' itself is: no relative
    perturbation of u shows it. Ops without a bounded f' (or not elementwise): 4 eps |a| at the row's scale."""
    fmax = layer.op.max_fprime(hp)
    if fmax is None or not layer.op.elementwise:
        return 4 * eps * np.abs(a) * (g_all + np.max(g_all, axis=-1, keepdims=True))
    return 4 * eps * abs(float(np.real(fmax))) * g_all


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
            err = _abs_vjp(layer, h, out, e, hp) + eps * (np.abs(out) + _rounds_at(layer, h, hp)) + 4 * tiny * (1 + np.abs(h))
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
            e_w = xa.T @ eg + ea.T @ (np.abs(g) + eg) + eps * n * (xa.T @ np.abs(g))  # ea^T eg: all there is where x = g = 0
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
            g_all = np.abs(g) + eg
            own = _fprime_rounding(layer, hp, a, g_all, eps)
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


PROBE = 1e-7  # relative size of the perturbations that measure a backward's sensitivity to rounding
PROBES = 2  # random perturbations per layer; the largest response is kept


def _jiggled(a, rng):
    """`a` with every element moved by a random relative PROBE: how rounding moves what an op reads."""
    return a * (1 + PROBE * rng.uniform(-1.0, 1.0, np.shape(a)))


def _pushed(a, err, rng):
    """`a` moved by its error bound `err` with random signs: how an error already carried moves it."""
    return a + err * rng.choice((-1.0, 1.0), np.shape(a))


SMALL = 64  # up to this many elements, an error already carried is pushed element by element (see `_one_by_one`)


def _one_by_one(respond, err: np.ndarray):
    """sum_j |respond(e_j)| over the unit pushes e_j = err[j] at element j alone: |J| err for a map with
    Jacobian J, with no cancellation between elements. Random signs can cancel where few elements meet
    (a bias summing two samples' gradients, g_1 + g_2: with signs (+, -) and equal errors the push measures
    0, one draw in two, for each of its elements); the errors of two engines need not cancel alike.
    `respond(d)` returns an array or a dict of arrays (the response to the push d); None when nothing was
    pushed. Larger tensors are pushed sample by sample (`_sample_by_sample`)."""
    flat = np.asarray(err, float).reshape(-1)
    total = None
    for j in np.flatnonzero(flat):
        d = np.zeros(flat.size)
        d[j] = flat[j]
        r = respond(d.reshape(np.shape(err)))
        if isinstance(r, dict):
            total = {k: _finite(np.abs(v)) + (total[k] if total else 0.0) for k, v in r.items()}
        else:
            total = _finite(np.abs(r)) + (total if total is not None else 0.0)
    return total


def _sample_by_sample(respond, err: np.ndarray, rng, alone=None):
    """sum_b |respond(err in sample b alone)|, each sample pushed with every sign + (exact for maps with J >= 0:
    sums, pooling, flatten, dropout) and with random signs, the larger response kept: no cancellation between
    samples (a parameter's gradient sums them; a bias under a batchnorm over two samples is g_1 + g_2), at the
    cost of 2 B calls. `alone(b, d_b)`, where given, is the same response computed on sample b alone (a layer
    whose samples never meet): B times less work than pushing a batch that is zero but for one sample."""
    total = None
    for b in range(np.shape(err)[0]):
        best = None
        for signs in (1.0, rng.choice((-1.0, 1.0), np.shape(err)[1:])):
            if alone is not None:
                r = alone(b, (err[b] * signs)[None])
            else:
                d = np.zeros(np.shape(err))
                d[b] = err[b] * signs
                r = respond(d)
            r = {k: _finite(np.abs(v)) for k, v in r.items()} if isinstance(r, dict) else _finite(np.abs(r))
            if best is None:
                best = r
            elif isinstance(r, dict):
                best = {k: np.fmax(best[k], v) for k, v in r.items()}
            else:
                best = np.fmax(best, r)
        if isinstance(best, dict):
            total = {k: v + (total[k] if total else 0.0) for k, v in best.items()}
        else:
            total = best + (total if total is not None else 0.0)
    return total


def _forward_errors(layers, params, xs, rng, eps: float) -> list:
    """Bounds on the rounding each layer's output carries in the dtype: its own (the response to relative
    perturbations of what it reads, as in `_sensitivity`) plus its input's error carried through it. A
    normalisation of a constant channel divides rounding residues by sqrt(eps_bn): that shows up here."""
    errs = [np.zeros(np.shape(xs[0]))]
    names_of = [layer.param_names for layer in layers]
    for i, layer in enumerate(layers):
        x, y, e_x = xs[i], xs[i + 1], errs[-1]
        own, car = np.zeros(np.shape(y)), np.zeros(np.shape(y))
        with np.errstate(all="ignore"):
            for _ in range(PROBES):
                p = {**params, **{n: _jiggled(params[n], rng) for n in names_of[i]}}
                own = np.fmax(own, np.abs(layer.forward(p, _jiggled(x, rng)) - y))
                if np.any(e_x):
                    car = np.fmax(car, np.abs(layer.forward(params, _pushed(x, e_x, rng)) - y))
            if np.any(e_x):
                car = np.fmax(car, np.abs(layer.forward(params, x + e_x) - y))  # every sign +: exact for J >= 0 (sums, pooling)
                if np.size(x) <= SMALL:
                    car = np.fmax(car, _one_by_one(lambda d: layer.forward(params, x + d) - y, e_x))
                elif getattr(layer, "mixes_batch", False):  # batch statistics: the samples' errors meet in them
                    car = np.fmax(car, _sample_by_sample(lambda d: layer.forward(params, x + d) - y, e_x, rng))
        hint = _op_rounding(layer, params, x, np.zeros_like(y), eps)
        extra = hint[0] if hint else 0.0
        if isinstance(layer, ActivationLayer):
            extra = extra + eps * _rounds_at(layer, x, layer.hyper(params))
        errs.append(np.nan_to_num(car + 8.0 * (eps / PROBE) * own + eps * np.abs(y) + extra, nan=0.0, posinf=0.0))
    return errs


def _op_rounding(layer, params, x, g, eps):
    """An op's own rounding bounds where it declares them (normalisations), else None."""
    op = getattr(layer, "op", None)
    rounding = getattr(op, "rounding", None)
    if rounding is None:
        return None
    p = {k: params[f"{layer.name}.{k}"] for k in layer.infos}
    fwd, dx, grads = rounding(x, g, p, layer.options, eps)
    return fwd, dx, {f"{layer.name}.{k}": v for k, v in grads.items()}


def _sensitivity(layer, params, x, y, g, e_g, rng, eps: float, e_x=None, e_y=None):
    """How far a layer's VJP moves when its inputs carry rounding: (bound for dL/dx, {param: bound}).

    Rounding in a backward acts like relative perturbations of size eps of what it reads (x, y, the
    parameters, the incoming gradient g) -- Higham's backward-error view -- so the response to random
    relative perturbations of size PROBE, scaled to eps, measures the rounding a correct implementation
    in that dtype commits, cancellations included (batchnorm over two values, a key bias, a
    normalisation followed by the mean it removed), without per-op formulas. The error e_g already
    carried by g moves it by J^T e_g, measured the same way with random signs, and without cancellation
    between elements (|J|^T e_g: element by element where g is small, else sample by sample); the errors
    the forward values x and y carry move it too, measured the same ways, and add to it.
    """
    names = layer.param_names
    base_x, base_p = layer.backward(params, x, y, g)
    base = {None: base_x, **base_p}
    own = {k: np.zeros(np.shape(v)) for k, v in base.items()}
    # the error carried in by g and the one carried by the forward values it reads add up
    car_g = {k: np.zeros(np.shape(v)) for k, v in base.items()}
    car_f = {k: np.zeros(np.shape(v)) for k, v in base.items()}

    def moved(vjp, into):
        for k, v in _as_dict(vjp).items():
            into[k] = np.fmax(into[k], np.abs(v - base[k]))

    reads_rounded = e_x is not None and (np.any(e_x) or np.any(e_y))  # the forward values it reads carry rounding too
    for _ in range(PROBES):
        p = {**params, **{n: _jiggled(params[n], rng) for n in names}}
        moved(layer.backward(p, _jiggled(x, rng), _jiggled(y, rng), _jiggled(g, rng)), own)
        moved(layer.backward(params, x, y, _pushed(g, e_g, rng)), car_g)
        if reads_rounded:
            moved(layer.backward(params, _pushed(x, e_x, rng), _pushed(y, e_y, rng), g), car_f)
    # Random signs cancel where few elements meet (see _one_by_one): also element by element (small tensors)
    # or sample by sample. The VJP is linear in g; in x and y it is linear to first order in a push of eps size.
    # Each push is (the response to a push d of the batch, the same on sample b alone or None, its size, into).
    apart = _samples_apart(layer, x)
    alone_base: dict[int, dict] = {}

    def vjp_alone(b, xb, yb, gb):
        """The VJP of sample b alone, its dL/dx in place b of a batch-shaped zero."""
        gx, gp = layer.backward(params, xb, yb, gb)
        full = np.zeros(np.shape(base_x), dtype=np.result_type(gx))
        full[b] = gx[0]
        return {None: full, **gp}

    def change_alone(b, xb, yb):
        if b not in alone_base:
            alone_base[b] = vjp_alone(b, x[b:b + 1], y[b:b + 1], g[b:b + 1])
        return {k: v - alone_base[b][k] for k, v in vjp_alone(b, xb, yb, g[b:b + 1]).items()}

    pushes = [(lambda d: _as_dict(layer.backward(params, x, y, d)),
               (lambda b, d: vjp_alone(b, x[b:b + 1], y[b:b + 1], d)) if apart else None, e_g, car_g)]
    if reads_rounded and np.any(e_g):
        # and at x and y moved outward by their errors: the product of two errors is all there is where x = 0
        # and g = 0 (a dense weight's x^T g after a batchnorm of a constant channel, at an output with y = t)
        x_out, y_out = _outward(x, e_x), _outward(y, e_y)
        pushes.append((lambda d: _as_dict(layer.backward(params, x_out, y_out, d)),
                       (lambda b, d: vjp_alone(b, x_out[b:b + 1], y_out[b:b + 1], d)) if apart else None, e_g, car_g))
    if reads_rounded:
        def change(vjp):
            return {k: v - base[k] for k, v in _as_dict(vjp).items()}
        pushes += [(lambda d: change(layer.backward(params, x + d, y, g)),
                    (lambda b, d: change_alone(b, x[b:b + 1] + d, y[b:b + 1])) if apart else None, e_x, car_f),
                   (lambda d: change(layer.backward(params, x, y + d, g)),
                    (lambda b, d: change_alone(b, x[b:b + 1], y[b:b + 1] + d)) if apart else None, e_y, car_f)]
    exact = {k: np.zeros(np.shape(v)) for k, v in base.items()}
    for respond, alone, err, into in pushes:
        if np.any(err):
            each = _one_by_one(respond, err) if np.size(err) <= SMALL else _sample_by_sample(respond, err, rng, alone)
            if into is car_g:
                for k in car_g:
                    car_g[k] = np.fmax(car_g[k], each[k])
            else:
                for k in exact:
                    exact[k] = exact[k] + each[k]
    car = {k: car_g[k] + np.fmax(car_f[k], exact[k]) for k in base}
    car_x, car_p = car[None], {n: car[n] for n in names}
    own_x, own_p = own[None], {n: own[n] for n in names}
    scale = eps / PROBE
    # the dot products inside: a sum of n terms rounds to ~sqrt(n) eps of their size; PROBE-relative
    # perturbations see each term once, so a factor covers the accumulation
    k = 8.0
    bound_x = car_x + k * scale * own_x + eps * np.abs(base_x)
    bounds = {n: car_p[n] + k * scale * own_p[n] + eps * np.abs(base_p[n]) for n in names}
    # at the size the incoming gradient may have in the dtype: its value and the error it already carries (a
    # normalisation over two values maps any g to 0 exactly, yet rounds at the scale of what it is given)
    hint = _op_rounding(layer, params, x, np.abs(g) + e_g, eps)
    if isinstance(layer, ActivationLayer):  # f' rounds on an absolute scale (see _fprime_rounding)
        bound_x = bound_x + _fprime_rounding(layer, layer.hyper(params), y, np.abs(g) + e_g, eps)
    if hint:
        bound_x = bound_x + hint[1]
        bounds = {n: b + hint[2].get(n, 0.0) for n, b in bounds.items()}
    return bound_x, bounds


def _samples_apart(layer, x) -> bool:
    """Whether sample b's share of the layer's VJP is the VJP of sample b alone: no statistics over the batch,
    no per-sample buffers (dropout masks are the batch's), gradlab's own code (a user's layer may treat a
    batch of one differently)."""
    return (np.ndim(x) > 0 and np.shape(x)[0] > 1 and not layer.mixes_batch and layer.supports_stacking
            and not getattr(layer, "buffers", None))


def _outward(a, err):
    """`a` moved away from 0 by its error bound (zeros move up): where an error can make a value largest."""
    return a + np.where(np.real(a) >= 0, 1.0, -1.0) * err


def _as_dict(vjp) -> dict:
    """(dL/dx, {param: grad}) as one dict, dL/dx under None (for `_one_by_one`)."""
    gx, gp = vjp
    return {None: gx, **gp}


def _propagate(layers, params, xs, g, e_g, rng, eps: float, out: dict, e_xs=None):
    """Walk `layers` backwards from the gradient g (with its bound e_g) at the last output; xs[i] is the
    input of layer i, e_xs[i] its forward error. Fills `out` with parameter bounds; returns (dL/dx, its
    bound) at the first input."""
    from .network import ResidualLayer

    e_xs = e_xs if e_xs is not None else _forward_errors(layers, params, xs, rng, eps)
    for i in range(len(layers) - 1, -1, -1):
        layer, x, y = layers[i], xs[i], xs[i + 1]
        if isinstance(layer, ResidualLayer):
            inner = [x]
            for member in layer.layers:
                inner.append(member.forward(params, inner[-1]))
            e_inner = _forward_errors(list(layer.layers), params, inner, rng, eps)
            e_inner = [e + e_xs[i] if k == 0 else e for k, e in enumerate(e_inner)]
            gf, ef = _propagate(list(layer.layers), params, inner, g, e_g, rng, eps, out, e_inner)
            if layer.projection is not None:
                gp, ep = _propagate([layer.projection], params, [x, layer.projection.forward(params, x)], g, e_g, rng, eps, out)
            else:
                gp, ep = g, e_g
            g, e_g = gf + gp, ef + ep + eps * np.abs(gf + gp)
            continue
        with np.errstate(all="ignore"):
            e_x, e_p = _sensitivity(layer, params, x, y, g, e_g, rng, eps, e_xs[i], e_xs[i + 1])
            g, _ = layer.backward(params, x, y, g)
        out.update(e_p)
        e_g = np.nan_to_num(e_x, nan=0.0, posinf=0.0)
    return g, e_g


def composite_bounds(net: Network, dtype=None, *, wrt_input: bool = False) -> dict[str, np.ndarray]:
    """The error model of networks with conv, pooling, normalisation, attention or residual layers.

    No per-op propagation formulas: each layer's sensitivity to rounding is measured on its own
    backward (see `_sensitivity`) at the float64 point, and the bound is carried down the network.
    In a low dtype the hand-written backward's drift from float64 is added (its measured rounding;
    another correct implementation rounds differently but to the same extent, hence also the
    tensor's RMS drift). Neither term says anything about a wrong formula: a bug computes the same
    wrong value in every dtype and under every small perturbation.
    """
    from .engines.analytic import backprop

    dt = np.dtype(dtype or net.dtype)
    eps, tiny = float(np.finfo(dt).eps), float(np.finfo(dt).tiny)
    params64, x64, _ = net.cast(np.float64)
    rng = np.random.default_rng(0)
    with np.errstate(all="ignore"):
        exact = backprop(net, params64, x64)
        low = exact if dt == np.float64 else backprop(net, {k: v.astype(dt) for k, v in params64.items()}, x64.astype(dt))
        # In float64 there is no lower dtype to measure against: the same backward in float32, its drift
        # scaled down by eps64 / eps32, stands in for float64's rounding -- it sees the cancellations
        # inside an op (layernorm over two features: O(1) terms cancelling to 1e-5) that perturbing the
        # op's inputs cannot, because the cancelling intermediates do not depend on them.
        f32 = float(np.finfo(np.float32).eps)
        proxy = backprop(net, {k: v.astype(np.float32) for k, v in params64.items()}, x64.astype(np.float32)) if dt == np.float64 else None
        y = exact.inputs[-1]
        g = net.loss_gradient(y)
        e_fwd = _forward_errors(list(net.layers), params64, exact.inputs, rng, eps)
        # the loss gradient's own rounding (relative eps of it and of what it is computed from), and the
        # output's forward error carried through it
        t = np.abs(net.target).reshape(y.shape) if net.target.size == y.size else 0.0
        e_g = eps * (np.abs(g) + net.loss_scale * (np.abs(y) + t))
        for sign in (1.0, -1.0):
            e_g = e_g + 0.5 * np.nan_to_num(np.abs(net.loss_gradient(y + sign * e_fwd[-1]) - g), nan=0.0, posinf=0.0)
        model: dict[str, np.ndarray] = {}
        _, e_x = _propagate(list(net.layers), params64, exact.inputs, g, e_g, rng, eps, model, e_fwd)
    names = list(net.params) + ([INPUT] if wrt_input else [])
    bounds = {}
    for n in names:
        gv = np.asarray(exact.grad_input if n == INPUT else exact.grads[n], float)
        own = _finite(np.asarray(e_x if n == INPUT else model.get(n, eps * np.abs(gv)), float))
        drift, spread = _drift(np.asarray(low.grad_input if n == INPUT else low.grads[n], float), gv)
        if proxy is not None:
            d32, s32 = _drift(np.asarray(proxy.grad_input if n == INPUT else proxy.grads[n], float), gv)
            drift = drift + (eps / f32) * (d32 + s32)
        bounds[n] = drift + spread + own
    return {k: _finite(np.asarray(v, float)) + 64 * tiny for k, v in bounds.items()}


def _finite(a: np.ndarray) -> np.ndarray:
    """A term that could not be measured (NaN, inf) contributes nothing, and only to its own elements."""
    return np.where(np.isfinite(a), a, 0.0)


def _drift(low: np.ndarray, exact: np.ndarray) -> tuple[np.ndarray, float]:
    """|low - exact| per element and its RMS, over the elements where the lower-precision run is finite.

    A lower dtype that saturates where float64 does not (sigmoid(19.5) is 1.0 in float32, and the binary
    cross-entropy's (p - t) / (p (1 - p)) is then 0/0) says nothing about those elements; a NaN there
    must not erase the rest of the bound (it did, through the RMS: the whole tensor's bound fell to 0).
    """
    d = np.abs(low - exact)
    ok = np.isfinite(d)
    spread = float(np.sqrt(np.mean(d[ok] ** 2))) if ok.any() else 0.0
    return np.where(ok, d, 0.0), spread
