"""The worst elements of a tensor with every engine's value side by side.

Each Comparison keeps the elements that used up most of their tolerance, for its own pair
of engines. A reader wants one table per tensor: index, analytic, numeric, autograd, the
difference and the numeric error estimate. The runner stores every engine's value at each
listed index (`values`); results built without it fall back to the other comparisons of the
same tensor, and where an engine's value at an index is still unknown the table says so
instead of guessing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

_ENGINE_ORDER = {"analytic": 0, "numeric": 1}


@dataclass(frozen=True)
class WorstElement:
    index: tuple[int, ...]
    values: dict  # engine label -> that engine's value at `index`, for the engines whose value was kept
    abs_err: float  # |candidate - reference| of the tensor's primary comparison
    numeric_err: float | None  # the numeric engine's error estimate for this element
    bound: float  # what the verdict allowed for this element


@dataclass(frozen=True)
class TensorWorst:
    parameter: str
    primary: object  # the Comparison that ranks the elements: a failing one against the numeric referee first
    failing: tuple  # every failing Comparison of this tensor
    engines: tuple[str, ...]  # one value column per engine, analytic, numeric, then autograd devices
    elements: tuple[WorstElement, ...]

    @property
    def failed(self) -> bool:
        return bool(self.failing)

    @property
    def complete(self) -> bool:
        """Whether every engine's value is known at every listed index."""
        return all(e in el.values for el in self.elements for e in self.engines)


def _primary_key(c):
    # A failing row first; among those the one judged by the numeric referee, then analytic as candidate.
    return (c.status != "fail", c.reference != "numeric", c.candidate != "analytic", -c.mismatched)


def _values_by_index(rows) -> dict[tuple, dict]:
    values: dict[tuple, dict] = {}
    for c in rows:
        for w in c.worst:
            slot = values.setdefault(tuple(w["index"]), {})
            slot.update(w.get("values", {}))  # every engine's value, when the runner kept them
            slot[c.reference], slot[c.candidate] = w["reference"], w["candidate"]
        if c.worst_index is not None and not math.isnan(c.worst_reference):
            slot = values.setdefault(tuple(c.worst_index), {})
            slot.setdefault(c.reference, c.worst_reference)
            slot.setdefault(c.candidate, c.worst_candidate)
    return values


def _elements(primary, values) -> tuple[WorstElement, ...]:
    if primary.worst:
        return tuple(
            WorstElement(tuple(w["index"]), values.get(tuple(w["index"]), {}), w["abs_err"], w["numeric_err"], w["bound"])
            for w in primary.worst
        )
    if primary.worst_index is not None:  # a non-finite gradient keeps only the offending element
        idx = tuple(primary.worst_index)
        diff = abs(primary.worst_candidate - primary.worst_reference)
        return (WorstElement(idx, values.get(idx, {}), diff, None, math.nan),)
    return ()


def _judged_by_param(result) -> dict[str, list]:
    by_param: dict[str, list] = {}
    for c in result.comparisons:
        if c.status != "skipped":
            by_param.setdefault(c.parameter, []).append(c)
    return by_param


def _build(primary, rows) -> TensorWorst:
    failing = tuple(c for c in rows if c.status == "fail")
    engines = sorted(dict.fromkeys(e for c in rows for e in (c.candidate, c.reference)), key=lambda e: (_ENGINE_ORDER.get(e, 2), e))
    return TensorWorst(primary.parameter, primary, failing, tuple(engines), _elements(primary, _values_by_index(rows)))


def ranked_by(comparison, result) -> TensorWorst:
    """The worst-elements table of one comparison's tensor, ranked by that comparison's own pair."""
    return _build(comparison, _judged_by_param(result)[comparison.parameter])


def tensor_worst(result, *, failing_only: bool = True) -> list[TensorWorst]:
    """One TensorWorst per parameter tensor of a spec (only failing tensors unless told otherwise), failures first."""
    out = []
    for rows in _judged_by_param(result).values():
        if failing_only and not any(c.status == "fail" for c in rows):
            continue
        ranked = [c for c in rows if c.worst or c.worst_index is not None]
        if ranked:
            out.append(_build(min(ranked, key=_primary_key), rows))
    return sorted(out, key=lambda t: not t.failed)
