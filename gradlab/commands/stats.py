"""`gradlab stats SPEC`: where and why a network's gradients will vanish or explode, before training."""

from __future__ import annotations

import click

from ..batch import safety_options, timeout_option

EXAMPLES = """
\b
Examples:
  gradlab stats specs/stats/tanh10_uniform_fan_in.yaml
  gradlab stats specs/stats/relu10_he_normal.yaml --seeds 16 --format json --output he.json
  gradlab stats my_net.yaml --batch 256 --lr 0.1 --format csv
"""


@click.command("stats", epilog=EXAMPLES)
@click.argument("spec", type=click.Path(dir_okay=False))
# The values are parsed by gradlab.stats.check_option, so an error names the spec file and the option.
@click.option("--seeds", metavar="INTEGER", help="Random initialisations (seed, seed+1, ...), at most 10,000; overrides stats.seeds [default: 8].")
@click.option("--batch", metavar="INTEGER", help="Rows per measurement; overrides stats.batch [default: input.batch].")
@click.option("--lr", metavar="FLOAT", help="SGD step for the update ratio, a finite number > 0; overrides stats.lr [default: 0.01].")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True, help="Output format (json and csv carry every statistic with its std).")
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Write the output to this file instead of stdout.")
@timeout_option
@safety_options
def command(spec, seeds, batch, lr, fmt, output, timeout=None):
    """Per-layer gradient statistics over several random initialisations.

    For every dense layer: the RMS of the back-propagated error delta = dL/dz and of
    dL/dW, delta relative to the output layer, the factor by which delta shrinks per
    layer beside the variance-propagation theory sqrt(n Var[W] E[f'(z)^2]), saturated
    and dead units, the SGD update ratio, and a verdict (vanishing, exploding, dead,
    saturated, ok) with thresholds from the spec's `stats:` section. Exit code 0, or
    2 for a bad spec, bad usage or failing user code, 3 for an internal error.

    Memory and work are bounded before anything runs: a batch whose measurement would
    not fit in check.memory_limit, more than 10,000 seeds, or seeds x batch x (weights
    + units) above 1e11 multiply-adds is refused, naming the option or key to change.
    """
    from .. import stats
    from ..cli import write_text
    from ..report import stats_table
    from ..output import check_writable
    from ..spec import load_spec
    from ..usercode import deadline

    if output:
        check_writable(output)
    loaded = load_spec(spec, timeout=timeout)
    overrides = {k: stats.check_option(k, v, spec) for k, v in {"seeds": seeds, "batch": batch, "lr": lr}.items() if v is not None}
    with deadline(timeout or loaded.check.timeout, spec):
        result = stats.run(loaded, path=spec, **overrides)
    if fmt == "json":
        write_text(stats_table.to_json(result), output)
    elif fmt == "csv":
        write_text(stats_table.to_csv(result).rstrip("\n"), output)
    elif output:
        write_text(stats_table.render_text([result]), output)
    else:
        stats_table.render([result])
