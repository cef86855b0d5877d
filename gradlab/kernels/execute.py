"""One case, three runs: the reference in --ref-dtype, the reference in the low dtype, the candidate in the
low dtype -- the same inputs (rounded to the low dtype first), the same parameters, the same cotangent --
then the rule on every output and every gradient (each floating input, each module parameter)."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import torch

from . import inputs as I
from .targets import Target, call, float_params, instance
from ..userops.loading import TargetError
from ..usercode import user_code

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32, "float64": torch.float64}


@dataclass(frozen=True)
class Config:
    dtype: torch.dtype = torch.bfloat16
    ref_dtype: torch.dtype = torch.float64
    device: str = "cpu"
    factor: float = 2.0
    double_backward: bool = False  # also judge second-order products (secondorder.py)
    forward_ad: bool = False  # also judge JVPs (forwardad.py)


@dataclass
class Pair:
    candidate: Target
    reference: Target
    specs: tuple  # declared InputSpecs
    config: Config

    @property
    def param_shapes(self) -> dict[str, tuple]:
        if self.candidate.kind != "module":
            return {}
        return {n: tuple(p.shape) for n, p in float_params(self.candidate.obj).items()}


@contextmanager
def no_tf32() -> Iterator[None]:
    """The reference runs without TF32 (a float32 matmul on Ampere+ would otherwise round to 10 bits)."""
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@dataclass
class Run:
    outputs: list[torch.Tensor]
    grads: dict[str, torch.Tensor]  # "x", "weight" -> gradient


@dataclass
class Prepared:
    """One forward in one dtype: what it differentiates against (inputs and parameters) and its floating outputs."""

    wrt: dict[str, torch.Tensor]
    floating: list[torch.Tensor]


def prepare(pair: Pair, target: Target, dtype: torch.dtype, case_inputs: dict, params: dict, *, track: bool = True) -> Prepared:
    """Cast the case to `dtype`, build the callee with the shared parameters and run the forward once."""
    device = pair.config.device
    xs = {k: (v.to(dtype).detach().requires_grad_(track) if v.is_floating_point() else v) for k, v in case_inputs.items()}
    callee = instance(target, dtype, device, {k: v.to(dtype) for k, v in params.items()})
    extra: dict[str, torch.Tensor] = {}
    if target.kind == "module":
        wrt_params = float_params(callee)
    elif params:  # a reference function takes the candidate module's parameters by name
        extra = {k: v.to(dtype).detach().requires_grad_(track) for k, v in params.items()}
        wrt_params = extra
    else:
        wrt_params = {}
    outs = call(target, callee, xs, extra)
    floating = [o for o in outs if o.is_floating_point()]
    if not floating:
        raise TargetError(f"{target.role} {target.spec}: returned no floating tensor to differentiate")
    wrt = {k: v for k, v in xs.items() if v.is_floating_point()}
    wrt.update(wrt_params)
    return Prepared(wrt, floating)


def check_cotangents(target: Target, floating: list, cotangents: list) -> None:
    if len(cotangents) != len(floating):
        raise TargetError(f"{target.role} {target.spec}: returned {len(floating)} floating output(s), the reference {len(cotangents)}")
    for i, (o, c) in enumerate(zip(floating, cotangents)):
        if tuple(o.shape) != tuple(c.shape):
            raise TargetError(f"{target.role} {target.spec}: output {i} has shape {tuple(o.shape)}, the reference's {tuple(c.shape)}")


def live_outputs(target: Target, prep: Prepared, cotangents: list) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(output, cotangent in the output's dtype) for the outputs that carry a graph; none at all is a contract error."""
    live = [(o, c.to(dtype=o.dtype, device=o.device)) for o, c in zip(prep.floating, cotangents) if o.requires_grad]
    if not live and prep.wrt:
        raise TargetError(f"{target.role} {target.spec}: no output requires grad (does it detach, or run under no_grad?)")
    return live


def _bounded_outputs(target: Target, floating: list) -> None:
    """An output is cheap to return (an expand()ed view), 8 bytes an element to judge: refuse what would not fit."""
    from .. import memory

    most = memory.audit_max_output()
    n = sum(int(o.numel()) for o in floating)
    if n > most:
        shapes = ", ".join(str(tuple(o.shape)) for o in floating[:3])
        raise TargetError(f"{target.role} {target.spec}: returned {n:,} output elements ({shapes}); gradlab judges at most {most:,} "
                          f"(~{memory._gib(memory.DEFAULT_LIMIT)} of float64 copies); declare smaller sizes (--shapes, or example_inputs())")


def forward_backward(pair: Pair, target: Target, dtype: torch.dtype, case_inputs: dict, params: dict, cotangents: list | None, seed: int) -> Run:
    """Run `target` in `dtype`: forward, then autograd.grad against the shared cotangents (drawn here when None)."""
    prep = prepare(pair, target, dtype, case_inputs, params)
    _bounded_outputs(target, prep.floating)
    if cotangents is None:  # drawn in float64, rounded to the low dtype: all three runs start from the same values
        cotangents = [I.cotangent(o.shape, seed, i).to(pair.config.dtype).double() for i, o in enumerate(prep.floating)]
    check_cotangents(target, prep.floating, cotangents)
    live = live_outputs(target, prep, cotangents)
    grads: dict[str, torch.Tensor] = {k: torch.zeros_like(v) for k, v in prep.wrt.items()}
    if live:
        with user_code(f"{target.role} {target.spec}: backward"):
            got = torch.autograd.grad([o for o, _ in live], list(prep.wrt.values()), [c for _, c in live], allow_unused=True)
        for k, g in zip(prep.wrt, got):
            if g is not None:
                grads[k] = g
    run = Run([o.detach() for o in prep.floating], {k: g.detach() for k, g in grads.items()})
    run.cotangents = cotangents  # type: ignore[attr-defined]
    return run
