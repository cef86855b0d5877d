"""Property tests of gradlab itself: the three engines agree on random valid specs; `gradlab fuzz`."""

from pathlib import Path

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
from gradlab.strategies import ARCHITECTURES, ND_ARCHITECTURES, nd_specs, specs

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
    result = CliRunner().invoke(main, ["fuzz", "--architectures", "mlp", "--examples", "15", "--output-dir", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("PASS") and not (tmp_path / "out").exists()


def test_cli_fuzz_finds_a_planted_bug_and_writes_a_runnable_spec(tmp_path):
    sig = ACTIVATIONS.get("sigmoid")
    buggy = Activation(name="fuzz_buggy_sigmoid", doc="s(1 + s)", forward=sig.forward,
                       backward=lambda z, a, g, hp: (g * a * (1 + a), {}), torch=sig.torch)
    with registered(ACTIVATIONS, buggy):
        result = CliRunner().invoke(main, ["fuzz", "--architectures", "mlp", "--examples", "60", "--output-dir", str(tmp_path)])
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


# --- N-d architectures (issue 11) -------------------------------------------------------------------

ND_LAYER_TYPES = {"conv1d", "conv2d", "batchnorm", "layernorm", "groupnorm", "dropout", "flatten", "global_avgpool",
                  "attention", "residual", "dense", "activation"}


def _walk(layers):
    for layer in layers:
        yield layer
        yield from _walk(layer.get("layers", ()))


def test_drawn_nd_specs_are_valid_tiny_and_cover_the_layer_ops():
    """Shapes are tracked while drawing: every draw validates as it is, with no rejection."""
    seen, projections, inputs = set(), set(), set()

    @settings(max_examples=50, derandomize=True, database=None, deadline=None, suppress_health_check=list(HealthCheck))
    @given(nd_specs())
    def draw(data):
        spec = validate(data)
        table = spec.layer_table()
        assert sum(row.params for row in table) < 2000
        if any(row.layer.type == "batchnorm" for row in table):
            assert spec.input.batch >= 2
        layers = list(_walk(data["network"]["layers"]))
        assert any(layer["type"] not in ("dense", "activation") for layer in layers)
        seen.update(layer["type"] for layer in layers)
        projections.update(str(layer.get("projection", False)) for layer in layers if layer["type"] == "residual")
        inputs.add(len(spec.input.sample_shape))

    draw()
    assert ND_LAYER_TYPES <= seen, ND_LAYER_TYPES - seen
    assert {"maxpool1d", "maxpool2d", "avgpool1d", "avgpool2d"} & seen
    assert {"False", "True"} <= projections and {"dense", "conv"} & projections
    assert {2, 3} <= inputs  # (C, L) or (T, D), and (C, H, W)


def test_each_architecture_draws_its_own_family():
    for arch, must in {"cnn": ("conv1d", "conv2d"), "residual": ("residual",), "transformer": ("attention", "layernorm")}.items():
        found = set()

        @settings(max_examples=10, derandomize=True, database=None, deadline=None, suppress_health_check=list(HealthCheck))
        @given(specs(architectures=(arch,)))
        def draw(data):
            validate(data)
            found.update(layer["type"] for layer in _walk(data["network"]["layers"]))

        draw()
        assert found & set(must), (arch, found)
    with pytest.raises(ValueError, match="unknown architectures"):
        specs(architectures=("rnn",))


@pytest.mark.slow
def test_cli_fuzz_runs_the_nd_architectures(tmp_path):
    """A short run over the N-d families (the known false alarms in tests/fuzz_found are avoided by the seed)."""
    args = ["fuzz", "--architectures", ",".join(ND_ARCHITECTURES), "--examples", "12", "--seed", "3", "--output-dir", str(tmp_path / "out")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("PASS: the engines agree on all 12 random specs (cnn, residual, transformer")


def test_a_spec_gradlab_refuses_at_its_point_is_not_a_disagreement():
    """Found while fuzzing N-d nets: a float32 loss saturated to inf/nan is refused with a SpecError by the run;
    the fuzzer counts it and draws another spec instead of reporting a crash."""
    from gradlab.commands.fuzz import Refused, _check

    data = {"dtype": "float32", "input": {"dim": 1, "scale": 1000.0}, "target": {"kind": "binary"},
            "network": {"init": {"scheme": "normal", "std": 1000.0}, "layers": [{"type": "dense", "units": 1}, {"type": "activation", "fn": "sigmoid"}]},
            "loss": {"fn": "binary_cross_entropy"}}
    with pytest.raises(Refused, match="saturated"):
        _check(data)


def test_cli_fuzz_refuses_an_unknown_architecture():
    result = CliRunner().invoke(main, ["fuzz", "--architectures", "cnn,rnn"])
    assert result.exit_code == 2 and "--architectures" in result.output
    assert set(ARCHITECTURES) == {"mlp", "cnn", "residual", "transformer"}


FOUND = sorted((Path(__file__).parent / "fuzz_found").glob("*.yaml"))


def _expected(path: Path) -> str:
    """The `# expect: pass|refused|open` line of a spec the fuzzer found."""
    for line in path.read_text().splitlines():
        if line.startswith("# expect:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"{path.name} has no '# expect: pass|refused|open' line")


@pytest.mark.parametrize("path", [
    pytest.param(p, id=p.stem, marks=pytest.mark.xfail(reason="open: found by `gradlab fuzz`, see the file's header", strict=False))
    if _expected(p) == "open" else pytest.param(p, id=p.stem) for p in FOUND])
def test_specs_found_by_the_fuzzer(path):
    """tests/fuzz_found: minimal specs `gradlab fuzz` found on N-d networks -- fixed ones (pass, or refused at
    load with a SpecError) stay as regression specs; open ones are expected to fail until fixed."""
    from gradlab.spec import load_spec

    if _expected(path) == "refused":
        with pytest.raises(SpecError):
            load_spec(path)
        return
    with np.errstate(all="ignore"):
        result = runner.run(load_spec(path), path=str(path))
    assert result.passed, [(c.parameter, c.candidate, c.reference) for c in result.failures]
