"""Function pairs in the course-assignment convention, audited with no adapter code.

    out, cache = conv_forward_naive(x, w, b, conv_param)    dx, dw, db = conv_backward_naive(dout, cache)
    loss, dx = softmax_loss(x, y)                           (y: integer labels in [0, C))
    loss, dW = svm_loss_naive(W, X, y, reg)                 (X: data, y: labels, reg: a float; any name)
    out = sigmoid(x)                                        sigmoid_grad(x) or sigmoid_backward(dout, x)

`discover` finds every such op in a module; `PairSubject` adapts one to the search and the judge
(shapes and hyperparameters come from conventions.py). Besides the gradient itself, a pair's
subject judges what only a pair can get wrong: a stub that returns None (`not implemented`), a
forward that draws random numbers on every call (`random forward`, never a mismatch), and a
backward that writes into dout, the forward's inputs or its cache, or answers differently when
called twice on one cache (`mutation`).
"""

from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass, replace
from typing import Any, Callable

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ..userops.loading import TargetError
from . import conventions as C
from . import strategies as S
from .findings import Counterexample, NoBackward, fail, warn
from .strategies import Case, Envelope
from .subjects import BadReturn, Subject, as_float_array

MODES = ("pair", "loss", "plain")  # (out, cache) + backward(dout, cache); (loss, dx); out + f_grad / f_backward


@dataclass(frozen=True)
class Pair:
    """One op found in a module: its forward, its backward twin and how their arguments are drawn."""

    forward: Callable
    backward: Callable | None  # None for a loss: the forward returns (loss, dx)
    mode: str
    family: str
    args: tuple[tuple[str, str], ...]  # (name, role) in call order; role: array | labels (passed, never differentiated) | hyper | groups
    path: str
    declared: Any = None  # an audit file's declaration (auditfile.Declared): draws the case instead of the conventions
    layouts: tuple[tuple[str, tuple[str, ...]], ...] = ()  # shapes probed on the forward (conventions.PARAM_CONVENTIONS)

    def layout(self, name: str) -> tuple[str, ...]:
        return dict(self.layouts).get(name) or C.LAYOUTS[self.family][name]

    @property
    def name(self) -> str:
        return self.forward.__name__

    @property
    def label(self) -> str:
        """'conv_forward_naive / conv_backward_naive': what the whole-file report lists."""
        return self.name if self.backward is None else f"{self.name} / {self.backward.__name__}"

    @property
    def arrays(self) -> tuple[str, ...]:
        return tuple(n for n, role in self.args if role == "array")


def _positional(fn: Callable) -> list[inspect.Parameter]:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return []
    return [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]


def _roles(fn: Callable, fam: str, where: str) -> tuple[tuple[str, str], ...]:
    layout = C.LAYOUTS[fam]
    roles = []
    for p in _positional(fn):
        if p.name in C.HYPERPARAMETERS or p.name in C.SCALAR_HYPERPARAMETERS:
            roles.append((p.name, "hyper"))
        elif p.name in C.CONSTANTS.get(fam, {}):
            roles.append((p.name, "labels"))
        elif p.name == "G" and fam == "groupnorm":
            roles.append((p.name, "groups"))
        elif p.name in layout:
            roles.append((p.name, "array"))
        elif p.default is not p.empty:
            continue  # an optional argument: left at its default
        else:
            known = ", ".join(sorted(set(layout) | set(C.CONSTANTS.get(fam, {})) | set(C.HYPERPARAMETERS) | set(C.SCALAR_HYPERPARAMETERS)))
            raise TargetError(f"{where}: cannot tell what to pass as {p.name!r} (gradlab knows {known} for a {fam} op); "
                              f"rename it after the convention, or wrap the op in a class (see the layer contract)")
    if not any(role == "array" for _, role in roles):
        raise TargetError(f"{where}: {fn.__name__} takes no array argument gradlab knows ({', '.join(layout)})")
    return tuple(roles)


def _functions(module) -> dict[str, Callable]:
    """Public functions the module defines or imports (a forward imported from a sibling file pairs with a local backward)."""
    return {k: v for k, v in vars(module).items() if inspect.isfunction(v) and not k.startswith("_")}


def _own(module, fn: Callable | None) -> bool:
    return fn is not None and fn.__module__ == module.__name__


def backward_twins(name: str, funcs: dict[str, Callable]) -> list[str]:
    """conv_forward_naive -> [conv_backward_naive, conv_backward_naive_alt]; f -> [f_grad] (what the module defines)."""
    if C.FORWARD_WORD in name:
        twin = name.replace(C.FORWARD_WORD, C.BACKWARD_WORD)
        return sorted((k for k in funcs if k == twin or k.startswith(twin + "_")), key=lambda k: (k != twin, k))
    return [t.format(name=name) for t in C.PLAIN_TWINS if t.format(name=name) in funcs]


def is_loss(name: str, fam: str) -> bool:
    """softmax_loss(x, y) by its name; svm_loss_naive(W, X, y, reg) by its arguments alone."""
    return fam in C.LOSS_FAMILIES and (name.endswith(C.LOSS_SUFFIX) or fam in C.LOSS_BY_ARGUMENTS)


def _same_answer(u, v) -> bool:
    """Two calls' gradients agree; what is no array of reals is left to the judge, which reports what it is."""
    try:
        return _same(as_float_array(u), as_float_array(v))
    except BadReturn:
        return True


def make_pair(module, name: str, path: str, backward: str | None = None, backward_key: str = "--backward NAME") -> Pair:
    """The op `name` of `module`, with its backward twin (or the one `backward` names).

    `backward_key` is how the user names a backward where they called from (an audit file: `backward: NAME`)."""
    funcs = _functions(module)
    fn = funcs.get(name) or getattr(module, name, None)
    where = f"{path}:{name}"
    if not callable(fn):
        raise TargetError(f"{where}: not a function")
    arg_names = tuple(p.name for p in _positional(fn))
    fam = C.family(name, arg_names)
    if backward is not None:
        if backward not in funcs:
            raise TargetError(f"{where}: --backward {backward!r}: the file defines no such function (it defines: {', '.join(sorted(funcs))})")
        twins = [backward]
    elif is_loss(name, fam) or fam in C.LOSS_FAMILIES and not backward_twins(name, funcs):
        return Pair(fn, None, "loss", fam, _roles(fn, fam, where), path)
    else:
        twins = backward_twins(name, funcs)
    if not twins:
        expected = name.replace(C.FORWARD_WORD, C.BACKWARD_WORD) if C.FORWARD_WORD in name else " or ".join(t.format(name=name) for t in C.PLAIN_TWINS)
        raise TargetError(f"{where}: a function needs a backward twin ({expected}) in the same file, or {backward_key}")
    mode = "pair" if C.FORWARD_WORD in name else "plain"
    return Pair(fn, funcs[twins[0]], mode, fam, _roles(fn, fam, where), path)


def pair_from_call(module, name: str, path: str, *, mode: str, backward: str | None, arrays: dict, hyper: dict) -> Pair:
    """The op `name` with the roles of its arguments read off one call (what `reproduce` was handed):
    float arrays are differentiated, integer arrays are labels, `hyper` holds the rest. For ops an
    audit file declares, whose argument names no convention knows."""
    funcs = _functions(module)
    fn = funcs.get(name) or getattr(module, name, None)
    where = f"{path}:{name}"
    if not callable(fn):
        raise TargetError(f"{where}: not a function")
    roles = []
    for p in _positional(fn):
        if p.name in arrays:
            roles.append((p.name, "labels" if np.asarray(arrays[p.name]).dtype.kind in "iub" else "array"))
        elif p.name in hyper:
            roles.append((p.name, "hyper"))
        elif p.default is p.empty:
            raise TargetError(f"reproduce: {where} takes {p.name!r}: pass it (an array) or put it in hyper={{...}}")
    twin = None
    if mode != "loss":
        names = [backward] if backward else backward_twins(name, funcs)
        if not names or names[0] not in funcs:
            raise TargetError(f"{where}: no backward twin; pass backward=NAME")
        twin = funcs[names[0]]
    return Pair(fn, twin, mode, "declared", tuple(roles), path)


def discover(module, path: str) -> tuple[list[Pair], list[str]]:
    """Every pair (each backward variant apart), every (loss, dx) loss and every f / f_grad in a module;
    and a note for each function that looks like an op but cannot be audited (why)."""
    funcs = _functions(module)
    pairs, notes = [], []
    twin_names = set()
    for name in funcs:
        twin_names.update(backward_twins(name, funcs))
    for name in funcs:
        if name in twin_names:
            continue
        args = tuple(p.name for p in _positional(funcs[name]))
        loss = is_loss(name, C.family(name, args))
        twins = [t for t in backward_twins(name, funcs) if _own(module, funcs[name]) or _own(module, funcs[t])]
        if not twins and not (loss and _own(module, funcs[name])):
            continue
        try:
            if loss:
                pairs.append(make_pair(module, name, path))
            for twin in twins:
                pairs.append(make_pair(module, name, path, backward=twin))
        except TargetError as exc:
            notes.append(str(exc))
    return pairs, notes


# --- drawing a case -----------------------------------------------------------------------------


def _size(draw, dim: str, fam: str = "") -> int:
    lo, hi = C.dimension(fam, dim)
    return draw(st.integers(lo, hi), label=dim)


def _shape(draw, layout: tuple[str, ...], dims: dict[str, int], fam: str) -> tuple[int, ...]:
    """A layout's sizes; a dimension first met here is drawn once and shared by every later argument."""
    shape = []
    for d in layout:
        k, base = C.split_dimension(d)
        if base not in dims:
            dims[base] = _size(draw, base, fam)
        shape.append(k * dims[base])
    return tuple(shape)


def _constant(draw, name: str, fam: str, dims: dict[str, int]) -> np.ndarray:
    """A non-differentiated argument (conventions.CONSTANTS): integer indices below a bound, or a mask."""
    what, layout, bound = C.CONSTANTS[fam][name]
    shape = _shape(draw, layout, dims, fam)
    if what == "data":
        return draw(S.arrays(shape, Envelope(max_abs=C.PARAM_MAX_ABS)), label=name)
    if what == "mask":
        every = st.sampled_from((True, False)).map(lambda v: np.full(shape, v))
        return draw(st.one_of(hnp.arrays(np.bool_, shape), every), label=name)
    _shape(draw, (bound,), dims, fam)
    return draw(hnp.arrays(np.int64, shape, elements=st.integers(0, dims[bound] - 1)), label=name)


def _hyper(draw, arg: str) -> dict | float:
    if arg in C.SCALAR_HYPERPARAMETERS:
        return draw(st.sampled_from(C.SCALAR_HYPERPARAMETERS[arg]), label=arg)
    _, keys = C.HYPERPARAMETERS[arg]
    return {k: draw(st.sampled_from(v), label=f"{arg}[{k!r}]") for k, v in keys.items()}


def _dict_of(hyper: dict, fam: str) -> dict | None:
    """The drawn hyperparameter dict of family `fam` (conv_param, pool_param), if the op takes one."""
    return next((v for k, v in hyper.items() if k in C.HYPERPARAMETERS and C.HYPERPARAMETERS[k][0] == fam), None)


@st.composite
def pair_cases(draw, pair: Pair, env: Envelope):
    fam = pair.family
    hyper = {name: _hyper(draw, name) for name, role in pair.args if role == "hyper"}
    dims: dict[str, int] = {"1": 1, "N": _size(draw, "N", fam)}
    if fam == "conv":
        cp = _dict_of(hyper, "conv")
        pool = _dict_of(hyper, "pool")  # conv_relu_pool_forward: the conv's output must fit the pool
        for k, o, side in (("HH", "Ho", "pool_height"), ("WW", "Wo", "pool_width")):
            dims[k], dims[o] = _size(draw, k, fam), _size(draw, o, fam)
            if pool is not None:
                dims[o] = C.conv_input_size(dims[o], pool[side], pool["stride"], 0)
            # the largest pad that leaves an input of at least one pixel: H = (Ho - 1) stride + HH - 2 pad >= 1
            cp["pad"] = min(cp["pad"], (C.conv_input_size(dims[o], dims[k], cp["stride"], 0) - 1) // 2)
        for a, k, o in (("H", "HH", "Ho"), ("W", "WW", "Wo")):
            dims[a] = C.conv_input_size(dims[o], dims[k], cp["stride"], cp["pad"])
    elif fam == "pool":
        pp = _dict_of(hyper, "pool")
        dims["H"] = C.conv_input_size(_size(draw, "Ho"), pp["pool_height"], pp["stride"], 0)
        dims["W"] = C.conv_input_size(_size(draw, "Wo"), pp["pool_width"], pp["stride"], 0)
    elif fam in ("spatial_norm", "groupnorm"):
        dims["H"], dims["W"] = draw(st.integers(1, 3), label="H"), draw(st.integers(1, 3), label="W")
    groups = None
    if fam == "groupnorm":
        groups = _size(draw, "G")
        dims["C"] = groups * draw(st.integers(1, 2), label="C per group")
    inputs: dict[str, np.ndarray] = {}
    const: dict[str, np.ndarray] = {}
    param_env = Envelope(max_abs=C.FAMILY_MAX_ABS.get(fam, C.PARAM_MAX_ABS))
    if fam in C.FAMILY_MAX_ABS:
        env = replace(env, max_abs=min(env.max_abs, C.FAMILY_MAX_ABS[fam]))
    for name, role in pair.args:
        if role == "hyper":
            continue
        if role == "groups":
            hyper[name] = groups
            continue
        if role == "labels":
            const[name] = _constant(draw, name, fam, dims)
            continue
        layout = pair.layout(name)
        if layout[-1] == "D*":  # affine: x is (N, D) or (N, d1, d2) with d1 d2 = D
            shape = _shape(draw, layout[:-1], dims, fam)
            if draw(st.booleans(), label="x is 3-D"):
                d1, d2 = draw(st.integers(1, 3), label="d1"), draw(st.integers(1, 3), label="d2")
                dims["D"] = d1 * d2
                shape += (d1, d2)
            else:
                shape += (dims.setdefault("D", _size(draw, "D")),)
        else:
            shape = _shape(draw, layout, dims, fam)
        if name == "x" and fam == "pool":
            inputs[name] = draw(S.tie_free(shape), label=name)
        else:
            inputs[name] = draw(S.arrays(shape, env if name == "x" else param_env), label=name)
    return Case(inputs, const, hyper)


# --- conventions that differ between years: probed on the forward -------------------------------


def _accepts(pair: Pair, layouts: dict[str, tuple[str, ...]]) -> bool:
    """Whether the forward returns an output of x's shape on arrays drawn in `layouts` (a probe: anything raised is a no)."""
    import contextlib
    import sys

    rng = np.random.default_rng(0)
    sizes = C.PROBE_SIZES
    args, x = [], None
    for name, role in pair.args:
        if role == "array":
            a = rng.normal(size=tuple(sizes[d] for d in layouts.get(name) or C.LAYOUTS[pair.family][name]))
            x = a if x is None else x
            args.append(a)
        elif role == "groups":
            args.append(sizes["G"])
        elif role == "hyper":
            args.append(C.SCALAR_HYPERPARAMETERS[name][0] if name in C.SCALAR_HYPERPARAMETERS else
                        {k: v[0] for k, v in C.HYPERPARAMETERS[name][1].items()})
        else:
            return False
    try:
        with contextlib.redirect_stdout(sys.stderr), warnings_off():
            raw = pair.forward(*args)
        out = raw[0] if isinstance(raw, (tuple, list)) else raw
        return x is not None and np.shape(out) == x.shape
    except BaseException as exc:  # noqa: BLE001 -- a probe: what the forward raises is judged by the search
        from .subjects import passes_through

        if passes_through(exc):
            raise
        return False


def warnings_off():
    import contextlib
    import warnings

    stack = contextlib.ExitStack()
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    stack.enter_context(np.errstate(all="ignore"))
    return stack


def probe_convention(pair: Pair) -> Pair:
    """The pair with the parameter shapes its forward accepts (gamma (C,) or (1, C, 1, 1)); the first when none is."""
    for layouts in C.PARAM_CONVENTIONS[pair.family]:
        if _accepts(pair, layouts):
            return replace(pair, layouts=tuple(layouts.items()))
    return pair


# --- the subject --------------------------------------------------------------------------------


def _snapshot(obj: Any, depth: int = 0) -> Any:
    """A deep copy of the arrays inside a cache (tuples, lists, dicts of them)."""
    if depth > 6:
        return obj
    if isinstance(obj, np.ndarray):
        return obj.copy()
    if isinstance(obj, (tuple, list)):
        return type(obj)(_snapshot(v, depth + 1) for v in obj) if isinstance(obj, list) else tuple(_snapshot(v, depth + 1) for v in obj)
    if isinstance(obj, dict):
        return {k: _snapshot(v, depth + 1) for k, v in obj.items()}
    return obj


def _changed(before: Any, after: Any, path: str = "cache") -> str | None:
    """The first place (cache[3], cache['var']) where a cache differs from its snapshot."""
    if isinstance(before, np.ndarray):
        same = isinstance(after, np.ndarray) and before.shape == after.shape and np.array_equal(before, after, equal_nan=before.dtype.kind in "fc")
        return None if same else path
    if isinstance(before, (tuple, list)):
        if not isinstance(after, (tuple, list)) or len(after) != len(before):
            return path
        for i, (b, a) in enumerate(zip(before, after)):
            where = _changed(b, a, f"{path}[{i}]")
            if where:
                return where
        return None
    if isinstance(before, dict):
        if not isinstance(after, dict) or set(after) != set(before):
            return path
        for k in before:
            where = _changed(before[k], after[k], f"{path}[{k!r}]")
            if where:
                return where
    return None


def _holds_none(cache: Any, depth: int = 0) -> bool:
    """A None somewhere inside a cache's tuples and lists (a part that kept no cache)."""
    if cache is None:
        return True
    if depth < 3 and isinstance(cache, (tuple, list)):
        return any(_holds_none(v, depth + 1) for v in cache)
    return False


def _identities(obj: Any, path: str = "cache", depth: int = 0) -> dict[str, int]:
    """path -> id of each array inside a cache: a backward that replaces one (an optimizer step) is told from one that writes into it."""
    if depth > 6:
        return {}
    if isinstance(obj, np.ndarray):
        return {path: id(obj)}
    out: dict[str, int] = {}
    items = enumerate(obj) if isinstance(obj, (tuple, list)) else obj.items() if isinstance(obj, dict) else ()
    for k, v in items:
        out.update(_identities(v, f"{path}[{k!r}]", depth + 1))
    return out


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and np.array_equal(a, b, equal_nan=True)


class PairSubject(Subject):
    kind = "pair"

    def __init__(self, pair: Pair, target: str, *, max_abs: float = S.MAX_ABS):
        super().__init__(pair.forward, target, max_abs=max_abs)
        self.pair = pair
        self.surrogate = self.declared_surrogate(pair.arrays)
        self.needs_upstream = pair.mode != "loss"
        # arrays the forward returns before its cache (lstm_step_forward: next_h, next_c): the backward
        # takes one upstream gradient for each, in order, then the cache
        self.outputs = max(1, len(_positional(pair.backward)) - 1) if pair.mode == "pair" else 1
        if pair.declared is None and pair.family in C.PARAM_CONVENTIONS:
            self.pair = probe_convention(pair)

    @property
    def name(self) -> str:
        return self.pair.label

    def budget(self, examples: int) -> int:
        """A share of `examples` by the rank of the main input (conventions.BUDGET_SHARE_BY_RANK)."""
        layout = C.LAYOUTS.get(self.pair.family, {}).get(self.pair.arrays[0]) if self.pair.declared is None else \
            self.pair.declared.entry.inputs[self.pair.arrays[0]]
        return C.budget(examples, len(layout or ()))

    def strategy(self):
        if self.pair.declared is not None:
            return self.pair.declared.cases(self.pair, self.envelope)
        return pair_cases(self.pair, self.envelope)

    def _call_forward(self, case: Case, hyper: dict | None = None):
        """The forward on the case; `hyper` (kept, not copied) replaces the case's dicts for a warm-up run."""
        args = []
        for name, role in self.pair.args:
            if role == "array":
                args.append(case.inputs[name])
            elif role == "labels":
                args.append(case.const[name])
            elif hyper is not None and name in hyper:
                args.append(hyper[name])
            else:
                args.append(copy.deepcopy(case.hyper[name]))  # forward may store running statistics in it
        self.fresh()
        return self.pair.forward(*args)

    def settle(self, case: Case) -> None:
        """A test-mode dict gets what a training-mode forward on the case's arrays leaves in it
        (running_mean, running_var), as the user's training loop would; done once per case."""
        warm = {}
        for name, value in case.hyper.items():
            if name not in C.WARM_UP or not isinstance(value, dict):
                continue
            key, audited, warm_value = C.WARM_UP[name]
            if value.get(key) == audited and set(value) <= set(C.HYPERPARAMETERS[name][1]):
                warm[name] = dict(copy.deepcopy(value), **{key: warm_value})
        if not warm:
            return
        self._call_forward(case.copy(), warm)
        for name, value in warm.items():
            key, audited, _ = C.WARM_UP[name]
            case.hyper[name] = dict(value, **{key: audited})

    def _split(self, case: Case, raw: Any) -> tuple[Any, Any]:
        """(out, cache) -- (loss, dx) for a loss, (out, None) for a plain function."""
        fn = self.pair.name
        if self.pair.mode == "plain":
            if raw is None:
                fail("not implemented", f"{fn} returned None: the forward is not implemented yet", case=case, stage="forward")
            return raw, None
        k = self.outputs
        if raw is None or isinstance(raw, (tuple, list)) and len(raw) == k + 1 and raw[0] is None:
            fail("not implemented", f"{fn} returned {'None' if raw is None else '(None, ...)'}: the forward is not implemented yet (a TODO stub?)", case=case, stage="forward")
        if not (isinstance(raw, (tuple, list)) and len(raw) == k + 1):
            what = "(loss, dx)" if self.pair.mode == "loss" else "(out, cache)" if k == 1 else \
                f"{k} arrays and then the cache (its backward {self.pair.backward.__name__} takes {k} upstream gradients before the cache)"
            got = f"{len(raw)} values" if isinstance(raw, (tuple, list)) else type(raw).__name__
            fail("contract", f"{fn} must return {what}, got {got}", case=case, stage="forward")
        return (raw[0] if k == 1 else tuple(raw[:k])), raw[k]

    def forward(self, case):
        out = self._split(case, self._call_forward(case))[0]
        if self.outputs == 1:
            return as_float_array(out)
        # several outputs are judged as one flat vector: one upstream vector covers them all, in order
        return np.concatenate([as_float_array(o).reshape(-1) for o in out])

    def _upstreams(self, out, upstream: np.ndarray) -> list[np.ndarray]:
        """One upstream gradient per output of the forward, cut from the flat vector `forward` judged."""
        if self.outputs == 1:
            return [upstream.copy()]
        shapes = [np.shape(o) for o in out]
        cuts = np.cumsum([int(np.prod(sh)) for sh in shapes])[:-1]
        return [piece.reshape(sh).copy() for piece, sh in zip(np.split(upstream, cuts), shapes)]

    def backward(self, case, upstream):
        work = case.copy()
        out, cache = self._split(case, self._call_forward(work))
        if self.pair.mode == "pair" and cache is None and self._warmed(case):
            raise NoBackward(f"{self.pair.name} keeps no cache in this mode")
        if self.pair.mode == "loss":
            grads = cache
        elif self.pair.mode == "plain":
            grads = self._plain_backward(case, upstream)
        else:
            try:
                grads = self._pair_backward(case, work, cache, self._upstreams(out, upstream), upstream)
            except Counterexample:
                raise
            except Exception:
                # a sandwich (affine_bn_relu) keeps the test-mode norm's cache = None inside its own: the
                # backward was never meant to run there, so its failing on that None is no finding
                if self._warmed(case) and _holds_none(cache):
                    raise NoBackward(f"{self.pair.name} keeps no cache for a part in this mode") from None
                raise
        return self._named(case, upstream, grads)

    def _plain_backward(self, case, upstream):
        x = case.inputs[self.pair.arrays[0]].copy()
        twin = self.pair.backward
        if len(_positional(twin)) >= 2:
            self.fresh()
            return twin(upstream.copy(), x)
        self.fresh()
        g = twin(x)
        if g is None:
            return None
        g = as_float_array(g)
        return upstream * g if g.shape == upstream.shape else g

    def _pair_backward(self, case, work: Case, cache, douts: list[np.ndarray], upstream):
        before_cache, before_ids = _snapshot(cache), _identities(cache)
        given = [d.copy() for d in douts]
        bwd = self.pair.backward.__name__
        self.fresh()
        first = self.pair.backward(*given, cache)
        first = _snapshot(first)  # a gradient that aliases dout or the cache is judged as it was returned
        in_place = False
        if not all(_same(g, d) for g, d in zip(given, douts)):
            in_place = True
            warn(self, "in-place", f"{bwd} wrote into its upstream gradient argument in place (dx = dout; dx[...] = ..., dnext_c += ...); "
                 "the values are right, but a caller passing its own dout sees it changed: copy it first", case=case, upstream=upstream, stage="backward")
        where = _changed(before_cache, cache)
        if where:
            owner = {id(v): n for n, v in work.inputs.items()}.get(before_ids.get(where))
            whose = f" (the forward's argument {owner})" if owner else ""
            if where in before_ids and _identities(cache).get(where) != before_ids[where]:
                fail("mutation", f"{bwd} replaced its {where}{whose} with a new array (an optimizer step inside backward, like "
                     f"cache['w'] = w - lr * dw?); backward must leave its cache and the parameters alone", case=case, upstream=upstream, stage="backward")
            in_place = True
            warn(self, "in-place", f"{bwd} changed its {where}{whose} in place (a second backward on the same cache sees other values); "
                 "compute into a new array instead (var + eps, not var += eps)", case=case, upstream=upstream, stage="backward")
        for name, x in work.inputs.items():
            if not _same(x, case.inputs[name]):
                in_place = True
                warn(self, "in-place", f"{bwd} wrote into the forward's input {name} in place (through the cache)", case=case, upstream=upstream, stage="backward")
        if self._is_stub(first):
            return first
        self.fresh()
        second = self.pair.backward(*[d.copy() for d in douts], cache)
        a, b = self._as_list(first), self._as_list(second)
        if not in_place and (len(a) != len(b) or any(not _same_answer(u, v) for u, v in zip(a, b) if u is not None and v is not None)):
            fail("mutation", f"{bwd} gave a different answer when called twice on one cache (it keeps or changes state)", case=case, upstream=upstream, stage="backward")
        return first

    @staticmethod
    def _warmed(case: Case) -> bool:
        """Some dict is in the mode that follows a warm-up (test mode), where course code keeps no cache."""
        return any(isinstance(v, dict) and n in C.WARM_UP and v.get(C.WARM_UP[n][0]) == C.WARM_UP[n][1] for n, v in case.hyper.items())

    @staticmethod
    def _as_list(g) -> list:
        return list(g) if isinstance(g, (tuple, list)) else [g]

    @staticmethod
    def _is_stub(g) -> bool:
        return g is None or isinstance(g, (tuple, list)) and all(v is None for v in g)

    def _named(self, case, upstream, grads) -> dict[str, Any]:
        names = self.pair.arrays
        fn = self.pair.backward.__name__ if self.pair.backward is not None else self.pair.name
        if self._is_stub(grads):
            fail("not implemented", f"{fn} returned {grads!r}: the backward is not implemented yet", case=case, upstream=upstream, stage="backward")
        if self.pair.mode == "loss" or not isinstance(grads, (tuple, list)):
            if len(names) == 1:
                return {names[0]: grads}
            return {"__contract__": f"{fn} returned one array, but the forward takes {len(names)} arrays ({', '.join(names)}): return (d{', d'.join(names)}) in that order"}
        if len(grads) != len(names):
            return {"__contract__": f"{fn} returned {len(grads)} gradients, but the forward takes {len(names)} arrays ({', '.join(names)}): return (d{', d'.join(names)}) in that order"}
        missing = [n for n, g in zip(names, grads) if g is None]
        if missing:
            fail("not implemented", f"{fn} returned None for d{', d'.join(missing)}: not implemented yet", case=case, upstream=upstream, stage="backward")
        return dict(zip(names, grads))

    def scalar(self, case, upstream, name, value):
        inputs = {k: (value if k == name else v).copy() for k, v in case.inputs.items()}
        out = self.forward(Case(inputs, case.const, case.hyper))
        return float(np.sum(upstream * out)) if self.needs_upstream else float(np.sum(out))

    def call_signature(self):
        args = ", ".join(n for n, _ in self.pair.args)
        if self.pair.mode == "loss":
            return f"loss, d{self.pair.arrays[0]} = {self.pair.name}({args})"
        if self.pair.mode == "plain":
            return f"{self.pair.name}({args}), {self.pair.backward.__name__}"
        outs = "out" if self.outputs == 1 else ", ".join(f"out{i + 1}" for i in range(self.outputs))
        douts = "dout" if self.outputs == 1 else ", ".join(f"dout{i + 1}" for i in range(self.outputs))
        probed = ""
        if self.pair.layouts:  # conventions.PARAM_CONVENTIONS
            probed = "; " + ", ".join(f"{n} of shape ({', '.join(lay)}{',' if len(lay) == 1 else ''})" for n, lay in self.pair.layouts) + \
                " (the shapes its forward accepts)"
        return f"{outs}, cache = {self.pair.name}({args}); {self.pair.backward.__name__}({douts}, cache){probed}"
