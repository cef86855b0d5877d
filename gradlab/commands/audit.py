"""`gradlab audit TARGET`: search for inputs on which an op's hand-written backward is wrong."""

from __future__ import annotations

import sys

import click

from ..batch import TARGET_CODE_HELP, safety_options

EXAMPLES = """
\b
Examples:
  gradlab audit examples/ops/swish.py:Swish
  gradlab audit my_ops.py:SoftmaxCE --kind loss --examples 1000 --seed 3
  gradlab audit mypackage.layers:Conv1x1 --format json --output audit.json
  gradlab audit my_fn.py:Cubic          # a torch.autograd.Function subclass
  gradlab audit layers.py               # every forward/backward pair and (loss, dx) loss of a file
  gradlab audit layers.py:batchnorm_forward --backward batchnorm_backward_alt
  gradlab audit examples/audit/audit.yaml  # ops declared in an audit file: shapes, hyperparameters, labels
  gradlab audit layers.py:dropout_forward --reseed   # an unseeded dropout, reseeded before every call
"""


@click.command("audit", epilog=EXAMPLES, short_help="Property-test one op: activation, loss, layer, Function, module.")
@click.argument("target")
@click.option("--kind", type=click.Choice(["activation", "loss", "layer", "function", "stateful", "module"]), help="The op's contract; default: its `kind` attribute or what its methods make plain. `module`: an nn.Module class, every parameter and input gradient against forward-only differences in float64.")
@click.option("--examples", type=click.IntRange(min=1), default=200, show_default=True, help="Hypothesis budget: cases tried before declaring a pass.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds the search; the same seed gives the same cases and verdict.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True, help="Output format.")
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Write the output to this file instead of stdout.")
@click.option("--rtol", type=click.FloatRange(min=0), help="Relative tolerance (default: gradlab's float64 rtol, 1e-6).")
@click.option("--atol", type=click.FloatRange(min=0), help="Absolute tolerance (default: gradlab's float64 atol, 1e-10).")
@click.option("--max-abs", type=click.FloatRange(min=0, min_open=True), default=30.0, show_default=True, help="Largest |input| drawn (within the op's `domain`).")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True, max=1e9), metavar="SECONDS",
              help="Give up after this many seconds (an op that hangs is reported as a timeout, exit 2).")
@click.option("--backward", "backward", metavar="NAME", help="For a function pair: the backward twin to audit (e.g. batchnorm_backward_alt).")
@click.option("--reseed", is_flag=True, help="Reseed np.random, random and torch (with --seed) before every call into the op: an unseeded dropout becomes one deterministic function that can be audited (a random forward is reseeded automatically anyway, with a warning).")
@click.option("--strict", is_flag=True, help="Warnings (right values with a hazard: an in-place write to an input, dout or the cache; a gradient whose shape only broadcasts; a random forward audited reseeded) fail the op (exit 1).")
@safety_options(no_code_help=TARGET_CODE_HELP)
def command(target, kind, examples, seed, fmt, output, rtol, atol, max_abs, timeout, backward, reseed, strict):
    """Audit a user's activation, loss, layer or torch.autograd.Function.

    TARGET is path/to/file.py:Name or package.module:Name (a class, instantiated with
    no arguments, or an instance). Hypothesis draws inputs -- batch sizes from 1 up,
    non-square shapes, values up to saturation, tiny values, exact zeros, points on and
    near kinks, mixed signs, random upstream gradients -- and the op's backward is
    compared with finite differences of its own forward, kink-aware. A failure is
    shrunk to a minimal counterexample and printed with a one-line reproduction.
    A loss that declares no domain and is undefined at 0 (a log of pred) is audited on
    the inferred (0, 1]. Exit code 0: no counterexample within the budget; 1: one was
    found (a wrong gradient, NaN/inf inside the domain, forward/backward raised, called
    sys.exit() or raised KeyboardInterrupt itself: kind `raised`); 2: the target cannot
    be loaded (its import raised or exited) or breaks its contract; 130: Ctrl-C.
    """
    from ..audit import audit, report
    from ..batch import EXIT_FAIL, EXIT_OK
    from ..output import write_report_text, write_text
    from ..output import check_writable
    from ..usercode import deadline

    if output:
        check_writable(output)  # before the search, not after it
    if kind == "module":
        from ..kernels.modules import run_module_audit

        sys.exit(run_module_audit(target, examples=examples, seed=seed, fmt=fmt, output=output, rtol=rtol, atol=atol, timeout=timeout))
    if ":" not in target and target.endswith(".py"):
        _whole_file(target, examples, seed, fmt, output, rtol, atol, max_abs, timeout, reseed, strict=strict)
    from ..audit.auditfile import is_audit_file

    if is_audit_file(target):
        _whole_file(target, examples, seed, fmt, output, rtol, atol, max_abs, timeout, reseed, declared=True, strict=strict)
    with deadline(timeout, f"gradlab audit {target}"):
        result = audit(target, kind=kind, examples=examples, seed=seed, rtol=rtol, atol=atol, max_abs=max_abs, backward=backward, reseed=reseed,
                       live=_live(fmt))
    result.strict = strict
    if fmt == "json":
        write_text(report.to_json(result), output)
    else:
        write_report_text(report.text(result), output)
    sys.exit(EXIT_OK if result.passed else EXIT_FAIL)


def _live(fmt: str):
    """The progress line on stderr while an op runs (table output only: JSON runs stay silent)."""
    from ..audit.progress import Progress

    return Progress() if fmt == "table" else None


def _summary(result) -> str:
    kinds = ", ".join(f.kind for f in result.findings)
    warned = ", ".join(f.kind for f in result.warnings)
    status = "FAIL" if not result.passed else "WARN" if result.warnings else "PASS"
    notes = ([kinds] if kinds else []) + ([f"warning{'s' if len(result.warnings) > 1 else ''}: {warned}"] if warned else [])
    built = f"; built {result.built}" if result.built else ""
    count = result.coverage.examples
    return f"{status}  {result.name}  ({count} example{'' if count == 1 else 's'}, {result.seconds:.1f} s{built}{''.join('; ' + n for n in notes)})"


def _whole_file(path, examples, seed, fmt, output, rtol, atol, max_abs, timeout, reseed, declared=False, strict=False):
    """`gradlab audit layers.py` (or `audit.yaml`, `declared`): one line per op as it finishes, then the failing ones in full."""
    import json

    from ..audit import audit_file, report
    from ..audit.auditfile import audit_yaml
    from ..batch import EXIT_FAIL, incomplete_code
    from ..output import write_report_text, write_text
    from ..usercode import deadline

    live = fmt == "table" and not output
    with deadline(timeout, f"gradlab audit {path}"):
        if live and not declared:
            _say_root(path)  # importing runs the user's code: inside the deadline
        result = (audit_yaml if declared else audit_file)(path, examples=examples, seed=seed, rtol=rtol, atol=atol, max_abs=max_abs, reseed=reseed, live=_live(fmt),
                                                          progress=(lambda r: (setattr(r, "strict", strict), click.echo(_summary(r)))) if live else None)
    for r in result.results:
        r.strict = strict
    judged, skipped = len(result.results), len(result.notes)
    complete = judged > 0 and not skipped
    if fmt == "json":
        doc = {"passed": result.passed and complete, "complete": complete, "path": path, "imported": getattr(result, "imported", "") or None,
               "seconds": round(result.seconds, 3),
               "judged": judged, "skipped": result.notes, "strict": strict, "warned": [r.name for r in result.results if r.warnings],
               "ops": [report.as_dict(r) for r in result.results]}
        write_text(json.dumps(doc, indent=2), output)
    else:
        lines = [] if live else ([result.imported] if getattr(result, "imported", "") else []) + [_summary(r) for r in result.results]
        lines += [f"SKIP  {note}" for note in result.notes]
        for r in result.results:
            if not r.passed or r.warnings:
                lines += ["", report.text(r)]
        failed = sum(not r.passed for r in result.results)
        lines.append(_file_verdict(result.passed, judged, failed, skipped, result.seconds, sum(bool(r.warnings) for r in result.results)))
        write_report_text("\n".join(lines), output)
    sys.exit(EXIT_FAIL if not result.passed else incomplete_code(unchecked=bool(skipped), nothing=judged == 0))


def _say_root(path) -> None:
    """The line saying which root a file in a package was imported from, before its ops' lines (it is imported first)."""
    from ..audit import user_stdout_to_stderr
    from ..userops import loading

    try:
        with user_stdout_to_stderr():
            loading.load_module(path)
    except Exception:  # noqa: BLE001 -- audit_file reports it, as it would have without this line
        return
    how = loading.imported_as(path)
    if how:
        click.echo(how)


def _file_verdict(passed: bool, judged: int, failed: int, skipped: int, seconds: float, warned: int = 0) -> str:
    """PASS only when every op found was judged; ops found and not judged make the run INCOMPLETE (exit 4), never a pass."""
    took = f"({seconds:.1f} s)" if not warned else f"({warned} with warnings, WARN above; {seconds:.1f} s)"
    if not passed:
        more = f"; {skipped} more op(s) found but not judged (SKIP above)" if skipped else ""
        return f"FAIL: {judged - failed} of {judged} op(s) passed{more} {took}"
    if judged == 0:
        found = f"{skipped} op(s) found, none could be judged (SKIP above)" if skipped else "no op found to audit"
        return f"INCOMPLETE: nothing was checked: {found} {took}"
    if skipped:
        return f"INCOMPLETE: {judged} of {judged} judged op(s) passed, but {skipped} op(s) found were not judged (SKIP above) {took}"
    return f"PASS: {judged} of {judged} op(s) passed {took}"
