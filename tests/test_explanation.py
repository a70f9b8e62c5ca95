"""Explanation slices like shap.Explanation: rows, features by name, outputs, reductions."""

import numpy as np
import pytest

from sklearn_shapley import ExactExplainer, Explanation

NAMES = ["age", "bmi", "bp"]
OUTPUTS = ["no", "yes"]


@pytest.fixture
def multi():
    rng = np.random.default_rng(0)
    return Explanation(
        rng.normal(size=(6, 3, 2)),
        rng.normal(size=(6, 2)),
        data=rng.normal(size=(6, 3)),
        feature_names=NAMES,
        output_names=OUTPUTS,
        n_evaluations=np.arange(6) * 10,
    )


@pytest.fixture
def single(multi):
    return Explanation(multi.values[..., 1], multi.base_values[:, 1], multi.data, NAMES)


def test_one_row_drops_the_row_axis(single):
    row = single[2]
    assert row.shape == (3,) and row.axes == ("features",)
    np.testing.assert_array_equal(row.values, single.values[2])
    assert row.base_values == single.base_values[2]
    np.testing.assert_array_equal(row.data, single.data[2])
    assert row.feature_names == NAMES
    assert len(row) == 3


@pytest.mark.parametrize(
    "rows",
    [slice(1, 4), [0, 2, 5], np.array([4, 1]), np.array([1, 0, 1, 0, 0, 1], bool)],
)
def test_rows_by_slice_positions_and_mask(multi, rows):
    sub = multi[rows]
    np.testing.assert_array_equal(sub.values, multi.values[rows])
    np.testing.assert_array_equal(sub.base_values, multi.base_values[rows])
    np.testing.assert_array_equal(sub.data, multi.data[rows])
    np.testing.assert_array_equal(sub.n_evaluations, multi.n_evaluations[rows])
    assert sub.axes == multi.axes and sub.feature_names == NAMES
    assert len(sub) == len(multi.values[rows])


def test_one_feature_by_name_or_position(single):
    by_name, by_index = single[:, "bmi"], single[:, 1]
    for column in (by_name, by_index):
        assert column.axes == ("rows",) and column.feature_names == "bmi"
        np.testing.assert_array_equal(column.values, single.values[:, 1])
        np.testing.assert_array_equal(column.data, single.data[:, 1])
        np.testing.assert_array_equal(column.base_values, single.base_values)
    picked = single[:, ["bp", "age"]]
    assert picked.feature_names == ["bp", "age"]
    np.testing.assert_array_equal(picked.values, single.values[:, [2, 0]])
    np.testing.assert_array_equal(picked.data, single.data[:, [2, 0]])
    assert single[:, np.array([True, False, True])].feature_names == ["age", "bp"]


def test_one_output_by_position_or_name(multi):
    for out in (multi[:, :, 1], multi[:, :, "yes"], multi[..., "yes"]):
        assert out.axes == ("rows", "features") and out.output_names == "yes"
        np.testing.assert_array_equal(out.values, multi.values[..., 1])
        np.testing.assert_array_equal(out.base_values, multi.base_values[:, 1])
        np.testing.assert_array_equal(out.data, multi.data)
    one = multi[3, "bp", "no"]
    assert one.axes == () and one.feature_names == "bp" and one.output_names == "no"
    assert one.values == multi.values[3, 2, 0]
    assert one.base_values == multi.base_values[3, 0]
    assert one.data == multi.data[3, 2]
    assert one.n_evaluations == 30


def test_mean_and_sum_over_rows_keep_efficiency_on_average(single):
    outputs = single.base_values + single.values.sum(axis=1)
    mean = single.mean(0)
    assert mean.axes == ("features",) and mean.data is None
    np.testing.assert_allclose(mean.values, single.values.mean(axis=0))
    np.testing.assert_allclose(mean.base_values + mean.values.sum(), outputs.mean())
    total = single.sum(0)
    np.testing.assert_allclose(total.base_values + total.values.sum(), outputs.sum())
    importance = single.abs.mean(0)
    np.testing.assert_allclose(importance.values, np.abs(single.values).mean(axis=0))
    assert importance.feature_names == NAMES
    per_row = single.sum(1)  # over features: the explained output minus the base
    np.testing.assert_allclose(per_row.base_values + per_row.values, outputs)
    assert per_row.axes == ("rows",) and per_row.feature_names is None


def test_abs_keeps_everything_but_the_sign(multi):
    a = multi.abs
    np.testing.assert_array_equal(a.values, np.abs(multi.values))
    np.testing.assert_array_equal(a.base_values, multi.base_values)
    assert a.axes == multi.axes and a.output_names == OUTPUTS


def test_mean_over_outputs(multi):
    m = multi.mean(2)
    assert m.axes == ("rows", "features") and m.output_names is None
    np.testing.assert_allclose(m.base_values, multi.base_values.mean(axis=1))


def test_data_that_is_not_per_player_follows_rows_only():
    """Image rows (64 pixels) explained by 4 patches: data is not sliced by player."""
    rng = np.random.default_rng(1)
    e = Explanation(rng.normal(size=(5, 4)), np.zeros(5), rng.normal(size=(5, 64)))
    np.testing.assert_array_equal(e[2].data, e.data[2])
    assert e[1:3].data.shape == (2, 64)
    assert e[:, 1].data is None and e[:, :].data.shape == (5, 64)


def test_errors_say_what_to_do(multi):
    with pytest.raises(IndexError, match=r"'weight' is not one of the feature names"):
        multi[:, "weight"]
    with pytest.raises(IndexError, match="too many indices"):
        multi[0, 0, 0, 0]
    with pytest.raises(IndexError, match="needs 6 entries"):
        multi[np.array([True, False])]
    with pytest.raises(IndexError, match="by position, not by name"):
        multi["age"]
    with pytest.raises(IndexError, match="out of range"):
        multi[6]
    with pytest.raises(ValueError, match="axis must be an int"):
        multi.mean(3)
    with pytest.raises(ValueError, match="one name per player"):
        Explanation(np.zeros((2, 3)), np.zeros(2), feature_names=["a", "b"])
    with pytest.raises(ValueError, match="one per output"):
        Explanation(np.zeros((2, 3, 2)), np.zeros((2, 2)), output_names=["a"])


def test_iterating_gives_rows(single):
    rows = list(single)
    assert len(rows) == 6
    np.testing.assert_array_equal(rows[4].values, single.values[4])


def test_slices_match_shaps_own_slicing(multi):
    """The peer: shap.Explanation sliced the same way gives the same arrays."""
    pytest.importorskip("shap")
    theirs = multi.to_shap()
    for item in [2, slice(1, 3), (slice(None), "bmi"), (slice(None), slice(None), 1)]:
        ours, peer = multi[item].to_shap(), theirs[item]
        np.testing.assert_array_equal(ours.values, peer.values)
        np.testing.assert_array_equal(ours.base_values, peer.base_values)
        np.testing.assert_array_equal(ours.data, peer.data)
        assert ours.feature_names == peer.feature_names
    mean = multi[:, :, 1].abs.mean(0).to_shap()
    np.testing.assert_allclose(mean.values, theirs[:, :, 1].abs.mean(0).values)


def test_sliced_to_shap_feeds_shaps_plots(multi):
    shap = pytest.importorskip("shap")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    row = multi[0, :, "yes"].to_shap()
    assert row.output_names == "yes" and row.values.shape == (3,)
    shap.plots.waterfall(row, show=False)
    shap.plots.bar(multi[:, :, 1].to_shap(), show=False)
    shap.plots.scatter(multi[:, "bmi", 1].to_shap(), show=False)
    plt.close("all")


def test_explainer_output_slices_by_name():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 3))
    explainer = ExactExplainer(lambda Z: Z[:, 0] * Z[:, 1] + Z[:, 2]).fit(X)
    e = explainer.explain(X[:5])
    np.testing.assert_array_equal(e[:, "x1"].values, explainer.transform(X[:5])[:, 1])
    np.testing.assert_allclose(
        e[1].base_values + e[1].values.sum(), explainer.explained_output(X[1:2])[0, 0]
    )
    np.testing.assert_allclose(
        e[:2].efficiency_gap(explainer.explained_output(X[:2])[:, 0]), 0, atol=1e-10
    )
