"""Memory estimate vs measured peak RSS growth of `gradlab check`, over a sweep of shapes.

    .venv/bin/python benchmarks/bench_memory.py            # the test sweep, the same at full size, the bigger one (~10 minutes on an idle 2-core machine)
    .venv/bin/python benchmarks/bench_memory.py --small    # the test sweep only

Peak growth = the child's peak RSS minus that of an interpreter that imported gradlab, numpy and
torch (tests/test_memory.py holds the harness). ratio = estimate / peak must be >= 1.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.test_memory import SWEEP, baseline_rss, measure, spec_text  # noqa: E402

# the sweep tests/test_memory.py ran until 2026-12-04, at sizes two to four times its SWEEP's (~35 s of CPU)
FULL_SIZE = [
    ("wide 1500-1500-10 fast", dict(dim=1500, units=[1500, 10], batch=8), ()),
    ("wide f32 1000-1500-10 fast --stats", dict(dim=1000, units=[1500, 10], batch=8, dtype="float32"), ("--stats",)),
    ("deep 6x150 full wrt_input b16", dict(dim=150, units=[150] * 5 + [10], batch=16, wrt_input=True), ()),
    ("full f32 wrt_input 300-300-10 b300", dict(dim=300, units=[300, 10], batch=300, dtype="float32", wrt_input=True), ()),
    ("batch 8000 f32 10-250-10 fast", dict(dim=10, units=[250, 10], batch=8000, dtype="float32", mode="fast"), ()),
    ("stats batch 20000 --stats", dict(dim=64, units=[300, 300, 10], batch=4, stats={"batch": 20_000, "seeds": 2}), ("--stats",)),
]

BIG = [
    ("issue: 4000-8000-10 b8 fast", dict(dim=4000, units=[8000, 10], batch=8), ()),
    ("batch 25000 100-1000-10 fast", dict(dim=100, units=[1000, 10], batch=25_000, mode="fast"), ()),
    ("wide f32 3000-3000-10 fast", dict(dim=3000, units=[3000, 10], batch=8, dtype="float32"), ()),
    ("full 400-600-10 b64 (240k params)", dict(dim=400, units=[600, 10], batch=64), ()),
    ("full f32 wrt 300-500-10 b1000", dict(dim=300, units=[500, 10], batch=1000, dtype="float32", wrt_input=True), ()),
    ("deep 20x400 b16 fast", dict(dim=400, units=[400] * 19 + [10], batch=16, mode="fast"), ()),
    ("stats batch 200000 --stats", dict(dim=64, units=[500, 500, 10], batch=4, stats={"batch": 200_000, "seeds": 1}), ("--stats",)),
    ("relu softmax-CE 2000-2000-100 b32", dict(dim=2000, units=[2000, 100], batch=32, act="relu", loss="softmax_cross_entropy"), ()),
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--small", action="store_true", help="only the sweep tests/test_memory.py runs")
    args = ap.parse_args()
    cases = SWEEP + ([] if args.small else FULL_SIZE + BIG)
    print(f"machine: {platform.machine()}, Python {platform.python_version()}; baseline RSS {baseline_rss() / 2**20:.0f} MiB")
    print(f"{'case':40s} {'estimate MiB':>12s} {'peak MiB':>9s} {'ratio':>6s} {'s':>6s}  largest phase")
    for name, kw, extra in cases:
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            m = measure(spec_text(**kw), Path(tmp), extra)
        top = max(m["phases"], key=m["phases"].get)
        print(f"{name:40s} {m['estimate'] / 2**20:12.0f} {m['peak'] / 2**20:9.0f} {m['ratio']:6.2f} {time.perf_counter() - t0:6.1f}  {top}", flush=True)


if __name__ == "__main__":
    main()
