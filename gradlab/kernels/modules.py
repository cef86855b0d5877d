"""`gradlab audit FILE.py:MyLayer --kind module`: every parameter gradient and input gradient of an nn.Module,
autograd against forward-only differences, in float64.

The module is built like a `gradlab compare` candidate (targets.py: a class with no arguments, keyword
arguments from an `init` dict on the class or in its file, or an instance), its inputs are declared the same way
(`example_inputs()` -> {name: shape}), and Hypothesis varies them the same way (search.py: sizes that are not
baked into a parameter, value styles, seeds; a failure is shrunk). Per case:
  - parameters: the module's own init, moved by a random amount of its own scale (ones and zeros hide bugs);
    inputs drawn in float64; one random cotangent c per floating output; loss L = sum <out, c>;
  - the claim: autograd's dL/d(parameter) and dL/d(input) -- through whatever custom Functions the module uses;
  - the referee: the numeric engine on L alone (projection.py: every element of a small tensor, random
    projections with bisection that names the wrong elements for a large one), by the complex step where the
    module runs in complex128 and agrees with real differences on the declared case, else Richardson (which
    flags kinks: stencils that straddle one are not judged).
Randomness in the forward (dropout) is pinned: every forward runs with the same torch seed. A size the module
refuses (raises on) is skipped as a draw, unless it is the declared one (then: exit code 2).
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import sys
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
from hypothesis import reject

from . import inputs as I
from . import projection
from .search import SearchResult, replay, search
from .targets import Target, call, float_params, load
from ..audit.judge import tolerance
from ..userops.loading import TargetError, inspecting, load_raw
from ..usercode import UserCodeError, deadline, user_code

FORWARD_SEED = 0  # every forward pass runs with this torch seed: dropout draws the same mask each time


@dataclass
class ModuleSubject:
    spec: str
    target: Target  # the float64 master copy
    specs: tuple  # declared inputs
    tol: dict
    method: str = "richardson"
    method_note: str = ""
    complex_module: torch.nn.Module | None = None  # the complex128 copy the complex step runs
    param_shapes: dict = field(default_factory=dict)  # search.py keeps these sizes fixed

    @property
    def declared(self) -> I.Case:
        return I.Case(self.specs, "normal", 0)


class _Bound:
    """The module called with substituted parameters (torch.func.functional_call), for targets.call."""

    def __init__(self, module: torch.nn.Module, params: dict[str, torch.Tensor]):
        self.module, self.params, self.forward = module, params, module.forward

    def __call__(self, *args, **kwargs):
        return torch.func.functional_call(self.module, self.params, args, kwargs)


@contextlib.contextmanager
def _one_thread():
    """Thousands of forwards of a small module: torch's intra-op threads cost more than they give (measured: a
    2x3x7x6 conv took 0.67 ms with 2 threads on a busy 2-core machine, 0.04 ms with 1)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def _pinned_rng():
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(FORWARD_SEED)  # CPU only: torch.manual_seed also seeds every device (a stack trace each)
        yield


def _init_kwargs(raw) -> dict | None:
    """An `init` dict of keyword arguments: on the class, else in the file that defines it."""
    init = getattr(raw, "init", None)
    if init is None and isinstance(raw, type):
        init = getattr(sys.modules.get(raw.__module__), "init", None)
    return dict(init) if isinstance(init, dict) else None


def _required_args(cls: type) -> list[str]:
    try:
        params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    except (TypeError, ValueError):
        return []
    return [p.name for p in params if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


BUILD_SEED = 0  # torch's global generator while the module's file is imported and the module built: its init is the same every run


def prepare(spec: str, *, rtol: float | None = None, atol: float | None = None) -> ModuleSubject:
    """Load the module and its declared inputs; anything but an nn.Module is a TargetError (exit 2).

    Built under a seeded torch generator (BUILD_SEED, the caller's own generator state restored after), so that
    an audit's table, its wrong elements and its reproduce line are the same in every process."""
    with inspecting(spec), torch.random.fork_rng(devices=[]):
        torch.manual_seed(BUILD_SEED)
        return _prepare(spec, rtol=rtol, atol=atol)


def _prepare(spec: str, *, rtol: float | None, atol: float | None) -> ModuleSubject:
    raw = load_raw(spec)
    if not (isinstance(raw, torch.nn.Module) or isinstance(raw, type) and issubclass(raw, torch.nn.Module)):
        raise TargetError(f"{spec}: --kind module needs an nn.Module class or instance, got {getattr(raw, '__name__', type(raw).__name__)} "
                          "(a torch.autograd.Function or an op: drop --kind module)")
    init = _init_kwargs(raw)
    if init is None and isinstance(raw, type) and _required_args(raw):
        raise TargetError(f"{spec}: cannot create {raw.__name__}() without {', '.join(_required_args(raw))}; give the class an `init` dict "
                          f"of keyword arguments (init = {{'{_required_args(raw)[0]}': ...}} on the class or in its file), or name an instance")
    target = load(spec, "module", init)
    with user_code(f"{spec}: casting the module to float64"):
        target.obj = copy.deepcopy(target.obj).double()
    specs = I.declared(raw, spec, shapes_option=False)
    params = float_params(target.obj)
    subject = ModuleSubject(spec, target, specs, tolerance(rtol, atol), param_shapes={n: tuple(p.shape) for n, p in params.items()})
    if not params and not any(s.integer is None for s in specs):
        raise TargetError(f"{spec}: has no floating parameter and no floating input: nothing to differentiate")
    return subject


@dataclass
class _Case:
    params: dict[str, torch.Tensor]
    inputs: dict[str, torch.Tensor]
    cotangents: list


def _draw(subject: ModuleSubject, case: I.Case) -> _Case:
    gen = torch.Generator().manual_seed(7_919 * (case.seed + 1))
    params = {}
    for name, p in float_params(subject.target.obj).items():
        scale = float(p.detach().pow(2).mean().sqrt()) if p.numel() else 0.0
        params[name] = (p.detach() + (scale or 1.0) * torch.randn(p.shape, generator=gen, dtype=torch.float64)).clone()
    inputs = I.build(case, torch.float64, "cpu")
    with torch.no_grad():
        outs = _forward(subject, subject.target.obj, params, inputs)
    cots = [I.cotangent(o.shape, case.seed, i) for i, o in enumerate(outs)]
    return _Case(params, inputs, cots)


def _forward(subject: ModuleSubject, module: torch.nn.Module, params: dict, inputs: dict) -> list[torch.Tensor]:
    with _pinned_rng(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        outs = call(subject.target, _Bound(module, params), inputs, {})
    floating = [o for o in outs if o.is_floating_point() or o.is_complex()]
    if not floating:
        raise TargetError(f"{subject.spec}: the module returned no floating tensor to differentiate")
    return floating


def _loss(outs: list[torch.Tensor], cots: list[torch.Tensor]) -> torch.Tensor:
    return sum((o * c.to(o.device)).sum() for o, c in zip(outs, cots))


def _autograd(subject: ModuleSubject, case: _Case) -> dict[str, torch.Tensor]:
    """The claim: autograd's gradient of L for every floating parameter and input."""
    params = {k: v.clone().requires_grad_(True) for k, v in case.params.items()}
    xs = {k: (v.clone().requires_grad_(True) if v.is_floating_point() else v) for k, v in case.inputs.items()}
    wrt = {**{f"grad {k}": v for k, v in params.items()}, **{f"grad {k}": v for k, v in xs.items() if v.is_floating_point()}}
    loss = _loss(_forward(subject, subject.target.obj, params, xs), case.cotangents)
    if not loss.requires_grad:
        raise TargetError(f"{subject.spec}: the output does not require grad (does the module detach, or run under no_grad?)")
    with user_code(f"{subject.spec}: backward"):
        got = torch.autograd.grad(loss, list(wrt.values()), allow_unused=True)
    return {k: (g if g is not None else torch.zeros_like(v)).detach() for (k, v), g in zip(wrt.items(), got)}


def _phi(subject: ModuleSubject, case: _Case, name: str, complex_module: torch.nn.Module | None):
    """L as a function of one tensor (a numpy array), the rest held at the case's values."""
    key = name[len("grad "):]
    is_param = key in case.params

    def phi(x: np.ndarray):
        cplx = np.iscomplexobj(x)
        moved = torch.as_tensor(x, dtype=torch.complex128 if cplx else torch.float64)
        conv = (lambda t: t.to(torch.complex128)) if cplx else (lambda t: t)
        params = {k: (moved if is_param and k == key else conv(v)) for k, v in case.params.items()}
        inputs = {k: (moved if not is_param and k == key else (conv(v) if v.is_floating_point() else v)) for k, v in case.inputs.items()}
        with torch.no_grad():
            loss = _loss(_forward(subject, complex_module if cplx else subject.target.obj, params, inputs), case.cotangents)
        return complex(loss) if cplx else float(loss)

    return phi, (case.params[key] if is_param else case.inputs[key])


def _choose_method(subject: ModuleSubject) -> tuple[str, torch.nn.Module | None, str]:
    """Complex step when the module runs in complex128 and agrees with Richardson along a random direction
    for every tensor on the declared case; else Richardson."""
    case = _draw(subject, subject.declared)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module_c = copy.deepcopy(subject.target.obj).to(torch.complex128)
    except Exception as exc:  # noqa: BLE001 -- a module that cannot be complex is not an error, only slower
        return "richardson", None, f"complex128 copy failed ({type(exc).__name__})"
    claim = _autograd(subject, case)
    for name, g in claim.items():
        phi, theta = _phi(subject, case, name, module_c)
        t, shape = theta.numpy().reshape(-1), tuple(theta.shape)
        u = np.random.default_rng(t.size).choice([-1.0, 1.0], size=t.size)
        try:
            value = phi((t + 1e-20j * u).reshape(shape))
        except (UserCodeError, TargetError):
            return "richardson", None, "the forward does not run in complex128"
        if not isinstance(value, complex):
            return "richardson", None, "the forward drops the imaginary part"
        _, real, _, bound = projection._Probe(phi, t, shape, g.numpy().reshape(-1), "richardson", subject.tol).project(u)
        _, cs, _, _ = projection._Probe(phi, t, shape, g.numpy().reshape(-1), "complex_step", subject.tol).project(u)
        if not abs(cs - real) <= bound:
            why = "a non-analytic op (abs), or complex arithmetic that mixes real and imaginary parts (torch's complex convolution)"
            return "richardson", None, f"the complex step and real differences disagree on {name}: {why}"
    return "complex_step", module_c, "runs in complex128 and agrees with real differences"


def run_case(subject: ModuleSubject, case: I.Case) -> list[projection.Verdict]:
    """Autograd against the numeric engine for every parameter and input on one case."""
    drawn = _draw(subject, case)
    claim = _autograd(subject, drawn)
    verdicts = []
    for name, g in claim.items():
        phi, theta = _phi(subject, drawn, name, subject.complex_module)
        if not torch.isfinite(g).all():
            bad = tuple(int(i) for i in torch.nonzero(~torch.isfinite(g))[0]) if g.dim() else ()
            verdicts.append(projection.Verdict(name, tuple(g.shape), "elements", subject.method, float("inf"), 0.0, bad, float(g[bad]) if g.dim() else float(g),
                                               float("nan"), [(bad, float(g[bad]) if g.dim() else float(g), float("nan"), 0.0)], note="autograd gradient is not finite"))
            continue
        verdicts.append(projection.judge(name, phi, theta.numpy(), g.numpy(), method=subject.method, tol=subject.tol, seed=case.seed,
                                         elementwise_limit=projection.MODULE_ELEMENTWISE_LIMIT))
    return verdicts


def _drawn_case(subject: ModuleSubject, case: I.Case) -> list[projection.Verdict]:
    """run_case inside the search: a drawn size the module refuses (raises on) is not a finding, only another draw."""
    try:
        return run_case(subject, case)
    except (UserCodeError, TargetError):
        if case.specs != subject.specs:
            reject()
        raise


@dataclass
class ModuleAudit:
    spec: str
    subject: ModuleSubject
    result: SearchResult
    seed: int
    budget: int

    @property
    def passed(self) -> bool:
        return self.result.passed


def audit_module(spec: str, *, examples: int = 20, seed: int = 0, rtol: float | None = None, atol: float | None = None,
                 case: str | None = None) -> ModuleAudit:
    """Search `examples` cases (or replay one `case` string) for a wrong parameter or input gradient."""
    subject = prepare(spec, rtol=rtol, atol=atol)
    with _one_thread():
        subject.method, subject.complex_module, subject.method_note = _choose_method(subject)
        run_case(subject, subject.declared)  # the declared sizes must work: a raise here is the module's error (exit 2)
        if case is not None:
            result = replay(subject, I.parse_case(case), run=run_case)
        else:
            result = search(subject, examples=examples, seed=seed, run=_drawn_case)
    return ModuleAudit(spec, subject, result, seed, examples)


def reproduce(spec: str, case: str) -> ModuleAudit:
    """Replay one case of a report and print it (what the reproduce line calls)."""
    from .report import module_text

    audit = audit_module(spec, case=case)
    print(module_text(audit))
    return audit


def run_module_audit(target: str, *, examples: int, seed: int, fmt: str, output: str | None, rtol: float | None,
                     atol: float | None, timeout: float | None) -> int:
    """The CLI's `gradlab audit TARGET --kind module`: run, render, and return the exit code (0 pass, 1 a wrong gradient);
    a module that cannot be loaded or breaks its contract raises a GradlabError (the CLI's exit code 2)."""
    from ..batch import EXIT_FAIL, EXIT_OK
    from ..output import write_report_text, write_text
    from .report import module_json, module_text

    with deadline(timeout, f"gradlab audit {target} --kind module"):
        audit = audit_module(target, examples=examples, seed=seed, rtol=rtol, atol=atol)
    if fmt == "json":
        write_text(module_json(audit), output)
    else:
        write_report_text(module_text(audit), output)
    return EXIT_OK if audit.passed else EXIT_FAIL
