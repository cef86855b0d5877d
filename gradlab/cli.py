"""The `gradlab` command line: each command parses, calls one function, renders, returns an exit code.

Exit codes (decided in gradlab.batch from typed outcomes): 0 every check passed, 1 a discrepancy
was found, 2 bad spec, bad usage or failing user code, 3 an internal error of gradlab, 130 Ctrl-C.
"""

from __future__ import annotations

import json
import signal

import click

from . import __version__
from .batch import (  # noqa: F401  (EXIT_OK, EXIT_FAIL, numeric_elements: re-exported for callers and tests)
    EXIT_FAIL,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    check_devices,
    check_specs,
    echo_errors,
    exit_code,
    guarded,
    internal_message,
    numeric_elements,
    parse_engines,
    quiet_option,
    safety_options,
    stats_within,
    timeout_option,
)
from .errors import GradlabError
from .executors import check_specs_on, executor_options
from .output import check_writable, write_text  # noqa: F401  (write_text: re-exported)
from .usercode import Timeout, install_sigint


class _Group(click.Group):
    """Turns every failure into its exit code: user mistakes `Error: ...` and 2, Ctrl-C 130, bugs 3, never a traceback."""

    def invoke(self, ctx):
        install_sigint()
        if hasattr(signal, "SIGXFSZ"):  # over `ulimit -f`: let write() fail (and the file stay whole) instead of dying
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        try:
            return super().invoke(ctx)
        except GradlabError as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(EXIT_USAGE)
        except Timeout as exc:
            click.echo(f"Error: {exc.message()}", err=True)
            ctx.exit(EXIT_USAGE)
        except (KeyboardInterrupt, click.Abort):
            click.echo("Interrupted (Ctrl-C).", err=True)
            ctx.exit(EXIT_INTERRUPTED)
        except (click.exceptions.Exit, click.ClickException, SystemExit):
            raise
        except BrokenPipeError:  # `gradlab check ... | head`: the reader went away
            import os
            import sys

            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error while Python flushes at exit
            click.echo("Error: the output was closed before gradlab finished writing (broken pipe)", err=True)
            ctx.exit(EXIT_USAGE)
        except RecursionError as exc:
            click.echo(f"Error: recursion too deep ({exc})", err=True)
            ctx.exit(EXIT_USAGE)
        except MemoryError:
            click.echo("Error: out of memory; shrink the network or batch, or lower check.memory_limit so gradlab refuses it up front", err=True)
            ctx.exit(EXIT_USAGE)
        except Exception as exc:
            click.echo(f"Error: {internal_message(exc)}", err=True)
            ctx.exit(EXIT_INTERNAL)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="gradlab")
def main():
    """gradlab: check a network's gradients three ways (hand-written backprop,
    finite differences, PyTorch autograd) and report where they disagree."""


def results_json(results) -> str:
    from .environment import environment

    from .batch import check_document

    doc = check_document(results, environment(results))
    return json.dumps(doc, indent=2, default=float)


CHECK_EXAMPLES = """
\b
Examples:
  gradlab check specs/seed003_two_layer.yaml
  gradlab check specs/                      # every spec under the folder, subfolders too (as pytest specs/)
  gradlab check specs/*.yaml --format json --output reports/check.json
  gradlab check my_net.yaml --device cpu --device cuda --method richardson
  gradlab check big_net.yaml --mode fast         # projections + bisection, any size
  gradlab check specs/ --report reports/check.md --report reports/check.html --report reports/junit.xml
  gradlab check specs/ --executor local --workers 4   # each spec in its own worker process
"""


@main.command(epilog=CHECK_EXAMPLES, short_help="Check the gradients of YAML specs three ways.")
@click.argument("specs", nargs=-1, required=True, type=click.Path())
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True, help="Output format.")
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Write the output to this file instead of stdout.")
@click.option("--report", "reports", multiple=True, type=click.Path(dir_okay=False),
              help="Also write a report; the suffix picks the format: .md, .html, .json, .csv, .xml (JUnit). Repeatable.")
@click.option("--device", "devices", multiple=True, help="Autograd device(s), e.g. cpu, cuda, cuda:1 (repeatable; overrides check.devices).")
@click.option("--method", type=click.Choice(["auto", "central", "richardson", "complex_step"]), help="Finite-difference method (overrides check.numeric.method).")
@click.option("--mode", type=click.Choice(["auto", "full", "fast"]), help="full: every element; fast: random projections with bisection; auto: full up to 250,000 parameters (overrides check.mode).")
@click.option("--engines", help="Comma-separated engines to run (analytic,numeric,autograd); overrides check.engines.")
@quiet_option
@click.option("-v", "--verbose", is_flag=True,
              help="Every spec's full table, with each comparison's cosine, and every tensor's worst elements with each engine's value "
                   "side by side (without -v a passing spec is one summary line).")
@click.option("--stats", "with_stats", is_flag=True, help="Append `gradlab stats`' per-layer vanishing/exploding table for each spec.")
@click.option("--remote", metavar="URL", help="Run the checks on a `gradlab serve` server (e.g. http://gpu-box:8750) and print what a local check prints; "
                                            "$GRADLAB_TOKEN is sent as its bearer token.")
@click.option("--label", metavar="TEXT", help="With --remote: who or which commit the run is for, shown in the server's runs list.")
@timeout_option
@executor_options
@safety_options
def check(specs, fmt, output, devices, method, mode, engines, quiet, verbose, with_stats=False, reports=(), timeout=None, remote=None, label=None,
          executor=None):
    """Check the gradients of one or more YAML specs.

    Every parameter tensor is differentiated by the analytic engine (hand-written
    backprop), the numeric engine (finite differences, float64) and autograd (PyTorch
    on each device); each pair is compared element by element. Exit code 0 when
    everything agrees, 1 when a discrepancy is found, 2 for a bad spec, bad usage or
    failing user code (the other specs are still checked), 3 for an internal error.
    """
    from .commands.report import render_reports, report_targets, write_rendered

    engine_list = parse_engines(engines)
    check_devices(devices)
    if label is not None and not remote:
        raise GradlabError("--label names a run on a gradlab serve server; use it with --remote URL")
    if remote:
        from .service.client import check_remote

        click.get_current_context().exit(check_remote(remote, specs, label=label, fmt=fmt, output=output, reports=reports, devices=list(devices),
                                                      method=method, mode=mode, engines=engine_list, quiet=quiet, verbose=verbose,
                                                      stats=with_stats, timeout=timeout))
    targets = report_targets(reports)
    for path in ([output] if output else []) + [p for p, _ in targets]:
        check_writable(path, "--output" if path == output else "--report")
    how = dict(progress=not quiet, timeout=timeout, devices=list(devices) or None, engines=engine_list, method=method, mode=mode)
    loaded, results = check_specs_on(executor, specs, **how) if executor else check_specs(specs, **how)
    from .report import stats_table

    stats_all = [guarded(path, lambda path=path, spec=spec: stats_within(spec, path, timeout)) for path, spec in loaded] if with_stats else []
    stats_results = [s for s in stats_all if getattr(s, "error", None) is None]
    # --stats is an extra: a spec it cannot measure (a custom layer, a batch too big for the limit) gets a note, and the
    # gradient check's exit code stands; only an internal error of stats changes it.
    stats_errors = [s for s in stats_all if getattr(s, "error_kind", "") == "internal"]
    for s in stats_all:
        if getattr(s, "error_kind", "") == "user":
            click.echo(f"note: --stats skipped: {s.error}", err=True)
    # Render everything first, then write: an interrupted run leaves the previous files, not half of a new set.
    rendered = render_reports(results, targets, specs=dict(loaded))
    if fmt == "json":
        text = stats_table.merge_json(results_json(results), stats_results)
        if output:
            rendered.insert(0, (output, "output", text))
        else:
            click.echo(text)
    else:
        from rich.console import Console

        from .report.terminal import render

        if output:
            import io

            console = Console(file=io.StringIO(), no_color=True)  # a file: plain lines, never wrapped or padded
            render(results, console=console, quiet=quiet, verbose=verbose)
            stats_table.render(stats_results, console=console)
            rendered.insert(0, (output, "output", console.file.getvalue()))
        render(results, quiet=quiet, verbose=verbose)
        if quiet and stats_results:  # -q: the verdict line, here the stats' one after the check's
            from .report.stats_report import verdict_line

            click.echo(verdict_line(stats_results, []))
        else:
            stats_table.render(stats_results)
    write_rendered(rendered, quiet=quiet)
    echo_errors(results + stats_errors)
    click.get_current_context().exit(exit_code(results + stats_errors))


def _add_module_commands() -> None:
    import importlib
    import pkgutil

    from . import commands

    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        main.add_command(module.command)


_add_module_commands()
