"""Terminal output: one rich table per spec and a one-line verdict; fits 80 columns.

Colour only when the stream is a terminal (rich decides; NO_COLOR and FORCE_COLOR are
honoured), plain text in pipes, files and CI logs. A user's string (spec name, file path,
parameter name, note) reaches rich only as a `Text` (`escape.rich_text`), never as a str that
rich would parse as markup: `name: '[/]'` is printed, not obeyed.
"""

from __future__ import annotations

import io

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .escape import rich_text, visible
from .failure import MISSING, worst_rows
from .labels import fmt_err, fmt_index, short_engine, short_pair, short_param, status_text
from .rows import table_rows, verdict
from .worst import tensor_worst

_SHORT_HEADER = {"difference": "diff", "numeric err": "num err"}  # three engines' values still fit 80 columns
STATUS_STYLE = {"pass": "green", "fail": "bold red", "skipped": "yellow", "zero-gradient": "magenta", "kink": "cyan"}

__all__ = ["STATUS_STYLE", "plain_table", "render", "spec_table", "verdict", "worst_elements", "worst_table"]


def spec_table(result, *, verbose: bool = False) -> Table:
    title = rich_text(f"{result.name}  ({result.path}, {result.dtype}, {result.n_params} params, numeric: {result.method}, "
                      f"{getattr(result, 'mode', 'full')} mode)")
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
    # `num err` is the numeric engine's own error estimate (largest over the tensor), next to the
    # discrepancy it referees; the cosine is in -v, JSON and the reports.
    for col, just in [("parameter", "left"), ("candidate/ref", "left"), ("max abs", "right"), ("num err", "right"),
                      ("max rel", "right"), ("worst", "left"), ("status", "left")]:
        table.add_column(col, justify=just, no_wrap=True)
    judged, skipped = table_rows(result)
    for c in judged:
        table.add_row(
            rich_text(short_param(c.parameter)), rich_text(short_pair(c.candidate, c.reference)),
            fmt_err(c.max_abs_err), fmt_err(c.numeric_err), fmt_err(c.max_rel_err), fmt_index(c.worst_index),
            Text(status_text(c), style=STATUS_STYLE.get(c.status, "")),
        )
    # one line per skipped engine pair, not one per tensor
    reasons = {short_pair(s.candidate, s.reference): s.reason for s in skipped}
    for pair in reasons:
        table.add_row("(all)", rich_text(pair), "", "", "", "", Text("skipped", style=STATUS_STYLE["skipped"]))
    table.caption = rich_text("; ".join(f"{pair} skipped: {why}" for pair, why in reasons.items())) if reasons else None
    table.caption_justify = "left"
    return table


def worst_table(t) -> Table:
    """The worst elements of one tensor, every engine's value side by side (`-v`)."""
    header, rows = worst_rows(t)
    c = t.primary
    style = STATUS_STYLE.get(c.status, "")
    title = Text.assemble("  ", (visible(short_param(t.parameter)), "bold"), f": worst elements by {short_pair(c.candidate, c.reference)} (",
                          (status_text(c), style), ")")
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
    for h in header:
        label = short_engine(h) if h in t.engines else _SHORT_HEADER.get(h, h)
        table.add_column(rich_text(label), justify="left" if h == "index" else "right", no_wrap=True)
    for row in rows:
        table.add_row(*map(rich_text, row))
    if not t.complete:
        table.caption = f"{MISSING}: that engine's value here was not kept by any comparison"
        table.caption_justify = "left"
    return table


def worst_elements(result) -> list[str]:
    lines = []
    for c in result.failures:
        lines.append(
            f"  {visible(c.parameter)}: {c.candidate} vs {c.reference}, {c.device}, {c.dtype}: "
            f"{c.mismatched} / {c.size} elements mismatched; worst {fmt_index(c.worst_index)}: "
            f"{c.candidate}={c.worst_candidate:.10g} {c.reference}={c.worst_reference:.10g} "
            f"(abs err {c.max_abs_err:.3g}, numeric err est {fmt_err(c.numeric_err)})"
        )
    return lines


def plain_table(result, *, width: int = 100) -> str:
    """The spec's table as plain text (pytest failures, files); the title on one line, however long the path."""
    console = Console(file=io.StringIO(), width=width, no_color=True, highlight=False, force_terminal=False)
    table = spec_table(result)
    title, table.title = table.title, None
    console.print(title, soft_wrap=True)  # a Text: the spec's name is never markup
    console.print(table)
    return console.file.getvalue().rstrip()


def render(results, *, console: Console | None = None, quiet: bool = False, verbose: bool = False) -> None:
    console = console or Console()
    if all(r.error is not None for r in results):
        return  # nothing was checked: the `Error:` lines say why, and nothing else is printed
    if not quiet:
        for r in results:
            if r.error is not None:
                continue  # its `Error:` line follows the verdict
            console.print(spec_table(r, verbose=verbose))
            zero = [c.parameter for c in r.comparisons if c.status == "zero-gradient" and c.candidate == "analytic" and c.reference == "numeric"]
            if zero:
                console.print(rich_text(f"  note: zero gradient for {', '.join(zero)}: nothing flows back through this network", "magenta"))
            kinked = [c for c in r.comparisons if c.kinks and c.candidate == "analytic"]
            for c in kinked:
                console.print(rich_text(f"  kinks: {c.parameter}: {c.kinks} element(s) sit on a kink, not judged, "
                                        f"e.g. {', '.join(map(fmt_index, c.kink_indices[:5]))}", "cyan"))
            if not r.passed:
                for line in worst_elements(r):
                    console.print(rich_text(line, "red"))
            if verbose:
                for t in tensor_worst(r, failing_only=False):
                    console.print()
                    console.print(worst_table(t))
            console.print()
    style = "bold green" if all(r.passed for r in results) else "bold red"
    console.print(rich_text(verdict(results), style))
