"""The memory estimate is an upper bound of what `gradlab check` really uses, and `gradlab stats` is bounded.

Each case runs `gradlab check` in a child process and reads that child's peak resident memory
(os.wait4's rusage: the per-child form of getrusage(RUSAGE_CHILDREN).ru_maxrss), minus the peak of
an interpreter that only imported gradlab, numpy and torch. benchmarks/bench_memory.py runs the
same harness over bigger shapes.
"""

from __future__ import annotations

import ast
import functools
import os
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from gradlab import memory, stats
from gradlab.cli import main
from gradlab.errors import SpecError
from gradlab.spec import validate

ROOT = Path(__file__).resolve().parents[1]
BASELINE = "import numpy, torch, gradlab, gradlab.cli, gradlab.runner, gradlab.stats"


def _peak_rss(argv: list[str], cwd: Path) -> tuple[int, int, str]:
    """(peak RSS in bytes, exit code, stderr) of one child process."""
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return usage.ru_maxrss * scale, proc.returncode, err


@functools.lru_cache(maxsize=None)
def baseline_rss() -> int:
    rss, code, err = _peak_rss([sys.executable, "-c", BASELINE], ROOT)
    assert code == 0, err
    return rss


def spec_text(dim: int, units: list[int], batch: int, *, dtype: str = "float64", act: str = "tanh", wrt_input: bool = False,
              mode: str = "auto", stats: dict | None = None, loss: str = "sse") -> str:
    layers = []
    for k, u in enumerate(units):
        layers.append({"type": "dense", "units": u})
        if k + 1 < len(units):
            layers.append({"type": "activation", "fn": act})
    data = {"dtype": dtype, "input": {"dim": dim, "batch": batch}, "network": {"layers": layers}, "loss": {"fn": loss},
            "check": {"memory_limit": "64 GiB", "wrt_input": wrt_input, "mode": mode, "devices": ["cpu"]}}
    if stats:
        data["stats"] = stats
    return yaml.safe_dump(data, sort_keys=False)


def measure(text: str, tmp: Path, args: tuple[str, ...] = ()) -> dict:
    """Estimate and peak RSS growth of `gradlab check SPEC -q ARGS` for one spec."""
    path = tmp / "spec.yaml"
    path.write_text(text)
    spec = validate(yaml.safe_load(text), str(path))
    rss, code, err = _peak_rss([sys.executable, "-m", "gradlab", "check", str(path), "-q", *args], tmp)
    assert code in (0, 1), err[-2000:]
    peak = max(rss - baseline_rss(), 1)
    est = memory.estimate_bytes(spec)
    return {"estimate": est, "peak": peak, "ratio": est / peak, "phases": memory.estimate_phases(spec)}


# (name, spec keywords, extra check options): wide, deep, big batch, float32/float64, wrt_input, stats.
# Each case costs ~1.7-2.5 s of CPU (most of it importing torch; one BLAS thread, tests/conftest.py); they
# run two at a time. The sizes are a quarter to a half of the first sweep's (benchmarks/bench_memory.py runs
# those as FULL_SIZE), chosen so that each case's phase is still the estimate's largest (fast, fast, numeric,
# numeric, tolerance, stats; "wide" stays above 250,000 parameters, where auto is fast mode) and the ratios
# stay close to the full sizes' (3.0, 3.1, 11.9, 5.8, 2.6, 2.6 against 3.0, 3.0, 8.1, 5.6, 1.8, 2.7; see
# benchmarks/README.md): where the arrays dominate the peak growth (wide ~160 MiB, batch ~95 MiB, stats
# ~280 MiB) an estimate that left out the phase's arrays still falls below the peak.
SWEEP = [
    ("wide 1000-1000-10 fast", dict(dim=1000, units=[1000, 10], batch=8), ()),
    ("wide f32 1000-1000-10 fast --stats", dict(dim=1000, units=[1000, 10], batch=8, dtype="float32"), ("--stats",)),
    ("deep 6x100 full wrt_input b16", dict(dim=100, units=[100] * 5 + [10], batch=16, wrt_input=True), ()),
    ("full f32 wrt_input 150-150-10 b150", dict(dim=150, units=[150, 10], batch=150, dtype="float32", wrt_input=True), ()),
    ("batch 3000 f32 10-250-10 fast", dict(dim=10, units=[250, 10], batch=3000, dtype="float32", mode="fast"), ()),
    ("stats batch 8000 --stats", dict(dim=64, units=[300, 300, 10], batch=4, stats={"batch": 8000, "seeds": 2}), ("--stats",)),
]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> dict[str, dict]:
    baseline_rss()

    def one(case):
        name, kw, args = case
        return name, measure(spec_text(**kw), tmp_path_factory.mktemp("memory"), args)

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(pool.map(one, SWEEP))


@pytest.mark.parametrize("name", [s[0] for s in SWEEP])
def test_estimate_is_an_upper_bound_of_peak_rss(name, sweep):
    m = sweep[name]
    assert m["ratio"] >= 1, f"{name}: estimate {m['estimate'] / 2**20:.0f} MiB < peak growth {m['peak'] / 2**20:.0f} MiB"


def test_estimate_is_not_absurdly_loose_for_big_shapes():
    """The model's phases, without the margin and the fixed part, stay near the arrays a check must hold."""
    spec = validate(yaml.safe_load(spec_text(4000, [8000, 10], 8)))
    p = 4000 * 8000 + 8000 + 8010 * 10
    # analytic, autograd, bounds: three float64 gradients at least; measured peak ~4.3 GiB (benchmarks/README.md)
    assert 3 * 8 * p < memory.estimate_bytes(spec) < 4 * 4.3 * 2**30


def test_the_issue_specs_are_refused_at_the_default_limit():
    wide = yaml.safe_load(spec_text(4000, [8000, 10], 8))
    del wide["check"]["memory_limit"]
    with pytest.raises(SpecError) as e:
        validate(wide, "wide.yaml")
    assert e.value.path == "network" and "limit 2 GiB" in e.value.message and "check.memory_limit" in e.value.message


def test_memory_does_not_import_spec():
    tree = ast.parse((ROOT / "gradlab" / "memory.py").read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)} | {
        a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not any(m and m.endswith("spec") for m in imported), imported


# --- gradlab stats: memory and work -----------------------------------------------------------

SMALL = textwrap.dedent("""\
    input: {dim: 8, batch: 4}
    network:
      layers:
        - {type: dense, units: 16}
        - {type: activation, fn: tanh}
        - {type: dense, units: 2}
    loss: {fn: sse}
""")


def _with(text: str, extra: str) -> dict:
    return yaml.safe_load(text + extra)


@pytest.mark.parametrize("extra,key,words", [
    ("stats: {batch: 2000000000}\n", "stats.batch", ["needs ~", "limit 2 GiB", "lower stats.batch"]),
    ("stats: {seeds: 100000000}\n", "stats.seeds", ["at most 10,000"]),
    ("stats: {seeds: 10000, batch: 100000}\n", "stats.seeds", ["budget", "seed(s) at this batch"]),
])
def test_stats_settings_beyond_the_bounds_are_refused_at_validation(extra, key, words):
    with pytest.raises(SpecError) as e:
        validate(_with(SMALL, extra), "s.yaml")
    assert e.value.path == key and all(w in e.value.message for w in words), e.value.message


def test_sane_stats_settings_pass():
    validate(_with(SMALL, "stats: {seeds: 64, batch: 4096}\n"), "s.yaml")


def test_a_big_check_spec_is_not_refused_for_stats_defaults_it_never_asked_for():
    big = yaml.safe_load(spec_text(1000, [1000, 10], 25_000, mode="fast"))  # 8 seeds x 25,000 x 1M: over the work budget
    validate(big, "big.yaml")
    with pytest.raises(SpecError) as e:  # ... which gradlab stats itself enforces
        stats.run(validate(big, "big.yaml"), path="big.yaml")
    assert e.value.path == "stats.seeds" and "set a smaller stats.batch / --batch" in e.value.message


def test_check_report_with_huge_seeds_is_refused_before_running(write_spec, tmp_path):
    """The HTML report runs gradlab stats for its depth plot: 1e8 seeds used to hang it."""
    path = write_spec(SMALL + "stats: {seeds: 100000000}\n")
    t0 = time.perf_counter()
    r = CliRunner().invoke(main, ["check", str(path), "--report", str(tmp_path / "r.html")])
    assert r.exit_code == 2 and f"Error: {path}: stats.seeds: expected at most 10,000" in r.output, r.output
    assert time.perf_counter() - t0 < 60  # a hang, not a slow machine


# --- the CUDA context: counted where cuda rows will run, in the phases that hold it (issue 22, item 5) ----------

ONE_LAYER_CUDA = {"name": "one", "input": {"dim": 4, "batch": 8}, "network": {"layers": [{"type": "dense", "units": 2}]},
                  "loss": {"fn": "sse"}, "check": {"devices": ["cpu", "cuda"], "memory_limit": "1 GiB"}}


def test_cuda_rows_that_will_be_skipped_cost_no_cuda_context(monkeypatch):
    """Without CUDA the cuda rows are skipped: a one-layer spec is not refused for a context nothing starts."""
    monkeypatch.setattr(memory, "cuda_usable", lambda: False)
    spec = validate(ONE_LAYER_CUDA)  # refused before: "needs ~1.25 GiB (peak in the numeric engine)"
    assert memory.estimate_bytes(spec) < memory.CUDA_CONTEXT_BYTES // 2  # ~0.25 GiB: the numeric engine's chunks and the fixed part


def test_the_cuda_context_is_counted_from_the_autograd_phase_on_and_named(monkeypatch):
    monkeypatch.setattr(memory, "cuda_usable", lambda: True)
    with pytest.raises(SpecError) as err:
        validate(ONE_LAYER_CUDA)
    message = str(err.value)
    assert "peak in the numeric engine" not in message  # numeric runs before torch starts the context
    assert "1 GiB of it the CUDA context the cuda rows start" in message and "leave cuda out of check.devices" in message
    spec = validate({**ONE_LAYER_CUDA, "check": {**ONE_LAYER_CUDA["check"], "memory_limit": "2 GiB"}})
    phases = memory.estimate_phases(spec)
    assert all(phases[k] >= memory.CUDA_CONTEXT_BYTES for k in memory.CUDA_PHASES if k in phases)
    assert all(phases[k] < memory.CUDA_CONTEXT_BYTES for k in ("build", "analytic", "numeric", "stats"))
    # no autograd, no context
    assert memory.estimate_bytes(spec, engines=["analytic", "numeric"]) < memory.CUDA_CONTEXT_BYTES // 2
