"""Every registered layer op, at each of its entry's examples: forward vs torch mirror, hand-written
backward vs finite differences, stacked evaluation, dtypes. Adding an op adds its cases here."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gradlab.ops import LAYERS

CASES = [pytest.param(op, shape, opts, id=f"{op.name}-{'x'.join(map(str, shape))}-{i}")
         for op in LAYERS for i, (shape, opts) in enumerate(op.examples)]
BATCH = 3


def _setup(op, shape, opts, seed=0, dtype=np.float64, batch=BATCH):
    rng = np.random.default_rng(seed)
    o = op.options(**opts)
    out = op.out_shape(tuple(shape), o)
    params = {k: rng.normal(0, 0.5, info.shape) + (1.0 if info.init == "ones" else 0.0) for k, info in op.params(tuple(shape), o).items()}
    buffers = op.buffers(np.random.default_rng(seed + 1), batch, tuple(shape), o) if op.buffers else {}
    x = rng.normal(0, 1, (batch,) + tuple(shape))
    g = rng.normal(0, 1, (batch,) + tuple(out))
    return o, out, {k: v.astype(dtype) for k, v in params.items()}, buffers, x.astype(dtype), g.astype(dtype)


def _fwd(op, x, params, buffers, o):
    """Unstacked forward through the stacked convention."""
    p = {**{k: v[None] for k, v in params.items()}, **buffers}
    return op.forward(x[None], p, o)[0]


def _check_ops_exist():
    assert len(LAYERS) >= 1


@pytest.mark.parametrize("op,shape,opts", CASES)
def test_forward_shape_and_torch_mirror(op, shape, opts):
    o, out, params, buffers, x, _ = _setup(op, shape, opts)
    y = _fwd(op, x, params, buffers, o)
    assert y.shape == (BATCH,) + tuple(out)
    assert y.dtype == np.float64
    ty = op.torch(torch.tensor(x), {k: torch.tensor(np.asarray(v)) for k, v in {**params, **buffers}.items()}, o)
    np.testing.assert_allclose(ty.detach().numpy(), y, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("op,shape,opts", CASES)
def test_backward_matches_finite_differences(op, shape, opts):
    o, out, params, buffers, x, g = _setup(op, shape, opts)
    y = _fwd(op, x, params, buffers, o)
    gx, grads = op.backward(x, y, g, {**params, **buffers}, o)
    assert set(grads) == set(params)

    def numeric(name):
        base = x if name is None else params[name]
        out_ = np.zeros(base.shape)
        for idx in np.ndindex(base.shape):
            vals = []
            for s in (1.0, -1.0):
                moved = base.copy()
                moved[idx] += s * 1e-6
                if name is None:
                    vals.append(np.sum(g * _fwd(op, moved, params, buffers, o)))
                else:
                    vals.append(np.sum(g * _fwd(op, x, {**params, name: moved}, buffers, o)))
            out_[idx] = (vals[0] - vals[1]) / 2e-6
        return out_

    np.testing.assert_allclose(gx, numeric(None), rtol=1e-5, atol=1e-7, err_msg="dL/dx")
    for name in params:
        assert grads[name].shape == params[name].shape, name
        np.testing.assert_allclose(grads[name], numeric(name), rtol=1e-5, atol=1e-7, err_msg=name)


@pytest.mark.parametrize("op,shape,opts", CASES)
def test_stacked_evaluation_equals_one_at_a_time(op, shape, opts):
    o, out, params, buffers, x, _ = _setup(op, shape, opts)
    rng = np.random.default_rng(5)
    xs = x[None] + rng.normal(0, 0.1, (4,) + x.shape)
    stacked = op.forward(xs, {**{k: v[None] for k, v in params.items()}, **buffers}, o)
    assert stacked.shape == (4, BATCH) + tuple(out)
    for n in range(4):
        np.testing.assert_allclose(stacked[n], _fwd(op, xs[n], params, buffers, o), rtol=1e-12, atol=1e-12)
    for name in params:
        ps = params[name][None] + rng.normal(0, 0.1, (4,) + params[name].shape)
        stacked = op.forward(np.broadcast_to(x, (4,) + x.shape), {**{k: v[None] for k, v in params.items()}, name: ps, **buffers}, o)
        for n in range(4):
            np.testing.assert_allclose(stacked[n], _fwd(op, x, {**params, name: ps[n]}, buffers, o), rtol=1e-12, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("op,shape,opts", CASES)
def test_float32_stays_float32(op, shape, opts):
    o, out, params, buffers, x, g = _setup(op, shape, opts, dtype=np.float32)
    y = _fwd(op, x, params, buffers, o)
    assert y.dtype == np.float32
    gx, grads = op.backward(x, y, g, {**params, **buffers}, o)
    assert gx.dtype == np.float32 and all(v.dtype == np.float32 for v in grads.values())


@pytest.mark.parametrize("op,shape,opts", [c for c in CASES if c.values[0].complex_safe])
def test_complex_step_agrees_with_backward(op, shape, opts):
    o, out, params, buffers, x, g = _setup(op, shape, opts)
    gx, _ = op.backward(x, _fwd(op, x, params, buffers, o), g, {**params, **buffers}, o)
    h = 1e-20
    flat = np.flatnonzero(np.ones(x.shape))[:12]
    for i in flat:
        xc = x.astype(complex)
        xc.reshape(-1)[i] += 1j * h
        d = np.sum(g * np.imag(_fwd(op, xc, params, buffers, o))) / h
        assert d == pytest.approx(gx.reshape(-1)[i], rel=1e-8, abs=1e-10)


@pytest.mark.parametrize("op,shape,opts", [c for c in CASES if not c.values[0].mixes_batch])
def test_samples_are_independent_unless_declared(op, shape, opts):
    o, out, params, buffers, x, _ = _setup(op, shape, opts)
    y = _fwd(op, x, params, buffers, o)
    for b in range(BATCH):
        one = _fwd(op, x[b:b + 1], params, {k: v[b:b + 1] for k, v in buffers.items()}, o)
        np.testing.assert_allclose(one[0], y[b], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("op,shape,opts", [c for c in CASES if c.values[0].moved_unit is not None])
def test_a_moved_unit_is_the_forward_of_the_moved_input(op, shape, opts):
    """An op's `moved_unit` (the numeric engine carries a site's perturbed unit through it) gives the forward of
    the input with that unit moved: the one output unit that changes and its value, every other unit unchanged --
    for every input unit of every sample, real and complex moves (a max window's winner changes too)."""
    o, out, params, buffers, x, _ = _setup(op, shape, opts)
    y = _fwd(op, x, params, buffers, o)
    n = x[0].size
    b, j = np.repeat(np.arange(BATCH), n), np.tile(np.arange(n), BATCH)
    rng = np.random.default_rng(1)
    tied = np.round(x)  # whole numbers: windows whose top values tie
    y_tied = _fwd(op, tied, params, buffers, o)
    for base, out, v in ((x, y, x.reshape(BATCH, -1)[b, j] + rng.normal(0, 2, b.size)),
                         (x, y, x.reshape(BATCH, -1)[b, j] + 1e-3j * rng.normal(0, 1, b.size)),
                         (tied, y_tied, tied.reshape(BATCH, -1)[b, j] + 1e-3j * rng.normal(0, 1, b.size))):
        radius = np.full(b.size, 0.25) if op.kinks else None
        moved = op.moved_unit(base, out, b, j, v, o, radius)
        if moved is None:
            continue
        j_out, v_out, near = moved
        assert (near is None) == (not op.kinks)
        assert not (op.kinks and base is tied) or near.any()  # ties with a moving tangent are reported
        for p in range(0, b.size, 7):
            xm = base.astype(v.dtype)
            xm.reshape(BATCH, -1)[b[p], j[p]] = v[p]
            want = _fwd(op, xm, params, buffers, o).reshape(BATCH, -1)
            got = out.astype(v.dtype).reshape(BATCH, -1)
            got[b[p], j_out[p]] = v_out[p]
            np.testing.assert_allclose(got, want, rtol=1e-14, atol=1e-14, err_msg=f"sample {b[p]}, unit {j[p]}")
            if op.kinks:  # the near-kink report of the whole moved input, for that sample
                assert near[p] == np.asarray(op.near_kink(xm[b[p]:b[p] + 1][None], o, 0.25)).any(), f"sample {b[p]}, unit {j[p]}"


def test_every_op_with_a_moved_unit_has_an_example_it_applies_to():
    for op in LAYERS:
        if op.moved_unit is None:
            continue
        applies = []
        for shape, opts in op.examples:
            o, out, params, buffers, x, _ = _setup(op, shape, opts)
            y = _fwd(op, x, params, buffers, o)
            applies.append(op.moved_unit(x, y, np.zeros(1, int), np.zeros(1, int), x.reshape(BATCH, -1)[:1, 0], o, None) is not None)
        assert any(applies), f"{op.name}: moved_unit is None at every example, so no test exercises it"
