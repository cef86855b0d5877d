"""--double-backward: second-order products, the candidate's against the reference's.

For the case's cotangent c and one random direction v per differentiated tensor (drawn in float64, rounded to
the low dtype, shared by all runs), each run computes its first-order gradients g = J^T c with create_graph,
then h_k = d<g, v>/d theta_k for every input and parameter theta_k (a Hessian-vector product of <out, c>,
mixed with the cotangent's own derivative). The three runs (reference in --ref-dtype, reference and
candidate in the low dtype) are judged by the same rule as the first order ("hvp x", "hvp weight").

A candidate whose backward cannot be differentiated -- @once_differentiable, results computed under
no_grad or from detached tensors, or gradients that do not depend on theta_k at all through autograd
(a backward built from intermediates saved in forward) -- where the reference's h_k is not zero, or whose
backward raises when differentiated, is reported as not supported, not judged and not passed. Where the
reference's h_k is zero (a linear op: a gather's gradient does not depend on the table) an unconnected
h_k is zero and judged as such.

In float64 (--dtype float64) h_k is also checked against differences of the candidate's own first-order
gradient along v (like torch's gradgradcheck, but per element or by projections with bisection, so the
wrong element is named): see projection.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from . import inputs as I
from . import projection
from .execute import Pair, check_cotangents, live_outputs, no_tf32, prepare
from .rule import RuleCheck, judge
from .targets import Target
from ..userops.loading import TargetError
from ..usercode import UserCodeError, describe, user_code

NOT_DIFFERENTIABLE = ("once_differentiable", "does not require grad", "not implemented", "does not have a grad_fn")


DISCONNECTED = ("its gradients do not depend on {k} through autograd (a backward built from intermediates saved in forward, "
                "or no_grad math)")


@dataclass
class Second:
    hvps: dict[str, torch.Tensor | None] = field(default_factory=dict)  # None: not connected to that tensor (zero if linear)
    unsupported: str = ""  # differentiating the backward raised: why
    disconnected: str = DISCONNECTED  # why an h_k is None, with {k}


def directions(shapes: dict[str, tuple], seed: int, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """v: one float64 direction per differentiated tensor, rounded to the low dtype like the inputs."""
    gen = torch.Generator().manual_seed(31_337 * (seed + 1))
    return {k: torch.randn(s, generator=gen, dtype=torch.float64).to(dtype).double() for k, s in shapes.items()}


def _first_order(target: Target, prep, cotangents: list, create_graph: bool) -> list[torch.Tensor | None]:
    live = live_outputs(target, prep, cotangents)
    if not live:
        return [None] * len(prep.wrt)
    with user_code(f"{target.role} {target.spec}: backward"):
        return list(torch.autograd.grad([o for o, _ in live], list(prep.wrt.values()), [c for _, c in live],
                                        allow_unused=True, create_graph=create_graph))


def second_order(pair: Pair, target: Target, dtype: torch.dtype, case_inputs: dict, params: dict, cotangents: list, v: dict) -> Second:
    """h_k = d<g, v>/d theta_k for one target in one dtype."""
    prep = prepare(pair, target, dtype, case_inputs, params)
    check_cotangents(target, prep.floating, cotangents)
    first = _first_order(target, prep, cotangents, create_graph=True)
    terms = [(g * v[k].to(dtype=g.dtype, device=g.device)).sum() for k, g in zip(prep.wrt, first) if g is not None and g.requires_grad]
    if not terms:  # a linear op's gradients do not depend on its inputs either: None, judged against the reference
        return Second(dict.fromkeys(prep.wrt), disconnected=f"its backward's results do not require grad ({_why_not(target)})")
    try:
        with user_code(f"{target.role} {target.spec}: double backward"):
            got = torch.autograd.grad(sum(terms), list(prep.wrt.values()), allow_unused=True)
    except UserCodeError as exc:
        cause = exc.__context__
        if isinstance(cause, (RuntimeError, NotImplementedError)) and any(m in str(cause) for m in NOT_DIFFERENTIABLE):
            return Second(unsupported=f"differentiating its backward {describe(cause)}")
        raise
    return Second({k: None if h is None else h.detach() for k, h in zip(prep.wrt, got)})


def _why_not(target: Target) -> str:
    """Name @once_differentiable when that is the cause (it runs the backward under no_grad)."""
    backward = getattr(target.obj, "backward", None) if target.kind == "autograd" else None
    code = getattr(backward, "__code__", None)
    if backward is not None and hasattr(backward, "__wrapped__") and code is not None and code.co_filename.replace("\\", "/").endswith("torch/autograd/function.py"):
        return "its backward is marked @once_differentiable"
    return "@once_differentiable, torch.no_grad(), detached tensors, or only intermediates saved in forward"


def _unsupported_row(name: str, reason: str, factor: float) -> RuleCheck:
    return RuleCheck(name, (), 0.0, 0.0, 0.0, factor, unsupported=reason)


def checks(pair: Pair, case: I.Case, low: dict, params: dict, cotangents: list) -> list:
    """The rule on every h_k (and, in float64, the differences); rows the candidate cannot produce are marked unsupported."""
    cfg = pair.config
    shapes = {k: tuple(t.shape) for k, t in low.items() if t.is_floating_point()}
    shapes.update({k: tuple(t.shape) for k, t in params.items()})
    v = directions(shapes, case.seed, cfg.dtype)
    with no_tf32():
        ref = second_order(pair, pair.reference, cfg.ref_dtype, low, params, cotangents, v)
    if ref.unsupported:
        raise TargetError(f"reference {pair.reference.spec}: cannot be differentiated twice: {ref.unsupported}; --double-backward needs a twice-differentiable reference")
    ref_low = second_order(pair, pair.reference, cfg.dtype, low, params, cotangents, v)
    if ref_low.unsupported:  # without it the bound would be the whole of max|ref|: refuse rather than pass anything
        raise TargetError(f"reference {pair.reference.spec}: cannot be differentiated twice in {str(cfg.dtype).replace('torch.', '')}: "
                          f"{ref_low.unsupported}")
    cand = second_order(pair, pair.candidate, cfg.dtype, low, params, cotangents, v)
    if cand.unsupported:
        return [_unsupported_row("hvp", cand.unsupported, cfg.factor)]
    rows: list = []
    for k, r in ref.hvps.items():
        r = r if r is not None else torch.zeros(shapes[k], dtype=cfg.ref_dtype)
        rl = ref_low.hvps.get(k)
        rl = rl if rl is not None else torch.zeros_like(r)
        c = cand.hvps.get(k)
        if c is None:
            as_zero = judge(f"hvp {k}", torch.zeros_like(r), r, rl, low_dtype=cfg.dtype, factor=cfg.factor)
            if not as_zero.passed:
                reason = cand.disconnected.format(k=k)
                rows.append(_unsupported_row(f"hvp {k}", f"{reason}, but the reference's second derivative is not zero", cfg.factor))
                continue
            c = torch.zeros_like(r)
        rows.append(judge(f"hvp {k}", c, r, rl, low_dtype=cfg.dtype, factor=cfg.factor))
    if cfg.dtype == torch.float64:
        rows += differences(pair, case, low, params, cotangents, v, cand)
    return rows


def differences(pair: Pair, case: I.Case, low: dict, params: dict, cotangents: list, v: dict, cand: Second) -> list[projection.Verdict]:
    """float64: h_k against differences of phi(theta_k) = <the candidate's first-order gradient, v>, theta_k moved alone."""
    from ..audit.judge import tolerance

    base, base_params = dict(low), dict(params)
    verdicts = []
    for k, h in cand.hvps.items():
        if h is None:
            continue
        is_input = k in base
        theta = (base[k] if is_input else base_params[k]).detach().cpu().double().numpy()

        def phi(x: np.ndarray, k=k, is_input=is_input) -> float:
            moved = torch.as_tensor(np.real(x), dtype=torch.float64, device=pair.config.device)
            xs = dict(base, **{k: moved}) if is_input else base
            ps = base_params if is_input else dict(base_params, **{k: moved})
            prep = prepare(pair, pair.candidate, torch.float64, xs, ps)
            first = _first_order(pair.candidate, prep, cotangents, create_graph=False)
            return float(sum(float((g.double() * v[name].to(g.device)).sum()) for name, g in zip(prep.wrt, first) if g is not None))

        verdicts.append(projection.judge(f"hvp {k} vs differences", phi, theta, h.cpu().double().numpy(), method="richardson",
                                         tol=tolerance(), seed=case.seed))
    return verdicts
