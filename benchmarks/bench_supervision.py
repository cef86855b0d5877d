"""What supervision costs (issue 19): the tiny-spec CLI and `pytest specs/`, supervised and not, side by side.

    .venv/bin/python benchmarks/bench_supervision.py              # 9 rounds
    .venv/bin/python benchmarks/bench_supervision.py --rounds 15

Each round runs, interleaved (so load on the machine hits every variant alike): `python -c "import torch"`,
`gradlab check specs/seed003_two_layer.yaml -q` supervised (the console script: fork, child, completion
record) and with GRADLAB_NO_SUPERVISOR=1 (one process, as before), and `pytest -q specs/` both ways (the
plugin checks specs naming user code in a forked child). Reported: median wall seconds and median CPU
seconds (user + system of the process and its children), and the ratios the issue sets limits on.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def timed(cmd: list[str], env: dict) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode not in (0, 4):
        raise SystemExit(f"{' '.join(cmd)} exited {done.returncode}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--no-pytest", action="store_true", help="only the CLI rows")
    args = parser.parse_args()
    base = {k: v for k, v in os.environ.items() if k != "GRADLAB_NO_SUPERVISOR"}
    plain = {**base, "GRADLAB_NO_SUPERVISOR": "1"}
    variants = {
        "python -c 'import torch'": ([sys.executable, "-c", "import torch"], base),
        "gradlab check seed003 (supervised)": ([str(BIN / "gradlab"), "check", "specs/seed003_two_layer.yaml", "-q"], base),
        "gradlab check seed003 (one process)": ([str(BIN / "gradlab"), "check", "specs/seed003_two_layer.yaml", "-q"], plain),
    }
    if not args.no_pytest:
        pytest = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "specs/"]
        variants["pytest specs/ (user code in a child)"] = (pytest, base)
        variants["pytest specs/ (one process)"] = (pytest, plain)
    samples: dict[str, list[tuple[float, float]]] = {k: [] for k in variants}
    for _ in range(args.rounds):
        for name, (cmd, env) in variants.items():
            samples[name].append(timed(cmd, env))
    import numpy
    import torch

    print(f"machine: {os.uname().machine}, {os.cpu_count()} cores, Python {sys.version.split()[0]}, numpy {numpy.__version__}, "
          f"torch {torch.__version__}; {args.rounds} interleaved rounds, medians")
    print(f"{'command':42s} {'wall s':>8s} {'cpu s':>8s}")
    med = {}
    for name, runs in samples.items():
        med[name] = (statistics.median(w for w, _ in runs), statistics.median(c for _, c in runs))
        print(f"{name:42s} {med[name][0]:8.3f} {med[name][1]:8.3f}")
    torch_wall = med["python -c 'import torch'"][0]
    sup, one = med["gradlab check seed003 (supervised)"], med["gradlab check seed003 (one process)"]
    print(f"tiny-spec CLI / import torch (wall): supervised {sup[0] / torch_wall:.2f}x, one process {one[0] / torch_wall:.2f}x (limit 1.5x)")
    if not args.no_pytest:
        a, b = med["pytest specs/ (user code in a child)"], med["pytest specs/ (one process)"]
        print(f"pytest specs/ supervised / one process: wall {a[0] / b[0]:.2f}x, cpu {a[1] / b[1]:.2f}x (limit 1.2x)")


if __name__ == "__main__":
    main()
