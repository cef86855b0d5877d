"""Estimate a spec's memory before anything is allocated, and refuse what will not fit; bound `gradlab stats`' work.

The estimate is an upper bound of the process's peak memory growth for one spec (resident
memory above an interpreter that has imported gradlab, numpy and torch), measured against
`gradlab check` over a sweep of shapes in tests/test_memory.py and benchmarks/bench_memory.py.
It is the largest of the phases a check goes through, each counted as what is still held
from earlier phases plus what the phase itself allocates:

  build       parameters drawn in float64, then cast to the spec's dtype
  analytic    every layer's input and output gradient (Backprop keeps both), the gradients, float64 copies
  numeric     float64 copies of parameters and activations, per-site value/error/kink arrays and their
              step and index arrays, the structured results, the perturbation chunks (full mode)
  autograd    torch copies of parameters and input, the saved activations, gradients, float64 copies
  tolerance   the error model: float64 parameters, activations and their error bounds, per-layer temporaries
  fast        fast mode: random directions, a float64 copy of every parameter per projection, the
              complex perturbed tensor, and one full-size direction per bisection level
  compare     ~16 temporaries of the largest compared tensor, and the relative-error map each failing
              row keeps for the HTML heat map (counted as if every row failed)
  stats       `gradlab stats` (check --stats and the HTML report run it too): two networks while the next
              initialisation is drawn, the backprop at stats.batch, float64 observations per dense layer

plus FIXED_BYTES (torch's first kernels, BLAS buffers, allocator slack) and, where cuda rows will run
(autograd among the engines, a cuda device asked for, and CUDA usable here: `cuda_usable`),
CUDA_CONTEXT_BYTES from the autograd phase on: torch creates the context on the first cuda tensor, after
the analytic and numeric engines have run, and holds it to the end. Cuda rows on a machine without CUDA
are skipped (and reported as not checked), so they cost nothing. `gradlab stats` is numpy alone and
never starts a context. The spec is read duck-typed (layer.type == "dense"), so this
module does not import gradlab.spec: spec imports memory, never the other way round.

A custom layer (`type: custom`) is counted with the width it receives and no parameters: its
own arrays are the user's.
"""

from __future__ import annotations

import glob
import math
import os
import sys
from dataclasses import dataclass

from .errors import GradlabError, SpecError

# The numeric engine evaluates perturbations in chunks of at most this many bytes.
NUMERIC_CHUNK_BYTES = 64 * 2**20
# What the engines allocate once whatever the spec: torch's first kernels and thread pools, the BLAS
# buffers, the allocator's slack (a tiny spec grows the process by ~25 MiB; measured).
FIXED_BYTES = 96 * 2**20
# Host memory of a CUDA context (torch initialises it on the first cuda tensor).
CUDA_CONTEXT_BYTES = 1 * 2**30
# The model counts arrays; RSS also holds small objects and pages the allocator keeps. Measured
# peaks stay below the model, this covers the rest.
MARGIN = 1.25
FULL_MODE_MAX_PARAMS = 250_000  # runner.FULL_MODE_MAX_PARAMS (check.mode: auto), read without importing the runner

# `gradlab stats`: initialisations at most, and forward multiply-adds at most (seeds x batch x the forward's
# multiply-adds per sample, see forward_macs; the backward costs ~2 forwards more), about a minute of one core.
# Measured (one busy core): dense layers ~8e8 multiply-adds/s (10 x 256 relu net, batch 256: 80 seeds in 17 s),
# numpy convolutions ~3e8/s (a 3x32x32 two-conv net, 5.4M per sample, batch 8: 40 seeds in 6 s); 3e10 is
# ~40 s and ~100 s of them.
STATS_MAX_SEEDS = 10_000
STATS_WORK_BUDGET = 3 * 10**10
# Layers whose unit (channel) is the first per-sample axis: each weight is reused at every position after it.
# Everything else with parameters acts on the last axis (dense, layernorm, attention): reused at every position before it.
CHANNEL_FIRST_OPS = ("conv1d", "conv2d", "batchnorm", "groupnorm")
F64 = 8


@dataclass(frozen=True)
class Shape:
    """What the estimate reads of a spec: sizes only."""

    itemsize: int  # 4 (float32) or 8 (float64)
    batch: int
    widths: tuple[int, ...]  # input dim, then every layer's output width
    tensors: tuple[int, ...]  # element counts of the parameter tensors
    dense: int  # dense layers

    @property
    def params(self) -> int:
        return sum(self.tensors)

    @property
    def largest(self) -> int:
        return max(self.tensors, default=0)


def _get(obj, key, default=None):
    return obj.get(key, default) if isinstance(obj, dict) else getattr(obj, key, default)


def layer_sizes(spec) -> list[tuple[int, int, int]]:
    """(n_in, n_out, n_params) of every layer with parameters (elements per sample in and out)."""
    if hasattr(spec, "layer_table"):
        return [(math.prod(r.in_shape), math.prod(r.out_shape), r.params) for r in spec.layer_table() if r.params]
    dim, out = int(spec.input.dim), []
    for layer in spec.network.layers:
        if _get(layer, "type") == "dense":
            units, bias = int(_get(layer, "units")), _get(layer, "bias", True)
            k = dim + 1 if bias == "folded" else dim
            out.append((dim, units, k * units + (units if bias is True else 0)))
            dim = units
    return out


def forward_macs(spec) -> int:
    """Multiply-adds of one sample's forward pass: each weight once per position it is applied at (a conv's
    filters at every output position, a dense layer on (T, D) at each of T rows), attention's scores and
    weighted sum (2 T^2 D), plus one per unit of every layer's output and workspace (activations, pooling)."""
    if not hasattr(spec, "layer_table"):  # a plain dense spec (duck-typed): every weight once per sample
        s = shape_of(spec)
        return max(1, s.params + sum(s.widths))
    total = int(spec.input.size)
    for r in spec.layer_table():
        out = tuple(int(d) for d in r.out_shape)
        total += max(math.prod(out), int(r.workspace))
        if not r.params:
            continue
        kind = r.projection or getattr(r.layer, "type", "")
        channel_first = (kind in CHANNEL_FIRST_OPS or kind == "conv") and len(out) > 1
        positions = math.prod(out[1:]) if channel_first else math.prod(out[:-1])
        total += int(r.params) * max(1, positions)
        if kind == "attention" and len(r.in_shape) >= 2:
            t, d = int(r.in_shape[0]), int(r.in_shape[-1])
            total += 2 * t * t * d
    return max(1, total)


def shape_of(spec, *, batch: int | None = None) -> Shape:
    """The sizes of `spec` (at `batch` rows instead of input.batch when given)."""
    itemsize = 4 if str(getattr(spec, "dtype", "float64")) == "float32" else 8
    rows = int(batch if batch is not None else spec.input.batch)
    if hasattr(spec, "layer_table"):
        table = spec.layer_table()
        widths = (spec.input.size,) + tuple(max(math.prod(r.out_shape), r.workspace) for r in table)
        tensors = tuple(r.params for r in table if r.params)
        return Shape(itemsize, rows, widths, tensors, sum(1 for r in table if r.layer.type == "dense"))
    dim = int(spec.input.dim)
    widths, tensors, dense = [dim], [], 0
    for layer in spec.network.layers:
        kind = _get(layer, "type")
        if kind == "dense":
            units, bias = int(_get(layer, "units")), _get(layer, "bias", True)
            tensors.append((dim + (1 if bias == "folded" else 0)) * units)
            if bias is True:
                tensors.append(units)
            dim, dense = units, dense + 1
        elif kind == "activation":
            trainable = _get(layer, "trainable", False)
            tensors += [1] * (len(trainable) if isinstance(trainable, (list, tuple)) else 2 if trainable is True else 0)
        widths.append(dim)
    return Shape(itemsize, rows, tuple(widths), tuple(tensors), dense)


def _devices(spec, devices=None) -> list[str]:
    check = getattr(spec, "check", None)
    return list(dict.fromkeys(devices or getattr(check, "devices", None) or ["cpu"]))


def check_phases(spec, *, mode: str | None = None, devices=None, engines=None) -> dict[str, int]:
    """Peak bytes of each phase of `gradlab check` on `spec` (what earlier phases still hold included).

    `mode`, `devices` and `engines` are the command line's overrides of the spec's `check` section.
    """
    s = shape_of(spec)
    check = getattr(spec, "check", None)
    engines = set(engines or getattr(check, "engines", None) or ("analytic", "numeric", "autograd"))
    mode = mode or getattr(check, "mode", "auto")
    full = mode == "full" or (mode == "auto" and s.params <= FULL_MODE_MAX_PARAMS)
    d, B, P = s.itemsize, s.batch, s.params
    wrt = bool(getattr(check, "wrt_input", False)) and full
    x_in = B * s.widths[0]
    Q = P + (x_in if wrt else 0)  # elements compared
    T = max(s.largest, x_in if wrt else 0)  # the largest compared tensor
    S = B * sum(s.widths)  # every activation, input included
    A = B * max(s.widths)  # the widest activation
    io = B * (s.widths[0] + s.widths[-1])  # input batch and targets
    cast64 = F64 if d != F64 else 0  # a float64 copy of something already float64 is not made

    phases: dict[str, int] = {}
    phases["build"] = F64 * (P + io) + d * (P + io)
    held = d * (P + io)
    phases["analytic"] = held + 2 * d * S + (d + cast64) * Q + 4 * d * A
    if "analytic" in engines:
        held += F64 * Q
    if "numeric" in engines and full:
        site = max(B * w for w in s.widths)  # the widest site: dL/dh for every sample and unit
        phases["numeric"] = held + F64 * (P + 2 * S) + S + 17 * Q + F64 * (10 * site + 6 * s.largest) + 2 * NUMERIC_CHUNK_BYTES
        held += 17 * Q  # value, error estimate and kink flags
    devices = _devices(spec, devices) if "autograd" in engines else []
    for _ in devices:
        phases["autograd"] = max(phases.get("autograd", 0), held + d * (2 * P + x_in + 3 * S + 4 * A + s.largest) + cast64 * Q)
        held += F64 * Q
    phases["tolerance"] = held + F64 * (P + 3 * S + 2 * Q + 2 * T) + F64 * max(14 * A, 6 * s.largest)
    held += F64 * Q
    candidates = (("analytic" in engines) + len(devices))
    if not full and "numeric" in engines and candidates:
        depth = math.ceil(math.log2(max(s.largest, 2)))  # a failing projection is bisected down to one element
        phases["fast"] = held + F64 * P + F64 * s.largest * (16 + depth) + 2 * 16 * A
    numeric_rows = len(devices) + ("analytic" in engines) if ("numeric" in engines and full) else 0
    pairs = numeric_rows + ("analytic" in engines) * len(devices)
    phases["compare"] = held + F64 * pairs * Q + 18 * F64 * T
    return phases


def stats_bytes(spec, *, batch: int | None = None) -> int:
    """Peak bytes of `gradlab stats` on `spec` at `batch` rows (default: stats.batch, else input.batch)."""
    stats = getattr(spec, "stats", None)
    batch = batch or getattr(stats, "batch", None) or spec.input.batch
    s = shape_of(spec, batch=batch)
    d, B, P = s.itemsize, s.batch, s.params
    S, A = B * sum(s.widths), B * max(s.widths)
    io = B * (s.widths[0] + s.widths[-1])
    cast64 = F64 if d != F64 else 0
    nets = F64 * (P + io) + 2 * d * (P + io)  # the next network is drawn while the last one is still referenced
    backprop = 2 * d * S + d * P  # layer inputs, output gradients, gradients
    observations = 3 * F64 * S + 2 * cast64 * P  # z, delta and f'(z) per dense layer; float64 weights and gradients
    return nets + backprop + observations + 6 * F64 * A


def cuda_usable() -> bool:
    """Whether cuda rows could run here, decided without starting torch where that can be avoided (this runs
    on every spec's validation). torch already imported: its answer. Otherwise CUDA_VISIBLE_DEVICES set to
    none, or Linux without the NVIDIA driver (/proc/driver/nvidia, /dev/nvidia<N>), or macOS: no. Elsewhere
    assume yes, so the estimate stays an upper bound."""
    torch = sys.modules.get("torch")
    if torch is not None:
        return bool(torch.cuda.is_available())
    if os.environ.get("CUDA_VISIBLE_DEVICES", "unset").strip() in ("", "-1"):
        return False
    if sys.platform.startswith("linux"):
        return os.path.exists("/proc/driver/nvidia/version") or bool(glob.glob("/dev/nvidia[0-9]*"))
    return sys.platform != "darwin"  # torch has no CUDA build for macOS


# The phases that run once cuda rows have created the CUDA context (check_phases' order: build, analytic,
# numeric, then autograd on each device, the error model, fast mode's projections, the comparisons).
CUDA_PHASES = ("autograd", "tolerance", "fast", "compare")


def cuda_runs(spec, *, devices=None, engines=None) -> bool:
    """Whether checking `spec` will create a CUDA context: autograd runs, on a cuda device, and CUDA is usable here."""
    check = getattr(spec, "check", None)
    engines = engines or getattr(check, "engines", None) or ("analytic", "numeric", "autograd")
    return ("autograd" in engines and any(str(d).startswith("cuda") for d in _devices(spec, devices)) and cuda_usable())


def estimate_phases(spec, **overrides) -> dict[str, int]:
    """Every phase's peak bytes with the margin and the fixed part: what `estimate_bytes` takes the max of.

    The CUDA context is counted in the phases that hold it (CUDA_PHASES), and only when cuda rows will run.
    """
    phases = dict(check_phases(spec, **overrides))
    phases["stats"] = stats_bytes(spec)
    cuda = CUDA_CONTEXT_BYTES if cuda_runs(spec, devices=overrides.get("devices"), engines=overrides.get("engines")) else 0
    return {k: int(MARGIN * v) + FIXED_BYTES + (cuda if k in CUDA_PHASES else 0) for k, v in phases.items()}


def estimate_bytes(spec, **overrides) -> int:
    """An upper bound of the peak memory growth of checking `spec` (gradlab check, --stats, --report).

    `overrides`: mode, devices, engines as given on the command line (default: the spec's).
    """
    return max(estimate_phases(spec, **overrides).values())


PHASE_NAMES = {
    "build": "drawing the parameters", "analytic": "the analytic engine", "numeric": "the numeric engine",
    "autograd": "the autograd engine", "tolerance": "the error model", "fast": "fast mode's projections",
    "compare": "the comparisons", "stats": "gradlab stats",
}


def _gib(n: float) -> str:
    return f"{n / 2**30:.3g} GiB" if n >= 2**28 else f"{n / 2**20:.3g} MiB"


def check_memory(spec, file: str, **overrides) -> None:
    """Refuse a spec whose check, or whose `stats:` settings, would not fit in check.memory_limit.

    spec.validate calls it; the command line may call it again with its overrides (mode, devices, engines).
    """
    limit = spec.check.memory_limit
    phases = estimate_phases(spec, **overrides)
    stats_need = phases.pop("stats")
    need = max(phases.values())
    if need > limit:
        where = max(phases, key=phases.get)
        cuda = where in CUDA_PHASES and cuda_runs(spec, devices=overrides.get("devices"), engines=overrides.get("engines"))
        held = f", {_gib(CUDA_CONTEXT_BYTES)} of it the CUDA context the cuda rows start" if cuda else ""
        fix = "shrink the network or batch, leave cuda out of check.devices, or raise check.memory_limit" if cuda else \
            "shrink the network or batch, or raise check.memory_limit"
        raise SpecError(file, "network", f"needs ~{_gib(need)} (peak in {PHASE_NAMES[where]}{held}), limit {_gib(limit)}; {fix}")
    stats = getattr(spec, "stats", None)
    # The work budget binds what the spec asks of stats; with its defaults (8 seeds at input.batch) stats
    # costs less than the check itself, so a big check spec is not refused for a stats run it never asked for.
    asked = set(getattr(stats, "model_fields_set", ()) or ()) & {"seeds", "batch"}
    check_stats(spec, file, seeds=getattr(stats, "seeds", 8), batch=getattr(stats, "batch", None), need=stats_need, work=bool(asked))


def check_stats(spec, file: str, *, seeds: int, batch: int | None = None, seeds_key: str = "stats.seeds",
                batch_key: str | None = None, need: int | None = None, work: bool = True) -> None:
    """Refuse `gradlab stats` settings beyond check.memory_limit, STATS_MAX_SEEDS or (with `work`) the
    work budget, naming the key to change. stats.run calls it with the command line's values.

    `seeds_key` / `batch_key` name where the values came from (`--seeds`, `--batch` on the command line).
    """
    limit = spec.check.memory_limit
    rows = batch or spec.input.batch
    batch_key = batch_key or ("stats.batch" if batch else "input.batch")
    if need is None:
        need = int(MARGIN * stats_bytes(spec, batch=rows)) + FIXED_BYTES
    if need > limit:
        raise SpecError(file, batch_key, f"gradlab stats at batch {rows:,} needs ~{_gib(need)}, limit {_gib(limit)}; "
                        f"lower {batch_key} or raise check.memory_limit")
    if seeds > STATS_MAX_SEEDS:
        raise SpecError(file, seeds_key, f"expected at most {STATS_MAX_SEEDS:,} initialisations, got {seeds:,}; "
                        f"the mean over a few dozen is already stable (default 8)")
    macs = forward_macs(spec)
    cost = seeds * rows * macs
    if work and cost > STATS_WORK_BUDGET:
        most = STATS_WORK_BUDGET // (rows * macs)
        fix = f"use at most {most:,} seed(s) at this batch, or lower {batch_key}" if most >= 1 else f"lower {batch_key}"
        if batch_key == "input.batch":
            fix += " (or set a smaller stats.batch / --batch)"
        raise SpecError(file, seeds_key if most >= 1 else batch_key,
                        f"{seeds:,} initialisations x batch {rows:,} x {macs:,} multiply-adds per sample (weights at every position "
                        f"they are applied, and units) is {cost:.2g}, over gradlab stats' budget of {STATS_WORK_BUDGET:.0e} (about a minute of one core); {fix}")


# --- gradlab compare / audit: the user's declared sizes, bounded before anything is drawn -------------------

# Bytes one case of `gradlab compare` (and of `gradlab audit --kind module`) holds per element of its inputs:
# the float64 draw and its low-dtype rounding, each of the three runs' casts, outputs, cotangents, gradients and
# autograd's saved tensors, the rule's float64 temporaries (~20 float64 copies). The search draws every declared
# size up to twice over (kernels/search.size_strategy), so the largest case is what is counted.
KERNEL_BYTES_PER_ELEMENT = 160
KERNEL_SIZE_GROWTH = 2
# The limit they are held to: check.memory_limit's default.
DEFAULT_LIMIT = 2 * 2**30


def kernel_bytes(shapes, *, growth: int = KERNEL_SIZE_GROWTH) -> int:
    """Peak bytes of one compare case at the largest sizes the search draws; `shapes`: {name: shape}."""
    return KERNEL_BYTES_PER_ELEMENT * sum(math.prod(growth * int(d) for d in shape) for shape in shapes.values()) + FIXED_BYTES


def check_kernel_inputs(where: str, shapes, fix: str, *, growth: int = KERNEL_SIZE_GROWTH, limit: int = DEFAULT_LIMIT) -> None:
    """Refuse declared inputs (example_inputs(), --shapes, --case) whose largest case would not fit in `limit`.

    `where` starts the message (`--shapes`, `my_kernels.py:Fused: example_inputs`); `fix` says how to lower them.
    """
    need = kernel_bytes(shapes, growth=growth)
    if need > limit:
        total = sum(math.prod(int(d) for d in shape) for shape in shapes.values())
        drawn = f" (the search also draws each size up to {growth}x)" if growth > 1 else ""
        raise GradlabError(f"{where}: {total:,} input elements need ~{_gib(need)} per case{drawn}, limit {_gib(limit)}; {fix}")


# `gradlab audit` differences a layer's input and parameters element by element: ~6 forwards per element
# (Richardson's four quotients and the noise probe's two), each touching every element, so a case with E
# elements costs ~6 E^2; this keeps one case within a few seconds (E <= ~20,000).
AUDIT_FORWARDS_PER_ELEMENT = 6
AUDIT_CASE_WORK = 25 * 10**8


def audit_max_elements() -> int:
    return math.isqrt(AUDIT_CASE_WORK // AUDIT_FORWARDS_PER_ELEMENT)


def audit_elements_problem(elements: int, what: str, fix: str) -> str | None:
    """What is wrong with an audited op whose largest case differences `elements` elements (None: within the bound).

    `what` lists what was counted (`x (6, 1000000) and W (3, 2)`); `fix` says how to lower it.
    """
    most = audit_max_elements()
    if elements <= most:
        return None
    return (f"a case differences {what}, {elements:,} elements one by one (~{AUDIT_FORWARDS_PER_ELEMENT} forwards each), "
            f"over gradlab audit's limit of {most:,} elements per case; {fix}")


def check_audit_elements(where: str, elements: int, what: str, fix: str) -> None:
    """Refuse (a GradlabError starting with `where`) what audit_elements_problem finds."""
    problem = audit_elements_problem(elements, what, fix)
    if problem:
        raise GradlabError(f"{where}: {problem}")


# The judge holds ~8 float64 arrays of a forward's output (its float64 copy, the upstream gradient, their product,
# the second and third forwards of the randomness check): an output beyond this many elements is refused before any of them.
AUDIT_OUTPUT_COPIES = 8


def audit_max_output(limit: int = DEFAULT_LIMIT) -> int:
    return limit // (AUDIT_OUTPUT_COPIES * F64)
