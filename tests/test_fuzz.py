"""Property tests of gradlab itself: the three engines agree on random valid specs; `gradlab fuzz`."""

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings

from gradlab import runner
from gradlab.cli import main
from gradlab.errors import SpecError
from gradlab.ops import ACTIVATIONS, Activation
from gradlab.spec import validate
from gradlab.strategies import specs

from .conftest import registered


@settings(max_examples=25, derandomize=True, database=None, deadline=None, suppress_health_check=list(HealthCheck))
@given(specs())
def test_three_engines_agree_on_random_valid_specs(data):
    spec = validate(data)
    with np.errstate(all="ignore"):
        result = runner.run(spec)
    assert result.passed, [(c.parameter, c.candidate, c.reference, c.note) for c in result.failures]
    assert {"analytic", "numeric"} <= {c.candidate for c in result.comparisons} | {c.reference for c in result.comparisons}


@settings(max_examples=60, derandomize=True, database=None, deadline=None)
@given(specs())
def test_drawn_specs_are_valid_and_cover_the_registries(data):
    spec = validate(data)
    assert 1 <= len([l for l in spec.network.layers if l.type == "dense"]) <= 3


def test_cli_fuzz_passes_on_the_shipped_ops(tmp_path):
    result = CliRunner().invoke(main, ["fuzz", "--examples", "15", "--output-dir", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("PASS") and not (tmp_path / "out").exists()


def test_cli_fuzz_finds_a_planted_bug_and_writes_a_runnable_spec(tmp_path):
    sig = ACTIVATIONS.get("sigmoid")
    buggy = Activation(name="fuzz_buggy_sigmoid", doc="s(1 + s)", forward=sig.forward,
                       backward=lambda z, a, g, hp: (g * a * (1 + a), {}), torch=sig.torch)
    with registered(ACTIVATIONS, buggy):
        result = CliRunner().invoke(main, ["fuzz", "--examples", "60", "--output-dir", str(tmp_path)])
        assert result.exit_code == 1, result.output
        written = sorted(tmp_path.glob("*.yaml"))
        assert written and "gradlab check" in result.output
        doc = yaml.safe_load(written[0].read_text())
        assert any(l.get("fn") == "fuzz_buggy_sigmoid" for l in doc["network"]["layers"])
        assert len(doc["network"]["layers"]) <= 3  # shrunk
        rerun = CliRunner().invoke(main, ["check", str(written[0])])
        assert rerun.exit_code == 1


def test_binary_cross_entropy_after_a_one_unit_softmax_is_refused():
    """Found by the fuzzer: softmax over one unit is the constant 1, and log(1 - p) = -inf."""
    data = {"input": {"dim": 2}, "target": {"kind": "binary"}, "loss": {"fn": "binary_cross_entropy"},
            "network": {"layers": [{"type": "dense", "units": 1}, {"type": "activation", "fn": "softmax"}]}}
    with pytest.raises(SpecError, match="softmax over one unit"):
        validate(data)
