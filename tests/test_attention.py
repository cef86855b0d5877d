"""The attention layer op beyond the registry-wide checks of test_layer_ops.py: shape errors, the causal
mask's independence, and agreement with torch.nn.MultiheadAttention."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gradlab.ops import LAYERS, ShapeError

OP = LAYERS.get("attention")


def _params(shape, o, seed=0):
    rng = np.random.default_rng(seed)
    return {k: rng.normal(0, 0.5, info.shape) for k, info in OP.params(tuple(shape), o).items()}


def _fwd(x, params, o):
    return OP.forward(x[None], {k: v[None] for k, v in params.items()}, o)[0]


@pytest.mark.parametrize("shape,heads", [((4, 6), 4), ((3, 5), 2), ((2, 7), 3)])
def test_feature_size_must_divide_by_heads(shape, heads):
    o = OP.options(heads=heads)
    with pytest.raises(ShapeError, match=rf"D = {shape[1]} is not divisible by heads = {heads}"):
        OP.out_shape(shape, o)
    with pytest.raises(ShapeError):
        OP.params(shape, o)


@pytest.mark.parametrize("shape", [(6,), (2, 3, 4), (1, 1, 1, 4)])
def test_needs_a_two_axis_input(shape):
    with pytest.raises(ShapeError, match=r"\(T, D\) input"):
        OP.out_shape(shape, OP.options())


def test_options_and_parameters():
    o = OP.options()
    assert (o.heads, o.causal, o.bias) == (1, False, True)
    infos = OP.params((5, 8), OP.options(heads=2))
    assert set(infos) == {f"{n}.{w}" for n in "qkvo" for w in ("weight", "bias")}
    for n in "qkvo":
        assert infos[f"{n}.weight"].shape == (8, 8) and infos[f"{n}.weight"].init == "weight"
        assert (infos[f"{n}.weight"].fan_in, infos[f"{n}.weight"].fan_out) == (8, 8)
        assert infos[f"{n}.bias"].shape == (8,) and infos[f"{n}.bias"].init == "bias"
    assert set(OP.params((5, 8), OP.options(bias=False))) == {f"{n}.weight" for n in "qkvo"}
    assert OP.out_shape((5, 8), OP.options(heads=4)) == (5, 8)
    assert OP.complex_safe and OP.linear_in == () and not OP.mixes_batch


@pytest.mark.parametrize("heads", [1, 2])
def test_causal_output_ignores_later_positions(heads):
    shape, o = (6, 4), OP.options(heads=heads, causal=True)
    params = _params(shape, o)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2,) + shape)
    y = _fwd(x, params, o)
    for t in range(shape[0]):
        moved = x.copy()
        moved[:, t + 1:] += rng.normal(0, 3, moved[:, t + 1:].shape)
        y2 = _fwd(moved, params, o)
        np.testing.assert_array_equal(y2[:, : t + 1], y[:, : t + 1])
        if t + 1 < shape[0]:
            assert not np.allclose(y2[:, t + 1:], y[:, t + 1:])
    # and without the mask, the first position does see the last one
    full = OP.options(heads=heads)
    moved = x.copy()
    moved[:, -1] += 1.0
    assert not np.allclose(_fwd(moved, params, full)[:, 0], _fwd(x, params, full)[:, 0])


def test_causal_backward_gives_no_gradient_to_later_positions():
    shape, o = (5, 4), OP.options(heads=2, causal=True)
    params = _params(shape, o)
    x = np.random.default_rng(2).normal(size=(3,) + shape)
    g = np.zeros_like(x)
    g[:, 2] = 1.0  # the loss reads position 2 only
    gx, _ = OP.backward(x, _fwd(x, params, o), g, params, o)
    assert np.all(gx[:, 3:] == 0) and np.any(gx[:, :3] != 0)


@pytest.mark.parametrize("heads,causal,bias", [(1, False, True), (1, True, True), (1, False, False), (2, False, True), (4, True, True)])
def test_matches_torch_multihead_attention(heads, causal, bias):
    shape, o = (5, 8), OP.options(heads=heads, causal=causal, bias=bias)
    params = _params(shape, o, seed=3)
    x = np.random.default_rng(4).normal(size=(3,) + shape)
    mha = torch.nn.MultiheadAttention(8, heads, bias=bias, batch_first=True, dtype=torch.float64)
    with torch.no_grad():
        mha.in_proj_weight.copy_(torch.tensor(np.concatenate([params[f"{n}.weight"] for n in "qkv"])))
        mha.out_proj.weight.copy_(torch.tensor(params["o.weight"]))
        if bias:
            mha.in_proj_bias.copy_(torch.tensor(np.concatenate([params[f"{n}.bias"] for n in "qkv"])))
            mha.out_proj.bias.copy_(torch.tensor(params["o.bias"]))
    xt = torch.tensor(x)
    mask = torch.ones(5, 5, dtype=torch.bool).triu(1) if causal else None
    ref, _ = mha(xt, xt, xt, attn_mask=mask, need_weights=False)
    np.testing.assert_allclose(_fwd(x, params, o), ref.detach().numpy(), rtol=1e-10, atol=1e-12)


def test_float32_forward_matches_float64():
    shape, o = (4, 6), OP.options(heads=3, causal=True)
    params = _params(shape, o)
    x = np.random.default_rng(5).normal(size=(2,) + shape)
    y32 = _fwd(x.astype(np.float32), {k: v.astype(np.float32) for k, v in params.items()}, o)
    assert y32.dtype == np.float32
    np.testing.assert_allclose(y32, _fwd(x, params, o), rtol=1e-4, atol=1e-5)


def test_large_scores_do_not_overflow():
    """The softmax shifts by the row max: scores in the thousands stay finite, also with the mask."""
    shape = (4, 2)
    for causal in (False, True):
        o = OP.options(causal=causal)
        params = {k: 30.0 * v for k, v in _params(shape, o).items()}
        x = 10.0 * np.random.default_rng(6).normal(size=(2,) + shape)
        with np.errstate(over="raise", invalid="raise", divide="raise"):
            y = _fwd(x, params, o)
        assert np.all(np.isfinite(y))
        ty = OP.torch(torch.tensor(x), {k: torch.tensor(v) for k, v in params.items()}, o)
        np.testing.assert_allclose(y, ty.numpy(), rtol=1e-9, atol=1e-9)


def test_stacked_parameters_broadcast_against_stacked_input():
    """N evaluations with their own q weights equal N separate forwards (the engine's perturbation stack)."""
    shape, o = (3, 4), OP.options(heads=2, causal=True)
    params = _params(shape, o)
    rng = np.random.default_rng(7)
    x = rng.normal(size=(2,) + shape)
    wq = params["q.weight"][None] + rng.normal(0, 0.1, (6, 4, 4))
    p = {**{k: v[None] for k, v in params.items()}, "q.weight": wq}
    stacked = OP.forward(np.broadcast_to(x, (6,) + x.shape), p, o)
    for n in range(6):
        np.testing.assert_allclose(stacked[n], _fwd(x, {**params, "q.weight": wq[n]}, o), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("causal", [False, True])
def test_key_bias_is_cancelled_by_the_softmax(causal):
    """q_i . bk shifts row i's scores equally: torch's result does not move with bk, and ours leaves it out
    (an exact zero gradient rather than rounding noise every engine would disagree on)."""
    shape, o = (4, 6), OP.options(heads=2, causal=causal)
    params = _params(shape, o)
    x = np.random.default_rng(8).normal(size=(2,) + shape)
    moved = {**params, "k.bias": params["k.bias"] + 5.0}
    np.testing.assert_array_equal(_fwd(x, moved, o), _fwd(x, params, o))
    _, grads = OP.backward(x, _fwd(x, params, o), np.ones_like(x), params, o)
    assert np.all(grads["k.bias"] == 0) and grads["k.bias"].shape == (6,)

    def with_k_bias_in_torch(p):  # the textbook computation, bk included
        t = {k: torch.tensor(v) for k, v in p.items()}
        xt = torch.tensor(x)
        q, k, v = (torch.nn.functional.linear(xt, t[f"{n}.weight"], t[f"{n}.bias"]).reshape(2, 4, 2, 3).transpose(1, 2) for n in "qkv")
        s = q @ k.transpose(-1, -2) / np.sqrt(3)
        if causal:
            s = s.masked_fill(torch.ones(4, 4, dtype=torch.bool).triu(1), float("-inf"))
        out = (torch.softmax(s, -1) @ v).transpose(1, 2).reshape(2, 4, 6)
        return torch.nn.functional.linear(out, t["o.weight"], t["o.bias"]).numpy()

    for p in (params, moved):
        np.testing.assert_allclose(_fwd(x, p, o), with_k_bias_in_torch(p), rtol=1e-10, atol=1e-12)
