"""Text and JSON for a `gradlab compare` run: pure functions of the Outcome."""

from __future__ import annotations

import json
import math
import shlex
from dataclasses import dataclass
from typing import Any

from . import inputs as I
from .projection import Verdict
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

    @property
    def unsupported(self) -> dict[str, str]:
        """Tensors the candidate could not produce (double backward, jvp): name -> why."""
        checks = self.search.failure[1] if self.search.failure else self.search.worst.values()
        return {c.name: c.unsupported for c in checks if getattr(c, "unsupported", "")}

    def reproduce(self) -> str:
        if not self.search.failure:
            return ""
        case = self.search.failure[0]
        words = ["gradlab", "compare", self.candidate, self.reference, "--dtype", self.dtype, "--ref-dtype", self.ref_dtype,
                 "--factor", f"{self.factor:g}", *self.reproduce_options, "--case", case.text()]
        return " ".join(shlex.quote(w) for w in words)


def _mode(name: str) -> str:
    return "double backward" if name.startswith("hvp") else "forward AD" if name.startswith("jvp") else name


def _where(s) -> str:
    return "on the replayed case" if s.replayed else f"after {s.examples} passing example(s); shrunk to the case below"


def _g(x: float) -> str:
    return "-" if isinstance(x, float) and math.isnan(x) else f"{x:.3g}"


def _row(c: RuleCheck) -> list[str]:
    if c.unsupported:
        return [c.name, "x".join(map(str, c.shape)) or "-", *["-"] * 9, "not supported"]
    return [c.name, "x".join(map(str, c.shape)) or "()", _g(c.err_cand), _g(c.err_low), _g(c.noise), _g(c.bound), _g(c.ratio),
            str(list(c.index)), _g(c.cand), _g(c.ref), _g(c.ref_low), "ok" if c.passed else "FAIL"]


HEADER = ["tensor", "shape", "err_cand", "err_low", "noise", "bound", "ratio", "worst at", "cand", "ref", "ref_low", "status"]
DIFF_HEADER = ["tensor", "shape", "mode", "err", "bound", "ratio", "worst at", "candidate", "differences", "status"]
MODULE_HEADER = ["tensor", "shape", "mode", "err", "bound", "ratio", "worst at", "autograd", "numeric", "status"]


def _diff_row(v: Verdict) -> list[str]:
    mode = f"{v.evaluations} {'elements' if v.mode == 'elements' else 'projections'} ({v.method})"
    if v.kinks:
        mode += f", {v.kinks} not judged"  # on a kink (see the note)
    return [v.name, "x".join(map(str, v.shape)) or "()", mode, _g(v.err), _g(v.bound), _g(v.ratio), str(list(v.index)) if v.index or not v.shape else "-",
            _g(v.claimed), _g(v.numeric), "ok" if v.passed else "FAIL"]


def _tables(checks) -> list[str]:
    """The rule's table, then (float64 --double-backward) the table against differences, then notes."""
    rule = [c for c in checks if isinstance(c, RuleCheck)]
    diffs = [c for c in checks if isinstance(c, Verdict)]
    lines = _table([_row(c) for c in rule], HEADER)
    if diffs:
        lines.append("  against differences of the candidate's first-order gradient along v (float64):")
        lines += _table([_diff_row(v) for v in diffs], DIFF_HEADER)
    for c in rule:
        if c.note:
            lines.append(f"  note: {c.name}: {c.note}")
        if c.unsupported:
            lines.append(f"  {_mode(c.name)} not supported: {c.name}: {c.unsupported}")
    lines += _verdict_notes(diffs, "candidate", "differences")
    return lines


def _verdict_notes(verdicts: list, claimed: str, numeric: str) -> list[str]:
    lines = []
    for v in verdicts:
        if v.wrong:
            lines.append(f"  {v.name}: wrong at " + ", ".join(f"{list(i)} ({claimed} {_g(c)}, {numeric} {_g(n)})" for i, c, n, _ in v.wrong[:5]))
        if v.note:
            lines.append(f"  note: {v.name}: {v.note}")
    return lines


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
        lines += [f"FAIL: {', '.join(c.name for c in bad)} beyond the bound ({_where(s)})",
                  f"  case: {case.text()}"]
        lines += _tables(checks)
        lines += ["  reproduce:", "    " + o.reproduce()]
    elif s.flaky:
        lines.append(f"FAIL: {s.flaky}")
    else:
        lines.append(f"PASS: {s.examples} example(s), {len(s.shapes)} shape set(s), values {styles}; the closest each tensor came to its bound:")
        lines += _tables(list(s.worst.values()))
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
    missing = o.unsupported
    verdict = "PASS" if o.passed else "FAIL"
    if missing and o.passed:
        modes = {}
        for name in missing:
            modes.setdefault(_mode(name), []).append(name)
        verdict = "INCOMPLETE: what was checked passes; not checked: " + "; ".join(f"{m} not supported by the candidate ({', '.join(n)})" for m, n in modes.items())
    lines.append(f"{verdict} ({s.seconds:.1f} s)")
    return "\n".join(lines)


def as_dict(o: Outcome) -> dict:
    s = o.search
    failure = None
    if s.failure:
        case, checks = s.failure
        failure = {"case": case.text(), "checks": [c.to_dict() for c in checks], "reproduce": o.reproduce()}
    return {"passed": o.passed and not o.unsupported, "complete": not o.unsupported, "candidate": o.candidate, "reference": o.reference, "dtype": o.dtype, "ref_dtype": o.ref_dtype,
            "device": o.device, "factor": o.factor, "seed": o.seed, "examples": o.examples, "examples_run": s.examples,
            "shapes_tried": sorted(s.shapes), "value_styles": sorted(s.styles), "failure": failure, "flaky": s.flaky or None,
            "worst": [c.to_dict() for c in s.worst.values()],
            "not_supported": o.unsupported or None,
            "determinism": None if o.determinism is None else {"case": o.determinism_case, "tensors": [d.to_dict() for d in o.determinism]},
            "seconds": round(s.seconds, 3)}


def to_json(o: Outcome) -> str:
    return json.dumps(as_dict(o), indent=2)


# --- gradlab audit --kind module ----------------------------------------------------------------------


def module_reproduce(audit) -> str:
    """A shell line that replays the failing case (modules.reproduce prints the same report for it alone)."""
    if not audit.result.failure:
        return ""
    code = f"from gradlab.kernels.modules import reproduce; reproduce({audit.spec!r}, {audit.result.failure[0].text()!r})"
    return f'python -c "{code}"'


def _module_rule(audit) -> str:
    from .projection import MODULE_ELEMENTWISE_LIMIT

    tol, sub = audit.subject.tol, audit.subject
    return (f"  rule: |autograd - numeric| <= {tol['atol']:g} + {tol['rtol']:g} |numeric| + {tol['err_factor']:g} (err + {tol['rounding']:.1e} max|grad|), "
            f"per element (tensors up to {MODULE_ELEMENTWISE_LIMIT} elements) or per random projection, bisected to the wrong elements; kinks not judged\n"
            f"  numeric: {sub.method} ({sub.method_note}); float64; parameters moved off their init by their own scale; dropout pinned")


def module_text(audit) -> str:
    s, sub = audit.result, audit.subject
    names = ", ".join(sub.param_shapes) or "-"
    inputs = ", ".join(x.name for x in sub.specs)
    lines = [f"gradlab audit {audit.spec} --kind module  (parameters: {names}; inputs: {inputs}; seed {audit.seed}, budget {audit.budget})",
             _module_rule(audit)]
    if s.failure:
        case, checks = s.failure
        bad = [c.name for c in checks if not c.passed]
        lines += [f"FAIL  mismatch: {', '.join(bad)}: autograd disagrees with differences of the forward "
                  f"({_where(s)})", f"  case: {case.text()}"]
        lines += _table([_diff_row(v) for v in checks], MODULE_HEADER)
        lines += _verdict_notes(checks, "autograd", "numeric")
        lines += ["  reproduce:", "    " + module_reproduce(audit)]
    elif s.flaky:
        lines.append(f"FAIL  {s.flaky}")
    styles = ", ".join(sorted(s.styles)) or "-"
    shapes = f"{len(s.shapes)} shape set(s), values {styles}"
    if s.passed:
        lines.append(f"searched {s.examples} example(s) ({s.seconds:.1f} s): {shapes}; the closest each tensor came to its bound:")
        lines += _table([_diff_row(v) for v in s.worst.values()], MODULE_HEADER)
        lines += _verdict_notes(list(s.worst.values()), "autograd", "numeric")
        lines.append(f"PASS: no counterexample in {s.examples} examples")
    else:
        lines.append(f"failing case found after {s.examples} passing example(s) ({s.seconds:.1f} s), which covered: {shapes}")
        lines.append("FAIL: 1 counterexample (mismatch)" if s.failure else "FAIL: results differ from run to run")
    return "\n".join(lines)


def module_json(audit) -> str:
    s, sub = audit.result, audit.subject
    failure = None
    if s.failure:
        case, checks = s.failure
        failure = {"case": case.text(), "tensors": [c.to_dict() for c in checks], "reproduce": module_reproduce(audit)}
    doc = {"target": audit.spec, "kind": "module", "passed": audit.passed, "seed": audit.seed, "budget": audit.budget,
           "examples_run": s.examples, "method": sub.method, "method_note": sub.method_note, "tolerance": sub.tol,
           "parameters": {k: list(v) for k, v in sub.param_shapes.items()}, "inputs": I.specs_text(sub.specs),
           "shapes_tried": sorted(s.shapes), "value_styles": sorted(s.styles), "counterexample": failure, "flaky": s.flaky or None,
           "worst": [v.to_dict() for v in s.worst.values()], "seconds": round(s.seconds, 3)}
    return json.dumps(doc, indent=2)
