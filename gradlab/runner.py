"""Spec -> Network -> the three engines -> comparisons: one SpecResult per spec."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable


import numpy as np

from . import compare as cmp
from . import diagnosis as dg
from . import fastcheck
from . import hazards
from . import tolerance
from .engines import analytic, autograd, numeric
from .gradients import INPUT, Gradients
from .network import Network, build
from .spec import Spec, load_spec


@dataclass
class SpecResult:
    path: str
    name: str
    dtype: str
    comparisons: list[cmp.Comparison]
    n_params: int = 0
    method: str | None = None
    mode: str = "full"
    seconds: float = 0.0
    engines: dict[str, float] = field(default_factory=dict)  # label -> seconds
    seed: int = 0
    network: str = ""
    notes: list[str] = field(default_factory=list)
    error: str | None = None  # the spec could not be checked: the one-line reason (`Error: ...`)
    error_kind: str = ""  # user (bad spec, user code failed, timeout) | internal (a bug of gradlab)
    layers: list[dg.LayerInfo] = field(default_factory=list)  # what each layer is, for the diagnosis
    loss: dg.LayerInfo | None = None
    diagnosis: list[dg.Diagnosis] = field(default_factory=list)  # which op is wrong, most likely first
    warnings: list = field(default_factory=list)  # hazards around right values (gradlab.hazards): said, never a failure

    @property
    def passed(self) -> bool:
        return self.error is None and not any(c.status == "fail" for c in self.comparisons)

    @property
    def unchecked(self) -> list:
        """What this spec asked for and did not get checked, with the reasons (gradlab.coverage)."""
        from .coverage import of_spec

        return of_spec(self)

    @property
    def failures(self) -> list[cmp.Comparison]:
        return [c for c in self.comparisons if c.status == "fail"]

    def to_dict(self) -> dict:
        return {
            "spec": self.path,
            "name": self.name,
            "passed": self.passed,
            "complete": self.error is None and not self.unchecked,
            "unchecked": [u.to_dict() for u in self.unchecked],
            "diagnosis": [d.to_dict() for d in self.diagnosis],
            "dtype": self.dtype,
            "seed": self.seed,
            "n_params": self.n_params,
            "numeric_method": self.method,
            "mode": self.mode,
            "notes": self.notes,
            "warnings": [w.to_dict() for w in self.warnings],
            "error": self.error,
            "seconds": round(self.seconds, 4),
            "comparisons": [c.to_dict() for c in self.comparisons],
        }


def _pairs(grads: list[Gradients]) -> list[tuple[Gradients, Gradients]]:
    """(reference, candidate) pairs: the numeric engine referees; analytic is also held against autograd."""
    by = {g.engine: [x for x in grads if x.engine == g.engine] for g in grads}
    pairs = []
    for ref in by.get("numeric", []):
        for cand in by.get("analytic", []) + by.get("autograd", []):
            pairs.append((ref, cand))
    for ref in by.get("autograd", []):
        for cand in by.get("analytic", []):
            pairs.append((ref, cand))
    return pairs


# Full mode (every element) up to this many parameters; random projections above it (check.mode: auto).
FULL_MODE_MAX_PARAMS = 250_000


def resolve_mode(mode: str, net: Network) -> str:
    if mode == "auto":
        return "full" if net.n_params <= FULL_MODE_MAX_PARAMS else "fast"
    return mode


def run(
    spec: Spec,
    *,
    path: str = "<spec>",
    devices: list[str] | None = None,
    engines: list[str] | None = None,
    method: str | None = None,
    mode: str | None = None,
    net: Network | None = None,
    progress: Callable[[int], None] | None = None,
) -> SpecResult:
    """Check one validated spec. CLI options, when given, override the spec's `check` section."""
    if "autograd" in (engines or spec.check.engines):
        import torch  # noqa: F401  -- torch's start-up (~2 s, once per process) is not this spec's time
    t0 = time.perf_counter()
    net = net or build(spec)
    require_finite_loss(net, path)
    chk = spec.check
    devices = devices or chk.devices
    engines = engines or chk.engines
    mode = resolve_mode(mode or chk.mode, net)
    method = numeric.resolve_method(net, method or chk.numeric.method)
    wrt = chk.wrt_input  # fast mode checks `input` by projections too: what is asked for is checked
    grads: list[Gradients] = []
    if "analytic" in engines:
        grads.append(analytic.gradients(net, wrt_input=wrt))
    if "numeric" in engines and mode == "full":
        grads.append(numeric.differentiate(net, method=method, step=chk.numeric.step, wrt_input=wrt, progress=progress))
    if "autograd" in engines:
        for d in dict.fromkeys(devices):
            grads.append(autograd.gradients(net, d, wrt_input=wrt))
    names = list(net.params) + ([INPUT] if wrt else [])
    rounding = {str(net.dtype): tolerance.rounding_bounds(net, wrt_input=wrt)}
    tol = cmp.tolerance(str(net.dtype), chk.tolerance)
    rows: list[cmp.Comparison] = []
    if mode == "fast" and "numeric" in engines:
        rows += _fast_rows(path, net, grads, names, rounding, method, chk.tolerance, progress)
    for ref, cand in _pairs(grads):
        rows += cmp.compare(path, ref, cand, names, tol=tol, rounding=rounding)
    _every_engine_at_worst(rows, grads)
    rows = _zero_causes(net, rows)
    num = next((g for g in grads if g.engine == "numeric"), None)
    layers, loss = dg.describe(net)
    result = SpecResult(
        path=path,
        name=spec.name or Path(path).stem,
        dtype=str(net.dtype),
        comparisons=rows,
        n_params=net.n_params,
        method=method if "numeric" in engines else None,
        mode=mode,
        seconds=time.perf_counter() - t0,
        engines={g.label: g.seconds for g in grads if not g.skipped},
        seed=net.seed,
        network=repr(net),
        notes=list(num.notes) if num else [],
        layers=layers,
        loss=loss,
        warnings=hazards.of_spec(spec),
    )
    result.diagnosis = dg.diagnose(result)
    return result


def require_finite_loss(net: Network, path: str) -> None:
    """Nothing can be compared where the loss itself is inf/NaN: say where it first went non-finite, in which dtype."""
    from .errors import SpecError

    h = net.x
    with np.errstate(all="ignore"):
        for layer in net.layers:
            h = layer.forward(net.params, h)
            if not np.all(np.isfinite(h)):
                raise SpecError(path, layer.path, f"{_layer_name(layer)} produces inf/NaN from finite input in {net.dtype}, "
                                "so the loss and its gradient are undefined at this spec's point; nothing to compare (lower the init or input scale, or use float64)")
        loss = net.loss_of_output(h)
    if not np.all(np.isfinite(loss)):
        lo, hi = float(np.min(h)), float(np.max(h))
        raise SpecError(path, "loss", f"{net.loss_op.name} is {float(np.real(loss))} in {net.dtype} at this spec's point (the network's output spans [{lo:.9g}, {hi:.9g}]: "
                        "probabilities saturated to exactly 0 or 1?), so there is no gradient to compare; lower the init or input scale, or use float64")


def _layer_name(layer) -> str:
    op, impl = getattr(layer, "op", None), getattr(layer, "impl", None)
    what = op.name if op is not None else impl.rpartition("/")[2] if impl else type(layer).__name__.replace("Layer", "").lower()
    return f"{layer.name} ({what})"


def _zero_causes(net: Network, rows: list[cmp.Comparison]) -> list[cmp.Comparison]:
    """A zero-gradient row's note names the cause where the network's structure shows one (gradlab.zeros)."""
    zero = list(dict.fromkeys(c.parameter for c in rows if c.status == "zero-gradient"))
    if not zero:
        return rows
    from .zeros import reasons

    why = reasons(net, zero)
    return [dataclasses.replace(c, note=why[c.parameter]) if c.status == "zero-gradient" else c for c in rows]


def _every_engine_at_worst(rows: list[cmp.Comparison], grads: list[Gradients]) -> None:
    """Give each listed worst element every engine's value there, so reports need not guess the third."""
    have = [g for g in grads if not g.skipped]
    for c in rows:
        for w in c.worst:
            w["values"] = {
                g.label: float(g.values[c.parameter][tuple(w["index"])])
                for g in have
                if c.parameter in g.values and g.values[c.parameter].ndim == len(w["index"])
            }


def _fast_rows(path, net, grads, names, rounding, method, override, progress) -> list[cmp.Comparison]:
    """Fast mode: each candidate against numeric directional derivatives (gradlab.fastcheck)."""
    rows = []
    for cand in [g for g in grads if g.engine != "numeric"]:
        for name in names:
            if cand.skipped:
                rows.append(cmp.Comparison(spec=path, parameter=name, reference="numeric", candidate=cand.label, device=cand.device,
                                           dtype=cand.dtype, status="skipped", note=cand.skipped))
                continue
            model = rounding.get(cand.dtype, {}).get(name)
            tol = cmp.tolerance(cand.dtype, override, model=model is not None)
            size = net.x.size if name == INPUT else net.params[name].size
            model = model if model is not None else np.zeros(size)
            rows.append(fastcheck.check_tensor(path, net, cand, name, model=model, method=method, tol=tol, seed=net.seed))
            if progress:
                progress(size)
    return rows


def check_file(path: str | Path, **kwargs) -> SpecResult:
    return run(load_spec(path), path=str(path), **kwargs)
