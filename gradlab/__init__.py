"""gradlab: gradient verification for neural-network code.

A YAML spec describes a network, its activations and its loss; gradlab computes the loss
gradient three independent ways (hand-written NumPy backprop, finite differences of the
forward pass, PyTorch autograd) and reports where they disagree.
"""

__version__ = "0.1.0"

from .errors import GradlabError, SpecError  # noqa: E402
from .spec import load_spec  # noqa: E402


def check(spec_or_path, **kwargs):
    """Check one spec (a path or a loaded Spec); returns a SpecResult."""
    from . import runner as _check
    from .spec import Spec

    if isinstance(spec_or_path, Spec):
        return _check.run(spec_or_path, **kwargs)
    return _check.check_file(spec_or_path, **kwargs)


__all__ = ["__version__", "GradlabError", "SpecError", "check", "load_spec"]
