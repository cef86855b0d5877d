"""N-d networks (issue 11), side by side in one process: gradlab's full check vs torch.autograd.gradcheck.

Run by hand (not a test):

    python benchmarks/bench_layers.py                          # LeNet-5 (+ gradcheck), transformer block, scaling table
    python benchmarks/bench_layers.py --only lenet             # one section: lenet | transformer | scaling
    python benchmarks/bench_layers.py --skip-gradcheck         # gradlab's column only
    python benchmarks/bench_layers.py --only transformer --transformer-gradcheck   # gradcheck there too (slow)
    python benchmarks/bench_layers.py --torch-threads 1        # on a shared, loaded machine (see --help)

Sections:
  lenet        LeNet-5 (1x32x32, conv 6@5x5, max-pool 2, conv 16@5x5, max-pool 2, dense 120-84-10, tanh;
               61,706 parameters), batch 4, float64, softmax cross-entropy: gradlab's full check and gradcheck.
  transformer  one pre-LN transformer block (T=32, D=64, 4 heads, MLP 256; 49,984 parameters), batch 2,
               regression target, sse loss: gradlab's full check (gradcheck only with --transformer-gradcheck).
  scaling      conv nets (channels x depth) and attention stacks (D x blocks): parameters, full-check seconds,
               seconds per 1k parameters; then the numeric engine alone, one layer's tensors at a time,
               as seconds per parameter element by layer type (the slowest type per parameter first).
               Bounded by --budget (180 s): a case whose estimated time would overrun it is listed as skipped;
               the layer-by-layer timing runs on the networks whose full check took <= --per-type-max-s (15 s).

gradlab's column is `runner.run(spec, mode="full")`: analytic + numeric + autograd engines and every
comparison, so it does more work than gradcheck's. gradcheck runs on the loss built from the gradlab
network's own torch mirrors (as gradlab/engines/autograd.py does), over every parameter tensor, in float64
with its defaults (eps 1e-6, atol 1e-5, rtol 1e-3), fast_mode=False: both check the very same function
at the very same point. The latest output lives in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import time
from collections import defaultdict

import gradlab  # noqa: F401 -- first, as in the `gradlab` command: it tunes OpenBLAS before numpy loads it
import numpy as np
import torch

from gradlab import runner
from gradlab.engines import numeric
from gradlab.network import DenseLayer, OpLayer, ResidualLayer, build
from gradlab.spec import validate

from bench_numeric import gradlab_full  # noqa: E402 -- the same timed full check as the MLP benchmark

LENET_PARAMS = 61_706
TRANSFORMER_GOAL_S = 30.0
CHECK = {"memory_limit": "16 GiB", "mode": "full"}


# --- specs ---------------------------------------------------------------------------------------


def lenet_spec(batch: int = 4, seed: int = 0):
    tanh = {"type": "activation", "fn": "tanh"}
    return validate({
        "name": "lenet-5", "seed": seed, "input": {"shape": [1, 32, 32], "batch": batch},
        "target": {"kind": "onehot", "classes": 10},
        "network": {"layers": [
            {"type": "conv2d", "channels": 6, "kernel": 5}, tanh,
            {"type": "maxpool2d", "kernel": 2},
            {"type": "conv2d", "channels": 16, "kernel": 5}, tanh,
            {"type": "maxpool2d", "kernel": 2},
            {"type": "flatten"},
            {"type": "dense", "units": 120}, tanh,
            {"type": "dense", "units": 84}, tanh,
            {"type": "dense", "units": 10},
        ]},
        "loss": {"fn": "softmax_cross_entropy"}, "check": CHECK,
    })


def transformer_layers(d: int, heads: int = 4, mlp: int | None = None, blocks: int = 1) -> list[dict]:
    """`blocks` pre-LN blocks: residual[layernorm, attention], residual[layernorm, dense mlp, gelu, dense d]."""
    mlp = mlp or 4 * d
    block = [
        {"type": "residual", "layers": [{"type": "layernorm"}, {"type": "attention", "heads": heads}]},
        {"type": "residual", "layers": [{"type": "layernorm"}, {"type": "dense", "units": mlp},
                                        {"type": "activation", "fn": "gelu"}, {"type": "dense", "units": d}]},
    ]
    return block * blocks


def transformer_spec(t: int = 32, d: int = 64, heads: int = 4, mlp: int = 256, blocks: int = 1, batch: int = 2, seed: int = 0):
    return validate({
        "name": f"transformer-T{t}-D{d}-x{blocks}", "seed": seed, "input": {"shape": [t, d], "batch": batch},
        "target": {"kind": "regression"},
        "network": {"layers": transformer_layers(d, heads, mlp, blocks)},
        "loss": {"fn": "sse"}, "check": CHECK,
    })


def conv_spec(channels: int, depth: int, side: int = 16, batch: int = 4, classes: int = 10, seed: int = 0):
    """`depth` blocks of conv2d (3x3, padding 1) + tanh on 1 x side x side, then flatten + dense."""
    layers = []
    for _ in range(depth):
        layers += [{"type": "conv2d", "channels": channels, "kernel": 3, "padding": 1}, {"type": "activation", "fn": "tanh"}]
    layers += [{"type": "flatten"}, {"type": "dense", "units": classes}]
    return validate({
        "name": f"conv-c{channels}-d{depth}", "seed": seed, "input": {"shape": [1, side, side], "batch": batch},
        "target": {"kind": "onehot", "classes": classes},
        "network": {"layers": layers}, "loss": {"fn": "softmax_cross_entropy"}, "check": CHECK,
    })


# --- the two checks ------------------------------------------------------------------------------


def torch_loss(net):
    """(loss as a function of every parameter tensor, those tensors): the gradlab network's torch mirrors."""
    names = list(net.params)
    tensors = [torch.tensor(np.asarray(net.params[n]), dtype=torch.float64, requires_grad=True) for n in names]
    x = torch.tensor(np.asarray(net.x), dtype=torch.float64)
    f = net.target.shape[-1]
    target = torch.tensor(np.asarray(net.target), dtype=torch.float64).reshape(-1, f)

    def loss(*ps):
        params = dict(zip(names, ps))
        h = x
        for layer in net.layers:
            h = layer.torch_forward(params, h)
        return net.loss_op.torch(h.reshape(-1, f), target) * net.loss_scale

    return loss, tensors


def gradcheck_seconds(net) -> tuple[float, bool]:
    """torch.autograd.gradcheck, float64, its defaults (eps 1e-6, atol 1e-5, rtol 1e-3), full mode, every parameter."""
    loss, tensors = torch_loss(net)
    t0 = time.perf_counter()
    ok = torch.autograd.gradcheck(loss, tensors, eps=1e-6, atol=1e-5, rtol=1e-3, fast_mode=False, raise_exception=False)
    return time.perf_counter() - t0, ok


def engines_line(result) -> str:
    return ", ".join(f"{k} {v:.2f} s" for k, v in result.engines.items()) + f"; numeric method {result.method}"


def verdict(ok: bool) -> str:
    return "pass" if ok else "FAIL"


HEADER = f"{'network':<26}{'params':>9}{'gradcheck s':>13}{'gradlab s':>11}{'ratio':>9}{'gradlab max rel':>17}  verdicts"


def side_by_side(label: str, spec, with_gradcheck: bool) -> float:
    """One row: gradlab's full check, then (optionally) gradcheck on the same network; gradlab's seconds."""
    net, g_s, rel, result = gradlab_full(spec)
    if with_gradcheck:
        t_s, ok = gradcheck_seconds(net)
        cols = f"{t_s:>13.3f}{g_s:>11.3f}{t_s / g_s:>8.1f}x"
        verdicts = f"gradcheck={verdict(ok)} gradlab={verdict(result.passed)}"
    else:
        cols = f"{'(skipped)':>13}{g_s:>11.3f}{'':>9}"
        verdicts = f"gradlab={verdict(result.passed)}"
    print(f"{label:<26}{net.n_params:>9,}{cols}{rel:>17.2e}  {verdicts}")
    print(f"{'':<26}engines: {engines_line(result)}")
    return g_s


# --- sections ------------------------------------------------------------------------------------


def lenet(with_gradcheck: bool) -> None:
    print("LeNet-5: 1x32x32, conv 6@5x5, max-pool 2, conv 16@5x5, max-pool 2, dense 120-84-10, tanh; batch 4, float64, softmax cross-entropy")
    spec = lenet_spec()
    n = build(spec).n_params
    assert n == LENET_PARAMS, f"LeNet-5 has {n:,} parameters, expected {LENET_PARAMS:,}"
    print(HEADER)
    side_by_side("LeNet-5", spec, with_gradcheck)


def transformer(with_gradcheck: bool) -> None:
    print("transformer block: residual[layernorm, attention(heads 4)], residual[layernorm, dense 256, gelu, dense 64]; "
          "T=32, D=64, batch 2, float64, regression, sse")
    print(HEADER)
    seconds = side_by_side("transformer T32 D64 MLP256", transformer_spec(), with_gradcheck)
    print(f"issue 11 goal, full check under {TRANSFORMER_GOAL_S:.0f} s: {'met' if seconds < TRANSFORMER_GOAL_S else 'NOT met'} ({seconds:.1f} s)")


def owners(net):
    """(layer type, parameter names) of every layer that owns parameters, nested ones included, in order."""
    out = []

    def visit(layers):
        for layer in layers:
            if isinstance(layer, ResidualLayer):
                visit(layer.members)
                continue
            names = [n for n in layer.param_names]
            if not names:
                continue
            kind = layer.op.name if isinstance(layer, OpLayer) else "dense" if isinstance(layer, DenseLayer) else type(layer).__name__
            out.append((kind, names))

    visit(net.layers)
    return out


def scaling(channels: list[int], depths: list[int], dims: list[int], blocks: list[int], per_type_max_s: float, budget: float) -> None:
    conv = [(f"conv c{c} depth {d}", conv_spec(c, d)) for d in depths for c in channels]
    attn = [(f"attention D{d} blocks {b}", transformer_spec(t=16, d=d, mlp=4 * d, blocks=b)) for b in blocks for d in dims]
    attn.sort(key=lambda case: build(case[1]).n_params)  # smallest first, so the budget skips the biggest
    print("scaling: conv nets = depth x [conv2d 3x3 pad 1 + tanh] on 1x16x16, flatten, dense 10 (batch 4, softmax cross-entropy);")
    print("         attention stacks = blocks x [residual[layernorm, attention(heads 4)], residual[layernorm, dense 4D, gelu, dense D]],")
    print("         T=16 (batch 2, regression, sse); gradlab = full check, float64")
    print(f"{'network':<26}{'params':>9}{'gradlab s':>11}{'s / 1k params':>15}{'numeric s':>11}  {'method':<14}verdict")
    per = defaultdict(lambda: [0.0, 0.0, 0, 0])  # (family, layer type) -> [seconds, seconds net of fixed cost, elements, calls]
    timed = []  # the networks whose layers were timed one at a time
    t_start = time.perf_counter()
    # conv may use half the budget, attention the rest; a case whose estimate would overrun it is skipped
    # (the layer-by-layer timing of a network about doubles its time, so it only runs on the cheaper ones)
    for family, cases, limit in (("conv nets", conv, budget / 2), ("attention", attn, budget)):
        last = None  # (params, full-check seconds) of the last case of this family
        for label, spec in cases:
            net = build(spec)
            if last is not None:
                estimate = last[1] * (net.n_params / last[0]) ** 2  # each element's difference costs a forward ~ size
                estimate *= 2 if estimate <= per_type_max_s else 1  # and its layers timed one at a time
                if time.perf_counter() - t_start + estimate > limit:
                    print(f"{label:<26}{net.n_params:>9,}  skipped: ~{estimate:.0f} s estimated would overrun --budget {budget:.0f} s")
                    continue
            net, g_s, _, result = gradlab_full(spec)
            num = result.engines.get("numeric", float("nan"))
            print(f"{label:<26}{net.n_params:>9,}{g_s:>11.3f}{1000 * g_s / net.n_params:>15.4f}{num:>11.3f}  {result.method:<14}{verdict(result.passed)}", flush=True)
            if g_s <= per_type_max_s:
                timed.append(label)
                calls = []  # (layer type, elements, seconds), one call per parameter tensor
                for kind, names in owners(net):
                    for name in names:
                        t0 = time.perf_counter()
                        numeric.differentiate(net, names=[name])
                        calls.append((kind, net.params[name].size, time.perf_counter() - t0))
                fixed = min(c[2] for c in calls)  # the cheapest call (a small bias): mostly the per-call base pass
                for kind, n, sec in calls:
                    row = per[family, kind]
                    row[0] += sec
                    row[1] += sec - fixed
                    row[2] += n
                    row[3] += 1
            last = (net.n_params, g_s)
    if not per:
        return
    print("\nnumeric engine alone, one parameter tensor per call (numeric.differentiate(net, names=[name])), summed per family")
    print(f"over the networks whose full check took <= {per_type_max_s:g} s (--per-type-max-s): {', '.join(timed)}.")
    print("Each call pays a fixed cost (the base pass over the whole network, set-up): 'net' subtracts, per network, its")
    print("cheapest call's seconds from each call, which is what ranks the types; share = of the family's seconds")
    print(f"{'family':<12}{'layer type':<12}{'tensors':>8}{'elements':>11}{'seconds':>10}{'share':>8}{'us / element':>14}{'net us / el':>13}")
    rows = sorted(per.items(), key=lambda kv: kv[1][1] / kv[1][2], reverse=True)
    total = defaultdict(float)
    for (family, _), (s, _, _, _) in rows:
        total[family] += s
    for (family, kind), (s, net_s, n, calls) in rows:
        print(f"{family:<12}{kind:<12}{calls:>8}{n:>11,}{s:>10.3f}{s / total[family]:>8.0%}{1e6 * s / n:>14.2f}{1e6 * net_s / n:>13.2f}")
    (family, kind), (_, net_s, n, _) = rows[0]
    print(f"slowest layer type per parameter: {kind} (in the {family}, {1e6 * net_s / n:.1f} us per element net of the fixed cost)")


def ints(s: str) -> list[int]:
    return [int(v) for v in s.split(",") if v]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=("lenet", "transformer", "scaling"), help="run one section")
    ap.add_argument("--skip-gradcheck", action="store_true", help="gradlab's column only (LeNet-5 and the transformer)")
    ap.add_argument("--transformer-gradcheck", action="store_true", help="also run gradcheck on the transformer block (slow)")
    ap.add_argument("--channels", default="4,8,16", help="scaling: conv channels (default 4,8,16)")
    ap.add_argument("--depths", default="1,2,3", help="scaling: conv depths (default 1,2,3)")
    ap.add_argument("--dims", default="16,32,64", help="scaling: attention D (default 16,32,64)")
    ap.add_argument("--blocks", default="1,2", help="scaling: attention blocks (default 1,2)")
    ap.add_argument("--budget", type=float, default=180.0, help="scaling: seconds for the section (default 180; conv nets get "
                    "half); a case whose estimate (last case's time x (params ratio)^2) would overrun it is skipped")
    ap.add_argument("--per-type-max-s", type=float, default=15.0, help="scaling: time the numeric engine layer by layer on the "
                    "networks whose full check took at most this many seconds (default 15; 0: none)")
    ap.add_argument("--torch-threads", type=int, help="torch.set_num_threads(N) first (default: torch's own); on a shared, "
                    "loaded machine 1 keeps gradcheck's many tiny forwards from waiting on a busy second core")
    args = ap.parse_args()
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=os.path.dirname(os.path.abspath(__file__)))
    commit = f", gradlab at {head.stdout.strip()}" if head.returncode == 0 else ""
    dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "gradlab"], capture_output=True, cwd=os.path.dirname(os.path.abspath(__file__)))
    commit += " + uncommitted changes to gradlab/" if commit and dirty.returncode == 1 else ""
    load = ", load average {:.1f}".format(os.getloadavg()[0]) if hasattr(os, "getloadavg") else ""
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"numpy {np.__version__}, torch {torch.__version__}, torch threads {torch.get_num_threads()}{load}{commit}")
    print("gradlab = full check (analytic + numeric + autograd + compare); gradcheck = torch.autograd.gradcheck, float64, "
          "full mode, every parameter, on the gradlab network's torch mirrors\n")
    sections = [args.only] if args.only else ["lenet", "transformer", "scaling"]
    for i, section in enumerate(sections):
        if i:
            print()
        t0 = time.perf_counter()
        if section == "lenet":
            lenet(not args.skip_gradcheck)
        elif section == "transformer":
            transformer(args.transformer_gradcheck and not args.skip_gradcheck)
        else:
            scaling(ints(args.channels), ints(args.depths), ints(args.dims), ints(args.blocks), args.per_type_max_s, args.budget)
        print(f"({section}: {time.perf_counter() - t0:.1f} s wall)")


if __name__ == "__main__":
    main()
