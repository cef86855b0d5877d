"""Raises SystemExit from a class body (at import, but later than the first statement)."""

import numpy as np


class Act:
    def forward(self, z):
        return np.tanh(z)

    raise SystemExit(0)
