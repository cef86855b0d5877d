"""`gradlab stats` verdicts that say which quantity is out of scale (issue 22, item 5): δ or dW; the
measured and theoretical factor averaged over the same rows; a zero weight gradient never `ok`."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gradlab import stats
from gradlab.report import stats_table
from gradlab.report.depth import from_stats
from gradlab.report.plots import depth_figure
from gradlab.network import build
from gradlab.spec import validate


def _tanh(depth: int, std: float, width: int = 16) -> dict:
    layers = [x for _ in range(depth) for x in ({"type": "dense", "units": width}, {"type": "activation", "fn": "tanh"})]
    return {"name": "tanh-stack", "input": {"dim": width, "batch": 64}, "target": {"kind": "onehot"},
            "loss": {"fn": "softmax_cross_entropy"}, "network": {"init": {"scheme": "normal", "std": std}, "layers": layers},
            "stats": {"seeds": 2}}


@pytest.fixture(scope="module")
def small_weights():
    """The issue's case, shrunk: tanh with small weights shrinks the forward signal as fast as δ going back."""
    return stats.run(validate(_tanh(8, 0.05)))


def test_delta_vanishes_but_dw_is_flat_so_the_verdict_names_delta(small_weights):
    r = small_weights
    first, out = r.layers[0], r.layers[-1]
    assert first.mean["ratio_to_output"] < 0.01  # δ at L0 is far below the output row's
    grad = [l.mean["grad_norm"] for l in r.layers]
    assert max(grad) / min(grad) < 2  # dW rms is flat: the weight gradient does not vanish
    assert first.mean["grad_ratio_to_output"] > 0.5 and first.mean["input_rms"] > 100 * out.mean["input_rms"]
    assert first.verdict == "vanishing-delta" and r.verdict == "vanishing-delta"
    assert not any(l.verdict.endswith("-dW") for l in r.layers)
    lines = stats_table.summary_lines(r)
    assert any(line.startswith("vanishing-delta at L0") and "δ shrinks toward the input, dW does not" in line for line in lines)
    assert "thresholds apply to dW/out (-dW verdicts), else to δ/δout (-delta verdicts)" in lines
    table = stats_table.render_text([r])
    assert "dW/out" in table and "δ/δout" in table


def test_a_vanishing_weight_gradient_is_vanishing_dw():
    """Sigmoid with n Var[W] = 1: δ shrinks by <= 1/4 a row while the inputs stay O(1), so dW vanishes with it."""
    layers = [x for _ in range(6) for x in ({"type": "dense", "units": 16}, {"type": "activation", "fn": "sigmoid"})]
    r = stats.run(validate({"input": {"dim": 16, "batch": 64}, "target": {"kind": "onehot"}, "loss": {"fn": "softmax_cross_entropy"},
                            "network": {"init": {"scheme": "xavier_normal"}, "layers": layers}, "stats": {"seeds": 2}}))
    assert r.layers[0].mean["grad_ratio_to_output"] < 0.01 and r.layers[0].verdict == "vanishing-dW" and r.verdict == "vanishing-dW"


def test_the_depth_plot_rings_each_verdict_on_its_own_quantity(small_weights):
    fig = depth_figure(from_stats(small_weights))
    grad_ax, ratio_ax = fig.axes[:2]
    labels = lambda ax: [line.get_label() for line in ax.get_lines()]  # noqa: E731
    assert "vanishing-delta" in labels(ratio_ax) and "vanishing-delta" not in labels(grad_ax)


def test_measured_and_theory_factors_are_averaged_over_the_same_rows():
    """A batchnorm between two rows leaves the row before it without a theory: neither geomean may average it."""
    spec = validate({
        "input": {"dim": 8, "batch": 32}, "target": {"kind": "regression"}, "loss": {"fn": "sse"}, "stats": {"seeds": 2},
        "network": {"init": {"scheme": "he_normal"}, "layers": [
            {"type": "dense", "units": 8}, {"type": "batchnorm"}, {"type": "activation", "fn": "relu"},
            {"type": "dense", "units": 8}, {"type": "activation", "fn": "relu"}, {"type": "dense", "units": 1}]}})
    r = stats.run(spec)
    assert [l.name for l in r.layers] == ["layers.0", "layers.1", "layers.3", "layers.5"]
    assert math.isnan(r.layers[0].mean["theory_factor"]) and math.isfinite(r.layers[0].mean["factor"])
    assert r.summary["theory_rows"] == ["layers.1", "layers.3"] and r.summary["factor_rows"] == 3
    # per initialisation, each geomean over exactly rows 1 and 2; then the mean over the initialisations
    measured, theory = [], []
    for seed in r.seeds:
        net = build(spec, seed=seed)
        sites = stats.sites(net, spec.network.init)
        m = stats.measure(sites, stats.observe(net, sites), lr=0.01, saturation_level=0.01)
        measured.append(math.sqrt(m["factor"][1] * m["factor"][2]))
        theory.append(math.sqrt(m["theory_factor"][1] * m["theory_factor"][2]))
    assert r.summary["factor_geomean_theory_rows"] == pytest.approx(np.mean(measured), rel=1e-12)
    assert r.summary["theory_factor_geomean"] == pytest.approx(np.mean(theory), rel=1e-12)
    assert r.summary["factor_geomean"] != pytest.approx(r.summary["factor_geomean_theory_rows"], rel=1e-3)  # row 0 counts there
    lines = stats_table.summary_lines(r)
    assert any(line.startswith("factor geomean ") and line.endswith(" over the 2 rows with a theory value") for line in lines)
    assert f"factor geomean {stats_table._fmt(r.summary['factor_geomean'], 'fix')} over all 3 rows with a factor" in lines


def test_a_zero_weight_gradient_at_the_output_row_is_never_ok():
    """The relu below the output row is off for every sample: δ reaches the output row, dW = input^T δ = 0."""
    r = stats.run(validate({
        "input": {"dim": 4, "batch": 16}, "target": {"kind": "regression"}, "loss": {"fn": "sse"}, "stats": {"seeds": 2},
        "network": {"init": {"scheme": "he_normal", "bias": -50.0}, "layers": [
            {"type": "dense", "units": 4}, {"type": "activation", "fn": "relu"}, {"type": "dense", "units": 1}]}}))
    out = r.layers[-1]
    assert out.mean["grad_norm"] == 0.0 and out.mean["delta_rms"] > 0
    assert out.verdict == "zero-gradient"
    assert r.summary["zero_weight_gradient"]["layers.2"] == "its input is zero for every sample"
    assert "dW = 0 exactly at L2: its input is zero for every sample" in stats_table.summary_lines(r)
