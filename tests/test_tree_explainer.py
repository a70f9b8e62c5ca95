"""QuadratureTreeExplainer against the peers (xgboost, shap, shapiq) and its contract."""

import pickle

import numpy as np
import pytest
from sklearn.datasets import make_classification, make_regression
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LinearRegression
from sklearn.model_selection import GridSearchCV
from sklearn.tree import (
    DecisionTreeClassifier,
    DecisionTreeRegressor,
    ExtraTreeRegressor,
)

from sklearn_shapley import QuadratureTreeExplainer, _memory

xgb = pytest.importorskip("xgboost")


def _with_nan(X, rate=0.1, seed=0):
    X = X.copy()
    X[np.random.default_rng(seed).random(X.shape) < rate] = np.nan
    return X


def _xgb_reference(model, X, interactions=False):
    dm = xgb.DMatrix(X)
    booster = model.get_booster() if hasattr(model, "get_booster") else model
    return booster.predict(
        dm, pred_interactions=interactions, pred_contribs=not interactions
    )


@pytest.mark.parametrize("kind", ["regression", "binary", "multiclass"])
def test_matches_xgboost_pred_contribs_and_interactions_with_missing_values(kind):
    if kind == "regression":
        X, y = make_regression(n_samples=400, n_features=7, random_state=0)
        model = xgb.XGBRegressor(n_estimators=30, max_depth=5, random_state=0)
    else:
        n_classes = 2 if kind == "binary" else 3
        X, y = make_classification(
            n_samples=400,
            n_features=7,
            n_informative=5,
            n_classes=n_classes,
            random_state=0,
        )
        model = xgb.XGBClassifier(n_estimators=20, max_depth=5, random_state=0)
    X = _with_nan(X)
    model.fit(X, y)
    explainer = QuadratureTreeExplainer(FrozenEstimator(model)).fit(X)
    rows = X[:60]
    exp = explainer.explain(rows)
    contribs = _xgb_reference(model, rows)
    inter = _xgb_reference(model, rows, interactions=True)
    if kind == "multiclass":
        # xgboost: (n, K, d + 1) and (n, K, d + 1, d + 1)
        contribs = np.moveaxis(contribs, 1, -1)
        inter = np.moveaxis(inter, 1, -1)
    scale = np.abs(contribs).max()
    np.testing.assert_allclose(exp.values, contribs[:, :-1], atol=2e-5 * scale)
    np.testing.assert_allclose(exp.base_values, contribs[:, -1], atol=2e-5 * scale)
    ours_inter = explainer.interactions(rows, order=2)
    np.testing.assert_allclose(ours_inter, inter[:, :-1, :-1], atol=2e-5 * scale)
    raw = model.predict(rows, output_margin=True)
    full = exp.base_values + exp.values.sum(axis=1)
    np.testing.assert_allclose(full, raw.reshape(full.shape), atol=1e-4 * scale)


SKLEARN_MODELS = [
    DecisionTreeRegressor(max_depth=6, random_state=0),
    ExtraTreeRegressor(max_depth=6, random_state=0),
    RandomForestRegressor(n_estimators=8, max_depth=6, random_state=0),
    ExtraTreesRegressor(n_estimators=8, max_depth=6, random_state=0),
    GradientBoostingRegressor(n_estimators=15, max_depth=3, random_state=0),
    HistGradientBoostingRegressor(max_iter=15, random_state=0),
    DecisionTreeClassifier(max_depth=6, random_state=0),
    RandomForestClassifier(n_estimators=8, max_depth=6, random_state=0),
    ExtraTreesClassifier(n_estimators=8, max_depth=6, random_state=0),
    GradientBoostingClassifier(n_estimators=15, max_depth=3, random_state=0),
    HistGradientBoostingClassifier(max_iter=15, random_state=0),
]


@pytest.mark.parametrize("model", SKLEARN_MODELS, ids=lambda m: type(m).__name__)
def test_matches_shap_tree_explainer_on_sklearn_models(model):
    shap = pytest.importorskip("shap")
    if type(model).__name__.endswith("Classifier"):
        # shap explains gradient-boosting classifiers for two classes only.
        n_classes = 2 if "Gradient" in type(model).__name__ else 3
        X, y = make_classification(
            n_samples=300,
            n_features=6,
            n_informative=4,
            n_classes=n_classes,
            random_state=1,
        )
    else:
        X, y = make_regression(n_samples=300, n_features=6, random_state=1)
    model.fit(X, y)
    rows = X[:25]
    ours = QuadratureTreeExplainer(FrozenEstimator(model)).fit(X).explain(rows)
    reference = shap.TreeExplainer(model, feature_perturbation="tree_path_dependent")
    theirs = np.asarray(reference.shap_values(rows, check_additivity=False))
    if theirs.ndim == 3 and ours.values.ndim == 2:
        theirs = theirs[..., 0]
    scale = max(np.abs(theirs).max(), 1e-12)
    np.testing.assert_allclose(ours.values, theirs, atol=1e-6 * scale + 1e-12)
    np.testing.assert_allclose(
        ours.base_values[0],
        np.ravel(reference.expected_value)[: np.size(ours.base_values[0])],
        atol=1e-6 * max(np.abs(ours.base_values).max(), 1),
    )


def test_order3_matches_shapiq_and_dense_form():
    shapiq = pytest.importorskip("shapiq")
    X, y = make_regression(n_samples=300, n_features=6, random_state=0)
    model = DecisionTreeRegressor(max_depth=6, random_state=0).fit(X, y)
    explainer = QuadratureTreeExplainer(FrozenEstimator(model)).fit(X)
    subsets, values = explainer.interactions(X[:3], order=3)
    assert subsets.shape[1] == 3 and values.shape == (3, len(subsets))
    assert np.all(np.diff(subsets, axis=1) > 0)
    reference = shapiq.TreeExplainer(model=model, max_order=3, min_order=3, index="SII")
    for row in range(3):
        theirs = dict(reference.explain(X[row]).dict_values)
        ref = np.array([theirs.get(tuple(int(i) for i in s), 0.0) for s in subsets])
        np.testing.assert_allclose(values[row], ref, atol=1e-9 * np.abs(ref).max())
    dense = explainer.interactions(X[:3], order=3, dense=True)
    assert dense.shape == (3, 6, 6, 6)
    a, b, c = subsets[0]
    assert dense[0, a, b, c] == dense[0, c, a, b] == values[0, 0]
    assert dense[0, a, a, b] == 0.0


def _deep_tree_model(depth, n_features, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(4000, n_features))
    # A target that keeps splitting on many features down a long path.
    y = np.cumsum(np.sin(3 * X), axis=1)[:, -1] + 0.1 * rng.normal(size=len(X))
    model = DecisionTreeRegressor(max_depth=depth, min_samples_leaf=1, random_state=0)
    return model.fit(X, y), X


@pytest.mark.parametrize("depth", [40, 80])
def test_efficiency_exact_on_deep_trees(depth):
    model, X = _deep_tree_model(depth, 64)
    explainer = QuadratureTreeExplainer(FrozenEstimator(model)).fit(X)
    rows = X[:50]
    exp = explainer.explain(rows)
    raw = model.predict(rows)
    gap = np.abs(exp.base_values + exp.values.sum(axis=1) - raw)
    assert np.all(gap <= 1e-9 * np.maximum(np.abs(raw), 1.0))
    assert explainer.score(rows) > -1e-9


def test_nan_follows_model_missing_direction():
    X, y = make_regression(n_samples=400, n_features=5, random_state=3)
    X = _with_nan(X, rate=0.2)
    model = HistGradientBoostingRegressor(max_iter=10, random_state=0).fit(X, y)
    explainer = QuadratureTreeExplainer(FrozenEstimator(model)).fit(X)
    exp = explainer.explain(X[:40])
    np.testing.assert_allclose(
        exp.base_values + exp.values.sum(axis=1),
        model.predict(X[:40]),
        rtol=1e-9,
        atol=1e-9,
    )


def test_errors_are_clear():
    X, y = make_regression(n_samples=100, n_features=4, random_state=0)
    with pytest.raises(
        TypeError, match="Supported models: sklearn.tree.DecisionTreeRegressor"
    ):
        QuadratureTreeExplainer(FrozenEstimator(LinearRegression().fit(X, y))).fit(X)
    model = DecisionTreeRegressor(max_depth=3).fit(X, y)
    with pytest.raises(ValueError, match="features"):
        QuadratureTreeExplainer(FrozenEstimator(model)).fit(X[:, :3])
    explainer = QuadratureTreeExplainer(FrozenEstimator(model)).fit(X)
    with pytest.raises(ValueError, match="features"):
        explainer.transform(X[:, :3])
    with pytest.raises(ValueError, match="cuda"):
        QuadratureTreeExplainer(FrozenEstimator(model), device="cuda").fit(X)


def test_interaction_memory_is_checked_before_allocating(monkeypatch):
    X, y = make_regression(n_samples=50, n_features=4, random_state=0)
    model = DecisionTreeRegressor(max_depth=3).fit(X, y)
    explainer = QuadratureTreeExplainer(FrozenEstimator(model)).fit(X)
    monkeypatch.setattr(_memory, "available_memory_bytes", lambda: 1000)
    with pytest.raises(
        MemoryError, match=r"interaction matrix of shape \(50, 4, 4, 1\) needs"
    ):
        explainer.interactions(X, order=2)


def test_leaf_subsets_memory_is_checked_before_allocating(monkeypatch):
    X, y = make_regression(n_samples=50, n_features=6, random_state=0)
    model = DecisionTreeRegressor(max_depth=5, random_state=0).fit(X, y)
    explainer = QuadratureTreeExplainer(FrozenEstimator(model)).fit(X)
    monkeypatch.setattr(_memory, "available_memory_bytes", lambda: 10)
    with pytest.raises(MemoryError, match="order-3 feature subsets.*lower order"):
        explainer.interactions(X, order=3)


def test_pickle_round_trip_and_n_jobs_bit_identical():
    X, y = make_classification(
        n_samples=300, n_features=6, n_classes=3, n_informative=4, random_state=0
    )
    model = GradientBoostingClassifier(
        n_estimators=10, max_depth=4, random_state=0
    ).fit(X, y)
    explainer = QuadratureTreeExplainer(FrozenEstimator(model), n_jobs=1).fit(X)
    one = explainer.explain(X).values
    two = explainer.set_params(n_jobs=2).explain(X).values
    assert np.array_equal(one, two)
    restored = pickle.loads(pickle.dumps(explainer))
    assert np.array_equal(restored.explain(X).values, two)


def test_transform_outputs_and_interaction_order_2_names():
    X, y = make_classification(
        n_samples=200,
        n_features=4,
        n_classes=3,
        n_informative=3,
        n_redundant=0,
        random_state=0,
    )
    model = xgb.XGBClassifier(n_estimators=10, max_depth=3).fit(X, y)
    explainer = QuadratureTreeExplainer(FrozenEstimator(model)).fit(X)
    exp = explainer.explain(X[:10])
    predicted = model.predict(X[:10])
    np.testing.assert_array_equal(
        explainer.transform(X[:10]), exp.values[np.arange(10), :, predicted]
    )
    pairs = explainer.set_params(interaction_order=2)
    assert pairs.transform(X[:10]).shape == (10, 16)
    assert list(pairs.get_feature_names_out())[:2] == ["x0*x0", "x0*x1"]
    matrix = pairs.transform(X[:10]).reshape(10, 4, 4)
    np.testing.assert_allclose(
        matrix.sum(axis=2), exp.values[np.arange(10), :, predicted], atol=1e-9
    )


def test_grid_search_over_n_quadrature_prefers_exact():
    X, y = make_regression(n_samples=300, n_features=12, random_state=0)
    model = RandomForestRegressor(n_estimators=5, max_depth=14, random_state=0).fit(
        X, y
    )
    search = GridSearchCV(
        QuadratureTreeExplainer(FrozenEstimator(model)),
        {"n_quadrature": [1, "auto"]},
        cv=2,
    ).fit(X)
    assert search.best_params_ == {"n_quadrature": "auto"}


def test_unfitted_model_is_fitted_in_a_pipeline():
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = make_regression(n_samples=100, n_features=3, random_state=0)
    pipe = make_pipeline(
        StandardScaler(), QuadratureTreeExplainer(DecisionTreeRegressor(max_depth=4))
    )
    phi = pipe.fit(X, y).transform(X)
    tree = pipe[-1].estimator_
    np.testing.assert_allclose(
        pipe[-1].expected_value_[0] + phi.sum(axis=1),
        tree.predict(pipe[0].transform(X)),
        atol=1e-9,
    )
