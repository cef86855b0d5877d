"""Markdown report: fits a pull-request comment and a CI job summary ($GITHUB_STEP_SUMMARY).

The verdict is the first line; specs with a discrepancy come first and open, with the worst
elements of each failing tensor; passing specs fold into <details>. A PR comment holds at
most 65,536 characters, and `render` never returns more, whatever the input: a report that
would be longer drops, in turn, the passing specs' tables, the passing rows of failing specs,
then collapses to the summary table and as many failing specs (their failing rows and worst
elements) as fit, and says at the top how many specs, rows and tensors it left out.
Tables keep to seven columns or fewer, so they fit an 850-pixel pull-request comment.

Every string a user controls (spec name, file path, parameter name, note, skip reason) goes
through `escape.md_text` / `md_code` (`md_html` inside <details>), so it cannot close a tag, start
a heading, mention someone or split a table row; engine labels, devices, dtypes and methods are
validated names and are written as they are.
"""

from __future__ import annotations

from ..compare import WORST_HEADER
from .escape import md_code, md_html, md_text
from .failure import worst_rows
from .labels import breadcrumb, fmt_cosine, fmt_err, fmt_index, status_text
from .rows import complete, devices, ordered_results, status_counts, table_rows, verdict
from .worst import tensor_worst

PR_COMMENT_LIMIT = 65_536
MAX_WORST_TABLES = 10  # per spec, once passing rows are dropped
# the collapsed layout (level 3): per failing spec, this many failing rows and worst-element tables
COLLAPSED_ROWS = 8
COLLAPSED_WORST = 2
_RESERVE = 600  # room kept for the "left out" notes while filling the collapsed layout


def _cell(x) -> str:
    return str(x).replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list], right: set[int] = frozenset()) -> list[str]:
    lines = ["| " + " | ".join(map(_cell, header)) + " |",
             "|" + "|".join("---:" if i in right else "---" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(map(_cell, r)) + " |" for r in rows]
    return lines


def _icon(result) -> str:
    return "⛔" if result.error is not None else "❌" if not result.passed else "⚠️" if result.unchecked else "✅"


def _counts(result) -> str:
    """`3 fail · 9 pass`: every status in one cell, failures first (five columns of counts overflow a comment)."""
    counts = status_counts(result.comparisons)
    order = ["fail", *(k for k in counts if k != "fail")]
    return " · ".join(f"{counts[k]} {k}" for k in order if counts.get(k)) or "-"


def _summary(results, budget: int | None = None) -> list[str]:
    """One row per spec (the file is in its section); with a budget, non-passing specs only, as many as fit."""
    header = ["", "spec", "rows", "dtype", "params", "seconds"]
    ordered = ordered_results(results)
    shown = ordered if budget is None else [r for r in ordered if not r.passed]
    rows, size = [], 0
    for r in shown:
        row = [_icon(r), md_text(r.name), _counts(r), r.dtype, r.n_params, f"{r.seconds:.2f}"]
        size += len(_table(header, [row])[-1]) + 1
        if budget is not None and size > budget:
            break
        rows.append(row)
    lines = _table(header, rows, right={4, 5})
    left = len(ordered) - len(rows)
    if left:
        n_pass = sum(r.passed for r in ordered[len(rows):])
        lines += ["", f"_{left} more spec(s) not listed here ({n_pass} passing, {left - n_pass} failing or not checked), "
                      "to fit a comment; see the HTML or JSON report._"]
    return lines


def _meta(result, environment) -> str:
    sha = environment.get("specs", {}).get(result.path, {}).get("sha256")
    parts = [md_code(result.path), result.dtype, f"{result.n_params} params", f"seed {result.seed}", f"numeric: {result.method}"]
    if sha:
        parts.append(f"sha256 {md_code(sha)}")
    return " · ".join(map(str, parts))


def _status_cell(c) -> str:
    # the status leads the row and carries the mismatch count, so it is never behind a scroll
    if c.status == "fail":
        return f"**fail** {c.mismatched}/{c.size}" if c.size else "**fail**"
    return status_text(c)


def _comparison_table(result, *, failing_only: bool, max_rows: int | None = None) -> list[str]:
    """Status first; the device is in the engine labels (autograd[cuda:0]; analytic and numeric run on the CPU)."""
    judged, skipped = table_rows(result)
    chosen = [c for c in judged if not failing_only or c.status == "fail"]
    rows = [
        [_status_cell(c), md_code(c.parameter), f"{c.candidate} / {c.reference}", fmt_err(c.max_rel_err), fmt_index(c.worst_index),
         fmt_err(c.max_abs_err), fmt_cosine(c.cosine)]
        for c in chosen[:max_rows]
    ]
    rows += [[f"skipped: {md_text(s.reason)} ({s.tensors} tensors)", "(all)", f"{s.candidate} / {s.reference}", "", "", "", ""]
             for s in skipped if not failing_only]
    header = ["status", "parameter", "candidate / reference", "max rel", WORST_HEADER, "max abs", "cosine"]
    lines = _table(header, rows, right={3, 5, 6})
    if max_rows is not None and len(chosen) > max_rows:
        lines += ["", f"_{len(chosen) - max_rows} more failing row(s) left out to fit a comment._"]
    return lines


def _worst_blocks(result, limit: int | None) -> list[str]:
    tensors = tensor_worst(result)
    if limit == 0:
        return [f"_{len(tensors)} failing tensor(s)' worst-element tables left out to fit a comment; see the HTML or JSON report._"] if tensors else []
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
        lines += ["", f"_{len(tensors) - limit} more failing tensor(s)' worst-element tables left out to fit a comment; see the HTML or JSON report._"]
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
    lines += _comparison_table(result, failing_only=level >= 2, max_rows=COLLAPSED_ROWS if level >= 3 else None)
    if level >= 2:
        n_pass = sum(c.status != "fail" for c in result.comparisons)
        if n_pass:
            lines += ["", f"_{n_pass} passing or skipped row(s) left out to fit a comment._"]
    lines += ["", "#### Worst elements of each failing tensor"]
    lines += _worst_blocks(result, COLLAPSED_WORST if level >= 3 else MAX_WORST_TABLES if level >= 2 else None)
    return lines + [""]


def _environment(results, environment, *, per_spec: bool = True) -> list[str]:
    gpus = environment.get("cuda_devices") or []
    used, absent = devices(results)
    rows = [[k, environment.get(k, "")] for k in ("gradlab", "numpy", "torch", "python", "platform")]
    rows.append(["devices used", ", ".join(used) or "none"])
    if absent:
        rows.append(["requested, not available (skipped)", ", ".join(absent)])
    rows.append(["cpu", environment.get("cpu", "")])
    rows.append(["cuda devices", ", ".join(gpus) if gpus else "none"])
    if environment.get("generated"):
        rows.append(["generated", environment["generated"]])
    specs = environment.get("specs", {})
    spec_rows = [[md_text(r.name), r.dtype, r.seed, r.method or "-", md_code(specs.get(r.path, {}).get("sha256") or "-"), md_code(r.path)]
                 for r in results]
    spec_table = [*_table(["spec", "dtype", "seed", "numeric", "sha256", "file"], spec_rows), ""] if per_spec else []
    return ["<details>", "<summary>Environment</summary>", "", *_table(["", ""], rows), "", *spec_table, "</details>", ""]


def _document(results, environment, level: int) -> str:
    """The report at one level of detail: 0 everything; 1 without passing specs' tables; 2 also
    without failing specs' passing rows; 3 the summary and as many failing specs (collapsed) as fit;
    4 as 3, with the summary table itself cut to the failing specs that fit."""
    icon = "❌" if not all(r.passed for r in results) else "✅" if complete(results) else "⚠️"
    lines = [f"## {icon} gradlab {md_text(verdict(results))}", ""]
    lines += diagnosis_lines(results)
    if level >= 4:  # one diagnosis per failing spec: hundreds of them get a quarter of the comment
        lines = lines[:2] + _head_lines(lines[2:], PR_COMMENT_LIMIT // 4)
    tail = _environment(results, environment, per_spec=level < 3)
    if level < 4:
        lines += _summary(results) + [""]
    else:
        head = len("\n".join(lines + tail))
        lines += _summary(results, budget=max(0, PR_COMMENT_LIMIT - head - 2 * _RESERVE)) + [""]
    body: list[str] = []
    left = {"specs": 0, "tensors": 0, "rows": 0}
    budget = PR_COMMENT_LIMIT - len("\n".join(lines + tail)) - _RESERVE
    for r in ordered_results(results):
        section = _spec_section(r, environment, level)
        if level >= 3 and len("\n".join(body + section)) > budget:
            if not r.passed:
                left["specs"] += 1
                left["rows"] += sum(c.status == "fail" for c in r.comparisons)
                left["tensors"] += len({c.parameter for c in r.comparisons if c.status == "fail"})
            continue
        body += section
    n_pass = sum(r.passed for r in results)
    if level >= 1 and n_pass:
        lines += [f"_{n_pass} passing spec(s)' tables left out to fit a comment (65,536 characters); see the HTML or JSON report._", ""]
    if left["specs"]:
        lines += [f"_⚠️ {left['specs']} failing spec(s) left out to fit a comment (65,536 characters): {left['rows']} failing row(s) "
                  f"in {left['tensors']} tensor(s). The summary above lists them; the HTML and JSON reports hold every row._", ""]
    lines += body
    lines += tail
    return "\n".join(lines)


def _head_lines(lines: list[str], budget: int) -> list[str]:
    """The first lines that fit `budget` characters, and how many were left out."""
    kept, size = [], 0
    for line in lines:
        size += len(line) + 1
        if size > budget:
            left = len(lines) - len(kept)
            return kept + [f"_… {left} more line(s) of diagnosis left out to fit a comment; see the JSON report._", ""]
        kept.append(line)
    return kept


_CUT = "\n\n_… cut here to fit a comment (65,536 characters); see the HTML or JSON report._\n"


def render(results, environment: dict) -> str:
    """The Markdown report, as long as it can be and never longer than a pull-request comment."""
    for level in range(5):
        text = _document(results, environment, level)
        if len(text) <= PR_COMMENT_LIMIT:
            return text
    # only a verdict line or diagnosis longer than a comment gets here: cut at a line, and say so
    return text[: text.rfind("\n", 0, PR_COMMENT_LIMIT - len(_CUT)) + 1 or PR_COMMENT_LIMIT - len(_CUT)] + _CUT


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
