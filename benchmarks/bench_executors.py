"""`gradlab check` in-process vs `--executor local` vs `--executor ray`, wall time side by side.

    .venv/bin/python benchmarks/bench_executors.py               # specs/ specs/layers, then the same list 4 times over
    .venv/bin/python benchmarks/bench_executors.py --rounds 5 --fuzz 60

Each command runs as a user runs it (a fresh `gradlab` process: start-up, the forkserver importing torch,
Ray starting its local instance, all counted). The variants run round-robin, so a busy moment of a shared
machine falls on all of them alike; the table gives the median and the best of the rounds. The outputs of
all variants are compared (timings stripped): a variant that prints something else is reported.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GRADLAB = shutil.which("gradlab", path=str(Path(sys.executable).parent)) or "gradlab"
SPECS = ["specs/", "specs/layers"]


def variants(workers: int, ray: bool) -> list[tuple[str, list[str]]]:
    out = [("in-process", []), (f"--executor local --workers {workers}", ["--executor", "local", "--workers", str(workers)])]
    if ray:
        out.append(("--executor ray", ["--executor", "ray"]))
    return out


def timed(args: list[str]) -> tuple[float, int, str]:
    t0 = time.perf_counter()
    proc = subprocess.run([GRADLAB, *args], cwd=ROOT, capture_output=True, text=True)
    return time.perf_counter() - t0, proc.returncode, re.sub(r"\d+\.\d+ s\b", "<t> s", proc.stdout)


def compare(title: str, base: list[str], ways: list[tuple[str, list[str]]], rounds: int) -> None:
    times: dict[str, list[float]] = {name: [] for name, _ in ways}
    outputs: dict[str, set] = {name: set() for name, _ in ways}
    for _ in range(rounds):
        for name, extra in ways:
            seconds, code, text = timed([*base, *extra])
            times[name].append(seconds)
            outputs[name].add((code, text))
    reference = outputs[ways[0][0]]
    print(f"\n{title}\n  $ gradlab {' '.join(base)} [...]")
    print(f"  {'variant':34s} {'median s':>9s} {'best s':>8s}  output")
    for name, _ in ways:
        same = "same" if outputs[name] == reference else f"DIFFERENT (exit {sorted(c for c, _ in outputs[name])})"
        print(f"  {name:34s} {statistics.median(times[name]):9.2f} {min(times[name]):8.2f}  {same}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3, help="runs of each variant (round-robin)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--copies", type=int, default=4, help="the bigger sweep: the spec list named this many times")
    ap.add_argument("--fuzz", type=int, default=40, help="gradlab fuzz --examples N (0: skip)")
    ap.add_argument("--no-ray", action="store_true")
    args = ap.parse_args()
    try:
        import ray  # noqa: F401

        ray_ok = not args.no_ray
    except ImportError:
        ray_ok = False
        print("ray is not installed (pip install 'gradlab[ray]'): the ray column is skipped")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{os.cpu_count()} cores, load average {load:.2f} at the start; python {sys.version.split()[0]}; {args.rounds} rounds")
    ways = variants(args.workers, ray_ok)
    compare("16 shipped specs", ["check", *SPECS, "-q"], ways, args.rounds)
    if args.copies > 1:
        compare(f"the same specs named {args.copies} times ({16 * args.copies} checks)", ["check", *SPECS * args.copies, "-q"], ways, args.rounds)
    if args.fuzz:
        compare(f"fuzz, {args.fuzz} examples", ["fuzz", "--examples", str(args.fuzz), "--seed", "1", "--output-dir", "/tmp/gradlab-bench-fuzz"],
                ways, args.rounds)
    if hasattr(os, "getloadavg"):
        print(f"\nload average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
