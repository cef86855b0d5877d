"""gradlab: gradient verification for neural-network code.

A YAML spec describes a network, its activations and its loss; gradlab computes the loss
gradient three independent ways (hand-written NumPy backprop, finite differences of the
forward pass, PyTorch autograd) and reports where they disagree.
"""

__version__ = "0.1.0"

import os as _os

# numpy's OpenBLAS threads spin 2^28 cycles (~0.1 s) after each product before they sleep: on a machine
# with few cores that spin holds the cores torch's threads need next (autograd after the numeric engine
# took 0.1 s instead of 3 ms). Read once, when numpy loads; an explicit setting wins.
_os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "20")

from .errors import GradlabError, SpecError  # noqa: E402
from .spec import load_spec  # noqa: E402


def check(spec_or_path, **kwargs):
    """Check one spec (a path or a loaded Spec); returns a SpecResult."""
    from . import runner as _check
    from .spec import Spec

    if isinstance(spec_or_path, Spec):
        return _check.run(spec_or_path, **kwargs)
    return _check.check_file(spec_or_path, **kwargs)


def assert_gradients(spec_or_path, **kwargs):
    """Check one spec and raise AssertionError, laid out like pytest's approx, if any gradient disagrees.

    For Python tests: `gradlab.assert_gradients("specs/my_net.yaml")` or with a loaded Spec.
    Keyword arguments go to the check (e.g. `devices=["cpu"]`, `method="central"`). The message
    names each failing tensor (parameter, engine pair, device, dtype), the mismatch count, the
    max absolute and relative difference, and an index / analytic / numeric / autograd table of
    its worst elements. Returns the SpecResult when everything agrees.
    """
    __tracebackhide__ = True  # pytest: show the caller's line, not this one
    result = check(spec_or_path, **kwargs)
    if not result.passed:
        from .report.failure import failure_text

        raise AssertionError(failure_text(result))
    return result


__all__ = ["__version__", "GradlabError", "SpecError", "assert_gradients", "check", "load_spec"]
