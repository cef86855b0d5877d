"""Vanishing / exploding gradient statistics per layer with parameters, over several initialisations.

Everything is read from the analytic engine's backprop and the layers' own hand-written backward
(no autodiff). For dense layer l with pre-activation z_l, activation f and delta_l = dL/dz_l, the
seeds' recursion is

    delta_l = (W_{l+1}^T delta_{l+1}) (.) f'(z_l)

With independent weights of variance Var[W_{l+1}] and n_{l+1} = units of layer l+1, each
component of W^T delta has variance Var[W] |delta_{l+1}|^2, so the per-unit RMS obeys

    factor_l := rms(delta_l) / rms(delta_{l+1}) ~= sqrt(n_{l+1} Var[W_{l+1}] E[f'(z_l)^2])

(Glorot & Bengio 2010; He et al. 2015). `factor` is how much delta shrinks (< 1) or grows
(> 1) going back one row; it sits on the row of the *lower* layer l, the output layer has none.
E[f'(z)^2] is measured on the batch; Var[W] comes from the init scheme.

N-d networks: one row per layer that has parameters -- dense, conv, normalisation (with `affine`),
attention, a residual block's projection -- nested layers inside residual blocks included, named by
their parameter prefix (`layers.1.layers.0`), in execution order. delta is dL/d(output of that
layer); the top level's comes from backprop, a residual block's members' from the same recursion as
ResidualLayer.backward, each layer's own backward. The theory applies where layer l+1 is a dense or
conv layer fed directly by layer l's activation chain: for a conv, n_{l+1} is the mean number of
(output channel, kernel tap) pairs that reach one input element, (channels / groups) x kernel area
for stride 1 away from the borders, and Var[W] uses fan-in = in_channels / groups x kernel area
(He/Glorot as torch counts it). Elsewhere (a norm, attention, a residual sum in between) the theory
column is empty (NaN) rather than invented.

Each statistic is computed per initialisation (spec.seed + k, k < seeds) and reported as
mean and standard deviation over the initialisations.

Two quantities can vanish or explode, and they need not do so together. delta is the error signal
backprop carries down; dW = (layer input)^T delta is what a step changes. In a stack whose forward
signal shrinks as fast as delta does going back (tanh with small weights) delta vanishes toward the
input while dW stays flat: the lower layers' inputs are as much larger as their deltas are smaller.
So the verdict names the quantity: `vanishing-dW` / `exploding-dW` when a row's dW RMS over the
output row's (`grad_ratio_to_output`) crosses `stats.vanishing_ratio` / `stats.exploding_ratio`,
else `vanishing-delta` / `exploding-delta` when delta's ratio (`ratio_to_output`) does; a weight
gradient that is exactly zero for every initialisation is never `ok` (`zero-gradient`, or `dead`).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .engines.analytic import backprop
from .errors import GradlabError, SpecError
from .memory import CHANNEL_FIRST_OPS
from .network import ActivationLayer, CustomLayer, DenseLayer, Network, OpLayer, ResidualLayer, build
from .ops import init as init_op

# Reported for every row (a layer with parameters), in this order (JSON/CSV add `_mean` and `_std`).
STAT_KEYS = (
    "delta_rms",  # RMS of dL/dz over batch and units (and positions)
    "ratio_to_output",  # delta_rms / the output layer's delta_rms
    "factor",  # delta_rms / next row's delta_rms (NaN on the output layer)
    "theory_factor",  # sqrt(n_next Var[W_next] E[f'(z)^2]) where the next row is a dense or conv layer right after this one
    "grad_norm",  # RMS of dL/dW (a norm's scale; attention's q, k, v and o weights together)
    "grad_ratio_to_output",  # grad_norm / the output row's grad_norm
    "update_ratio",  # |lr dL/dW| / |W|, Frobenius norms
    "mean_abs_fprime",  # E|f'(z)| over batch and units
    "mean_sq_fprime",  # E[f'(z)^2]: the theory's input
    "saturated_frac",  # share of (sample, unit) pairs with |f'(z)| < level * max f' (saturating ops)
    "dead_frac",  # share of units at or below the ReLU threshold for every sample (ReLU family)
    "preact_rms",  # RMS of z: the forward signal that decides saturation
    "input_rms",  # RMS of the layer's input: dW = input^T delta, so dW can stay flat where delta vanishes
)
# The order a summary names them in (a spec's verdict is the first its rows have). dead and zero-gradient
# are findings, never `ok`: a layer whose dW is exactly zero over the batch for every initialisation cannot
# learn by gradient. dead comes first: dead units also zero the dW of the rows around them (zero-gradient
# rows with "nothing flows back" or "its input is zero"), so it names the cause. `-dW` verdicts judge the
# weight gradient (dW rms over the output row's); `-delta` ones the backpropagated delta where dW is in bounds.
VERDICTS = ("dead", "zero-gradient", "saturated", "vanishing-dW", "exploding-dW", "vanishing-delta", "exploding-delta", "ok")


@dataclass(frozen=True)
class Site:
    """One row: a layer with parameters and the activations between it and the next layer (its f).

    `dense` is the row's layer (a DenseLayer in the seeds' networks; a conv, norm, attention or
    projection layer otherwise -- the name stays for the seeds' code and tests).
    """

    dense: Any
    chain: tuple[ActivationLayer, ...]
    weight_var: float  # Var[W] of the layer's init scheme (NaN: no random weight, e.g. a norm's scale)
    dead_threshold: float | None  # ReLU family: f' = 0 at or below it
    fprime_max: float | None  # max |f'| of the chain, when every op declares one
    saturates: bool
    zero_derivative: bool = False  # an op of the chain has f' = 0 almost everywhere (step)
    kind: str = "dense"  # dense, or the op's name (conv2d, batchnorm, layernorm, attention, ...)
    weights: tuple[str, ...] = ()  # parameters whose gradient is `grad_norm` (default: the dense weight)
    back_fan: float | None = None  # n of the theory when this layer is the *next* one: dense units, a conv's mean taps
    follows: Any = None  # the layer right after the chain in the same list (theory needs it to be the next row's)
    unit_axis: int = -1  # the axis of a unit (feature, channel) in (batch, *out_shape): what `dead` is per
    init_name: str | None = None

    @property
    def layer(self):
        return self.dense

    @property
    def name(self) -> str:
        return self.dense.name

    @property
    def units(self) -> int:
        if isinstance(self.dense, DenseLayer):
            return self.dense.n_out
        return int(self.dense.out_shape[self.unit_axis - 1 if self.unit_axis > 0 else self.unit_axis])

    @property
    def n_in(self) -> int:
        if isinstance(self.dense, DenseLayer):
            return self.dense.n_in
        return int(self.dense.in_shape[self.unit_axis - 1 if self.unit_axis > 0 else self.unit_axis])

    @property
    def weight_names(self) -> tuple[str, ...]:
        return self.weights or (self.dense.weight,)

    @property
    def activation(self) -> str:
        return "+".join(a.op.name for a in self.chain) or "linear"

    @property
    def elementwise(self) -> bool:
        return all(a.op.elementwise for a in self.chain)


@dataclass(frozen=True)
class Observation:
    """What one forward + backward pass shows at one row (float64 copies)."""

    z: np.ndarray  # the layer's output (pre-activation), (batch, *out_shape)
    delta: np.ndarray  # dL/dz, same shape
    weight: np.ndarray  # the row's weights (several, e.g. attention's q/k/v/o: flattened and joined)
    weight_grad: np.ndarray
    fprime: np.ndarray | None  # f'(z) of the chain, elementwise; None when not elementwise (softmax)
    x: np.ndarray | None = None  # the layer's input (what dW multiplies delta by)


CUSTOM_REFUSED = ("gradlab stats measures dense, conv, normalisation, attention, residual and activation layers; "
                  "this one is a custom layer (check it with `gradlab check`, or drop it from the stats spec)")
CONV_OPS = ("conv1d", "conv2d")  # the op layers the He/Glorot theory covers (as the layer after a row)
_CHANNEL_FIRST = CHANNEL_FIRST_OPS  # a unit is a channel, axis 1 of (batch, C, *spatial) (gradlab.memory counts their work so)


def _conv_back_fan(layer: OpLayer) -> float:
    """The mean number of (output channel, kernel tap) pairs that reach one input element of a conv.

    Its own backward with every weight 1 and dL/dy = 1 counts them per input element: dL/dx_i is the
    count (padding taps reach no input). (channels / groups) x kernel area x positions out / positions in,
    less the taps that land on padding.
    """
    ones = {f"{layer.name}.{k}": np.ones(info.shape) for k, info in layer.infos.items()}
    x = np.zeros((1,) + tuple(layer.in_shape))
    gx, _ = layer.backward(ones, x, layer.forward(ones, x), np.ones((1,) + tuple(layer.out_shape)))
    return float(np.mean(gx))


def _site(layer, chain: list, follows, net: Network, init) -> Site:
    hps = [a.hyper(net.params) for a in chain]
    maxima = [a.op.max_fprime(hp) for a, hp in zip(chain, hps)]
    first_dead = chain[0].op.dead_threshold if chain else None
    common = dict(
        chain=tuple(chain),
        dead_threshold=float(first_dead(hps[0])) if first_dead else None,
        fprime_max=float(np.prod(maxima)) if all(m is not None for m in maxima) else None,
        saturates=any(a.op.saturates for a in chain),
        zero_derivative=any(a.op.zero_derivative for a in chain),
        follows=follows,
    )
    if isinstance(layer, DenseLayer):
        li = layer.init
        fan_in = layer.n_in + (1 if layer.bias == "folded" else 0)
        var = init_op.variance(li.scheme, fan_in, layer.n_out, li.std) if li is not None else math.nan
        return Site(dense=layer, weight_var=var, back_fan=layer.n_out, init_name=li.scheme if li is not None else None, **common)
    name = layer.op.name
    local = [k for k in layer.infos if k == "weight" or k.endswith(".weight")] or list(layer.infos)
    infos = [layer.infos[k] for k in local]
    random = [i for i in infos if i.init == "weight"]
    if random and init is not None:
        var = init_op.variance(init.scheme, random[0].fan_in, random[0].fan_out, init.std)
        init_name = init.scheme
    else:
        var, init_name = math.nan, (infos[0].init if infos and not random else None)
    return Site(dense=layer, weight_var=var, kind=name, weights=tuple(f"{layer.name}.{k}" for k in local),
                back_fan=_conv_back_fan(layer) if name in CONV_OPS else None,
                unit_axis=1 if name in _CHANNEL_FIRST and len(layer.out_shape) > 1 else -1, init_name=init_name, **common)


def _collect(layers, net: Network, init, out: list) -> None:
    for i, layer in enumerate(layers):
        if isinstance(layer, CustomLayer):
            raise GradlabError(f"{layer.path}: {CUSTOM_REFUSED}")
        if isinstance(layer, ResidualLayer):
            _collect(layer.layers, net, init, out)
            if layer.projection is not None:
                out.append(_site(layer.projection, [], None, net, init))
            continue
        if isinstance(layer, ActivationLayer) or not layer.param_names:
            continue
        chain = []
        for nxt in layers[i + 1:]:
            if not isinstance(nxt, ActivationLayer):
                break
            chain.append(nxt)
        k = i + 1 + len(chain)
        out.append(_site(layer, chain, layers[k] if k < len(layers) else None, net, init))


def sites(net: Network, init=None) -> list[Site]:
    """The rows of `net`: each layer with parameters (nested ones included, in execution order) with
    the activation chain that follows it. `init` is the network's InitSpec (op layers are drawn by it)."""
    out: list[Site] = []
    _collect(net.layers, net, init, out)
    if not out:
        raise GradlabError(f"{net.name}: gradlab stats needs at least one layer with parameters (dense, conv, norm, attention)")
    return out


def chain_fprime(site: Site, params, z: np.ndarray, outputs: list | None = None) -> np.ndarray | None:
    """f'(z) of the site's activation chain: its hand-written VJP applied to ones.

    `outputs`, when given, are the chain's forward values (backprop already has them).
    """
    if not site.elementwise:
        return None  # softmax: a full Jacobian, no per-unit derivative
    inputs = [z] + list(outputs or [])
    for act in site.chain[len(inputs) - 1:]:
        inputs.append(act.forward(params, inputs[-1]))
    grad = np.ones_like(z)
    for k in range(len(site.chain) - 1, -1, -1):
        act = site.chain[k]
        grad, _ = act.op.backward(inputs[k], inputs[k + 1], grad, act.hyper(params))
    return np.asarray(grad, dtype=np.float64)


def _inside(block: ResidualLayer, params, x, g, seen: dict) -> None:
    """(input, output, dL/d output) of every member of a residual block, as ResidualLayer.backward recurses."""
    hs = [x]
    for layer in block.layers:
        hs.append(layer.forward(params, hs[-1]))
    grad = g
    for i in range(len(block.layers) - 1, -1, -1):
        layer = block.layers[i]
        seen[layer.name] = (hs[i], hs[i + 1], grad)
        if isinstance(layer, ResidualLayer):
            _inside(layer, params, hs[i], grad, seen)
        grad, _ = layer.backward(params, hs[i], hs[i + 1], grad)
    if block.projection is not None:
        seen[block.projection.name] = (x, block.projection.forward(params, x), g)  # the block's dL/dy reaches P x as is


def passes(net: Network) -> tuple[Any, dict]:
    """One analytic forward + backward pass: (backprop, {layer name: (input, output, dL/d output)}) for every layer."""
    bp = backprop(net)
    seen = {}
    for i, layer in enumerate(net.layers):
        seen[layer.name] = (bp.inputs[i], bp.inputs[i + 1], bp.grad_outputs[i])
        if isinstance(layer, ResidualLayer):
            _inside(layer, net.params, bp.inputs[i], bp.grad_outputs[i], seen)
    return bp, seen


def _joined(arrays) -> np.ndarray:
    arrays = [np.asarray(a, dtype=np.float64) for a in arrays]
    return arrays[0] if len(arrays) == 1 else np.concatenate([a.ravel() for a in arrays])


def observe(net: Network, layer_sites: list[Site]) -> list[Observation]:
    """One analytic forward + backward pass, cut at each row's output (its pre-activation)."""
    with np.errstate(all="ignore"):  # overflow shows up as non-finite deltas, reported by `measure`
        bp, seen = passes(net)
        out = []
        for s in layer_sites:
            x, z, delta = seen[s.name]
            out.append(Observation(
                z=np.asarray(z, dtype=np.float64),
                delta=np.asarray(delta, dtype=np.float64),
                weight=_joined(net.params[w] for w in s.weight_names),
                weight_grad=_joined(bp.grads[w] for w in s.weight_names),
                fprime=chain_fprime(s, net.params, z, [seen[a.name][1] for a in s.chain]),
                x=np.asarray(x, dtype=np.float64),
            ))
    return out


def _dead_frac(z: np.ndarray, threshold: float, axis: int) -> float:
    """Share of units (features, or channels on a channel-first output) at or below `threshold` for every sample and position."""
    units = np.moveaxis(z, axis, -1)
    return float(np.mean(np.all(units.reshape(-1, units.shape[-1]) <= threshold, axis=0)))


def _rms(a: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(a)))) if a.size else math.nan


def _ratio(num: float, den: float) -> float:
    return num / den if den > 0 else math.nan  # 0/0: nothing flows back; not a number to average


def measure(layer_sites: list[Site], obs: list[Observation], *, lr: float, saturation_level: float) -> dict[str, np.ndarray]:
    """One initialisation's statistics: {key: array over the rows, input side first}."""
    n = len(layer_sites)
    for s, o in reversed(list(zip(layer_sites, obs))):  # output side first: where an overflow starts
        if not (np.all(np.isfinite(o.delta)) and np.all(np.isfinite(o.weight_grad))):
            raise GradlabError(
                f"non-finite gradient at {s.name}: the loss's derivative overflowed "
                "(a probability at exactly 0 or 1?); use smaller initial weights, biases or inputs"
            )
    out = {k: np.full(n, math.nan) for k in STAT_KEYS}
    delta = np.array([_rms(o.delta) for o in obs])
    out["delta_rms"] = delta
    out["ratio_to_output"] = np.array([_ratio(d, delta[-1]) for d in delta])
    out["grad_norm"] = np.array([_rms(o.weight_grad) for o in obs])
    out["grad_ratio_to_output"] = np.array([_ratio(g, out["grad_norm"][-1]) for g in out["grad_norm"]])
    for l, (s, o) in enumerate(zip(layer_sites, obs)):
        if o.x is not None:
            out["input_rms"][l] = _rms(o.x)
        out["update_ratio"][l] = _ratio(lr * float(np.linalg.norm(o.weight_grad)), float(np.linalg.norm(o.weight)))
        out["preact_rms"][l] = _rms(o.z)
        if o.fprime is not None:
            out["mean_abs_fprime"][l] = float(np.mean(np.abs(o.fprime)))
            out["mean_sq_fprime"][l] = float(np.mean(np.square(o.fprime)))
            if s.saturates and s.fprime_max:
                out["saturated_frac"][l] = float(np.mean(np.abs(o.fprime) < saturation_level * s.fprime_max))
        if s.dead_threshold is not None:
            out["dead_frac"][l] = _dead_frac(o.z, s.dead_threshold, s.unit_axis)
        if l + 1 < n:
            nxt = layer_sites[l + 1]
            out["factor"][l] = _ratio(delta[l], delta[l + 1])
            # He/Glorot only where the next row is a dense or conv layer fed by this row's chain directly
            if nxt.back_fan is not None and s.follows is not None and s.follows is nxt.dense:
                out["theory_factor"][l] = math.sqrt(nxt.back_fan * nxt.weight_var * out["mean_sq_fprime"][l])
    return out


def geomean(values: np.ndarray) -> float:
    """Geometric mean of the finite entries (a zero factor makes it zero)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return math.nan
    if np.any(v <= 0):
        return 0.0
    return float(np.exp(np.mean(np.log(v))))


def all_zero(mean: dict[str, float]) -> bool:
    """delta, dW and f'(z) exactly zero over the batch for every initialisation (their means are of non-negative values)."""
    return all(mean.get(k) == 0.0 for k in ("delta_rms", "grad_norm", "mean_abs_fprime"))


def layer_verdict(mean: dict[str, float], cfg, *, zero_derivative: bool = False) -> str:
    """The first that applies of `VERDICTS`; else ok (NaN never triggers).

    - zero-gradient / dead: delta, dW and f' all exactly zero: `zero-gradient` when the activation's
      derivative is zero almost everywhere (step: no weights make it learn), else `dead`;
    - dead: at least `cfg.dead_frac` of the units off for the whole batch (ReLU family);
    - zero-gradient: dW exactly zero while delta or f' is not (nothing reaches the weights): never ok;
    - saturated: at least `cfg.saturated_frac` of (sample, unit) pairs saturated;
    - vanishing-dW / exploding-dW: dW RMS over the output row's below `cfg.vanishing_ratio` / above
      `cfg.exploding_ratio`: the weight gradient itself is out of scale;
    - vanishing-delta / exploding-delta: delta's RMS over the output row's crosses the same thresholds
      while dW's ratio does not: the backpropagated signal is out of scale, the weight gradient is not.
    """
    if all_zero(mean):
        return "zero-gradient" if zero_derivative else "dead"
    if mean.get("dead_frac", math.nan) >= cfg.dead_frac:
        return "dead"
    if mean.get("grad_norm") == 0.0:
        return "zero-gradient"
    if mean.get("saturated_frac", math.nan) >= cfg.saturated_frac:
        return "saturated"
    for key, quantity in (("grad_ratio_to_output", "dW"), ("ratio_to_output", "delta")):
        ratio = mean.get(key, math.nan)
        if ratio < cfg.vanishing_ratio:
            return f"vanishing-{quantity}"
        if ratio > cfg.exploding_ratio:
            return f"exploding-{quantity}"
    return "ok"


def zero_reason(mean: dict[str, float], site: Site) -> str | None:
    """Why a row's dW is exactly zero for every initialisation (None when it is not), as far as the numbers show."""
    if mean.get("grad_norm") != 0.0:
        return None
    if all_zero(mean):
        if site.zero_derivative:
            return f"{site.activation} has f′ = 0 almost everywhere"
        if site.dead_threshold is not None:
            return f"{site.activation} off for every unit and sample"
        return "f′(z) = 0 for every unit and sample"
    if mean.get("delta_rms") == 0.0:
        return "nothing flows back from the rows above (δ = 0)"
    if mean.get("input_rms") == 0.0:
        return "its input is zero for every sample"
    return "δ ≠ 0 and its input ≠ 0, yet their product is zero"


@dataclass(frozen=True)
class LayerStats:
    name: str  # the layer's parameter prefix: layers.<i>, layers.<i>.layers.<j>, layers.<i>.projection
    index: int  # its index in its own list of layers (the block's, for a nested one)
    n_in: int  # input features (channels, for conv and batch/group norm)
    units: int  # output features (channels)
    activation: str  # the activation chain after it; linear when none
    init: str
    weight_var: float
    mean: dict[str, float]
    std: dict[str, float]
    verdict: str
    kind: str = "dense"  # dense, or the op (conv2d, batchnorm, layernorm, groupnorm, attention, ...); the table's label

    def to_dict(self) -> dict:
        d = {"layer": self.name, "index": self.index, "n_in": self.n_in, "units": self.units,
             "activation": self.activation, "init": self.init, "weight_var": _finite(self.weight_var)}
        for k in STAT_KEYS:
            d[f"{k}_mean"] = _finite(self.mean[k])
            d[f"{k}_std"] = _finite(self.std[k])
        d["verdict"] = self.verdict
        return d


@dataclass(frozen=True)
class StatsResult:
    path: str
    name: str
    loss: str
    seeds: tuple[int, ...]
    batch: int
    config: dict  # the stats section in force (lr and thresholds), after overrides
    layers: tuple[LayerStats, ...]
    summary: dict = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        return self.summary["verdict"]

    def to_dict(self) -> dict:
        return {
            "spec": self.path,
            "name": self.name,
            "loss": self.loss,
            "seeds": list(self.seeds),
            "batch": self.batch,
            "config": self.config,
            "layers": [l.to_dict() for l in self.layers],
            "summary": {k: (_finite(v) if isinstance(v, float) else v) for k, v in self.summary.items()},
        }

    def rows(self) -> list[dict]:
        """One flat dict per layer (CSV, DataFrame)."""
        return [{"spec": self.path, "name": self.name, **l.to_dict()} for l in self.layers]


def _finite(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def _mean_std(values) -> tuple[float, float]:
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return math.nan, math.nan
    return float(np.mean(v)), float(np.std(v, ddof=1)) if v.size > 1 else 0.0


def _summary(layer_stats: list[LayerStats], per_seed: list[dict[str, np.ndarray]], layer_sites: list[Site]) -> dict:
    flags = {v: [l.name for l in layer_stats if l.verdict == v] for v in VERDICTS[:-1]}
    verdict = next((v for v in VERDICTS[:-1] if flags[v]), "ok")
    out: dict = {"verdict": verdict, "flags": {k: v for k, v in flags.items() if v}}
    # delta and dW exactly zero for every initialisation (kept for readers of earlier documents)
    out["zero_layers"] = [l.name for l in layer_stats if l.mean["delta_rms"] == 0.0 and l.mean["grad_norm"] == 0.0]
    # every row whose dW is exactly zero for every initialisation, with the reason the numbers show
    reasons = {l.name: zero_reason(l.mean, s) for l, s in zip(layer_stats, layer_sites)}
    out["zero_weight_gradient"] = {name: why for name, why in reasons.items() if why is not None}
    # measured and theoretical factors averaged over the same rows: those with both in every initialisation
    both = np.all([np.isfinite(m["factor"]) & np.isfinite(m["theory_factor"]) for m in per_seed], axis=0)
    out["theory_rows"] = [l.name for l, b in zip(layer_stats, both) if b]
    out["factor_rows"] = int(np.sum(np.any([np.isfinite(m["factor"]) for m in per_seed], axis=0)))
    series = {
        "factor_geomean": [geomean(m["factor"]) for m in per_seed],  # every row with a measured factor
        "factor_geomean_theory_rows": [geomean(np.where(both, m["factor"], math.nan)) for m in per_seed],
        "theory_factor_geomean": [geomean(np.where(both, m["theory_factor"], math.nan)) for m in per_seed],
        "first_last_delta_ratio": [m["ratio_to_output"][0] for m in per_seed],
        "output_delta_rms": [m["delta_rms"][-1] for m in per_seed],
    }
    for k, values in series.items():
        out[k], out[f"{k}_std"] = _mean_std(values)
    return out


OPTION_KEYS = {"seeds": "--seeds", "lr": "--lr", "batch": "--batch"}


def check_option(key: str, value, path: str | None = "<spec>"):
    """A command-line override, validated: an integer >= 1 (seeds, batch) or a finite number > 0 (lr).

    Errors name the spec file and the option (`spec.yaml: --lr: expected a finite number > 0, got nan`);
    with `path` None (several specs share the option) only the option.
    Text is parsed here, so the command line hands it over as typed.
    """
    if key == "lr":
        number = _parse(value, float)
        if number is None or not (math.isfinite(number) and number > 0):
            raise _option_error(path, "--lr", f"expected a finite number > 0, got {_show(value, float)}")
        return number
    number = _parse(value, int)
    if number is None or number < 1:
        raise _option_error(path, OPTION_KEYS[key], f"expected an integer >= 1, got {_show(value, int)}")
    return number


def _option_error(path: str | None, option: str, message: str) -> GradlabError:
    return GradlabError(f"{option}: {message}") if path is None else SpecError(path, option, message)


def _parse(value, kind):
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)) and (kind is float or isinstance(value, int)):
        return kind(value)
    try:
        return kind(str(value).strip())
    except ValueError:
        return None


def _show(value, kind) -> str:
    """The value as typed when it reads as a number of `kind`, else quoted (and clipped)."""
    if isinstance(value, str) and _parse(value, kind) is not None:
        return value.strip()
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def with_overrides(spec, *, seeds: int | None = None, lr: float | None = None, batch: int | None = None, path: str = "<spec>"):
    """The spec's `stats` section with command-line overrides applied (validated again)."""
    update = {k: check_option(k, v, path) for k, v in {"seeds": seeds, "lr": lr, "batch": batch}.items() if v is not None}
    if not update:
        return spec.stats
    from pydantic import ValidationError

    try:
        return type(spec.stats).model_validate({**spec.stats.model_dump(), **update})
    except ValidationError as exc:
        err = exc.errors()[0]
        key = OPTION_KEYS.get(str(err["loc"][0]), str(err["loc"][0])) if err["loc"] else "stats"
        raise SpecError(path, key, f"{err['msg']}, got {err['input']!r}") from None


def run(spec, *, path: str = "<spec>", seeds: int | None = None, lr: float | None = None, batch: int | None = None) -> StatsResult:
    """Per-layer statistics of `spec` over `seeds` initialisations (CLI values override `stats:`).

    Memory and work are bounded before anything is drawn (gradlab.memory.check_stats): a refusal
    names the option (`--seeds`, `--batch`) or the spec key it came from.
    """
    from .memory import check_stats

    cfg = with_overrides(spec, seeds=seeds, lr=lr, batch=batch, path=path)
    check_stats(spec, path, seeds=cfg.seeds, batch=cfg.batch, seeds_key="--seeds" if seeds is not None else "stats.seeds",
                batch_key="--batch" if batch is not None else None)
    if cfg.batch is not None and cfg.batch != spec.input.batch:
        spec = spec.model_copy(update={"input": spec.input.model_copy(update={"batch": cfg.batch})})
    seed_values = tuple(spec.seed + k for k in range(cfg.seeds))
    per_seed = []
    layer_sites: list[Site] = []
    for seed in seed_values:
        net = build(spec, seed=seed)
        custom = [l for l in net.all_layers() if isinstance(l, CustomLayer)]
        if custom:
            raise SpecError(path, custom[0].path, CUSTOM_REFUSED)
        layer_sites = sites(net, spec.network.init)
        per_seed.append(measure(layer_sites, observe(net, layer_sites), lr=cfg.lr, saturation_level=cfg.saturation_level))
    layer_stats = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for l, s in enumerate(layer_sites):
            mean, std = {}, {}
            for k in STAT_KEYS:
                mean[k], std[k] = _mean_std([m[k][l] for m in per_seed])
            layer_stats.append(LayerStats(
                name=s.name, index=s.dense.index, n_in=s.n_in, units=s.units, activation=s.activation,
                init=s.init_name or "?", weight_var=s.weight_var,
                mean=mean, std=std, verdict=layer_verdict(mean, cfg, zero_derivative=s.zero_derivative), kind=s.kind,
            ))
        summary = _summary(layer_stats, per_seed, layer_sites)
    config = cfg.model_dump()
    config["batch"] = spec.input.batch
    return StatsResult(
        path=path, name=spec.name or "spec", loss=f"{spec.loss.fn}/{spec.loss.effective_reduction}",
        seeds=seed_values, batch=spec.input.batch, config=config, layers=tuple(layer_stats), summary=summary,
    )
