"""The views every format shares: failures first, skipped pairs folded, counts, flat rows for pandas."""

from __future__ import annotations

from dataclasses import dataclass

from ..coverage import account, of_run, summary
from .labels import STATUSES


def ordered_results(results) -> list:
    """Specs with a discrepancy first, otherwise in the order they were given."""
    return sorted(results, key=lambda r: r.passed)


@dataclass(frozen=True)
class SkippedPair:
    """One line for an engine pair that could not run (e.g. no CUDA), instead of one per tensor."""

    candidate: str
    reference: str
    device: str
    reason: str
    tensors: int


def table_rows(result) -> tuple[list, list[SkippedPair]]:
    """The judged comparisons, failures first, and the skipped engine pairs, folded."""
    judged = sorted((c for c in result.comparisons if c.status != "skipped"), key=lambda c: c.status != "fail")
    skipped: dict[tuple[str, str, str], SkippedPair] = {}
    for c in result.comparisons:
        if c.status == "skipped":
            key = (c.candidate, c.reference, c.device)
            prev = skipped.get(key)
            skipped[key] = SkippedPair(c.candidate, c.reference, c.device, c.note, (prev.tensors if prev else 0) + 1)
    return judged, list(skipped.values())


def status_counts(comparisons) -> dict[str, int]:
    return {s: sum(c.status == s for c in comparisons) for s in STATUSES}


def verdict(results) -> str:
    """The one line that answers "do the gradients agree?", with the counts behind it."""
    n = len(results)
    errored = [r for r in results if getattr(r, "error", None) is not None]
    failed = [r for r in results if not r.passed and getattr(r, "error", None) is None]
    counts = status_counts([c for r in results for c in r.comparisons])
    detail = ", ".join(f"{v} {k}" for k, v in counts.items() if v)
    if errored:
        names = ", ".join(r.name for r in errored)
        also = f"; {len(failed)} more have gradient discrepancies ({', '.join(r.name for r in failed)})" if failed else ""
        return f"ERROR: {len(errored)} of {n} spec(s) could not be checked ({names}){also}; {detail or 'nothing compared'}"
    if failed:
        names = ", ".join(r.name for r in failed)
        return f"FAIL: {len(failed)} of {n} spec(s) have gradient discrepancies ({names}){_suspect(failed)}; {detail}"
    missing = of_run(results)
    if missing:
        return f"INCOMPLETE: what was checked agrees, but not everything was checked: {summary(missing)}; {detail or 'nothing compared'}"
    return f"PASS: {n} spec(s), gradients agree; {detail}"


def complete(results) -> bool:
    """Everything asked for was checked and agrees: the only state a report may show as a plain pass."""
    return account(results)["passed"]


def _suspect(failed) -> str:
    """`; suspect: backward of network.layers[5] (ops.py:SwishWrongBeta)`: the first failing spec's diagnosis, kept short."""
    for r in failed:
        found = getattr(r, "diagnosis", None) or []
        if found:
            whose = f" ({r.name})" if len(failed) > 1 else ""
            return f"; suspect{whose}: {found[0].headline()}"
    return ""


def devices(results) -> tuple[list[str], list[str]]:
    """(devices that ran a comparison, devices asked for whose every comparison was skipped): one answer for every report."""
    ran = {c.device for r in results for c in r.comparisons if c.status != "skipped"}
    asked = {c.device for r in results for c in r.comparisons}
    return sorted(ran), sorted(asked - ran)


def device_name(device: str, environment: dict) -> str:
    """cpu -> the processor, cuda:1 -> the name of that GPU (from the run's environment)."""
    if device == "cpu":
        return environment.get("cpu", "")
    gpus = environment.get("cuda_devices") or []
    number = int(device.split(":")[1]) if ":" in device else 0
    return gpus[number] if number < len(gpus) else ""


def flat_rows(results, environment: dict) -> list[dict]:
    """One dict per comparison, failures first, with the spec's and the run's provenance on every row.

    CSV and JSON write exactly these rows, so `pandas.read_csv` and `pandas.DataFrame(doc["rows"])`
    give the same frame, and rows from several runs can be concatenated without losing which
    versions and which spec file produced them.
    """
    rows = []
    for r in ordered_results(results):
        spec_env = environment.get("specs", {}).get(r.path, {})
        judged, _ = table_rows(r)
        ordered = judged + [c for c in r.comparisons if c.status == "skipped"]
        for c in ordered:
            d = c.to_dict()
            rows.append({
                "spec": d.pop("spec"),
                "name": r.name,
                **d,
                "device_name": device_name(c.device, environment),
                "seed": r.seed,
                "numeric_method": r.method,
                "spec_sha256": spec_env.get("sha256"),
                "gradlab": environment.get("gradlab"),
                "numpy": environment.get("numpy"),
                "torch": environment.get("torch"),
                "python": environment.get("python"),
            })
    return rows


def results_frame(results, environment: dict | None = None):
    """The flat rows as a pandas DataFrame: the comparison table for pandas users (`pip install 'gradlab[pandas]'`)."""
    try:
        import pandas as pd
    except ImportError:
        from ..errors import GradlabError

        raise GradlabError("results_frame needs pandas, which gradlab does not install by default: pip install 'gradlab[pandas]'") from None

    if environment is None:
        from ..environment import environment as run_environment

        environment = run_environment(results)
    return pd.DataFrame(flat_rows(results, environment))
