"""A CNN with `flatten` forgotten checks clean but maps each row of the feature map on its own: `gradlab check`
says so beside its layers as a named warning, and the exit code stays what the comparisons decide (issue 22, item 5)."""

from __future__ import annotations

import io

from click.testing import CliRunner
from rich.console import Console

from gradlab import hazards, runner
from gradlab.cli import main
from gradlab.report.terminal import render
from gradlab.spec import load_spec, validate

from .conftest import ROOT


def _cnn(head: list) -> dict:
    return {"name": "cnn", "input": {"shape": [1, 6, 6], "batch": 2}, "target": {"kind": "onehot", "classes": 3},
            "loss": {"fn": "softmax_cross_entropy"}, "check": {"engines": ["analytic", "numeric"]},
            "network": {"layers": [{"type": "conv2d", "channels": 2, "kernel": 3, "padding": 1}, {"type": "activation", "fn": "relu"},
                                   {"type": "maxpool2d", "kernel": 2, "stride": 2}, *head]}}


NO_FLATTEN = _cnn([{"type": "dense", "units": 3}])
WITH_FLATTEN = _cnn([{"type": "flatten"}, {"type": "dense", "units": 3}])


def test_a_dense_layer_on_a_spatial_axis_is_a_named_warning():
    (w,) = hazards.of_spec(validate(NO_FLATTEN))
    assert (w.kind, w.path) == ("dense-on-spatial-axis", "network.layers[3]")
    assert "last axis of its input (2, 3, 3)" in w.message and "maxpool2d output at network.layers[2]" in w.message
    assert "{type: flatten}" in w.message
    assert hazards.of_spec(validate(WITH_FLATTEN)) == []


def test_shipped_specs_show_no_hazard():
    """Transformers' dense layers act on (T, D) features, residual MLPs on vectors, the CNN is flattened: no warning."""
    for name in ("layers/small_cnn", "layers/tiny_transformer_block", "layers/residual_mlp"):
        assert hazards.of_spec(load_spec(ROOT / "specs" / f"{name}.yaml")) == [], name


def test_the_warning_is_printed_beside_the_layers_and_the_spec_still_passes():
    result = runner.run(validate(NO_FLATTEN), path="cnn.yaml")
    assert result.passed and [w.kind for w in result.warnings] == ["dense-on-spatial-axis"]
    assert result.to_dict()["warnings"][0]["severity"] == "warning"
    out = io.StringIO()
    render([result], console=Console(file=out, width=100, no_color=True))
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("PASS  cnn (cnn.yaml)")
    assert lines[1].startswith("  warning (dense-on-spatial-axis): network.layers[3]: dense acts on the last axis")
    assert lines[-1].startswith("PASS:")


def test_the_warning_does_not_change_the_exit_code(write_spec):
    import yaml

    result = CliRunner().invoke(main, ["check", str(write_spec(yaml.safe_dump(NO_FLATTEN)))])
    assert result.exit_code == 0, result.output
    assert "warning (dense-on-spatial-axis)" in result.output


def test_the_warning_survives_the_service_round_trip():
    """`--remote` prints what a local check prints: the JSON document read back keeps the warning."""
    from gradlab.batch import check_document
    from gradlab.service.client import results_from_document

    result = runner.run(validate(NO_FLATTEN), path="cnn.yaml")
    back = results_from_document(check_document([result], {}))
    assert back[0].warnings == result.warnings and [w.kind for w in back[0].warnings] == ["dense-on-spatial-axis"]
