"""JUnit XML: one <testcase> per (spec, parameter, engine pair, device), for CI test viewers.

Uses only what Jenkins, GitLab, Azure DevOps and the GitHub JUnit actions all read:
<testsuites> / <testsuite> (one per spec, with the run's environment as <properties>) /
<testcase> with <failure message=...> carrying the numbers or <skipped message=...>.
Rows that are neither pass nor fail (zero-gradient, kink) pass and say why in <system-out>.
Spec names and paths are the user's: every attribute and text is cleaned of the characters XML 1.0
forbids (NUL, most control characters, lone surrogates) before it is written, so the file parses.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from .escape import xml_safe
from .failure import text_table, worst_rows
from .labels import breadcrumb, fmt_err, fmt_index, pair_label
from ..coverage import unjudged_kinks
from .rows import ordered_results, table_rows
from .worst import ranked_by


def _name(c) -> str:
    return f"{c.parameter}: {pair_label(c)}"  # `analytic vs autograd[cpu]`, not `... [cpu] [cpu]`


def _failure_message(c) -> str:
    text = (f"{c.mismatched} / {c.size} elements mismatched; max abs {fmt_err(c.max_abs_err)}, max rel {fmt_err(c.max_rel_err)}, "
            f"cosine {c.cosine:.5f}; worst {fmt_index(c.worst_index)}: {c.candidate}={c.worst_candidate:.10g} {c.reference}={c.worst_reference:.10g}")
    return f"{c.note}; {text}" if c.note else text


def _failure_body(c, worst) -> str:
    header, rows = worst_rows(worst)
    return "\n".join([breadcrumb(c), _failure_message(c), f"tolerance: rtol {c.rtol:g}, atol {c.atol:g}, numeric err est {fmt_err(c.numeric_err)}",
                      "", *text_table(header, rows)])


def _suspect(result) -> str:
    """`suspect: backward of network.layers[5] (ops.py:SwishWrongBeta); `: the spec's diagnosis leads each failure."""
    found = getattr(result, "diagnosis", None) or []
    return f"suspect: {found[0].headline()}; " if found else ""


def _case_times(result, rows) -> list[float]:
    """Each case's share of the spec's seconds, in proportion to the time of the two engines it compares
    (the engines compute every tensor at once), so the cases add up to the suite's time."""
    weights = [result.engines.get(c.candidate, 0.0) + result.engines.get(c.reference, 0.0) if c.status != "skipped" else 0.0 for c in rows]
    total = sum(weights)
    if total <= 0:
        weights, total = [1.0] * len(rows), float(len(rows) or 1)
    return [result.seconds * w / total for w in weights]


def _properties(parent, items: dict) -> None:
    props = ET.SubElement(parent, "properties")
    for k, v in items.items():
        ET.SubElement(props, "property", name=k, value="" if v is None else str(v))


def _suite(result, environment: dict) -> ET.Element:
    judged, _ = table_rows(result)
    rows = judged + [c for c in result.comparisons if c.status == "skipped"]
    n_fail = sum(c.status == "fail" for c in rows)
    n_skip = sum(c.status == "skipped" for c in rows) + len(unjudged_kinks(result))
    suite = ET.Element("testsuite", name=result.name, tests=str(len(rows)), failures=str(n_fail), errors="0",
                       skipped=str(n_skip), time=f"{result.seconds:.3f}", file=result.path)
    if environment.get("generated"):
        suite.set("timestamp", environment["generated"])
    spec_env = environment.get("specs", {}).get(result.path, {})
    _properties(suite, {
        "spec": result.path, "spec_sha256": spec_env.get("sha256"), "dtype": result.dtype, "seed": result.seed,
        "numeric_method": result.method, "params": result.n_params,
        **{k: environment.get(k) for k in ("gradlab", "numpy", "torch", "python", "platform", "cpu")},
        "cuda_devices": ", ".join(environment.get("cuda_devices") or []) or "none",
    })
    classname = "gradlab." + result.name.replace(".", "_")
    if result.error is not None:  # one errored case: the spec could not be checked
        suite.set("tests", "1")
        suite.set("errors", "1")
        case = ET.SubElement(suite, "testcase", classname=classname, name="could not be checked", file=result.path, time=f"{result.seconds:.3f}")
        ET.SubElement(case, "error", message=result.error, type="SpecError" if result.error_kind == "user" else "InternalError").text = result.error
    unjudged = {id(c) for c in unjudged_kinks(result)}
    for c, seconds in zip(rows, _case_times(result, rows)):
        case = ET.SubElement(suite, "testcase", classname=classname, name=_name(c), file=result.path, time=f"{seconds:.3f}")
        if c.status == "fail":
            suspect = _suspect(result)
            failure = ET.SubElement(case, "failure", message=suspect + _failure_message(c), type="GradientMismatch")
            failure.text = (suspect.removesuffix("; ") + "\n" if suspect else "") + _failure_body(c, ranked_by(c, result))
        elif c.status == "skipped" or id(c) in unjudged:  # not checked: never shown as a passing case
            ET.SubElement(case, "skipped", message=c.note or "skipped")
        elif c.status != "pass":
            ET.SubElement(case, "system-out").text = f"{c.status}: {c.note}" if c.note else c.status
    return suite


def _clean(root: ET.Element) -> None:
    """Every attribute and text node in XML 1.0's character set (ElementTree would write NUL as is)."""
    for el in root.iter():
        el.text = None if el.text is None else xml_safe(el.text)
        el.tail = None if el.tail is None else xml_safe(el.tail)
        el.attrib = {xml_safe(k): xml_safe(v) for k, v in el.attrib.items()}


def render(results, environment: dict) -> str:
    root = ET.Element("testsuites", name="gradlab")
    suites = [_suite(r, environment) for r in ordered_results(results)]
    for key in ("tests", "failures", "errors", "skipped"):
        root.set(key, str(sum(int(s.get(key)) for s in suites)))
    root.set("time", f"{sum(r.seconds for r in results):.3f}")
    root.extend(suites)
    _clean(root)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"
