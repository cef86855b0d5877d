"""CSV: one row per comparison, the same rows and columns as the JSON report's `rows`.

Read it with `pandas.read_csv(path)`. Nested values (shape, indices, the worst elements)
are JSON text in their cell; NaN is an empty cell.
"""

from __future__ import annotations

import csv
import io
import json
import math

from .rows import flat_rows


def _cell(v):
    if isinstance(v, (list, tuple, dict)):
        return json.dumps(v)
    if isinstance(v, float) and math.isnan(v):
        return ""
    return v


def render(results, environment: dict) -> str:
    rows = flat_rows(results, environment)
    if not rows:
        return ""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: _cell(v) for k, v in row.items()} for row in rows)
    return out.getvalue()
