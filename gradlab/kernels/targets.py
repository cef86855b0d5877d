"""The candidate and the reference: what they are, how to build them, how to call them.

Each is loaded with gradlab.userops.loading (`file.py:Name` or `package.module:Name`, guarded imports,
--no-code) and is one of
  - a torch.autograd.Function subclass: called as `.apply(*inputs)` in the declared order;
  - an nn.Module class (instantiated with no arguments, or with --init's keyword arguments) or instance;
  - a plain function of tensors: called with the inputs by name when its signature takes those names,
    else positionally in the declared order.
A module candidate's parameters are the parameters of the comparison: a reference module gets them by
name (load_state_dict), a reference function gets them as keyword arguments ('layers.0.weight' -> layers_0_weight).
"""

from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass
from typing import Any

import torch

from ..userops.loading import TargetError, inspecting, is_torch_function, load_raw
from ..usercode import UserCodeError, user_code


@dataclass
class Target:
    spec: str  # as the user wrote it
    role: str  # "candidate" or "reference"
    kind: str  # "autograd", "module", "function"
    obj: Any  # the Function class, the module instance (float64 master copy), or the function

    @property
    def name(self) -> str:
        return self.spec.rpartition(":")[2]


def load(spec: str, role: str, init: dict | None = None) -> Target:
    """Load one side of the comparison; a target that is none of the three kinds is a TargetError."""
    with inspecting(spec):
        return _load(spec, role, init)


def _load(spec: str, role: str, init: dict | None) -> Target:
    raw = load_raw(spec)
    if is_torch_function(raw):
        return Target(spec, role, "autograd", raw)
    if isinstance(raw, type) and issubclass(raw, torch.nn.Module):
        try:
            with user_code(f"{role} {spec}: {raw.__name__}(**init)" if init else f"{role} {spec}: {raw.__name__}()"):
                module = raw(**(init or {}))
        except UserCodeError as exc:
            if isinstance(exc.__context__, TypeError) and "argument" in str(exc) and not init:
                raise TargetError(f"{spec}: cannot create {raw.__name__}() with no arguments; pass them with --init '{{\"name\": value}}'") from None
            raise TargetError(str(exc)) from None
        return Target(spec, role, "module", module)
    if isinstance(raw, torch.nn.Module):
        return Target(spec, role, "module", copy.deepcopy(raw))
    if callable(raw) and not isinstance(raw, type):
        return Target(spec, role, "function", raw)
    raise TargetError(f"{spec}: expected a torch.autograd.Function subclass, an nn.Module class or a function of tensors, got {type(raw).__name__}")


def param_arg(name: str) -> str:
    return name.replace(".", "_")


def float_params(module: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    return {n: p for n, p in module.named_parameters() if p.is_floating_point()}


def share_parameters(candidate: Target, reference: Target) -> None:
    """Give a reference module the candidate module's parameters, by name; refuse a mismatch up front."""
    if candidate.kind != "module" or reference.kind != "module":
        return
    with inspecting(candidate.spec, "state_dict()", ""):  # a module's state_dict (or its __getattr__) is the user's code
        mine = candidate.obj.state_dict()
    with inspecting(reference.spec, "state_dict()", ""):
        theirs = reference.obj.state_dict()
    missing, extra = sorted(set(theirs) - set(mine)), sorted(set(mine) - set(theirs))
    if missing or extra:
        raise TargetError(f"{reference.spec}: its parameters and buffers do not match the candidate's by name "
                          f"(reference only: {', '.join(missing) or '-'}; candidate only: {', '.join(extra) or '-'})")
    for k in mine:
        if tuple(mine[k].shape) != tuple(theirs[k].shape):
            raise TargetError(f"{reference.spec}: parameter {k!r} has shape {tuple(theirs[k].shape)} in the reference, {tuple(mine[k].shape)} in the candidate")


def _by_name(fn, names: list[str]) -> bool:
    """True when `fn` accepts every name as a keyword argument."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return False
    params = sig.parameters
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return True
    return all(n in params and params[n].kind in (params[n].POSITIONAL_OR_KEYWORD, params[n].KEYWORD_ONLY) for n in names)


def instance(target: Target, dtype: torch.dtype, device: str, params: dict[str, torch.Tensor] | None) -> Any:
    """What to call in one dtype: a module copy with the drawn parameters, or the Function / function itself."""
    if target.kind != "module":
        return target.obj
    with user_code(f"{target.role} {target.spec}: copying and casting the module"):
        module = copy.deepcopy(target.obj).to(device=device, dtype=dtype)
    if params:
        with torch.no_grad():
            for name, p in float_params(module).items():
                if name in params:
                    p.copy_(params[name])
    return module


def _leaves(out: Any):
    """The tensors of a (nested) tuple or list of outputs, in order; None entries are skipped."""
    if isinstance(out, (tuple, list)):
        for o in out:
            yield from _leaves(o)
    elif out is not None:
        yield out


def call(target: Target, callee: Any, inputs: dict[str, torch.Tensor], extra: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """Run one forward; `extra` are the candidate module's parameters, for a reference function. Returns the floating outputs."""
    names = list(inputs)
    where = f"{target.role} {target.spec}"
    with user_code(where):
        if target.kind == "autograd":
            out = callee.apply(*inputs.values())
        else:
            fn = callee.forward if target.kind == "module" else callee
            kwargs = dict(inputs)
            kwargs.update({param_arg(k): v for k, v in extra.items()})
            if _by_name(fn, list(kwargs)):
                out = callee(**kwargs)
            else:
                out = callee(*inputs.values(), *extra.values())
    outs = tuple(_leaves(out))  # (out, None): attention weights not asked for; (out, (h, c)): an LSTM
    if not outs or not all(isinstance(o, torch.Tensor) for o in outs):
        raise TargetError(f"{where}: returned {type(out).__name__}; expected a tensor or a tuple of tensors")
    del names
    return tuple(outs)
