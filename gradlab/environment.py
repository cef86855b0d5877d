"""The run's environment, echoed in every report: versions, devices, seeds, spec hashes."""

from __future__ import annotations

import hashlib
import platform
from pathlib import Path

from .errors import GradlabError


def spec_hash(path: str) -> str | None:
    """The first 16 hex digits of the file's SHA-256; None for what is not a regular file under the spec size cap."""
    import stat

    from .spec import max_spec_bytes

    try:
        st = Path(path).stat()
        if not stat.S_ISREG(st.st_mode) or st.st_size > max_spec_bytes():
            return None
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
    except (OSError, ValueError, GradlabError):
        return None


def environment(results=()) -> dict:
    import numpy
    import torch

    from . import __version__

    cuda = torch.cuda.is_available()
    return {
        "gradlab": __version__,
        "numpy": numpy.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": platform.processor() or platform.machine(),
        "cuda_devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
        "specs": {r.path: {"sha256": spec_hash(r.path), "seed": r.seed, "dtype": r.dtype} for r in results},
    }
