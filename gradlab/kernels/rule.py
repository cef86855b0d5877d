"""The FlashAttention rule for one tensor (an output or a gradient).

    err_cand = max|cand - ref|            the candidate, run in the low dtype
    err_low  = max|ref_low - ref|         the reference itself, run in the low dtype
    noise    = 2 * max|(ref + 0.3 - 0.3) - ref|, computed in the low dtype (its rounding at the tensor's scale),
               at least one low-dtype ulp at max|ref| (a tensor of a few elements can get 0 by luck)
    pass     when err_cand <= factor * err_low + noise

`ref` is the reference run in float64 (or --ref-dtype). The candidate may be as wrong as the reference
implementation is when it runs in the same low dtype, times a fudge factor, plus one rounding step.
In float64 (no lower precision to calibrate against) the noise is gradlab's float64 atol + rtol * max|ref|.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from ..compare import TOLERANCES

NOISE_SHIFT = 0.3  # FlashAttention-3's constant: (x + 0.3 - 0.3) - x is x's rounding error at scale max(|x|, 0.3)
# --dtype float64 (for --double-backward's differences): the low-precision reference is the reference itself
# (err_low = 0), so nothing calibrates the bound; the noise is then gradlab's float64 tolerance (the one
# `gradlab check` and `gradlab audit` use for float64 gradients): atol + rtol * max|ref|.
FLOAT64 = TOLERANCES["float64"]


def ratio(err: float, bound: float) -> float:
    """err / bound: below 1 passes; 0/0 is 0, x/0 is inf."""
    if err == 0:
        return 0.0
    return err / bound if bound > 0 else math.inf


@dataclass(frozen=True)
class RuleCheck:
    """The verdict on one tensor, with the numbers behind it."""

    name: str  # "output", "output[1]", "grad x", "grad weight"
    shape: tuple
    err_cand: float
    err_low: float
    noise: float
    factor: float
    index: tuple = ()
    cand: float = math.nan  # the three values at the worst element
    ref: float = math.nan
    ref_low: float = math.nan
    note: str = ""
    failed_override: bool = field(default=False)  # a non-finite candidate where the reference is finite
    unsupported: str = ""  # why the candidate cannot produce this tensor (double backward, jvp): not judged, not a pass

    @property
    def bound(self) -> float:
        return self.factor * self.err_low + self.noise

    @property
    def ratio(self) -> float:
        return ratio(self.err_cand, self.bound)

    @property
    def passed(self) -> bool:
        return not self.failed_override and (bool(self.unsupported) or self.err_cand <= self.bound)

    def to_dict(self) -> dict[str, Any]:
        def num(x):
            return x if math.isfinite(x) else str(x)

        return {"name": self.name, "shape": list(self.shape), "passed": None if self.unsupported else self.passed, "err_cand": num(self.err_cand),
                "err_low": num(self.err_low), "noise": num(self.noise), "factor": self.factor, "bound": num(self.bound),
                "ratio": num(self.ratio), "worst": {"index": list(self.index), "cand": num(self.cand), "ref": num(self.ref),
                                                    "ref_low": num(self.ref_low)}, "note": self.note,
                "unsupported": self.unsupported or None}


def noise(ref: torch.Tensor, low_dtype: torch.dtype) -> float:
    """2 * max|(ref + 0.3 - 0.3) - ref| with every step in `low_dtype`."""
    r = ref.detach().to(low_dtype)
    if r.numel() == 0:
        return 0.0
    shifted = (r + NOISE_SHIFT) - NOISE_SHIFT
    d = (shifted - r).abs().double()
    d = d[torch.isfinite(d)]
    fa = 2.0 * float(d.max()) if d.numel() else 0.0
    # On a large tensor the line above comes to about one ulp at max|ref|; on a tensor of a few elements it can
    # be 0 by luck (x + 0.3 - 0.3 happens to be exact), so it is floored at that one ulp.
    finite = r[torch.isfinite(r)].double().abs()
    top = float(finite.max()) if finite.numel() else 0.0
    floor = FLOAT64["atol"] + FLOAT64["rtol"] * top if low_dtype == torch.float64 else 0.0
    return max(fa, ulp(top, low_dtype), floor)


def ulp(x: float, dtype: torch.dtype) -> float:
    """The spacing of `dtype` at |x| (its smallest normal spacing below the normal range)."""
    info = torch.finfo(dtype)
    x = max(abs(x), info.tiny)
    return 2.0 ** math.floor(math.log2(x)) * info.eps if math.isfinite(x) else math.inf


def judge(name: str, cand: torch.Tensor, ref: torch.Tensor, ref_low: torch.Tensor, *, low_dtype: torch.dtype, factor: float = 2.0) -> RuleCheck:
    """Apply the rule to one tensor. Elements where the high-precision reference is not finite are skipped;
    a candidate that is NaN/inf where the reference is finite (and the low-precision reference is not) fails."""
    shape = tuple(ref.shape)
    if tuple(cand.shape) != shape:
        return RuleCheck(name, shape, math.inf, 0.0, 0.0, factor, note=f"candidate shape {tuple(cand.shape)} != reference shape {shape}", failed_override=True)
    c, r, rl = cand.detach().double().cpu(), ref.detach().double().cpu(), ref_low.detach().double().cpu()
    if r.numel() == 0:
        return RuleCheck(name, shape, 0.0, 0.0, 0.0, factor)
    finite = torch.isfinite(r)
    diff_c = torch.where(finite, (c - r).abs(), torch.zeros_like(r))
    diff_l = torch.where(finite, (rl - r).abs(), torch.zeros_like(r))
    note, override = "", False
    bad = finite & ~torch.isfinite(c)
    if bool(bad.any()):
        low_bad = bad & ~torch.isfinite(rl)
        note = f"candidate not finite at {int(bad.sum())} element(s) where the reference is finite"
        override = bool((bad & ~low_bad).any())
        diff_c = torch.where(bad, torch.full_like(r, math.inf), diff_c)
    err_c = float(diff_c.max())
    err_l = float(diff_l.max()) if not bool((finite & ~torch.isfinite(rl)).any()) else math.inf
    flat = int(torch.argmax(torch.nan_to_num(diff_c, posinf=math.inf)).item()) if math.isfinite(err_c) else int(torch.argmax(bad.reshape(-1).int()).item())
    index = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), shape)) if shape else ()
    pick = lambda t: float(t.reshape(-1)[flat])  # noqa: E731
    return RuleCheck(name, shape, err_c, err_l, noise(r, low_dtype), factor, index, pick(c), pick(r), pick(rl), note, override)
