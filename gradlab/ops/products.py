"""Matrix products of a real and a complex factor as real BLAS products (the complex step's hot path).

numpy casts the real side of a mixed product to complex and runs zgemm: four real products' work and
a cast copy, for a result whose real factor contributes no imaginary part. A real matrix times a
complex one is one real product against the complex factor's memory read as (..., k, 2n) floats
(real and imaginary parts side by side, no copy, where it is contiguous); a complex matrix times a real
one is that product transposed, worth its copy of the complex factor only when the real factor is the
wider one. Where a copy would cost more than it saves, numpy's zgemm it is.
"""

from __future__ import annotations

import numpy as np


def matmul(a, b):
    """a @ b (numpy's broadcasting over leading axes), with a mixed real/complex pair computed in real arithmetic."""
    a_c, b_c = np.iscomplexobj(a), np.iscomplexobj(b)
    if a_c == b_c or np.ndim(a) < 2 or np.ndim(b) < 2 or np.result_type(a, b) != np.complex128:
        return a @ b
    if b_c:
        return _real_by_complex(a, b)
    if b.shape[-1] >= 4 * a.shape[-2]:  # few complex rows against many real columns: transpose, then as above
        return np.swapaxes(_real_by_complex(np.swapaxes(b, -1, -2), np.swapaxes(a, -1, -2)), -1, -2)
    return a @ b.astype(np.result_type(a, b))  # zgemm streams a tall complex factor better than a copy would


COPY_ROWS = 512  # a complex factor that is a view is copied for the real product only against this many rows


def _real_by_complex(a, b):
    if not (b.flags.c_contiguous and b.dtype == np.complex128) and a.shape[-2] < COPY_ROWS:
        # its copy would cost more than the real product saves (10.5M-parameter MLP: 32 rows against a
        # transposed 2048 x 4096 weight, 0.11 s copied vs 0.02 s by zgemm)
        return np.asarray(a, dtype=np.complex128) @ b
    b = np.ascontiguousarray(b, dtype=np.complex128)
    out = np.asarray(a, dtype=np.float64) @ b.view(np.float64)  # (..., m, 2n): re and im interleaved
    return out.view(np.complex128)
