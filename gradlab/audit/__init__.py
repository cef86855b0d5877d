"""`gradlab audit`: search for inputs on which a user's hand-written backward is wrong.

    from gradlab.audit import audit
    result = audit("my_ops.py:Swish", examples=200, seed=0)
    result.passed, result.findings

The op follows one of four contracts (activation, loss, layer, torch.autograd.Function; see
contracts.py). Hypothesis draws cases (strategies.py), the judge compares the op's backward
with differences of its forward (judge.py), Hypothesis shrinks any failure, and report.py
prints it with a one-line reproduction that calls `reproduce`.
"""

from __future__ import annotations

import contextlib
import inspect
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..userops import contracts, loading
from ..userops.contracts import KINDS
from ..userops.loading import TargetError
from . import building, models, pairs, randomness, report, stateful, subjects, surrogates
from .findings import Counterexample, Finding, Undetermined, hazards
from .judge import examine, tolerance
from .search import DEFAULT_EXAMPLES, AuditResult, run
from .strategies import MAX_ABS, Case, param_key

__all__ = ["KINDS", "AuditResult", "FileAuditResult", "Finding", "TargetError", "audit", "audit_file", "prepare", "reproduce"]


def _load(op: Any, base_dir) -> tuple[Any, str]:
    if isinstance(op, str):
        return loading.load(op, base_dir), op
    label = op.__name__ if isinstance(op, type) else type(op).__name__
    return loading.instantiate(op, label), label


def _pair_subject(fn: Any, label: str, backward: str | None, kind: str | None, max_abs: float, module=None) -> subjects.Subject:
    """`module`: where the target was named (a forward imported from a sibling file pairs with this file's backward)."""
    if kind not in (None, *pairs.MODES):
        raise TargetError(f"{label}: is a function: it is audited as a function pair (forward/backward twins), not as {kind!r}")
    module = module or sys.modules.get(fn.__module__)
    if module is None:
        raise TargetError(f"{label}: cannot find the module that defines {fn.__name__}")
    pair = pairs.make_pair(module, fn.__name__, label.rpartition(":")[0] or label, backward=backward)
    if not (max_abs > 0 and max_abs < float("inf")):
        raise TargetError(f"--max-abs must be a positive number, got {max_abs!r}")
    shown = label if backward is None else f"{label} --backward {backward}"
    return pairs.PairSubject(pair, shown, max_abs=max_abs)


def _called_pair(op: str, mode: str, backward: str | None, arrays: dict, hyper: dict) -> subjects.Subject:
    """A function op whose arguments no convention names, with roles read off the reproduce call."""
    source, name = loading.split(op)
    module = loading.load_module(source) if loading.is_file(source) else sys.modules.get(source)
    pair = pairs.pair_from_call(module, name, source, mode=mode, backward=backward, arrays=arrays, hyper=hyper)
    return pairs.PairSubject(pair, op if backward is None else f"{op} --backward {backward}")


def prepare(op: Any, *, kind: str | None = None, base_dir: str | Path | None = None, max_abs: float = MAX_ABS,
            backward: str | None = None) -> subjects.Subject:
    """Load `op` (a TARGET string, a class or an object), recognise its kind and check its contract.

    A plain function (`layers.py:conv_forward_naive`) is audited with its backward twin (or the
    function `backward` names) in the course-assignment convention: see pairs.py."""
    with loading.inspecting(op if isinstance(op, str) else _label(op)):
        return _prepare(op, kind=kind, base_dir=base_dir, max_abs=max_abs, backward=backward)


def _label(op: Any) -> str:
    try:
        return op.__name__ if isinstance(op, type) or inspect.isfunction(op) else type(op).__name__
    except Exception:  # noqa: BLE001 -- a user's class whose __name__ raises
        return "the op"


def _prepare(op: Any, *, kind: str | None, base_dir, max_abs: float, backward: str | None) -> subjects.Subject:
    if isinstance(op, str):
        with user_stdout_to_stderr():
            raw = loading.load_raw(op, base_dir)
        if inspect.isfunction(raw):
            source = loading.split(op)[0]
            module = loading.load_module(source, base_dir) if loading.is_file(source) else sys.modules.get(source)
            return _pair_subject(raw, op, backward, kind, max_abs, module)
        if kind in (None, "model") and models.is_model(raw):  # a course model: TwoLayerNet(input_dim=...).loss(X, y)
            return models.ModelSubject(raw, op, max_abs=max_abs)
        if kind in (None, "stateful") and building.needs_building(raw):  # Conv(X_dim, n_filter, ...): built from its parameter names
            return building.built_subject(raw, op, max_abs=max_abs)
    elif inspect.isfunction(op):
        return _pair_subject(op, f"{op.__module__}:{op.__name__}", backward, kind, max_abs)
    if backward is not None:
        raise TargetError(f"--backward is for function pairs; {op} is not a function")
    obj, label = _load(op, base_dir)
    kind = contracts.detect_kind(obj, label, kind)
    return subjects.make(obj, kind, label, max_abs=max_abs)


def audit(
    op: Any,
    *,
    kind: str | None = None,
    examples: int = DEFAULT_EXAMPLES,
    seed: int = 0,
    rtol: float | None = None,
    atol: float | None = None,
    max_abs: float = MAX_ABS,
    backward: str | None = None,
    reseed: bool = False,
    live=None,
) -> AuditResult:
    """Search up to `examples` cases for one on which the op's backward is wrong.

    Args:
        op: `path/to/file.py:Name`, `package.module:Name`, a class or an object.
        kind: activation, loss, layer or function; default: what the op says or looks like.
        examples: the Hypothesis budget (cases tried before declaring a pass).
        seed: seeds the search; the same seed gives the same cases and the same verdict.
        rtol, atol: override the float64 tolerances of gradlab.compare.
        max_abs: the largest |input| drawn (within the op's `domain`).
        backward: for a function pair, the backward twin to audit (`batchnorm_backward_alt`).
        reseed: reseed np.random, random and torch (with `seed`) before every call into the op, so an
            unseeded random forward (dropout) is one deterministic function that can be audited.
        live: a progress.Progress that shows how far the search is (the CLI's line on stderr).
    Raises:
        TargetError: the op cannot be loaded or breaks its contract (the CLI's exit code 2).
    """
    if examples < 1:
        raise TargetError(f"examples must be at least 1, got {examples}")
    subject = prepare(op, kind=kind, max_abs=max_abs, backward=backward)
    subject.reseed = seed if reseed else None
    with user_stdout_to_stderr():
        result = run(subject, examples=examples, seed=seed, tol=tolerance(rtol, atol), progress=live)
    if isinstance(op, str) and loading.is_file(loading.split(op)[0]):
        result.imported = loading.imported_as(loading.split(op)[0])
    return result


@contextlib.contextmanager
def user_stdout_to_stderr():
    """What the user's code prints (an import that trains and logs) goes to stderr: gradlab's stdout stays its own."""
    with contextlib.redirect_stdout(sys.stderr):
        yield


@dataclass
class FileAuditResult:
    """`gradlab audit layers.py`: every pair, loss and f / f_grad of one file, audited one by one."""

    path: str
    results: list[AuditResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # functions that look like ops but cannot be audited, and why
    seconds: float = 0.0
    imported: str = ""  # how the file was imported when its imports needed the repository's root

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)


def audit_file(path: str | Path, *, examples: int = DEFAULT_EXAMPLES, seed: int = 0, rtol: float | None = None,
               atol: float | None = None, max_abs: float = MAX_ABS, reseed: bool = False, progress=None, live=None) -> FileAuditResult:
    """Audit every function pair, (loss, dx) loss and f / f_grad twin a Python file defines.

    `progress(result)` is called after each op (the CLI prints its one-line summary); `live` (a
    progress.Progress) hears how far the running op is."""
    if examples < 1:
        raise TargetError(f"examples must be at least 1, got {examples}")
    t0 = time.perf_counter()
    shown = str(path)
    with user_stdout_to_stderr():
        module = loading.load_module(shown)
    with loading.inspecting(shown):
        found, notes = pairs.discover(module, shown)
        function_names = torch_functions(module)  # torch.autograd.Function subclasses, static- or classmethod forward/backward
        stateful_names = [name for name in stateful.stateful_classes(module) if name not in function_names]
        stateful_names += [name for name in building.loss_layer_classes(module) if name not in function_names + stateful_names]
        model_names = [name for name in models.model_classes(module) if name not in stateful_names + function_names]  # TwoLayerNet(...).loss(X, y)
    classes = stateful_names + model_names + function_names
    kinds = {**{n: "stateful" for n in stateful_names}, **{n: "model" for n in model_names}, **{n: "function" for n in function_names}}
    if not found and not notes and not classes:
        raise TargetError(f"{shown}: no function pairs found (name_forward / name_backward, name_loss(x, y), f / f_grad, "
                          f"stateful layers, model classes or torch.autograd.Function subclasses); "
                          f"for a class or an object, expected {loading.FORMAT}")
    out = FileAuditResult(shown, notes=notes, imported=loading.imported_as(shown))

    def audit_one(subject) -> None:
        subject.reseed = seed if reseed else None
        with user_stdout_to_stderr():
            result = run(subject, examples=examples, seed=seed, tol=tolerance(rtol, atol), progress=live)
        result.imported = out.imported
        out.results.append(result)
        if progress is not None:
            progress(result)

    for pair in found:
        target = f"{shown}:{pair.name}" + ("" if pair.backward is None or pair.backward.__name__ == pair.name.replace("forward", "backward")
                                           else f" --backward {pair.backward.__name__}")
        audit_one(pairs.PairSubject(pair, target, max_abs=max_abs))
    for name in classes:  # stateful layer classes the file defines: forward(x) caching on self, backward(dout)
        try:
            subject = prepare(f"{shown}:{name}", kind=kinds[name], max_abs=max_abs)
        except TargetError as exc:
            out.notes.append(str(exc))
            continue
        audit_one(subject)
    out.seconds = time.perf_counter() - t0
    return out


def torch_functions(module: Any) -> list[str]:
    """The torch.autograd.Function subclasses `module` defines (not imports), whatever decorates their forward and
    backward (@staticmethod, or @classmethod as entmax writes them): audited as kind 'function'."""
    out = []
    for name, value in vars(module).items():
        if name.startswith("_") or not loading.is_torch_function(value) or getattr(value, "__module__", None) != module.__name__:
            continue
        if _defines(value, "forward"):  # one without a backward of its own is listed: prepare says what is missing
            out.append(name)
    return out


def _defines(cls: type, method: str) -> bool:
    """`cls` or a base class outside torch defines `method` (torch.autograd.Function's own does not count)."""
    return any(method in vars(k) for k in cls.__mro__ if k is not object and not str(getattr(k, "__module__", "")).startswith("torch"))


def reproduce(op: Any, /, *, kind: str | None = None, grad_out=None, params: dict | None = None, hyper: dict | None = None,
              backward: str | None = None, reseed: int | None = None, surrogate: Any = None, rtol: float | None = None,
              atol: float | None = None, quiet: bool = False, **arrays) -> Finding | None:
    """Re-run one case (the arguments a counterexample printed) and print the verdict.

    A function pair takes its array arguments by name (x=, w=, b=, y= for labels), its
    hyperparameter dicts and group count as `hyper={'conv_param': {...}}`, and `backward=` for a
    variant twin; `reseed=` as the audit printed it (--reseed), `surrogate=` as an audit file declared it.
    Returns the Finding, or None when the op's backward is right on this input (or
    the input lies on a bound of the domain, where the op is not finite: undetermined).
    """
    try:
        subject = prepare(op, kind=kind, backward=backward)
    except TargetError:
        if not (isinstance(op, str) and kind in pairs.MODES):
            raise
        subject = _called_pair(op, kind, backward, arrays, hyper or {})  # an op an audit file declared
    subject.reseed = reseed
    if surrogate is not None:
        subject.surrogate = surrogates.parse(surrogate, subject.obj, subject.target, tuple(subject.pair.arrays if subject.kind == "pair" else ()))
    inputs: dict[str, np.ndarray] = {}
    const: dict[str, np.ndarray] = {}
    if subject.kind == "pair":
        names, labels = subject.pair.arrays, tuple(n for n, role in subject.pair.args if role == "labels")
        wanted = {n for n, role in subject.pair.args if role in ("hyper", "groups")}
        if set(hyper or {}) != wanted:
            raise TargetError(f"reproduce: {subject.name} needs hyper={{{', '.join(repr(n) + ': ...' for n in sorted(wanted))}}}")
    else:
        names = {"activation": ("z",), "loss": ("pred",), "layer": ("x",), "stateful": ("x",), "model": (), "function": getattr(subject, "arg_names", ())}[subject.kind]
        labels = {"loss": ("target",), "model": ("X", "y")}.get(subject.kind, ())
    for name in names:
        if name not in arrays:
            raise TargetError(f"reproduce: a {subject.kind} needs {name}=...")
        inputs[name] = np.asarray(arrays.pop(name), dtype=np.float64)
    for name in labels:
        if name not in arrays:
            raise TargetError(f"reproduce: {subject.name} needs {name}=...")
        value = np.asarray(arrays.pop(name))
        const[name] = value if subject.kind in ("pair", "model") else value.astype(np.float64)
    if subject.kind in ("layer", "stateful", "model"):
        for name, value in subject.original.items():
            inputs[param_key(name)] = np.asarray((params or {}).get(name, value), dtype=np.float64)
    if arrays:
        raise TargetError(f"reproduce: unexpected argument(s) {', '.join(arrays)}")
    case = Case(inputs, const, dict(hyper or {}))
    upstream = None if grad_out is None else np.asarray(grad_out, dtype=np.float64)
    result = AuditResult(subject.target, subject.kind, subject.name, 0, 1, tolerance(rtol, atol), None, [])  # type: ignore[arg-type]
    try:
        with user_stdout_to_stderr(), randomness.kept():
            examine(subject, case, (lambda shape: upstream) if upstream is not None else None, result.tolerance)
    except Counterexample as exc:
        if not quiet:
            print("\n".join(report.finding_lines(result, exc.finding, shrunk=False)))
        return exc.finding
    except Undetermined as exc:
        if not quiet:
            print(f"UNDETERMINED: {subject.target}: {exc}; such a case says nothing about the backward")
        return None
    finally:
        subject.restore()
    if not quiet:
        found = hazards(subject)  # right values with a hazard: said, as the audit said it (never a bare PASS)
        if found:
            print(f"WARN: {subject.target}: backward agrees with differences of forward on this input, with "
                  f"{len(found)} warning(s) ({', '.join(f.kind for f in found)}):")
            for f in found:
                print(f"  {f.kind}: {f.message}")
        else:
            print(f"PASS: {subject.target}: backward agrees with differences of forward on this input")
    return None
