"""`gradlab fuzz`: random valid specs through the three engines; any disagreement is shrunk and
written out as a YAML spec that `gradlab check` re-runs."""

from __future__ import annotations

import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import click

EXAMPLES = """
\b
Examples:
  gradlab fuzz                              # 100 random specs, seed 0
  gradlab fuzz --examples 1000 --seed 7 --output-dir reports/fuzz
"""


class Disagreement(Exception):
    """Raised inside the Hypothesis test: the engines disagree on (or crash on) this spec."""

    def __init__(self, spec: dict, lines: list[str], crash: str = ""):
        super().__init__(lines[0] if lines else crash)
        self.spec, self.lines, self.crash = spec, lines, crash


@dataclass
class FuzzResult:
    examples: int = 0
    seconds: float = 0.0
    found: list[Disagreement] = field(default_factory=list)


def _check(data: dict) -> None:
    """Validate and run one drawn spec; raise Disagreement when the engines do not all agree."""
    import numpy as np

    from .. import runner
    from ..spec import validate

    spec = validate(data, "<fuzz>")  # a SpecError here is a bug in gradlab.strategies: let it surface
    try:
        with np.errstate(all="ignore"):
            result = runner.run(spec, path="<fuzz>")
    except Exception as exc:
        raise Disagreement(data, [], crash="".join(traceback.format_exception(exc))) from None
    if not result.passed:
        raise Disagreement(data, [
            f"{c.parameter}: {c.candidate} vs {c.reference} ({c.dtype}): {c.mismatched}/{c.size} mismatched, "
            f"worst {c.candidate}={c.worst_candidate:.6g} {c.reference}={c.worst_reference:.6g}" + (f" [{c.note}]" if c.note else "")
            for c in result.failures
        ])


def fuzz(examples: int = 100, seed: int = 0) -> FuzzResult:
    """Search `examples` random specs (gradlab.strategies.specs) for one the engines disagree on."""
    from hypothesis import HealthCheck, Phase, Verbosity, given, settings
    from hypothesis import seed as hypothesis_seed

    from ..strategies import specs

    out = FuzzResult()

    @given(specs())
    def probe(data):
        out.examples += 1
        _check(data)

    test = settings(max_examples=examples, deadline=None, database=None, report_multiple_bugs=True, verbosity=Verbosity.quiet,
                    phases=(Phase.explicit, Phase.generate, Phase.shrink), suppress_health_check=list(HealthCheck), print_blob=False)(probe)
    t0 = time.perf_counter()
    try:
        hypothesis_seed(seed)(test)()
    except Disagreement as exc:
        out.found.append(exc)
    except BaseExceptionGroup as group:
        out.found += [e for e in group.exceptions if isinstance(e, Disagreement)]
        if len(out.found) < len(group.exceptions):
            raise
    out.seconds = time.perf_counter() - t0
    return out


def write_spec(found: Disagreement, path: Path, seed: int) -> None:
    import yaml

    data = {"name": path.stem, **found.spec}
    header = [f"# Found by `gradlab fuzz --seed {seed}` and shrunk: the engines disagree on this spec.", f"# Re-run: gradlab check {path}"]
    header += [f"#   {line}" for line in (found.lines or ["gradlab crashed: " + found.crash.strip().splitlines()[-1]])]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(header) + "\n" + yaml.safe_dump(data, sort_keys=False, default_flow_style=None), encoding="utf-8")


@click.command("fuzz", epilog=EXAMPLES)
@click.option("--examples", type=click.IntRange(min=1), default=100, show_default=True, help="Random specs to try.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds the search; the same seed draws the same specs.")
@click.option("--output-dir", type=click.Path(file_okay=False), default="fuzz-failures", show_default=True, help="Where disagreeing specs are written (created only when one is found).")
def command(examples, seed, output_dir):
    """Property-test gradlab itself on random valid specs.

    Draws small networks (depth, widths, activations and their hyperparameters, losses,
    weight conventions, bias modes, init schemes, dtypes, reductions, numeric methods)
    and runs each through the analytic, numeric and autograd engines. A spec on which
    they disagree -- or on which gradlab crashes -- is shrunk to a minimal one and
    written as YAML, ready for `gradlab check`. Exit code 0: the engines agreed on
    every spec; 1: a disagreement was found; 2: bad usage.
    """
    from ..batch import EXIT_FAIL, EXIT_OK

    result = fuzz(examples, seed)
    if not result.found:
        click.echo(f"PASS: the engines agree on all {result.examples} random specs (seed {seed}, {result.seconds:.1f} s)")
        sys.exit(EXIT_OK)
    for n, found in enumerate(result.found, 1):
        path = Path(output_dir) / f"fuzz-seed{seed}-{n}.yaml"
        write_spec(found, path, seed)
        what = "gradlab crashed on" if found.crash else "the engines disagree on"
        click.echo(f"FAIL: {what} a random spec (shrunk), written to {path}")
        for line in found.lines:
            click.echo(f"  {line}")
        if found.crash:
            click.echo("  " + found.crash.rstrip().replace("\n", "\n  "))
        click.echo(f"  re-run: gradlab check {path}")
    sys.exit(EXIT_FAIL)
