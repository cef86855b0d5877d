"""Text and JSON for a `gradlab compare` run: pure functions of the Outcome."""

from __future__ import annotations

import json
import math
import shlex
from dataclasses import dataclass
from typing import Any

from .rule import RuleCheck


@dataclass
class Outcome:
    candidate: str
    reference: str
    dtype: str
    ref_dtype: str
    device: str
    factor: float
    seed: int
    examples: int  # the budget
    search: Any  # SearchResult
    determinism: list | None = None  # [Spread]
    determinism_case: str = ""
    reproduce_options: tuple = ()  # extra options the reproduce line must repeat (--init, --device ...)

    @property
    def passed(self) -> bool:
        return self.search.passed and all(s.passed for s in self.determinism or [])

    def reproduce(self) -> str:
        if not self.search.failure:
            return ""
        case = self.search.failure[0]
        words = ["gradlab", "compare", self.candidate, self.reference, "--dtype", self.dtype, "--ref-dtype", self.ref_dtype,
                 "--factor", f"{self.factor:g}", *self.reproduce_options, "--case", case.text()]
        return " ".join(shlex.quote(w) for w in words)


def _g(x: float) -> str:
    return "-" if isinstance(x, float) and math.isnan(x) else f"{x:.3g}"


def _row(c: RuleCheck) -> list[str]:
    return [c.name, "x".join(map(str, c.shape)) or "()", _g(c.err_cand), _g(c.err_low), _g(c.noise), _g(c.bound), _g(c.ratio),
            str(list(c.index)), _g(c.cand), _g(c.ref), _g(c.ref_low), "ok" if c.passed else "FAIL"]


HEADER = ["tensor", "shape", "err_cand", "err_low", "noise", "bound", "ratio", "worst at", "cand", "ref", "ref_low", "status"]


def _table(rows: list[list[str]], header: list[str], indent: str = "  ") -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    fmt = lambda r: indent + "  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip()  # noqa: E731
    return [fmt(header), *[fmt(r) for r in rows]]


def text(o: Outcome) -> str:
    s = o.search
    lines = [f"gradlab compare {o.candidate} (candidate) vs {o.reference} (reference)",
             f"  {o.dtype} against {o.ref_dtype} on {o.device}; rule: err_cand <= {o.factor:g} * err_low + noise; seed {o.seed}"]
    styles = ", ".join(sorted(s.styles)) or "-"
    if s.failure:
        case, checks = s.failure
        bad = [c for c in checks if not c.passed]
        lines += [f"FAIL: {', '.join(c.name for c in bad)} beyond the bound (after {s.examples} passing example(s); shrunk to the case below)",
                  f"  case: {case.text()}"]
        lines += _table([_row(c) for c in checks], HEADER)
        for c in checks:
            if c.note:
                lines.append(f"  note: {c.name}: {c.note}")
        lines += ["  reproduce:", "    " + o.reproduce()]
    elif s.flaky:
        lines.append(f"FAIL: {s.flaky}")
    else:
        lines.append(f"PASS: {s.examples} example(s), {len(s.shapes)} shape set(s), values {styles}; the closest each tensor came to its bound:")
        lines += _table([_row(c) for c in s.worst.values()], HEADER)
    if o.determinism is not None:
        bad = [d for d in o.determinism if not d.passed]
        runs = o.determinism[0].runs if o.determinism else 0
        head = "FAIL" if bad else "PASS"
        lines.append(f"determinism: {head}: {runs} runs of the candidate on {o.determinism_case}")
        rows = [[d.name, "bitwise equal" if d.identical else "differ", _g(d.spread), "-" if d.tol is None else _g(d.tol), "ok" if d.passed else "FAIL"]
                for d in o.determinism]
        lines += _table(rows, ["tensor", "runs", "spread", "nondet-tol", "status"])
        if bad and all(d.tol is None for d in o.determinism):
            lines.append("  (atomic accumulation? state the tolerance you accept with --nondet-tol)")
    lines.append(f"{'PASS' if o.passed else 'FAIL'} ({s.seconds:.1f} s)")
    return "\n".join(lines)


def as_dict(o: Outcome) -> dict:
    s = o.search
    failure = None
    if s.failure:
        case, checks = s.failure
        failure = {"case": case.text(), "checks": [c.to_dict() for c in checks], "reproduce": o.reproduce()}
    return {"passed": o.passed, "candidate": o.candidate, "reference": o.reference, "dtype": o.dtype, "ref_dtype": o.ref_dtype,
            "device": o.device, "factor": o.factor, "seed": o.seed, "examples": o.examples, "examples_run": s.examples,
            "shapes_tried": sorted(s.shapes), "value_styles": sorted(s.styles), "failure": failure, "flaky": s.flaky or None,
            "worst": [c.to_dict() for c in s.worst.values()],
            "determinism": None if o.determinism is None else {"case": o.determinism_case, "tensors": [d.to_dict() for d in o.determinism]},
            "seconds": round(s.seconds, 3)}


def to_json(o: Outcome) -> str:
    return json.dumps(as_dict(o), indent=2)
