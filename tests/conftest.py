import contextlib
from pathlib import Path

import pytest

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

