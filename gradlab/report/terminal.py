"""Terminal output: a summary line per passing spec, a table per failing one, and a one-line verdict.

Two layouts, one content:
- on a terminal (a tty, or a console made with `force_terminal=True`), tables fit the terminal's
  width by dropping whole columns in a fixed order (`SPEC_DROP_ORDER`, `WORST_DROP_ORDER`): a
  number is never cut to `3.5e…`; only a name too long for any width folds onto a second line.
  Lines of text (failures, notes, the verdict) are soft-wrapped: the terminal wraps them, no line
  break is inserted.
- anywhere else (pipes, files, CI logs) nothing is wrapped or padded: each table row is one line,
  the verdict is one line, no line ends with spaces, so logs grep. FORCE_COLOR adds colour, not
  wrapping.

Colour only when rich decides the stream takes it (NO_COLOR and FORCE_COLOR are honoured). A
user's string (spec name, file path, parameter name, note) reaches rich only as a `Text`
(`escape.rich_text`), never as a str that rich would parse as markup: `name: '[/]'` is printed,
not obeyed. Engine names are `labels`' vocabulary: `ana`, `num`, `autograd[cpu]`.
"""

from __future__ import annotations

import io
import math
import re

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .escape import rich_text, visible
from .failure import MISSING, worst_rows
from .labels import breadcrumb, fmt_cosine, fmt_err, fmt_index, fmt_value, short_engine, short_pair, short_param, status_text
from .rows import complete, status_counts, table_rows, verdict
from .worst import tensor_worst

_SHORT_HEADER = {"difference": "diff", "numeric err": "num err"}
STATUS_STYLE = {"pass": "green", "fail": "bold red", "skipped": "yellow", "zero-gradient": "magenta", "kink": "cyan"}

# Columns a terminal too narrow for the whole table loses, first to last. Names and the status
# are never dropped. `worst` goes first: the failure lines (and -v's tables) name the worst element.
SPEC_DROP_ORDER = ("worst", "num err", "cosine", "max abs", "max rel")
# -v's worst-element tables: the engines' values and the difference stay.
WORST_DROP_ORDER = ("allowed", "num err")
_UNBOUNDED = 100_000  # the width pipes are rendered at: wider than any row, so nothing wraps
_TRAILING = re.compile(r"(?:[ \t]|\x1b\[[0-9;]*m)+$")
_SGR = re.compile(r"\x1b\[[0-9;]*m")

__all__ = ["SPEC_DROP_ORDER", "STATUS_STYLE", "WORST_DROP_ORDER", "emit", "failure_lines", "plain_table", "render",
           "screen_layout", "spec_table", "summary_line", "verdict", "worst_elements", "worst_table"]


# --- layout ------------------------------------------------------------------------------------


def screen_layout(console: Console) -> bool:
    """Whether `console` is a screen someone reads at its width: a tty, or told so (`force_terminal=True`).

    FORCE_COLOR alone (a CI log) asks for colour, not for lines cut to 80 columns.
    """
    if not console.is_terminal:
        return False
    if getattr(console, "_force_terminal", None) is True:  # rich keeps the constructor's force_terminal here
        return True
    isatty = getattr(console.file, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed file
        return False


def _strip_end(line: str) -> str:
    """The line without trailing spaces, keeping any colour codes that sit among them."""
    m = _TRAILING.search(line)
    return line if m is None else line[: m.start()] + "".join(_SGR.findall(m.group()))


def emit(console: Console, renderable, *, style: str = "") -> None:
    """Print one table or line: fitted to a screen, or as unwrapped, unpadded lines anywhere else."""
    text_like = isinstance(renderable, (str, Text))
    if isinstance(renderable, str):
        renderable = Text(renderable, style=style)
    if screen_layout(console):
        console.print(renderable)  # a screen: long lines wrap at word boundaries, not mid-number
        return
    buf = Console(file=io.StringIO(), width=_UNBOUNDED, force_terminal=console.is_terminal, color_system=console.color_system,
                  no_color=console.no_color, highlight=False, emoji=False, markup=False, legacy_windows=False)
    buf.print(renderable, soft_wrap=text_like)
    lines = buf.file.getvalue().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    console.file.write("".join(_strip_end(line) + "\n" for line in lines))
    console.file.flush()


def _natural_width(table: Table) -> int:
    """How many columns `table` takes when nothing is wrapped or cut."""
    buf = Console(file=io.StringIO(), width=_UNBOUNDED, no_color=True, highlight=False, legacy_windows=False)
    buf.print(table)
    return max((len(line.rstrip()) for line in buf.file.getvalue().splitlines()), default=0)


def _fitted(build, columns: list[str], drop_order, width: int | None) -> Table:
    """The table `build(kept columns)` with columns of `drop_order` dropped, in order, until it fits `width`."""
    kept = list(columns)
    table = build(kept)
    if width is None:
        return table
    for name in drop_order:
        if _natural_width(table) <= width:
            break
        if name in kept:
            kept.remove(name)
            table = build(kept)
    return table


def _width(console: Console | None) -> int | None:
    return console.width if console is not None and screen_layout(console) else None


def _table(**kw) -> Table:
    return Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold", **kw)


# --- the spec's table --------------------------------------------------------------------------


def _title(result) -> Text:
    return rich_text(f"{result.name}  ({result.path}, {result.dtype}, {result.n_params} params, numeric: {result.method}, "
                     f"{getattr(result, 'mode', 'full')} mode)")


def spec_table(result, *, verbose: bool = False, console: Console | None = None) -> Table:
    """One row per (tensor, engine pair, device); `-v` adds the cosine. Fitted to `console`'s width on a screen.

    The title is printed apart (`render`), so a long path never widens the table.
    """
    judged, skipped = table_rows(result)
    reasons = {short_pair(s.candidate, s.reference): s.reason for s in skipped}  # one line per skipped pair
    columns = ["parameter", "candidate/ref", "max abs", "num err", "max rel"] + (["cosine"] if verbose else []) + ["worst", "status"]
    right = {"max abs", "num err", "max rel", "cosine"}

    def cells(c) -> dict:
        return {"parameter": rich_text(short_param(c.parameter)), "candidate/ref": rich_text(short_pair(c.candidate, c.reference)),
                "max abs": fmt_err(c.max_abs_err), "num err": fmt_err(c.numeric_err), "max rel": fmt_err(c.max_rel_err),
                "cosine": fmt_cosine(c.cosine), "worst": fmt_index(c.worst_index),
                "status": Text(status_text(c), style=STATUS_STYLE.get(c.status, ""))}

    def build(kept: list[str]) -> Table:
        table = _table()
        for col in kept:
            names = col in ("parameter", "candidate/ref")  # a user's name may fold; a number never is cut
            table.add_column(col, justify="right" if col in right else "left", no_wrap=not names, overflow="fold")
        for c in judged:
            row = cells(c)
            table.add_row(*(row[col] for col in kept))
        for pair in reasons:
            row = {col: "" for col in kept} | {"parameter": "(all)", "candidate/ref": rich_text(pair),
                                               "status": Text("skipped", style=STATUS_STYLE["skipped"])}
            table.add_row(*(row[col] for col in kept))
        return table  # why a pair was skipped: `_skip_lines`, one line each, never wrapped into a caption

    return _fitted(build, columns, SPEC_DROP_ORDER, _width(console))


def worst_table(t, *, console: Console | None = None) -> Table:
    """The worst elements of one tensor, every engine's value side by side (`-v`)."""
    header, rows = worst_rows(t)
    c = t.primary
    style = STATUS_STYLE.get(c.status, "")
    cos = "" if c.cosine is None or (isinstance(c.cosine, float) and math.isnan(c.cosine)) else f", cosine {fmt_cosine(c.cosine)}"
    title = Text.assemble("  ", (visible(short_param(t.parameter)), "bold"), f": worst elements by {short_pair(c.candidate, c.reference)} (",
                          (status_text(c), style), f"){cos}")
    labels = [short_engine(h) if h in t.engines else _SHORT_HEADER.get(h, h) for h in header]

    def build(kept: list[str]) -> Table:
        table = _table(title=title, title_justify="left")
        keep = [i for i, label in enumerate(labels) if label in kept]
        for i in keep:
            table.add_column(rich_text(labels[i]), justify="left" if header[i] == "index" else "right", no_wrap=True)
        for row in rows:
            table.add_row(*(rich_text(row[i]) for i in keep))
        if not t.complete:
            table.caption = f"{MISSING}: that engine's value here was not kept by any comparison"
            table.caption_justify = "left"
        return table

    return _fitted(build, labels, WORST_DROP_ORDER, _width(console))


# --- lines -------------------------------------------------------------------------------------


def _worst_entry(c):
    """The kept element at the comparison's worst index (its own difference, estimate and bound), or None."""
    if c.worst_index is None:
        return None
    return next((w for w in c.worst if tuple(w["index"]) == tuple(c.worst_index)), None)


def _element_text(c) -> str:
    """`worst (0,2): analytic=... numeric=..., difference ..., numeric err est ..., allowed ...`: every number that element's."""
    if c.worst_index is None:
        return ""
    w = _worst_entry(c)
    if w is not None:
        cand, ref, diff, err, bound = w["candidate"], w["reference"], w["abs_err"], w.get("numeric_err"), w.get("bound")
    else:  # only the values were kept (e.g. a non-finite gradient): say nothing we do not know
        cand, ref, err, bound = c.worst_candidate, c.worst_reference, None, None
        diff = abs(cand - ref) if math.isfinite(cand) and math.isfinite(ref) else math.nan
    parts = [f"difference {fmt_err(diff)}"]
    if err is not None and not (isinstance(err, float) and math.isnan(err)):
        parts.append(f"numeric err est {fmt_err(err)}")
    if bound is not None and not (isinstance(bound, float) and math.isnan(bound)):
        parts.append(f"allowed {fmt_err(bound)}")
    return (f"worst {fmt_index(c.worst_index)}: {c.candidate}={fmt_value(cand)} {c.reference}={fmt_value(ref)}, "
            + ", ".join(parts))


def failure_lines(result) -> list[str]:
    """One line per failing tensor (its other failing pairs named, not repeated), worst element last.

    The tensor's counts and max abs error come before `worst`; after it, only that element's numbers.
    """
    lines = []
    for t in tensor_worst(result):
        c = t.primary
        others = [f"{o.candidate} vs {o.reference}" + (f" ({o.device})" if o.device != c.device else "") for o in t.failing if o is not c]
        also = f" (also fails: {', '.join(others)})" if others else ""
        element = _element_text(c)
        lines.append(f"  {visible(breadcrumb(c))}{also}: {c.mismatched} / {c.size} elements mismatched, "
                     f"max abs err {fmt_err(c.max_abs_err)}" + (f"; {element}" if element else ""))
    return lines


worst_elements = failure_lines  # the name earlier versions exported


def summary_line(result) -> str:
    """`PASS  name (path): 12 pass in 0.41 s`: a passing spec in one line."""
    counts = ", ".join(f"{v} {k}" for k, v in status_counts(result.comparisons).items() if v) or "nothing compared"
    status = "FAIL" if not result.passed else "INCOMPLETE" if result.unchecked else "PASS"
    return f"{status}  {result.name} ({result.path}): {counts} in {result.seconds:.2f} s"


def _skip_lines(result) -> list[str]:
    return [f"  {short_pair(s.candidate, s.reference)} skipped: {s.reason}" for s in table_rows(result)[1]]


WARNING_STYLE = "bold yellow"


def _notes(result) -> list[tuple[str, str]]:
    """Hazards (gradlab.hazards), skipped pairs, zero gradients and kinks: never a silent pass."""
    out = [(f"  {w.text()}", WARNING_STYLE) for w in getattr(result, "warnings", ())]
    out += [(line, STATUS_STYLE["skipped"]) for line in _skip_lines(result)]
    out += [(f"  not checked: {u.text()}", STATUS_STYLE["skipped"]) for u in result.unchecked if u.kind != "skipped"]
    zero: dict[str, list[str]] = {}  # the cause (the row's note, gradlab.zeros) -> the tensors it zeroes
    for c in result.comparisons:
        if c.status == "zero-gradient" and c.candidate == "analytic" and c.reference == "numeric":
            zero.setdefault(c.note, []).append(c.parameter)
    for why, names in zero.items():
        out.append((f"  note: zero gradient for {', '.join(names)}: {why}", "magenta"))
    for c in (c for c in result.comparisons if c.kinks and c.candidate == "analytic"):
        out.append((f"  kinks: {c.parameter}: {c.kinks} element(s) sit on a kink, not judged, "
                    f"e.g. {', '.join(map(fmt_index, c.kink_indices[:5]))}", "cyan"))
    return out


def plain_table(result, *, width: int = 100) -> str:
    """The spec's table as plain text (pytest failures, files); the title on one line, however long the path."""
    console = Console(file=io.StringIO(), width=width, no_color=True, highlight=False, force_terminal=False)
    console.print(_title(result), soft_wrap=True)  # a Text: the spec's name is never markup
    console.print(spec_table(result))
    for line in _skip_lines(result):
        console.print(rich_text(line), soft_wrap=True)
    return "\n".join(line.rstrip() for line in console.file.getvalue().rstrip().splitlines())


def render(results, *, console: Console | None = None, quiet: bool = False, verbose: bool = False) -> None:
    """Without `-v`: a summary line per passing spec, the full table and failure lines per failing one.
    With `-v`: every spec's full table with the cosine, and every tensor's worst elements."""
    console = console or Console()
    if all(r.error is not None for r in results):
        return  # nothing was checked: the `Error:` lines say why, and nothing else is printed
    if not quiet:
        for r in results:
            if r.error is not None:
                continue  # its `Error:` line follows the verdict
            if r.passed and not verbose:
                emit(console, rich_text(summary_line(r), "green"))
                for line, style in _notes(r):
                    emit(console, rich_text(line, style))
                continue
            emit(console, Text.assemble(_title(r), style="bold"))
            emit(console, spec_table(r, verbose=verbose, console=console))
            for line, style in _notes(r):
                emit(console, rich_text(line, style))
            for line in failure_lines(r):
                emit(console, rich_text(line, "red"))
            if verbose:
                for t in tensor_worst(r, failing_only=False):
                    emit(console, "")
                    emit(console, worst_table(t, console=console))
            emit(console, "")
    style = "bold red" if not all(r.passed for r in results) else "bold green" if complete(results) else "bold yellow"
    emit(console, rich_text(verdict(results), style))
