"""One drawn case, judged whole: the three first-order runs (execute.py) and, when asked, the second-order
(secondorder.py) and forward-mode (forwardad.py) checks on the same inputs. Above the three, so none imports another."""

from __future__ import annotations

from . import forwardad, secondorder
from . import inputs as I
from .execute import Pair, forward_backward, no_tf32
from .rule import judge


def run_case(pair: Pair, case: I.Case) -> list:
    """The three runs on one case and the verdict on every output and gradient (RuleChecks; with
    --double-backward in float64 also projection.Verdicts against differences)."""
    cfg = pair.config
    low = I.build(case, cfg.dtype, cfg.device)
    params64 = I.parameter_values(pair.param_shapes, case.seed)
    params = {k: v.to(cfg.dtype).to(cfg.device) for k, v in params64.items()}  # everyone starts from the rounded values
    with no_tf32():
        ref = forward_backward(pair, pair.reference, cfg.ref_dtype, low, params, None, case.seed)
    cot = ref.cotangents  # type: ignore[attr-defined]
    ref_low = forward_backward(pair, pair.reference, cfg.dtype, low, params, cot, case.seed)
    cand = forward_backward(pair, pair.candidate, cfg.dtype, low, params, cot, case.seed)
    checks = []
    for i, (c, r, rl) in enumerate(zip(cand.outputs, ref.outputs, ref_low.outputs)):
        name = "output" if len(ref.outputs) == 1 else f"output[{i}]"
        checks.append(judge(name, c, r, rl, low_dtype=cfg.dtype, factor=cfg.factor))
    for k in ref.grads:
        checks.append(judge(f"grad {k}", cand.grads[k], ref.grads[k], ref_low.grads[k], low_dtype=cfg.dtype, factor=cfg.factor))
    if cfg.double_backward:
        checks += secondorder.checks(pair, case, low, params, cot)
    if cfg.forward_ad:
        checks += forwardad.checks(pair, case, low, params)
    return checks
