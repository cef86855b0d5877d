"""Hypothesis varies the sizes and the values; a failing case is shrunk (smallest sizes, simplest value
style, seed 0) and comes back with its checks. Seeded, no example database, nothing written."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from hypothesis.errors import Flaky

from . import inputs as I
from .cases import run_case
from .execute import Pair
from .rule import RuleCheck
from ..audit.search import private_storage
from ..errors import GradlabError

MAX_SEED = 2**16


class _Mismatch(Exception):
    def __init__(self, case: I.Case, checks: list[RuleCheck]):
        super().__init__(case.text())
        self.case, self.checks = case, checks


class _Raised(Exception):
    def __init__(self, case: I.Case, error: GradlabError):
        super().__init__(str(error))
        self.case, self.error = case, error


@dataclass
class SearchResult:
    examples: int = 0
    shapes: set = field(default_factory=set)
    styles: set = field(default_factory=set)
    worst: dict = field(default_factory=dict)  # tensor name -> the RuleCheck with the highest ratio seen
    failure: tuple | None = None  # (Case, [RuleCheck]) after shrinking
    flaky: str = ""
    seconds: float = 0.0
    replayed: bool = False  # one --case, no search and no shrinking

    @property
    def passed(self) -> bool:
        return self.failure is None and not self.flaky

    def note(self, check) -> None:
        """Keep each tensor's closest call; a tensor the candidate could not produce once stays marked."""
        prev = self.worst.get(check.name)
        if getattr(prev, "unsupported", ""):
            return
        if prev is None or getattr(check, "unsupported", "") or check.ratio > prev.ratio:
            self.worst[check.name] = check


def size_strategy(d: int, fixed: bool):
    """Size 1, or a size within a factor of the declared one (odd ones and non-multiples of 8 included)."""
    if fixed:
        return st.just(d)
    return st.one_of(st.just(1), st.integers(min_value=max(1, d // 4), max_value=max(2, 2 * d)))


def search(pair: Pair, *, examples: int, seed: int, run=run_case) -> SearchResult:
    """`run(pair, case) -> checks` (each with .name, .passed, .ratio) on Hypothesis-drawn cases; `pair` gives
    .specs (the declared inputs) and .param_shapes (sizes baked into parameters, never varied)."""
    result = SearchResult()
    fixed = {d for shape in pair.param_shapes.values() for d in shape}  # a module's sizes are baked into its parameters
    declared = I.sizes(pair.specs)
    state = {"failed": False}
    strategies = {d: size_strategy(d, d in fixed) for d in declared}

    @given(data=st.data())
    def probe(data):
        mapping = {d: data.draw(strategies[d], label=f"size {d}") for d in declared}
        style = data.draw(st.sampled_from(I.VALUE_STYLES), label="values")
        value_seed = data.draw(st.integers(0, MAX_SEED), label="seed")
        case = I.Case(I.resize(pair.specs, mapping), style, value_seed)
        state["case"] = case
        try:
            checks = run(pair, case)
        except GradlabError as exc:
            state["failed"] = True
            raise _Raised(case, exc) from None
        if not state["failed"]:
            result.examples += 1
            result.shapes.add(I.specs_text(case.specs))
            result.styles.add(style)
            for c in checks:
                result.note(c)
        if not all(c.passed for c in checks):
            state.setdefault("first_failure", case)
            state["failed"] = True
            raise _Mismatch(case, checks)

    conf = settings(max_examples=examples, deadline=None, database=None, derandomize=False,
                    phases=(Phase.explicit, Phase.generate, Phase.shrink), report_multiple_bugs=False,
                    suppress_health_check=list(HealthCheck), verbosity=Verbosity.quiet, print_blob=False)
    t0 = time.perf_counter()
    try:
        with private_storage():  # Hypothesis' files stay out of the user's working directory
            hypothesis_seed(seed)(conf(probe))()
    except _Mismatch as exc:
        result.failure = (exc.case, exc.checks)
    except _Raised as exc:
        raise type(exc.error)(f"{exc.error} (on the case --case '{exc.case.text()}')") from None
    except (MemoryError, RuntimeError) as exc:  # torch's CPU allocator raises RuntimeError("... can't allocate memory ...")
        if not out_of_memory(exc):
            raise
        raise _out_of_memory(pair, state.get("case")) from None
    except Flaky:  # Hypothesis' own wording names its internals (probe(data=...)); say what happened to the user's op
        case = state.get("first_failure")
        where = f"the case --case '{case.text()}'" if case is not None else "a case"
        result.flaky = f"the candidate failed {where}, then passed it on replay: its results differ from run to run on one input"
    finally:
        result.seconds = time.perf_counter() - t0
    return result


def out_of_memory(exc: BaseException) -> bool:
    """A MemoryError, or torch's allocator failing (a RuntimeError on the CPU, torch.OutOfMemoryError on CUDA)."""
    text = str(exc)
    return isinstance(exc, MemoryError) or "can't allocate memory" in text or "out of memory" in text.lower()


def _out_of_memory(pair: Pair, case) -> GradlabError:
    """gradlab's own arrays for a case (the kernels' outputs, gradients, cotangents) did not fit: the user's sizes."""
    where = f" on the case --case '{case.text()}'" if case is not None else ""
    return GradlabError(f"{pair.candidate.spec}: out of memory{where}: the inputs, outputs or gradients of the kernels do not fit in "
                        "this machine's memory; declare smaller sizes (--shapes, or example_inputs())")


def replay(pair: Pair, case: I.Case, run=run_case) -> SearchResult:
    """--case: exactly one case, no search."""
    t0 = time.perf_counter()
    try:
        checks = run(pair, case)
    except (MemoryError, RuntimeError) as exc:
        if not out_of_memory(exc):
            raise
        raise _out_of_memory(pair, case) from None
    failed = not all(c.passed for c in checks)
    result = SearchResult(examples=0 if failed else 1, shapes={I.specs_text(case.specs)}, styles={case.values}, replayed=True)
    result.worst = {c.name: c for c in checks}
    if failed:
        result.failure = (case, checks)
    result.seconds = time.perf_counter() - t0
    return result
