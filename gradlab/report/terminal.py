"""Terminal output: one rich table per spec and a one-line verdict; fits 80 columns."""

from __future__ import annotations

import math

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

STATUS_STYLE = {"pass": "green", "fail": "bold red", "skipped": "yellow", "zero-gradient": "magenta", "kink": "cyan"}
_SHORT = {"analytic": "ana", "numeric": "num"}


def _short(label: str) -> str:
    if label.startswith("autograd["):
        return "torch:" + label[len("autograd["):-1].replace("cuda", "gpu")
    return _SHORT.get(label, label)


def _num(x: float) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.1e}"


def _index(idx) -> str:
    return "-" if idx is None else "(" + ",".join(map(str, idx)) + ")" if len(idx) != 1 else f"({idx[0]})"


def _param(name: str) -> str:
    # layers.3.weight -> L3.weight: keeps the table inside 80 columns
    return name.replace("layers.", "L", 1) if name.startswith("layers.") else name


def spec_table(result, *, verbose: bool = False) -> Table:
    title = f"{result.name}  ({result.path}, {result.dtype}, {result.n_params} params, numeric: {result.method})"
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
    for col, just in [("parameter", "left"), ("candidate/ref", "left"), ("max abs", "right"), ("max rel", "right"),
                      ("cosine", "right"), ("worst", "left"), ("status", "left")]:
        table.add_column(col, justify=just, no_wrap=True)
    rows = sorted(result.comparisons, key=lambda c: c.status != "fail")
    skipped: dict[str, str] = {}
    for c in rows:
        if c.status == "skipped":  # one line per skipped engine pair, not one per tensor
            skipped.setdefault(f"{_short(c.candidate)}/{_short(c.reference)}", c.note)
            continue
        cos = "-" if math.isnan(c.cosine) else f"{c.cosine:.5f}"
        status = c.status + (f" ({c.kinks} kink{'s' if c.kinks > 1 else ''})" if c.kinks else "")
        table.add_row(
            _param(c.parameter), f"{_short(c.candidate)}/{_short(c.reference)}",
            _num(c.max_abs_err), _num(c.max_rel_err), cos, _index(c.worst_index),
            Text(status, style=STATUS_STYLE.get(c.status, "")),
        )
    for pair, why in skipped.items():
        table.add_row("(all)", pair, "", "", "", "", Text("skipped", style=STATUS_STYLE["skipped"]))
    table.caption = "; ".join(f"{pair} skipped: {why}" for pair, why in skipped.items()) or None
    table.caption_justify = "left"
    return table


def worst_elements(result) -> list[str]:
    lines = []
    for c in result.failures:
        lines.append(
            f"  {c.parameter}: {c.candidate} vs {c.reference}, {c.device}, {c.dtype}: "
            f"{c.mismatched} / {c.size} elements mismatched; worst {_index(c.worst_index)}: "
            f"{c.candidate}={c.worst_candidate:.10g} {c.reference}={c.worst_reference:.10g} "
            f"(abs err {c.max_abs_err:.3g}, numeric err est {_num(c.numeric_err)})"
        )
    return lines


def verdict(results) -> str:
    n = len(results)
    failed = [r for r in results if not r.passed]
    rows = [c for r in results for c in r.comparisons]
    counts = {s: sum(c.status == s for c in rows) for s in ("pass", "fail", "skipped", "zero-gradient", "kink")}
    detail = ", ".join(f"{v} {k}" for k, v in counts.items() if v)
    if failed:
        names = ", ".join(r.name for r in failed)
        return f"FAIL: {len(failed)} of {n} spec(s) have gradient discrepancies ({names}); {detail}"
    return f"PASS: {n} spec(s), gradients agree; {detail}"


def render(results, *, console: Console | None = None, quiet: bool = False, verbose: bool = False) -> None:
    console = console or Console()
    if not quiet:
        for r in results:
            console.print(spec_table(r, verbose=verbose))
            zero = [c.parameter for c in r.comparisons if c.status == "zero-gradient" and c.candidate == "analytic" and c.reference == "numeric"]
            if zero:
                console.print(f"  note: zero gradient for {', '.join(zero)}: nothing flows back through this network", style="magenta")
            kinked = [c for c in r.comparisons if c.kinks and c.candidate == "analytic"]
            for c in kinked:
                console.print(f"  kinks: {c.parameter}: {c.kinks} element(s) sit on a kink, not judged, e.g. {', '.join(map(_index, c.kink_indices[:5]))}", style="cyan")
            if verbose or not r.passed:
                for line in worst_elements(r):
                    console.print(line, style="red", markup=False, highlight=False)
            console.print()
    style = "bold green" if all(r.passed for r in results) else "bold red"
    console.print(Text(verdict(results), style=style))
