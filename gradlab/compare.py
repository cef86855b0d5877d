"""Gradients x Gradients -> one Comparison per (parameter, engine pair, device).

The verdict for element i of a candidate c against a reference r:
    |c_i - r_i| <= atol + rtol * |r_i| + SAFETY * (E_i(c) + E_i(r) + err_i)
where E_i is the rounding bound of a correct backward pass in that engine's dtype
(gradlab.tolerance: the error model) and err_i the numeric engine's own error estimate
for that element. rtol = atol = 0 unless the spec overrides them; where no error model is
available (a user's layer) the per-dtype TOLERANCES stand in.
Elements whose difference stencil straddled a kink are counted and listed, never judged.
max_rel_err is max_i |c_i - r_i| / max(|c_i|, |r_i|, 1e-8 * max_j |r_j|): elementwise,
with a floor so that elements a hundred-millionth of the tensor's scale do not dominate.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np

from .gradients import Gradients

# Numbers that steer a verdict live here, keyed by the candidate's dtype.
TOLERANCES = {
    "float64": {"rtol": 1e-6, "atol": 1e-10},
    "float32": {"rtol": 2e-3, "atol": 1e-5},
}
SAFETY = 4.0  # how many times the modelled error (rounding bound + numeric estimate) a discrepancy may reach
REL_FLOOR = 1e-8
MAX_LISTED_KINKS = 20
N_WORST = 5  # elements listed per tensor, worst first
# "Worst", one definition for every engine pair, every table and every plot: elements that
# exceed their tolerance come first, ranked by relative error (the quantity `max rel` reports
# and the heat map draws); ties (to 3 significant digits) go to the larger |c - r|. Where no
# element fails, the same ranking runs over all of them.
WORST_DEFINITION = "failing elements first, by largest relative error |c − r| / max(|c|, |r|, floor); ties: larger |c − r|"
WORST_HEADER = "worst (max rel)"  # the table column that names the first of them
# A zero-gradient row's note when nothing more is known: what was seen, no guessed cause (gradlab.zeros.NEUTRAL).
ZERO_NOTE = "exactly 0 in every element, by both engines, at this spec's point"


@dataclass(frozen=True)
class Comparison:
    spec: str
    parameter: str
    reference: str
    candidate: str
    device: str
    dtype: str
    status: str  # pass | fail | skipped | zero-gradient | kink
    shape: tuple = ()
    max_abs_err: float = float("nan")
    max_rel_err: float = float("nan")
    cosine: float = float("nan")
    worst_index: tuple | None = None
    worst_reference: float = float("nan")
    worst_candidate: float = float("nan")
    mismatched: int = 0
    size: int = 0
    kinks: int = 0
    kink_indices: list = field(default_factory=list)
    numeric_err: float = float("nan")  # the numeric engine's largest error estimate on this tensor
    rtol: float = float("nan")
    atol: float = float("nan")
    note: str = ""
    # The N_WORST elements that use up most of their tolerance: {index, reference, candidate, abs_err, numeric_err, bound}.
    worst: list = field(default_factory=list)
    # Elementwise relative error (shape of the tensor, kinks as NaN, elements within their tolerance masked);
    # kept for failing rows only, not serialised.
    rel_err_map: object = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict:
        # field by field, not asdict: that deep-copies every field (the service serialises each tensor's row twice a run)
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "rel_err_map"}
        d["worst"] = [dict(w) for w in self.worst]
        d["shape"] = list(self.shape)
        d["worst_index"] = list(self.worst_index) if self.worst_index is not None else None
        d["kink_indices"] = [list(i) for i in self.kink_indices]
        # NaN (not computed, e.g. a skipped row) becomes null: strict JSON has no NaN.
        return {k: None if isinstance(v, float) and v != v else v for k, v in d.items()}


def tolerance(dtype: str, override=None, *, model: bool = True) -> dict[str, float]:
    """rtol/atol on top of the error model (0 by default), or the per-dtype fallback without one."""
    tol = {"rtol": 0.0, "atol": 0.0} if model else dict(TOLERANCES[dtype])
    if override is not None:
        for key in ("rtol", "atol"):
            value = getattr(override, key, None)
            if value is not None:
                tol[key] = value
    return tol


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 and nb == 0:
        return 1.0
    if na == 0 or nb == 0:
        return 0.0
    return float(np.dot(a, b) / (na * nb))


def _sig3(x: np.ndarray) -> np.ndarray:
    """x rounded to 3 significant digits: noise below that must not reorder the worst elements."""
    x = np.asarray(x, dtype=float)
    mag = np.where(x > 0, 10.0 ** np.floor(np.log10(np.where(x > 0, x, 1.0))), 1.0)
    return np.round(x / mag, 2) * mag


def worst_order(rel: np.ndarray, diff: np.ndarray, failing: np.ndarray) -> np.ndarray:
    """Element positions, worst first, by WORST_DEFINITION (shared by every engine pair)."""
    return np.lexsort((-diff, -_sig3(rel), ~np.asarray(failing, bool)))


def compare_tensor(
    spec: str,
    name: str,
    ref: Gradients,
    cand: Gradients,
    *,
    tol: dict[str, float],
    rounding: dict[str, dict[str, np.ndarray]] | None = None,
) -> Comparison:
    """Judge one parameter tensor of `cand` against `ref`.

    `rounding[dtype][name]` is the error model's bound for a correct engine computing in dtype.
    """
    device = cand.device if cand.engine == "autograd" else ref.device
    dtype = cand.dtype if cand.engine != "numeric" else ref.dtype
    base = dict(spec=spec, parameter=name, reference=ref.label, candidate=cand.label, device=device, dtype=dtype, rtol=tol["rtol"], atol=tol["atol"])
    skipped = ref.skipped or cand.skipped
    if skipped:
        return Comparison(status="skipped", note=skipped, **base)
    r, c = ref.values[name], cand.values[name]
    shape = tuple(r.shape)
    numeric = ref if ref.error is not None else cand if cand.error is not None else None
    err = numeric.error[name].reshape(-1) if numeric is not None else np.zeros(r.size)
    kink = numeric.kinks[name].reshape(-1) if numeric is not None and numeric.kinks is not None else np.zeros(r.size, bool)
    rf, cf = r.reshape(-1), c.reshape(-1)
    kink_idx = [tuple(int(j) for j in np.unravel_index(i, shape)) for i in np.flatnonzero(kink)[:MAX_LISTED_KINKS]]
    base.update(shape=shape, size=r.size, kinks=int(kink.sum()), kink_indices=kink_idx)
    ok = ~kink
    if not ok.any():
        return Comparison(status="kink", note="every element's stencil straddles a kink", **base)
    model = np.zeros(r.size)
    have_model = rounding is not None
    for g in (ref, cand):
        if g.engine != "numeric":
            bound_g = (rounding or {}).get(g.dtype, {}).get(name)
            if bound_g is None:
                have_model = False
            else:
                model = model + bound_g.reshape(-1)
    if not have_model and tol["rtol"] == 0 and tol["atol"] == 0:
        tol = {**tol, **TOLERANCES[dtype]}
        base.update(rtol=tol["rtol"], atol=tol["atol"])
    rk, ck, en = rf[ok], cf[ok], err[ok]
    ek = en + model[ok]
    diff = np.abs(ck - rk)
    if not np.all(np.isfinite(ck)) or not np.all(np.isfinite(rk)):
        bad = np.flatnonzero(ok)[np.flatnonzero(~(np.isfinite(ck) & np.isfinite(rk)))[0]]
        return Comparison(status="fail", note="non-finite gradient", worst_index=tuple(int(j) for j in np.unravel_index(bad, shape)),
                          worst_reference=float(rf[bad]), worst_candidate=float(cf[bad]), mismatched=int((~np.isfinite(ck) | ~np.isfinite(rk)).sum()), **base)
    bound = tol["atol"] + tol["rtol"] * np.abs(rk) + SAFETY * ek
    scale = max(float(np.max(np.abs(rk))), float(np.max(np.abs(ck))))
    rel = diff / np.maximum(np.maximum(np.abs(rk), np.abs(ck)), max(REL_FLOOR * scale, np.finfo(float).tiny))
    ok_flat = np.flatnonzero(ok)
    mismatched = int(np.sum(diff > bound))
    order = worst_order(rel, diff, diff > bound)[:N_WORST]
    worst_flat = int(ok_flat[order[0]])
    worst = [
        {"index": [int(j) for j in np.unravel_index(int(ok_flat[k]), shape)], "reference": float(rk[k]), "candidate": float(ck[k]),
         "abs_err": float(diff[k]), "numeric_err": float(en[k]) if numeric is not None else None, "bound": float(bound[k])}
        for k in order
    ]
    rel_map = None
    if mismatched:
        rel_map = np.full(r.size, np.nan)
        rel_map[ok_flat] = rel
        within = np.zeros(r.size, bool)
        within[ok_flat] = diff <= bound
        rel_map = np.ma.masked_array(rel_map.reshape(shape), mask=within.reshape(shape))
    if mismatched:
        status = "fail"
    elif scale == 0.0:
        status = "zero-gradient"
    else:
        status = "pass"
    return Comparison(
        status=status,
        max_abs_err=float(diff.max()),
        max_rel_err=float(rel.max()),
        cosine=_cosine(ck, rk),
        worst_index=tuple(int(j) for j in np.unravel_index(worst_flat, shape)),
        worst_reference=float(rf[worst_flat]),
        worst_candidate=float(cf[worst_flat]),
        mismatched=mismatched,
        numeric_err=float(err.max()) if numeric is not None else float("nan"),
        note=ZERO_NOTE if status == "zero-gradient" else "",  # the runner replaces it by the cause, where gradlab.zeros finds one
        worst=worst,
        rel_err_map=rel_map,
        **base,
    )


def compare(spec: str, ref: Gradients, cand: Gradients, names: list[str], *, tol: dict[str, float], rounding=None) -> list[Comparison]:
    return [compare_tensor(spec, n, ref, cand, tol=tol, rounding=rounding) for n in names]
