"""Fixed tolerances against `gradlab compare`'s rule on a fused kernel (issue 13), over many random examples.

Run by hand (not a test):

    python benchmarks/bench_kernels.py                      # 200 examples per dtype, bfloat16 / float16 / float32
    python benchmarks/bench_kernels.py --examples 50 --dtypes bfloat16

For each dtype and each example (sizes and value styles drawn the way `gradlab compare` draws them: rows in
[1, 16], a feature size in [1, 128], values normal / zeros / x100 / x1e-3 / +100 offset), the correct fused
LayerNorm (examples/kernels/layernorm.py:FusedLayerNorm) and the buggy one (BuggyLayerNorm: the
mean(dy * xhat) term dropped from dx) run in the low dtype against one float64 reference and one cotangent,
exactly as `gradlab compare` runs them (gradlab.kernels.execute). Each verdict looks at the output and every
gradient (x, w, b) of the example; an example is flagged when any of them is out of tolerance:

    assert_close     torch.testing.assert_close's defaults for the low dtype (bf16 rtol 1.6e-2 atol 1e-5,
                     fp16 rtol 1e-3 atol 1e-5, fp32 rtol 1.3e-6 atol 1e-5), candidate vs the float64 reference
    gradcheck-style  fixed atol 1e-5, rtol 1e-3 (gradcheck's defaults, as used for float32 kernels)
    loose fixed      fixed atol 5e-2, rtol 5e-2
    gradlab rule     max|cand - ref| <= 2 max|ref_low - ref| + noise (gradlab compare's default)

False alarms: the correct kernel flagged, and torch's own F.layer_norm run in the low dtype flagged (a correct
implementation that rounds more: the rule passes it by construction, err_cand = err_low). Misses: the buggy kernel not flagged, over the examples where the bug
is visible at all (its float64 dx differs from the true one by more than 1e-9 of the gradient's scale; with
a feature size of 1 the dropped term is exactly zero). Then the bf16 softmax cross-entropy example: what the
rule makes of a backward computed entirely in bfloat16.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gradlab.kernels import inputs as I  # noqa: E402
from gradlab.kernels.execute import DTYPES, Config, Pair, forward_backward  # noqa: E402
from gradlab.kernels.rule import judge  # noqa: E402
from gradlab.kernels.targets import load  # noqa: E402

LN = str(ROOT / "examples/kernels/layernorm.py")
CE = str(ROOT / "examples/kernels/softmax_ce.py")
ASSERT_CLOSE = {torch.bfloat16: (1.6e-2, 1e-5), torch.float16: (1e-3, 1e-5), torch.float32: (1.3e-6, 1e-5)}  # (rtol, atol)
FIXED = {"gradcheck-style": (1e-3, 1e-5), "loose fixed": (5e-2, 5e-2)}
VISIBLE = 1e-9  # the bug is visible when |dx_buggy - dx_true| > VISIBLE * max|dx_true| (in float64)


def draw_cases(n: int, seed: int, specs) -> list[I.Case]:
    rng = np.random.default_rng(seed)
    cases = []
    for k in range(n):
        rows = int(rng.integers(1, 17))
        width = int(rng.choice([1, int(rng.integers(2, 129))], p=[0.05, 0.95]))
        style = I.VALUE_STYLES[k % len(I.VALUE_STYLES)]
        cases.append(I.Case(I.resize(specs, {8: rows, 64: width}), style, int(rng.integers(0, 2**16))))
    return cases


def runs(pair: Pair, case: I.Case):
    """(ref, ref_low, cand) Runs on one case, as gradlab compare makes them."""
    cfg = pair.config
    low = I.build(case, cfg.dtype, "cpu")
    ref = forward_backward(pair, pair.reference, cfg.ref_dtype, low, {}, None, case.seed)
    ref_low = forward_backward(pair, pair.reference, cfg.dtype, low, {}, ref.cotangents, case.seed)
    cand = forward_backward(pair, pair.candidate, cfg.dtype, low, {}, ref.cotangents, case.seed)
    return ref, ref_low, cand


def tensors(run) -> dict[str, torch.Tensor]:
    return {"output": run.outputs[0], **{f"grad {k}": g for k, g in run.grads.items()}}


def flags(ref, ref_low, cand, dtype) -> dict[str, bool]:
    """Which verdicts flag this example (any tensor out of tolerance)."""
    r, rl, c = tensors(ref), tensors(ref_low), tensors(cand)
    out = {}
    rtol, atol = ASSERT_CLOSE[dtype]
    tols = {"assert_close": (rtol, atol), **FIXED}
    for name, (rt, at) in tols.items():
        bad = False
        for k in r:
            a, b = c[k].double(), r[k].double()
            bad |= bool(((a - b).abs() > at + rt * b.abs()).any())
        out[name] = bad
    out["gradlab rule"] = not all(judge(k, c[k], r[k], rl[k], low_dtype=dtype).passed for k in r)
    return out


def bug_visible(pair64_true: Pair, pair64_bug: Pair, case: I.Case) -> bool:
    low = I.build(case, torch.float64, "cpu")
    t = forward_backward(pair64_true, pair64_true.candidate, torch.float64, low, {}, None, case.seed)
    b = forward_backward(pair64_bug, pair64_bug.candidate, torch.float64, low, {}, t.cotangents, case.seed)
    scale = float(t.grads["x"].abs().max())
    return float((t.grads["x"] - b.grads["x"]).abs().max()) > VISIBLE * max(scale, 1e-300)


def layernorm(dtypes: list[str], examples: int, seed: int) -> None:
    specs = I.declared(load(f"{LN}:FusedLayerNorm", "candidate").obj, LN)
    ref = load(f"{LN}:reference", "reference")
    correct, buggy = load(f"{LN}:FusedLayerNorm", "candidate"), load(f"{LN}:BuggyLayerNorm", "candidate")
    pair_true64 = Pair(correct, ref, specs, Config(torch.float64, torch.float64))
    pair_bug64 = Pair(buggy, ref, specs, Config(torch.float64, torch.float64))
    cases = draw_cases(examples, seed, specs)
    visible = [bug_visible(pair_true64, pair_bug64, c) for c in cases]
    names = ["assert_close", *FIXED, "gradlab rule"]
    print(f"\nfused LayerNorm, {examples} examples per dtype (seed {seed}); the bug is visible in float64 on {sum(visible)} of them")
    print(f"{'dtype':<10} {'verdict':<16} {'false alarms: FusedLayerNorm':>30} {'torch in low dtype':>22} {'misses: BuggyLayerNorm':>24}")
    for dtype_name in dtypes:
        dtype = DTYPES[dtype_name]
        t0 = time.perf_counter()
        fa, fa_torch, miss = dict.fromkeys(names, 0), dict.fromkeys(names, 0), dict.fromkeys(names, 0)
        for case, vis in zip(cases, visible):
            r, rl, c = runs(Pair(correct, ref, specs, Config(dtype)), case)
            f_ok, f_torch = flags(r, rl, c, dtype), flags(r, rl, rl, dtype)
            f_bug = flags(*runs(Pair(buggy, ref, specs, Config(dtype)), case), dtype)
            for n in names:
                fa[n] += f_ok[n]
                fa_torch[n] += f_torch[n]
                miss[n] += vis and not f_bug[n]
        pct = lambda k, n: f"{k:>4} / {n} = {100 * k / max(n, 1):5.1f} %"  # noqa: E731
        for n in names:
            print(f"{dtype_name:<10} {n:<16} {pct(fa[n], examples):>30} {pct(fa_torch[n], examples):>22} {pct(miss[n], sum(visible)):>24}")
        print(f"{'':<10} ({time.perf_counter() - t0:.1f} s)")


def softmax_ce(examples: int, seed: int) -> None:
    """The bf16 softmax cross-entropy: the rule's ratio (err_cand / bound) on its gradient, worst and median."""
    cand, ref = load(f"{CE}:SoftmaxCEBf16", "candidate"), load(f"{CE}:reference", "reference")
    specs = I.declared(cand.obj, CE)
    rng = np.random.default_rng(seed)
    pair = Pair(cand, ref, specs, Config(torch.bfloat16))
    ratios, cand_err, low_err, fails = [], [], [], 0
    for k in range(examples):
        batch, classes = int(rng.integers(1, 17)), int(rng.integers(2, 41))
        case = I.Case(I.resize(specs, {8: batch, 10: classes}), I.VALUE_STYLES[k % len(I.VALUE_STYLES)], int(rng.integers(0, 2**16)))
        r, rl, c = runs(pair, case)
        check = judge("grad logits", c.grads["logits"], r.grads["logits"], rl.grads["logits"], low_dtype=torch.bfloat16)
        ratios.append(check.ratio)
        scale = max(float(r.grads["logits"].abs().max()), 1e-300)
        cand_err.append(check.err_cand / scale)
        low_err.append(check.err_low / scale)
        fails += not check.passed
    print(f"\nbf16 softmax cross-entropy (backward entirely in bfloat16), {examples} examples: grad logits")
    print(f"  rule fails on {fails} / {examples}; ratio err_cand / bound: median {np.median(ratios):.3f}, max {np.max(ratios):.3f}")
    print(f"  err_cand / max|grad|: median {np.median(cand_err):.2e}, max {np.max(cand_err):.2e};"
          f"  err_low / max|grad| (torch's own bf16 cross-entropy): median {np.median(low_err):.2e}, max {np.max(low_err):.2e}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=200)
    ap.add_argument("--dtypes", default="bfloat16,float16,float32")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--torch-threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.torch_threads)
    print(f"machine: {platform.machine()}, Python {platform.python_version()}, torch {torch.__version__}, torch threads {torch.get_num_threads()}")
    layernorm(args.dtypes.split(","), args.examples, args.seed)
    softmax_ce(args.examples, args.seed)


if __name__ == "__main__":
    main()
