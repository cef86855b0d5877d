"""A spec over time: per tensor and engine pair, its max relative error and status in each run; the diff of two runs.

Read from the `comparisons` and `spec_results` rows a finished run leaves, keyed by the spec's name.
"""

from __future__ import annotations

from sqlalchemy import func, or_, select

from .db import ComparisonRow, Run, SpecResultRow, iso

CHANGE_FACTOR = 10.0  # the diff lists errors that grew or shrank by more than this
_FLOOR = 1e-16  # an error of 0 (exact agreement) counts as this in a ratio, so 0 -> 1e-17 is no "change"
# Below this max relative error a passing row is at its dtype's noise (sqrt(eps): what a finite difference resolves at
# best): 0 -> 1.5e-11 is a huge ratio and no news. A row that fails on either side is always compared.
NOISE = {"float64": 1.5e-8, "float32": 3.5e-4, "bfloat16": 0.09, "float16": 0.032}
NOISE_DEFAULT = 3.5e-4


class NotFound(LookupError):
    """A run the request names does not exist, or holds no result of the spec (HTTP 404)."""


def _key(row: ComparisonRow) -> tuple[str, str, str, str]:
    return row.parameter, row.candidate, row.reference, row.device


def resolve(session, name: str) -> str:
    """A spec's name (its `name:`, else its file's stem), also when given as the file name a client sent."""
    if session.scalar(select(SpecResultRow.name).where(SpecResultRow.name == name).limit(1)) is not None:
        return name
    found = session.scalar(select(SpecResultRow.name).where(sent_as(SpecResultRow.path, name)).order_by(SpecResultRow.run_id.desc()).limit(1))
    return found or name


def sent_as(column, name: str):
    """The spec was sent under this name, or under a path ending in it (`specs/a.yaml` for `a.yaml`)."""
    return or_(column == name, column.endswith("/" + name, autoescape=True))


def spec_runs(session, name: str, limit: int = 50) -> list[dict]:
    """The last `limit` finished runs that checked spec `name`, oldest first; a spec sent twice in one run counts
    once, by its first result."""
    first = (select(SpecResultRow.run_id, func.min(SpecResultRow.position).label("position")).where(SpecResultRow.name == name)
             .group_by(SpecResultRow.run_id).order_by(SpecResultRow.run_id.desc()).limit(limit).subquery())
    rows = session.execute(
        select(SpecResultRow, Run).join(first, (first.c.run_id == SpecResultRow.run_id) & (first.c.position == SpecResultRow.position))
        .join(Run, Run.id == SpecResultRow.run_id).order_by(SpecResultRow.run_id.desc())).all()
    return [{"run": run.id, "created": iso(run.created), "label": run.label, "passed": r.passed, "error": r.error, "stats": r.stats}
            for r, run in reversed(rows)]


def spec_history(session, name: str, limit: int = 50) -> dict:
    """GET /api/specs/{name}/history: one series per (tensor, engine pair, device), one point per run."""
    name = resolve(session, name)
    runs = spec_runs(session, name, limit)
    ids = [r["run"] for r in runs]
    series: dict[tuple, dict] = {}
    if ids:
        rows = session.scalars(select(ComparisonRow).where(ComparisonRow.spec == name, ComparisonRow.run_id.in_(ids))
                               .order_by(ComparisonRow.run_id, ComparisonRow.id)).all()
        seen = set()
        for row in rows:
            if (_key(row), row.run_id) in seen:  # the same spec sent twice in one run: one point per run, its first
                continue
            seen.add((_key(row), row.run_id))
            entry = series.setdefault(_key(row), {"parameter": row.parameter, "candidate": row.candidate, "reference": row.reference,
                                                  "device": row.device, "points": []})
            entry["points"].append({"run": row.run_id, "max_rel_err": row.max_rel_err, "status": row.status})
    stats = [{"run": r["run"], **r["stats"]} for r in runs if r["stats"]]
    return {"spec": name, "runs": [{k: v for k, v in r.items() if k != "stats"} for r in runs], "series": list(series.values()),
            "stats": stats}


def diff_runs(session, name: str, before: int, after: int) -> dict:
    """What changed for spec `name` from run `before` to run `after`: started failing, fixed, error changed > 10x
    (rows at noise level on both sides left out). NotFound when either run does not exist or did not check the spec."""
    name = resolve(session, name)
    for run_id in (before, after):
        if session.get(Run, run_id) is None:
            raise NotFound(f"no run {run_id}")
        if session.scalar(select(SpecResultRow.run_id).where(SpecResultRow.run_id == run_id, SpecResultRow.name == name).limit(1)) is None:
            raise NotFound(f"run {run_id} has no result of spec {name!r}")

    def rows(run_id):
        found = session.scalars(select(ComparisonRow).where(ComparisonRow.spec == name, ComparisonRow.run_id == run_id)
                                .order_by(ComparisonRow.id)).all()
        first: dict = {}
        for r in found:  # a spec sent twice in one run: its first result, as in the history
            first.setdefault(_key(r), r)
        return first

    old, new = rows(before), rows(after)
    started, fixed, changed = [], [], []
    for key, b in new.items():
        a = old.get(key)
        if a is None:
            continue
        entry = {"parameter": b.parameter, "pair": f"{b.candidate} vs {b.reference}", "device": b.device,
                 "before": a.max_rel_err, "after": b.max_rel_err, "status_before": a.status, "status_after": b.status}
        if b.status == "fail" and a.status != "fail":
            started.append(entry)
        elif a.status == "fail" and b.status != "fail":
            fixed.append(entry)
        if a.max_rel_err is not None and b.max_rel_err is not None and not _both_noise(a, b):
            ratio = (b.max_rel_err + _FLOOR) / (a.max_rel_err + _FLOOR)
            if ratio > CHANGE_FACTOR or ratio < 1 / CHANGE_FACTOR:
                changed.append({**entry, "factor": ratio})
    return {"spec": name, "before": before, "after": after, "started_failing": started, "fixed": fixed, "changed": changed,
            "only_before": [f"{k[0]} {k[1]} vs {k[2]} ({k[3]})" for k in old.keys() - new.keys()],
            "only_after": [f"{k[0]} {k[1]} vs {k[2]} ({k[3]})" for k in new.keys() - old.keys()]}


def _both_noise(a: ComparisonRow, b: ComparisonRow) -> bool:
    """Neither side fails and both errors are below the dtype's noise level: a change between them means nothing."""
    floor = NOISE.get(b.dtype, NOISE_DEFAULT)
    return a.status != "fail" and b.status != "fail" and a.max_rel_err < floor and b.max_rel_err < floor


MAX_LINES = 12  # a trend plot draws the series with the largest errors, a legend stays readable


def trend_png(history: dict) -> str | None:
    """Max relative error per run, one line per series (log scale, failures in red); base64 PNG, None with no data."""
    from matplotlib.figure import Figure

    from ..report.plots import _png

    runs = [r["run"] for r in history["runs"]]
    if not runs or not history["series"]:
        return None
    position = {run: i for i, run in enumerate(runs)}
    ranked = sorted(history["series"], key=lambda s: -max((p["max_rel_err"] or 0.0) for p in s["points"]))[:MAX_LINES]
    fig = Figure(figsize=(8, 3.6), dpi=110)
    ax = fig.add_subplot()
    for n, s in enumerate(ranked):  # ten colours, then the same ten dashed
        points = [(position[p["run"]], max(p["max_rel_err"], 1e-18), p["status"]) for p in s["points"]
                  if p["max_rel_err"] is not None and p["run"] in position]
        if not points:
            continue
        xs, ys, _ = zip(*points)
        ax.plot(xs, ys, marker="o", ms=3, lw=1, ls=("-", "--")[n // 10 % 2], label=f"{s['parameter']} {s['candidate']} vs {s['reference']}")
        fails = [(x, y) for x, y, st in points if st == "fail"]
        if fails:
            ax.scatter(*zip(*fails), s=30, facecolors="none", edgecolors="#c62828", zorder=3)
    ax.set_yscale("log")
    ax.set_xticks(range(len(runs)), [str(r) for r in runs], fontsize=7, rotation=90 if len(runs) > 20 else 0)
    ax.set_xlabel("run")
    ax.set_ylabel("max relative error")
    ax.set_title(f"{history['spec']}: max relative error per run (red rings: fail)", fontsize=9)
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    return _png(fig)
