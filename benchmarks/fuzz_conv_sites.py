"""Random CNNs whose convolutions the numeric engine reaches through a site at their output, judged whole.

Run by hand (not a test):  python benchmarks/fuzz_conv_sites.py [--seed S] [--specs N]

`gradlab fuzz` draws networks under ~1,200 parameters, where a convolution's output is larger than its weight
and its parameters are differenced directly. These draws (6-12 input channels on 5x5 to 7x7 or 6 to 10
positions, 8-16 output channels, some padded) make the convolution's output the smaller, or let its units
carry cheaply: they are perturbed at the site and carried through the activation, the pool and flatten
(`moved_unit`) or a global average pool into a dense head. Pools of every kind
(max and average; windows disjoint, gapped, padded, overlapping), 11 activations, float32 and float64, two
losses. Every spec must pass (the three engines agree within the error model); a failure prints its spec.
"""

from __future__ import annotations

import argparse
import json
import random
import time

import gradlab  # noqa: F401 -- first, as in the `gradlab` command
from gradlab import runner
from gradlab.errors import SpecError
from gradlab.network import build
from gradlab.spec import validate

ACTIVATIONS = ["tanh", "relu", "gelu", "leaky_relu", "hardtanh", "elu", "sigmoid", "silu", "softplus", "gelu_tanh", "identity"]


def draw(seed: int) -> dict:
    r = random.Random(seed)
    nd = r.choice([1, 2])
    c_in = r.choice([6, 8, 12])
    side = r.choice([5, 6, 7]) if nd == 2 else r.choice([6, 8, 10])
    layers, size = [], side
    for _ in range(r.choice([1, 2])):
        k = r.choice([2, 3])
        pad = r.choice([0, 0, k // 2])  # padded: an output larger than the weight, a site only when its units carry
        if size + 2 * pad - k + 1 < 2:
            break
        layers += [{"type": f"conv{nd}d", "channels": r.choice([8, 12, 16]), "kernel": k, "padding": pad},
                   {"type": "activation", "fn": r.choice(ACTIVATIONS)}]
        size = size + 2 * pad - k + 1
        kind = r.choice(["max", "avg", "none"])
        if kind != "none" and size >= 2:
            pk = r.choice([2, 2, 3]) if size >= 3 else 2
            stride, pad = r.choice([pk, pk, pk + 1, max(1, pk - 1)]), r.choice([0, 0, pk // 2])
            layers.append({"type": f"{kind}pool{nd}d", "kernel": pk, "stride": stride, "padding": pad})
            size = (size + 2 * pad - pk) // stride + 1
    layers.append({"type": "global_avgpool"} if r.random() < 0.25 else {"type": "flatten"})
    if r.random() < 0.5:
        layers += [{"type": "dense", "units": r.choice([5, 9])}, {"type": "activation", "fn": r.choice(ACTIVATIONS)}]
    layers.append({"type": "dense", "units": 4})
    return {"name": f"conv-sites-{seed}", "seed": seed, "dtype": r.choice(["float64", "float32"]),
            "input": {"shape": [c_in] + [side] * nd, "batch": r.choice([2, 3, 4])},
            "target": {"kind": "onehot", "classes": 4}, "network": {"layers": layers},
            "loss": {"fn": r.choice(["softmax_cross_entropy", "sse"])}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--specs", type=int, default=500)
    args = ap.parse_args()
    t0, failed, refused = time.perf_counter(), 0, 0
    for seed in range(args.seed, args.seed + args.specs):
        doc = draw(seed)
        try:
            spec = validate(doc)
            result = runner.run(spec, net=build(spec), mode="full")
        except SpecError:
            refused += 1
            continue
        if not result.passed:
            failed += 1
            print("FAIL", json.dumps(doc))
            for c in result.failures[:3]:
                print(f"  {c.parameter} {c.reference}/{c.candidate} max rel {c.max_rel_err:.2e}")
    print(f"{args.specs} specs (seeds {args.seed}..{args.seed + args.specs - 1}): {failed} failed, {refused} refused, "
          f"{time.perf_counter() - t0:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
