"""What a run did not check, and why: nothing unchecked is ever reported as passed.

Every checking command keeps an account beside its results. A spec's account comes from its rows:
an engine pair that could not run (no CUDA device) is not checked; a tensor whose every element's
difference stencil straddles a kink, and that no other engine pair judged, is not checked; a spec
with no judged row at all checked nothing. Audits add ops found but not judged (a class that could
not be built, a Function pointed elsewhere). The exit code reads the account (gradlab.batch):
EXIT_INCOMPLETE when nothing is wrong but something asked for or found was not checked, unless the
user accepts it (`--allow-unchecked`); a run that checked nothing at all is never a pass.
"""

from __future__ import annotations

from dataclasses import dataclass

JUDGED = ("pass", "fail", "zero-gradient")  # statuses that are a verdict on the values


@dataclass(frozen=True)
class Unchecked:
    """Something asked for or found that was not checked: what it is and why."""

    what: str
    reason: str
    kind: str = "other"  # skipped (an engine pair that could not run) | kink | nothing | op (an audit's op not judged)

    def text(self) -> str:
        return f"{self.what}: {self.reason}"

    def to_dict(self) -> dict:
        return {"what": self.what, "reason": self.reason}


def of_spec(result) -> list[Unchecked]:
    """The account of one checked spec (an error result has its error instead: nothing here)."""
    if getattr(result, "error", None) is not None:
        return []
    rows = list(result.comparisons)
    judged = [c for c in rows if c.status in JUDGED]
    out: list[Unchecked] = []
    if not judged:
        reasons = sorted({c.note for c in rows if c.note}) or ["no engine pair produced a comparison"]
        return [Unchecked("every gradient", "; ".join(reasons), "nothing")]
    skipped: dict[tuple[str, str, str], list] = {}
    for c in rows:
        if c.status == "skipped":
            skipped.setdefault((f"{c.candidate} vs {c.reference}", c.device, c.note or "skipped"), []).append(c.parameter)
    for (pair, device, reason), names in skipped.items():
        out.append(Unchecked(f"{pair} ({len(names)} tensor{'s' if len(names) != 1 else ''})", reason, "skipped"))
    for c in unjudged_kinks(result):
        out.append(Unchecked(f"{c.parameter} ({c.candidate} vs {c.reference})", c.note or "every element's stencil straddles a kink", "kink"))
    return out


def unjudged_kinks(result) -> list:
    """Rows whose every element sat on a kink, for a tensor and engine that no other engine pair judged."""
    covered = {(c.parameter, label) for c in result.comparisons if c.status in JUDGED for label in (c.candidate, c.reference)}
    return [c for c in result.comparisons if c.status == "kink" and (c.parameter, c.candidate) not in covered]


def of_run(results) -> list[tuple[str, Unchecked]]:
    """(spec name, item) for every spec of a run."""
    return [(r.name, u) for r in results for u in of_spec(r)]


def account(results) -> dict:
    """The verdict keys every JSON document of a check carries: `passed` (everything asked for was checked and
    agrees), `complete` and `unchecked` (what was not checked, and why)."""
    items = of_run(results)
    return {"passed": all(r.passed for r in results) and not items, "complete": not items,
            "unchecked": [{"spec": name, **u.to_dict()} for name, u in items]}


def nothing_checked(results) -> bool:
    """No spec of the run had a single judged row (the switch cannot make that a pass)."""
    return not any(c.status in JUDGED for r in results for c in r.comparisons)


def summary(items: list[tuple[str, Unchecked]], *, limit: int = 3) -> str:
    """'seed002: autograd[cuda] vs numeric (4 tensors), analytic vs autograd[cuda] (4 tensors): no CUDA; and 2 more'."""
    grouped: dict[tuple[str, str], list[str]] = {}
    for name, u in items:
        grouped.setdefault((name, u.reason), []).append(u.what)
    shown = [f"{name}: {', '.join(whats)}: {reason}" for (name, reason), whats in list(grouped.items())[:limit]]
    more = f"; and {len(grouped) - limit} more" if len(grouped) > limit else ""
    return "; ".join(shown) + more
