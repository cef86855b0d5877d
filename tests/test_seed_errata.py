"""gradlab catches the slips in the seed write-ups (examples/ops/seed_errata.py)."""

import pytest

from gradlab.audit import audit

from .conftest import ROOT

ERRATA = ["Seed003OutputDelta", "Seed001ReLU", "Seed002CrossEntropyGradient", "Seed002TanhDerivative"]


@pytest.mark.parametrize("name", ERRATA)
def test_seed_slip_is_caught_with_a_counterexample(name):
    result = audit(f"{ROOT / 'examples/ops/seed_errata.py'}:{name}", examples=60, seed=0)
    assert not result.passed
    assert any(f.kind == "mismatch" for f in result.findings)
