"""AuditResult -> text or JSON; both pure functions of the result.

A counterexample shows the shrunk input, the upstream gradient, then per tensor the
mismatched elements (index, input, backward, numeric, |error|, the numeric error estimate
and the bound it had to meet), and a one-line command that reproduces it.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from .findings import Finding, TensorCheck
from .search import AuditResult

MAX_ROWS = 10  # mismatched elements listed per tensor, worst first


def _uniform(a: np.ndarray) -> bool:
    return a.size > 1 and bool(np.all(a == a.reshape(-1)[0]))


def literal(a: np.ndarray) -> str:
    """An exact, pasteable numpy literal (floats print with round-trip precision)."""
    a = np.asarray(a)
    if _uniform(a):
        first = a.reshape(-1)[0]
        return f"np.full({a.shape!r}, {int(first) if a.dtype.kind in 'iub' else float(first)!r})"
    return f"np.array({a.tolist()!r})"


def literal_value(v: Any) -> str:
    """A hyperparameter as pasteable Python: dicts, lists and tuples of numbers, strings and arrays."""
    if isinstance(v, np.ndarray):
        return literal(v)
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k!r}: {literal_value(x)}" for k, x in v.items()) + "}"
    if isinstance(v, (list, tuple)):
        inner = ", ".join(literal_value(x) for x in v)
        return f"[{inner}]" if isinstance(v, list) else f"({inner}{',' if len(v) == 1 else ''})"
    if isinstance(v, np.generic):
        return repr(v.item())
    return repr(v)


def reproduce_line(result_target: str, kind: str, f: Finding, reseed: int | None = None, surrogate: Any = None) -> str:
    """One shell line that re-runs this exact case through `gradlab.audit.reproduce`."""
    if f.case is None:
        return ""
    target, _, backward = result_target.partition(" --backward ")
    args = [repr(target), f"kind={kind!r}"] + ([f"backward={backward!r}"] if backward else []) + ([f"reseed={reseed!r}"] if reseed is not None else [])
    params = {}
    for name, v in f.case.inputs.items():
        if name.startswith("params["):
            params[name[len("params['"):-2]] = v
        else:
            args.append(f"{name}={literal(v)}")
    for name, v in f.case.const.items():
        args.append(f"{name}={literal(v)}")
    if f.upstream is not None:
        args.append(f"grad_out={literal(f.upstream)}")
    if params:
        args.append("params={" + ", ".join(f"{k!r}: {literal(v)}" for k, v in params.items()) + "}")
    if f.case.hyper:
        args.append(f"hyper={literal_value(f.case.hyper)}")
    if surrogate is not None:
        args.append(f"surrogate={literal_value(surrogate)}")
    code = f"import numpy as np; from gradlab.audit import reproduce; reproduce({', '.join(args)})"
    return f'python -c "{code}"'


def _fmt(x: float) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.10g}"


def _short(x: float) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.2g}"


def _array(a: np.ndarray, indent: int = 8) -> str:
    """Multi-line arrays stay aligned under the `name = ` column."""
    a = np.asarray(a)
    if _uniform(a) and a.ndim > 1:
        return f"every element {float(a.reshape(-1)[0]):.10g} (shape {a.shape})"
    text = np.array2string(a, precision=8, separator=", ", threshold=200, max_line_width=96)
    return text.replace("\n", "\n" + " " * (indent + 7))


def _rows(c: TensorCheck, case_input: np.ndarray | None, upstream: np.ndarray | None) -> list[list[str]]:
    idx = np.flatnonzero(c.mismatch.reshape(-1))
    excess = (c.abs_err / np.where(c.bound > 0, c.bound, np.finfo(float).tiny)).reshape(-1)
    idx = idx[np.argsort(-excess[idx], kind="stable")][:MAX_ROWS]
    rows = []
    for i in idx:
        at = np.unravel_index(int(i), c.backward.shape)
        row = ["(" + ", ".join(map(str, at)) + ")"]
        if case_input is not None:
            row.append(_fmt(float(case_input[at])))
        if upstream is not None and upstream.shape == c.backward.shape:
            row.append(_fmt(float(upstream[at])))
        row += [_fmt(float(c.backward[at])), _fmt(float(c.numeric[at])), _short(float(c.abs_err[at])), _short(float(c.error[at])), _short(float(c.bound[at]))]
        rows.append(row)
    return rows


def _table(header: list[str], rows: list[list[str]], indent: str) -> list[str]:
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    return [indent + "  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in [header] + rows]


def finding_lines(result: AuditResult, f: Finding, *, shrunk: bool = True) -> list[str]:
    lines = [f"FAIL  {f.kind}: {f.message}"]
    named = []
    if f.case is not None:
        named = list(f.case.inputs.items()) + list(f.case.const.items()) + ([("grad_out", f.upstream)] if f.upstream is not None else [])
    if f.output is not None:
        named.append(("forward", f.output))
    w = max([len(n) for n, _ in named] + [8])
    if f.case is not None:
        lines.append("  counterexample (shrunk):" if shrunk and f.kind != "nondeterministic" else "  case:")
    lines += [f"    {name:<{w}} = {_array(v, w)}" for name, v in named]
    if f.case is not None:
        lines += [f"    {name:<{w}} = {value!r}" for name, value in f.case.hyper.items()]
    if f.traceback:
        lines.append("  " + f.stage + " raised:")
        lines += ["    " + line for line in f.traceback.splitlines()]
    for c in f.checks:
        if f.kind == "non-finite":
            lines.append(f"    {'backward':<{w}} = {_array(c.backward, w)}  (gradient for {c.name})")
            continue
        if not c.mismatch.any():
            continue
        same = f.case is not None and f.case.inputs.get(c.name) is not None
        header = ["index"] + ([c.name] if same else []) + (["grad_out"] if f.upstream is not None and f.upstream.shape == c.backward.shape else [])
        header += ["backward", "numeric", "abs err", "err est", "bound"]
        lines.append(f"  d/d{c.name}: {int(c.mismatch.sum())} of {c.judged} judged elements mismatched"
                     + (f" ({int(c.kinks.sum())} on kinks, not judged)" if c.kinks.any() else "") + ", worst first:")
        lines += _table(header, _rows(c, f.case.inputs[c.name] if same else None, f.upstream), "    ")
        for label, a in (("backward", c.backward), ("numeric", c.numeric), ("abs err", c.abs_err)):
            lines.append(f"    {label:<{w}} = {_array(a, w)}")
    line = reproduce_line(result.target, result.pair_mode or result.kind, f, result.reseed, result.surrogate_declared)
    if line:
        lines += ["  reproduce:", "    " + line]
    return lines


def warning_lines(result: AuditResult, f: Finding) -> list[str]:
    """A hazard around right values: what was seen, and the (smallest) case it was seen on."""
    lines = [f"WARN  {f.kind}: {f.message}" + (" (a failure under --strict)" if result.strict else "")]
    if f.case is not None:
        named = list(f.case.inputs.items()) + list(f.case.const.items()) + ([("grad_out", f.upstream)] if f.upstream is not None else [])
        w = max([len(n) for n, _ in named] + [8])
        lines.append("  case:")
        lines += [f"    {name:<{w}} = {_array(v, w)}" for name, v in named]
        lines += [f"    {name:<{w}} = {value!r}" for name, value in f.case.hyper.items()]
    return lines


def verdict_line(result: AuditResult) -> str:
    """PASS / FAIL for one op; warnings never hide a failure and never pass under --strict."""
    warned = ", ".join(f.kind for f in result.warnings)
    if result.findings:
        kinds = ", ".join(f.kind for f in result.findings)
        more = f"; {len(result.warnings)} warning(s) ({warned})" if result.warnings else ""
        return f"FAIL: {len(result.findings)} counterexample(s) ({kinds}){more}"
    if result.warnings and result.strict:
        return f"FAIL: {len(result.warnings)} warning(s) under --strict ({warned}); every value judged was right"
    if result.warnings:
        return f"PASS with {len(result.warnings)} warning(s) ({warned}): no counterexample in {result.coverage.examples} examples; --strict fails them"
    return f"PASS: no counterexample in {result.coverage.examples} examples"


def coverage_line(result: AuditResult) -> str:
    c = result.coverage.to_dict()
    if not c["examples"]:
        return f"failed on the first example ({result.seconds:.1f} s)"
    dims = "/".join(f"{d}-D" for d in c["ndims"])
    shape = "x".join(map(str, c["largest_shape"]))
    parts = [
        f"{c['distinct_shapes']} shape{'s' if c['distinct_shapes'] != 1 else ''} ({dims}, up to {shape}, batch up to {c['max_batch']})",
        f"|input| up to {c['max_abs_input']:.3g}",
        f"{c['exact_zeros']} exact zeros, {c['near_zero']} near zero, {c['saturated']} saturated (|v| >= 10)",
        f"{c['negative']} negative / {c['positive']} positive",
    ]
    if result.coverage.near_kinks:
        parts.append(f"{c['near_declared_kinks']} on or near declared kinks")
    parts.append(f"{c['elements_judged']} elements judged")
    if c["kink_stencils"]:
        parts.append(f"{c['kink_stencils']} stencils on a kink (not judged)")
    if c["undetermined"]:
        parts.append(f"{c['undetermined']} undetermined (stencil left the domain)")
    if c["discarded"]:
        parts.append(f"{c['discarded']} discarded (not finite on a bound of the domain)")
    if c["no_backward"]:
        parts.append(f"{c['no_backward']} without a cache (the forward keeps none in that mode: backward not audited there)")
    n = f"{c['examples']} passing example{'s' if c['examples'] != 1 else ''}"
    if result.passed:
        return f"searched {n} ({result.seconds:.1f} s): " + "; ".join(parts)
    # what the passing examples covered, not the counterexample (shown above): a first example is often all zeros
    return f"failing case found after {n} ({result.seconds:.1f} s), which covered: " + "; ".join(parts)


def text(result: AuditResult) -> str:
    tol = result.tolerance
    lines = [
        f"gradlab audit {result.target}  ({result.kind} {result.name}: {result.call}; seed {result.seed}, budget {result.budget}"
        + (f" of {result.requested}: an op on image batches gets a share" if result.requested > result.budget else "")
        + (f"; global generators reseeded to {result.reseed} before every call" if result.reseed is not None else "")
        + (" (automatically: its forward is random)" if any(w.kind == "reseeded" for w in result.warnings) else "") + ")",
        f"  rule: |backward - numeric| <= {tol['atol']:g} + {tol['rtol']:g} |numeric| + {tol['err_factor']:g} (err + {tol['rounding']:.1e} max|grad|); err: the numeric estimate; kinks not judged",
    ]
    if result.built:
        lines.append(f"  built: {result.built}")
    if result.imported:
        lines.append(f"  {result.imported}")
    if result.surrogate:
        lines.append(f"  checked against the declared surrogate: {result.surrogate}, not the true gradient")
    if result.domain:
        how = f"inferred: {result.domain_note}; declare `domain` to override" if result.domain_note else "declared"
        lines.append(f"  domain: {result.domain} ({how})")
    for f in result.findings:
        lines += finding_lines(result, f)
    for f in result.warnings:
        lines += warning_lines(result, f)
    lines.append(coverage_line(result))
    lines.append(verdict_line(result))
    return "\n".join(lines)


def _clean(x: Any) -> Any:
    """JSON-safe: arrays to lists, NaN/inf to None."""
    if isinstance(x, np.ndarray):
        return _clean(x.tolist())
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    return x


def _indices(mask: np.ndarray) -> list[list[int]]:
    return [list(map(int, np.unravel_index(int(i), mask.shape))) for i in np.flatnonzero(mask.reshape(-1))]


def finding_dict(result: AuditResult, f: Finding) -> dict:
    d: dict[str, Any] = {"kind": f.kind, "message": f.message, "stage": f.stage}
    if f.case is not None:
        d["inputs"] = dict(f.case.inputs, **f.case.const)
        if f.case.hyper:
            d["hyperparameters"] = f.case.hyper
    d["grad_out"] = f.upstream
    if f.output is not None:
        d["forward"] = f.output
    if f.traceback:
        d["traceback"] = f.traceback
    d["tensors"] = [
        {"name": c.name, "backward": c.backward, "numeric": c.numeric, "abs_err": c.abs_err, "numeric_err": c.error, "bound": c.bound,
         "mismatched": _indices(c.mismatch), "kinks": _indices(c.kinks), "undetermined": _indices(c.undetermined)}
        for c in f.checks
    ]
    d["severity"] = f.severity
    d["reproduce"] = reproduce_line(result.target, result.pair_mode or result.kind, f, result.reseed, result.surrogate_declared) if f.severity != "warning" else ""
    return d


def as_dict(result: AuditResult) -> dict:
    return _clean({
        "target": result.target, "kind": result.kind, "name": result.name, "passed": result.passed, "seed": result.seed,
        "budget": result.budget, "requested_budget": result.requested or result.budget, "seconds": round(result.seconds, 3), "tolerance": result.tolerance, "reseed": result.reseed,
        "surrogate": result.surrogate or None,
        "domain": result.domain or None, "domain_inferred": result.domain_note or None, "coverage": result.coverage.to_dict(),
        "counterexamples": [finding_dict(result, f) for f in result.findings],
        "warnings": [finding_dict(result, f) for f in result.warnings], "strict": result.strict, "built": result.built or None,
        "imported": result.imported or None,
    })


def to_json(result: AuditResult) -> str:
    return json.dumps(as_dict(result), indent=2)
