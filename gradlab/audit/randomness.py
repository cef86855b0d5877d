"""`--reseed`: the global random generators a user's op may draw from, reseeded before every call.

An unseeded dropout draws a new mask on every call, so no difference of its forward means
anything (`random forward`). With reseeding, every call into the op starts from the same state
of numpy's legacy global generator (np.random.seed), Python's `random` and torch's default
generator, so the forward is one deterministic function and its backward can be judged. The
states before the audit are put back afterwards.
"""

from __future__ import annotations

import contextlib
import random
import sys
from typing import Iterator

import numpy as np


def reseed(seed: int) -> None:
    """Seed every global generator user code is likely to draw from (torch only when imported)."""
    np.random.seed(seed % 2**32)
    random.seed(seed)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(seed)


@contextlib.contextmanager
def kept() -> Iterator[None]:
    """Put the global generators back as they were (the user's session is not reseeded by an audit)."""
    np_state, py_state = np.random.get_state(), random.getstate()
    torch = sys.modules.get("torch")
    torch_state = torch.random.get_rng_state() if torch is not None else None
    try:
        yield
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
        if torch_state is not None:
            torch.random.set_rng_state(torch_state)
