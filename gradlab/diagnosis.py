"""Which op is wrong: a diagnosis read from a spec's comparisons alone.

Three engines referee each other. Per parameter tensor, the engine that disagrees with both
others while they agree is the odd one out:
    analytic  -> the hand-written backward is wrong;
    autograd  -> the torch mirror (a custom op's `torch_forward`) is wrong;
    numeric   -> suspect the forward (non-smooth here, or not what the mirrors compute).
Gradients flow from the output side: a wrong backward in layer k corrupts every parameter of
layers < k (and the input) and none above. So the op is found by walking down from the loss:
the suspect sits just on the output side of the highest failing parameter, between it and the
next layer that owns a passing one (or the loss, when nothing lies above).
A failure that is one sign (cosine -1), one constant factor, or a few elements is named as such.

`diagnose` is a pure function of a SpecResult's comparisons and its layer description.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["Diagnosis", "LayerInfo", "diagnose", "headline"]

INPUT_LAYER = -1  # the input batch sits below layer 0
AGREE_COSINE = 0.999  # |cosine| above this: one direction (a sign or a factor apart at most)
FACTOR_SPREAD = 0.03  # ratios within 3% of each other: one constant factor
FEW_ELEMENTS = 0.25  # at most this share of a tensor's elements failing: "confined to few elements"

GENERIC_KINDS = ("wrong backward", "wrong torch mirror", "suspect forward")


@dataclass(frozen=True)
class LayerInfo:
    """What the diagnosis needs to know of one layer (or of the loss: index None, path `loss`)."""

    index: int | None
    type: str  # dense | activation | custom | loss | a layer op's type (conv2d, batchnorm, ...)
    op: str  # `dense`, an activation fn (`sigmoid`), or a custom op's `file.py:Name`
    path: str  # the spec key path: network.layers[3] or loss
    params: tuple[str, ...] = ()
    custom: bool = False  # a user's op (built-in ops are tested against their mirrors by gradlab)
    mirror: bool = True  # has a torch mirror

    def to_dict(self) -> dict:
        d = asdict(self)
        d["params"] = list(self.params)
        return d


@dataclass(frozen=True)
class Diagnosis:
    suspect: str  # backward | torch mirror | forward
    layer: int | None
    op: str
    path: str | None  # network.layers[5] | loss | None (not located)
    kind: str  # wrong backward | wrong torch mirror | suspect forward | sign error | off by a factor of 2.0 | confined to few elements
    evidence: str  # one sentence, with the numbers behind it

    def to_dict(self) -> dict:
        return asdict(self)

    def headline(self) -> str:
        """`backward of network.layers[5] (ops.py:SwishWrongBeta)`, plus the kind when it says more."""
        where = f"{self.path} ({self.op})" if self.path else self.op
        text = f"{self.suspect} of {where}"
        return text if self.kind in GENERIC_KINDS else f"{text}: {self.kind}"


def headline(result) -> str | None:
    """The first suspect of a result in a few words, or None."""
    found = getattr(result, "diagnosis", None) or []
    return found[0].headline() if found else None


# ---- per tensor: which engine is the odd one out ----------------------------------------------

def _engine(label: str) -> str:
    return "autograd" if label.startswith("autograd") else label


def _blame(rows) -> str | None:
    """The engine label that disagrees with both others while they agree; 'pair' with only two engines; 'all'."""
    judged = [c for c in rows if c.status in ("pass", "fail", "zero-gradient")]
    failing = {(c.candidate, c.reference) for c in judged if c.status == "fail"}
    if not failing:
        return None
    labels = {x for c in judged for x in (c.candidate, c.reference)}
    pairs = {(c.candidate, c.reference) for c in judged}
    odd = [e for e in labels
           if any(e not in p for p in pairs)  # someone else referees
           and all((p in failing) == (e in p) for p in pairs)]
    if len(odd) == 1:
        return odd[0]
    return "pair" if len(labels) == 2 else "all"


# ---- the shape of a failure: one sign, one factor, a few elements -----------------------------

def _failing_elements(c) -> list[dict]:
    return [w for w in c.worst if w.get("abs_err", 0.0) > w.get("bound", 0.0)]


def _orient(c, engine: str) -> tuple[bool, bool]:
    """(usable, invert): whether row c pits `engine` against another, and if the ratio must be inverted."""
    if _engine(c.candidate) == engine or c.candidate == engine:
        return True, False
    if _engine(c.reference) == engine or c.reference == engine:
        return True, True
    return False, False


def _pattern(rows, engine: str) -> tuple[str, str] | None:
    """('sign error' | 'off by a factor of r', evidence) when every failing row is one sign or one factor apart."""
    ratios, cosines, rels = [], [], []
    for c in rows:
        usable, invert = _orient(c, engine)
        if not usable:
            continue
        cosines.append(c.cosine)
        rels.append(c.max_rel_err)
        for w in _failing_elements(c):
            ref, cand = (w["candidate"], w["reference"]) if invert else (w["reference"], w["candidate"])
            if ref != 0 and np.isfinite(ref) and np.isfinite(cand):
                ratios.append(cand / ref)
    if not ratios or not cosines or not all(np.isfinite(cosines)):
        return None
    r = float(np.median(ratios))
    if any(abs(x - r) > FACTOR_SPREAD * abs(r) for x in ratios):
        return None
    # each tensor's largest relative error must be the factor's own: no element worse than the rest
    expected = abs(r - 1) / max(abs(r), 1.0)
    if not all(np.isfinite(x) and abs(x - expected) <= 0.05 * expected for x in rels):
        return None
    shown = _fmt_factor(abs(r))
    if all(cs < -AGREE_COSINE for cs in cosines) and r < 0:
        extra = "" if abs(abs(r) - 1) <= FACTOR_SPREAD else f" (and off by a factor of {shown})"
        return "sign error" + extra, f"every failing element listed ({len(ratios)}) is {r:.3g} times the reference"
    if all(cs > AGREE_COSINE for cs in cosines) and r > 0 and abs(r - 1) > FACTOR_SPREAD:
        return f"off by a factor of {shown}", f"the ratio to the reference is {r:.4g} on all {len(ratios)} failing elements listed"
    return None


def _fmt_factor(r: float) -> str:
    one = round(r, 1)
    return f"{one:.1f}" if one and abs(r - one) <= 0.01 * r else f"{r:.3g}"


def _fmt_index(index) -> str:
    return "(" + ",".join(str(i) for i in index) + ")"


def _few(rows, engine: str) -> str | None:
    """Which elements, when the failure is confined to a few of them (worst lists name up to five per tensor)."""
    mine = [c for c in rows if _orient(c, engine)[0]]
    if not mine:
        return None
    by_param: dict[str, object] = {}
    for c in mine:  # one row per tensor: the one with the most mismatches
        if c.parameter not in by_param or c.mismatched > by_param[c.parameter].mismatched:
            by_param[c.parameter] = c
    parts = []
    for name, c in by_param.items():
        elements = _failing_elements(c)
        if c.size == 0 or c.mismatched > FEW_ELEMENTS * c.size or len(elements) < c.mismatched:
            return None
        idx = [tuple(w["index"]) for w in elements]
        rows_hit = {i[0] for i in idx if i}
        where = ""
        if len(rows_hit) == 1 and c.size > c.mismatched and idx and len(idx[0]) > 1:
            where = f", all in {'row ' if name != 'input' else 'batch row '}{next(iter(rows_hit))}"
        elif len(rows_hit) == 1 and len(idx) > 0 and len(idx[0]) == 1:
            where = ""
        kinks = f", {c.kinks} element(s) of it at kinks" if c.kinks else ""
        parts.append(f"{name} {c.mismatched} of {c.size} ({' '.join(_fmt_index(i) for i in idx)}{where}{kinks})")
    return "; ".join(parts)


# ---- localisation ------------------------------------------------------------------------------

def _where(info: LayerInfo) -> str:
    return info.path


def _candidates(layers: list[LayerInfo], loss: LayerInfo | None, failing: set[str], layer_of: dict[str, int]) -> tuple[int, list[LayerInfo]]:
    """(m, suspects in order of likelihood): m is the highest layer owning a failing parameter."""
    m = max(layer_of.get(p, INPUT_LAYER) for p in failing)
    by_index = {l.index: l for l in layers}
    above = [l for l in layers if l.index > m]
    nxt = next((l for l in above if l.params), None)
    between = [l for l in above if nxt is None or l.index < nxt.index]
    end = [nxt] if nxt is not None and nxt.custom else []  # a custom layer's input gradient
    if nxt is None and loss is not None:
        end = [loss]
    own = by_index.get(m)
    partial = own is not None and any(p not in failing for p in own.params)
    # A wrong input gradient at or above m would corrupt every parameter below m too; when those pass,
    # the error stays in m's own parameter gradients: m's backward is the first suspect.
    confined = own is not None and any(p not in failing for l in layers if l.index < m for p in l.params)
    ordered = [own] if partial or confined else []
    ordered += [l for l in between if l.custom] + [l for l in end if l.custom]
    ordered += [l for l in between if not l.custom and l.type != "dense"] + [l for l in end if not l.custom]
    ordered += [l for l in between if not l.custom and l.type == "dense"]
    if own is not None and not (partial or confined):
        ordered.append(own)
    seen, out = set(), []
    for l in ordered:
        if l.path not in seen:
            seen.add(l.path)
            out.append(l)
    return m, out


def _span(indices) -> str:
    idx = sorted(set(indices))
    if not idx:
        return "none"
    names = ["input" if i == INPUT_LAYER else str(i) for i in idx]
    return names[0] if len(names) == 1 else ", ".join(names)


def diagnose(result) -> list:
    """The suspects of a spec's discrepancies, most likely first; [] when nothing fails.

    Reads `result.comparisons`, `result.layers` (a list of LayerInfo) and `result.loss` (LayerInfo).
    """
    rows = [c for c in getattr(result, "comparisons", []) if c.status != "skipped"]
    if getattr(result, "error", None) or not any(c.status == "fail" for c in rows):
        return []
    layers: list[LayerInfo] = list(getattr(result, "layers", None) or [])
    loss: LayerInfo | None = getattr(result, "loss", None)
    layer_of = {p: l.index for l in layers for p in l.params}
    by_param: dict[str, list] = {}
    for c in rows:
        by_param.setdefault(c.parameter, []).append(c)
    blame = {p: _blame(rs) for p, rs in by_param.items()}
    blame = {p: b for p, b in blame.items() if b is not None}
    fails = [c for c in rows if c.status == "fail"]

    # The analytic engine is not vindicated where it is the odd one, or nobody agrees, or only two engines ran.
    not_analytic = {p for p, b in blame.items() if b in ("analytic", "all") or (b == "pair" and any(
        "analytic" in (c.candidate, c.reference) and c.status == "fail" for c in by_param[p]))}
    mirror_odd = {p for p, b in blame.items() if b.startswith("autograd")}
    numeric_odd = {p for p, b in blame.items() if b == "numeric"}
    two_engines = {p for p, b in blame.items() if b == "pair"}

    if not_analytic:
        m, cands = _candidates(layers, loss, not_analytic, layer_of)
        below = sorted({layer_of.get(p, INPUT_LAYER) for p in not_analytic})
        passing = sorted({l.index for l in layers if l.params and l.index > m})
        kinds = {blame[p] for p in not_analytic}
        if kinds == {"analytic"}:
            suspect, kind, engine = "backward", "wrong backward", "analytic"
            others = sorted({x for p in not_analytic for c in by_param[p] for x in (c.candidate, c.reference)} - {"analytic"})
            how = f"analytic disagrees with {' and '.join(others)}, which agree,"
        elif "all" in kinds and mirror_odd:
            suspect, kind, engine = "forward", "suspect forward", "numeric"
            above = _span(layer_of.get(p, INPUT_LAYER) for p in mirror_odd)
            how = (f"the forward is not what the backward and the torch mirror compute (or both of those are wrong): above, on layers {above}, "
                   "autograd alone disagrees with analytic and numeric (which share the op's forward); all three disagree")
        elif kinds <= {"pair"}:
            suspect, kind, engine = "backward", "wrong backward", "analytic"
            how = ("analytic disagrees with numeric and no third engine ran to referee (autograd skipped): "
                   "the backward, or a forward that is not what the backward differentiates")
        else:
            suspect, kind, engine = "backward", "wrong backward", "analytic"
            how = "analytic disagrees with both other engines, which also disagree with each other (more than one thing may be wrong)"
        focus = [c for c in fails if c.parameter in not_analytic]
        nearest = [c for c in focus if layer_of.get(c.parameter, INPUT_LAYER) == m]
        cos = min((c.cosine for c in nearest if np.isfinite(c.cosine)), default=float("nan"))
        top = next((c.parameter for c in nearest), "?")
        evidence = (f"{how} on layers {_span(below)}" + (f"; layers {_span(passing)} pass" if passing else "")
                    + f", so the error enters between {top} and " + (f"layers.{passing[0]}" if passing else "the loss")
                    + f" (cosine {cos:.4f})")
        shape = _pattern(focus, engine)
        few = None if shape else _few(nearest, engine)
        if shape:
            kind, detail = shape
            evidence += f"; {detail}"
        elif few:
            kind = "confined to few elements"
            evidence += f"; only a few elements fail: {few}"
        if not cands:
            return [Diagnosis(suspect, None, "?", None, kind, evidence + ".")]
        first, rest = cands[0], cands[1:]
        out = [Diagnosis(suspect, first.index, first.op, first.path, kind, evidence + ".")]
        for l in rest:
            out.append(Diagnosis(suspect, l.index, l.op, l.path, kind,
                                 f"less likely than {first.path} ({first.op}): the same gradients pass through {l.path}."))
        return out

    if mirror_odd:
        labels = sorted({blame[p] for p in mirror_odd})
        on = sorted({c.device for c in fails if c.parameter in mirror_odd})
        focus = [c for c in fails if c.parameter in mirror_odd]
        cos = min((c.cosine for c in focus if np.isfinite(c.cosine)), default=float("nan"))
        evidence = (f"{' and '.join(labels)} disagrees with analytic and numeric, which agree, on {len(mirror_odd)} tensor(s) "
                    f"(lowest cosine {cos:.4f}): the torch mirror computes another function than the op's forward")
        kind = "wrong torch mirror"
        shape = _pattern(focus, labels[0])
        if shape:
            kind, detail = shape
            evidence += f"; {detail}"
        cpu_ok = any(c.candidate.startswith("autograd") and c.device == "cpu" and c.status != "fail" for c in rows)
        if cpu_ok and all(d != "cpu" for d in on):
            return [Diagnosis("torch mirror", None, ", ".join(labels), None, "device-specific",
                              f"{' and '.join(labels)} disagrees while autograd on the cpu agrees with analytic and numeric: "
                              f"the mirror behaves differently on {', '.join(on)}.")]
        customs = [l for l in layers if l.custom and l.mirror] + ([loss] if loss is not None and loss.custom and loss.mirror else [])
        if not customs:
            return [Diagnosis("torch mirror", None, "a built-in op", None, kind, evidence + "; no custom op is in the network, so this is gradlab's bug.")]
        out = [Diagnosis("torch mirror", customs[0].index, customs[0].op, customs[0].path, kind,
                         evidence + (f"; the network's only custom op is {customs[0].path}." if len(customs) == 1 else
                                     f"; custom ops with a torch_forward: {', '.join(l.path for l in customs)}."))]
        for l in customs[1:]:
            out.append(Diagnosis("torch mirror", l.index, l.op, l.path, kind, f"as likely as {customs[0].path}: {l.path} also has a custom torch_forward."))
        return out

    if numeric_odd:
        focus = [c for c in fails if c.parameter in numeric_odd]
        cos = min((c.cosine for c in focus if np.isfinite(c.cosine)), default=float("nan"))
        kinks = sum(c.kinks for c in rows if c.parameter in numeric_odd)
        evidence = (f"numeric disagrees with analytic and autograd, which agree, on {len(numeric_odd)} tensor(s) (lowest cosine {cos:.4f}): "
                    "the forward is non-smooth at this point or not what the backward and the torch mirror compute"
                    + (f" ({kinks} element(s) already at kinks)" if kinks else ""))
        customs = [l for l in layers if l.custom] + ([loss] if loss is not None and loss.custom else [])
        few = _few(focus, "numeric")
        kind = "suspect forward"
        if few:
            kind = "confined to few elements"
            evidence += f"; only a few elements fail: {few}"
        if customs:
            return [Diagnosis("forward", customs[0].index, customs[0].op, customs[0].path, kind, evidence + ".")] + [
                Diagnosis("forward", l.index, l.op, l.path, kind, f"as likely as {customs[0].path}: also a custom forward.") for l in customs[1:]]
        return [Diagnosis("forward", None, "the network's forward", None, kind, evidence + ".")]

    del two_engines  # every failing pair is covered above; nothing left unexplained
    return []


def describe(net) -> tuple[list[LayerInfo], LayerInfo]:
    """The layers and the loss of a built Network, as the diagnosis reads them."""
    from .userops.adapters import short

    def op_of(obj, fallback: str) -> tuple[str, bool]:
        impl = getattr(obj, "impl", None)
        return (short(impl), True) if isinstance(impl, str) and impl else (fallback, False)

    from .network import ActivationLayer, OpLayer, ResidualLayer, walk

    layers = []
    # Leaves in execution order (a residual block's layers, then its projection); `index` is that order.
    leaves = [l for l in walk(net.layers) if not isinstance(l, ResidualLayer)]
    for order, layer in enumerate(leaves):
        path = layer.path
        if isinstance(layer, OpLayer):
            layers.append(LayerInfo(order, layer.op.name, layer.op.name, path, tuple(layer.param_names), False, True))
        elif isinstance(layer, ActivationLayer):
            name, custom = op_of(layer.op, layer.op.name)
            layers.append(LayerInfo(order, "activation", name, path, tuple(layer.param_names), custom, layer.op.torch is not None))
        elif hasattr(layer, "impl"):  # custom layer
            name, _ = op_of(layer, layer.impl)
            layers.append(LayerInfo(order, "custom", name, path, tuple(layer.param_names), True,
                                    callable(getattr(layer.obj, "torch_forward", None))))
        else:
            layers.append(LayerInfo(order, "dense", "dense", path, tuple(layer.param_names), False, True))
    name, custom = op_of(net.loss_op, net.loss_op.name)
    return layers, LayerInfo(None, "loss", name, "loss", (), custom, net.loss_op.torch is not None)
