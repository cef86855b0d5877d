"""Vanishing / exploding gradient statistics per dense layer, over several initialisations.

Everything is read from the analytic engine's backprop (no autodiff). For dense layer l
with pre-activation z_l, activation f and delta_l = dL/dz_l, the seeds' recursion is

    delta_l = (W_{l+1}^T delta_{l+1}) (.) f'(z_l)

With independent weights of variance Var[W_{l+1}] and n_{l+1} = units of layer l+1, each
component of W^T delta has variance Var[W] |delta_{l+1}|^2, so the per-unit RMS obeys

    factor_l := rms(delta_l) / rms(delta_{l+1}) ~= sqrt(n_{l+1} Var[W_{l+1}] E[f'(z_l)^2])

(Glorot & Bengio 2010; He et al. 2015). `factor` is how much delta shrinks (< 1) or grows
(> 1) going back one dense layer; it sits on the row of the *lower* layer l, the output
layer has none. E[f'(z)^2] is measured on the batch; Var[W] comes from the init scheme.

Each statistic is computed per initialisation (spec.seed + k, k < seeds) and reported as
mean and standard deviation over the initialisations.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np

from .engines.analytic import backprop
from .errors import GradlabError, SpecError
from .network import ActivationLayer, DenseLayer, Network, build
from .ops import init as init_op

# Reported for every dense layer, in this order (JSON/CSV add `_mean` and `_std`).
STAT_KEYS = (
    "delta_rms",  # RMS of dL/dz over batch and units
    "ratio_to_output",  # delta_rms / the output layer's delta_rms
    "factor",  # delta_rms / next dense layer's delta_rms (NaN on the output layer)
    "theory_factor",  # sqrt(n_next Var[W_next] E[f'(z)^2])
    "grad_norm",  # RMS of dL/dW
    "update_ratio",  # |lr dL/dW| / |W|, Frobenius norms
    "mean_abs_fprime",  # E|f'(z)| over batch and units
    "mean_sq_fprime",  # E[f'(z)^2]: the theory's input
    "saturated_frac",  # share of (sample, unit) pairs with |f'(z)| < level * max f' (saturating ops)
    "dead_frac",  # share of units at or below the ReLU threshold for every sample (ReLU family)
    "preact_rms",  # RMS of z: the forward signal that decides saturation
)
# most to least specific. zero-gradient and dead (by all-zero) are findings, never `ok`: a layer whose
# delta, dW and f'(z) are exactly zero over the batch for every initialisation cannot learn by gradient.
VERDICTS = ("zero-gradient", "dead", "saturated", "vanishing", "exploding", "ok")


@dataclass(frozen=True)
class Site:
    """One dense layer and the activations between it and the next dense layer (its f)."""

    dense: DenseLayer
    chain: tuple[ActivationLayer, ...]
    weight_var: float  # Var[W] of the layer's init scheme
    dead_threshold: float | None  # ReLU family: f' = 0 at or below it
    fprime_max: float | None  # max |f'| of the chain, when every op declares one
    saturates: bool
    zero_derivative: bool = False  # an op of the chain has f' = 0 almost everywhere (step)

    @property
    def name(self) -> str:
        return f"layers.{self.dense.index}"

    @property
    def units(self) -> int:
        return self.dense.n_out

    @property
    def activation(self) -> str:
        return "+".join(a.op.name for a in self.chain) or "linear"

    @property
    def elementwise(self) -> bool:
        return all(a.op.elementwise for a in self.chain)


@dataclass(frozen=True)
class Observation:
    """What one forward + backward pass shows at one dense layer (float64 copies)."""

    z: np.ndarray  # pre-activation, (batch, units)
    delta: np.ndarray  # dL/dz, (batch, units)
    weight: np.ndarray
    weight_grad: np.ndarray
    fprime: np.ndarray | None  # f'(z) of the chain, elementwise; None when not elementwise (softmax)


def sites(net: Network) -> list[Site]:
    """The dense layers of `net`, each with the activation chain that follows it."""
    out: list[Site] = []
    layers = net.layers
    for i, layer in enumerate(layers):
        if not isinstance(layer, DenseLayer):
            continue
        chain = []
        for nxt in layers[i + 1:]:
            if isinstance(nxt, DenseLayer):
                break
            chain.append(nxt)
        init = layer.init
        fan_in = layer.n_in + (1 if layer.bias == "folded" else 0)
        var = init_op.variance(init.scheme, fan_in, layer.n_out, init.std) if init is not None else math.nan
        hps = [a.hyper(net.params) for a in chain]
        maxima = [a.op.max_fprime(hp) for a, hp in zip(chain, hps)]
        first_dead = chain[0].op.dead_threshold if chain else None
        out.append(Site(
            dense=layer,
            chain=tuple(chain),
            weight_var=var,
            dead_threshold=float(first_dead(hps[0])) if first_dead else None,
            fprime_max=float(np.prod(maxima)) if all(m is not None for m in maxima) else None,
            saturates=any(a.op.saturates for a in chain),
            zero_derivative=any(a.op.zero_derivative for a in chain),
        ))
    if not out:
        raise GradlabError(f"{net.name}: gradlab stats needs at least one dense layer")
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


def observe(net: Network, layer_sites: list[Site]) -> list[Observation]:
    """One analytic forward + backward pass, cut at each dense layer's pre-activation."""
    with np.errstate(all="ignore"):  # overflow shows up as non-finite deltas, reported by `measure`
        bp = backprop(net)
    out = []
    for s in layer_sites:
        i = s.dense.index
        z = bp.inputs[i + 1]  # the output of dense layer i is its pre-activation
        out.append(Observation(
            z=np.asarray(z, dtype=np.float64),
            delta=np.asarray(bp.grad_outputs[i], dtype=np.float64),
            weight=np.asarray(net.params[s.dense.weight], dtype=np.float64),
            weight_grad=np.asarray(bp.grads[s.dense.weight], dtype=np.float64),
            fprime=chain_fprime(s, net.params, z, bp.inputs[i + 2:i + 2 + len(s.chain)]),
        ))
    return out


def _rms(a: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(a)))) if a.size else math.nan


def _ratio(num: float, den: float) -> float:
    return num / den if den > 0 else math.nan  # 0/0: nothing flows back; not a number to average


def measure(layer_sites: list[Site], obs: list[Observation], *, lr: float, saturation_level: float) -> dict[str, np.ndarray]:
    """One initialisation's statistics: {key: array over the dense layers, input side first}."""
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
    for l, (s, o) in enumerate(zip(layer_sites, obs)):
        out["grad_norm"][l] = _rms(o.weight_grad)
        out["update_ratio"][l] = _ratio(lr * float(np.linalg.norm(o.weight_grad)), float(np.linalg.norm(o.weight)))
        out["preact_rms"][l] = _rms(o.z)
        if o.fprime is not None:
            out["mean_abs_fprime"][l] = float(np.mean(np.abs(o.fprime)))
            out["mean_sq_fprime"][l] = float(np.mean(np.square(o.fprime)))
            if s.saturates and s.fprime_max:
                out["saturated_frac"][l] = float(np.mean(np.abs(o.fprime) < saturation_level * s.fprime_max))
        if s.dead_threshold is not None:
            out["dead_frac"][l] = float(np.mean(np.all(o.z <= s.dead_threshold, axis=0)))
        if l + 1 < n:
            nxt = layer_sites[l + 1]
            out["factor"][l] = _ratio(delta[l], delta[l + 1])
            out["theory_factor"][l] = math.sqrt(nxt.units * nxt.weight_var * out["mean_sq_fprime"][l])
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
    """The first that applies of zero-gradient, dead, saturated, vanishing, exploding; else ok (NaN never triggers).

    A layer whose delta, dW and f' are all exactly zero is `zero-gradient` when its activation's
    derivative is zero almost everywhere (step: no weights make it learn), else `dead`.
    """
    if all_zero(mean):
        return "zero-gradient" if zero_derivative else "dead"
    if mean["dead_frac"] >= cfg.dead_frac:
        return "dead"
    if mean["saturated_frac"] >= cfg.saturated_frac:
        return "saturated"
    if mean["ratio_to_output"] < cfg.vanishing_ratio:
        return "vanishing"
    if mean["ratio_to_output"] > cfg.exploding_ratio:
        return "exploding"
    return "ok"


@dataclass(frozen=True)
class LayerStats:
    name: str  # layers.<i> of the dense layer
    index: int
    n_in: int
    units: int
    activation: str
    init: str
    weight_var: float
    mean: dict[str, float]
    std: dict[str, float]
    verdict: str

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


def _summary(layer_stats: list[LayerStats], per_seed: list[dict[str, np.ndarray]]) -> dict:
    flags = {v: [l.name for l in layer_stats if l.verdict == v] for v in VERDICTS[:-1]}
    verdict = next((v for v in VERDICTS[:-1] if flags[v]), "ok")
    out: dict = {"verdict": verdict, "flags": {k: v for k, v in flags.items() if v}}
    # delta and dW exactly zero for every initialisation: nothing flows back (whatever the verdict says why)
    out["zero_layers"] = [l.name for l in layer_stats if l.mean["delta_rms"] == 0.0 and l.mean["grad_norm"] == 0.0]
    series = {
        "factor_geomean": [geomean(m["factor"]) for m in per_seed],
        "theory_factor_geomean": [geomean(m["theory_factor"]) for m in per_seed],
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
        other = [l for l in net.layers if not isinstance(l, (DenseLayer, ActivationLayer))]
        if other:
            raise SpecError(path, f"network.layers[{other[0].index}]", "gradlab stats measures dense and activation layers; "
                            "this one is a custom layer (check it with `gradlab check`, or drop it from the stats spec)")
        layer_sites = sites(net)
        per_seed.append(measure(layer_sites, observe(net, layer_sites), lr=cfg.lr, saturation_level=cfg.saturation_level))
    layer_stats = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for l, s in enumerate(layer_sites):
            mean, std = {}, {}
            for k in STAT_KEYS:
                mean[k], std[k] = _mean_std([m[k][l] for m in per_seed])
            layer_stats.append(LayerStats(
                name=s.name, index=s.dense.index, n_in=s.dense.n_in, units=s.units, activation=s.activation,
                init=s.dense.init.scheme if s.dense.init is not None else "?", weight_var=s.weight_var,
                mean=mean, std=std, verdict=layer_verdict(mean, cfg, zero_derivative=s.zero_derivative),
            ))
        summary = _summary(layer_stats, per_seed)
    config = cfg.model_dump()
    config["batch"] = spec.input.batch
    return StatsResult(
        path=path, name=spec.name or "spec", loss=f"{spec.loss.fn}/{spec.loss.effective_reduction}",
        seeds=seed_values, batch=spec.input.batch, config=config, layers=tuple(layer_stats), summary=summary,
    )
