"""A failure message laid out like pytest's approx, for assertions, pytest items and JUnit.

    layers.2.weight: analytic vs numeric, cpu, float64 (also fails: analytic vs autograd[cpu])
      Mismatched elements: 12 / 12
      Max absolute difference: 1.2e-02
      Max relative difference: 3.4e-01
      Index | analytic | numeric | autograd[cpu] | difference | numeric err | allowed
      (1,2) | ...
"""

from __future__ import annotations

from .escape import visible
from .labels import breadcrumb, fmt_err, fmt_index, fmt_value
from .worst import TensorWorst, tensor_worst

MISSING = "?"  # an engine's value at an index that no comparison kept


def text_table(header: list[str], rows: list[list[str]], indent: str = "") -> list[str]:
    """Columns padded to their widest cell and joined by ' | ', as approx prints them."""
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    return [indent + " | ".join(str(x).ljust(w) for x, w in zip(line, widths)).rstrip() for line in [header, *rows]]


def worst_rows(t: TensorWorst) -> tuple[list[str], list[list[str]]]:
    """Header and cells of a tensor's worst-elements table (shared by every text format)."""
    header = ["index", *t.engines, "difference", "numeric err", "allowed"]
    rows = [
        [fmt_index(el.index), *(fmt_value(el.values[e]) if e in el.values else MISSING for e in t.engines),
         fmt_err(el.abs_err), fmt_err(el.numeric_err), fmt_err(el.bound)]
        for el in t.elements
    ]
    return header, rows


def tensor_block(t: TensorWorst, indent: str = "  ") -> list[str]:
    c = t.primary
    others = [f"{o.candidate} vs {o.reference}" + (f" ({o.device})" if o.device != c.device else "") for o in t.failing if o is not c]
    lines = [visible(breadcrumb(c)) + (f" (also fails: {', '.join(others)})" if others else "")]
    if c.note:
        lines.append(f"{indent}{visible(c.note)}")
    lines += [
        f"{indent}Mismatched elements: {c.mismatched} / {c.size}",
        f"{indent}Max absolute difference: {fmt_err(c.max_abs_err)}",
        f"{indent}Max relative difference: {fmt_err(c.max_rel_err)}",
    ]
    header, rows = worst_rows(t)
    lines += text_table(header, rows, indent)
    if not t.complete:
        lines.append(f"{indent}{MISSING}: that engine's value at this index was not among the elements its comparisons kept")
    return lines


def failure_text(result) -> str:
    """Why a spec failed: one approx-style block per failing tensor, worst elements first."""
    failing = result.failures
    lines = [f"gradients of {visible(result.name)} ({visible(result.path)}) disagree: {len(failing)} of {len(result.comparisons)} comparisons fail"]
    found = getattr(result, "diagnosis", None) or []
    if found:  # which op is wrong comes before the numbers that show it
        lines.append(f"  suspect: {visible(found[0].headline())}. {visible(found[0].evidence)}")
    for t in tensor_worst(result):
        lines += tensor_block(t)
    return "\n".join(lines)
