"""`gradlab stats SPEC...`: where and why a network's gradients will vanish or explode, before training."""

from __future__ import annotations

import click

from ..batch import quiet_option, safety_options, timeout_option

EXAMPLES = """
\b
Examples:
  gradlab stats specs/stats/tanh10_uniform_fan_in.yaml
  gradlab stats specs/stats/ --report stats.html --report stats.md
  gradlab stats specs/stats/relu10_he_normal.yaml --seeds 16 --format json --output he.json
  gradlab stats specs/stats/*.yaml --batch 256 --lr 0.1 --format csv
"""


@click.command("stats", epilog=EXAMPLES, short_help="Per-layer gradient statistics: vanishing, exploding, dead.")
@click.argument("specs", nargs=-1, required=True, type=click.Path())
# The values are parsed by gradlab.stats.check_option, so an error names the spec file (one spec) and the option.
@click.option("--seeds", metavar="INTEGER", help="Random initialisations (seed, seed+1, ...), at most 10,000; overrides stats.seeds [default: 8].")
@click.option("--batch", metavar="INTEGER", help="Rows per measurement; overrides stats.batch [default: input.batch].")
@click.option("--lr", metavar="FLOAT", help="SGD step for the update ratio, a finite number > 0; overrides stats.lr [default: 0.01].")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True,
              help="Output format (json and csv carry every statistic with its std; several specs: a JSON list, one CSV with a spec column).")
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Write the output to this file instead of stdout.")
@click.option("--report", "reports", multiple=True, type=click.Path(dir_okay=False),
              help="Also write a report to this file; the suffix picks the format: .md, .html (with the depth plot), .json, .csv (repeatable).")
@quiet_option
@timeout_option
@safety_options
def command(specs, seeds, batch, lr, fmt, output, reports=(), quiet=False, timeout=None):
    """Per-layer gradient statistics over several random initialisations, for one or more specs.

    SPECS are files or directories (the specs under them, subfolders too). For every layer with parameters (dense,
    conv, normalisation, attention, a residual block's projection; nested layers inside residual
    blocks included, named by their parameter prefix such as layers.1.layers.0): the RMS of the
    back-propagated error delta = dL/dz at its output and of dL/dW, delta relative to the output
    layer, the factor by which delta shrinks per row beside the variance-propagation theory
    sqrt(n Var[W] E[f'(z)^2]) (where the next row is a dense or conv layer fed directly; empty
    elsewhere), saturated and dead units, the SGD update ratio, and a verdict, the first that
    applies of dead, zero-gradient, saturated, vanishing-dW / exploding-dW (dW rms over the
    output row's), vanishing-delta / exploding-delta (delta over the output's, where dW is in
    bounds), ok, with thresholds from the spec's `stats:` section. A spec that cannot be measured gets its `Error:` line and the others still
    run. Exit code 0, or 2 when a spec or the usage is wrong or user code failed, 3 for an
    internal error.

    Memory and work are bounded before anything runs: a batch whose measurement would
    not fit in check.memory_limit, more than 10,000 seeds, or seeds x batch x (weights
    + units) above 1e11 multiply-adds is refused, naming the option or key to change.
    """
    import json
    from datetime import datetime, timezone

    from .. import stats
    from ..batch import EXIT_INTERNAL, EXIT_OK, EXIT_USAGE, echo_errors, expand_specs, guarded, in_order, load_all
    from ..output import check_writable, write_atomic, write_text
    from ..report import stats_report, stats_table
    from ..usercode import deadline
    from .report import append_step_summary

    targets = [(str(p), stats_report.format_for(p)) for p in reports]  # a bad suffix fails before anything runs
    for path in ([output] if output else []):
        check_writable(path)
    for path, _ in targets:
        check_writable(path, "--report")
    paths = expand_specs(specs)
    # several specs share the options: an error names the file only when there is one
    label = str(paths[0]) if len(paths) == 1 else None
    overrides = {k: stats.check_option(k, v, label) for k, v in {"seeds": seeds, "batch": batch, "lr": lr}.items() if v is not None}

    loaded, invalid = load_all(specs, timeout=timeout)

    def measure(path, spec):
        with deadline(timeout or spec.check.timeout, path):
            return stats.run(spec, path=path, **overrides)

    ran = [guarded(path, lambda path=path, spec=spec: measure(path, spec), name=spec.name) for path, spec in loaded]
    everything = in_order(specs, invalid, ran)
    failed = [r for r in everything if getattr(r, "error", None) is not None]
    results = [r for r in everything if getattr(r, "error", None) is None]

    if results:
        if fmt == "json":
            text = stats_table.to_json(results[0]) if len(paths) == 1 else json.dumps([r.to_dict() for r in results], indent=2)
            write_text(text, output)
        elif fmt == "csv":
            write_text(stats_report.to_csv(results).rstrip("\n"), output)
        elif output:
            write_text(stats_table.render_text(results), output)
        elif quiet:
            click.echo(stats_report.verdict_line(results, [(r.path, r.error) for r in failed]))
        else:
            stats_table.render(results)
            if len(paths) > 1:
                click.echo(stats_report.verdict_line(results, [(r.path, r.error) for r in failed]))
        # reports are rendered whole before any is written; none when nothing could be measured
        generated = datetime.now(timezone.utc).isoformat(timespec="seconds")
        rendered = [(path, kind, stats_report.render(kind, results, [(r.path, r.error) for r in failed], generated=generated))
                    for path, kind in targets]
        for path, kind, text in rendered:
            write_atomic(path, text)
            if not quiet:
                click.echo(f"report: {path} ({kind})", err=True)
        markdown = next((text for _, kind, text in rendered if kind == "md"), None)
        if markdown is not None:
            append_step_summary(markdown)
    echo_errors(failed)
    code = EXIT_INTERNAL if any(getattr(r, "error_kind", "") == "internal" for r in failed) else EXIT_USAGE if failed else EXIT_OK
    click.get_current_context().exit(code)
