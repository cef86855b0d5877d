"""Side by side, in one process: torch.autograd.gradcheck (full, float64) vs gradlab's full check.

Run by hand (not a test):  python benchmarks/bench_numeric.py [--skip-1m] [--sizes 8-16-16-4,...]
Prints the speed table, the 1M-parameter timing and the accuracy table; the latest output
lives in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import gradlab  # noqa: F401 -- first, as in the `gradlab` command: it tunes OpenBLAS before numpy loads it
import numpy as np
import torch

from gradlab import runner
from gradlab.engines import autograd, numeric
from gradlab.network import DenseLayer, build
from gradlab.spec import validate

SIZES = ["8-16-16-4", "32-64-64-10", "64-128-128-10", "128-256-256-10"]
BATCH = 32


def tanh_mlp(sizes: list[int], batch: int = BATCH, loss: str = "softmax_cross_entropy", seed: int = 0):
    layers = []
    for n in sizes[1:-1]:
        layers += [{"type": "dense", "units": n}, {"type": "activation", "fn": "tanh"}]
    layers.append({"type": "dense", "units": sizes[-1]})
    return validate({
        "name": "-".join(map(str, sizes)), "seed": seed, "input": {"dim": sizes[0], "batch": batch},
        "target": {"kind": "onehot"}, "network": {"layers": layers, "init": {"scheme": "xavier_uniform", "bias": "normal"}},
        "loss": {"fn": loss}, "check": {"memory_limit": "16 GiB", "mode": "full"},
    })


def gradcheck_seconds(net) -> tuple[float, bool]:
    """torch.autograd.gradcheck on the loss as a function of every parameter (its defaults: eps 1e-6, atol 1e-5, rtol 1e-3)."""
    names = list(net.params)
    tensors = [torch.tensor(net.params[n], dtype=torch.float64, requires_grad=True) for n in names]
    x, t = torch.tensor(net.x), torch.tensor(net.target)

    def loss(*ps):
        h = x
        it = iter(ps)
        for layer in net.layers:
            if isinstance(layer, DenseLayer):
                w = next(it)
                b = next(it) if layer.bias_name else None
                h = torch.nn.functional.linear(h, w, b)
            else:
                h = torch.tanh(h)
        return torch.nn.functional.cross_entropy(h, t, reduction="sum")

    t0 = time.perf_counter()
    ok = torch.autograd.gradcheck(loss, tensors, eps=1e-6, atol=1e-5, rtol=1e-3)
    return time.perf_counter() - t0, ok


def gradlab_full(spec):
    net = build(spec)
    t0 = time.perf_counter()
    result = runner.run(spec, net=net, mode="full")
    seconds = time.perf_counter() - t0
    rels = [c.max_rel_err for c in result.comparisons if c.reference == "numeric" and c.status in ("pass", "fail")]
    return net, seconds, (max(rels) if rels else float("nan")), result


def speed_table(sizes: list[str]) -> None:
    print(f"{'sizes':<18}{'params':>10}{'gradcheck s':>13}{'gradlab s':>11}{'ratio':>9}{'gradlab max rel':>17}  verdicts")
    for s in sizes:
        spec = tanh_mlp([int(v) for v in s.split("-")])
        net, g_s, rel, result = gradlab_full(spec)
        t_s, ok = gradcheck_seconds(net)
        print(f"{s:<18}{net.n_params:>10,}{t_s:>13.3f}{g_s:>11.3f}{t_s / g_s:>8.1f}x{rel:>17.2e}  gradcheck={'pass' if ok else 'FAIL'} gradlab={'pass' if result.passed else 'FAIL'}")


def million() -> None:
    spec = tanh_mlp([512, 1024, 512, 10])
    net, g_s, rel, result = gradlab_full(spec)
    num = result.engines.get("numeric", float("nan"))
    print(f"{'512-1024-512-10':<18}{net.n_params:>10,}{'(skipped)':>13}{g_s:>11.3f}{'':>9}{rel:>17.2e}  numeric engine alone {num:.2f} s, gradlab={'pass' if result.passed else 'FAIL'}")


def accuracy_table() -> None:
    spec = tanh_mlp([32, 64, 64, 10], loss="softmax_cross_entropy", seed=1)
    net = build(spec)
    ref = autograd.gradients(net)
    print(f"\naccuracy vs autograd (float64, tanh 32-64-64-10, batch {BATCH}, {net.n_params:,} params; relative error |n - a| / max(|n|, |a|, 1e-8 max|a|))")
    print(f"{'method':<14}{'median rel':>12}{'max rel':>12}{'seconds':>10}")
    for method in ("central", "richardson", "complex_step"):
        t0 = time.perf_counter()
        g = numeric.differentiate(net, method=method)
        dt = time.perf_counter() - t0
        rel = np.concatenate([
            (np.abs(g.values[k] - ref.values[k]) / np.maximum(np.maximum(np.abs(g.values[k]), np.abs(ref.values[k])), 1e-8 * np.abs(ref.values[k]).max())).ravel()
            for k in ref.values
        ])
        print(f"{method:<14}{np.median(rel):>12.2e}{rel.max():>12.2e}{dt:>10.3f}")


def fast_mode_demo() -> None:
    """Fast mode on the 101,386-parameter MLP with one planted wrong element in a 65,536-element matrix."""
    import dataclasses

    from gradlab import fastcheck, tolerance
    from gradlab.engines import analytic

    net = build(tanh_mlp([128, 256, 256, 10]))
    name = "layers.2.weight"
    good = analytic.gradients(net)
    values = dict(good.values)
    planted = values[name].copy()
    planted[123, 45] *= 1.01  # 1% off in one element
    bad = dataclasses.replace(good, values={**values, name: planted})
    bounds = tolerance.rounding_bounds(net)
    print(f"\nfast mode, {net.n_params:,} params, one element of {name} ({planted.size:,} elements) 1% off at (123, 45)")
    for label, cand in (("correct", good), ("planted", bad)):
        t0 = time.perf_counter()
        row = fastcheck.check_tensor("bench", net, cand, name, model=bounds[name], method="complex_step", tol={"rtol": 0.0, "atol": 0.0})
        print(f"  {label:<8} {row.status:<5} worst {row.worst_index}  {time.perf_counter() - t0:.3f} s  {row.note}"
              f"  (bound {fastcheck.projections_bound(planted.size)} projections)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", default=",".join(SIZES))
    ap.add_argument("--skip-1m", action="store_true")
    ap.add_argument("--fast-only", action="store_true", help="only the fast-mode demonstration")
    args = ap.parse_args()
    if args.fast_only:
        fast_mode_demo()
        return
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"numpy {np.__version__}, torch {torch.__version__}, torch threads {torch.get_num_threads()}")
    print(f"tanh MLPs, batch {BATCH}, float64, softmax cross-entropy; gradlab = full check (analytic + numeric + autograd + compare)\n")
    speed_table(args.sizes.split(","))
    if not args.skip_1m:
        million()
    accuracy_table()
    fast_mode_demo()


if __name__ == "__main__":
    main()
