"""How every format writes the same things: engine pairs, parameter names, numbers, indices.

One vocabulary for every output. An engine is `analytic`, `numeric` or `autograd[DEVICE]`
(`autograd[cpu]`, `autograd[cuda]`, `autograd[cuda:1]`): the label the runner gives it, which JSON,
CSV, HTML, Markdown, JUnit and the terminal all print. The terminal abbreviates exactly two words,
`analytic` -> `ana` and `numeric` -> `num`, to keep its table narrow; nothing is renamed
(no `torch`, no `gpu`).
"""

from __future__ import annotations

import math

STATUSES = ("pass", "fail", "skipped", "zero-gradient", "kink")
ENGINE_SHORT = {"analytic": "ana", "numeric": "num"}  # the terminal's only abbreviations


def short_engine(label: str) -> str:
    """analytic -> ana, numeric -> num; autograd[cuda:1] stays autograd[cuda:1], as every other output writes it."""
    return ENGINE_SHORT.get(label, label)


def short_pair(candidate: str, reference: str) -> str:
    """`ana/num`, `ana/autograd[cpu]`: the terminal's candidate/ref column."""
    return f"{short_engine(candidate)}/{short_engine(reference)}"


def pair_label(c) -> str:
    """`analytic vs autograd[cuda]`, `analytic vs numeric [cpu]`: the device named once, in brackets."""
    text = f"{c.candidate} vs {c.reference}"
    return text if f"[{c.device}]" in text else f"{text} [{c.device}]"


def short_param(name: str) -> str:
    """layers.3.weight -> L3.weight."""
    return name.replace("layers.", "L", 1) if name.startswith("layers.") else name


def is_missing(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def fmt_err(x) -> str:
    """An error or a ratio: two significant digits are all a verdict needs."""
    return "-" if is_missing(x) else f"{x:.1e}"


def fmt_value(x) -> str:
    """A gradient value: enough digits to see where two engines part."""
    return "-" if is_missing(x) else f"{x:.7g}"


def fmt_cosine(x) -> str:
    return "-" if is_missing(x) else f"{x:.5f}"


def fmt_index(idx) -> str:
    if idx is None:
        return "-"
    return "(" + ",".join(str(int(i)) for i in idx) + ")"


def breadcrumb(c) -> str:
    """`layers.2.weight: analytic vs numeric, cpu, float64`: where a mismatch lives."""
    return f"{c.parameter}: {c.candidate} vs {c.reference}, {c.device}, {c.dtype}"


def status_text(c) -> str:
    """The status with the kink count a reader should know about."""
    return c.status + (f" ({c.kinks} kink{'s' if c.kinks > 1 else ''})" if c.kinks else "")
