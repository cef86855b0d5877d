"""`gradlab audit audit.yaml`: ops outside the known conventions, declared in a small YAML file.

    defaults: {examples: 100}
    ops:
      - target: layers.py:rbf_forward          # relative to the YAML file
        backward: rbf_backward                 # default: the twin by name (rbf_backward)
        inputs: {x: [N, D], centers: [K, D]}   # array arguments: shapes in named dims or numbers
        dims: {N: {min: 1, max: 4}, D: [1, 3], K: 2}
        hyper: {rbf_param: {gamma: {min: 0.1, max: 2.0}}}   # a dict argument: a space per key;
                                                            # a scalar argument: a space
        labels: {y: {classes: K}}              # integer labels, shape [N] unless `shape` says
        tolerance: {rtol: 1e-6, atol: 1e-10}
        surrogate: reverse                     # or straight-through, or {scale: -0.5}

A space is a number or string (fixed), a list (one of them; shrinks towards the first) or
{min, max} (integers when both are integers, else floats; shrinks towards min). A function
target is a pair (`kind: pair`, default), a `(loss, dx)` loss (`kind: loss`) or an f / f_grad
twin (`kind: plain`); a class target (activation, layer, function) takes only examples, seed,
max_abs, tolerance and surrogate. Validation errors are one line each:
`Error: audit.yaml: ops[0].dims.N: expected ...`, exit code 2.
"""

from __future__ import annotations

import inspect
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from pydantic import Field, StrictFloat, StrictInt, StrictStr, ValidationError, model_validator

from ..errors import SpecError
from ..spec import _error, _from_validation_error, _Model, parse_yaml, read_spec_text
from ..userops import loading
from ..userops.loading import TargetError
from . import conventions as C
from . import pairs, strategies as S, subjects, surrogates

Scalar = Union[StrictInt, Annotated[StrictFloat, Field(allow_inf_nan=False)], StrictStr, bool]
FUNCTION_KINDS = ("pair", "loss", "plain")
CLASS_KINDS = ("activation", "layer", "function")


class Range(_Model):
    """{min, max}: integers when both are integers, else floats."""

    min: Union[StrictInt, Annotated[StrictFloat, Field(allow_inf_nan=False)]]
    max: Union[StrictInt, Annotated[StrictFloat, Field(allow_inf_nan=False)]]

    @model_validator(mode="after")
    def _ordered(self) -> "Range":
        if self.min > self.max:
            raise _error("bad_range", f"min {self.min} is above max {self.max}")
        return self


Space = Annotated[Union[Range, Annotated[list[Scalar], Field(min_length=1)], Scalar], Field(union_mode="left_to_right")]
DimSpace = Annotated[Union[Range, Annotated[list[Annotated[StrictInt, Field(ge=1)]], Field(min_length=1)], Annotated[StrictInt, Field(ge=1)]],
                     Field(union_mode="left_to_right")]
Axis = Union[Annotated[StrictInt, Field(ge=1)], StrictStr]


class Labels(_Model):
    classes: Union[Annotated[StrictInt, Field(ge=1)], StrictStr]
    shape: Annotated[list[Axis], Field(min_length=1)] = ["N"]


class Tolerance(_Model):
    rtol: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    atol: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None


class Scale(_Model):
    scale: Annotated[StrictFloat | StrictInt, Field(allow_inf_nan=False)]


class Settings(_Model):
    examples: Annotated[StrictInt, Field(ge=1)] | None = None
    seed: StrictInt | None = None
    max_abs: Annotated[StrictFloat | StrictInt, Field(gt=0, allow_inf_nan=False)] | None = None
    tolerance: Tolerance | None = None


class OpEntry(Settings):
    target: StrictStr
    backward: StrictStr | None = None
    kind: Literal["pair", "loss", "plain", "activation", "layer", "function"] | None = None
    inputs: dict[str, Annotated[list[Axis], Field(min_length=1)]] | None = None
    dims: dict[str, DimSpace] = {}
    hyper: dict[str, Annotated[Union[Range, dict[str, Space], Space], Field(union_mode="left_to_right")]] = {}  # {min, max} is a range
    labels: dict[str, Labels] = {}
    surrogate: Union[Literal["reverse", "straight-through"], Scale] | None = None

class AuditFile(_Model):
    defaults: Settings = Settings()
    ops: Annotated[list[OpEntry], Field(min_length=1)]

    @model_validator(mode="after")
    def _dims_known(self) -> "AuditFile":
        """Every named dimension of a shape, a label shape or a class count is declared under dims."""
        for i, e in enumerate(self.ops):
            named = [(f"inputs.{k}", a) for k, shape in (e.inputs or {}).items() for a in shape]
            named += [(f"labels.{k}.shape", a) for k, lab in e.labels.items() for a in lab.shape]
            named += [(f"labels.{k}.classes", lab.classes) for k, lab in e.labels.items()]
            for where, axis in named:
                if isinstance(axis, str) and axis not in e.dims:
                    raise _error("spec_mismatch", f"dimension {axis!r} is not declared under dims (declared: {', '.join(e.dims) or 'none'})",
                                 path=f"ops[{i}].{where}")
        return self


# --- drawing ------------------------------------------------------------------------------------


def space(value: Any, label: str) -> st.SearchStrategy:
    """A declared space -> a strategy that shrinks towards the first value (or min)."""
    if isinstance(value, Range):
        if isinstance(value.min, int) and isinstance(value.max, int):
            return st.integers(value.min, value.max)
        return st.floats(float(value.min), float(value.max), allow_nan=False, allow_infinity=False)
    if isinstance(value, list):
        return st.sampled_from(value)
    return st.just(value)


@dataclass(frozen=True)
class Declared:
    """What an audit file says about a function op: shapes, hyperparameter spaces, labels."""

    entry: OpEntry

    def roles(self, fn, where: str) -> tuple[tuple[str, str], ...]:
        """(name, role) in the forward's call order, from the declaration; an undeclared required argument is an error."""
        e = self.entry
        roles = []
        for p in pairs._positional(fn):
            if p.name in (e.inputs or {}):
                roles.append((p.name, "array"))
            elif p.name in e.labels:
                roles.append((p.name, "labels"))
            elif p.name in e.hyper:
                roles.append((p.name, "hyper"))
            elif p.default is p.empty:
                raise SpecError(*where, f"{fn.__name__} takes {p.name!r}: declare it under inputs (an array), hyper or labels")
        unused = set(e.inputs or {}) | set(e.labels) | set(e.hyper)
        unused -= {n for n, _ in roles}
        if unused:
            raise SpecError(*where, f"{fn.__name__} takes no argument {', '.join(sorted(map(repr, unused)))} "
                                    f"(it takes {', '.join(p.name for p in pairs._positional(fn))})")
        return tuple(roles)

    def cases(self, pair: "pairs.Pair", env: S.Envelope) -> st.SearchStrategy:
        return _declared_cases(self.entry, pair, env)


@st.composite
def _declared_cases(draw, e: OpEntry, pair: "pairs.Pair", env: S.Envelope):
    dims = {name: draw(space(value, name), label=name) for name, value in e.dims.items()}
    size = lambda axis: axis if isinstance(axis, int) else dims[axis]  # noqa: E731
    inputs, const, hyper = {}, {}, {}
    param_env = S.Envelope(max_abs=min(C.PARAM_MAX_ABS, env.max_abs))
    first = True
    for name, role in pair.args:
        if role == "array":
            shape = tuple(size(a) for a in e.inputs[name])
            inputs[name] = draw(S.arrays(shape, env if first else param_env), label=name)
            first = False
        elif role == "labels":
            lab = e.labels[name]
            shape = tuple(size(a) for a in lab.shape)
            const[name] = draw(hnp.arrays(np.int64, shape, elements=st.integers(0, size(lab.classes) - 1)), label=name)
        else:
            value = e.hyper[name]
            if isinstance(value, dict):
                hyper[name] = {k: draw(space(v, f"{name}[{k!r}]"), label=f"{name}[{k!r}]") for k, v in value.items()}
            else:
                hyper[name] = draw(space(value, name), label=name)
    return S.Case(inputs, const, hyper)


# --- loading and running ------------------------------------------------------------------------


def load(path: str | Path) -> AuditFile:
    file = str(path)
    data = parse_yaml(read_spec_text(path), file)
    if not isinstance(data, dict):
        raise SpecError(file, "(top level)", "expected a mapping with `ops:` (a list of ops to audit) and optional `defaults:`")
    try:
        return AuditFile.model_validate(data)
    except ValidationError as exc:
        raise _from_validation_error(exc, file) from None


def _surrogate(entry: OpEntry, obj: Any, where: str, inputs: tuple[str, ...]):
    s = entry.surrogate
    declared = ("scale", float(s.scale)) if isinstance(s, Scale) else s
    return surrogates.parse(declared, obj, where, inputs)


def subject_for(entry: OpEntry, file: str, index: int, base_dir: Path, max_abs: float) -> subjects.Subject:
    """The op an entry names, as the audit's subject (a function pair with its declared shapes, or a class op)."""
    from . import prepare, user_stdout_to_stderr

    target = loading.resolve(entry.target, base_dir)  # reproduction lines work from any folder
    with user_stdout_to_stderr():
        raw = loading.load_raw(target)
    if not inspect.isfunction(raw):
        extra = [k for k in ("inputs", "hyper", "labels", "backward") if getattr(entry, k)] + (["dims"] if entry.dims else [])
        if extra:
            raise SpecError(file, f"ops[{index}].{extra[0]}", f"{entry.target} is not a function: shapes, hyperparameters, labels "
                                                              f"and backward are for function ops (its own contract says them)")
        if entry.kind in FUNCTION_KINDS:
            raise SpecError(file, f"ops[{index}].kind", f"{entry.target} is not a function; expected one of {', '.join(CLASS_KINDS)}")
        subject = prepare(target, kind=entry.kind, max_abs=max_abs)
    else:
        if entry.kind in CLASS_KINDS:
            raise SpecError(file, f"ops[{index}].kind", f"{entry.target} is a function; expected one of {', '.join(FUNCTION_KINDS)}")
        source = loading.split(target)[0]
        module = loading.load_module(source) if loading.is_file(source) else sys.modules.get(source)
        if entry.backward is not None and entry.backward not in pairs._functions(module):
            raise SpecError(file, f"ops[{index}].backward", f"{entry.target.rpartition(':')[0]} defines no function {entry.backward!r} "
                                                            f"(it defines: {', '.join(sorted(pairs._functions(module)))})")
        if entry.inputs is None:  # a known convention: gradlab draws it as it would without the file
            try:
                pair = pairs.make_pair(module, raw.__name__, source, backward=entry.backward, backward_key="`backward: NAME` in this entry")
            except TargetError as exc:
                raise SpecError(file, f"ops[{index}].target", str(exc).replace(f"{source}:", f"{entry.target.rpartition(':')[0]}:", 1)) from None
        else:
            pair = _declared_pair(entry, module, raw, source, (file, f"ops[{index}].inputs"))
        shown = target + (f" --backward {entry.backward}" if entry.backward else "")
        subject = pairs.PairSubject(pair, shown, max_abs=max_abs)
        if entry.inputs is not None:
            _bound(entry, file, index)
    if entry.surrogate is not None:
        inputs = subject.pair.arrays if isinstance(subject, pairs.PairSubject) else getattr(subject, "arg_names", ())
        try:
            subject.surrogate = _surrogate(entry, subject.obj, entry.target, tuple(inputs))
            subject.surrogate_external = True  # not on the op itself: its reproduction line must say it
        except TargetError as exc:
            raise SpecError(file, f"ops[{index}].surrogate", str(exc)) from None
    return subject


def _largest(value: Any) -> int:
    """The largest size a declared dimension space reaches."""
    if isinstance(value, Range):
        return int(value.max)
    return max(value) if isinstance(value, list) else int(value)


def _bound(entry: OpEntry, file: str, index: int) -> None:
    """Refuse declared shapes whose largest case has more elements to difference than gradlab.memory allows,
    before the first draw allocates them."""
    from .. import memory

    size = lambda axis: axis if isinstance(axis, int) else _largest(entry.dims[axis])  # noqa: E731
    shapes = {name: tuple(size(a) for a in axes) for name, axes in (entry.inputs or {}).items()}
    total = sum(math.prod(s) for s in shapes.values())
    what = " and ".join(f"{name} {s}" for name, s in shapes.items())
    problem = memory.audit_elements_problem(total, what, "lower the dimensions' max under dims (a wrong backward shows on small sizes as well)")
    if problem:
        raise SpecError(file, f"ops[{index}].dims", problem)


def _declared_pair(entry: OpEntry, module, fn, source: str, where: tuple[str, str]) -> "pairs.Pair":
    """kind: as declared; else a loss when labels are declared and no backward twin exists, else a
    pair for a name_forward and an f / f_grad twin otherwise (as make_pair decides)."""
    funcs = pairs._functions(module)
    twins = [entry.backward] if entry.backward else pairs.backward_twins(fn.__name__, funcs)
    kind = entry.kind or ("loss" if entry.labels and not twins else "pair" if C.FORWARD_WORD in fn.__name__ else "plain")
    backward = None
    if kind != "loss":
        if not twins or twins[0] not in funcs:
            raise SpecError(where[0], where[1].rpartition(".")[0] + ".backward",
                            f"no backward for {fn.__name__}: name it (`backward: NAME`, a function of {source}), or set kind: loss")
        backward = funcs[twins[0]]
    declared = Declared(entry)
    return pairs.Pair(fn, backward, kind, "declared", declared.roles(fn, where), source, declared=declared)


@dataclass
class _Plan:
    subject: subjects.Subject
    examples: int
    seed: int
    rtol: float | None
    atol: float | None


def audit_yaml(path: str | Path, *, examples: int, seed: int = 0, rtol: float | None = None, atol: float | None = None,
               max_abs: float = S.MAX_ABS, reseed: bool = False, progress=None, live=None):
    """Audit every op an audit file declares; per-op settings win over `defaults:`, which win over the arguments."""
    from . import FileAuditResult, user_stdout_to_stderr
    from .judge import tolerance
    from .search import run

    t0 = time.perf_counter()
    file = str(path)
    doc = load(path)
    base_dir = Path(file).resolve().parent
    plans = []
    for i, entry in enumerate(doc.ops):
        pick = lambda key: next((v for v in (getattr(entry, key), getattr(doc.defaults, key)) if v is not None), None)  # noqa: E731
        tol = entry.tolerance or doc.defaults.tolerance or Tolerance()
        try:
            subject = subject_for(entry, file, i, base_dir, float(pick("max_abs") or max_abs))
        except SpecError:
            raise
        except TargetError as exc:  # the op cannot be loaded or breaks its contract: at the entry that names it
            raise SpecError(file, f"ops[{i}].target", _as_written(str(exc), entry.target, base_dir)) from None
        plans.append(_Plan(subject, pick("examples") or examples, pick("seed") if pick("seed") is not None else seed,
                           tol.rtol if tol.rtol is not None else rtol, tol.atol if tol.atol is not None else atol))
    out = FileAuditResult(file)
    for plan in plans:  # every entry is validated and loaded before the first op runs
        plan.subject.reseed = plan.seed if reseed else None
        with user_stdout_to_stderr():
            result = run(plan.subject, examples=plan.examples, seed=plan.seed, tol=tolerance(plan.rtol, plan.atol), progress=live)
        out.results.append(result)
        if progress is not None:
            progress(result)
    out.seconds = time.perf_counter() - t0
    return out


def _as_written(text: str, target: str, base_dir: Path) -> str:
    """A message about the resolved target, with the file as the audit file spells it."""
    try:
        resolved = loading.resolve(target, base_dir).rpartition(":")[0]
    except TargetError:
        return text
    return text.replace(resolved, target.rpartition(":")[0])


def is_audit_file(target: str) -> bool:
    return ":" not in target and target.lower().endswith((".yaml", ".yml"))


__all__ = ["AuditFile", "audit_yaml", "is_audit_file", "load"]
