"""JSON report: the verdict, the run's environment, one summary per spec, and the flat rows.

`pandas.DataFrame(doc["rows"])` gives the same frame as the CSV report. Non-finite numbers
are written as null so that strict JSON readers (jq, JavaScript) accept the file.
"""

from __future__ import annotations

import json
import math

from ..coverage import account
from .rows import flat_rows, ordered_results, status_counts, verdict


def _finite(v):
    """NaN and infinities -> None, recursively (they are not JSON)."""
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_finite(x) for x in v]
    return v


def _spec(result) -> dict:
    d = result.to_dict()
    d.pop("comparisons")
    return {**d, "counts": status_counts(result.comparisons)}


def render(results, environment: dict) -> str:
    doc = {
        **account(results),  # passed only when everything asked for was checked and agrees; complete; unchecked
        "verdict": verdict(results),
        "environment": environment,
        "specs": [_spec(r) for r in ordered_results(results)],
        "rows": flat_rows(results, environment),
    }
    return json.dumps(_finite(doc), indent=2, default=float, allow_nan=False) + "\n"
