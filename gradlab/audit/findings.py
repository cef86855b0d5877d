"""What an audit finds: a counterexample (a failure, raised inside the search so Hypothesis shrinks it) or a hazard
around right values (a warning). Subjects and the judge both record findings; neither owns them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .strategies import Case


@dataclass
class TensorCheck:
    """One gradient tensor of one case, element by element."""

    name: str
    backward: np.ndarray
    numeric: np.ndarray
    error: np.ndarray  # the numeric engine's error estimate
    kinks: np.ndarray  # stencil straddled a kink: not judged
    undetermined: np.ndarray  # no finite difference (stencil left the domain): not judged
    bound: np.ndarray
    mismatch: np.ndarray
    projections: int = 0  # judged by this many random directions (numeric, error and bound are then NaN: not per element)

    @property
    def abs_err(self) -> np.ndarray:
        return np.abs(self.backward - self.numeric)

    @property
    def judged(self) -> int:
        return int(np.sum(~self.kinks & ~self.undetermined))


@dataclass
class Finding:
    """A counterexample: what went wrong, on which inputs, with the evidence."""

    kind: str  # mismatch | non-finite | raised | contract | mutation | precision | nondeterministic
    message: str
    case: Case | None = None
    upstream: np.ndarray | None = None
    stage: str = ""  # forward | backward
    checks: list[TensorCheck] = field(default_factory=list)
    traceback: str = ""
    output: np.ndarray | None = None  # the forward's value, for non-finite findings
    severity: str = "failure"  # failure | warning (a hazard around right values: WARNINGS below)


class Counterexample(Exception):
    """Raised inside the Hypothesis test; one subclass per kind, so Hypothesis shrinks each apart."""

    def __init__(self, finding: Finding):
        super().__init__(finding.message)
        self.finding = finding


class Mismatch(Counterexample): ...
class NonFinite(Counterexample): ...
class Raised(Counterexample): ...
class ContractBroken(Counterexample): ...
class Mutated(Counterexample): ...
class PrecisionLost(Counterexample): ...
class NotImplementedYet(Counterexample): ...
class RandomForward(Counterexample): ...


RAISES = {"mismatch": Mismatch, "non-finite": NonFinite, "raised": Raised, "contract": ContractBroken, "mutation": Mutated, "precision": PrecisionLost,
          "not implemented": NotImplementedYet, "random forward": RandomForward}


class Undetermined(Exception):
    """The case lies on a bound of the domain and the op is not finite there: no verdict (discarded)."""


class NoBackward(Undetermined):
    """The forward keeps no cache in this mode (a course batchnorm's test mode): its backward is not
    defined there, so the case says nothing about it (counted apart)."""


# --- hazards: right values, risky habits ----------------------------------------------------------
# A hazard never stops a case: the values are judged first, always. Each is a warning named in every
# output; --strict makes them failures. A wrong value is a failure whatever else is found.
WARNINGS = {
    "in-place": "wrote into an argument, dout or the cache in place (a caller reusing them sees other values)",
    "shape": "returned a gradient whose shape only broadcasts to its input's ((1, D) for (D,)): the same values",
    "reseeded": "the forward draws random numbers: audited with the global generators reseeded before every call",
    "inferred surrogate": "named like a gradient reversal with an identity forward, declaring no surrogate: its backward was "
                          "checked against -lambda x the true gradient (declare surrogate = 'reverse' on the class to say so)",
}
AUTO_RESEED = 0  # the seed an unseeded random forward is audited with when --reseed was not given


def _elements(case: Case | None) -> int:
    return sum(int(v.size) for v in case.inputs.values()) if case is not None else 0


def warn(subject: Any, kind: str, message: str, *, case: Case | None = None, upstream=None, stage: str = "") -> None:
    """Record a hazard of `kind` (WARNINGS) on `subject`: one per kind, on the smallest case it was seen on."""
    found = subject.__dict__.setdefault("hazards", {})
    old = found.get(kind)
    if old is not None and (case is None or old.case is not None and _elements(old.case) <= _elements(case)):
        return
    found[kind] = Finding(kind, message, case=None if case is None else case.copy(),
                          upstream=None if upstream is None else np.array(upstream, dtype=np.float64), stage=stage, severity="warning")


def hazards(subject: Any) -> list[Finding]:
    """The warnings recorded on `subject` during its search, in the order of WARNINGS."""
    found = subject.__dict__.get("hazards", {})
    return [found[k] for k in WARNINGS if k in found]


def fail(kind: str, message: str, **kw) -> None:
    """Raise the Counterexample of `kind` (for subjects that judge part of a case themselves)."""
    raise RAISES[kind](Finding(kind, message, **kw))
