"""What every command that checks specs does: expand the paths, validate each spec, run each under
its deadline, and keep going when one of them fails -- then decide the exit code from typed outcomes.

A spec that cannot be checked (invalid, its user code raised or exited, it timed out, the loss is not
finite at its point) becomes a SpecResult with `error` set; the other specs still run. The exit code:
  0  every spec was checked and every comparison agrees
  1  a comparison failed, and every spec could be checked
  2  a spec or the usage is wrong, or user code failed (one `Error: file: key.path: message` line each)
  3  an internal error of gradlab (a bug: one line, the traceback with --debug)
  4  incomplete: nothing disagrees, but something asked for or found was not checked (each named, with
     its reason, in every output); `--allow-unchecked` makes it 0, except when nothing at all was checked
  130 interrupted (Ctrl-C)
"""

from __future__ import annotations

from pathlib import Path

import click

from .errors import GradlabError, SpecError
from .usercode import Timeout, deadline, describe, forbid_code, interrupted

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_INTERNAL, EXIT_INCOMPLETE, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130

_debug = {"on": False}


def debug() -> bool:
    import os

    return _debug["on"] or os.environ.get("GRADLAB_DEBUG", "") not in ("", "0")


def _set_debug(ctx, param, value):
    if value:
        _debug["on"] = True


def _set_no_code(ctx, param, value):
    if value:  # for this command only: an in-process caller (a CliRunner, an embedding) gets its setting back
        previous = forbid_code()
        ctx.call_on_close(lambda: forbid_code(previous))


def _set_allow_unchecked(ctx, param, value):
    _allow["unchecked"] = bool(value)  # every invocation sets it: a CliRunner run never inherits the last one's


_allow = {"unchecked": False}


def allow_unchecked() -> bool:
    """--allow-unchecked (or GRADLAB_ALLOW_UNCHECKED=1): what could not be checked is named, and exit 0 stands."""
    return _allow["unchecked"] or env_allows_unchecked()


def env_allows_unchecked() -> bool:
    import os

    return os.environ.get("GRADLAB_ALLOW_UNCHECKED", "").strip().lower() in ("1", "true", "yes", "on")


def incomplete_code(*, unchecked: bool, nothing: bool) -> int:
    """EXIT_INCOMPLETE when something was not checked (the switch accepts it), always when nothing was."""
    if nothing:
        return EXIT_INCOMPLETE
    return EXIT_INCOMPLETE if unchecked and not allow_unchecked() else EXIT_OK


SPEC_CODE_HELP = "Refuse specs that name user code (impl:) before importing anything (also GRADLAB_NO_CODE=1)."
TARGET_CODE_HELP = ("Refuse to import TARGET, and exit 2: this command always runs the code it judges, so the flag is for a job "
                    "that must never run contributed code (also GRADLAB_NO_CODE=1).")


def safety_options(f=None, *, no_code_help: str = SPEC_CODE_HELP):
    """--no-code, --debug and --allow-unchecked, on every command that may run user code.

    `@safety_options` on a command over specs; `@safety_options(no_code_help=TARGET_CODE_HELP)` on one over a code target."""
    if f is None:
        return lambda g: safety_options(g, no_code_help=no_code_help)
    f = click.option("--allow-unchecked", is_flag=True, expose_value=False, is_eager=True, callback=_set_allow_unchecked,
                     help="Exit 0 although something asked for or found could not be checked (no CUDA device, an op gradlab could "
                          "not build); it is still named in every output. Without it such a run exits 4 (also GRADLAB_ALLOW_UNCHECKED=1).")(f)
    f = click.option("--debug", is_flag=True, expose_value=False, is_eager=True, callback=_set_debug,
                     help="On an internal error, print the traceback (also GRADLAB_DEBUG=1).")(f)
    f = click.option("--no-code", is_flag=True, expose_value=False, is_eager=True, callback=_set_no_code, help=no_code_help)(f)
    return f


def _positive_seconds(ctx, param, value):
    import math

    if value is not None and not (math.isfinite(value) and value > 0):
        raise click.BadParameter(f"expected a finite number of seconds > 0, got {value}")
    return value


quiet_option = click.option(
    "-q", "--quiet", is_flag=True,
    help="Quiet: no progress bar and no 'report: PATH' lines on stderr, and a table printed on the terminal shrinks to "
         "its verdict line (files written with --output or --report are whole).")


def timeout_option_for(what: str):
    """--timeout SECONDS: `what` says what it bounds (a spec and check.timeout, or one command's whole run)."""
    return click.option("--timeout", type=float, callback=_positive_seconds, metavar="SECONDS", help=what)


timeout_option = timeout_option_for("Give up on a spec after this many seconds (user code that hangs is reported as a timeout, exit 2); "
                                    "overrides check.timeout.")


def expand_specs(paths, *, note: bool = False) -> list[Path]:
    """Files as given; a directory contributes the specs under it, subfolders too, as `pytest DIR` collects them
    (gradlab.specfiles). Other YAML found there is never silently dropped: the command's first expansion (`note`)
    names each on stderr."""
    from .specfiles import walk

    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found, other = walk(p)
            for skipped in other if note else ():
                click.echo(f"note: {skipped}: skipped, not a gradlab spec (no top-level network with typed layers); "
                           "name the file to check it anyway", err=True)
            if not found:
                extra = f" ({len(other)} other YAML file(s) there are not specs: no top-level network.layers)" if other else ""
                raise SpecError(str(p), "(directory)", f"no gradlab specs (*.yaml, *.yml) in this directory or its subfolders{extra}")
            out += found
        elif not p.exists() and not p.is_symlink():
            raise SpecError(str(p), "(file)", "no such file")
        else:
            out.append(p)
    return out


def error_result(path: str, message: str, *, kind: str = "user", name: str | None = None):
    from .runner import SpecResult

    return SpecResult(path=path, name=name or Path(path).stem, dtype="", comparisons=[], error=message, error_kind=kind)


def guarded(path: str, work, *, name: str | None = None):
    """Run `work()` for one spec; whatever goes wrong becomes that spec's error result, never the end of the run."""
    try:
        return work()
    except SpecError as exc:
        return error_result(path, str(exc), name=name)
    except Timeout as exc:
        return error_result(path, exc.message(), name=name)
    except GradlabError as exc:
        return error_result(path, f"{path}: {exc}", name=name)
    except KeyboardInterrupt as exc:
        if interrupted():
            raise
        return error_result(path, f"{path}: user code {describe(exc)}", name=name)
    except SystemExit as exc:  # gradlab itself never exits inside a spec: this came from user code
        return error_result(path, f"{path}: user code {describe(exc)}", name=name)
    except RecursionError as exc:
        return error_result(path, f"{path}: recursion too deep ({exc}); a user op that recurses without end?", name=name)
    except MemoryError:
        return error_result(path, f"{path}: out of memory; shrink the network or batch, or lower check.memory_limit so gradlab refuses it up front", name=name)
    except Exception as exc:
        return error_result(path, internal_message(exc), kind="internal", name=name)


def internal_message(exc: BaseException) -> str:
    import traceback

    text = " ".join(str(exc).split())[:200]
    if debug():
        traceback.print_exception(type(exc), exc, exc.__traceback__)
    return f"internal error of gradlab ({type(exc).__name__}: {text}); this is a bug, not your spec: rerun with --debug for the traceback and report it"


def load_all(paths, *, timeout: float | None = None, isolate: bool = False) -> tuple[list[tuple[str, object]], list]:
    """Validate every spec up front: (path, Spec) pairs to run, and an error result for each spec that is invalid.

    `isolate` (an executor runs the checks): a spec that names user code is loaded -- its module imported, its
    ops probed -- in a child process, so that user code that ends its process fails that spec alone."""
    from .spec import load_spec

    loaded, failed = [], []
    for p in expand_specs(paths, note=True):
        load = _load_isolated if isolate and names_code(p) else load_spec
        outcome = guarded(str(p), lambda p=p, load=load: load(p, timeout=timeout))
        if getattr(outcome, "error", None) is not None:
            failed.append(outcome)
        else:
            loaded.append((str(p), outcome))
    return loaded, failed


def names_code(path) -> bool:
    """The spec's text has an `impl:` key (user code): cheap, and a false alarm only costs a fork."""
    import re

    try:
        with open(path, "rb") as f:
            return re.search(rb"""\bimpl['"]?\s*:""", f.read(1 << 20)) is not None
    except OSError:
        return False


def _load_isolated(path, *, timeout: float | None = None):
    from .spec import load_spec
    from .supervise import ProcessEnded, call
    from .usercode import UserCodeError

    try:
        return call(load_spec, path, timeout=timeout)
    except ProcessEnded as exc:
        raise UserCodeError(f"user code ended the process loading the spec: {exc}") from None


def numeric_elements(spec) -> int:
    """How many elements the numeric engine differentiates: the progress bar's total for one spec."""
    from .memory import layer_sizes

    return sum(n for *_, n in layer_sizes(spec)) + (spec.input.batch * spec.input.size if spec.check.wrt_input else 0)


def progress_work(spec, *, mode=None, devices=None, engines=None) -> tuple[int, str]:
    """The progress bar's total for one spec, and what it counts.

    Full mode: the numeric engine's elements. Fast mode: the runner reports each tensor once per
    candidate engine that runs (analytic, autograd on each available device), so the total is the
    elements times those candidates, not the elements once.
    """
    from .memory import FULL_MODE_MAX_PARAMS, layer_sizes, shape_of

    elements = numeric_elements(spec)
    check = spec.check
    mode = mode or check.mode
    engines = engines or check.engines
    if mode == "full" or (mode == "auto" and shape_of(spec).params <= FULL_MODE_MAX_PARAMS) or "numeric" not in engines:
        return elements, "numeric"
    candidates = int("analytic" in engines)
    if "autograd" in engines:
        from .engines.autograd import device_unavailable

        candidates += sum(device_unavailable(d) is None for d in dict.fromkeys(devices or check.devices))
    params = sum(n for *_, n in layer_sizes(spec)) + (spec.input.batch * spec.input.size if check.wrt_input else 0)
    return max(params * candidates, 1), "projections"


def run_loaded(loaded, *, progress: bool = True, timeout: float | None = None, **options) -> list:
    """Check validated (path, spec) pairs in order, each under its deadline; a progress bar on stderr when slow."""
    from . import runner
    from .report.progress import RunProgress

    results = []
    with RunProgress(len(loaded), enabled=progress) as bar:
        for path, spec in loaded:
            name = spec.name or Path(path).stem
            limit = timeout or spec.check.timeout

            def work(path=path, spec=spec, name=name, limit=limit):
                if any(options.get(k) for k in ("mode", "devices", "engines")):  # the command line changed what runs
                    from .memory import check_memory

                    check_memory(spec, path, mode=options.get("mode"), devices=options.get("devices"), engines=options.get("engines"))
                with deadline(limit, path):
                    work, stage = progress_work(spec, mode=options.get("mode"), devices=options.get("devices"), engines=options.get("engines"))
                    return runner.run(spec, path=path, progress=bar.spec(name, work, stage=stage), **options)

            results.append(guarded(path, work, name=name))
    return results


def stats_within(spec, path: str, timeout: float | None = None):
    """`--stats` runs the spec's ops again: under the same deadline as the check."""
    from . import stats

    with deadline(timeout or spec.check.timeout, path):
        return stats.run(spec, path=path)


def in_order(paths, invalid: list, ran: list) -> list:
    """Results in the order the specs were named, the invalid ones (error results) in their place."""
    queued: dict[str, list] = {}
    for r in invalid:  # a path named twice was loaded (and refused) twice: one result per mention
        queued.setdefault(r.path, []).append(r)
    ran_iter = iter(ran)
    return [queued[str(p)].pop(0) if queued.get(str(p)) else next(ran_iter) for p in expand_specs(paths)]


def check_specs(paths, *, progress: bool = True, timeout: float | None = None, **options) -> tuple[list, list]:
    """Validate, then check: ((path, Spec) pairs that loaded, one result per spec named, in order)."""
    loaded, invalid = load_all(paths, timeout=timeout)
    ran = run_loaded(loaded, progress=progress, timeout=timeout, **options)
    return loaded, in_order(paths, invalid, ran)


def parse_engines(engines: str | None) -> list[str] | None:
    """`--engines analytic,numeric` -> a list, or an error naming what is allowed."""
    if not engines:
        return None
    engine_list = [e.strip() for e in engines.split(",") if e.strip()]
    bad = [e for e in engine_list if e not in ("analytic", "numeric", "autograd")]
    if bad or len(set(engine_list)) < 2:
        raise GradlabError(f"--engines: expected at least two of analytic,numeric,autograd, got {engines[:100]!r}")
    return engine_list


def check_devices(devices) -> None:
    import re

    for d in devices:
        if not re.fullmatch(r"cpu|cuda(:\d{1,3})?", d):
            raise GradlabError(f"--device: unknown device {d[:100]!r}; expected cpu, cuda or cuda:N")


def exit_code(results) -> int:
    """3 a bug > 2 a spec not checked > 1 a discrepancy > 4 something not checked > 0 (gradlab.coverage)."""
    if any(getattr(r, "error_kind", "") == "internal" for r in results):
        return EXIT_INTERNAL
    if any(r.error is not None for r in results):
        return EXIT_USAGE
    if not all(r.passed for r in results):
        return EXIT_FAIL
    from .coverage import nothing_checked, of_run

    checked = [r for r in results if hasattr(r, "comparisons")]  # a stats-only result has no rows to account for
    return incomplete_code(unchecked=bool(of_run(checked)), nothing=bool(checked) and nothing_checked(checked))


def check_document(results, environment: dict) -> dict:
    """`gradlab check --format json`'s document (the service stores and serves the same one).

    `passed` is true only when everything asked for was checked and agrees; `complete` and `unchecked`
    name what was not checked and why (gradlab.coverage)."""
    from .coverage import account

    return {**account(results), "environment": environment, "specs": [r.to_dict() for r in results]}


def echo_errors(results) -> None:
    """One `Error:` line per spec that could not be checked, on stderr."""
    for r in results:
        if r.error is not None:
            click.echo(f"Error: {r.error}", err=True)
