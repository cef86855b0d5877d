"""Every registered op: hand-written backward vs differences of its forward, and vs its torch mirror.

Parametrized over the registries, so a new op is tested the moment it is registered.
"""

import numpy as np
import pytest
import torch

from gradlab.ops import ACTIVATIONS, LOSSES

# Hyperparameter settings worth testing beyond the defaults.
HYPER_CASES = {
    "relu": [{"eps": 0.0}, {"eps": 0.3}],
    "leaky_relu": [{"slope": 0.01}, {"slope": 0.2}],
    "scaled_sigmoid": [{"c": 1.0, "beta": 1.0}, {"c": 2.0, "beta": 0.5}, {"c": -1.5, "beta": 3.0}],
}
ACT_CASES = [(op.name, hp) for op in ACTIVATIONS for hp in HYPER_CASES.get(op.name, [dict(op.hyper)])]


def _points(op, hp, rng):
    """Saturation (|u| up to 30), tiny values, exact kinks and values right next to them."""
    base = [-30.0, -12.0, -5.0, -1.0, -1e-3, -1e-9, 0.0, 1e-9, 1e-3, 0.7, 3.0, 12.0, 30.0]
    kinks = list(op.kink_points(hp))
    base += [k + d for k in kinks for d in (0.0, 1e-7, -1e-7, 1e-3, -1e-3)]
    extra = rng.normal(0, 4, size=40 - len(base) % 8)
    return np.concatenate([base, extra])


def _fd_vjp(f, z, g, h):
    """Central differences of sum(g * f(z)) w.r.t. each z element (float64 reference)."""
    out = np.empty_like(z)
    flat = z.reshape(-1)
    for i in range(flat.size):
        zp, zm = flat.copy(), flat.copy()
        zp[i] += h
        zm[i] -= h
        out.reshape(-1)[i] = (np.sum(g * f(zp.reshape(z.shape))) - np.sum(g * f(zm.reshape(z.shape)))) / (2 * h)
    return out


def _near_kink(op, hp, z, h):
    return np.any([np.abs(z - k) <= 2 * h for k in op.kink_points(hp)], axis=0) if op.kink_points(hp) else np.zeros(z.shape, bool)


@pytest.mark.parametrize("name,hp", ACT_CASES, ids=[f"{n}-{i}" for n, h in ACT_CASES for i in [list(h.values())]])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_activation_backward_matches_differences(name, hp, dtype):
    op = ACTIVATIONS.get(name)
    rng = np.random.default_rng(0)
    pts = _points(op, hp, rng)
    width = 4 if not op.elementwise else 1
    z64 = pts[: len(pts) // width * width].reshape(-1, width) if width > 1 else pts.reshape(-1, 2)
    if not op.elementwise:
        z64 = rng.normal(0, 6, size=(6, 4))
        z64[0] = [30.0, -30.0, 0.0, 1e-9]
    g64 = rng.normal(size=z64.shape)
    z, g = z64.astype(dtype), g64.astype(dtype)
    a = op.forward(z, hp)
    grad, _ = op.backward(z, a, g, hp)
    assert grad.dtype == dtype, "backward must keep the input dtype"
    h = 1e-6
    ref = _fd_vjp(lambda u: op.forward(u, hp), z.astype(np.float64), g.astype(np.float64), h)
    judge = ~_near_kink(op, hp, z.astype(np.float64), h)
    tol = {np.float64: 1e-6, np.float32: 2e-3}[dtype]
    scale = np.maximum(1.0, np.abs(ref))
    assert np.all(np.abs(grad - ref)[judge] <= tol * scale[judge]), f"{name}: backward disagrees with differences"
    assert np.all(np.isfinite(grad))


@pytest.mark.parametrize("name,hp", ACT_CASES, ids=[f"{n}-{i}" for n, h in ACT_CASES for i in [list(h.values())]])
def test_activation_torch_mirror_agrees(name, hp):
    op = ACTIVATIONS.get(name)
    rng = np.random.default_rng(1)
    z = rng.normal(0, 5, size=(5, 4))
    z[0, :3] = [30.0, -30.0, 1e-9]
    g = rng.normal(size=z.shape)
    zt = torch.tensor(z, requires_grad=True)
    hpt = {k: torch.tensor(v, dtype=torch.float64) for k, v in hp.items()}
    out = op.torch(zt, hpt)
    np.testing.assert_allclose(out.detach().numpy(), op.forward(z, hp), rtol=1e-12, atol=1e-14)
    (out * torch.tensor(g)).sum().backward()
    grad, _ = op.backward(z, op.forward(z, hp), g, hp)
    np.testing.assert_allclose(zt.grad.numpy(), grad, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("name", [op.name for op in ACTIVATIONS if op.trainable])
def test_trainable_hyper_gradients(name):
    op = ACTIVATIONS.get(name)
    rng = np.random.default_rng(2)
    z = rng.normal(0, 3, size=(4, 3))
    g = rng.normal(size=z.shape)
    hp = {"c": 1.7, "beta": 0.6}
    _, hg = op.backward(z, op.forward(z, hp), g, hp)
    for key in op.trainable:
        h = 1e-6
        up, dn = dict(hp), dict(hp)
        up[key] += h
        dn[key] -= h
        ref = (np.sum(g * op.forward(z, up)) - np.sum(g * op.forward(z, dn))) / (2 * h)
        assert abs(hg[key] - ref) <= 1e-7 * max(1, abs(ref))


@pytest.mark.parametrize("name", [op.name for op in ACTIVATIONS])
def test_activation_forward_is_complex_safe_and_batched(name):
    """Complex step and a leading stack axis must reproduce the real derivative and shape."""
    op = ACTIVATIONS.get(name)
    hp = dict(op.hyper)
    rng = np.random.default_rng(3)
    z = rng.normal(0, 4, size=(2, 3, 4))  # (stack, batch, features)
    g = rng.normal(size=z.shape)
    assert op.forward(z, hp).shape == z.shape
    if op.zero_derivative:
        return
    h = 1e-20
    cs = np.empty_like(z)
    for i in range(z.size):
        dz = np.zeros(z.size, complex)
        dz[i] = 1j * h
        cs.reshape(-1)[i] = np.imag(np.sum(g * op.forward(z + dz.reshape(z.shape), hp))) / h
    grad, _ = op.backward(z, op.forward(z, hp), g, hp)
    np.testing.assert_allclose(cs, grad, rtol=1e-12, atol=1e-13)


def test_sigmoid_does_not_overflow():
    op = ACTIVATIONS.get("sigmoid")
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        out = op.forward(np.array([-1000.0, 0.0, 1000.0]), {})
    np.testing.assert_allclose(out, [0.0, 0.5, 1.0])


def test_step_gradient_is_zero_everywhere():
    op = ACTIVATIONS.get("step")
    z = np.array([-2.0, 0.0, 1e-12, 3.0])
    grad, _ = op.backward(z, op.forward(z, {}), np.ones(4), {})
    assert np.all(grad == 0)
    assert op.kink_points({}) == (0.0,) and not op.is_continuous({})


LOSS_TARGETS = {
    "regression": lambda rng, s: rng.normal(size=s),
    "onehot": lambda rng, s: np.eye(s[1])[rng.integers(0, s[1], s[0])],
    "binary": lambda rng, s: rng.integers(0, 2, s).astype(float),
    "probabilities": lambda rng, s: rng.dirichlet(np.ones(s[1]), s[0]),
}


@pytest.mark.parametrize("name", [op.name for op in LOSSES])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_loss_backward_matches_differences_and_torch(name, dtype):
    op = LOSSES.get(name)
    rng = np.random.default_rng(4)
    shape = (5, 3)
    t = LOSS_TARGETS[op.targets[0]](rng, shape)
    pred = rng.uniform(0.02, 0.98, size=shape) if op.needs_probabilities else rng.normal(0, 4, size=shape)
    if op.needs_probabilities and op.targets[0] == "onehot":
        pred = pred / pred.sum(axis=1, keepdims=True)
    grad = op.backward(pred.astype(dtype), t.astype(dtype))
    ref = _fd_vjp(lambda p: op.forward(p, t), pred, np.ones(()), 1e-6)
    tol = {np.float64: 1e-6, np.float32: 1e-3}[dtype]
    np.testing.assert_allclose(grad, ref, rtol=tol, atol=tol)
    pt = torch.tensor(pred, requires_grad=True)
    lt = op.torch(pt, torch.tensor(t))
    np.testing.assert_allclose(float(lt.detach()), op.forward(pred, t), rtol=1e-12)
    lt.backward()
    np.testing.assert_allclose(pt.grad.numpy(), op.backward(pred, t), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", [op.name for op in LOSSES])
def test_loss_keeps_leading_axes(name):
    op = LOSSES.get(name)
    rng = np.random.default_rng(5)
    t = LOSS_TARGETS[op.targets[0]](rng, (4, 3))
    pred = rng.uniform(0.1, 0.9, size=(7, 4, 3))
    if op.needs_probabilities and op.targets[0] == "onehot":
        pred = pred / pred.sum(axis=-1, keepdims=True)
    out = op.forward(pred, t)
    assert out.shape == (7,)
    np.testing.assert_allclose(out[2], op.forward(pred[2], t))


def test_softmax_cross_entropy_is_its_unfused_twin():
    rng = np.random.default_rng(6)
    z = rng.normal(0, 5, size=(6, 4))
    t = np.eye(4)[rng.integers(0, 4, 6)]
    fused = LOSSES.get("softmax_cross_entropy")
    sm, ce = ACTIVATIONS.get("softmax"), LOSSES.get("cross_entropy")
    p = sm.forward(z, {})
    np.testing.assert_allclose(fused.forward(z, t), ce.forward(p, t), rtol=1e-12)
    unfused, _ = sm.backward(z, p, ce.backward(p, t), {})
    np.testing.assert_allclose(fused.backward(z, t), unfused, rtol=1e-9, atol=1e-12)


def test_unknown_op_suggests_nearest():
    with pytest.raises(LookupError, match="did you mean 'sigmoid'"):
        ACTIVATIONS.get("sigmoud")


# --- torch mirrors compute the forward's function, saturated points included -------------------
# A mirror that clamps (torch's binary_cross_entropy: log at -100, the gradient's p(1 - p) at
# 1e-12) checks a different function: the autograd engine then disagrees with a correct backward.

SATURATED = np.array([-40.0, -35.0, -30.0, -20.0, -12.0, -1.0, -1e-9, 0.0, 1e-9, 0.7, 12.0, 20.0, 30.0, 35.0, 40.0])
EDGE = 1e-12  # probabilities this close to 0 and to 1
PROBABILITIES = np.array([EDGE, 1e-9, 1e-6, 0.2, 0.5, 0.8, 1 - 1e-6, 1 - 1e-9, 1 - EDGE])
LOGITS = np.array([-500.0, -40.0, -1.0, 0.0, 2.0, 40.0, 500.0])


def _assert_same(mirror, ours, what):
    """Elementwise, relative to each element (so 1e-18 next to 1 is still checked), float64."""
    mirror, ours = np.asarray(mirror, dtype=np.float64), np.asarray(ours, dtype=np.float64)
    scale = np.maximum(np.abs(mirror), np.abs(ours))
    floor = 1e-13 * float(np.max(scale, initial=0.0))  # cancellation: softmax CE's s - t where s ~ t = 1
    bad = np.abs(mirror - ours) > 1e-10 * scale + floor
    assert not bad.any(), f"{what}: mirror {mirror[bad][:3]} vs ours {ours[bad][:3]} at {np.argwhere(bad)[:3].tolist()}"


def _saturated_activation_input(op):
    if op.elementwise:
        return SATURATED.reshape(3, 5)
    rows = [[40.0, -40.0, 0.0, 1e-9], [40.0, 40.0, -40.0, 0.0], [-35.0, 30.0, 20.0, -1.0], [0.0, 0.0, 0.0, 0.0]]
    return np.array(rows)


@pytest.mark.parametrize("name,hp", ACT_CASES, ids=[f"{n}-{i}" for n, h in ACT_CASES for i in [list(h.values())]])
def test_activation_mirror_is_the_forward_at_saturation(name, hp):
    op = ACTIVATIONS.get(name)
    z = _saturated_activation_input(op)
    g = np.random.default_rng(7).normal(size=z.shape)
    zt = torch.tensor(z, requires_grad=True)
    hpt = {k: torch.tensor(float(v), dtype=torch.float64, requires_grad=k in op.trainable) for k, v in hp.items()}
    out = op.torch(zt, hpt)
    a = op.forward(z, hp)
    _assert_same(out.detach().numpy(), a, f"{name}: value")
    wrt = [zt] + [hpt[k] for k in op.trainable]
    grads = torch.autograd.grad((out * torch.tensor(g)).sum(), wrt, allow_unused=True)
    grad_z, grad_hp = op.backward(z, a, g, hp)
    _assert_same(grads[0].numpy(), grad_z, f"{name}: d/dz")
    for key, gt in zip(op.trainable, grads[1:]):
        _assert_same(0.0 if gt is None else gt.numpy(), grad_hp[key], f"{name}: d/d{key}")


def _loss_inputs(op):
    """(pred, target) pairs at the edges: probabilities within 1e-12 of 0 and 1, or large logits."""
    rng = np.random.default_rng(8)
    values = PROBABILITIES if op.needs_probabilities else LOGITS
    pred = np.tile(values, (2, 1))
    for kind in op.targets:
        t = LOSS_TARGETS[kind](rng, pred.shape)
        if kind == "binary":
            t = np.stack([np.zeros(len(values)), np.ones(len(values))])  # both labels at every edge
        yield kind, pred, t


@pytest.mark.parametrize("name", [op.name for op in LOSSES], ids=[op.name for op in LOSSES])
def test_loss_mirror_is_the_forward_at_the_edges(name):
    op = LOSSES.get(name)
    for kind, pred, t in _loss_inputs(op):
        pt = torch.tensor(pred, requires_grad=True)
        out = op.torch(pt, torch.tensor(t))
        _assert_same(float(out.detach()), op.forward(pred, t), f"{name} ({kind} targets): value")
        (grad,) = torch.autograd.grad(out, pt)
        _assert_same(grad.numpy(), op.backward(pred, t), f"{name} ({kind} targets): dL/dpred")

