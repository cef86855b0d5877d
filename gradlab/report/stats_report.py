"""`gradlab stats --report`: the statistics of one or more specs as one document (md, html, json, csv).

Each format is a pure function of the StatsResults, the specs that could not be measured (as
(path, message) pairs) and when the report was made. The HTML page is self-contained like the check
report's: inline CSS, the depth plot as data:image/png;base64, no script, and a
Content-Security-Policy that forbids any fetch. Every user string (spec names, paths) is escaped
for the format it lands in (gradlab.report.escape).
"""

from __future__ import annotations

import csv
import html
import io
import json
from pathlib import Path

from ..errors import GradlabError
from .escape import md_code, md_text, visible
from .stats_table import COLUMNS, _fmt, _label, all_dense, short_name, summary_lines

SUFFIXES = {".md": "md", ".markdown": "md", ".html": "html", ".htm": "html", ".json": "json", ".csv": "csv"}
FORMATS = ("md", "html", "json", "csv")


def format_for(path: str | Path) -> str:
    """The report format a `--report` file name asks for, or an error listing the suffixes stats writes."""
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIXES:
        known = ", ".join(f"{s} ({f})" for s, f in SUFFIXES.items())
        raise GradlabError(f"--report {path}: cannot tell the report format from {suffix or 'a name without a suffix'!r}; "
                           f"gradlab stats writes {known}")
    return SUFFIXES[suffix]


def overall_verdict(results) -> str:
    """The most specific verdict any spec has (zero-gradient, dead, saturated, vanishing, exploding), else ok."""
    from ..stats import VERDICTS

    found = {r.verdict for r in results}
    return next((v for v in VERDICTS if v in found), "ok")


def verdict_line(results, errors) -> str:
    """One line for the whole run: the verdict, the specs behind each finding, and how many could not be measured."""
    from ..stats import VERDICTS

    n = len(results) + len(errors)
    parts = [f"stats verdict over {n} spec{'' if n == 1 else 's'}: {overall_verdict(results)}"]
    for v in VERDICTS[:-1]:
        names = [visible(r.name) for r in results if r.verdict == v]
        if names:
            parts.append(f"{v}: {', '.join(names)}")
    ok = sum(r.verdict == "ok" for r in results)
    if ok:
        parts.append(f"ok: {ok}")
    if errors:
        parts.append(f"{len(errors)} could not be measured")
    return "; ".join(parts)


def _cell(layer, key: str, kind: str) -> str:
    return _fmt(layer.mean[key], kind)


# --- JSON and CSV ---------------------------------------------------------------------------------

def to_json(results, errors=(), *, generated: str | None = None) -> str:
    from .. import __version__

    doc = {
        "verdict": overall_verdict(results),
        "gradlab": __version__,
        "generated": generated,
        "specs": [r.to_dict() for r in results],
        "errors": [{"spec": path, "error": message} for path, message in errors],
    }
    return json.dumps(doc, indent=2, allow_nan=False)


def to_csv(results) -> str:
    """One row per (spec, layer with parameters); the `spec` and `name` columns say which spec."""
    rows = [row for r in results for row in r.rows()]
    if not rows:
        return ""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)
    return buf.getvalue()


# --- Markdown ---------------------------------------------------------------------------------------

def _md_row(cells) -> str:
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"


def to_markdown(results, errors=(), *, generated: str | None = None) -> str:
    from .. import __version__

    out = [f"# gradlab stats: {overall_verdict(results)}", "", f"**{md_text(verdict_line(results, errors))}**", ""]
    out += [f"gradlab {__version__}" + (f" · {generated}" if generated else ""), ""]
    out += [_md_row(["spec", "file", "layers", "verdict", "flagged"]), _md_row(["---"] * 5)]
    for r in results:
        flagged = "; ".join(f"{v}: {', '.join(short_name(n) for n in names)}" for v, names in r.summary["flags"].items())
        out.append(_md_row([md_text(r.name), md_code(r.path), len(r.layers), f"**{r.verdict}**", flagged or "-"]))
    for path, _ in errors:
        out.append(_md_row(["-", md_code(path), "-", "**error**", "could not be measured"]))
    for r in results:
        out += ["", f"## {md_text(r.name)}", "", f"{md_code(r.path)} · {md_text(r.loss)}, mean over {len(r.seeds)} initialisations, batch {r.batch}", ""]
        out.append(_md_row(["layer", *(h for h, _, _ in COLUMNS), "verdict"]))
        out.append(_md_row(["---"] + ["--:"] * len(COLUMNS) + ["---"]))
        for layer in r.layers:
            verdict = layer.verdict if layer.verdict == "ok" else f"**{layer.verdict}**"
            out.append(_md_row([md_text(_label(layer)), *(_cell(layer, k, kind) for _, k, kind in COLUMNS), verdict]))
        out.append("")
        out += [f"- {md_text(line)}" for line in summary_lines(r)]
    if errors:
        out += ["", "## Could not be measured", ""]
        out += [f"- {md_code(path)}: {md_text(message)}" for path, message in errors]
    return "\n".join(out) + "\n"


# --- HTML -------------------------------------------------------------------------------------------

_CSS = """
:root { --ok: #2e7d32; --flag: #c62828; --line: #d8dde3; --muted: #5f6b7a; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; color: #1d2733; background: #f6f8fa; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 28px 48px; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 18px; margin: 0 0 4px; }
code, td.num { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12.5px; }
.verdict { padding: 14px 18px; border-radius: 8px; color: #fff; font-weight: 600; font-size: 16px; margin: 14px 0 20px; background: var(--flag); }
.verdict.ok { background: var(--ok); }
.muted { color: var(--muted); }
section { background: #fff; border: 1px solid var(--line); border-left: 6px solid var(--flag); border-radius: 8px; padding: 16px 20px; margin: 18px 0; }
section.ok { border-left-color: var(--ok); }
table { border-collapse: collapse; margin: 6px 0 10px; background: #fff; }
th, td { padding: 4px 10px; border-bottom: 1px solid var(--line); text-align: left; white-space: nowrap; }
th { background: #eef1f5; font-weight: 600; font-size: 12.5px; }
td.num, th.num { text-align: right; }
td.flag { color: var(--flag); font-weight: 600; }
.scroll { overflow-x: auto; }
figure { margin: 8px 0; } figure img { max-width: 100%; border: 1px solid var(--line); border-radius: 4px; background: #fff; }
figcaption { color: var(--muted); font-size: 12px; }
ul.summary { margin: 6px 0; padding-left: 20px; }
"""


def _h(text) -> str:
    return html.escape(visible(text), quote=True)


def _html_spec(r) -> str:
    from .depth import from_stats
    from .plots import depth_png

    head = "".join(f'<th class="num">{_h(h)}</th>' for h, _, _ in COLUMNS)
    rows = []
    for layer in r.layers:
        cells = "".join(f'<td class="num">{_h(_cell(layer, k, kind))}</td>' for _, k, kind in COLUMNS)
        rows.append(f"<tr><td><code>{_h(_label(layer))}</code></td>{cells}<td{_flag(layer.verdict)}>{_h(layer.verdict)}</td></tr>")
    png = depth_png(from_stats(r))
    per = "dense layer" if all_dense([r]) else "layer with parameters"
    return (
        f'<section class="{"ok" if r.verdict == "ok" else "flagged"}">'
        f"<h2>{_h(r.name)} <span class=\"muted\">· {_h(r.verdict)}</span></h2>"
        f'<div class="muted"><code>{_h(r.path)}</code> · {_h(r.loss)}, mean over {len(r.seeds)} initialisations, batch {r.batch}</div>'
        f'<div class="scroll"><table><thead><tr><th>layer</th>{head}<th>verdict</th></tr></thead><tbody>{"".join(rows)}</tbody></table></div>'
        f'<ul class="summary">{"".join(f"<li>{_h(line)}</li>" for line in summary_lines(r))}</ul>'
        f'<figure><img alt="gradient RMS and δ ratio per {per} of {_h(r.name)}" src="data:image/png;base64,{png}">'
        f"<figcaption>per {per}, input side first: RMS(dL/dW) and RMS(δ) over the output layer's, mean ± std over "
        f"{len(r.seeds)} initialisations, on log axes; an exact zero is the ▼ marked 0 at the axis floor; flagged layers ringed by verdict</figcaption></figure>"
        "</section>"
    )


def _flag(verdict: str) -> str:
    return "" if verdict == "ok" else ' class="flag"'


def to_html(results, errors=(), *, generated: str | None = None) -> str:
    from .. import __version__

    verdict = overall_verdict(results)
    summary_rows = "".join(
        f"<tr><td>{_h(r.name)}</td><td><code>{_h(r.path)}</code></td><td class=\"num\">{len(r.layers)}</td>"
        f"<td{_flag(r.verdict)}>{_h(r.verdict)}</td></tr>"
        for r in results
    ) + "".join(f'<tr><td>-</td><td><code>{_h(path)}</code></td><td class="num">-</td><td class="flag">error</td></tr>' for path, _ in errors)
    error_list = ""
    if errors:
        error_list = "<section><h2>Could not be measured</h2><ul>" + "".join(
            f"<li><code>{_h(path)}</code>: {_h(message)}</li>" for path, message in errors) + "</ul></section>"
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'\">\n"
        f"<title>gradlab stats: {_h(verdict)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n<main>\n"
        "<h1>gradlab stats: vanishing and exploding gradients</h1>\n"
        f'<div class="muted">gradlab {_h(__version__)}{" · " + _h(generated) if generated else ""}</div>\n'
        f'<div class="verdict{" ok" if verdict == "ok" and not errors else ""}">{_h(verdict_line(results, errors))}</div>\n'
        '<div class="scroll"><table><thead><tr><th>spec</th><th>file</th>'
        f'<th class="num">{"dense layers" if all_dense(results) else "layers"}</th><th>verdict</th></tr></thead>'
        f"<tbody>{summary_rows}</tbody></table></div>\n"
        + "\n".join(_html_spec(r) for r in results) + "\n" + error_list
        + "\n</main>\n</body>\n</html>\n"
    )


def render(fmt: str, results, errors=(), *, generated: str | None = None) -> str:
    """The stats report in format `fmt` (md, html, json, csv)."""
    if fmt == "md":
        return to_markdown(results, errors, generated=generated)
    if fmt == "html":
        return to_html(results, errors, generated=generated)
    if fmt == "json":
        return to_json(results, errors, generated=generated)
    if fmt == "csv":
        return to_csv(results)
    raise GradlabError(f"unknown stats report format {fmt!r}; expected one of {', '.join(FORMATS)}")
