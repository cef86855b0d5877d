"""Targeted tests of the normalization and dropout layer ops (gradlab/ops/norm.py, dropout.py).

The registry-wide checks (torch mirror, finite differences, stacking, dtypes, complex step) run
through each entry's examples in test_layer_ops.py; these cover the edges those do not.
"""

from __future__ import annotations

import numpy as np
import pydantic
import pytest
import torch

from gradlab.ops import LAYERS, ShapeError
from gradlab.ops.norm import check_batch

NORMS = {
    "batchnorm": ((4,), (3, 5), (2, 3, 4), (8, 16, 16)),
    "layernorm": ((4,), (3, 5), (2, 3, 4), (8, 16, 16)),
    "groupnorm": ((4,), (6, 5), (4, 3, 3), (8, 16, 16)),
}


def _opts(name, **extra):
    return LAYERS.get(name).options(**({"groups": 2} if name == "groupnorm" else {}), **extra)


def _fwd(op, x, p, o):
    return op.forward(x[None], {k: v[None] for k, v in p.items()}, o)[0]


def _group_axes(name, x):
    """The axes of x (B, *shape) over which one normalisation group's statistics run, and x's view
    with those groups made explicit."""
    if name == "batchnorm":
        return x, (0,) + tuple(range(2, x.ndim))
    if name == "layernorm":
        return x, (x.ndim - 1,)
    xg = x.reshape((x.shape[0], 2, x.shape[1] // 2) + x.shape[2:])
    return xg, tuple(range(2, xg.ndim))


def test_ops_are_registered():
    for name in ("batchnorm", "layernorm", "groupnorm", "dropout"):
        assert name in LAYERS


# --- batchnorm refuses one value per channel ---------------------------------------------------------


def test_batchnorm_batch_one_is_refused_with_the_message():
    with pytest.raises(ShapeError) as exc:
        check_batch(1, (4,))
    msg = str(exc.value)
    assert msg.startswith("batchnorm needs more than one value per channel: batch 1 with input shape (4,)")
    assert msg.endswith("use batch >= 2 or layernorm")


def test_batchnorm_forward_refuses_batch_one_like_torch():
    op = LAYERS.get("batchnorm")
    o = op.options()
    p = {k: np.ones((1,) + info.shape) for k, info in op.params((4,), o).items()}
    with pytest.raises(ShapeError, match=r"batch 1 with input shape \(4,\).*use batch >= 2 or layernorm"):
        op.forward(np.ones((1, 1, 4)), p, o)
    with pytest.raises(ShapeError, match="more than one value per channel"):
        op.backward(np.ones((1, 4)), np.ones((1, 4)), np.ones((1, 4)), {k: v[0] for k, v in p.items()}, o)
    with pytest.raises(ValueError):  # torch refuses the same batch
        torch.nn.functional.batch_norm(torch.ones(1, 4), None, None, training=True)


@pytest.mark.parametrize("batch,shape,ok", [
    (1, (4,), False), (1, (4, 1), False), (1, (4, 1, 1), False), (0, (4,), False),
    (2, (4,), True), (1, (4, 2), True), (1, (3, 1, 2), True),
])
def test_check_batch_counts_values_per_channel(batch, shape, ok):
    if ok:
        check_batch(batch, shape)
    else:
        with pytest.raises(ShapeError, match="batchnorm needs more than one value per channel"):
            check_batch(batch, shape)


def test_batchnorm_needs_a_channel_axis():
    op = LAYERS.get("batchnorm")
    with pytest.raises(ShapeError, match="channel axis"):
        op.out_shape((), op.options())


# --- constant input ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(NORMS))
@pytest.mark.parametrize("value", [0.1, 3.7, -123.456, 1e3 / 3])
def test_constant_input_output_is_finite_and_the_shift(name, value):
    op = LAYERS.get(name)
    for shape in NORMS[name]:
        o = _opts(name)
        rng = np.random.default_rng(1)
        p = {k: rng.normal(1.0 if info.init == "ones" else 0.0, 0.5, info.shape) for k, info in op.params(shape, o).items()}
        x = np.full((3,) + shape, value)
        y = _fwd(op, x, p, o)
        assert np.all(np.isfinite(y))
        bias = p["bias"].reshape(p["bias"].shape + (1,) * (len(shape) - p["bias"].ndim)) if name != "layernorm" else p["bias"]
        # x - mean is rounding (|value| * 2**-52 at most), magnified by 1/sqrt(eps) and the weight
        tol = 4 * abs(value) * 2.0**-52 / np.sqrt(o.eps) * np.abs(p["weight"]).max()
        np.testing.assert_allclose(y, np.broadcast_to(bias, y.shape), rtol=0, atol=tol)


@pytest.mark.parametrize("name", list(NORMS))
@pytest.mark.parametrize("value", [0.1, 3.7, -123.456, 1e3 / 3])
def test_constant_input_and_gradient_constant_per_group_gives_dx_zero(name, value):
    """dL/dx = w / sqrt(var + eps) * (g - mean(g) - x_hat * mean(g * x_hat)) per group: on a
    constant input x_hat = 0, so with g * w constant over each group dx is 0 up to rounding."""
    op = LAYERS.get(name)
    for shape in NORMS[name]:
        o = _opts(name)
        p = {k: np.full(info.shape, 1.0 if info.init == "ones" else 0.0) for k, info in op.params(shape, o).items()}
        if name == "batchnorm":  # the weight is per channel, constant over each group anyway
            p["weight"] = np.linspace(0.5, 2.0, shape[0])
        x = np.full((3,) + shape, value)
        rng = np.random.default_rng(2)
        # g constant over each normalisation group, different from group to group
        xg, axes = _group_axes(name, x)
        g_groups = rng.normal(0, 3, tuple(1 if a in axes else n for a, n in enumerate(xg.shape)))
        g = np.broadcast_to(g_groups, xg.shape).reshape(x.shape).copy()
        dx, grads = op.backward(x, _fwd(op, x, p, o), g, p, o)
        assert np.all(np.isfinite(dx))
        assert np.abs(dx).max() <= 1e-12 * np.abs(g).max() * np.abs(p["weight"]).max()
        assert all(np.all(np.isfinite(v)) for v in grads.values())


@pytest.mark.parametrize("name", list(NORMS))
def test_constant_input_general_gradient_matches_torch(name):
    """With eps > 0 the normalisation is differentiable at a constant input and its dx is NOT zero
    for a general g: it is w / sqrt(eps) * (g - mean over the group of g) (torch agrees)."""
    op = LAYERS.get(name)
    shape = NORMS[name][2]
    o = _opts(name)
    rng = np.random.default_rng(3)
    p = {k: rng.normal(1.0 if info.init == "ones" else 0.0, 0.5, info.shape) for k, info in op.params(shape, o).items()}
    x = np.full((3,) + shape, 0.7)
    g = rng.normal(0, 1, x.shape)
    dx, _ = op.backward(x, _fwd(op, x, p, o), g, p, o)
    tx = torch.tensor(x, requires_grad=True)
    op.torch(tx, {k: torch.tensor(v) for k, v in p.items()}, o).backward(torch.tensor(g))
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-9, atol=1e-9)
    assert np.abs(dx).max() > 1.0  # of order |g| * |w| / sqrt(eps), far from zero


@pytest.mark.parametrize("name", list(NORMS))
def test_dx_sums_to_zero_over_each_group(name):
    """The output does not change when a group's values all shift by the same amount."""
    op = LAYERS.get(name)
    for shape in NORMS[name]:
        o = _opts(name)
        rng = np.random.default_rng(4)
        p = {k: rng.normal(1.0 if info.init == "ones" else 0.0, 0.5, info.shape) for k, info in op.params(shape, o).items()}
        x = rng.normal(2, 3, (3,) + shape)
        g = rng.normal(0, 1, x.shape)
        dx, _ = op.backward(x, _fwd(op, x, p, o), g, p, o)
        dxg, axes = _group_axes(name, dx)
        scale = np.abs(g).max() * np.abs(p["weight"]).max() * dx.size
        assert np.abs(dxg.sum(axis=axes)).max() <= 1e-12 * scale


@pytest.mark.parametrize("name", list(NORMS))
def test_gradients_match_torch_autograd(name):
    op = LAYERS.get(name)
    for shape in NORMS[name]:
        for affine in (True, False):
            o = _opts(name, affine=affine, eps=1e-3)
            rng = np.random.default_rng(5)
            p = {k: rng.normal(1.0 if info.init == "ones" else 0.0, 0.5, info.shape) for k, info in op.params(shape, o).items()}
            x = rng.normal(0, 2, (4,) + shape)
            g = rng.normal(0, 1, x.shape)
            dx, grads = op.backward(x, _fwd(op, x, p, o), g, p, o)
            tx = torch.tensor(x, requires_grad=True)
            tp = {k: torch.tensor(v, requires_grad=True) for k, v in p.items()}
            op.torch(tx, tp, o).backward(torch.tensor(g))
            np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-9, atol=1e-10)
            assert set(grads) == set(p)
            for k in p:
                np.testing.assert_allclose(grads[k], tp[k].grad.numpy(), rtol=1e-9, atol=1e-10, err_msg=k)


# --- shape errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize("shape,groups", [((6, 5), 4), ((4,), 3), ((3, 2, 2), 6)])
def test_groupnorm_channels_must_divide_into_groups(shape, groups):
    op = LAYERS.get("groupnorm")
    o = op.options(groups=groups)
    with pytest.raises(ShapeError, match=rf"divisible by groups: {shape[0]} channels .* into {groups} groups"):
        op.out_shape(shape, o)
    with pytest.raises(ShapeError, match="divisible by groups"):
        op.forward(np.ones((1, 2) + shape), {}, op.options(groups=groups, affine=False))


def test_groupnorm_needs_groups():
    with pytest.raises(pydantic.ValidationError):
        LAYERS.get("groupnorm").options()


@pytest.mark.parametrize("shape,ns", [((3, 5), 4), ((3, 5), [5, 3]), ((2, 3, 5), [3, 4]), ((3, 5), [2, 3, 5]), ((5,), [1, 5])])
def test_layernorm_normalized_shape_must_match_the_trailing_sizes(shape, ns):
    op = LAYERS.get("layernorm")
    o = op.options(normalized_shape=ns)
    with pytest.raises(ShapeError, match=r"layernorm normalized_shape .* must equal the input's trailing sizes"):
        op.out_shape(shape, o)
    with pytest.raises(ShapeError):
        op.params(shape, o)


@pytest.mark.parametrize("shape,ns,want", [((3, 5), None, (5,)), ((3, 5), 5, (5,)), ((3, 5), [5], (5,)),
                                           ((2, 3, 4), [3, 4], (3, 4)), ((2, 3, 4), [2, 3, 4], (2, 3, 4))])
def test_layernorm_parameters_have_the_normalized_shape(shape, ns, want):
    op = LAYERS.get("layernorm")
    o = op.options(normalized_shape=ns)
    assert op.out_shape(shape, o) == shape
    params = op.params(shape, o)
    assert {k: (v.shape, v.init) for k, v in params.items()} == {"weight": (want, "ones"), "bias": (want, "zeros")}


def test_layernorm_refuses_an_empty_normalized_shape():
    with pytest.raises(pydantic.ValidationError):
        LAYERS.get("layernorm").options(normalized_shape=[])


@pytest.mark.parametrize("bad", [{"eps": 0.0}, {"eps": -1e-5}, {"eps": "1e-5"}, {"affine": 1}, {"momentum": 0.1}])
def test_norm_options_are_validated(bad):
    with pytest.raises(pydantic.ValidationError):
        LAYERS.get("batchnorm").options(**bad)


# --- dropout -----------------------------------------------------------------------------------------


def _mask(seed, p, batch=4, shape=(3, 5)):
    op = LAYERS.get("dropout")
    return op.buffers(np.random.default_rng(seed), batch, shape, op.options(p=p))["mask"]


def test_dropout_mask_is_reproducible_from_the_seed():
    a, b, c = _mask(7, 0.5), _mask(7, 0.5), _mask(8, 0.5)
    assert a.shape == (4, 3, 5) and a.dtype == np.float64
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert set(np.unique(a)) <= {0.0, 2.0}


@pytest.mark.parametrize("p", [0.0, 0])
def test_dropout_p_zero_is_the_identity(p):
    op = LAYERS.get("dropout")
    o = op.options(p=p)
    assert o.p == 0.0 and isinstance(o.p, float)
    mask = op.buffers(np.random.default_rng(0), 3, (2, 4), o)["mask"]
    assert np.all(mask == 1.0)
    x = np.random.default_rng(1).normal(0, 1, (2, 3, 2, 4))
    np.testing.assert_array_equal(op.forward(x, {"mask": mask}, o), x)
    g = np.random.default_rng(2).normal(0, 1, (3, 2, 4))
    gx, grads = op.backward(x[0], x[0], g, {"mask": mask}, o)
    np.testing.assert_array_equal(gx, g)
    assert grads == {}


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5, 0.9])
def test_dropout_mask_has_mean_one(p):
    mask = _mask(11, p, batch=200, shape=(500,))
    assert set(np.unique(mask)) <= {0.0, 1.0 / (1.0 - p)}
    assert np.mean(mask == 0) == pytest.approx(p, abs=0.01)
    # std of one element is sqrt(p / (1 - p)); 1e5 elements: the mean is within 0.01 * that * 10
    assert np.mean(mask) == pytest.approx(1.0, abs=0.1 * np.sqrt(p / (1 - p)))


def test_dropout_forward_backward_torch_share_the_mask():
    op = LAYERS.get("dropout")
    o = op.options(p=0.4)
    mask = op.buffers(np.random.default_rng(3), 3, (4,), o)["mask"]
    x = np.random.default_rng(4).normal(0, 1, (3, 4)).astype(np.float32)
    y = op.forward(x[None], {"mask": mask}, o)[0]
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, x * mask.astype(np.float32))
    np.testing.assert_array_equal(op.torch(torch.tensor(x), {"mask": torch.tensor(mask)}, o).numpy(), y)
    gx, _ = op.backward(x, y, np.ones_like(x), {"mask": mask}, o)
    assert gx.dtype == np.float32
    np.testing.assert_array_equal(gx, mask.astype(np.float32))


def test_dropout_refuses_a_mask_of_another_batch():
    op = LAYERS.get("dropout")
    o = op.options(p=0.4)
    mask = op.buffers(np.random.default_rng(3), 1, (4,), o)["mask"]
    with pytest.raises(ValueError, match="mask has shape"):
        op.forward(np.ones((1, 3, 4)), {"mask": mask}, o)


@pytest.mark.parametrize("bad", [1.0, 1, -0.1, 1.5, True, "0.5", float("nan"), 2])
def test_dropout_p_is_validated(bad):
    with pytest.raises(pydantic.ValidationError):
        LAYERS.get("dropout").options(p=bad)
