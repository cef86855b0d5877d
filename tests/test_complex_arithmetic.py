"""The complex step's fast paths compute what plain complex arithmetic computes.

Mixed real/complex matrix products run as real BLAS products (ops.products), and an elementwise activation
whose input moves on few units runs in real arithmetic on the others (network._elementwise): both must give
numpy's own complex results, to rounding.
"""

import numpy as np
import pytest

from gradlab.network import SPARSE_TANGENT_MIN, _elementwise
from gradlab.ops import ACTIVATIONS
from gradlab.ops.products import matmul

RNG = np.random.default_rng(7)


def _c(shape):
    return RNG.standard_normal(shape) + 1j * RNG.standard_normal(shape)


@pytest.mark.parametrize("a_shape, b_shape", [
    ((5, 7), (7, 3)),  # complex rows tall against few columns: zgemm
    ((3, 7), (7, 40)),  # few complex rows against many real columns: transposed real product
    ((2, 4, 6, 5), (5, 9)),  # stacked left factor
    ((6, 5), (3, 5, 30)),  # stacked right factor broadcast against one left
    ((3, 1, 6, 5), (4, 5, 30)),  # both stacked, broadcast
])
@pytest.mark.parametrize("complex_side", ["a", "b", "both", "neither"])
def test_matmul_is_numpys_product(a_shape, b_shape, complex_side):
    a = _c(a_shape) if complex_side in ("a", "both") else RNG.standard_normal(a_shape)
    b = _c(b_shape) if complex_side in ("b", "both") else RNG.standard_normal(b_shape)
    want = a @ b
    got = matmul(a, b)
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-13 * np.abs(want).max())


def test_matmul_reads_views_and_transposes():
    a = RNG.standard_normal((8, 6))[:, ::2]  # a strided real view
    b = _c((9, 3)).T  # a transposed complex view
    np.testing.assert_allclose(matmul(a, b), a @ b, rtol=1e-13)


@pytest.mark.parametrize("name", [n for n in ACTIVATIONS.names() if ACTIVATIONS.get(n).elementwise])
def test_activation_on_a_sparse_tangent_is_the_complex_evaluation(name):
    op = ACTIVATIONS.get(name)
    hp = dict(op.hyper)
    u = 3 * RNG.standard_normal(2 * SPARSE_TANGENT_MIN)
    tangent = np.zeros_like(u)
    moving = RNG.random(u.size) < 0.1
    tangent[moving] = 1e-20 * RNG.standard_normal(int(moving.sum()))
    z = u + 1j * tangent
    got = _elementwise(op, z, hp)
    assert got.dtype == np.complex128 and got.shape == z.shape
    # moving units: the complex evaluation itself; the others: f(u) in real arithmetic, no tangent
    np.testing.assert_array_equal(got[moving], op.forward(z[moving], hp))
    np.testing.assert_array_equal(got.real[~moving], op.forward(u, hp)[~moving])
    assert np.all(got.imag[~moving] == 0)
    # which is the complex evaluation of the whole input, to the rounding of f's real part
    want = op.forward(z, hp)
    np.testing.assert_allclose(got.imag, np.imag(want), rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(got.real, np.real(want), rtol=0, atol=1e-14 * (1 + np.abs(u).max()))
