"""False alarms of `gradlab audit` on correct normalisation layers at (near-)constant batches.

    .venv/bin/python benchmarks/audit_false_alarms.py [--seeds 200] [--ops batchnorm_forward,...]

For each seed and each correct course layer (tests/audit_targets/course/layers.py), one case is
drawn where normalisation amplifies rounding most: a constant batch (every element equal; the
value from the strategies' regimes: 0, simple numbers, tiny, saturated), or a constant batch plus
noise of 1e-12 .. 1e-6 relative; half the cases with random gamma, beta and grad_out, half with
gamma 1, beta 0 and grad_out all ones (where shrinking lands, and where the true dx is exactly 0). Each case goes through the
audit's judge (gradlab.audit.judge.examine) exactly as the search would send it. Prints, per op,
how many cases were judged wrong (false alarms: every op here is correct) and the worst ratio
|backward - numeric| / bound seen. The wrong twins (wrong.py) are run on the same cases: they
must keep failing on every case where their gradient differs from the right one
(the "wrong twin caught" column: caught / cases where the slip shows).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gradlab.audit import prepare  # noqa: E402
from gradlab.audit.judge import Counterexample, Undetermined, examine, tolerance  # noqa: E402
from gradlab.audit.strategies import Case  # noqa: E402

COURSE = ROOT / "tests" / "audit_targets" / "course"
OPS = ("batchnorm_forward", "batchnorm_forward:batchnorm_backward_alt", "layernorm_forward",
       "spatial_batchnorm_forward", "spatial_groupnorm_forward")
VALUES = (0.0, 1.0, -1.0, 0.5, 2.0, -3.0, 1e-9, -1e-6, 1e-3, 12.5, -30.0, 29.999, 7.1, -0.3)


def draw_case(subject, rng: np.random.Generator) -> tuple[Case, np.ndarray]:
    fam = subject.pair.family
    n = int(rng.integers(2, 5))
    if fam == "norm":
        shape = (n, int(rng.integers(1, 6)))
        pshape = (shape[1],)
    else:
        g = int(rng.integers(1, 4))
        c = g * int(rng.integers(1, 3)) if fam == "groupnorm" else int(rng.integers(1, 4))
        shape = (n, c, int(rng.integers(1, 4)), int(rng.integers(1, 4)))
        pshape = (1, c, 1, 1) if fam == "groupnorm" else (c,)
    simple = rng.random() < 0.5  # what shrinking lands on: gamma 1, beta 0, grad_out all ones (true dx exactly 0)
    value = float(rng.choice(VALUES))
    x = np.full(shape, value)
    if rng.random() < 0.5:
        x = x + rng.normal(size=shape) * max(abs(value), 1.0) * 10.0 ** rng.uniform(-12, -6)
    inputs = {"x": x}
    hyper = {}
    for name, role in subject.pair.args:
        if role == "array" and name != "x":
            inputs[name] = np.full(pshape, 1.0 if name == "gamma" else 0.0) if simple else rng.uniform(-3, 3, size=pshape)
        elif role == "hyper":
            hyper[name] = {"mode": "train", "eps": 1e-5} if name == "bn_param" else {"eps": 1e-5}
        elif role == "groups":
            hyper[name] = g
    upstream = np.ones(shape) if simple else rng.uniform(-4, 4, size=shape)
    return Case(inputs, {}, hyper), upstream


def judge(subject, case: Case, upstream: np.ndarray, tol: dict) -> tuple[bool, float]:
    """(passed, worst |backward - numeric| / bound)."""
    try:
        checks = examine(subject, case, lambda shape: upstream, tol)
    except Counterexample as exc:
        checks = exc.finding.checks
        if exc.finding.kind != "mismatch":
            raise
        return False, max(float(np.max(c.abs_err / c.bound, initial=0.0)) for c in checks)
    except Undetermined:
        return True, 0.0
    return True, max(float(np.max(np.where(c.kinks | c.undetermined, 0.0, c.abs_err / c.bound), initial=0.0)) for c in checks)


def differ(right, wrong, case: Case, upstream: np.ndarray) -> bool:
    """The two backwards give different gradients on this case (by more than 1e-6 relative)."""
    a, b = right.backward(case.copy(), upstream), wrong.backward(case.copy(), upstream)
    return any(not np.allclose(np.asarray(a[k]), np.asarray(b[k]), rtol=1e-6, atol=1e-9) for k in a)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=200)
    ap.add_argument("--ops", default=",".join(OPS))
    args = ap.parse_args()
    tol = tolerance()
    print(f"{'op':<56} {'false alarms':>12} {'worst ratio':>11} {'wrong twin caught':>17}  seconds")
    for spec in args.ops.split(","):
        name, _, backward = spec.partition(":")
        right = prepare(f"{COURSE / 'layers.py'}:{name}", backward=backward or None)
        wrong = prepare(f"{COURSE / 'wrong.py'}:{name}", backward=backward or None)
        t0 = time.perf_counter()
        alarms, worst, caught, degenerate = 0, 0.0, 0, 0
        for seed in range(args.seeds):
            case, upstream = draw_case(right, np.random.default_rng(seed))
            ok, ratio = judge(right, case, upstream, tol)
            alarms += not ok
            worst = max(worst, ratio)
            if differ(right, wrong, case, upstream):  # the wrong twin's slip shows on this case
                wrong_ok, _ = judge(wrong, case, upstream, tol)
                caught += not wrong_ok
            else:
                degenerate += 1
        label = right.pair.label
        shown = args.seeds - degenerate
        print(f"{label:<56} {alarms:>5} / {args.seeds:<5} {worst:>11.3g} {caught:>9} / {shown:<5}  {time.perf_counter() - t0:.1f}")


if __name__ == "__main__":
    main()
