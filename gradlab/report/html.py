"""HTML report: one self-contained file, the tables, the worst elements and the plots.

Everything is inline: CSS in a <style> element, figures as data:image/png;base64, no
script, and a Content-Security-Policy that forbids the page any network fetch, so the
file can be mailed, attached to a CI run or opened from disk and looks the same. Every value
the template prints is escaped by jinja2's autoescape (spec names and paths are the user's), after
`escape.visible` has written control characters and lone surrogates as escapes.
"""

from __future__ import annotations

import functools

from ..compare import WORST_DEFINITION, WORST_HEADER
from .depth import DepthProfile
from .escape import visible
from .failure import MISSING, worst_rows
from .labels import STATUSES, breadcrumb, fmt_cosine, fmt_err, fmt_index, pair_label, status_text
from .plots import depth_png, heatmap_png
from .rows import complete, devices, ordered_results, status_counts, table_rows, verdict
from .worst import tensor_worst


def _shown(value):
    """What the template prints: strings with their control characters made visible (then autoescaped)."""
    from markupsafe import Markup

    return visible(value) if isinstance(value, str) and not isinstance(value, Markup) else value


@functools.cache  # one Environment: it keeps the compiled template (compiling it was most of a report's time)
def _env():
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    return Environment(loader=PackageLoader("gradlab.report", "templates"), autoescape=select_autoescape(["html", "j2"]),
                       undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True, finalize=_shown)


def _rows(result) -> tuple[list[dict], list[dict]]:
    judged, skipped = table_rows(result)
    rows = [{
        "parameter": c.parameter, "pair": pair_label(c),
        "max_abs": fmt_err(c.max_abs_err), "max_rel": fmt_err(c.max_rel_err), "cosine": fmt_cosine(c.cosine),
        "worst": fmt_index(c.worst_index), "mismatched": f"{c.mismatched} / {c.size}" if c.size else "",
        "status": c.status, "status_text": status_text(c), "note": c.note,
    } for c in judged]
    skips = [{"pair": pair_label(s), "reason": s.reason, "tensors": s.tensors} for s in skipped]
    return rows, skips


def _counts_text(result) -> str:
    """`3 fail · 9 pass · 1 skipped`: one cell for the statuses, failures first, so the summary fits a narrow page."""
    counts = status_counts(result.comparisons)
    order = ["fail", *(k for k in counts if k != "fail")]
    return " · ".join(f"{counts[k]} {k}" for k in order if counts.get(k))


def _failing(result) -> list[dict]:
    out = []
    for t in tensor_worst(result):
        c = t.primary
        header, cells = worst_rows(t)
        heat = None
        if c.rel_err_map is not None and getattr(c.rel_err_map, "ndim", 0) == 2:
            # the listed worst elements are outlined and numbered: the table and the picture name the same cells
            heat = heatmap_png(c.rel_err_map, f"{visible(c.parameter)}\n{c.candidate} vs {c.reference}",
                               marked=[el.index for el in t.elements])
        out.append({
            "parameter": t.parameter, "breadcrumb": breadcrumb(c),
            "also": [f"{o.candidate} vs {o.reference}" + (f" ({o.device})" if o.device != c.device else "") for o in t.failing if o is not c],
            "mismatched": c.mismatched, "size": c.size, "max_abs": fmt_err(c.max_abs_err), "max_rel": fmt_err(c.max_rel_err),
            "note": c.note, "header": header, "cells": cells, "complete": t.complete, "heatmap": heat,
        })
    return out


def _depth(profile: DepthProfile | None, result) -> dict | None:
    if profile is None or not profile.layers:
        return None
    # the profile is read from the analytic engine's backprop: say so where that engine failed the check
    caveat = any(c.candidate == "analytic" for c in result.failures)
    rows = [{"layer": p.layer, "depth": p.depth, "grad_norm": fmt_err(p.grad_norm), "delta_ratio": fmt_err(p.delta_ratio),
             "verdict": p.verdict or ""} for p in profile.layers]
    flagged = any(p.verdict not in (None, "ok") for p in profile.layers) or profile.verdict not in (None, "ok")
    # a passing spec whose layers stats does not flag needs no picture (a report of 60 specs stays small),
    # nor does one unflagged dense layer (no depth to plot against); a flagged one does (a zero is a finding)
    png = depth_png(profile) if (len(profile.layers) > 1 or flagged) and (flagged or not result.passed) else None
    return {"source": profile.source, "verdict": profile.verdict, "png": png, "rows": rows, "caveat": caveat, "flagged": flagged,
            "has_verdict": any(p.verdict for p in profile.layers)}


def render(results, environment: dict, *, depth: dict[str, DepthProfile] | None = None) -> str:
    """The report page; `depth` maps a spec's path to its per-layer profile (plotted when given)."""
    depth = depth or {}
    specs_env = environment.get("specs", {})
    specs = []
    for i, r in enumerate(ordered_results(results)):
        rows, skipped = _rows(r)
        specs.append({
            "anchor": f"spec-{i}", "name": r.name, "path": r.path, "passed": r.passed, "dtype": r.dtype, "seed": r.seed,
            "error": r.error, "badge": "error" if r.error is not None else "fail" if not r.passed else "incomplete" if r.unchecked else "pass",
            "n_params": r.n_params, "method": r.method or "-", "seconds": f"{r.seconds:.2f}",
            "sha256": specs_env.get(r.path, {}).get("sha256") or "-", "network": r.network,
            "counts": status_counts(r.comparisons), "counts_text": _counts_text(r), "rows": rows, "skipped": skipped,
            "failing": _failing(r), "depth": _depth(depth.get(r.path), r),
        })
    used, absent = devices(results)
    return _env().get_template("report.html.j2").render(
        passed=all(r.passed for r in results), verdict=verdict(results),
        outcome="fail" if not all(r.passed for r in results) else "pass" if complete(results) else "incomplete", specs=specs, statuses=STATUSES,
        diagnosis=[{"spec": r.name, "headline": d.headline(), "evidence": d.evidence, "first": k == 0}
                   for r in ordered_results(results) for k, d in enumerate((getattr(r, "diagnosis", None) or [])[:3])],
        env=environment, devices=used, absent_devices=absent, missing=MISSING, worst_header=WORST_HEADER, worst_definition=WORST_DEFINITION,
    )
