"""What is made of a finished run before it is written: its check document, rows and reports (`render_run`).

Kept apart from the queue (no SQLAlchemy here): a warm worker that checked a one-spec run renders it where it ran
(service.pool), the store process renders the others, and the web process only unpickles the result (RunWrite:
strings and plain rows) and writes it.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass

# report format -> the suffix it is served and stored under (GET /api/runs/{id}/report.{suffix})
REPORT_SUFFIXES = {"html": "html", "md": "md", "junit": "xml", "csv": "csv", "json": "json"}


@dataclass
class RunWrite:
    """What is written of a finished run, made apart from the transaction that writes it (by the store process): its
    spec_results rows, comparisons rows (without the run id), reports, check document and verdict."""

    specs: list
    comparisons: list
    reports: dict
    document: str
    passed: bool
    exit_code: int
    stats_output: dict | None


def render_run(results: list, texts: list[str], options: dict, worker: dict) -> RunWrite:
    """A finished run's check document, per-spec and per-tensor rows and reports. `worker`: the environment the checks
    ran in."""
    from ..batch import check_document, exit_code

    all_results = results
    environment = _environment(worker, results, texts)
    doc = check_document(results, environment)
    stats = [_stats_of(r) for r in results]
    stats_output = None
    if options.get("stats"):
        from ..report.stats_table import render_text

        measured = [s for s in stats if s is not None]
        if measured:  # as `gradlab check --stats --format json`
            doc["stats"] = [s.to_dict() for s in measured]
        failed = [r.stats for r in results if getattr(r, "stats", None) is not None and getattr(r.stats, "error", None) is not None]
        stats_output = {"text": render_text(measured) if measured else "",
                        "skipped": [f.error for f in failed if getattr(f, "error_kind", "") == "user"]}
        all_results = results + [f for f in failed if getattr(f, "error_kind", "") == "internal"]  # as in the CLI: exit 3
    rendered = _render_reports(results, environment)
    document = json.dumps(doc, default=float)  # compact: the C encoder (indent= takes the pure-Python one); clients indent
    rows = [dict(spec=r.name, parameter=c.parameter, candidate=c.candidate, reference=c.reference, device=c.device,
                 dtype=c.dtype, status=c.status, max_rel_err=_finite(c.max_rel_err))
            for r in results for c in r.comparisons]
    specs = [dict(position=position, name=r.name, path=r.path, passed=r.passed, error=r.error, seconds=float(r.seconds or 0.0),
                  stats=_stats_summary(st)) for position, (r, st) in enumerate(zip(results, stats))]
    return RunWrite(specs, rows, rendered, document, doc["passed"], exit_code(all_results), stats_output)


def _environment(worker: dict, results, texts) -> dict:
    """The workers' environment, with each spec's hash taken from the text it was sent (never from a path)."""
    specs = {r.path: {"sha256": hashlib.sha256(text.encode("utf-8")).hexdigest()[:16], "seed": r.seed, "dtype": r.dtype}
             for r, text in zip(results, texts)}
    return {**worker, "specs": specs}


def _stats_of(result):
    """The StatsResult `--stats` measured for a spec, or None (not asked, or stats could not measure it)."""
    found = getattr(result, "stats", None)
    return found if found is not None and getattr(found, "error", None) is None and hasattr(found, "summary") else None


def _stats_summary(stats) -> dict | None:
    """What a spec's history keeps of `--stats`: the summary, and each layer's verdict."""
    if stats is None:
        return None
    doc = stats.to_dict()
    keep = ("layer", "verdict", "delta_rms_mean", "ratio_to_output_mean", "factor_mean")
    return {"summary": doc["summary"], "layers": [{k: layer.get(k) for k in keep} for layer in doc["layers"]]}


def _finite(x) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def _render_reports(results, environment: dict) -> dict[str, str]:
    """Every report format, as `gradlab check --report` writes them (none when no spec could be checked)."""
    from datetime import datetime, timezone

    from ..report import render

    if all(r.error is not None for r in results):
        return {}
    environment = {**environment, "generated": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    return {fmt: render(fmt, results, environment) for fmt in REPORT_SUFFIXES}
