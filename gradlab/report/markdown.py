"""Markdown report: fits a pull-request comment and a CI job summary ($GITHUB_STEP_SUMMARY).

The verdict is the first line; specs with a discrepancy come first and open, with the worst
elements of each failing tensor; passing specs fold into <details>. A PR comment holds at
most 65,536 characters, so a report that would be longer drops the passing specs' tables
first, then the passing rows of failing specs, and says so.

Every string a user controls (spec name, file path, parameter name, note, skip reason) goes
through `escape.md_text` / `md_code` (`md_html` inside <details>), so it cannot close a tag, start
a heading, mention someone or split a table row; engine labels, devices, dtypes and methods are
validated names and are written as they are.
"""

from __future__ import annotations

from .escape import md_code, md_html, md_text
from .failure import worst_rows
from .labels import STATUSES, breadcrumb, fmt_cosine, fmt_err, fmt_index, status_text
from .rows import ordered_results, status_counts, table_rows, verdict
from .worst import tensor_worst

PR_COMMENT_LIMIT = 65_536
MAX_WORST_TABLES = 10  # per spec, in the compact layout


def _cell(x) -> str:
    return str(x).replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list], right: set[int] = frozenset()) -> list[str]:
    lines = ["| " + " | ".join(map(_cell, header)) + " |",
             "|" + "|".join("---:" if i in right else "---" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(map(_cell, r)) + " |" for r in rows]
    return lines


def _icon(result) -> str:
    return "⛔" if result.error is not None else "✅" if result.passed else "❌"


def _summary(results) -> list[str]:
    rows = []
    for r in ordered_results(results):
        counts = status_counts(r.comparisons)
        rows.append([_icon(r), md_text(r.name), md_code(r.path), *(counts[s] or "" for s in STATUSES), r.dtype, r.n_params, f"{r.seconds:.2f}"])
    return _table(["", "spec", "file", *STATUSES, "dtype", "params", "seconds"], rows, right={3, 4, 5, 6, 7, 9, 10})


def _meta(result, environment) -> str:
    sha = environment.get("specs", {}).get(result.path, {}).get("sha256")
    parts = [md_code(result.path), result.dtype, f"{result.n_params} params", f"seed {result.seed}", f"numeric: {result.method}"]
    if sha:
        parts.append(f"sha256 {md_code(sha)}")
    return " · ".join(map(str, parts))


def _comparison_table(result, *, failing_only: bool) -> list[str]:
    judged, skipped = table_rows(result)
    rows = [
        [md_code(c.parameter), f"{c.candidate} / {c.reference}", c.device, fmt_err(c.max_abs_err), fmt_err(c.max_rel_err),
         fmt_cosine(c.cosine), fmt_index(c.worst_index), f"{c.mismatched} / {c.size}" if c.size else "",
         f"**{status_text(c)}**" if c.status == "fail" else status_text(c)]
        for c in judged if not failing_only or c.status == "fail"
    ]
    rows += [["(all)", f"{s.candidate} / {s.reference}", s.device, "", "", "", "", "", f"skipped: {md_text(s.reason)} ({s.tensors} tensors)"]
             for s in skipped if not failing_only]
    header = ["parameter", "candidate / reference", "device", "max abs", "max rel", "cosine", "worst", "mismatched", "status"]
    return _table(header, rows, right={3, 4, 5, 7})


def _worst_blocks(result, limit: int | None) -> list[str]:
    tensors = tensor_worst(result)
    lines = []
    for t in tensors[:limit]:
        c = t.primary
        others = [f"{o.candidate} vs {o.reference}" for o in t.failing if o is not c]
        head = md_code(c.parameter) + breadcrumb(c)[len(c.parameter):]  # the rest: engines, device, dtype
        lines += ["", f"**{head}**" + (f" (also fails: {', '.join(others)})" if others else "") +
                  f": {c.mismatched} / {c.size} elements mismatched, max abs {fmt_err(c.max_abs_err)}, max rel {fmt_err(c.max_rel_err)}"
                  + (f"; {md_text(c.note)}" if c.note else ""), ""]
        header, rows = worst_rows(t)
        lines += _table(header, rows, right=set(range(1, len(header))))  # engine labels and numbers only
        if not t.complete:
            lines += ["", "`?`: that engine's value at this index was not among the elements its comparisons kept."]
    if limit is not None and len(tensors) > limit:
        lines += ["", f"_{len(tensors) - limit} more failing tensor(s) omitted to fit a comment; see the HTML or JSON report._"]
    return lines


def _spec_section(result, environment, level: int) -> list[str]:
    if result.error is not None:
        return [f"### ⛔ {md_text(result.name)}: could not be checked", "", md_code(result.path), "", f"> {md_text(result.error)}", ""]
    if result.passed:
        counts = ", ".join(f"{v} {k}" for k, v in status_counts(result.comparisons).items() if v)
        if level >= 1:
            return []
        return ["<details>", f"<summary>✅ {md_html(result.name)}: {counts}</summary>", "", _meta(result, environment), "",
                *_comparison_table(result, failing_only=False), "", "</details>", ""]
    lines = [f"### ❌ {md_text(result.name)}", "", _meta(result, environment), ""]
    lines += _comparison_table(result, failing_only=level >= 2)
    if level >= 2:
        lines += ["", "_Passing rows omitted to fit a comment._"]
    lines += ["", "#### Worst elements of each failing tensor"]
    lines += _worst_blocks(result, MAX_WORST_TABLES if level >= 2 else None)
    return lines + [""]


def _environment(results, environment) -> list[str]:
    gpus = environment.get("cuda_devices") or []
    devices = sorted({c.device for r in results for c in r.comparisons})
    rows = [[k, environment.get(k, "")] for k in ("gradlab", "numpy", "torch", "python", "platform")]
    rows.append(["devices used", ", ".join(devices)])
    rows.append(["cpu", environment.get("cpu", "")])
    rows.append(["cuda devices", ", ".join(gpus) if gpus else "none"])
    if environment.get("generated"):
        rows.append(["generated", environment["generated"]])
    specs = environment.get("specs", {})
    spec_rows = [[md_text(r.name), md_code(r.path), r.dtype, r.seed, r.method or "-", md_code(specs.get(r.path, {}).get("sha256") or "-")]
                 for r in results]
    return ["<details>", "<summary>Environment</summary>", "", *_table(["", ""], rows), "",
            *_table(["spec", "file", "dtype", "seed", "numeric", "sha256"], spec_rows), "", "</details>", ""]


def _document(results, environment, level: int) -> str:
    passed = all(r.passed for r in results)
    lines = [f"## {'✅' if passed else '❌'} gradlab {md_text(verdict(results))}", ""]
    lines += diagnosis_lines(results)
    lines += _summary(results) + [""]
    for r in ordered_results(results):
        lines += _spec_section(r, environment, level)
    if level >= 1 and any(r.passed for r in results):
        lines += ["_Tables of passing specs omitted to fit a comment (65,536 characters); see the HTML or JSON report._", ""]
    lines += _environment(results, environment)
    return "\n".join(lines)


def render(results, environment: dict) -> str:
    """The Markdown report, as long as it can be and still fit a pull-request comment."""
    for level in range(3):
        text = _document(results, environment, level)
        if len(text) <= PR_COMMENT_LIMIT:
            return text
    return text


def diagnosis_lines(results) -> list[str]:
    """A short "Diagnosis" list under the verdict: each failing spec's suspects, most likely first."""
    lines = []
    for r in results:
        found = getattr(r, "diagnosis", None) or []
        if not found or r.error is not None:
            continue
        whose = f" ({md_text(r.name)})" if len(results) > 1 else ""
        d = found[0]
        lines.append(f"- **Diagnosis{whose}: {md_text(d.headline())}** — {md_text(d.evidence)}")
        also = [f"{md_code(x.path or x.op)} ({md_text(x.op)})" for x in found[1:3]]
        if also:
            lines.append(f"  - less likely: {', '.join(also)}")
    return lines + [""] if lines else []
