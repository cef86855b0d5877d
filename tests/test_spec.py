"""Spec loading: the issue's documents verbatim, and one clear error per malformed spec."""

import textwrap

import pytest
from click.testing import CliRunner

from gradlab.cli import main
from gradlab.errors import SpecError
from gradlab.spec import load_spec

from .conftest import ROOT, SPECS

GOOD = """\
name: ok
input: {dim: 3, batch: 4}
target: {kind: regression}
network:
  layers:
    - {type: dense, units: 5}
    - {type: activation, fn: tanh}
    - {type: dense, units: 2}
loss: {fn: sse}
"""


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_shipped_specs_load(path):
    spec = load_spec(path)
    assert spec.network.layers


def test_issue_documents_verbatim():
    seed003 = load_spec(ROOT / "specs/seed003_two_layer.yaml")
    assert seed003.network.convention == "out_in" and seed003.loss.fn == "sse"
    seed002 = load_spec(ROOT / "specs/seed002_classifier.yaml")
    assert seed002.network.layers[1].hyper() == {"slope": 0.05}
    assert seed002.check.devices == ["cpu", "cuda"] and seed002.check.tolerance.rtol == 1e-6
    seed001 = load_spec(ROOT / "specs/seed001_folded_bias.yaml")
    assert seed001.network.layers[0].bias == "folded"
    assert seed001.network.layers[3].trainable_names() == ("c", "beta")
    assert seed001.loss.effective_reduction == "mean"


def _mutate(old: str, new: str) -> str:
    assert old in GOOD, old
    return GOOD.replace(old, new)


# (spec text, key path expected in the message, fragment of the message)
MALFORMED = [
    (GOOD.replace("loss: {fn: sse}\n", ""), "loss", "required key is missing"),
    (_mutate("input: {dim: 3, batch: 4}\n", ""), "input", "required key is missing"),
    (_mutate("{dim: 3, batch: 4}", "{batch: 4}"), "input.dim", "missing"),
    (_mutate("units: 5", "units: -5"), "network.layers[0].units", "> 0"),
    (_mutate("units: 5", "units: five"), "network.layers[0].units", "integer"),
    (_mutate("units: 5", "units: 2.5"), "network.layers[0].units", "integer"),
    (_mutate("fn: tanh", "fn: tanhh"), "network.layers[1].fn", "did you mean 'tanh'"),
    (_mutate("fn: tanh", "fn: swish"), "network.layers[1].fn", "unknown activation 'swish'"),
    (_mutate("{type: dense, units: 5}", "{type: dense, unit: 5}"), "network.layers[0].unit", "did you mean 'units'"),
    (_mutate("{type: dense, units: 5}", "{type: dens, units: 5}"), "network.layers[0].type", "did you mean 'dense'"),
    (_mutate("name: ok", "name: ok\nsede: 3"), "sede", "did you mean 'seed'"),
    (_mutate("{fn: sse}", "{fn: hinge}"), "loss.fn", "unknown loss 'hinge'"),
    (_mutate("{fn: sse}", "{fn: sse, reduction: average}"), "loss.reduction", "'sum'"),
    (_mutate("{fn: sse}", "{fn: cross_entropy}"), "target.kind", "onehot"),
    (_mutate("{kind: regression}", "{kind: onehot, classes: 3}").replace("fn: sse", "fn: softmax_cross_entropy"), "target.classes", "dimension mismatch"),
    (_mutate("{kind: regression}", "{kind: regression, dim: 4}"), "target.dim", "dimension mismatch"),
    (_mutate("{kind: regression}", "{kind: onehot}").replace("fn: sse", "fn: cross_entropy"), "loss.fn", "takes probabilities"),
    (_mutate("{fn: sse}", "{fn: mse, reduction: sum}"), "loss.reduction", "use fn: sse"),
    (_mutate("fn: tanh}", "fn: tanh, slope: 0.1}"), "network.layers[1].slope", "unknown key"),
    (_mutate("fn: tanh}", "fn: leaky_relu, slope: abc}"), "network.layers[1]", "finite number"),
    (_mutate("fn: tanh}", "fn: relu, trainable: [eps]}"), "network.layers[1]", "no trainable hyperparameter"),
    (_mutate("{type: dense, units: 5}", "{type: dense, units: 5, bias: maybe}"), "network.layers[0].bias", "true, false or 'folded'"),
    (_mutate("network:\n", "dtype: float16\nnetwork:\n"), "dtype", "'float64'"),
    (_mutate("network:\n", "check: {engines: [analytic]}\nnetwork:\n"), "check.engines", "at least 2"),
    (_mutate("network:\n", "check: {devices: [tpu]}\nnetwork:\n"), "check.devices", "unknown device 'tpu'"),
    (_mutate("network:\n", "check: {memory_limit: lots}\nnetwork:\n"), "check.memory_limit", "2 GiB"),
    (_mutate("units: 5}", "units: 200000}").replace("units: 2}", "units: 200000}"), "network", "raise check.memory_limit"),
    (_mutate("layers:\n    - {type: dense, units: 5}\n    - {type: activation, fn: tanh}\n    - {type: dense, units: 2}", "layers: []"), "network.layers", "at least 1"),
    (_mutate("  layers:\n    - {type: dense, units: 5}\n    - {type: activation, fn: tanh}\n    - {type: dense, units: 2}", "  layers:\n    - {type: activation, fn: tanh}"), "network.layers", "no parameters"),
    ("name: [unclosed\n", "line", "not valid YAML"),
    ("- just\n- a list\n", "(top level)", "expected a mapping"),
    ("", "(top level)", "empty"),
    (GOOD + "seed: 1\nseed: 2\n", "line", "duplicate key 'seed'"),
    (_mutate("input: {dim: 3, batch: 4}", "input: 3"), "input", "mapping"),
]


@pytest.mark.parametrize("text,path,fragment", MALFORMED, ids=[f"bad{i:02d}-{m[1]}" for i, m in enumerate(MALFORMED)])
def test_malformed_spec_is_one_clear_error(write_spec, text, path, fragment):
    file = write_spec(text)
    with pytest.raises(SpecError) as info:
        load_spec(file)
    msg = str(info.value)
    assert msg.startswith(str(file)), msg
    assert f": {path}" in msg, msg
    assert fragment in msg, msg


@pytest.mark.parametrize("text,path,fragment", MALFORMED[::4], ids=[f"cli{i:02d}" for i in range(len(MALFORMED[::4]))])
def test_malformed_spec_cli_exit_2_without_traceback(write_spec, text, path, fragment):
    file = write_spec(text)
    result = CliRunner().invoke(main, ["check", str(file)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.output.startswith("Error: ") and fragment in result.output


def test_unreadable_file(tmp_path):
    result = CliRunner().invoke(main, ["check", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2 and "no such file" in result.output


def test_name_defaults_to_file_stem(write_spec):
    assert load_spec(write_spec(GOOD.replace("name: ok\n", ""), "my_net.yaml")).name == "my_net"


def test_string_numbers_and_size_units(write_spec):
    text = GOOD.replace("network:\n", "check: {memory_limit: 512 MiB, tolerance: {rtol: 1e-5}}\nnetwork:\n")
    spec = load_spec(write_spec(textwrap.dedent(text)))
    assert spec.check.memory_limit == 512 * 2**20 and spec.check.tolerance.rtol == 1e-5
