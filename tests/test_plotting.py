"""The plots draw what they say, in shap's order and colours (content, not pixels)."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import PathCollection  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402

from sklearn_shapley import ExactExplainer, Explanation, plotting  # noqa: E402

NAMES = ["a", "b", "c", "d", "e"]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture
def e():
    """40 rows, 5 features of clearly different importance (scales 1, 5, 2, 0.5, 3)."""
    rng = np.random.default_rng(0)
    data = rng.normal(size=(40, 5))
    scales = np.array([1.0, 5.0, 2.0, 0.5, 3.0])
    values = data * scales + 0.1 * rng.normal(size=(40, 5))
    return Explanation(values, np.full(40, 10.0), data, NAMES)


def _labels(ax, axis="y"):
    ticks = ax.get_yticklabels() if axis == "y" else ax.get_xticklabels()
    return [t.get_text() for t in ticks]


def _points(ax):
    return [c for c in ax.collections if isinstance(c, PathCollection)]


def test_bar_is_mean_abs_phi_sorted_with_the_names(e):
    ax = plotting.bar(e)
    importance = np.abs(e.values).mean(axis=0)
    order = np.argsort(-importance)
    np.testing.assert_allclose([p.get_width() for p in ax.patches], importance[order])
    assert _labels(ax) == [NAMES[j] for j in order]
    assert np.all(np.diff(ax.get_yticks()) < 0)  # the first bar is the top one


def test_bar_lumps_the_rest_past_max_display(e):
    ax = plotting.bar(e, max_display=3)
    importance = np.abs(e.values).mean(axis=0)
    order = np.argsort(-importance)
    widths = [p.get_width() for p in ax.patches]
    np.testing.assert_allclose(widths[:2], importance[order[:2]])
    np.testing.assert_allclose(widths[2], importance[order[2:]].sum())
    assert _labels(ax)[-1] == "Sum of 3 other features"


def test_bar_of_one_row_is_signed_and_labelled_with_values(e):
    row = e[3]
    ax = plotting.bar(row)
    order = np.argsort(-np.abs(row.values))
    np.testing.assert_allclose([p.get_width() for p in ax.patches], row.values[order])
    for patch, v in zip(ax.patches, row.values[order]):
        assert patch.get_facecolor() == to_rgba(
            plotting.RED if v > 0 else plotting.BLUE
        )
    assert _labels(ax) == [f"{row.data[j]:.4g} = {NAMES[j]}" for j in order]
    # an aggregate has no feature values to show
    assert _labels(plotting.bar(e.abs.mean(0)))[0] == "b"


def test_plots_of_one_output_refuse_several(e):
    multi = Explanation(
        np.stack([e.values, -e.values], axis=2),
        np.stack([e.base_values] * 2, axis=1),
        e.data,
        NAMES,
        ["p", "q"],
    )
    for plot in (plotting.bar, plotting.beeswarm, plotting.heatmap):
        with pytest.raises(ValueError, match=r"e\[:, :, k\]"):
            plot(multi)
    with pytest.raises(ValueError, match="e\\[i, :, k\\]"):
        plotting.waterfall(multi[0])
    np.testing.assert_allclose(
        [p.get_width() for p in plotting.bar(multi[:, :, "q"]).patches],
        np.sort(np.abs(e.values).mean(axis=0))[::-1],
    )


def test_beeswarm_draws_every_row_and_feature_coloured_by_value(e):
    ax = plotting.beeswarm(e)
    importance = np.abs(e.values).mean(axis=0)
    order = np.argsort(-importance)
    assert _labels(ax) == [NAMES[j] for j in order]
    collections = _points(ax)
    assert sum(len(c.get_offsets()) for c in collections) == 40 * 5
    row_of = dict(zip(_labels(ax), ax.get_yticks()))
    cmap = plotting.red_blue()
    ax.figure.canvas.draw()
    for c in collections:
        j = NAMES.index(c.get_label())
        xy = np.asarray(c.get_offsets())
        np.testing.assert_allclose(xy[:, 0], e.values[:, j])  # x is φ, in row order
        assert np.all(np.abs(xy[:, 1] - row_of[NAMES[j]]) <= 0.4 + 1e-12)
        np.testing.assert_array_equal(c.get_array(), e.data[:, j])  # colour = value
        vmin, vmax = np.percentile(e.data[:, j], [5, 95])
        assert c.norm.vmin == pytest.approx(vmin) and c.norm.vmax == pytest.approx(vmax)
        # the lowest value is drawn blue, the highest red
        faces = c.get_facecolors()
        np.testing.assert_allclose(faces[np.argmin(e.data[:, j])], cmap(0.0))
        np.testing.assert_allclose(faces[np.argmax(e.data[:, j])], cmap(1.0))
    assert to_rgba(cmap(0.0)) == to_rgba(plotting.BLUE)
    assert to_rgba(cmap(1.0)) == to_rgba(plotting.RED)


def test_beeswarm_greys_missing_and_string_values_and_lumps_the_rest(e):
    data = e.data.astype(object)
    data[:, 0] = "word"
    data[:5, 1] = np.nan
    mixed = Explanation(e.values, e.base_values, data, NAMES)
    ax = plotting.beeswarm(mixed, max_display=4)
    assert _labels(ax)[-1] == "Sum of 2 other features"
    grey = to_rgba(plotting.GRAY)
    by_label = {}
    for c in _points(ax):
        by_label.setdefault(c.get_label(), []).append(c)
    nan_rows = [c for c in by_label["b"] if len(c.get_offsets()) == 5]
    assert len(nan_rows) == 1 and tuple(nan_rows[0].get_facecolor()[0]) == grey
    lumped = by_label["Sum of 2 other features"]
    assert len(lumped) == 1 and tuple(lumped[0].get_facecolor()[0]) == grey
    order = np.argsort(-np.abs(e.values).mean(axis=0))
    np.testing.assert_allclose(
        lumped[0].get_offsets()[:, 0], e.values[:, order[3:]].sum(axis=1)
    )


def test_waterfall_bars_run_from_the_base_value_to_fx(e):
    row = e[7]
    ax = plotting.waterfall(row)
    base, fx = 10.0, 10.0 + row.values.sum()
    bars = ax.patches  # bottom to top
    order = np.argsort(-np.abs(row.values))
    np.testing.assert_allclose([p.get_width() for p in bars], row.values[order][::-1])
    assert bars[0].get_x() == pytest.approx(base)
    for below, above in zip(bars[:-1], bars[1:]):
        assert above.get_x() == pytest.approx(below.get_x() + below.get_width())
    assert bars[-1].get_x() + bars[-1].get_width() == pytest.approx(fx)
    assert [p.get_y() for p in bars] == sorted(p.get_y() for p in bars)
    for patch in bars:
        expected = plotting.RED if patch.get_width() > 0 else plotting.BLUE
        assert patch.get_facecolor() == to_rgba(expected)
    assert _labels(ax) == [f"{row.data[j]:.4g} = {NAMES[j]}" for j in order]
    texts = [t.get_text() for t in ax.texts]
    assert f"E[f(X)] = {base:.4g}" in texts and f"f(x) = {fx:.4g}" in texts


def test_waterfall_buckets_other_features_and_takes_one_row_slices(e):
    ax = plotting.waterfall(e[2:3], max_display=3)
    phi = e.values[2]
    order = np.argsort(-np.abs(phi))
    widths = [p.get_width() for p in ax.patches]
    assert widths[0] == pytest.approx(phi[order[2:]].sum())  # the bottom bar
    assert _labels(ax)[-1] == "3 other features"
    assert ax.patches[-1].get_x() + widths[-1] == pytest.approx(10 + phi.sum())
    with pytest.raises(ValueError, match="one row"):
        plotting.waterfall(e[:2])


def _interacting():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 4))
    explainer = ExactExplainer(
        lambda Z: 2 * Z[:, 0] * Z[:, 1] + Z[:, 2], value_function="marginal"
    ).fit(X)
    return explainer.explain(X[:120])


def test_scatter_is_value_against_phi_coloured_by_another_feature():
    e = _interacting()
    ax = plotting.scatter(e[:, "x0"], color=e[:, "x2"])
    (points,) = _points(ax)
    np.testing.assert_allclose(
        points.get_offsets(), np.c_[e.data[:, 0], e.values[:, 0]]
    )
    np.testing.assert_array_equal(points.get_array(), e.data[:, 2])
    assert ax.get_xlabel() == "x0"
    assert ax.figure.axes[-1].get_ylabel() == "x2"  # the colour bar
    same = plotting.scatter(e, "x0", color="x2")
    np.testing.assert_array_equal(_points(same)[0].get_array(), e.data[:, 2])
    plain = _points(plotting.scatter(e, 0))[0]
    assert plain.get_array() is None
    assert tuple(plain.get_facecolor()[0]) == to_rgba(plotting.BLUE)


def test_scatter_auto_colours_by_the_interacting_feature():
    e = _interacting()
    assert plotting.strongest_interaction(e, "x0") == 1
    assert plotting.strongest_interaction(e, "x1") == 0
    for color in ("auto", e):  # shap passes the full Explanation for "auto"
        ax = plotting.scatter(
            e[:, "x0"] if color is e else e, None if color is e else "x0", color=color
        )
        np.testing.assert_array_equal(_points(ax)[0].get_array(), e.data[:, 1])
    with pytest.raises(ValueError, match="pass the full Explanation"):
        plotting.scatter(e[:, "x0"], color="auto")


def test_scatter_places_string_values_at_their_categories(e):
    data = e.data.astype(object)
    data[:, 0] = np.where(e.data[:, 0] > 0, "high", "low")
    ax = plotting.scatter(Explanation(e.values, e.base_values, data, NAMES), "a")
    assert _labels(ax, "x") == ["high", "low"]
    codes = np.where(e.data[:, 0] > 0, 0.0, 1.0)
    np.testing.assert_allclose(_points(ax)[0].get_offsets()[:, 0], codes)


@pytest.mark.parametrize("order", ["input", "output", "hclust", np.arange(40)[::-1]])
def test_heatmap_is_the_phi_matrix_in_row_and_feature_order(e, order):
    ax = plotting.heatmap(e, order=order)
    fx = e.base_values + e.values.sum(axis=1)
    features = np.argsort(-np.abs(e.values).mean(axis=0))
    matrix = np.asarray(ax.images[0].get_array())
    assert _labels(ax) == [NAMES[j] for j in features]
    (line,) = ax.child_axes[0].get_lines()[:1]
    columns = {
        "input": np.arange(40),
        "output": np.argsort(-fx),
    }.get(order if isinstance(order, str) else None)
    if columns is None and not isinstance(order, str):
        columns = order
    if columns is None:  # hclust: some permutation of the rows, used consistently
        columns = np.array(
            [np.flatnonzero(np.isclose(fx, y))[0] for y in line.get_ydata()]
        )
        assert sorted(columns) == list(range(40))
    np.testing.assert_allclose(line.get_ydata(), fx[columns])
    np.testing.assert_allclose(matrix, e.values[np.ix_(columns, features)].T)
    limit = np.percentile(np.abs(e.values), 99.9)
    assert ax.images[0].norm.vmin == pytest.approx(-limit)


def test_heatmap_hclust_puts_alike_rows_together():
    values = np.r_[np.tile([1.0, 0.0], (5, 1)), np.tile([0.0, 1.0], (5, 1))]
    values = values[[0, 5, 1, 6, 2, 7, 3, 8, 4, 9]]  # alternating
    ax = plotting.heatmap(Explanation(values, np.zeros(10)), order="hclust")
    matrix = np.asarray(ax.images[0].get_array())
    assert np.count_nonzero(np.diff(matrix[0])) == 1  # one block of each kind


def test_interaction_matrix_with_labels():
    tree = pytest.importorskip("sklearn_shapley.tree")
    from sklearn.ensemble import GradientBoostingRegressor

    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 4))
    y = X[:, 0] * X[:, 1] + X[:, 2]
    model = GradientBoostingRegressor(n_estimators=30, max_depth=3).fit(X, y)
    explainer = tree.QuadratureTreeExplainer(model).fit(X)
    interactions = explainer.interactions(X[:50])
    e = explainer.explain(X[:50])
    ax = plotting.interaction(interactions, e)
    mean_abs = np.abs(interactions).mean(axis=0)
    keep = np.argsort(-mean_abs.sum(axis=1))
    np.testing.assert_allclose(ax.images[0].get_array(), mean_abs[np.ix_(keep, keep)])
    assert _labels(ax) == [e.feature_names[i] for i in keep]
    assert _labels(ax, "x") == [e.feature_names[i] for i in keep]
    assert len(ax.texts) == 16  # annotated cells
    # one row's signed matrix, the two strongest features only
    one = plotting.interaction(interactions[0], ["p", "q", "r", "s"], max_display=2)
    keep = np.argsort(-np.abs(interactions[0]).sum(axis=1))[:2]
    np.testing.assert_allclose(
        one.images[0].get_array(), interactions[0][np.ix_(keep, keep)]
    )
    assert one.images[0].norm.vmin == -one.images[0].norm.vmax
    with pytest.raises(ValueError, match=r"values\[\.\.\., k\]"):
        plotting.interaction(np.zeros((3, 4, 4, 2)))


def test_image_lays_patch_values_over_the_image():
    torch = pytest.importorskip("torch")  # noqa: F841
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    from sklearn_shapley.vision._image import PatchGrid

    X, y = load_digits(return_X_y=True)
    X, y = X[:300], y[:300]
    grid = PatchGrid((8, 8), 4)
    explainer = ExactExplainer(
        LogisticRegression(max_iter=500).fit(X, y),
        players=grid.pixel_groups(),
        background=np.zeros(64),
    ).fit(X)
    e = explainer.explain(X[:2])
    ax = plotting.image(e, 1, output=int(y[1]), patch_size=4)
    picture, overlay = ax.images
    np.testing.assert_array_equal(picture.get_array(), X[1].reshape(8, 8))
    np.testing.assert_allclose(
        overlay.get_array(), grid.heatmap(e.values[1, :, int(y[1])])
    )
    assert overlay.norm.vmin == -overlay.norm.vmax
    assert ax.get_title() == str(y[1])
    with pytest.raises(ValueError, match="output=k"):
        plotting.image(e, 0)


def test_image_reads_the_grid_from_patch_names():
    pytest.importorskip("torch")
    from sklearn_shapley.vision._image import PatchGrid

    grid = PatchGrid((7, 9), (2, 3))  # does not tile evenly: 4 x 3 patches
    rng = np.random.default_rng(0)
    values = rng.normal(size=(3, grid.n_patches))
    images = rng.uniform(size=(3, 1, 7, 9))
    e = Explanation(values, np.zeros(3), images, grid.patch_names())
    ax = plotting.image(e, 2)
    np.testing.assert_allclose(ax.images[-1].get_array(), grid.heatmap(values[2]))
    # one player per pixel, no data: the values are the map
    pixels = Explanation(values[:, :9].repeat(7, axis=1), np.zeros(3))
    ax = plotting.image(pixels, 0, image_shape=(7, 9))
    np.testing.assert_allclose(
        ax.images[-1].get_array(), pixels.values[0].reshape(7, 9)
    )
    with pytest.raises(ValueError, match="patch_size"):
        plotting.image(Explanation(values, np.zeros(3), images), 0)


def test_every_plot_renders(e, tmp_path):
    interactions = np.einsum("ni,nj->nij", e.values, e.values) / 10
    for name, ax in {
        "bar": plotting.bar(e),
        "beeswarm": plotting.beeswarm(e),
        "waterfall": plotting.waterfall(e[0]),
        "scatter": plotting.scatter(e, "b", color="auto"),
        "heatmap": plotting.heatmap(e),
        "interaction": plotting.interaction(interactions, e),
        "image": plotting.image(
            Explanation(e.values[:, :4], e.base_values, e.data[:, :4]), 0
        ),
    }.items():
        path = tmp_path / f"{name}.png"
        ax.figure.savefig(path)
        assert path.stat().st_size > 1000


def test_array_plots_keep_working():
    fig = plotting.importance_bars(
        {"one": np.array([1.0, 3.0]), "two": np.ones(2)}, ["p", "q"]
    )
    assert len(fig.axes[0].patches) == 4
    fig = plotting.image_heatmap(np.eye(4), np.ones((4, 4)), title="t")
    assert len(fig.axes[0].images) == 2
