"""Estimate a spec's memory before anything is allocated, and refuse what will not fit."""

from __future__ import annotations

from .errors import SpecError

# The numeric engine evaluates perturbations in chunks of at most this many bytes.
NUMERIC_CHUNK_BYTES = 64 * 2**20


def layer_sizes(spec) -> list[tuple[int, int, int]]:
    """(n_in, n_out, n_params) of every dense layer."""
    from .ops import dense as dense_op
    from .spec import DenseSpec

    dim, out = spec.input.dim, []
    for layer in spec.network.layers:
        if isinstance(layer, DenseSpec):
            shape = dense_op.weight_shape(dim, layer.units, spec.network.convention, layer.bias)
            n = shape[0] * shape[1] + (layer.units if layer.bias is True else 0)
            out.append((dim, layer.units, n))
            dim = layer.units
    return out


def estimate_bytes(spec) -> int:
    """Parameters (held by ~6 engines/copies), activations (~4 copies), plus the difference chunks."""
    sizes = layer_sizes(spec)
    n_params = sum(n for _, _, n in sizes)
    widths = spec.input.dim + sum(n_out for _, n_out, _ in sizes) * 2  # pre- and post-activation
    activations = spec.input.batch * widths
    return 8 * (6 * n_params + 4 * activations) + 2 * NUMERIC_CHUNK_BYTES


def _gib(n: float) -> str:
    return f"{n / 2**30:.3g} GiB" if n >= 2**28 else f"{n / 2**20:.3g} MiB"


def check_memory(spec, file: str) -> None:
    need, limit = estimate_bytes(spec), spec.check.memory_limit
    if need > limit:
        raise SpecError(file, "network", f"needs ~{_gib(need)}, limit {_gib(limit)}; shrink the network or batch, or raise check.memory_limit")
