"""conv1d/conv2d and the pooling layers beyond the registry-wide tests: shape errors and their
messages, torch's conventions (first-argmax tie routing, padding counted by avg pool, 'same'
padding, fans), the stacked-weight and chunked forward paths, and a speed sanity check."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

import gradlab.ops.conv as conv_module
from gradlab.ops import LAYERS, ShapeError


def _shape(name, in_shape, **opts):
    op = LAYERS.get(name)
    return op.out_shape(tuple(in_shape), op.options(**opts))


def _fwd(op, x, params, o):
    return op.forward(x[None], {k: v[None] for k, v in params.items()}, o)[0]


def _torch_grads(op, x, params, g, o):
    tx = torch.tensor(x, requires_grad=True)
    tp = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    (op.torch(tx, tp, o) * torch.tensor(g)).sum().backward()
    return tx.grad.numpy(), {k: v.grad.numpy() for k, v in tp.items()}


# --- shape errors --------------------------------------------------------------------------------


@pytest.mark.parametrize("name,in_shape,opts,message", [
    ("conv2d", (12,), {"channels": 2, "kernel": 3}, r"conv2d needs an input of shape \(C, H, W\), got \(12,\)"),
    ("conv1d", (3, 4, 5), {"channels": 2, "kernel": 3}, r"conv1d needs an input of shape \(C, L\), got \(3, 4, 5\)"),
    ("conv2d", (3, 4, 4), {"channels": 2, "kernel": 5}, r"conv2d: kernel 5x5 is larger than the padded input 4x4"),
    ("conv2d", (3, 5, 5), {"channels": 2, "kernel": 3, "dilation": 3},
     r"conv2d: kernel 3x3 \(dilated extent 7x7\) is larger than the padded input 5x5"),
    ("conv1d", (3, 4), {"channels": 2, "kernel": 7, "padding": 1}, r"kernel 7 is larger than the padded input 6"),
    ("conv2d", (3, 8, 8), {"channels": 4, "kernel": 3, "groups": 2}, r"input channels 3 are not divisible by groups 2"),
    ("conv2d", (4, 8, 8), {"channels": 3, "kernel": 3, "groups": 2}, r"output channels 3 are not divisible by groups 2"),
    ("conv2d", (2, 8, 8), {"channels": 2, "kernel": 3, "stride": 2, "padding": "same"}, r"padding 'same' needs stride 1"),
    ("conv1d", (2, 8), {"channels": 2, "kernel": [2, 3]}, r"conv1d: kernel needs 1 value\(s\)"),
    ("maxpool2d", (2, 8, 8), {"kernel": 3, "padding": 2}, r"maxpool2d: padding 2x2 is more than half the kernel 3x3"),
    ("avgpool1d", (2, 8), {"kernel": 2, "padding": 2}, r"avgpool1d: padding 2 is more than half the kernel 2"),
    ("maxpool2d", (2, 8, 8), {"kernel": [3, 4], "padding": [1, 3]}, r"padding 1x3 is more than half the kernel 3x4"),
    ("maxpool1d", (3, 4, 5), {"kernel": 2}, r"maxpool1d needs an input of shape \(C, L\), got \(3, 4, 5\)"),
    ("avgpool2d", (2, 3, 9), {"kernel": 4}, r"avgpool2d: kernel 4x4 is larger than the padded input 3x9"),
    ("global_avgpool", (12,), {}, r"global_avgpool needs an input of shape \(C, \*spatial\)"),
])
def test_shape_errors_name_what_is_needed(name, in_shape, opts, message):
    with pytest.raises(ShapeError, match=message):
        _shape(name, in_shape, **opts)


def test_options_are_validated():
    op = LAYERS.get("conv2d")
    with pytest.raises(ValueError):
        op.options(kernel=3)  # channels is required
    with pytest.raises(ValueError):
        op.options(channels=2, kernel=3, padding="valid")
    with pytest.raises(ValueError):
        LAYERS.get("maxpool2d").options(kernel=0)


def _torch_out(name, in_shape, opts):
    """torch's output shape for one sample, or None when torch refuses."""
    nd = 1 if name.endswith("1d") else 2
    kernel = opts["kernel"]
    x = torch.zeros((1,) + tuple(in_shape), dtype=torch.float64)
    try:
        if name.startswith("conv"):
            conv = torch.nn.functional.conv1d if nd == 1 else torch.nn.functional.conv2d
            w = torch.zeros((opts["channels"], in_shape[0] // opts.get("groups", 1)) + (kernel,) * nd, dtype=torch.float64)
            y = conv(x, w, None, opts.get("stride", 1), opts.get("padding", 0), opts.get("dilation", 1), opts.get("groups", 1))
        else:
            f = getattr(torch.nn.functional, f"{name[:3]}_pool{nd}d")
            y = f(x, kernel, opts.get("stride"), opts.get("padding", 0))
    except RuntimeError:
        return None
    return tuple(y.shape[1:])


CONV_GRID = [("conv2d", (4, h, w), dict(channels=2, kernel=k, stride=s, padding=p, dilation=d, groups=gr))
             for h, w, k, s, p, d, gr in itertools.product((3, 6), (5,), (1, 2, 4), (1, 3), (0, 1, "same"), (1, 2), (1, 2))
             if not (p == "same" and s != 1)]
POOL_GRID = [(f"{kind}pool{nd}d", (2,) + (l,) * nd, dict(kernel=k, stride=s, padding=p))
             for kind, nd, l, k, s, p in itertools.product(("max", "avg"), (1, 2), (3, 6), (1, 2, 3, 5), (None, 1, 2), (0, 1, 2))
             if 2 * p <= k]


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("name,in_shape,opts", CONV_GRID + POOL_GRID)
def test_out_shape_agrees_with_torch(name, in_shape, opts):
    """Same output shape as torch, and a ShapeError exactly where torch refuses the input."""
    expected = _torch_out(name, in_shape, opts)
    if expected is None:
        with pytest.raises(ShapeError):
            _shape(name, in_shape, **opts)
    else:
        assert _shape(name, in_shape, **opts) == expected


@pytest.mark.parametrize("name", ["maxpool1d", "maxpool2d", "avgpool1d", "avgpool2d"])
def test_pool_padding_limit_is_torchs(name):
    nd = int(name[-2])
    x = torch.zeros((1, 2) + (9,) * nd, dtype=torch.float64)
    f = getattr(torch.nn.functional, f"{name[:3]}_pool{nd}d")
    f(x, 4, 1, 2)  # padding == kernel/2: both accept
    assert _shape(name, (2,) + (9,) * nd, kernel=4, stride=1, padding=2) == (2,) + (10,) * nd
    with pytest.raises(RuntimeError):
        f(x, 3, 1, 2)
    with pytest.raises(ShapeError):
        _shape(name, (2,) + (9,) * nd, kernel=3, stride=1, padding=2)


# --- torch's conventions -------------------------------------------------------------------------


@pytest.mark.parametrize("name,in_shape,opts", [
    ("maxpool2d", (2, 7, 7), {"kernel": 3, "stride": 2}),
    ("maxpool2d", (1, 6, 5), {"kernel": 3, "stride": 1, "padding": 1}),
    ("maxpool2d", (2, 5, 7), {"kernel": [2, 3], "stride": [1, 2], "padding": [1, 1]}),
    ("maxpool1d", (2, 9), {"kernel": 3, "stride": 2}),
    ("maxpool1d", (2, 8), {"kernel": 4, "stride": 1, "padding": 2}),
])
@pytest.mark.parametrize("fill", [0.0, -2.5])
def test_maxpool_ties_route_to_first_argmax_like_torch(name, in_shape, opts, fill):
    """All elements equal, overlapping windows: every window sends its gradient to its first element
    in row-major window order (never to the -inf padding), accumulating where windows overlap."""
    op = LAYERS.get(name)
    o = op.options(**opts)
    x = np.full((3,) + in_shape, fill)
    y = _fwd(op, x, {}, o)
    assert np.all(y == fill)
    g = np.random.default_rng(0).integers(-5, 6, y.shape).astype(float)  # integers: sums are exact
    gx, grads = op.backward(x, y, g, {}, o)
    tgx, _ = _torch_grads(op, x, {}, g, o)
    assert grads == {}
    np.testing.assert_array_equal(gx, tgx)
    assert gx.sum() == g.sum()


def test_maxpool_overlapping_windows_accumulate():
    op = LAYERS.get("maxpool1d")
    o = op.options(kernel=3, stride=1)
    x = np.array([[[0.0, 1.0, 5.0, 1.0, 0.0]]])  # 5 is the max of all three windows
    gx, _ = op.backward(x, _fwd(op, x, {}, o), np.array([[[1.0, 2.0, 4.0]]]), {}, o)
    np.testing.assert_array_equal(gx, [[[0.0, 0.0, 7.0, 0.0, 0.0]]])


def test_maxpool_complex_step_follows_the_real_argmax():
    op = LAYERS.get("maxpool2d")
    o = op.options(kernel=2)
    x = np.zeros((1, 1, 2, 2), dtype=complex)
    x[0, 0, 1, 1] = 1.0 + 0j
    x[0, 0, 0, 0] = 0.5 + 1e-3j  # a larger imaginary part must not win
    y = _fwd(op, x, {}, o)
    assert y[0, 0, 0, 0] == 1.0 + 0j


def test_avgpool_counts_the_padding_like_torch():
    op = LAYERS.get("avgpool2d")
    o = op.options(kernel=3, stride=1, padding=1)
    x = np.ones((1, 1, 4, 4))
    y = _fwd(op, x, {}, o)
    assert y[0, 0, 0, 0] == pytest.approx(4 / 9)  # corner window: 4 real ones, 5 padded zeros
    assert y[0, 0, 0, 1] == pytest.approx(6 / 9)
    assert y[0, 0, 1, 1] == pytest.approx(1.0)
    np.testing.assert_allclose(y, op.torch(torch.tensor(x), {}, o).numpy(), rtol=1e-15)
    g = np.random.default_rng(1).normal(size=y.shape)
    gx, _ = op.backward(x, y, g, {}, o)
    np.testing.assert_allclose(gx, _torch_grads(op, x, {}, g, o)[0], rtol=1e-12, atol=1e-14)


CONV_CASES = [
    ("conv2d", (4, 7, 6), {"channels": 6, "kernel": [3, 2], "groups": 2, "padding": "same", "dilation": [1, 3]}),
    ("conv2d", (2, 9, 8), {"channels": 3, "kernel": [2, 3], "stride": [2, 3], "padding": [1, 2]}),
    ("conv1d", (4, 10), {"channels": 4, "kernel": 4, "groups": 4, "padding": "same", "bias": False}),
    ("conv1d", (3, 12), {"channels": 2, "kernel": 3, "stride": 4, "dilation": 2}),
]


@pytest.mark.parametrize("name,in_shape,opts", CONV_CASES)
def test_conv_backward_matches_torch_autograd(name, in_shape, opts):
    op = LAYERS.get(name)
    o = op.options(**opts)
    rng = np.random.default_rng(2)
    params = {k: rng.normal(size=info.shape) for k, info in op.params(in_shape, o).items()}
    x = rng.normal(size=(3,) + in_shape)
    y = _fwd(op, x, params, o)
    g = rng.normal(size=y.shape)
    gx, grads = op.backward(x, y, g, params, o)
    tgx, tgrads = _torch_grads(op, x, params, g, o)
    np.testing.assert_allclose(gx, tgx, rtol=1e-10, atol=1e-12)
    assert set(grads) == set(tgrads) == set(params)
    for k in params:
        np.testing.assert_allclose(grads[k], tgrads[k], rtol=1e-10, atol=1e-12, err_msg=k)


@pytest.mark.parametrize("kernel,dilation,lo,hi", [(3, 1, 1, 1), (4, 1, 1, 2), (2, 3, 1, 2), (5, 2, 4, 4), (1, 1, 0, 0)])
def test_same_padding_puts_the_odd_one_on_the_right(kernel, dilation, lo, hi):
    o = LAYERS.get("conv1d").options(channels=1, kernel=kernel, dilation=dilation, padding="same")
    geom = conv_module._Geom("conv1d", 1, (1, 9), o)
    assert (geom.lo, geom.hi, geom.out) == ((lo,), (hi,), (9,))


@pytest.mark.parametrize("name,in_shape,opts", [
    ("conv2d", (6, 8, 8), {"channels": 4, "kernel": [3, 5], "groups": 2}),
    ("conv1d", (3, 10), {"channels": 5, "kernel": 4, "bias": False}),
])
def test_fans_are_torchs(name, in_shape, opts):
    op = LAYERS.get(name)
    o = op.options(**opts)
    info = op.params(in_shape, o)
    w = torch.empty(info["weight"].shape)
    fan_in, fan_out = torch.nn.init._calculate_fan_in_and_fan_out(w)
    assert (info["weight"].fan_in, info["weight"].fan_out) == (fan_in, fan_out)
    assert info["weight"].init == "weight"
    assert ("bias" in info) == opts.get("bias", True)
    if "bias" in info:
        assert info["bias"].shape == (opts["channels"],) and info["bias"].init == "bias"


# --- stacked forward paths -----------------------------------------------------------------------


@pytest.mark.parametrize("chunk_bytes", [conv_module.COLS_BYTES, 1])
def test_conv_stack_paths_agree(monkeypatch, chunk_bytes):
    """x stacked, weights stacked with one x, both stacked, only the bias stacked; whole or in chunks."""
    monkeypatch.setattr(conv_module, "COLS_BYTES", chunk_bytes)
    op = LAYERS.get("conv2d")
    o = op.options(channels=4, kernel=3, groups=2, padding=1, stride=2)
    rng = np.random.default_rng(3)
    n = 5
    xs, ws, bs = rng.normal(size=(n, 2, 4, 7, 6)), rng.normal(size=(n, 4, 2, 3, 3)), rng.normal(size=(n, 4))
    for sx, sw, sb in [(n, 1, 1), (1, n, 1), (n, n, n), (1, 1, n), (1, n, n)]:
        y = op.forward(xs[:sx], {"weight": ws[:sw], "bias": bs[:sb]}, o)
        assert y.shape == (n, 2, 4, 4, 3)
        for i in range(n):
            one = op.forward(xs[min(i, sx - 1)][None], {"weight": ws[min(i, sw - 1)][None], "bias": bs[min(i, sb - 1)][None]}, o)
            np.testing.assert_allclose(y[i], one[0], rtol=1e-12, atol=1e-12)
    # the network broadcasts x (stride 0) when only the weights are stacked: the same values
    y = op.forward(np.broadcast_to(xs[:1], xs.shape), {"weight": ws, "bias": bs[:1]}, o)
    np.testing.assert_allclose(y, op.forward(xs[:1], {"weight": ws, "bias": bs[:1]}, o), rtol=1e-12, atol=1e-12)


def test_conv_forward_on_a_large_stack_completes():
    """The numeric engine stacks hundreds of perturbations: N=256 of a (6, 14, 14) input, conv 16@5x5."""
    op = LAYERS.get("conv2d")
    o = op.options(channels=16, kernel=5)
    rng = np.random.default_rng(4)
    x = rng.normal(size=(256, 2, 6, 14, 14))
    params = {"weight": rng.normal(size=(1, 16, 6, 5, 5)), "bias": rng.normal(size=(1, 16))}
    y = op.forward(x, params, o)
    assert y.shape == (256, 2, 16, 10, 10)
    ref = op.torch(torch.tensor(x[255]), {k: torch.tensor(v[0]) for k, v in params.items()}, o).numpy()
    np.testing.assert_allclose(y[255], ref, rtol=1e-10, atol=1e-10)
    wN = np.broadcast_to(params["weight"], (256, 16, 6, 5, 5))
    assert op.forward(x[:1], {**params, "weight": wN}, o).shape == (256, 2, 16, 10, 10)


def test_global_avgpool_means_every_spatial_axis():
    op = LAYERS.get("global_avgpool")
    o = op.options()
    x = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    y = _fwd(op, x, {}, o)
    assert y.shape == (2, 3) and y.dtype == np.float32
    np.testing.assert_allclose(y, x.mean(axis=(2, 3)))
    gx, _ = op.backward(x, y, np.ones((2, 3), np.float32), {}, o)
    np.testing.assert_allclose(gx, np.full(x.shape, 1 / 20))
