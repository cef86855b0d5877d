"""The `gradlab` command line: each command parses, calls one function, renders, returns an exit code.

Exit codes: 0 every check passed, 1 a discrepancy was found, 2 bad spec or usage.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from . import __version__
from .errors import GradlabError, SpecError

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


class _Group(click.Group):
    """Turns user mistakes into `Error: ...` and exit code 2, never a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except GradlabError as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(EXIT_USAGE)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="gradlab")
def main():
    """gradlab: check a network's gradients three ways (hand-written backprop,
    finite differences, PyTorch autograd) and report where they disagree."""


def expand_specs(paths) -> list[Path]:
    """Files as given; directories contribute their *.yaml / *.yml files, sorted."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted([*p.glob("*.yaml"), *p.glob("*.yml")])
            if not found:
                raise SpecError(str(p), "(directory)", "no *.yaml specs in this directory")
            out += found
        elif not p.exists():
            raise SpecError(str(p), "(file)", "no such file")
        else:
            out.append(p)
    return out


def load_all(paths) -> list:
    """Validate every spec before running any, so a typo in the tenth file costs nothing."""
    from .spec import load_spec

    specs, errors = [], []
    for p in expand_specs(paths):
        try:
            specs.append((str(p), load_spec(p)))
        except SpecError as exc:
            errors.append(str(exc))
    if errors:
        raise GradlabError("\n".join(errors) if len(errors) == 1 else f"{len(errors)} spec(s) are invalid:\n  " + "\n  ".join(errors))
    return specs


def write_text(text: str, output: str | None) -> None:
    if output is None:
        click.echo(text)
        return
    try:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        Path(output).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise GradlabError(f"cannot write {output}: {exc}") from None


def results_json(results) -> str:
    from .environment import environment

    doc = {"passed": all(r.passed for r in results), "environment": environment(results), "specs": [r.to_dict() for r in results]}
    return json.dumps(doc, indent=2, default=float)


def parse_engines(engines: str | None) -> list[str] | None:
    """`--engines analytic,numeric` -> a list, or an error naming what is allowed."""
    if not engines:
        return None
    engine_list = [e.strip() for e in engines.split(",") if e.strip()]
    bad = [e for e in engine_list if e not in ("analytic", "numeric", "autograd")]
    if bad or len(set(engine_list)) < 2:
        raise GradlabError(f"--engines: expected at least two of analytic,numeric,autograd, got {engines!r}")
    return engine_list


def check_devices(devices) -> None:
    import re

    for d in devices:
        if not re.fullmatch(r"cpu|cuda(:\d+)?", d):
            raise GradlabError(f"--device: unknown device {d!r}; expected cpu, cuda or cuda:N")


def numeric_elements(spec) -> int:
    """How many elements the numeric engine differentiates: the progress bar's total for one spec."""
    from .memory import layer_sizes

    return sum(n for *_, n in layer_sizes(spec)) + (spec.input.batch * spec.input.dim if spec.check.wrt_input else 0)


def run_loaded(loaded, *, progress: bool = True, **options) -> list:
    """Check validated (path, spec) pairs in order; a progress bar on stderr when that is a terminal and the run is slow."""
    from . import runner
    from .report.progress import RunProgress

    with RunProgress(len(loaded), enabled=progress) as bar:
        return [runner.run(spec, path=path, progress=bar.spec(spec.name or Path(path).stem, numeric_elements(spec)), **options)
                for path, spec in loaded]


CHECK_EXAMPLES = """
\b
Examples:
  gradlab check specs/seed003_two_layer.yaml
  gradlab check specs/                      # every *.yaml in the folder
  gradlab check specs/*.yaml --format json --output reports/check.json
  gradlab check my_net.yaml --device cpu --device cuda --method richardson
  gradlab check big_net.yaml --mode fast         # projections + bisection, any size
  gradlab check specs/ --report report.md --report report.html --report junit.xml
"""


@main.command(epilog=CHECK_EXAMPLES)
@click.argument("specs", nargs=-1, required=True, type=click.Path())
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True, help="Output format.")
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Write the output to this file instead of stdout.")
@click.option("--report", "reports", multiple=True, type=click.Path(dir_okay=False),
              help="Also write a report; the suffix picks the format: .md, .html, .json, .csv, .xml (JUnit). Repeatable.")
@click.option("--device", "devices", multiple=True, help="Autograd device(s), e.g. cpu, cuda, cuda:1 (repeatable; overrides check.devices).")
@click.option("--method", type=click.Choice(["auto", "central", "richardson", "complex_step"]), help="Finite-difference method (overrides check.numeric.method).")
@click.option("--mode", type=click.Choice(["auto", "full", "fast"]), help="full: every element; fast: random projections with bisection; auto: full up to 250,000 parameters (overrides check.mode).")
@click.option("--engines", help="Comma-separated engines to run (analytic,numeric,autograd); overrides check.engines.")
@click.option("-q", "--quiet", is_flag=True, help="Print only the verdict line.")
@click.option("-v", "--verbose", is_flag=True, help="Also list every tensor's worst elements, each engine's value side by side.")
@click.option("--stats", "with_stats", is_flag=True, help="Append `gradlab stats`' per-layer vanishing/exploding table for each spec.")
def check(specs, fmt, output, devices, method, mode, engines, quiet, verbose, with_stats=False, reports=()):
    """Check the gradients of one or more YAML specs.

    Every parameter tensor is differentiated by the analytic engine (hand-written
    backprop), the numeric engine (finite differences, float64) and autograd (PyTorch
    on each device); each pair is compared element by element. Exit code 0 when
    everything agrees, 1 when a discrepancy is found, 2 for a bad spec or usage.
    """
    from .commands.report import report_targets, write_reports

    engine_list = parse_engines(engines)
    check_devices(devices)
    targets = report_targets(reports)
    loaded = load_all(specs)
    results = run_loaded(loaded, progress=not quiet, devices=list(devices) or None, engines=engine_list, method=method, mode=mode)
    from . import stats as stats_mod
    from .report import stats_table

    stats_results = [stats_mod.run(spec, path=path) for path, spec in loaded] if with_stats else []
    if fmt == "json":
        write_text(stats_table.merge_json(results_json(results), stats_results), output)
    else:
        from rich.console import Console

        from .report.terminal import render

        if output:
            import io

            console = Console(record=True, width=100, file=io.StringIO())
            render(results, console=console, quiet=quiet, verbose=verbose)
            stats_table.render(stats_results, console=console)
            write_text(console.export_text(), output)
        render(results, quiet=quiet, verbose=verbose)
        stats_table.render(stats_results)
    write_reports(results, targets, specs=dict(loaded), quiet=quiet)
    sys.exit(EXIT_OK if all(r.passed for r in results) else EXIT_FAIL)


def _add_module_commands() -> None:
    import importlib
    import pkgutil

    from . import commands

    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        main.add_command(module.command)


_add_module_commands()
