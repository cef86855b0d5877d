"""Issue 23, side by side: speed and sharpness of gradlab's full check on N-d networks, this checkout against
another one (`--before DIR`, e.g. `git archive <commit> | tar -x -C DIR`), interleaved run by run.

    python benchmarks/bench_sharp.py --before /tmp/gl_before            # timings (min of --repeat) and verdicts
    python benchmarks/bench_sharp.py --before /tmp/gl_before --repeat 1 --only sharp
    python benchmarks/bench_sharp.py --before /tmp/gl_before --only mlp --repeat 3   # bench_numeric's tanh MLPs, in one process

Each run is a fresh `python -m gradlab check SPEC --format json` process (PYTHONPATH picks the checkout); the time
reported is the JSON document's `seconds` (the check itself, inside gradlab), the minimum over the repeats.
Specs live in benchmarks/sharp/: LeNet-5, the pre-LN transformer block (T 32, D 64, 4 heads, MLP 256, batch 2), a
small CIFAR-style relu CNN (3x32x32, batch 8),
and the same networks with a custom activation (an `impl:` user op, ops.py) whose backward is exact or off by a
relative 1e-8, checked with `check.engines: [analytic, numeric]` only: the wrong twin must fail, the exact one pass.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SPECS = HERE / "sharp"
SPEED = ["lenet5", "transformer_block", "small_cifar_relu"]
SHARP = ["lenet5_tanh_exact", "lenet5_tanh_off1e-8", "transformer_gelu_exact", "transformer_gelu_off1e-8"]


def check(root: Path, spec: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(root)}
    out = subprocess.run([sys.executable, "-m", "gradlab", "check", str(SPECS / f"{spec}.yaml"), "--format", "json"],
                         cwd=root, env=env, capture_output=True, text=True, timeout=1800)
    doc = json.loads(out.stdout)["specs"][0]
    numeric = [c for c in doc["comparisons"] if "numeric" in (c["reference"], c["candidate"]) and c["status"] in ("pass", "fail")]
    return {
        "seconds": doc["seconds"], "passed": doc["passed"], "method": doc["numeric_method"],
        "max_rel": max((c["max_rel_err"] for c in numeric), default=float("nan")),
        "failed": sorted({c["parameter"] for c in doc["comparisons"] if c["status"] == "fail"}),
    }


MLP_RUN = """
import sys, time
sys.path.insert(0, "benchmarks")
from bench_numeric import tanh_mlp
from gradlab import runner
from gradlab.network import build
spec = tanh_mlp([int(v) for v in sys.argv[1].split("-")])
best, numeric = float("inf"), None
for _ in range(int(sys.argv[2])):
    net = build(spec)
    t0 = time.perf_counter()
    result = runner.run(spec, net=net, mode="full")
    if time.perf_counter() - t0 < best:
        best, numeric = time.perf_counter() - t0, result.engines["numeric"]
print(best, numeric, result.passed, net.n_params)
"""


def mlp(root: Path, sizes: str, repeat: int) -> tuple[float, float, bool, int]:
    """bench_numeric's tanh MLP (batch 32, softmax cross-entropy): the best full check in one process and its
    numeric engine's seconds."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    out = subprocess.run([sys.executable, "-c", MLP_RUN, sizes, str(repeat)], cwd=root, env=env, capture_output=True, text=True, timeout=1800)
    best, numeric, passed, n = out.stdout.split()
    return float(best), float(numeric), passed == "True", int(n)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", type=Path, help="another checkout to run side by side (its root folder)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per spec and checkout; the minimum is reported")
    ap.add_argument("--only", choices=("speed", "sharp", "mlp"))
    ap.add_argument("--mlp", default="128-256-256-10,2048-4096-512-10", help="MLP sizes for the mlp section (full check in one process)")
    args = ap.parse_args()
    roots = {"after": HERE.parent}
    if args.before:
        roots = {"before": args.before.resolve(), **roots}
    print(f"load average {os.getloadavg()[0]:.1f}; checkouts: " + ", ".join(f"{k} {v}" for k, v in roots.items()))
    if args.only in (None, "mlp"):
        print(f"{'tanh MLP':<28}{'params':>12}" + "".join(f"{k + ' s':>10}  {k + ' numeric s':>16}" for k in roots))
        for sizes in args.mlp.split(","):
            runs = {k: mlp(root, sizes, args.repeat) for k, root in roots.items()}
            n = next(iter(runs.values()))[3]
            print(f"{sizes:<28}{n:>12,}" + "".join(f"{r[0]:>10.3f}  {r[1]:>16.3f}" for r in runs.values())
                  + ("" if all(r[2] for r in runs.values()) else "  FAIL"), flush=True)
        if args.only == "mlp":
            return
    specs = (SPEED if args.only != "sharp" else []) + (SHARP if args.only != "speed" else [])
    print(f"{'spec':<28}" + "".join(f"{k + ' s':>10}  {k + ' verdict':>14}  {k + ' max rel':>12}" for k in roots) + "  method (after)")
    for spec in specs:
        runs: dict[str, list[dict]] = {k: [] for k in roots}
        for _ in range(args.repeat if spec in SPEED else 1):
            for k, root in roots.items():  # interleaved: both checkouts see the same load
                runs[k].append(check(root, spec))
        cols = ""
        for k in roots:
            best = min(runs[k], key=lambda r: r["seconds"])
            verdict = "pass" if best["passed"] else f"FAIL ({len(best['failed'])})"
            cols += f"{best['seconds']:>10.2f}  {verdict:>14}  {best['max_rel']:>12.2e}"
        print(f"{spec:<28}{cols}  {runs['after'][0]['method']}", flush=True)
    print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
