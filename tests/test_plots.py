"""The heat map draws what the tables say: one definition of "worst", a colour scale fitted to the
data, a uniform error drawn uniform, and every colour-bar label once."""

import numpy as np
import pytest

from gradlab import runner
from gradlab.compare import WORST_HEADER, worst_order
from gradlab.ops import ACTIVATIONS
from gradlab.report.plots import heatmap_figure, heatmap_png

from .conftest import registered
from .test_engines import BUGGY, BUGGY_SPEC


def _labels(cbar) -> list[str]:
    cbar.ax.figure.canvas.draw() if hasattr(cbar.ax.figure.canvas, "draw") else None
    return [t.get_text() for t in cbar.ax.get_yticklabels() if t.get_text()]


def _failing(shape, values, within=None):
    return np.ma.masked_array(np.asarray(values, float).reshape(shape), mask=np.zeros(shape, bool) if within is None else within)


def test_a_sign_flip_is_one_colour_with_one_label():
    rng = np.random.default_rng(0)
    flip = _failing((16, 8), 2.0 + rng.normal(0, 1e-10, 128))  # relative error 2 everywhere, up to rounding
    fig, cells, cbar = heatmap_figure(flip, "L0.weight\nanalytic vs numeric")
    assert np.unique(cells.reshape(-1, 4), axis=0).shape[0] == 1  # no colour noise over 1e-10 differences
    assert _labels(cbar) == ["2"]


@pytest.mark.parametrize("low, high", [(1e-7, 3.0), (2e-3, 5e-2), (0.3, 0.9), (1.0, 1.0001)])
def test_colour_bar_spans_the_data_and_labels_each_value_once(low, high):
    values = np.geomspace(low, high, 40)
    fig, cells, cbar = heatmap_figure(_failing((5, 8), values), "t")
    labels = _labels(cbar)
    assert labels and len(labels) == len(set(labels))
    vmin, vmax = cbar.mappable.norm.vmin, cbar.mappable.norm.vmax
    assert vmin <= low * (1 + 1e-9) and vmax >= high * (1 - 1e-9)
    if high / low >= 100:  # a log scale: one label per decade, nothing between
        assert all(label.startswith("1e") for label in labels)
        assert len(labels) == int(np.floor(np.log10(high))) - int(np.ceil(np.log10(low))) + 1


def test_elements_within_tolerance_are_not_coloured_and_the_listed_ones_are_outlined():
    values = np.array([[1e-3, 0.5], [0.9, np.nan]])
    within = np.array([[True, False], [False, False]])
    fig, cells, _ = heatmap_figure(_failing((2, 2), values, within), "t", marked=[(1, 0), (0, 1)])
    assert tuple(cells[1, 1]) != tuple(cells[0, 0])  # kink grey, within tolerance pale
    assert cells[1, 0, :3].sum() < cells[0, 1, :3].sum()  # the larger error is darker
    outlined = [p for p in fig.axes[0].patches]
    assert [(round(p.get_x() + 0.5), round(p.get_y() + 0.5)) for p in outlined] == [(0, 1), (1, 0)]  # (x=col, y=row)
    assert heatmap_png(_failing((2, 2), values, within), "t")  # draws


def test_worst_is_failing_first_then_largest_relative_error():
    rel = np.array([0.9, 0.2, 0.5, 0.5000001])
    diff = np.array([1e-9, 1.0, 2.0, 3.0])
    failing = np.array([False, True, True, True])
    # ties to 3 significant digits go to the larger |c - r|: noise does not reorder them
    assert list(worst_order(rel, diff, failing)) == [3, 2, 1, 0]
    assert "max rel" in WORST_HEADER


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    path = tmp_path_factory.mktemp("plots") / "planted.yaml"
    path.write_text(BUGGY_SPEC)
    with registered(ACTIVATIONS, BUGGY):
        return runner.check_file(path)


def test_every_pair_of_a_tensor_names_the_same_worst_element(planted):
    by_tensor = {}
    for c in planted.failures:
        by_tensor.setdefault(c.parameter, []).append(c)
    pairs = [rows for rows in by_tensor.values() if len(rows) > 1]
    assert pairs, "the planted bug fails analytic against numeric and against autograd"
    for rows in pairs:
        assert len({c.worst_index for c in rows}) == 1, [(c.candidate, c.reference, c.worst_index) for c in rows]
        for c in rows:
            # the first listed element is the one with the table's `max rel`
            first = c.worst[0]
            rel = first["abs_err"] / max(abs(first["reference"]), abs(first["candidate"]))
            assert rel == pytest.approx(c.max_rel_err, rel=1e-3) and tuple(first["index"]) == c.worst_index


def test_the_darkest_cell_of_the_heat_map_is_a_listed_worst_element(planted):
    drawn = 0
    for c in planted.failures:
        if c.rel_err_map is None or c.rel_err_map.ndim != 2:
            continue
        listed = [tuple(w["index"]) for w in c.worst]
        fig, cells, _ = heatmap_figure(c.rel_err_map, c.parameter, marked=listed)
        darkness = np.where(~np.ma.getmaskarray(c.rel_err_map), -cells[..., :3].sum(axis=-1), -np.inf)
        darkest = {tuple(int(i) for i in ix) for ix in np.argwhere(darkness == darkness.max())}
        assert listed[0] in darkest
        drawn += 1
    assert drawn
