"""--forward-ad: the candidate's Jacobian-vector products against the reference's, by the same rule.

One random tangent per floating input (drawn in float64, rounded to the low dtype, shared by the three runs);
each run makes dual tensors (torch.autograd.forward_ad), runs its forward and unpacks the output tangents
("jvp output"). Parameters carry no tangent. A torch.autograd.Function candidate without a `jvp`
staticmethod, or whose jvp raises torch's "not implemented" error, is reported as not supported.
"""

from __future__ import annotations

import torch
import torch.autograd.forward_ad as fwAD

from . import inputs as I
from .execute import Pair, no_tf32
from .rule import RuleCheck, judge
from .targets import Target, call, instance
from ..userops.loading import TargetError
from ..usercode import UserCodeError, describe

NO_FORWARD_AD = ("jvp", "forward AD", "forward-mode", "not implemented")


def tangents(case_inputs: dict, seed: int, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(52_361 * (seed + 1))
    return {k: torch.randn(tuple(t.shape), generator=gen, dtype=torch.float64).to(dtype).double()
            for k, t in case_inputs.items() if t.is_floating_point()}


def defines_jvp(target: Target) -> bool:
    return target.kind != "autograd" or target.obj.jvp is not torch.autograd.Function.jvp


def jvp(pair: Pair, target: Target, dtype: torch.dtype, case_inputs: dict, params: dict, t: dict) -> list[torch.Tensor] | str:
    """The output tangents of one run, or why the target has none."""
    device = pair.config.device
    callee = instance(target, dtype, device, {k: v.to(dtype) for k, v in params.items()})
    extra = {} if target.kind == "module" else {k: v.to(dtype) for k, v in params.items()}
    with fwAD.dual_level():
        xs = {k: (fwAD.make_dual(v.to(dtype), t[k].to(dtype=dtype, device=v.device)) if k in t else v) for k, v in case_inputs.items()}
        try:
            outs = call(target, callee, xs, extra)
        except UserCodeError as exc:
            cause = exc.__context__
            if isinstance(cause, (RuntimeError, NotImplementedError)) and any(m in str(cause) for m in NO_FORWARD_AD):
                return f"forward-mode AD {describe(cause)}"
            raise
        floating = [o for o in outs if o.is_floating_point()]
        out = []
        for o in floating:
            tangent = fwAD.unpack_dual(o).tangent
            out.append(torch.zeros_like(o).detach() if tangent is None else tangent.detach().clone())
    return out


def checks(pair: Pair, case: I.Case, low: dict, params: dict) -> list[RuleCheck]:
    cfg = pair.config
    if not defines_jvp(pair.candidate):
        return [RuleCheck("jvp", (), 0.0, 0.0, 0.0, cfg.factor, unsupported="the Function defines no jvp staticmethod")]
    t = tangents(low, case.seed, cfg.dtype)
    with no_tf32():
        ref = jvp(pair, pair.reference, cfg.ref_dtype, low, params, t)
    if isinstance(ref, str):
        raise TargetError(f"reference {pair.reference.spec}: {ref}; --forward-ad needs a reference that supports forward-mode AD")
    ref_low = jvp(pair, pair.reference, cfg.dtype, low, params, t)
    cand = jvp(pair, pair.candidate, cfg.dtype, low, params, t)
    if isinstance(ref_low, str):
        raise TargetError(f"reference {pair.reference.spec}: in {str(cfg.dtype).replace('torch.', '')}: {ref_low}")
    if isinstance(cand, str):
        return [RuleCheck("jvp", (), 0.0, 0.0, 0.0, cfg.factor, unsupported=cand)]
    if len(cand) != len(ref):
        raise TargetError(f"candidate {pair.candidate.spec}: returned {len(cand)} floating output(s), the reference {len(ref)}")
    rows = []
    for i, (c, r, rl) in enumerate(zip(cand, ref, ref_low)):
        name = "jvp output" if len(ref) == 1 else f"jvp output[{i}]"
        rows.append(judge(name, c, r, rl, low_dtype=cfg.dtype, factor=cfg.factor))
    return rows
