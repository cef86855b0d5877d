"""`gradlab fuzz`: random valid specs through the three engines; any disagreement is shrunk and
written out as a YAML spec that `gradlab check` re-runs.

With an executor the drawn specs are judged in parallel, and the search finds exactly what it finds
alone: Hypothesis draws its next spec from the verdicts so far, so the search is replayed with the
verdicts known (cheap: drawing costs milliseconds, judging a spec far more), the specs it draws next
are judged on the executor as a batch, and so on until the replay draws nothing unjudged. The last
replay is the sequential search itself (with shrinking), its verdicts looked up instead of computed.
"""

from __future__ import annotations

import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import click

from ..executors import executor_options

EXAMPLES = """
\b
Examples:
  gradlab fuzz                              # 100 random specs, seed 0, every architecture
  gradlab fuzz --examples 1000 --seed 7 --output-dir reports/fuzz
  gradlab fuzz --architectures cnn,transformer --examples 300
  gradlab fuzz --architectures mlp          # the dense-only networks of the first fuzzer
  gradlab fuzz --examples 1000 --executor local --workers 4   # judged in parallel, same finds
"""


class Disagreement(Exception):
    """Raised inside the Hypothesis test: the engines disagree on (or crash on) this spec."""

    def __init__(self, spec: dict, lines: list[str], crash: str = ""):
        super().__init__(lines[0] if lines else crash)
        self.spec, self.lines, self.crash = spec, lines, crash


class Refused(Exception):
    """gradlab declined to check a drawn spec at its point (e.g. a float32 loss saturated to inf): a SpecError
    from the run, not from validation. That is the documented answer for such a spec, not a disagreement."""


@dataclass
class FuzzResult:
    examples: int = 0
    seconds: float = 0.0
    found: list[Disagreement] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # the reasons, one per refused draw


def _check(data: dict) -> None:
    """Validate and run one drawn spec; raise Disagreement when the engines do not all agree."""
    import numpy as np

    from .. import runner
    from ..errors import SpecError
    from ..spec import validate

    spec = validate(data, "<fuzz>")  # a SpecError here is a bug in gradlab.strategies: let it surface
    try:
        with np.errstate(all="ignore"):
            result = runner.run(spec, path="<fuzz>")
    except SpecError as exc:
        raise Refused(f"{exc.path}: {exc.message}") from None
    except Exception as exc:
        raise Disagreement(data, [], crash="".join(traceback.format_exception(exc))) from None
    if not result.passed:
        raise Disagreement(data, [
            f"{c.parameter}: {c.candidate} vs {c.reference} ({c.dtype}): {c.mismatched}/{c.size} mismatched, "
            f"worst {c.candidate}={c.worst_candidate:.6g} {c.reference}={c.worst_reference:.6g}" + (f" [{c.note}]" if c.note else "")
            for c in result.failures
        ])


def judge(data: dict) -> tuple:
    """One drawn spec's verdict, as a picklable value: ("pass",), ("refused", why) or ("disagree", lines, crash)."""
    try:
        _check(data)
    except Refused as exc:
        return ("refused", str(exc))
    except Disagreement as exc:
        return ("disagree", exc.lines, exc.crash)
    return ("pass",)


def judge_all(datas: list, judge=judge) -> list:
    """One executor job: the verdicts of a batch of drawn specs."""
    return [judge(d) for d in datas]


def fuzz(examples: int = 100, seed: int = 0, architectures=("mlp",), *, executor=None, judge=judge) -> FuzzResult:
    """Search `examples` random specs (gradlab.strategies.specs, of the given architectures) for one the
    engines disagree on; with `executor` (gradlab.executors) the specs are judged there in parallel, and
    the result is the same. `judge(data) -> verdict` decides one spec (a module-level function)."""
    known: dict[str, tuple] = {}
    t0 = time.perf_counter()
    if executor is not None:
        _judge_ahead(executor, known, examples, seed, architectures, judge)

    def verdict(data):
        key = repr(data)
        if key not in known:
            known[key] = judge(data)
        return known[key]

    out = _search(examples, seed, architectures, verdict, shrink=True)
    out.seconds = time.perf_counter() - t0
    return out


def _search(examples: int, seed: int, architectures, verdict, *, shrink: bool) -> FuzzResult:
    """Hypothesis' search over drawn specs; `verdict(data)` says what each is (None: unknown, taken as a pass)."""
    from hypothesis import HealthCheck, Phase, Verbosity, given, reject, settings
    from hypothesis import seed as hypothesis_seed

    from ..strategies import specs

    out = FuzzResult()

    @given(specs(architectures=tuple(architectures)))
    def probe(data):
        out.examples += 1
        said = verdict(data) or ("pass",)
        if said[0] == "refused":  # not a valid example: Hypothesis draws another in its place
            out.examples -= 1
            out.refused.append(said[1])
            reject()
        if said[0] == "disagree":
            raise Disagreement(data, said[1], crash=said[2])

    phases = (Phase.explicit, Phase.generate) + ((Phase.shrink,) if shrink else ())
    test = settings(max_examples=examples, deadline=None, database=None, report_multiple_bugs=True, verbosity=Verbosity.quiet,
                    phases=phases, suppress_health_check=list(HealthCheck), print_blob=False)(probe)
    try:
        hypothesis_seed(seed)(test)()
    except Disagreement as exc:
        out.found.append(exc)
    except BaseExceptionGroup as group:
        out.found += [e for e in group.exceptions if isinstance(e, Disagreement)]
        if len(out.found) < len(group.exceptions):
            raise
    return out


def _judge_ahead(executor, known: dict, examples: int, seed: int, architectures, judge) -> None:
    """Fill `known` with the verdicts of every spec the search draws before it shrinks, judged on `executor`."""
    import os

    while True:
        unjudged: dict[str, dict] = {}

        def verdict(data):
            key = repr(data)
            if key not in known:
                unjudged.setdefault(key, data)
            return known.get(key)

        _search(examples, seed, architectures, verdict, shrink=False)
        if not unjudged:
            return
        keys = list(unjudged)
        jobs = 4 * (getattr(executor, "workers", None) or os.cpu_count() or 1)  # small enough to balance the load
        size = -(-len(keys) // jobs)
        batches = [keys[i:i + size] for i in range(0, len(keys), size)]
        futures = [executor.submit(judge_all, [unjudged[k] for k in batch], judge) for batch in batches]
        lost = False
        for batch, future in zip(batches, futures):
            try:
                known.update(zip(batch, future.result()))
            except Exception:  # a worker crashed or timed out: the search judges these itself, in this process
                lost = True
        if lost:
            return


def write_spec(found: Disagreement, path: Path, seed: int) -> None:
    import yaml

    data = {"name": path.stem, **found.spec}
    header = [f"# Found by `gradlab fuzz --seed {seed}` and shrunk: the engines disagree on this spec.", f"# Re-run: gradlab check {path}"]
    header += [f"#   {line}" for line in (found.lines or ["gradlab crashed: " + found.crash.strip().splitlines()[-1]])]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(header) + "\n" + yaml.safe_dump(data, sort_keys=False, default_flow_style=None), encoding="utf-8")


def _architectures(ctx, param, value: str) -> tuple[str, ...]:
    from ..strategies import ARCHITECTURES

    names = tuple(dict.fromkeys(n.strip() for n in value.split(",") if n.strip()))
    if "all" in names:
        return ARCHITECTURES
    unknown = [n for n in names if n not in ARCHITECTURES]
    if unknown or not names:
        raise click.BadParameter(f"expected a comma-separated list of {', '.join(ARCHITECTURES)} (or all), got {value!r}")
    return names


@click.command("fuzz", epilog=EXAMPLES, short_help="Property-test gradlab itself on random valid specs.")
@click.option("--examples", type=click.IntRange(min=1), default=100, show_default=True, help="Random specs to try.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds the search; the same seed draws the same specs.")
@click.option("--output-dir", type=click.Path(file_okay=False), default="fuzz-failures", show_default=True, help="Where disagreeing specs are written (created only when one is found).")
@click.option("--architectures", default="all", show_default=True, callback=_architectures, metavar="LIST",
              help="Comma-separated families of networks to draw, mixed: mlp (dense layers and activations), "
                   "cnn (conv1d/conv2d, pools, norms, dropout, flatten/global_avgpool, dense head on (C, L) or (C, H, W)), "
                   "residual (residual MLP and CNN blocks, with and without projection), transformer (layernorm, "
                   "attention, gelu MLP blocks on (T, D)); or all. The first listed is where shrinking heads.")
@executor_options
def command(examples, seed, output_dir, architectures, executor=None):
    """Property-test gradlab itself on random valid specs.

    Draws small networks (depth, widths, activations and their hyperparameters, losses,
    weight conventions, bias modes, init schemes, dtypes, reductions, numeric methods) of
    the chosen architectures -- dense MLPs, and N-d CNNs, residual networks and transformer
    blocks (shapes tracked while drawing, so every spec is valid; under ~1,200 parameters)
    -- and runs each through the analytic, numeric and autograd engines. A spec on which
    they disagree -- or on which gradlab crashes -- is shrunk to a minimal one and
    written as YAML, ready for `gradlab check`. A spec gradlab refuses at its point (a
    SpecError from the run, e.g. a float32 loss saturated to inf) is counted and replaced
    by another draw. With --executor the specs are judged in parallel, with the same
    finds as without for the same seed. Exit code 0: the engines agreed on every spec; 1: a disagreement was
    found; 2: bad usage.
    """
    from ..batch import EXIT_FAIL, EXIT_OK

    if executor is None:
        result = fuzz(examples, seed, architectures)
    else:
        with executor.make() as pool:
            result = fuzz(examples, seed, architectures, executor=pool)
    if not result.found:
        click.echo(f"PASS: the engines agree on all {result.examples} random specs ({', '.join(architectures)}; seed {seed}, {result.seconds:.1f} s)")
        if result.refused:
            click.echo(f"  ({len(result.refused)} more drawn spec(s) refused by gradlab at their point, e.g. {result.refused[0]})")
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
