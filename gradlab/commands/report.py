"""`gradlab report`: check specs and write one document (md, html, json, csv, junit) for all of them.

Also home of what a report needs besides the results, gathered once for `gradlab report`
and `gradlab check --report`: the run's environment and, for HTML, each spec's gradient
profile by depth from `gradlab stats`. The formats themselves (gradlab.report) stay pure
functions of these inputs.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone

import click

from ..batch import quiet_option, safety_options, timeout_option
from ..errors import GradlabError
from ..report import FORMATS, format_for, render
from ..report.depth import DepthProfile

STEP_SUMMARY = "GITHUB_STEP_SUMMARY"

EXAMPLES = """
\b
Examples:
  gradlab report specs/ --format html --output reports/gradients.html
  gradlab report specs/ --output reports/gradients.md   # format from the suffix
  gradlab report specs/*.yaml --format junit --output reports/junit.xml
  gradlab report my_net.yaml --format csv | python -c "import pandas, sys; print(pandas.read_csv(sys.stdin))"
"""


def report_environment(results) -> dict:
    """The run's environment (versions, devices, seeds, spec hashes) and when the report was made."""
    from ..environment import environment

    return {**environment(results), "generated": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def depth_profile(spec, path: str) -> DepthProfile | None:
    """What the HTML report plots by depth: `gradlab stats`' per-layer means and spreads, with its verdicts.

    None where stats has nothing to say (it refuses the network, or there is no dense layer).
    """
    from .. import stats
    from ..report.depth import from_stats

    try:
        result = stats.run(spec, path=path)
    except GradlabError:
        return None
    return from_stats(result) if result.layers else None


def append_step_summary(markdown: str) -> None:
    """GitHub Actions shows what a step appends to $GITHUB_STEP_SUMMARY on the run's page."""
    target = os.environ.get(STEP_SUMMARY)
    if not target:
        return
    try:
        with open(target, "a", encoding="utf-8") as f:
            f.write(markdown.rstrip("\n") + "\n\n")
    except OSError as exc:
        click.echo(f"warning: cannot append the report to ${STEP_SUMMARY} ({target}): {exc}", err=True)


def render_reports(results, targets: list[tuple[str | None, str]], *, specs: dict | None = None) -> list[tuple[str | None, str, str]]:
    """(path, format, text) for each target; rendering is the slow part, so it all happens before any file is written."""
    if not targets or all(r.error is not None for r in results):
        return []  # nothing was checked: no document, the `Error:` lines say why (and a previous report stays as it was)
    environment = report_environment(results)
    depth = None
    if any(fmt == "html" for _, fmt in targets):
        specs = specs or {}
        depth = {r.path: p for r in results if r.error is None and r.path in specs and (p := depth_profile(specs[r.path], r.path)) is not None}
    return [(path, fmt, render(fmt, results, environment, depth=depth)) for path, fmt in targets]


def write_rendered(rendered: list[tuple[str | None, str, str]], *, quiet: bool = False) -> None:
    """Write each rendered document whole (stdout for a None path); Markdown also goes to the job summary.

    Format "output" is the command's own --output (not announced on stderr like a report)."""
    from ..output import write_atomic

    for path, fmt, text in rendered:
        if path is None:
            click.echo(text)
            continue
        write_atomic(path, text)
        if not quiet and fmt != "output":
            click.echo(f"report: {path} ({fmt})", err=True)
    markdown = next((text for _, fmt, text in rendered if fmt == "md"), None)
    if markdown is not None:
        append_step_summary(markdown)


@click.command("report", epilog=EXAMPLES, short_help="Check specs and write one report: md, html, json, csv, junit.")
@click.argument("specs", nargs=-1, required=True, type=click.Path())
@click.option("--format", "fmt", type=click.Choice(list(FORMATS)),
              help="md (PR comment / CI summary), html (self-contained, with plots), json, csv (pandas), junit (CI test view). "
                   "Default: from --output's suffix, else md.")
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Write the report to this file (default: stdout).")
@click.option("--device", "devices", multiple=True, help="Autograd device(s), e.g. cpu, cuda, cuda:1 (repeatable; overrides check.devices).")
@click.option("--method", type=click.Choice(["auto", "central", "richardson", "complex_step"]), help="Finite-difference method (overrides check.numeric.method).")
@click.option("--mode", type=click.Choice(["auto", "full", "fast"]), help="full: every element; fast: random projections with bisection; auto: full up to 250,000 parameters (overrides check.mode).")
@click.option("--engines", help="Comma-separated engines to run (analytic,numeric,autograd); overrides check.engines.")
@quiet_option
@timeout_option
@safety_options
def command(specs, fmt, output, devices, method, mode, engines, quiet, timeout=None):
    """Check the gradients of one or more specs and write one report for all of them.

    The same checks as `gradlab check`, written as Markdown, HTML, JSON, CSV or JUnit XML.
    With $GITHUB_STEP_SUMMARY set, a Markdown report is also appended to the job summary.
    Exit code 0 when everything agrees, 1 when a discrepancy is found, 2 for a bad spec, bad
    usage or failing user code (the other specs are still checked), 3 for an internal error.
    """
    from ..batch import check_devices, check_specs, echo_errors, exit_code, parse_engines
    from ..output import check_writable

    fmt = fmt or (format_for(output) if output else "md")
    engine_list = parse_engines(engines)
    check_devices(devices)
    if output:
        check_writable(output)
    loaded, results = check_specs(specs, progress=not quiet, timeout=timeout, devices=list(devices) or None, engines=engine_list,
                                  method=method, mode=mode)
    write_rendered(render_reports(results, [(output, fmt)], specs=dict(loaded)), quiet=quiet)
    echo_errors(results)
    click.get_current_context().exit(exit_code(results))


def report_targets(paths) -> list[tuple[str, str]]:
    """`--report PATH` values with the format each suffix asks for; a bad suffix fails before any check runs."""
    return [(str(p), format_for(p)) for p in paths]


