"""One case -> a verdict: the user's backward against differences of the user's forward.

The numeric engine differentiates F (see subjects.py) element by element in float64 and
returns, per element, a value, its own error estimate and a kink flag (its stencil straddled
a point where F is not differentiable). Element i is judged like `gradlab check` judges:

    |backward_i - numeric_i| <= atol + rtol |numeric_i| + SAFETY (err_i + ROUNDING scale)

with gradlab.compare's float64 rtol/atol (its fallback where no error model exists, as for
any user op) and SAFETY, and ROUNDING times the tensor's largest element standing in for
the rounding bound of the user's backward, which gradlab cannot model. Kink elements are counted, not judged;
elements whose stencil leaves the op's domain are retried with smaller steps, and if the
forward still gives no finite difference they are counted as undetermined.
Any other way an op can be wrong -- raising, calling sys.exit() or raising KeyboardInterrupt
itself (kind `raised`), NaN/inf on an input inside the domain, a wrong shape, arguments written
in place -- is a finding of its own kind. Only a real Ctrl-C and gradlab's own deadline stop
the audit. A forward or backward that is not finite on an input lying exactly on a bound of
the domain (log 0 at an inferred (0, 1]) is undetermined: the case says nothing about the
backward, and the search discards it.
"""

from __future__ import annotations

import traceback
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .. import compare, memory
from ..engines.numeric import DEFAULT_STEP, differences, gradient_of, steps
from ..usercode import describe
from ..userops.loading import TargetError
from .strategies import Case
from .findings import AUTO_RESEED, RAISES, Counterexample, Finding, Mismatch, TensorCheck, Undetermined, warn
from .subjects import BadReturn, LayerSubject, Subject, as_float_array, passes_through

METHOD = "richardson"
RETRY_STEPS = (1e-6, 1e-8)  # relative steps tried for elements whose stencil left the domain
ROUNDING = 16 * np.finfo(np.float64).eps  # a correct float64 backward's rounding, per unit of its largest element
NOISE_ULPS = 4  # ... and moved by this many units in their last place
ULP_PROBES = 3  # elements moved by a few ulps to measure the rounding of x + h (plus the largest |x|)
QUOTIENT_STEP = 0.75  # the extra quotient per element, off the Richardson grid (h, h/2)
TRUNCATION = 2.4  # |D(3h/4) - R| a smooth F may show, in units of Richardson's err (9/4 in leading order)


def tolerance(rtol: float | None = None, atol: float | None = None) -> dict[str, float]:
    """The numbers behind the verdict: compare's float64 fallback, overridable, echoed in reports."""
    tol = dict(compare.TOLERANCES["float64"])
    if rtol is not None:
        tol["rtol"] = float(rtol)
    if atol is not None:
        tol["atol"] = float(atol)
    tol["err_factor"] = compare.SAFETY
    tol["rounding"] = float(ROUNDING)
    return tol


class _StencilRaised(Exception):
    """User code exited or raised a BaseException at a point of a difference stencil."""

    def __init__(self, exc: BaseException):
        super().__init__(describe(exc))
        self.exc = exc


def _shaped(subject: Subject, name: str, g: np.ndarray, x: np.ndarray, case: Case, upstream) -> np.ndarray:
    """g in x's shape. A 0-d zero for an array is a stub (`dx = 0`); the same values in a shape that differs only by
    axes of size 1 ((1, D) for (D,)) are judged, with a warning; any other shape is a contract failure."""
    if g.shape == x.shape:
        return g
    if g.ndim == 0 and g == 0 and (x.size > 1 or g.dtype.kind in "iub"):
        _fail("not implemented", f"backward returned the number 0 as the gradient for {name} (shape {x.shape}): not implemented yet (a `d{name} = 0` stub?)",
              case=case, upstream=upstream, stage="backward")
    if g.size == x.size and tuple(d for d in g.shape if d != 1) == tuple(d for d in x.shape if d != 1):
        warn(subject, "shape", f"backward's gradient for {name} has shape {g.shape}, but {name} has shape {x.shape}: the values are "
             f"judged as {x.shape}, but an update {name} -= lr * d{name} would broadcast {name} to a new shape", case=case, upstream=upstream, stage="backward")
        return g.reshape(x.shape)
    hint = ""
    try:
        if np.broadcast_shapes(g.shape, x.shape) == g.shape and g.size > x.size:
            hint = f" (it broadcasts to {name}: a sum over the batch or the broadcast axes missing?)"
    except ValueError:
        pass
    _fail("contract", f"backward's gradient for {name} has shape {g.shape}, but {name} has shape {x.shape}{hint}", case=case, upstream=upstream, stage="backward")
    return g


# --- ties and kinks inside the stencil: no verdict -------------------------------------------------
TIE_STEP = 1e-6  # relative step of the second look at a mismatched element
TIE_CHECKS = 32  # mismatched elements looked at per tensor (each costs 12 forwards at most)


def _hidden_ties(subject: Subject, case: Case, upstream, checks: list[TensorCheck]) -> None:
    """A mismatched element is looked at once more, on a step far smaller than the numeric engine's, and is a kink
    (not judged) when the engine's stencil, not the backward, is what disagrees:
      - the derivative there, from central differences at TIE_STEP that agree with each other, agrees with the
        backward: a kink lies inside the engine's stencil but not at the element (a max-pool's near-tie, 1e-4 apart,
        whose kink the central differences average away), or the forward bends faster than the stencil resolves;
      - or some output is not differentiable at the element but the kinks cancel in sum(grad_out * forward) (a tie
        between overlapping windows with upstream +1 and -1: both one-sided slopes 0, any subgradient valid). The
        upstream's magnitudes, sum(|grad_out| * forward), add such kinks up: a jump between the one-sided slopes
        that does not shrink with the step.
    A wrong backward disagrees with the derivative at the element, and a real overlap bug still fails."""
    mixed = upstream is not None and getattr(subject, "needs_upstream", False) and bool(np.any(upstream > 0) and np.any(upstream < 0))
    for c in checks:
        if not c.mismatch.any() or c.name not in case.inputs:
            continue
        x = case.inputs[c.name]
        signed = lambda v, name=c.name: subject.scalar(case, upstream, name, v)  # noqa: E731
        weights = None if not mixed else np.abs(upstream)
        for i in np.flatnonzero(c.mismatch.reshape(-1))[:TIE_CHECKS]:
            at = np.unravel_index(int(i), x.shape)
            near = subject.surrogate is None and _agrees_closer(signed, x, int(i), float(c.backward[at]))
            if near or (weights is not None and _on_tie(lambda v, name=c.name: subject.scalar(case, weights, name, v), x, int(i))):
                c.mismatch[at], c.kinks[at] = False, True


def _moved(f: Callable[[np.ndarray], float], x: np.ndarray, i: int):
    flat = x.reshape(-1)

    def at(offset: float) -> float:
        moved = flat.copy()
        moved[i] += offset
        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                return float(f(moved.reshape(x.shape)))
        except Exception:  # noqa: BLE001 -- a point the forward refuses: no evidence
            return np.nan

    return at, TIE_STEP * max(1.0, abs(float(flat[i])))


CLOSER_SCALES = (1.0, 1e-2)  # of TIE_STEP: a forward bending within 1e-6 |x| (a batchnorm's eps 1e-8 on a constant batch)


def _agrees_closer(f: Callable[[np.ndarray], float], x: np.ndarray, i: int, backward: float) -> bool:
    at, h0 = _moved(f, x, i)
    f0 = at(0.0)
    for scale in CLOSER_SCALES:
        h = h0 * scale
        d1, d2 = (at(h) - at(-h)) / (2 * h), (at(h / 2) - at(-h / 2)) / h
        noise = 64 * np.finfo(np.float64).eps * max(1.0, abs(f0)) / h
        if not (np.isfinite(d1) and np.isfinite(d2)) or abs(d1 - d2) > 1e-6 * (1.0 + abs(d2)) + noise:
            continue  # the two steps disagree: not resolved at this scale
        return bool(abs(backward - d2) <= 1e-8 * (1.0 + abs(d2)) + 4 * (abs(d1 - d2) + noise))
    return False


def _on_tie(f: Callable[[np.ndarray], float], x: np.ndarray, i: int) -> bool:
    at, h = _moved(f, x, i)
    f0 = at(0.0)
    jumps = []
    for step in (h, h / 2):
        right, left = (at(step) - f0) / step, (f0 - at(-step)) / step
        jumps.append(abs(right - left))
    floor = 1e-7 * max(1.0, abs(f0))  # the slopes' rounding, eps |F| / h, with room to spare
    return bool(np.all(np.isfinite(jumps)) and jumps[1] > floor and jumps[1] >= 0.75 * jumps[0])


def _fail(kind: str, message: str, **kw) -> None:
    raise RAISES[kind](Finding(kind, message, **kw))


def user_traceback(exc: BaseException) -> str:
    """The traceback without gradlab's own frames: the user's code is what they need to see."""
    pkg = str(Path(__file__).resolve().parents[1])
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith(pkg)]
    lines = ["Traceback (most recent call last):\n"] + traceback.format_list(frames) + traceback.format_exception_only(type(exc), exc)
    return "".join(lines).rstrip()


RETURNS = {"forward": "a forward must return a real float64 ndarray (or a torch tensor)",
           "backward": "a backward must return real float64 ndarrays, one gradient per input, each of its input's shape"}


def _call(stage: str, thunk: Callable[[], Any], case: Case, upstream=None):
    """Run the user's forward or backward; whatever it raises or exits with becomes a `raised`
    finding with its traceback -- a Counterexample, an Exception, so Hypothesis shrinks it like any
    other failure instead of ending (SystemExit) or aborting (KeyboardInterrupt) the search."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        try:
            return thunk()
        except (Counterexample, Undetermined):  # a subject's own verdict (a function pair's stub, random forward, mutated cache)
            raise
        except BadReturn as exc:  # a str, a dict, complex values: the op's return type breaks its contract
            _fail("contract", f"{stage} returned {exc.what}; {RETURNS[stage]}" + (f" ({exc.why})" if exc.why else ""),
                  case=case, upstream=upstream, stage=stage)
        except BaseException as exc:  # noqa: BLE001 -- sys.exit() in user code must not end gradlab
            if passes_through(exc):
                raise
            _fail("raised", f"{stage} {describe(exc)}", case=case, upstream=upstream, stage=stage, traceback=user_traceback(exc))


def _first_bad(a: np.ndarray) -> tuple[int, ...]:
    return tuple(int(i) for i in np.unravel_index(int(np.flatnonzero(~np.isfinite(a))[0]), a.shape))


def _check_forward(subject: Subject, case: Case, out: np.ndarray) -> np.ndarray:
    if out.size > memory.audit_max_output():  # a broadcast view costs nothing to return, 8 bytes an element to judge
        raise TargetError(f"{subject.target}: forward returned {out.size:,} elements (shape {out.shape}) for inputs of "
                          f"{sum(x.size for x in case.inputs.values()):,}; gradlab audit judges at most {memory.audit_max_output():,} "
                          f"output elements (~{memory._gib(memory.DEFAULT_LIMIT)}); audit it on smaller shapes")
    if out.dtype.kind not in "fiub" or out.dtype.kind == "f" and out.dtype.itemsize < 8:
        _fail("precision", f"forward returned {out.dtype} for float64 input; compute in the input's dtype (finite differences in float64 cannot judge a lower precision)", case=case, stage="forward")
    out = out.astype(np.float64)
    if subject.kind == "loss" and out.size != 1:
        _fail("contract", f"a loss's forward must return one number, got an array of shape {out.shape}", case=case, stage="forward")
    if not np.all(np.isfinite(out)):
        _undetermined_on_boundary(subject, case, "forward")
        idx = _first_bad(out)
        _fail("non-finite", f"forward returned {out[idx] if out.ndim else out} at index {idx} for an input inside the domain {_domain(subject)}",
              case=case, stage="forward", output=out)
    return out


def _undetermined_on_boundary(subject: Subject, case: Case, stage: str) -> None:
    """Not finite with an input exactly on a domain bound: the function itself may be undefined there."""
    for name, x in case.inputs.items():
        if subject.envelope.on_boundary(x).any():
            raise Undetermined(f"{stage} is not finite with {name} on a bound of the domain {_domain(subject)}")


def _domain(subject: Subject) -> str:
    env = subject.envelope
    if env.low == -np.inf and env.high == np.inf:
        return "(the op declares no `domain`; if it is undefined here, declare domain = (low, high))"
    return env.text() + (" (inferred)" if subject.domain_note else "")


def _check_grads(subject: Subject, case: Case, upstream, raw: dict) -> dict[str, np.ndarray]:
    if "__contract__" in raw:
        _fail("contract", raw["__contract__"], case=case, upstream=upstream, stage="backward")
    grads = {}
    for name, x in case.inputs.items():
        g = raw.get(name)
        if g is None:
            _fail("contract", f"backward returned no gradient for {name}", case=case, upstream=upstream, stage="backward")
        try:
            g = as_float_array(g)
        except BadReturn as exc:
            _fail("contract", f"backward returned {exc.what} as the gradient for {name}; expected a real float64 ndarray of {name}'s shape "
                  f"{x.shape}" + (f" ({exc.why})" if exc.why else ""), case=case, upstream=upstream, stage="backward")
        g = _shaped(subject, name, g, x, case, upstream)
        if g.dtype.kind == "f" and g.dtype.itemsize < 8:
            _fail("precision", f"backward returned {g.dtype} for {name} with float64 input; compute in the input's dtype", case=case, upstream=upstream, stage="backward")
        g = g.astype(np.float64)
        if not np.all(np.isfinite(g)):
            _undetermined_on_boundary(subject, case, "backward")
            idx = _first_bad(g)
            _fail("non-finite", f"backward returned {g[idx]} for {name} at index {idx}, for an input inside the domain {_domain(subject)}",
                  case=case, upstream=upstream, stage="backward", checks=[_partial(name, g)])
        grads[name] = g
    return grads


def _partial(name: str, g: np.ndarray) -> TensorCheck:
    nan = np.full(g.shape, np.nan)
    false = np.zeros(g.shape, bool)
    return TensorCheck(name, g, nan, nan, false, false, nan, ~np.isfinite(g))


RANDOM_REPEATS = 2  # extra forwards on the same input: a dropout's masks all agree with probability <= 1/4


def _check_random(subject: Subject, case: Case, out: np.ndarray) -> np.ndarray:
    """A forward that answers differently on the same input is random: its differences mean nothing
    (the stencil would see noise, or kinks everywhere). Without --reseed it is audited reseeded (AUTO_RESEED:
    a warning) and the forward's output on the case is returned again; random even so is the verdict,
    never a mismatch or a pass."""
    for _ in range(RANDOM_REPEATS):
        again = as_float_array(_call("forward", lambda: subject.forward(case.copy()), case))
        if again.shape == out.shape and np.array_equal(again.astype(np.float64), out, equal_nan=True):
            continue
        if subject.reseed is None:
            return _reseeded(subject, case)
        n = int(np.sum(again != out)) if again.shape == out.shape else out.size
        advice = ("even with np.random, random and torch reseeded before every call, so it draws from a generator gradlab does "
                  "not reseed (np.random.default_rng() without a seed, a Generator made at import, the clock): seed that one")
        _fail("random forward", f"{subject.name} gave different outputs for the same input ({n} of {out.size} elements differ): "
              f"its output is random, so no gradient can be checked; {advice}", case=case, stage="forward")
    return out


def _reseeded(subject: Subject, case: Case) -> np.ndarray:
    """Switch an unseeded random forward to reseeding (a warning) and return its output on the case, now one function."""
    subject.reseed = AUTO_RESEED
    subject.reseed_auto = True
    warn(subject, "reseeded", f"{subject.name} gave different outputs for the same input: it draws random numbers, so it was audited "
         f"with np.random, random and torch reseeded to {AUTO_RESEED} before every call (the same mask every time), as --reseed "
         "does; seed it to make it deterministic", stage="forward")
    out = _check_forward(subject, case, _call("forward", lambda: subject.forward(case.copy()), case))
    return _check_random(subject, case, out)


def _check_mutation(subject: Subject, case: Case, seen: Case, upstream, upstream_seen) -> None:
    for name, x in list(case.inputs.items()) + list(case.const.items()):
        if isinstance(subject, LayerSubject) and name in subject.keys:
            continue
        if not np.array_equal(x, seen.inputs.get(name, seen.const.get(name)), equal_nan=True):
            warn(subject, "in-place", f"the op wrote into its argument {name} in place", case=case, upstream=upstream)
    if upstream is not None and not np.array_equal(upstream, upstream_seen):
        warn(subject, "in-place", "backward wrote into grad_out in place", case=case, upstream=upstream, stage="backward")
    if isinstance(subject, LayerSubject):
        replaced = subject.params_replaced()
        if replaced:
            subject.reinstall()
            _fail("mutation", f"the layer replaced {', '.join(replaced)} with new arrays during forward/backward (an optimizer step "
                  "inside backward, like self.W = self.W - lr * dW?); backward must leave the parameters alone", case=case, upstream=upstream)
        changed = subject.params_changed(case)
        if changed:
            _fail("mutation", f"the layer changed params {', '.join(map(repr, changed))} during forward/backward (an update step inside backward?); backward must leave them alone", case=case, upstream=upstream)


def differentiate(f: Callable[[np.ndarray], float], x: np.ndarray):
    """Numeric df/dx with retries at smaller steps for elements whose stencil gave no finite value."""

    def safe(v):
        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                return f(v)
        except Exception:
            return np.nan  # a stencil point outside what forward accepts: that element is undetermined
        except BaseException as exc:  # noqa: BLE001 -- sys.exit() at a stencil point: a finding, not gradlab's end
            if passes_through(exc):
                raise
            raise _StencilRaised(exc) from None

    d = gradient_of(safe, x, method=METHOD, batched=False)
    value, error, kinks = d.value.copy(), d.error.copy(), d.kinks.copy()
    h = steps(x, DEFAULT_STEP[METHOD]).reshape(x.shape)
    bad = ~(np.isfinite(value) & np.isfinite(error))
    for step in RETRY_STEPS:
        if not bad.any():
            break
        r = gradient_of(safe, x, method=METHOD, step=step, batched=False)
        use = bad & np.isfinite(r.value) & np.isfinite(r.error)
        value[use], error[use], kinks[use] = r.value[use], r.error[use], r.kinks[use]
        h[use] = steps(x, step).reshape(x.shape)[use]
        bad &= ~use
    # The numeric engine floors F's rounding at eps |F|; a normalisation divides x - mean(x) by
    # sqrt(var + eps), so near a constant batch the quotients carry rounding amplified by 1/sigma.
    # Measure it where it shows: in one more quotient per element.
    error = error + 16 * measured_noise(safe, x, h, kinks | bad, value, error) / h
    return value, error, kinks & ~bad, bad


def measured_noise(f: Callable[[np.ndarray], float], x: np.ndarray, h: np.ndarray, skip: np.ndarray,
                   value: np.ndarray, error: np.ndarray) -> float:
    """F's rounding noise as the difference quotients see it, in units of F: the largest over the
    tensor's elements (off the kinks).

    Central differences see only the odd part of F(x + s h), and that is where normalisation's
    amplified rounding lands: on a constant batch, F(x + s h) - F(x - s h) is rounding of mean(x)
    divided by sqrt(eps), odd in s, and at s = 1 and 1/2 it can look like a slope, so neither
    Richardson's |D(h) - D(h/2)| nor a fourth difference of F sees it. One more quotient per
    element, at the off-grid step 3/4 h, does: for a smooth F it differs from Richardson's value
    R by 9/4 err at the most (the h^2 term both share; err = |D(h) - D(h/2)| / 3), so what lies
    beyond TRUNCATION err is noise -- of that element, where a few probes could miss the one
    constant group among many. The largest, times h, is the noise level every quotient divides by h.
    A few elements (the largest |x| among them) are also moved by NOISE_ULPS units in their last
    place: x + h is itself rounded, a bias no quotient can see."""
    flat, hf = x.reshape(-1), h.reshape(-1)
    vf, ef = value.reshape(-1), error.reshape(-1)
    candidates = np.flatnonzero(~skip.reshape(-1))
    if candidates.size == 0:
        return 0.0
    f0 = f(x)

    def at(i: int, offset: float) -> float:
        moved = flat.copy()
        moved[i] += offset
        return f(moved.reshape(x.shape))

    levels = []
    for i in candidates:
        d = (at(i, QUOTIENT_STEP * hf[i]) - at(i, -QUOTIENT_STEP * hf[i])) / (2 * QUOTIENT_STEP * hf[i])
        excess = abs(d - vf[i]) - TRUNCATION * ef[i]
        if np.isfinite(excess) and excess > 0:
            levels.append(float(excess) * hf[i])
    rng = np.random.default_rng(0)
    picked = set(rng.choice(candidates, size=min(ULP_PROBES, candidates.size), replace=False).tolist())
    picked.add(int(candidates[np.argmax(np.abs(flat[candidates]))]))  # rounding grows with |x|
    for i in sorted(picked):
        for k in (-NOISE_ULPS, NOISE_ULPS):
            level = abs(at(i, k * np.spacing(max(abs(flat[i]), abs(hf[i])))) - f0)
            if np.isfinite(level):
                levels.append(level)
    return float(max(levels, default=0.0))


def judge(name: str, backward: np.ndarray, value, error, kinks, undetermined, tol) -> TensorCheck:
    judged = ~kinks & ~undetermined
    diff = np.abs(backward - np.where(judged, value, 0.0))
    scale = float(np.max(np.abs(backward), initial=0.0))
    if judged.any():
        scale = max(scale, float(np.max(np.abs(value[judged]))))
    bound = tol["atol"] + tol["rtol"] * np.abs(value) + tol["err_factor"] * (error + tol["rounding"] * scale)
    mismatch = judged & ~(diff <= bound)
    return TensorCheck(name, backward, value, error, kinks, undetermined, bound, mismatch)


# --- directions first: a case is judged by a few random projections, elements only when one disagrees ---
#
# Differencing every element costs ~6 forwards each: a Python-loop conv or a sparsemax over a (3, 6, 8)
# input spends seconds per case on it. The backward's gradients g give the derivative of F along any
# direction v for free (g . v); differences of phi(t) = F(x + t v) give it numerically in ~6 forwards.
# PROJECTIONS random directions that all agree judge the case; any disagreement, kink, non-finite value or
# noisy estimate hands the case to the element-by-element judge above, so every failure is found, localised
# and reported exactly as before. A direction moves every element by +-[0.5, 1.5] of its own step scale
# (the numeric engine's max(|x|, rms, 1e-2)), with random signs: no element is left out, and errors of
# several elements cancel only on a set of measure zero. The bound is the elementwise rule summed as
# independent errors (rtol |g . v|_2, not the triangle sum), so a direction is at least as strict as the
# elements in all but the last factor of sqrt(n) of rtol's band; the fallback makes a strict screen free.
PROJECTIONS = 2  # random directions per case
PROJECTION_MIN_ELEMENTS = 3  # below this many elements, differencing each costs no more
PROJECTION_SPREAD = (0.5, 1.5)  # |v_i| in units of element i's step scale
PROJECTION_NOISY = 1e-3  # a direction whose numeric error reaches this share of |g . v|_2 (beyond rounding) is not conclusive
EPS = float(np.finfo(np.float64).eps)
# While Hypothesis searches and shrinks, a case whose direction disagrees DECISIVE times beyond what every element
# at its bound could add up to (the triangle sum) fails at once, unlocalised: shrinking a Python-loop conv replays
# hundreds of failing cases, each ~4 s element by element. search.run localises the shrunk case (examine again,
# deferral off), so the report is the elementwise one; reproduce() never defers.
DECISIVE = 10.0
DEFERRED = {"on": False}


def _case_seed(case: Case, upstream) -> int:
    """The same case always gets the same directions: Hypothesis replays a case and must see the same verdict."""
    import zlib

    crc = 0
    for x in [*case.inputs.values(), *([] if upstream is None else [upstream])]:
        crc = zlib.crc32(np.ascontiguousarray(x, dtype=np.float64).tobytes(), crc)
    return crc


def _direction_derivative(phi: Callable[[float], float], h: float) -> tuple[float, float, bool, float]:
    """(d phi / dt at 0, its error estimate, kink, phi(0)) by Richardson on the stencil the elements get, plus the
    off-grid quotient at 3/4 h that measures rounding noise (see measured_noise)."""
    f0 = phi(0.0)
    hs = np.array([h])
    value, error, kink = differences(lambda off: np.array([phi(float(o)) for o in off]), hs, f0, METHOD)
    value, error = float(value[0]), float(error[0])
    d = (phi(QUOTIENT_STEP * h) - phi(-QUOTIENT_STEP * h)) / (2 * QUOTIENT_STEP * h)
    excess = abs(d - value) - TRUNCATION * error
    if np.isfinite(excess) and excess > 0:
        error += 16 * excess
    return value, error, bool(kink[0]), float(f0)


def projected(subject: Subject, case: Case, upstream, grads: dict[str, np.ndarray], tol: dict, only: str | None = None,
              info: dict | None = None) -> list[TensorCheck] | None:
    """The case's checks when PROJECTIONS random directions agree with the backward; None when the elements
    must be differenced one by one (a disagreement, a kink, a stencil leaving the domain, noise, a surrogate).
    `only`: directions that move that input alone (after the joint directions disagreed: the inputs that still
    agree are not differenced element by element -- a wrong dW leaves a conv's x to its directions)."""
    names = list(case.inputs) if only is None else [only]
    if subject.surrogate is not None or not names or sum(case.inputs[n].size for n in names) < PROJECTION_MIN_ELEMENTS:
        return None
    rng = np.random.default_rng([_case_seed(case, upstream), 0 if only is None else 1 + list(case.inputs).index(only)])
    scale = {n: steps(x, 1.0).reshape(x.shape) if n in names else np.zeros(x.shape) for n, x in case.inputs.items()}
    first = names[0]

    def phi(t: float, v: dict[str, np.ndarray]) -> float:
        moved = {n: x + t * v[n] for n, x in case.inputs.items()}
        return subject.scalar(Case(moved, case.const, case.hyper), upstream, first, moved[first])

    def safe(t: float, v) -> float:
        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                return phi(t, v)
        except Exception:
            return np.nan  # the elementwise judge finds out which element, and says so
        except BaseException as exc:  # noqa: BLE001
            if passes_through(exc):
                raise
            return np.nan

    rounding = 0.0
    for n in names:  # a correct backward's rounding, per unit of each tensor's largest element (as judge() has it)
        rounding += tol["rounding"] * float(np.max(np.abs(grads[n]), initial=0.0)) * float(np.sum(scale[n]) * PROJECTION_SPREAD[1])
    h = DEFAULT_STEP[METHOD]
    try:
        with np.errstate(all="ignore"):
            return _agree(subject, case, upstream, grads, tol, names, scale, rng, safe, rounding, h, {} if info is None else info)
    finally:
        if isinstance(subject, LayerSubject):
            subject._write(case)


def _agree(subject, case, upstream, grads, tol, names, scale, rng, safe, rounding, h, info: dict) -> list[TensorCheck] | None:
    """projected()'s directions, one after the other; None at the first that is not a clear agreement.
    info['decisive']: the direction disagrees by DECISIVE times more than every element at its bound could add up to."""
    for _ in range(PROJECTIONS):
        v = {n: scale[n] * rng.uniform(*PROJECTION_SPREAD, size=x.shape) * rng.choice((-1.0, 1.0), size=x.shape) for n, x in case.inputs.items()}
        value, error, kink, f0 = _direction_derivative(lambda t: safe(t, v), h)
        # x + t v is itself rounded: move every element by NOISE_ULPS units in its last place, along v's signs
        ulps = {n: NOISE_ULPS * np.sign(v[n]) * np.spacing(np.maximum(np.abs(x), np.abs(h * v[n]))) for n, x in case.inputs.items()}
        level = max(abs(safe(1.0, ulps) - f0), abs(safe(-1.0, ulps) - f0))
        error += 16 * level / h
        exact = float(sum(np.sum(grads[n] * v[n]) for n in names))
        spread = float(np.sqrt(sum(np.sum((grads[n] * v[n]) ** 2) for n in names)))
        size = float(np.sqrt(sum(np.sum(v[n] ** 2) for n in names)))
        bound = tol["atol"] * size + tol["rtol"] * spread + tol["err_factor"] * (error + rounding)
        floor = tol["atol"] * size + 16 * EPS * abs(f0) / h  # what rounding alone leaves in any estimate
        if kink or not (np.isfinite(value) and np.isfinite(error)) or error > PROJECTION_NOISY * spread + 100 * floor:
            return None
        if not abs(exact - value) <= bound:
            worst = sum(float(np.sum(np.abs(v[n]) * (tol["atol"] + tol["rtol"] * np.abs(grads[n])))) for n in names)
            info["decisive"] = bool(abs(exact - value) > DECISIVE * (worst + tol["err_factor"] * (error + rounding)))
            return None
    out = []
    for n in names:
        g, nan, false = grads[n], np.full(grads[n].shape, np.nan), np.zeros(grads[n].shape, bool)
        out.append(TensorCheck(n, g, nan, nan, false, false, nan, false.copy(), projections=PROJECTIONS))
    return out


def examine(subject: Subject, case: Case, draw_upstream: Callable[[tuple], np.ndarray] | None, tol: dict) -> list[TensorCheck]:
    """Check one case; raise a Counterexample subclass when the op is wrong on it."""
    _call("forward", lambda: subject.settle(case), case)
    seen = case.copy()
    out = _check_forward(subject, case, _call("forward", lambda: subject.forward(seen), case))
    out = _check_random(subject, case, out)
    upstream = draw_upstream(out.shape) if subject.needs_upstream and draw_upstream else None
    if subject.needs_upstream and upstream is None:
        upstream = np.ones(out.shape)
    upstream_seen = None if upstream is None else upstream.copy()
    raw = _call("backward", lambda: subject.backward(seen, upstream_seen), case, upstream)
    _check_mutation(subject, case, seen, upstream, upstream_seen)
    grads = _check_grads(subject, case, upstream, raw)
    surrogate = subject.surrogate
    info: dict = {}
    checks = projected(subject, case, upstream, grads, tol, info=info)  # a few directions; element by element only when one disagrees
    if checks is None and info.get("decisive") and DEFERRED["on"]:
        try:
            _fail("mismatch", "backward disagrees with differences of forward along a random direction", case=case, upstream=upstream, stage="backward")
        except Mismatch as exc:
            exc.finding.deferred = True  # search.run localises it to elements once the case is shrunk
            raise
    if checks is None:
        checks = []
        for name, x in case.inputs.items():
            if surrogate is not None and not surrogate.needs_numeric:
                none = np.zeros(x.shape, bool)
                value, error = surrogate.intended(name, np.zeros(x.shape), np.zeros(x.shape), case.inputs, upstream)
                checks.append(judge(name, grads[name], value, error, none, none, tol))
                continue
            alone = projected(subject, case, upstream, grads, tol, only=name) if len(case.inputs) > 1 else None
            if alone is not None:  # this input's own directions agree: the disagreement lies elsewhere
                checks += alone
                continue
            try:
                value, error, kinks, undetermined = differentiate(lambda v, name=name: subject.scalar(case, upstream, name, v), x)
            except _StencilRaised as exc:
                _fail("raised", f"forward {exc} at a point of the finite-difference stencil next to this {name}",
                      case=case, upstream=upstream, stage="forward", traceback=user_traceback(exc.exc))
            if surrogate is not None:  # the backward is meant to give this function of the true gradient
                value, error = surrogate.intended(name, value, error, case.inputs, upstream)
            checks.append(judge(name, grads[name], value, error, kinks, undetermined, tol))
    _hidden_ties(subject, case, upstream, checks)
    if isinstance(subject, LayerSubject):
        subject._write(case)  # the differences moved the parameters; leave them at the case's values
    bad = [c for c in checks if c.mismatch.any()]
    if bad:
        n = sum(int(c.mismatch.sum()) for c in bad)
        total = sum(c.judged for c in checks)
        names = ", ".join(f"d/d{c.name}" for c in bad)
        what = "differences of forward" if surrogate is None else f"the declared surrogate {surrogate.text()} of differences of forward"
        _fail("mismatch", f"backward disagrees with {what} on {n} of {total} judged elements ({names}){subject.mismatch_hint}", case=case, upstream=upstream, stage="backward", checks=checks)
    return checks
