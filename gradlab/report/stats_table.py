"""`gradlab stats` output: a rich table that fits 80 columns, and JSON / CSV with every number.

Each function is a pure function of `StatsResult`s; the table shows means over the
initialisations (the standard deviations are in JSON and CSV).
"""

from __future__ import annotations

import csv
import io
import json
import math

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .depth import short_name
from .escape import rich_text, visible

VERDICT_STYLE = {"ok": "green", "zero-gradient": "bold magenta", "vanishing-dW": "bold yellow", "exploding-dW": "bold red",
                 "vanishing-delta": "yellow", "exploding-delta": "red", "dead": "bold magenta", "saturated": "bold cyan"}
_ACT_SHORT = {"scaled_sigmoid": "ssigmoid", "leaky_relu": "lrelu", "identity": "id"}
# a row that is not a dense layer is labelled by its op (then its activation chain, if any)
_KIND_SHORT = {"batchnorm": "bnorm", "layernorm": "lnorm", "groupnorm": "gnorm", "attention": "attn"}

# (header, statistic, formatter): the table's columns, left to right.
COLUMNS = (
    ("δ rms", "delta_rms", "sci"),
    ("δ/δout", "ratio_to_output", "sci"),
    ("factor", "factor", "fix"),
    ("theory", "theory_factor", "fix"),
    ("dW rms", "grad_norm", "sci"),
    ("dW/out", "grad_ratio_to_output", "sci"),
    ("update", "update_ratio", "sci"),
    ("|f'|", "mean_abs_fprime", "fix"),
    ("sat", "saturated_frac", "pct"),
    ("dead", "dead_frac", "pct"),
)
# The terminal table leaves out `δ rms` and `update` (the md and html reports, JSON and CSV keep them), so that
# it fits 80 columns with every verdict, `vanishing-delta` included.
TABLE_COLUMNS = tuple(c for c in COLUMNS if c[0] not in ("δ rms", "update"))
# Columns a terminal too narrow for the table loses, first to last; `layer`, `δ/δout` and `verdict` always stay
# (`dW/out` goes last of all: with `δ/δout` it is what the -dW and -delta verdicts are read from).
DROP_ORDER = ("theory", "sat", "|f'|", "factor", "dead", "dW rms", "dW/out")
MIN_STABLE_BATCH = 64  # below this the table warns that the numbers are noisy


def _fmt(x: float | None, kind: str) -> str:
    if x is None or not math.isfinite(x):
        return "-"
    if kind == "pct":
        return f"{100 * x:.0f}%"
    if x == 0:
        return "0"
    if kind == "fix" and (x == 0 or 0.001 <= abs(x) < 10):
        return f"{x:.3f}"
    return f"{x:.1e}".replace("e-0", "e-").replace("e+0", "e+")  # 1.2e-3: six characters, not seven


def all_dense(results) -> bool:
    """Every row of every result a dense layer: the seeds' networks, whose documents say "dense layer"."""
    return all(getattr(l, "kind", "dense") == "dense" for r in results for l in r.layers)


def _label(layer) -> str:
    act = "+".join(_ACT_SHORT.get(a, a)[:8] for a in layer.activation.split("+"))
    kind = getattr(layer, "kind", "dense")
    if kind != "dense":
        act = _KIND_SHORT.get(kind, kind) + ("" if act == "linear" else f"+{act}")
    return f"{short_name(layer.name)} {act}"


def table(result, *, console: Console | None = None) -> Table:
    """The per-layer table; on a screen narrower than it, whole columns go in `DROP_ORDER` (no number is cut)."""
    from .terminal import _fitted, _width

    def build(kept: list[str]) -> Table:
        t = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
                  header_style="bold", padding=0)  # the box's blank divider is the one space between columns
        t.add_column("layer", no_wrap=True)
        columns = [c for c in TABLE_COLUMNS if c[0] in kept]
        for header, _, _ in columns:
            t.add_column(header, justify="right", no_wrap=True)
        t.add_column("verdict", no_wrap=True)
        for layer in result.layers:
            cells = [_fmt(layer.mean[key], kind) for _, key, kind in columns]
            t.add_row(rich_text(_label(layer)), *cells, Text(layer.verdict, style=VERDICT_STYLE.get(layer.verdict, "")))
        return t

    return _fitted(build, [h for h, _, _ in TABLE_COLUMNS], DROP_ORDER, _width(console))


def title_lines(result) -> list[str]:
    return [f"{visible(result.name)}  ({visible(result.path)})",
            f"{result.loss}, mean over {len(result.seeds)} initialisations, batch {result.batch}"]


def _short(names) -> str:
    return ", ".join(short_name(n) for n in names)


def _few(names, most: int = 4) -> str:
    """Short names, the middle elided past `most`: `L1, L4, …, L28`."""
    names = list(names)
    return _short(names) if len(names) <= most else f"{_short(names[:2])}, …, {_short(names[-1:])}"


def _rows(n: int) -> str:
    return "the 1 row" if n == 1 else f"all {n} rows"


def factor_lines(result) -> list[str]:
    """The measured factor's geometric mean beside the theory's, both over the same rows; over every row apart when they differ."""
    s = result.summary
    rows, n_all = s.get("theory_rows", []), s.get("factor_rows", 0)
    tail = f"δ rms at the output row {_fmt(s['output_delta_rms'], 'sci')}; δ first/output {_fmt(s['first_last_delta_ratio'], 'sci')}; lr {result.config['lr']:g}"
    if n_all == 0:
        return [f"no factor (it needs a next row with δ ≠ 0); {tail}"]
    overall = f"factor geomean {_fmt(s['factor_geomean'], 'fix')} over {_rows(n_all)} with a factor"
    if not rows:
        return [f"{overall} (none has a theory)", tail]
    pair = f"factor geomean {_fmt(s['factor_geomean_theory_rows'], 'fix')} (theory {_fmt(s['theory_factor_geomean'], 'fix')})"
    if len(rows) == n_all:
        return [f"{pair} over {_rows(n_all)} with a factor", tail]
    which = f"the {len(rows)} rows" if len(rows) > 1 else "the 1 row"
    return [f"{pair} over {which} with a theory value", overall, tail]  # JSON's summary.theory_rows names them


def zero_lines(result) -> list[str]:
    """Each exactly-zero weight gradient with its reason (rows in a run sharing a reason named together): never a silent ok."""
    lines, run, items = [], [], list(result.summary["zero_weight_gradient"].items())
    for k, (name, why) in enumerate(items):
        run.append(name)
        if k + 1 == len(items) or items[k + 1][1] != why:
            lines.append(f"dW = 0 exactly at {_few(run)}: {why}")
            run = []
    return lines


def delta_only_lines(result) -> list[str]:
    """What a -delta verdict means, once per such verdict present: δ is out of bounds where dW is not, and why dW can stay put."""
    lines, out_row = [], result.layers[-1]
    for verdict, way in (("vanishing-delta", "shrinks"), ("exploding-delta", "grows")):
        flagged = [l for l in result.layers if l.verdict == verdict]
        if not flagged:
            continue
        first = short_name(flagged[0].name)
        m = flagged[0].mean
        lines.append(f"{verdict} at {_few([l.name for l in flagged], 3)}: δ {way} toward the input, dW does not")
        lines.append(f"  dW = input × δ: at {first}, dW/out {_fmt(m['grad_ratio_to_output'], 'fix')}, input RMS {_fmt(m['input_rms'], 'sci')} "
                     f"(output row: {_fmt(out_row.mean['input_rms'], 'sci')})")
    return lines


def summary_lines(result) -> list[str]:
    s, cfg = result.summary, result.config
    lines = [f"verdict: {s['verdict']}" + "".join(f"; {v}: {_short(names)}" for v, names in s["flags"].items())]
    lines += zero_lines(result)  # the finding, right under the verdict: these layers cannot learn by gradient
    lines += delta_only_lines(result)
    lines += factor_lines(result)
    lines += [f"thresholds: vanishing < {cfg['vanishing_ratio']:g}, exploding > {cfg['exploding_ratio']:g}; "
              f"dead >= {cfg['dead_frac']:.0%}; sat >= {cfg['saturated_frac']:.0%}",
              "thresholds apply to dW/out (-dW verdicts), else to δ/δout (-delta verdicts)"]
    if result.batch < MIN_STABLE_BATCH:
        lines.append(f"note: batch {result.batch} gives noisy statistics; set stats.batch (e.g. 256) or pass --batch")
    return lines


def render(results, console: Console | None = None) -> None:
    from .terminal import emit  # fitted to a screen; unwrapped, unpadded lines in pipes and files

    console = console or Console()
    for r in results:
        for line in title_lines(r):  # lines of their own: a table's title would be wrapped to the table's width
            emit(console, rich_text(line))
        emit(console, table(r, console=console))
        for line in summary_lines(r):
            style = VERDICT_STYLE.get(r.verdict, "") if line.startswith("verdict") else "dim" if line.startswith("thresholds") else ""
            emit(console, rich_text(line, style))
        emit(console, "")


def render_text(results, width: int = 80) -> str:
    """The table as plain text (for --output): every column, no line wrapped or padded."""
    console = Console(width=width, file=io.StringIO(), no_color=True)
    render(results, console=console)
    return console.file.getvalue()


def to_json(result) -> str:
    return json.dumps(result.to_dict(), indent=2)


def to_csv(result) -> str:
    rows = result.rows()
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)
    return buf.getvalue()


def merge_json(check_json: str, results) -> str:
    """`gradlab check --stats --format json`: the check document plus a top-level `stats` list."""
    if not results:
        return check_json
    doc = json.loads(check_json)
    doc["stats"] = [r.to_dict() for r in results]
    return json.dumps(doc, indent=2)
