"""Interventional TreeSHAP and Banzhaf values (QuadratureTreeExplainer,
``InterventionalTrees``) against brute-force enumeration of the marginal game, shap's
interventional TreeExplainer, and their contract."""

import functools
import pickle
from math import factorial

import lightgbm
import numpy as np
import pytest
import xgboost
from sklearn.datasets import make_classification, make_regression
from sklearn.ensemble import (
    GradientBoostingRegressor,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
)
from sklearn.frozen import FrozenEstimator
from test_tree_kernel import game as path_dependent_game
from test_tree_kernel import random_ensemble, random_X

from sklearn_shapley import (
    ExactExplainer,
    QuadratureTreeExplainer,
    _memory,
    exact_shapley,
)
from sklearn_shapley.games import MarginalGame, resolve_game
from sklearn_shapley.tree import _interventional, _kernel, flatten_ensemble
from sklearn_shapley.tree._flat import predict_raw
from sklearn_shapley.tree._interventional import InterventionalTrees
from sklearn_shapley.tree._marginal import TreeShapleyMarginalGame


# ----------------------------------------------------------------------------------
# oracle: every coalition's value, then the definitions
# ----------------------------------------------------------------------------------
def _coalitions(d):
    return ((np.arange(2**d)[:, None] >> np.arange(d)) & 1).astype(bool)


def marginal_table(flat, x, background):
    """``v(S) = mean_b f(x_S, b_¬S)`` for all ``2^d`` coalitions (bit j: feature j
    known), ``(2^d, K)``, from the flat ensemble's own predictions."""
    masks = _coalitions(x.shape[0])
    hybrid = np.where(masks[:, None, :], x, background[None])
    raw = predict_raw(flat, hybrid.reshape(-1, x.shape[0]))
    return raw.reshape(len(masks), len(background), -1).mean(axis=1)


def index_values(v, d, index):
    """Values and the interaction matrix in the TreeSHAP convention from a game
    table: ``(d, K)`` and ``(d, d, K)``."""
    sizes = _coalitions(d).sum(axis=1)
    if index == "shapley":
        w1 = np.array(
            [factorial(s) * factorial(d - s - 1) / factorial(d) for s in range(d)]
        )
        w2 = np.array(
            [
                factorial(s) * factorial(d - s - 2) / factorial(d - 1)
                for s in range(d - 1)
            ]
        )
    else:
        w1, w2 = np.full(d, 0.5 ** (d - 1)), np.full(d - 1, 0.5 ** (d - 2))
    S = np.arange(2**d)
    phi = np.zeros((d,) + v.shape[1:])
    pairs = np.zeros((d, d) + v.shape[1:])
    for i in range(d):
        out = S[(S >> i) & 1 == 0]
        phi[i] = w1[sizes[out]] @ (v[out | 1 << i] - v[out])
        for j in range(i + 1, d):
            o = out[(out >> j) & 1 == 0]
            delta = v[o | 1 << i | 1 << j] - v[o | 1 << i] - v[o | 1 << j] + v[o]
            pairs[i, j] = pairs[j, i] = 0.5 * (w2[sizes[o]] @ delta)
    for i in range(d):
        pairs[i, i] = phi[i] - pairs[i].sum(axis=0)
    return phi, pairs


SPECS = [
    # repeated features on paths, categorical splits (feature CAT_FEATURE), NaN
    dict(seed=0, n_features=8, n_trees=3, max_depth=7, n_outputs=2),
    # trees adding to one output each, and one to all
    dict(
        seed=1, n_features=6, n_trees=4, max_depth=6, n_outputs=3, groups=[0, 2, -1, 1]
    ),
    dict(seed=2, n_features=5, n_trees=5, max_depth=9, n_outputs=1),
]


@pytest.fixture(scope="module", params=range(len(SPECS)))
def ensemble(request):
    spec = SPECS[request.param]
    flat = random_ensemble(**spec)
    X = random_X(spec["seed"], 4, flat.n_features)
    background = random_X(spec["seed"] + 7, 9, flat.n_features)
    return flat, X, background


@pytest.mark.parametrize("index", ["shapley", "banzhaf"])
def test_values_and_pairs_match_enumeration(ensemble, index):
    flat, X, background = ensemble
    d = flat.n_features
    trees = InterventionalTrees(flat, background, index=index)
    phi, pairs = trees.values(X, 1), trees.values(X, 2)
    for r, x in enumerate(X):
        exact_phi, exact_pairs = index_values(
            marginal_table(flat, x, background), d, index
        )
        scale = np.abs(exact_phi).max()
        np.testing.assert_allclose(phi[r], exact_phi, rtol=0, atol=1e-12 * scale)
        np.testing.assert_allclose(pairs[r], exact_pairs, rtol=0, atol=1e-12 * scale)


def test_column_groups_match_enumeration():
    flat = random_ensemble(seed=4, n_features=6, n_trees=3, max_depth=7, n_outputs=1)
    X, background = random_X(4, 3, 6), random_X(11, 8, 6)
    players = [[0, 3], [1], [2, 4, 5]]
    game = MarginalGame(lambda Z: predict_raw(flat, Z), background, players=players)
    masks = _coalitions(3)
    values = InterventionalTrees(flat, background, players=players).values(X)
    for r in range(len(X)):
        exact, _ = index_values(game(X[r : r + 1], masks)[0], 3, "shapley")
        np.testing.assert_allclose(values[r], exact, rtol=0, atol=1e-12)


def test_path_dependent_banzhaf_matches_enumeration(ensemble):
    flat, X, _ = ensemble
    kd1 = _kernel.prepare(flat, 1, index="banzhaf")
    kd2 = _kernel.prepare(flat, 2, index="banzhaf")
    phi = _kernel.shap_values(flat, X, prepared=kd1)
    pairs = _kernel.shap_interaction_values(flat, X, prepared=kd2)
    for r, x in enumerate(X):
        v = path_dependent_game(flat, x)
        exact_phi, exact_pairs = index_values(v, flat.n_features, "banzhaf")
        scale = np.abs(exact_phi).max()
        np.testing.assert_allclose(phi[r], exact_phi, rtol=0, atol=1e-12 * scale)
        np.testing.assert_allclose(pairs[r], exact_pairs, rtol=0, atol=1e-12 * scale)


# ----------------------------------------------------------------------------------
# the explainer on real models
# ----------------------------------------------------------------------------------
def _missing(X, rate=0.1, seed=0):
    X = X.copy()
    X[np.random.default_rng(seed).random(X.shape) < rate] = np.nan
    return X


def _models():
    X, y = make_regression(n_samples=300, n_features=6, random_state=0)
    Xn = _missing(X)
    Xc, yc = make_classification(n_samples=300, n_features=6, random_state=0)
    Xk = Xn.copy()
    Xk[:, 4] = np.random.default_rng(2).integers(0, 5, len(Xk))
    return {
        "gb": (GradientBoostingRegressor(n_estimators=20, max_depth=4), X, y),
        "xgboost-missing": (
            xgboost.XGBRegressor(n_estimators=20, max_depth=5, n_jobs=1),
            Xn,
            y,
        ),
        "lightgbm-missing": (
            lightgbm.LGBMRegressor(
                n_estimators=20, num_leaves=12, n_jobs=1, verbose=-1
            ),
            Xn,
            y,
        ),
        "hist-categorical": (
            HistGradientBoostingRegressor(max_iter=15, categorical_features=[4]),
            Xk,
            y + 10 * Xk[:, 4],
        ),
        "forest-probabilities": (
            RandomForestClassifier(n_estimators=6, max_depth=5, random_state=0),
            Xc,
            yc,
        ),
    }


MODELS = _models()


@functools.cache
def _fitted(name):
    """``(model, X)``, the model fitted once per session."""
    model, X, y = MODELS[name]
    return model.fit(X, y), X


@pytest.fixture(scope="module", params=sorted(MODELS))
def fitted(request):
    return (request.param, *_fitted(request.param))


def test_explainer_matches_marginal_game_enumeration(fitted):
    name, model, X = fitted
    background, rows = X[:12], X[200:204]
    for index in ("shapley", "banzhaf"):
        explainer = QuadratureTreeExplainer(
            FrozenEstimator(model),
            feature_perturbation="interventional",
            background=background,
            index=index,
            output=1 if name == "forest-probabilities" else None,
        ).fit(X)
        values = explainer.transform(rows)
        pairs = explainer.interactions(rows, order=2)
        if pairs.ndim == 4:
            pairs = pairs[..., 1]
        flat = explainer.ensemble_
        for r, x in enumerate(rows):
            v = marginal_table(flat, x, background)[:, -1]
            exact_phi, exact_pairs = index_values(v, X.shape[1], index)
            scale = np.abs(exact_phi).max()
            np.testing.assert_allclose(values[r], exact_phi, atol=1e-12 * scale)
            np.testing.assert_allclose(pairs[r], exact_pairs, atol=1e-12 * scale)
    # and the flat ensemble is the model (which predicts in float32 for the boosters)
    if name == "forest-probabilities":
        expected = model.predict_proba(rows)[:, 1]
    else:
        expected = model.predict(rows)
    predicted = explainer.explained_output(rows)[:, -1]
    np.testing.assert_allclose(predicted, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["gb", "xgboost-missing", "lightgbm-missing"])
def test_matches_shap_interventional(name):
    shap = pytest.importorskip("shap")
    model, X = _fitted(name)
    background, rows = X[:150], X[200:230]
    ours = QuadratureTreeExplainer(
        FrozenEstimator(model),
        feature_perturbation="interventional",
        background=background,
    ).fit(X)
    # a plain array would be cut to 100 rows
    masker = shap.maskers.Independent(background, max_samples=len(background))
    theirs = shap.TreeExplainer(model, masker, feature_perturbation="interventional")
    expected = theirs.shap_values(rows, check_additivity=False)
    scale = np.abs(expected).max()
    np.testing.assert_allclose(ours.transform(rows), expected, atol=1e-6 * scale)
    np.testing.assert_allclose(
        ours.expected_value_[0], np.ravel(theirs.expected_value)[0], atol=1e-6 * scale
    )


def test_forest_probability_matches_shap():
    shap = pytest.importorskip("shap")
    model, X = _fitted("forest-probabilities")
    background, rows = X[:60], X[200:220]
    ours = QuadratureTreeExplainer(
        FrozenEstimator(model),
        feature_perturbation="interventional",
        background=background,
        model_output="probability",
    ).fit(X)
    masker = shap.maskers.Independent(background, max_samples=len(background))
    theirs = shap.TreeExplainer(
        model, masker, feature_perturbation="interventional", model_output="probability"
    ).shap_values(rows)
    # shap accumulates in float32 here
    np.testing.assert_allclose(ours.explain(rows).values, theirs, atol=1e-7)


def test_efficiency_and_null_players():
    X, y = make_regression(n_samples=300, n_features=7, random_state=1)
    X[:, 6] = 0.0  # constant: never split on
    model = GradientBoostingRegressor(n_estimators=30, max_depth=6).fit(X, y)
    explainer = QuadratureTreeExplainer(
        FrozenEstimator(model), feature_perturbation="interventional", random_state=0
    ).fit(X)
    exp = explainer.explain(X[:40])
    full = exp.base_values + exp.values.sum(axis=1)
    np.testing.assert_allclose(full, model.predict(X[:40]), atol=1e-10)
    np.testing.assert_allclose(
        exp.base_values, model.predict(explainer.background_).mean(), atol=1e-10
    )
    assert np.all(exp.values[:, 6] == 0.0)
    pairs = explainer.interactions(X[:10], order=2)
    assert np.all(pairs[:, 6] == 0.0) and np.all(pairs[:, :, 6] == 0.0)
    np.testing.assert_allclose(pairs.sum(axis=2), exp.values[:10], atol=1e-10)


@pytest.mark.parametrize("perturbation", ["tree_path_dependent", "interventional"])
def test_banzhaf_picks_the_models_predicted_class(perturbation):
    """Banzhaf values do not sum to the output, so ``output=None`` takes the class the
    model predicts, not the argmax of ``base + Σφ``."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 6))
    # class 2 is a three-way AND, which Banzhaf values under-credit; noisy labels
    # leave rows near the class boundaries
    y = np.where((X[:, :3] > 0).all(axis=1), 2, np.where(X[:, 4] > 0, 1, 0))
    flip = rng.random(len(y)) < 0.3
    y[flip] = rng.integers(0, 3, flip.sum())
    model = xgboost.XGBClassifier(n_estimators=20, max_depth=5, n_jobs=1).fit(X, y)
    explainer = QuadratureTreeExplainer(
        FrozenEstimator(model),
        feature_perturbation=perturbation,
        background=X[:50],
        index="banzhaf",
    ).fit(X)
    rows = X
    exp = explainer.explain(rows)
    predicted = model.predict(rows)
    additive = np.argmax(exp.base_values + exp.values.sum(axis=1), axis=1)
    assert np.any(additive != predicted)  # the case this test is about
    n = len(rows)
    np.testing.assert_array_equal(
        explainer.transform(rows), exp.values[np.arange(n), :, predicted]
    )


def test_default_background_is_a_seeded_subsample():
    model, X = _fitted("gb")
    make = lambda seed: QuadratureTreeExplainer(  # noqa: E731
        FrozenEstimator(model),
        feature_perturbation="interventional",
        n_background=50,
        random_state=seed,
    ).fit(X)
    a, b = make(0), make(0)
    assert a.background_.shape == (50, X.shape[1])
    np.testing.assert_array_equal(a.background_, b.background_)
    assert not np.array_equal(a.background_, make(1).background_)
    assert QuadratureTreeExplainer(FrozenEstimator(model)).fit(X).background_ is None


def test_n_jobs_bit_identical_and_pickle():
    model, X = _fitted("xgboost-missing")
    rows = X[:150]
    results = []
    for n_jobs in (1, 2, 3):
        explainer = QuadratureTreeExplainer(
            FrozenEstimator(model),
            feature_perturbation="interventional",
            background=X[100:200],
            n_jobs=n_jobs,
        ).fit(X)
        results.append((explainer.transform(rows), explainer.interactions(rows[:70])))
    for values, pairs in results[1:]:
        np.testing.assert_array_equal(values, results[0][0])
        np.testing.assert_array_equal(pairs, results[0][1])
    again = pickle.loads(pickle.dumps(explainer))
    np.testing.assert_array_equal(again.transform(rows), results[0][0])


def test_runs_of_trees_and_row_blocks_give_the_same_bits(monkeypatch):
    """Tables built a run of trees at a time (here each tree alone) and rows taken in
    blocks of any size give the values of one run, bit for bit, with exact pairs."""
    model, X = _fitted("hist-categorical")
    flat = flatten_ensemble(model)
    rows = np.concatenate([X] * 5)  # 1,500 rows: more than one block of rows
    background = np.concatenate([X] * 4)  # 1,200: more than one block too

    def run():
        trees = InterventionalTrees(flat, background)
        return trees.values(rows, n_threads=2), trees.values(rows[:40], 2)

    values, pairs = run()
    monkeypatch.setattr(_interventional, "CHUNK_BYTES", 8)
    monkeypatch.setattr(_interventional, "CACHE_BYTES", 0)
    again = run()
    np.testing.assert_array_equal(again[0], values)
    np.testing.assert_array_equal(again[1], pairs)
    base = predict_raw(flat, background).mean(axis=0)
    np.testing.assert_allclose(
        values.sum(axis=1) + base, predict_raw(flat, rows), rtol=1e-10, atol=1e-8
    )
    np.testing.assert_allclose(pairs.sum(axis=2), values[:40], rtol=1e-10, atol=1e-8)


def test_memory_is_checked_before_allocating(monkeypatch):
    model, X = _fitted("gb")
    explainer = QuadratureTreeExplainer(
        FrozenEstimator(model), feature_perturbation="interventional"
    ).fit(X)
    monkeypatch.setattr(_memory, "available_memory_bytes", lambda: 10_000)
    with pytest.raises(MemoryError, match="interventional"):
        explainer.transform(X)


def test_errors_are_clear():
    model, X = _fitted("xgboost-missing")
    explainer = QuadratureTreeExplainer(
        FrozenEstimator(model), feature_perturbation="interventional"
    ).fit(X)
    with pytest.raises(ValueError, match="up to order 2"):
        explainer.interactions(X[:3], order=3)
    with pytest.raises(ValueError, match="probability"):
        QuadratureTreeExplainer(FrozenEstimator(model), model_output="probability").fit(
            X
        )
    with pytest.raises(ValueError, match="background has 2 features"):
        QuadratureTreeExplainer(
            FrozenEstimator(model),
            feature_perturbation="interventional",
            background=X[:5, :2],
        ).fit(X)
    with pytest.raises(ValueError, match="feature_perturbation"):
        QuadratureTreeExplainer(
            FrozenEstimator(model), feature_perturbation="marginal"
        ).fit(X)
    with pytest.raises(ValueError, match="index"):
        QuadratureTreeExplainer(FrozenEstimator(model), index="owen").fit(X)


# ----------------------------------------------------------------------------------
# the games layer
# ----------------------------------------------------------------------------------
def test_games_layer_uses_the_kernel_for_deep_trees():
    X, y = make_regression(n_samples=600, n_features=20, random_state=0)
    deep = GradientBoostingRegressor(n_estimators=10, max_depth=10).fit(X, y)
    game = MarginalGame(FrozenEstimator(deep), X[:30])
    # the leaves test too many players for TreeMarginalGame's tables
    resolved = resolve_game(game, X)
    assert isinstance(resolved, TreeShapleyMarginalGame)
    explainer = ExactExplainer(
        FrozenEstimator(deep), value_function="marginal", background=X[:30]
    ).fit(X)
    exp = explainer.explain(X[:5])
    np.testing.assert_allclose(
        exp.base_values + exp.values.sum(axis=1), deep.predict(X[:5]), atol=1e-9
    )
    # against enumeration, on a model of few features
    Xs, ys = make_regression(n_samples=200, n_features=5, random_state=1)
    small = GradientBoostingRegressor(n_estimators=5, max_depth=6).fit(Xs, ys)
    game = MarginalGame(small, Xs[:15])
    wrapped = TreeShapleyMarginalGame(game, flatten_ensemble(small), np.eye(1))
    np.testing.assert_allclose(
        wrapped.shapley_values(Xs[:4]), exact_shapley(game, Xs[:4]).values, atol=1e-10
    )
    np.testing.assert_array_equal(
        wrapped(Xs[:4], _coalitions(5)), game(Xs[:4], _coalitions(5))
    )
