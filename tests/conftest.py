import contextlib
import ctypes
import os
from pathlib import Path

import pytest

# One BLAS/OpenMP thread per process for the test run, and for the gradlab processes the tests start (they
# inherit the environment). On a shared 2-core machine the worker threads of OpenBLAS and OpenMP spin while
# they wait for work: on the tests' small matrices that cost ~10x the CPU of the products themselves (one
# `stats.run` of specs/stats/tanh10_xavier_uniform.yaml: 3.1 s of CPU with the default threads, 0.25 s with
# one; tests/test_stats.py: 26.9 s -> 5.6 s). A variable set by the caller is left as it is.
ONE_THREAD = {var: "1" for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS") if var not in os.environ}
os.environ.update(ONE_THREAD)


def _one_openblas_thread() -> None:
    """numpy is imported before this file (by a plugin), so its OpenBLAS has read the environment already."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:  # not Linux: the environment still reaches the processes the tests start
        return
    for lib in sorted({line.split()[-1] for line in maps.splitlines() if "openblas" in line and line.split()[-1].startswith("/")}):
        try:
            handle = ctypes.CDLL(lib)
        except OSError:
            continue
        for name in ("scipy_openblas_set_num_threads64_", "openblas_set_num_threads64_", "openblas_set_num_threads"):
            if hasattr(handle, name):
                getattr(handle, name)(1)
                break


if "OPENBLAS_NUM_THREADS" in ONE_THREAD:
    _one_openblas_thread()

pytest_plugins = ["pytester"]  # gradlab's own pytest plugin is exercised with pytester

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted((ROOT / "specs").glob("*.yaml"))

# tests/hostile/ holds hostile specs and ops for tests/test_hostile.py, which runs them in subprocesses;
# gradlab's own pytest plugin must not collect them as spec items (`*` also matches subfolders).
collect_ignore_glob = ["hostile/*.yaml", "hostile/*.yml"]


@contextlib.contextmanager
def registered(registry, op):
    """Register a test-only op for the duration of a test."""
    registry.register(op)
    try:
        yield op
    finally:
        registry.unregister(op.name)


@pytest.fixture
def write_spec(tmp_path):
    def _write(text: str, name: str = "spec.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return _write


# tests/fuzz_found holds specs the fuzzer found, each with an `# expect: pass | refused | open` line that
# tests/test_fuzz.py holds it to; the pytest plugin would otherwise collect every one as "must pass".
collect_ignore = ["fuzz_found", "supervision_targets"]  # specs whose user code misbehaves on purpose (test_supervision.py)

