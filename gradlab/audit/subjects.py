"""One adapter per contract, so that the search and the judge see every op the same way.

A subject knows how to draw a case, call the user's forward and backward on it, and turn
the forward into the scalar function whose differences referee the backward:
  activation, layer, function   F(inputs) = sum(grad_out * forward(inputs))  (a VJP check)
  loss                          F(pred)   = forward(pred, target)
The judge hands them copies and compares afterwards, so an op that writes into its
arguments is caught, not believed.

A loss that declares no `domain` is probed once (`infer_loss_domain`): a forward that is
finite on probabilities but not at 0 or below (a log of pred) is a loss on probabilities,
audited on (0, 1] -- (0, 1) when it is not finite at 1 either -- instead of failing on
pred = 0, where the loss itself is undefined.
"""

from __future__ import annotations

import copy
import inspect
import math
import warnings
from dataclasses import replace
from typing import Any

import numpy as np

from ..usercode import Timeout, interrupted
from ..userops import contracts
from . import randomness, stateful, surrogates
from . import strategies as S
from .strategies import Case, Envelope


def passes_through(exc: BaseException) -> bool:
    """A real Ctrl-C or gradlab's own deadline: stop the audit. Anything else user code raised or
    exited with (SystemExit, a KeyboardInterrupt it raised itself) is the op's fault: a finding."""
    return isinstance(exc, Timeout) or (isinstance(exc, KeyboardInterrupt) and interrupted())


class Subject:
    kind = ""
    needs_upstream = True
    mismatch_hint = ""  # appended to a mismatch's message (a Function that looks like an undeclared gradient reversal)

    def __init__(self, obj: Any, target: str, *, max_abs: float = S.MAX_ABS):
        self.obj, self.target = obj, target
        low, high = contracts.parse_domain(getattr(obj, "domain", None), target)
        self.envelope = Envelope(low, high, contracts.parse_kinks(getattr(obj, "kinks", None), target), max_abs).reaching_domain()
        self.domain_note = ""  # why the domain was inferred, when the op declares none
        self.reseed: int | None = None  # --reseed: the global generators' seed before every call into the op
        self.surrogate = self.declared_surrogate(())

    def declared_surrogate(self, inputs: tuple[str, ...]) -> surrogates.Surrogate | None:
        """What the op's `surrogate` attribute says its backward computes instead of the true gradient."""
        return surrogates.parse(getattr(self.obj, "surrogate", None), self.obj, f"{self.target}", inputs)

    def fresh(self) -> None:
        """Called right before each call into user code: with --reseed, every call draws the same numbers."""
        if self.reseed is not None:
            randomness.reseed(self.reseed)

    @property
    def name(self) -> str:
        return self.obj.__name__ if isinstance(self.obj, type) else type(self.obj).__name__

    def strategy(self):
        raise NotImplementedError

    def budget(self, examples: int) -> int:
        """The examples this op gets out of --examples (a naive conv gets a share: see conventions)."""
        return examples

    def settle(self, case: Case) -> None:
        """Complete a drawn case before it is judged (a function pair's test mode gets its running
        statistics from a training-mode forward); runs once per case, user code included."""

    def forward(self, case: Case) -> np.ndarray:
        """The op's output on (copies of) the case."""
        raise NotImplementedError

    def backward(self, case: Case, upstream) -> dict[str, Any]:
        """The op's gradients, keyed like `case.inputs` (raw: validated by the judge)."""
        raise NotImplementedError

    def scalar(self, case: Case, upstream, name: str, value: np.ndarray) -> float:
        """F with input `name` replaced by `value`: what the numeric engine differentiates."""
        inputs = {k: (value if k == name else v).copy() for k, v in case.inputs.items()}
        out = self.forward(Case(inputs, case.const))
        return float(np.sum(upstream * out)) if self.needs_upstream else float(out)

    def restore(self) -> None:
        """Undo what the audit changed on the object (layer parameters)."""

    def call_signature(self) -> str:
        return ""


class BadReturn(Exception):
    """The user's forward or backward returned something that is no array of real numbers: a str, a dict, a
    generator, objects, complex values. `what` says what came back ('a str ('nope')'), `why` (may be empty) why
    that is refused; the judge makes it a contract finding of the op, never an error of gradlab's own checks."""

    def __init__(self, what: str, why: str = ""):
        self.what, self.why = what, why
        super().__init__(f"returned {what}" + (f" ({why})" if why else ""))


def _what(value: Any) -> str:
    """'a str ('nope')', 'a generator': what the user's code returned, short, whatever its __repr__ does."""
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 -- the user's __repr__
        text = ""
    text = " ".join(text.split())
    text = text if len(text) <= 60 else text[:57] + "..."
    name = type(value).__name__
    return f"{'an' if name[:1] in 'aeiou' else 'a'} {name}" + (f" ({text})" if text and not text.startswith("<") else "")


def as_float_array(value: Any) -> np.ndarray:
    """The user's return value as an ndarray of real numbers (torch tensors detached), without changing its dtype;
    anything else (a str, dict, generator, object or complex array) raises BadReturn saying what it was."""
    original = value
    if hasattr(value, "detach") and hasattr(value, "numpy"):
        try:
            value = value.detach().cpu().numpy()
        except Exception as exc:  # noqa: BLE001 -- a bfloat16 tensor numpy cannot hold, a tensor subclass
            raise BadReturn(f"a tensor numpy cannot read ({type(exc).__name__}: {' '.join(str(exc).split())[:120]})") from None
    if isinstance(value, (str, bytes, dict)) or inspect.isgenerator(value):
        raise BadReturn(_what(original))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            arr = np.asarray(value)
    except Exception as exc:  # noqa: BLE001 -- ragged lists, objects whose __array__ raises
        raise BadReturn(_what(original), f"no array: {type(exc).__name__}: {' '.join(str(exc).split())[:120]}") from None
    if arr.dtype.kind == "c":
        raise BadReturn(f"complex values ({arr.dtype})", "the derivatives of a real function are real, and dropping the imaginary part would hide a bug")
    if arr.dtype.kind not in "fiub":
        raise BadReturn(f"an array of {arr.dtype}" if isinstance(original, np.ndarray) else _what(original))
    return arr


class ActivationSubject(Subject):
    kind = "activation"

    def strategy(self):
        return S.activation_cases(self.envelope)

    def forward(self, case):
        self.fresh()
        return as_float_array(self.obj.forward(case.inputs["z"]))

    def backward(self, case, upstream):
        self.fresh()
        return {"z": self.obj.backward(case.inputs["z"], upstream)}

    def call_signature(self):
        return "forward(z), backward(z, grad_out)"


class LossSubject(Subject):
    kind = "loss"
    needs_upstream = False

    def __init__(self, obj, target, **kw):
        super().__init__(obj, target, **kw)
        self.target_kind = obj.target
        if getattr(obj, "domain", None) is None:
            inferred = infer_loss_domain(self.forward, self.target_kind)
            if inferred is not None:
                high, high_closed, self.domain_note = inferred
                self.envelope = replace(self.envelope, low=0.0, high=high, high_closed=high_closed).reaching_domain()

    def strategy(self):
        return S.loss_cases(self.envelope, self.target_kind)

    def forward(self, case):
        self.fresh()
        return as_float_array(self.obj.forward(case.inputs["pred"], case.const["target"]))

    def backward(self, case, upstream):
        self.fresh()
        return {"pred": self.obj.backward(case.inputs["pred"], case.const["target"])}

    def call_signature(self):
        return "forward(pred, target), backward(pred, target)"


PROBE_SHAPE = (3, 4)


def _probe_targets(kind: str) -> list[np.ndarray]:
    """A few valid targets of each kind, chosen so that every term of a loss is exercised."""
    b, c = PROBE_SHAPE
    rng = np.random.default_rng(0)
    if kind == "regression":
        return [rng.normal(size=PROBE_SHAPE), np.abs(rng.normal(size=PROBE_SHAPE)) + 0.1]
    if kind == "binary":
        return [np.zeros(PROBE_SHAPE), np.ones(PROBE_SHAPE), (np.arange(b * c).reshape(PROBE_SHAPE) % 2).astype(float)]
    if kind == "onehot":
        return [np.eye(c)[np.arange(b) % c], np.eye(c)[(np.arange(b) + 1) % c]]
    return [rng.dirichlet(np.ones(c), b), np.full(PROBE_SHAPE, 1.0 / c)]


def infer_loss_domain(forward, target_kind: str) -> tuple[float, bool, str] | None:
    """(high, high_closed, why) when the loss is defined on probabilities only; None otherwise.

    A loss is on probabilities when its forward is finite at random points of (0, 1) but not
    finite (or raises) at 0 or at negative inputs, for valid targets. Its domain is then (0, 1]:
    open at 1 too when forward is not finite there (log(1 - p)), and (0, inf) for regression
    targets when forward is finite above 1 (a Poisson-like log of a rate).
    """
    rng = np.random.default_rng(0)
    targets = _probe_targets(target_kind)

    def finite(pred: np.ndarray) -> bool:
        ok = True
        for t in targets:
            try:
                with warnings.catch_warnings(), np.errstate(all="ignore"):
                    warnings.simplefilter("ignore")
                    out = np.asarray(forward(Case({"pred": pred.copy()}, {"target": t.copy()})), dtype=np.float64)
            except BaseException as exc:  # noqa: BLE001 -- a probe; what user code raises is judged by the search
                if passes_through(exc):
                    raise
                return False
            ok &= bool(np.all(np.isfinite(out)))
        return ok

    inside = [rng.uniform(0.05, 0.95, PROBE_SHAPE) for _ in range(3)]
    if not all(finite(p) for p in inside):
        return None
    zero, negative = np.zeros(PROBE_SHAPE), -rng.uniform(0.05, 0.95, PROBE_SHAPE)
    bad = [name for name, p in (("0", zero), ("negative inputs", negative)) if not finite(p)]
    if not bad:
        return None
    why = f"forward is finite on (0, 1) but not at {' or at '.join(bad)}"
    if target_kind == "regression" and all(finite(p) for p in (1 + rng.uniform(0.05, 3.0, PROBE_SHAPE), np.full(PROBE_SHAPE, 20.0))):
        return math.inf, False, why
    if finite(np.ones(PROBE_SHAPE)):
        return 1.0, True, why
    return 1.0, False, why + ", nor at 1"


class LayerSubject(Subject):
    """The auditor writes each case's parameter values into the layer's own arrays (in place)."""

    kind = "layer"

    def __init__(self, obj, target, **kw):
        super().__init__(obj, target, **kw)
        shape = contracts.layer_shape(obj, target)
        self.input_shape = shape.input_shape
        S.bound_layer(target, self.input_shape, shape.params)
        self.original = {k: v.copy() for k, v in obj.params.items()}
        domains = getattr(obj, "param_domains", None) or {}
        self.param_envs = {}
        for k in self.original:
            low, high = contracts.parse_domain(domains.get(k), f"{target}: param_domains[{k!r}]")
            self.param_envs[k] = Envelope(low, high, (), max_abs=3.0).reaching_domain()
        self.keys = {S.param_key(k): k for k in self.original}
        self.objects = dict(obj.params)  # the arrays themselves: an optimizer step may replace them
        self.aliases = {attr: k for attr, v in _attributes(obj) for k, p in self.objects.items() if v is p}  # self.W is params['W']

    def strategy(self):
        return S.layer_cases(self.envelope, self.input_shape, self.original, self.param_envs)

    def _write(self, case: Case) -> None:
        for key, name in self.keys.items():
            self.obj.params[name][...] = case.inputs[key]

    def forward(self, case):
        self._write(case)
        self.fresh()
        return as_float_array(self.obj.forward(case.inputs["x"]))

    def backward(self, case, upstream):
        self._write(case)
        self.fresh()
        result = self.obj.backward(case.inputs["x"], upstream)
        if not (isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], dict)):
            return {"__contract__": f"backward must return (grad_x, {{name: grad}}), got {type(result).__name__}"}
        grads = {"x": result[0]}
        for key, name in self.keys.items():
            grads[key] = result[1].get(name)
        extra = sorted(set(result[1]) - set(self.original))
        if extra:
            grads["__contract__"] = f"backward returned gradients for unknown parameter(s) {', '.join(map(repr, extra))}; params has {', '.join(map(repr, self.original))}"
        return grads

    def params_changed(self, case: Case) -> list[str]:
        """Parameters the op changed in place during the calls (e.g. an SGD step inside backward)."""
        return [name for key, name in self.keys.items() if not np.array_equal(self.obj.params[name], case.inputs[key])]

    def params_replaced(self) -> list[str]:
        """Parameters the op swapped for new arrays (self.W = self.W - lr * dW, params['W'] = ...): the
        forward then reads arrays the audit does not set, so differences would show a false mismatch."""
        out = [f"params[{k!r}]" for k, v in self.objects.items() if self.obj.params.get(k) is not v]
        out += [f"self.{a} (params[{k!r}])" for a, k in self.aliases.items() if getattr(self.obj, a, None) is not self.objects[k]]
        return out

    def reinstall(self) -> None:
        """Put the original parameter arrays back where the layer keeps them."""
        for k, v in self.objects.items():
            self.obj.params[k] = v
        for a, k in self.aliases.items():
            setattr(self.obj, a, self.objects[k])

    def restore(self):
        self.reinstall()
        for name, value in self.original.items():
            self.obj.params[name][...] = value


    def call_signature(self):
        return "forward(x), backward(x, grad_out)"


def _attributes(obj: Any) -> list[tuple[str, Any]]:
    try:
        return [(k, v) for k, v in vars(obj).items() if isinstance(v, np.ndarray)]
    except TypeError:  # __slots__
        return []


def _copied(value: Any) -> Any:
    """A copy of a returned gradient; what is no array of reals stays as it is, for the judge to report."""
    try:
        return as_float_array(value).copy()
    except BadReturn:
        return value


class StatefulSubject(LayerSubject):
    """forward(x) caches on self, backward(dout) -> dx, parameter gradients left on self (stateful.py).

    Every forward runs on a fresh deep copy of the constructed instance with the case's parameter
    values set as its attributes; backward runs a forward on the case and then backward on that same
    instance, as the library would. A LayerSubject otherwise: the judge's parameter checks apply."""

    kind = "stateful"

    def __init__(self, obj, target, **kw):
        Subject.__init__(self, obj, target, **kw)
        self.layout = stateful.inspect_layer(obj, target)
        self.input_shape = self.layout.input_shape
        S.bound_layer(target, self.input_shape, self.layout.params, "input_shape (or smaller parameters)")
        self.original = {k: v.copy() for k, v in self.layout.params.items()}
        self.param_envs = {k: Envelope(max_abs=3.0) for k in self.original}
        self.keys = {S.param_key(k): k for k in self.original}
        self.current: Any = None  # the instance of the last call: what the judge's parameter checks look at
        self.objects: dict[str, np.ndarray] = {}
        self.aliases: dict[str, str] = {}

    def strategy(self):
        return stateful.cases(self.envelope, self.input_shape, self.original, self.param_envs, self.layout.tie_free)

    def _instance(self, case: Case):
        inst = copy.deepcopy(self.layout.template)
        for key, name in self.keys.items():
            setattr(inst, name, case.inputs[key].copy())
        stateful.clear_gradients(inst)
        self.current, self.objects = inst, {name: getattr(inst, name) for name in self.keys.values()}
        return inst

    def _write(self, case):
        """Parameters live on each call's fresh instance: nothing to put back."""

    def _forward(self, inst, case):
        from .findings import fail

        self.fresh()
        out = stateful.call_forward(inst, self.layout.forward, case.inputs["x"])
        if out is None:
            fail("not implemented", f"{self.layout.forward} returned None: the forward is not implemented yet", case=case, stage="forward")
        return out

    def forward(self, case):
        return as_float_array(self._forward(self._instance(case), case))

    def backward(self, case, upstream):
        from .findings import fail, warn

        inst, bwd = self._instance(case), self.layout.backward
        self._forward(inst, case)
        cache = {k: (v, v.copy()) for k, v in _attributes(inst) if k not in self.objects}
        given = upstream.copy()  # for the second call: the first may write into upstream (the judge sees that)
        self.fresh()
        dx = stateful.call_backward(inst, bwd, upstream)
        if dx is None:
            fail("not implemented", f"{bwd} returned None: the backward is not implemented yet (it must return dx)", case=case, upstream=upstream, stage="backward")
        in_place = False
        for k, (v, before) in cache.items():
            if getattr(inst, k, None) is v and not np.array_equal(v, before, equal_nan=True):
                in_place = True  # a hazard (findings.WARNINGS): the values are still judged
                warn(self, "in-place", f"{bwd} changed self.{k} in place (a second backward sees other values); "
                     "compute into a new array instead", case=case, upstream=upstream, stage="backward")
        grads = {"x": _copied(dx)}
        for key, name in self.keys.items():
            got = stateful.found_gradient(inst, name)
            grads[key] = None if got is None else _copied(got[0])  # a second backward may add into it
        if not self.params_replaced() and isinstance(grads["x"], np.ndarray):
            self.fresh()
            again = stateful.call_backward(inst, bwd, given)
            again = None if again is None else _copied(again)
            if not in_place and (not isinstance(again, np.ndarray) or not np.array_equal(again, grads["x"], equal_nan=True)):
                fail("mutation", f"{bwd} gave a different dx when called twice after one forward (it keeps or changes state)",
                     case=case, upstream=upstream, stage="backward")
        return grads

    def params_replaced(self):
        return [f"self.{k}" for k, v in self.objects.items() if getattr(self.current, k, None) is not v]

    def params_changed(self, case):
        return [k for key, k in self.keys.items() if not np.array_equal(self.objects[k], case.inputs[key])]

    def reinstall(self):
        """Each call gets a fresh instance: nothing to put back."""

    def restore(self):
        """The user's object is never called: only copies of it are."""

    def call_signature(self):
        lay = self.layout
        parts = [f"{lay.forward}(x), {lay.backward}(dout) -> dx on a fresh instance per call",
                 f"x (N, {', '.join(map(str, self.input_shape[1:]))}) from {lay.shape_how}"]
        if lay.params:
            parts.append("parameters " + ", ".join(f"{k} (gradient {w})" for k, w in lay.grad_where.items()))
        parts += [f"not judged (no gradient found for {k})" for k in lay.unjudged]
        if lay.tie_free:
            parts.append("x drawn without ties (a max-pool)")
        return "; ".join(parts)


class FunctionSubject(Subject):
    """A torch.autograd.Function: apply on float64 tensors; its backward runs through torch.autograd.grad."""

    kind = "function"

    def __init__(self, obj, target, **kw):
        super().__init__(obj, target, **kw)
        self.call_args = contracts.function_inputs(obj, target)
        # an axis argument without a default (forward(ctx, X, dim)) is an integer, never a tensor to draw
        self.fixed = {n: AXIS_ARGUMENTS[n] for n in self.call_args if n in AXIS_ARGUMENTS and len(self.call_args) > 1}
        self.arg_names = tuple(n for n in self.call_args if n not in self.fixed)
        self.surrogate = self.declared_surrogate(self.arg_names)
        if self.surrogate is None and self._looks_reversed():
            # A gradient reversal layer's backward is -lambda x the gradient on purpose: with no configuration, its
            # name and identity forward say so. Judged against that relation (a wrong sign or lambda still fails), with
            # a warning that it was inferred, never silently.
            from . import surrogates
            from .findings import WARNINGS, warn

            self.surrogate = surrogates.parse("reverse", self.obj, target, self.arg_names)
            warn(self, "inferred surrogate", f"{self.name}: {WARNINGS['inferred surrogate']}")
            self.mismatch_hint = (f"; {self.name} is named like a gradient reversal and its forward is the identity, so its backward "
                                  "was checked against -lambda x the gradient; if it is not a reversal, rename it")

    def _looks_reversed(self) -> bool:
        """Named as a gradient reversal (GradientReversal, GradReverse, ReverseLayerF, RevGrad) with an identity forward."""
        name = self.obj.__name__.lower()
        if not any(w in name for w in REVERSAL_WORDS):
            return False
        try:
            case = Case({n: np.linspace(-1.5, 2.0, 12).reshape(3, 4) + i for i, n in enumerate(self.arg_names)})
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                out = as_float_array(self._apply(case, False)[1])
        except Exception:  # noqa: BLE001 -- the search reports what the forward does
            return False
        return out.shape == case.inputs[self.arg_names[0]].shape and bool(np.array_equal(out, case.inputs[self.arg_names[0]]))

    def strategy(self):
        return S.activation_cases(self.envelope, self.arg_names)

    def _apply(self, case, grad: bool):
        import torch

        xs = [torch.tensor(case.inputs[n], dtype=torch.float64, requires_grad=grad) for n in self.arg_names]
        given = dict(zip(self.arg_names, xs))
        with torch.set_grad_enabled(grad):
            self.fresh()
            out = self.obj.apply(*[given[n] if n in given else self.fixed[n] for n in self.call_args])
        if not isinstance(out, torch.Tensor):  # the op's contract, not an exception it raised
            raise BadReturn(_what(out), f"{self.name}.apply must return one tensor; the audit handles functions returning one tensor")
        return xs, out

    def forward(self, case):
        return as_float_array(self._apply(case, False)[1])

    def backward(self, case, upstream):
        import torch

        xs, out = self._apply(case, True)
        if out.grad_fn is None:
            return {n: np.zeros_like(case.inputs[n]) for n in self.arg_names}
        self.fresh()
        grads = torch.autograd.grad(out, xs, grad_outputs=torch.tensor(upstream, dtype=out.dtype), allow_unused=True)
        return {n: (np.zeros_like(case.inputs[n]) if g is None else g) for n, g in zip(self.arg_names, grads)}

    def call_signature(self):
        return f"apply({', '.join(n if n not in self.fixed else f'{n}={self.fixed[n]}' for n in self.call_args)})"


AXIS_ARGUMENTS = {"dim": -1, "axis": -1}  # a Function's axis argument without a default: the last axis
REVERSAL_WORDS = ("revers", "revgrad", "gradrev")


SUBJECTS = {"activation": ActivationSubject, "loss": LossSubject, "layer": LayerSubject, "function": FunctionSubject, "stateful": StatefulSubject}


def make(obj: Any, kind: str, target: str, *, max_abs: float = S.MAX_ABS) -> Subject:
    contracts.check(obj, kind, target)
    if not (max_abs > 0 and math.isfinite(max_abs)):
        raise contracts.TargetError(f"--max-abs must be a positive number, got {max_abs!r}")
    return SUBJECTS[kind](obj, target, max_abs=max_abs)
