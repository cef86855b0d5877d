"""The search: Hypothesis draws cases, the judge examines each, Hypothesis shrinks a failure.

Deterministic by default: the run is seeded (`seed`), no example database is read or
written (nothing appears in the user's tree), and the explain phase, which may write patch
files, is off. Each kind of finding is its own exception type, so Hypothesis shrinks each
kind of failure separately and all of them are reported. A case on which the op is undefined
(not finite on a bound of its domain) is discarded with `reject()`, never a failure.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from hypothesis import HealthCheck, Phase, Verbosity, given, reject, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from hypothesis.errors import Flaky, Unsatisfiable

from . import judge, randomness
from . import strategies as S
from .findings import Counterexample, Finding, NoBackward, TensorCheck, Undetermined, hazards
from .judge import examine
from ..userops.loading import TargetError
from ..usercode import expired
from .subjects import Subject

DEFAULT_EXAMPLES = 200
KIND_ORDER = ("not implemented", "random forward", "raised", "contract", "non-finite", "precision", "mutation", "mismatch", "nondeterministic")


@dataclass
class Coverage:
    """What the search actually reached, so a pass can be read for what it is worth."""

    examples: int = 0
    shapes: set = field(default_factory=set)
    max_abs: float = 0.0
    zeros: int = 0
    near_zero: int = 0
    saturated: int = 0
    near_kinks: int = 0
    negative: int = 0
    positive: int = 0
    judged: int = 0
    kink_stencils: int = 0
    undetermined: int = 0
    discarded: int = 0  # cases on a domain bound where the op is not finite: no verdict
    no_backward: int = 0  # cases in a mode where the forward keeps no cache (test-mode batchnorm): no verdict
    max_batch: int = 0
    by_directions: int = 0  # cases judged by random directions alone (judge.projected), no element differenced

    def add(self, subject: Subject, inputs: dict[str, np.ndarray], checks: list[TensorCheck]) -> None:
        self.examples += 1
        main = next(iter(inputs.values()))
        self.shapes.add(main.shape)
        batch_axis = 0 if subject.kind in ("layer", "loss", "pair") else -2  # activations: (..., batch, features)
        self.max_batch = max(self.max_batch, main.shape[batch_axis] if main.ndim >= 2 else 1)
        for name, v in inputs.items():
            if name.startswith("params["):
                continue
            a = np.abs(v)
            self.max_abs = max(self.max_abs, float(a.max(initial=0.0)))
            self.zeros += int(np.sum(v == 0))
            self.near_zero += int(np.sum((a > 0) & (a <= S.NEAR_ZERO[1])))
            self.saturated += int(np.sum(a >= S.SATURATED))
            self.negative += int(np.sum(v < 0))
            self.positive += int(np.sum(v > 0))
            for k in subject.envelope.kinks:
                self.near_kinks += int(np.sum(np.abs(v - k) <= 1e-3 * max(1.0, abs(k))))
        self.by_directions += bool(checks) and all(c.projections for c in checks)
        for c in checks:
            self.judged += c.judged
            self.kink_stencils += int(c.kinks.sum())
            self.undetermined += int(c.undetermined.sum())

    def to_dict(self) -> dict[str, Any]:
        dims = sorted({len(s) for s in self.shapes})
        return {
            "examples": self.examples, "distinct_shapes": len(self.shapes), "ndims": dims,
            "largest_shape": list(max(self.shapes, key=lambda s: (int(np.prod(s)), s))) if self.shapes else [],
            "max_batch": self.max_batch, "max_abs_input": self.max_abs, "exact_zeros": self.zeros, "near_zero": self.near_zero,
            "saturated": self.saturated, "near_declared_kinks": self.near_kinks, "negative": self.negative, "positive": self.positive,
            "elements_judged": self.judged, "kink_stencils": self.kink_stencils, "undetermined": self.undetermined,
            "discarded": self.discarded, "no_backward": self.no_backward, "judged_by_directions": self.by_directions,
        }


@dataclass
class AuditResult:
    target: str
    kind: str
    name: str
    seed: int
    budget: int
    tolerance: dict
    coverage: Coverage
    findings: list[Finding]
    seconds: float = 0.0
    call: str = ""
    domain: str = ""  # '(0, 1]' when the op declares or gradlab inferred one; '' for the whole line
    domain_note: str = ""  # why it was inferred ('' when declared)
    reseed: int | None = None  # --reseed: the seed the global generators got before every call into the op
    surrogate: str = ""  # the declared surrogate the backward was checked against ('' for the true gradient)
    requested: int = 0  # --examples, when the op's budget is a share of it (`budget`)
    pair_mode: str = ""  # a function op's mode (pair, loss, plain): how `reproduce` calls it
    surrogate_declared: Any = None  # the surrogate as declared outside the op (an audit file): reproduce lines repeat it
    warnings: list[Finding] = field(default_factory=list)  # hazards around right values (findings.WARNINGS)
    strict: bool = False  # --strict: a warning fails the op too
    built: str = ""  # what gradlab constructed to audit a class whose constructor takes arguments
    imported: str = ""  # how the op's file was imported when its imports needed the repository's root (loading.imported_as)

    @property
    def passed(self) -> bool:
        return not self.findings and not (self.strict and self.warnings)


def _settings(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=False,
        phases=(Phase.explicit, Phase.generate, Phase.shrink),
        report_multiple_bugs=True,
        suppress_health_check=list(HealthCheck),
        verbosity=Verbosity.quiet,
        print_blob=False,
    )


def _storage() -> Path:
    """Where gradlab's own searches let Hypothesis keep its files: gradlab's cache folder, never the working directory."""
    base = os.environ.get("XDG_CACHE_HOME")
    if not base:
        try:
            base = Path.home() / ".cache"
        except (RuntimeError, KeyError, OSError):  # no HOME and no passwd entry (a bare container)
            base = Path(tempfile.gettempdir())
    return Path(base) / "gradlab" / "hypothesis"


@contextlib.contextmanager
def private_storage() -> Iterator[None]:
    """Hypothesis writes a cache of the constants in local modules (.hypothesis/constants) wherever a search runs, even
    with database=None: gradlab's searches (audit, compare, module audits) keep it in gradlab's cache folder, unless
    HYPOTHESIS_STORAGE_DIRECTORY says where, and put the previous setting back, so a user's own Hypothesis tests in the
    same process (gradlab.audit in a pytest session) keep theirs. Shrinking is in memory: nothing of it lives there."""
    from hypothesis import configuration

    if os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY"):
        yield
        return
    key = "__hypothesis_home_directory"  # set_hypothesis_home_dir's global; None: from the environment or ./.hypothesis
    before = getattr(configuration, key, None)
    configuration.set_hypothesis_home_dir(_storage())
    try:
        yield
    finally:
        configuration.set_hypothesis_home_dir(before)


def _leaves(group: BaseException) -> list[BaseException]:
    if isinstance(group, BaseExceptionGroup):
        return [leaf for e in group.exceptions for leaf in _leaves(e)]
    return [group]


def _nondeterministic(exc: BaseException) -> Finding:
    """Hypothesis saw a case fail, then pass on replay: keep the case and what it first did."""
    first = next((e for e in _leaves(exc) if isinstance(e, Counterexample)), None)
    message = "the op gave different results on the same input (does forward or backward keep state between calls, or draw random numbers?)"
    if first is None:
        return Finding("nondeterministic", f"{message}: {exc}")
    f = first.finding
    if f.kind == "random forward":  # the forward itself is random: that is the verdict, not a flaky search
        return f
    return Finding("nondeterministic", f"{message}; the first time: {f.kind}: {f.message}", case=f.case, upstream=f.upstream, stage=f.stage, checks=f.checks, traceback=f.traceback)


@contextlib.contextmanager
def deferring() -> Iterator[None]:
    """A decisive directional mismatch fails a case without localising it while Hypothesis searches and shrinks."""
    before, judge.DEFERRED["on"] = judge.DEFERRED["on"], True
    try:
        yield
    finally:
        judge.DEFERRED["on"] = before


def localised(subject: Subject, finding: Finding, tol: dict) -> Finding:
    """The shrunk case of a deferred mismatch, judged element by element: the finding the report shows. Should no
    element exceed its bound there (a direction can sum many elements' errors), the directional finding stays."""
    if not getattr(finding, "deferred", False) or finding.case is None:
        return finding
    upstream = finding.upstream
    try:
        examine(subject, finding.case, (lambda shape: upstream) if upstream is not None else None, tol)
    except Counterexample as exc:
        return exc.finding
    except Undetermined:
        return finding
    finally:
        subject.restore()
    finding.message += " (no single element exceeds its own bound: their errors add up along it)"
    return finding


def search(subject: Subject, *, examples: int = DEFAULT_EXAMPLES, seed: int = 0, tol: dict, progress=None) -> tuple[list[Finding], Coverage]:
    """Run the Hypothesis search; returns the shrunk findings (one per kind) and the coverage.

    `progress` (progress.Progress) hears after every case how far the search is."""
    coverage = Coverage()
    state = {"failed": False}

    @given(case=subject.strategy(), data=st.data())
    def probe(case, data):
        draw = lambda shape: data.draw(S.upstream(shape), label="grad_out")  # noqa: E731
        try:
            checks = examine(subject, case, draw, tol)
        except Counterexample:
            state["failed"] = True
            if progress is not None:
                progress.update(coverage.examples, True)
            raise
        except Undetermined as exc:
            if not state["failed"]:
                if isinstance(exc, NoBackward):
                    coverage.no_backward += 1
                else:
                    coverage.discarded += 1
            reject()
        if not state["failed"]:  # shrinking replays cases; count only the search
            coverage.add(subject, case.inputs, checks)
        if progress is not None:
            progress.update(coverage.examples, state["failed"])

    test = hypothesis_seed(seed)(_settings(examples)(probe))
    findings: list[Finding] = []
    try:
        with private_storage(), deferring():
            test()
    except Flaky as exc:
        if expired() is not None:  # the deadline fired inside Hypothesis' own drawing: a timeout, not a flaky op
            raise expired() from None
        findings.append(_nondeterministic(exc))
    except Unsatisfiable:
        raise TargetError(f"{subject.target}: every input drawn was discarded: the op is not finite on its domain's bounds "
                          f"{subject.envelope.text()} and nothing else was drawn; declare a narrower domain = (low, high)") from None
    except Counterexample as exc:
        findings.append(exc.finding)
    except BaseExceptionGroup as group:
        if expired() is not None:
            raise expired() from None
        for leaf in _leaves(group):
            if not isinstance(leaf, Counterexample):
                raise leaf
            findings.append(leaf.finding)
    finally:
        subject.restore()
    findings = [localised(subject, f, tol) for f in findings]
    if any(f.kind == "random forward" for f in findings):  # differences of a random function mean nothing
        findings = [f for f in findings if f.kind not in ("mismatch", "nondeterministic")]
    findings.sort(key=lambda f: KIND_ORDER.index(f.kind))
    return findings, coverage


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """torch on one intra-op thread while an op is audited, when the user's code imported torch: the audit's tensors
    have tens of elements, and waking a thread pool for each of the thousands of small calls a case makes cost
    ~1 ms a call on a loaded machine (a sparsemax Function: 31 s at 2 threads, 4.7 s at 1, 200 examples). Put back after."""
    torch = sys.modules.get("torch")
    before = None
    try:
        before = torch.get_num_threads() if torch is not None else None
        if before is not None and before != 1:
            torch.set_num_threads(1)
    except Exception:  # noqa: BLE001 -- a stub module named torch, a build without the call
        before = None
    try:
        yield
    finally:
        if before is not None and before != 1:
            torch.set_num_threads(before)


def run(subject: Subject, *, examples: int = DEFAULT_EXAMPLES, seed: int = 0, tol: dict, progress=None) -> AuditResult:
    t0 = time.perf_counter()
    requested, examples = examples, subject.budget(examples)
    if progress is not None:
        progress.start(subject.name.split(" / ")[0], examples)
    try:
        with randomness.kept(), one_torch_thread():
            findings, coverage = search(subject, examples=examples, seed=seed, tol=tol, progress=progress)
    except MemoryError:  # in gradlab's own handling of the op's arrays (its own allocations are findings of the op)
        raise TargetError(f"{subject.target}: out of memory while auditing it: an array the op takes or returns (a forward output, a "
                          "gradient, e.g. a broadcast view far larger than its input) does not fit in this machine's memory; "
                          "audit it on smaller shapes") from None
    finally:
        if progress is not None:
            progress.finish()
    env = subject.envelope
    domain = env.text() if np.isfinite(env.low) or np.isfinite(env.high) else ""
    return AuditResult(subject.target, subject.kind, subject.name, seed, examples, tol, coverage, findings,
                       seconds=time.perf_counter() - t0, call=subject.call_signature(), domain=domain, domain_note=subject.domain_note,
                       reseed=subject.reseed, surrogate=subject.surrogate.text() if subject.surrogate else "", requested=requested,
                       pair_mode=getattr(getattr(subject, "pair", None), "mode", ""),
                       surrogate_declared=subject.surrogate.declared if subject.surrogate and getattr(subject, "surrogate_external", False) else None,
                       warnings=hazards(subject), built=getattr(subject, "built", ""))
