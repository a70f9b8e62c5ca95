"""FastSHAPExplainer and the surrogate game, against exact enumeration as the oracle."""

import math
import pickle
import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone as sk_clone
from sklearn.datasets import make_classification
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_shapley import exact_shapley
from sklearn_shapley.amortized import (
    FastSHAPExplainer,
    SurrogateGame,
    _fastshap,
    fit_surrogate,
)
from sklearn_shapley.amortized._fastshap import (
    CoalitionPlan,
    _kernel_coalitions,
    _loss_floor,
    plan_coalitions,
)
from sklearn_shapley.amortized._nets import (
    MaskedModule,
    PiecewiseLinearLayer,
    PlayerwiseMLP,
    ShapleyModule,
    ShapleyNet,
    coalition_moments,
    contribution_inputs,
    first_last_contributions,
    kernel_gram,
    quantile_bin_edges,
    sample_statistics,
    thin_thresholds,
)
from sklearn_shapley.games import (
    BaselineGame,
    MarginalGame,
    first_last_masks,
    pair_masks,
    resolve_game,
)
from sklearn_shapley.metrics import shapley_error
from sklearn_shapley.sampling import CoalitionSampler

# Small networks and few epochs: every test trains in a few seconds on one core.
TINY = dict(
    hidden_layer_sizes=(32,), max_epochs=3, batch_size=64, max_evaluations=50_000
)


def additive_model(X):
    """``f(x) = Σ_j g_j(x_j)``: its baseline-game Shapley values are the terms."""
    X = np.asarray(X)
    return np.sin(2 * X[:, 0]) + 0.5 * X[:, 1] ** 2 - X[:, 2] + np.tanh(X[:, 3]) * 2.0


def additive_terms(X, baseline):
    """Exact Shapley values of ``additive_model`` under the baseline game."""
    terms = lambda Z: np.column_stack(  # noqa: E731
        [np.sin(2 * Z[:, 0]), 0.5 * Z[:, 1] ** 2, -Z[:, 2], np.tanh(Z[:, 3]) * 2.0]
    )
    return terms(np.asarray(X)) - terms(np.asarray(baseline)[None, :])


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(600, 4)), rng.normal(size=(50, 4))


@pytest.fixture(scope="module")
def additive_explainer(data):
    X, _ = data
    return FastSHAPExplainer(
        additive_model,
        value_function="baseline",
        hidden_layer_sizes=(64, 64),
        max_epochs=60,
        batch_size=32,
        n_iter_no_change=50,
        max_evaluations=50_000,
        random_state=0,
    ).fit(X)


def test_recovers_the_terms_of_an_additive_model(data, additive_explainer):
    X, X_test = data
    exp = additive_explainer.explain(X_test)
    exact = exact_shapley(additive_explainer.game_, X_test).values[:, :, 0]
    np.testing.assert_allclose(
        exact, additive_terms(X_test, X.mean(axis=0)), atol=1e-10
    )
    error = shapley_error(exp.values, exact)
    scale = np.mean(np.linalg.norm(exact, axis=1))
    assert error < 0.05 * scale, (error, scale)


def test_efficiency_holds_to_float_precision(data, additive_explainer):
    _, X_test = data
    exp = additive_explainer.explain(X_test)
    np.testing.assert_allclose(
        exp.base_values + exp.values.sum(axis=1), additive_model(X_test), atol=1e-9
    )
    empty_value = additive_model(data[0].mean(axis=0)[None])[0]
    np.testing.assert_allclose(exp.base_values, np.full(len(X_test), empty_value))


def test_same_random_state_same_explainer(data):
    X, X_test = data
    kwargs = dict(value_function="baseline", random_state=3, **TINY)
    a = FastSHAPExplainer(additive_model, **kwargs).fit(X).transform(X_test)
    b = FastSHAPExplainer(additive_model, **kwargs).fit(X).transform(X_test)
    assert np.array_equal(a, b)
    kwargs["random_state"] = 4
    c = FastSHAPExplainer(additive_model, **kwargs).fit(X).transform(X_test)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("value_function", ["surrogate", "baseline", "marginal"])
def test_classifier_explains_all_classes(value_function):
    X, y = make_classification(
        n_samples=150, n_features=5, n_informative=3, n_classes=3, random_state=0
    )
    clf = LogisticRegression().fit(X, y)
    explainer = FastSHAPExplainer(
        FrozenEstimator(clf),
        value_function=value_function,
        n_background=20,
        surrogate_params={"max_epochs": 3},
        random_state=0,
        **TINY,
    ).fit(X)
    exp = explainer.explain(X[:7])
    assert exp.values.shape == (7, 5, 3)
    assert exp.base_values.shape == (7, 3)
    assert exp.output_names == ["0", "1", "2"]
    assert explainer.transform(X[:7]).shape == (7, 5)
    full = explainer.explained_output(X[:7])
    np.testing.assert_allclose(
        exp.base_values + exp.values.sum(axis=1), full, atol=1e-9
    )
    # A float32 surrogate's v(full) depends on the batch it is evaluated in, to ~1e-7
    # (explained_output evaluates it as explain does, hence the 1e-9 above).
    surrogate = value_function == "surrogate"
    atol = 1e-6 if surrogate else 1e-12
    np.testing.assert_allclose(
        full, explainer.game_.grand_and_empty(X[:7])[0], atol=atol
    )
    if not surrogate:
        np.testing.assert_allclose(full, clf.predict_proba(X[:7]), atol=1e-12)


def test_logit_link_explains_log_odds():
    X, y = make_classification(n_samples=120, n_features=4, random_state=1)
    clf = LogisticRegression().fit(X, y)
    explainer = FastSHAPExplainer(
        FrozenEstimator(clf), value_function="baseline", link="logit", **TINY
    ).fit(X)
    exp = explainer.explain(X[:5])
    log_odds = clf.decision_function(X[:5])
    np.testing.assert_allclose(
        exp.base_values[:, 1] + exp.values[:, :, 1].sum(axis=1), log_odds, atol=1e-8
    )


def test_player_groups_are_explained_as_one(data, additive_explainer):
    X, X_test = data
    players = [[0, 2], [1], [3]]
    explainer = FastSHAPExplainer(
        additive_model,
        value_function="baseline",
        players=players,
        hidden_layer_sizes=(64, 64),
        max_epochs=60,
        batch_size=32,
        n_iter_no_change=50,
        max_evaluations=50_000,
        random_state=0,
    ).fit(X)
    phi = explainer.transform(X_test)
    assert phi.shape == (50, 3)
    assert list(explainer.get_feature_names_out()) == ["x0+x2", "x1", "x3"]
    terms = additive_terms(X_test, X.mean(axis=0))
    grouped = np.column_stack([terms[:, [0, 2]].sum(1), terms[:, 1], terms[:, 3]])
    assert shapley_error(phi, grouped) < 0.05 * np.linalg.norm(grouped, axis=1).mean()


def test_surrogate_imitates_the_model_on_the_full_coalition():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(500, 4))
    model = Ridge().fit(X, X @ np.array([1.0, -2.0, 0.5, 0.0]))
    game = fit_surrogate(
        FrozenEstimator(model), X, hidden_layer_sizes=(64, 64), random_state=0
    )
    assert isinstance(game, SurrogateGame)
    assert (game.n_players, game.n_outputs) == (4, 1)
    X_test = rng.normal(size=(100, 4))
    full, empty = game.grand_and_empty(X_test)
    pred = model.predict(X_test)
    r2 = 1 - np.mean((full[:, 0] - pred) ** 2) / np.var(pred)
    assert r2 > 0.95, r2
    # With nothing known, the surrogate predicts about the mean output.
    assert abs(empty[0, 0] - pred.mean()) < 0.3 * pred.std()
    # v(full) from one coalition a row and v(∅) once: the game's values there
    for g in (game, game.rowwise_copy()):
        full, empty = g.grand_and_empty(X_test)
        both = g(X_test, np.array([[True] * 4, [False] * 4]))
        np.testing.assert_allclose(full, both[:, 0], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(empty, both[:, 1], rtol=1e-6, atol=1e-6)
    # A game like any other: pickles, takes per-row masks, honours the link.
    clone = pickle.loads(pickle.dumps(game))
    masks = rng.random((100, 3, 4)) < 0.5
    np.testing.assert_array_equal(clone(X_test, masks), game(X_test, masks))


def test_surrogate_value_function_is_kept_and_used(data):
    X, y = make_classification(n_samples=150, n_features=4, random_state=0)
    clf = LogisticRegression().fit(X, y)
    explainer = FastSHAPExplainer(
        FrozenEstimator(clf),
        surrogate_params={"max_epochs": 5, "hidden_layer_sizes": (32,)},
        random_state=0,
        **TINY,
    ).fit(X)
    assert explainer.game_ is explainer.surrogate_
    assert explainer.module_.binned is None  # n_bins="auto": a network's game
    exact = exact_shapley(explainer.surrogate_, X[:5]).values
    exp = explainer.explain(X[:5])
    np.testing.assert_allclose(
        exp.base_values, exact_shapley(explainer.game_, X[:5]).base_values
    )
    assert exp.values.shape == exact.shape
    probabilities = explainer.surrogate_(X[:5], np.ones((1, 4), bool))[:, 0]
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-6)


def test_explanation_of_a_row_does_not_depend_on_the_other_rows():
    """The surrogate's values an explanation needs (v(full), v(∅) and the first and
    last contributions) are evaluated row by row (SurrogateGame.rowwise_copy): one
    float32 product over all rows came out 8e-8 apart for the same row when the rows
    were permuted, on some CPUs, which failed sklearn's sample-order check (atol
    1e-9). The explainer network is float32 over all rows: sklearn's tolerances
    hold."""
    rng = np.random.RandomState(0)
    X = rng.uniform(size=(20, 3)) * 3
    y = X.sum(axis=1) + rng.normal(size=20)
    explainer = FastSHAPExplainer(
        Ridge(),
        hidden_layer_sizes=(8,),
        max_epochs=2,
        surrogate_params={"max_epochs": 2},
        random_state=0,
    ).fit(X, y)
    assert explainer._proxy is explainer._grand_game
    assert explainer._grand_game.rowwise and not explainer.surrogate_.rowwise
    order = rng.permutation(20)
    full, empty, contributions = explainer._inputs(X)
    full_p, empty_p, contributions_p = explainer._inputs(X[order])
    np.testing.assert_array_equal(full_p, full[order])
    np.testing.assert_array_equal(empty_p, empty[order])
    np.testing.assert_array_equal(contributions_p, contributions[order])
    values = explainer.transform(X)
    np.testing.assert_allclose(
        explainer.transform(X[order]), values[order], rtol=1e-7, atol=1e-9
    )
    np.testing.assert_allclose(
        np.vstack([explainer.transform(X[i : i + 1]) for i in range(5)]),
        values[:5],
        rtol=1e-7,
        atol=1e-7,
    )
    # the surrogate itself still trains and answers in float32
    assert next(explainer.surrogate_.module.parameters()).dtype == torch.float32


def test_masked_module_rows_are_evaluated_apart():
    """MaskedModule.forward_rows gives forward's values, and a row's values are the
    same bit for bit wherever it lies among other rows in a batch of the same size."""
    torch.manual_seed(0)
    membership = np.array([[1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=bool)
    module = MaskedModule(membership, 2, (16, 16)).eval()
    x = torch.randn(50, 4)
    mask = torch.as_tensor(np.random.RandomState(0).rand(50, 7, 3) < 0.5)
    with torch.no_grad():
        rows = module.forward_rows(x, mask)
        flat = module(x.repeat_interleave(7, dim=0), mask.reshape(-1, 3))
        np.testing.assert_allclose(rows.reshape(-1, 2), flat, rtol=1e-5, atol=1e-6)
        for seed in range(5):
            order = torch.as_tensor(np.random.RandomState(seed).permutation(50))
            assert torch.equal(module.forward_rows(x[order], mask[order]), rows[order])


def test_game_object_as_value_function(data):
    X, X_test = data
    game = BaselineGame(additive_model, np.zeros(4))
    explainer = FastSHAPExplainer(value_function=game, **TINY).fit(X)
    exp = explainer.explain(X_test)
    np.testing.assert_allclose(
        exp.base_values + exp.values.sum(axis=1), additive_model(X_test), atol=1e-9
    )
    np.testing.assert_allclose(
        exp.base_values, np.full(len(X_test), additive_model(np.zeros((1, 4)))[0])
    )


@pytest.mark.parametrize(
    "params",
    [
        {"normalization": "none", "efficiency_lambda": 1.0},
        {"normalization": "multiplicative"},
        {"paired_sampling": False, "n_coalitions": 7},
        {"early_stopping": False},
        {"swap_probability": 0.0, "input_noise": 0.0},
        {"n_bins": None},
        {"n_bins": 1, "playerwise_layer_sizes": None},
        {"n_bins": 4, "players": [[0, 2], [1], [3]]},
    ],
)
def test_training_variants_stay_efficient(data, params):
    X, X_test = data
    explainer = FastSHAPExplainer(
        additive_model, value_function="baseline", random_state=0, **TINY
    ).set_params(**params)
    exp = explainer.fit(X).explain(X_test)
    np.testing.assert_allclose(
        exp.base_values + exp.values.sum(axis=1), additive_model(X_test), atol=1e-9
    )


def test_score_prefers_the_better_trained_explainer(data, additive_explainer):
    X, X_test = data
    barely = (
        FastSHAPExplainer(
            additive_model, value_function="baseline", random_state=0, **TINY
        )
        .set_params(max_epochs=1, hidden_layer_sizes=(4,))
        .fit(X)
    )
    assert additive_explainer.score(X_test) > barely.score(X_test)
    assert additive_explainer.score(X_test) <= 0


def test_grid_search_selects_by_the_held_out_loss(data):
    X, _ = data
    search = GridSearchCV(
        FastSHAPExplainer(
            additive_model,
            value_function="baseline",
            first_last=False,  # else exact from the start for an additive game
            max_evaluations=20_000,
            random_state=0,
        ),
        {"max_epochs": [1, 30], "hidden_layer_sizes": [(4,), (32, 32)]},
        cv=2,
    ).fit(X[:300])
    assert search.best_params_ == {"max_epochs": 30, "hidden_layer_sizes": (32, 32)}


def test_history_and_verbose_progress(data, capsys):
    X, _ = data
    explainer = FastSHAPExplainer(
        additive_model, value_function="baseline", verbose=1, **TINY
    ).fit(X[:100])
    out = capsys.readouterr().out
    assert "valid_loss" in out and "train_loss" in out
    assert len(explainer.history_) == TINY["max_epochs"]


def test_large_data_is_subsampled(data, monkeypatch):
    X, _ = data
    monkeypatch.setattr(_fastshap, "MAX_ROWS", 200)
    seen = []
    game = BaselineGame(additive_model, X.mean(axis=0))
    monkeypatch.setattr(
        FastSHAPExplainer, "_make_game", lambda self, rows: seen.append(rows) or game
    )
    explainer = FastSHAPExplainer(additive_model, random_state=0, **TINY).fit(X)
    (rows,) = seen
    assert rows.shape == (200, X.shape[1])  # distinct rows of X, in their order
    index = [int(np.flatnonzero((r == X).all(axis=1))[0]) for r in rows]
    assert index == sorted(set(index))
    assert explainer.transform(X[:3]).shape == (3, X.shape[1])


def test_a_small_budget_trains_on_fewer_rows(data):
    X, X_test = data
    params = {**TINY, "max_evaluations": 2_000, "n_coalitions": 8}
    explainer = FastSHAPExplainer(additive_model, value_function="baseline", **params)
    explainer.set_params(random_state=0).fit(X)
    plan = explainer.plan_
    assert plan.source == "pool" and plan.n_copies == 1
    assert plan.n_rows * (8 + 2 + 2 * 4 + 2) <= 2_000
    assert plan.n_rows < 0.9 * len(X)  # fewer than the training rows
    values = explainer.explain(X_test)
    np.testing.assert_allclose(
        values.base_values + values.values.sum(axis=1), additive_model(X_test)
    )


def test_long_target_evaluation_is_announced(data, monkeypatch):
    X, _ = data
    explainer = FastSHAPExplainer(
        additive_model, value_function="baseline", random_state=0, **TINY
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a quick fit says nothing
        explainer.fit(X[:100])
    reference = explainer.transform(X[:5])
    monkeypatch.setattr(_fastshap, "SLOW_TARGETS", -1.0)  # every fit is "long"
    with pytest.warns(UserWarning, match="will take about .* lower max_evaluations"):
        explainer.fit(X[:100])
    np.testing.assert_array_equal(explainer.transform(X[:5]), reference)


@pytest.mark.parametrize(
    "params, message",
    [
        ({"value_function": "kernel"}, "value_function must be one of"),
        ({"value_function": 3}, "value_function"),
        ({"link": "probit"}, "link"),
        ({"normalization": "scaled"}, "normalization"),
        ({"validation_fraction": 1.5}, "validation_fraction"),
        ({"swap_probability": 1.5}, "swap_probability"),
        ({"n_iter_no_change": 0}, "n_iter_no_change"),
        ({"max_epochs": 0}, "max_epochs"),
        ({"max_evaluations": -5}, "max_evaluations"),
        ({"tol": -1.0}, "tol"),
        ({"n_bins": 0}, "n_bins"),
        ({"n_bins": 2.5}, "n_bins"),
        ({"n_bins": "many"}, "n_bins"),
        ({"n_bins": True}, "n_bins"),
        ({"first_last": "yes"}, "first_last"),
        ({"n_coalitions": 0}, "n_coalitions"),
        ({"n_coalitions": "many"}, "n_coalitions"),
        ({"n_coalitions": "all"}, "n_coalitions"),
        ({"first_last": None}, "first_last"),
        ({"hidden_layer_sizes": "wide"}, "hidden_layer_sizes"),
        ({"hidden_layer_sizes": (32, 0)}, "hidden_layer_sizes"),
        ({"hidden_layer_sizes": (32, 2.5)}, "hidden_layer_sizes"),
        ({"hidden_layer_sizes": 32}, "hidden_layer_sizes"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": "large"}, "batch_size"),
        ({"batch_size": "auto"}, "batch_size"),
    ],
)
def test_bad_parameters_raise(data, params, message):
    X, _ = data
    explainer = FastSHAPExplainer(
        additive_model, **{"value_function": "baseline", **TINY, **params}
    )
    with pytest.raises(ValueError, match=message):
        explainer.fit(X[:50])


def piecewise_linear_encoding(X, edges):
    """The encoding, dense: ``T_j`` columns per feature (the oracle of the layer)."""
    columns = []
    for x, e in zip(X.T, edges):
        for t in range(len(e) - 1):
            z = (x - e[t]) / (e[t + 1] - e[t])
            lower = -np.inf if t == 0 else 0.0
            upper = np.inf if t == len(e) - 2 else 1.0
            columns.append(np.clip(z, lower, upper))
    return np.column_stack(columns)


def test_piecewise_linear_layer_is_a_linear_layer_on_the_encoding():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 4))
    X[:, 2] = 1.5  # constant: one bin
    X[:, 3] = rng.integers(0, 2, size=300)  # binary: one bin
    edges = quantile_bin_edges(X, 8)
    assert [len(e) - 1 for e in edges] == [8, 8, 1, 1]
    layer = PiecewiseLinearLayer(edges, 5)
    # rows inside, beyond and on the edges of the training range
    Z = rng.normal(size=(40, 4)) * 3
    Z[:9, 0] = edges[0]
    Z[:, 3] = rng.integers(0, 2, size=40)
    encoded = piecewise_linear_encoding(Z, edges)
    # each feature is a linear function of its encoding (linear extrapolation)
    start = 0
    for j, e in enumerate(edges):
        stop = start + len(e) - 1
        np.testing.assert_allclose(encoded[:, start:stop] @ np.diff(e) + e[0], Z[:, j])
        start = stop
    weight = layer.weight.detach().double().numpy()  # a row per bin, in order
    Zt = torch.as_tensor(Z, dtype=torch.float32)
    np.testing.assert_allclose(layer(Zt).detach(), encoded @ weight, atol=1e-5)
    per_feature = layer.per_feature(Zt).detach().sum(dim=1)
    np.testing.assert_allclose(per_feature, encoded @ weight, atol=1e-5)


def test_step_layer_is_a_linear_layer_on_the_thermometer_encoding():
    rng = np.random.default_rng(0)
    thresholds = [np.array([-1.0, 0.0, 2.0]), np.array([]), np.array([0.5])]
    layer = PiecewiseLinearLayer(thresholds, 5, steps=True)
    X = rng.normal(size=(40, 3)) * 2
    X[:3, 0] = thresholds[0]  # on a threshold: goes left, as in a tree
    X[3, 2] = 0.5
    encoded = np.column_stack(
        [X[:, j] > c for j, t in enumerate(thresholds) for c in t]
    ).astype(float)
    assert encoded.shape == (40, 4) and encoded[:3, :3].sum() == 3
    weight = layer.weight.detach().double().numpy()  # rows: 4, 1 and 2 bins
    steps = np.vstack([weight[0:3], weight[5:6]])  # row t: the step at c_{t+1}
    Xt = torch.as_tensor(X, dtype=torch.float32)
    np.testing.assert_allclose(layer(Xt).detach(), encoded @ steps, atol=1e-5)
    per_feature = layer.per_feature(Xt).detach()
    np.testing.assert_array_equal(per_feature[:, 1], 0.0)  # no thresholds: constant
    np.testing.assert_allclose(per_feature.sum(dim=1), encoded @ steps, atol=1e-5)


def test_split_thresholds_are_read_from_tree_ensembles(data):
    X, _ = data
    y = additive_model(X)
    model = GradientBoostingRegressor(n_estimators=20, max_depth=2, random_state=0)
    model.fit(X, y)
    expected = [set() for _ in range(4)]
    for tree in model.estimators_[:, 0]:
        internal = tree.tree_.children_left >= 0
        for j, c in zip(tree.tree_.feature[internal], tree.tree_.threshold[internal]):
            expected[j].add(c)
    for estimator in (model, FrozenEstimator(model)):
        for game in (BaselineGame(estimator, X[0]), MarginalGame(estimator, X[:20])):
            thresholds = game.split_thresholds()
            assert [set(t) for t in thresholds] == expected
    tree_game = resolve_game(MarginalGame(model, X[:20]), X)
    assert [set(t) for t in tree_game.split_thresholds()] == expected
    # at most max_steps per feature, taken from the model's thresholds
    for j, full in enumerate(expected):
        t = thin_thresholds(np.array(sorted(full)), X[:, j], 3)
        assert 1 <= len(t) <= 3 and set(t) <= full
        assert np.all(np.diff(t) > 0)
    # not a tree ensemble read directly on the game's columns: None
    assert BaselineGame(Ridge().fit(X, y), X[0]).split_thresholds() is None
    assert BaselineGame(additive_model, X[0]).split_thresholds() is None
    pipeline = make_pipeline(StandardScaler(), model).fit(X, y)
    assert BaselineGame(pipeline, X[0]).split_thresholds() is None


@pytest.mark.parametrize("library", ["sklearn", "xgboost"])
def test_tree_ensembles_are_constant_between_their_split_thresholds(data, library):
    X, _ = data
    X = X.astype(np.float32).astype(np.float64)  # the models compare in float32
    y = additive_model(X) + X[:, 0] * X[:, 1]
    if library == "xgboost":
        xgboost = pytest.importorskip("xgboost")
        model = xgboost.XGBRegressor(n_estimators=20, max_depth=3, n_jobs=1)
    else:
        model = GradientBoostingRegressor(n_estimators=20, max_depth=3, random_state=0)
    model.fit(X, y)
    thresholds = BaselineGame(model, X[0]).split_thresholds()
    rows = X[:20]
    for j, t in enumerate(thresholds):
        cuts = t.astype(np.float32)  # the largest float32 that goes left of each
        cuts = np.where(cuts > t, np.nextafter(cuts, np.float32(-np.inf)), cuts)
        above = np.nextafter(cuts, np.float32(np.inf))  # just right of each split
        for low, high in zip(above[:-1], cuts[1:]):  # both ends of one cell
            at_low, at_high = rows.copy(), rows.copy()
            at_low[:, j], at_high[:, j] = low, high
            np.testing.assert_array_equal(model.predict(at_low), model.predict(at_high))
        moved = rows.copy()
        moved[:, j] = cuts[0]  # on a threshold: left of it, unlike just right of it
        right = rows.copy()
        right[:, j] = above[0]
        assert np.any(model.predict(moved) != model.predict(right))


def test_explainer_of_a_tree_ensemble_sees_its_splits(data):
    X, X_test = data
    y = additive_model(X)
    model = GradientBoostingRegressor(n_estimators=30, max_depth=3, random_state=0)
    model = FrozenEstimator(model.fit(X, y))
    errors = {}
    for n_bins in (64, "auto"):  # quantile bins, the model's splits
        explainer, errors[n_bins] = fit_baseline_explainer(
            model, X, X_test, n_bins, max_epochs=120
        )
    binned = explainer.module_.binned
    assert binned.steps and explainer.module_.playerwise.binned.steps
    # the step encoding's thresholds: the model's, standardised
    thresholds = explainer.game_.split_thresholds()
    for j, t in enumerate(thresholds):
        scaled = ((t - X[:, j].mean()) / X[:, j].std()).astype(np.float32)
        np.testing.assert_allclose(binned.inner[j, : len(t)], scaled, rtol=1e-6)
    assert errors["auto"] < 0.95 * errors[64], errors


def fit_baseline_explainer(model, X, X_test, n_bins, max_epochs):
    """An explainer of ``model``'s baseline game with ``n_bins``, and its error on
    ``X_test`` against exact enumeration."""
    explainer = FastSHAPExplainer(
        model,
        value_function="baseline",
        n_bins=n_bins,
        first_last=False,  # the network alone: an additive game would be exact
        hidden_layer_sizes=(64, 64),
        max_epochs=max_epochs,
        max_evaluations=50_000,
        early_stopping=False,
        random_state=0,
    ).fit(X)
    exact = exact_shapley(explainer.game_, X_test).values[:, :, 0]
    return explainer, shapley_error(explainer.explain(X_test).values, exact)


def step_model(X):
    """Additive with steps, like a tree ensemble's terms."""
    X = np.asarray(X)
    return 2.0 * (X[:, 0] > 0.3) - 1.5 * (X[:, 1] > -0.5) + np.floor(2 * X[:, 2])


def test_bins_fit_the_steps_of_tree_like_models(data):
    X, X_test = data
    errors = {}
    for n_bins in (None, "auto"):
        explainer, errors[n_bins] = fit_baseline_explainer(
            step_model, X, X_test, n_bins, max_epochs=40
        )
        assert (explainer.module_.binned is None) == (n_bins is None)
    assert errors["auto"] < 0.7 * errors[None], errors
    # "auto" bins a piecewise-constant model only
    smooth = FastSHAPExplainer(additive_model, value_function="baseline", **TINY)
    assert smooth.fit(X)._steps_share(X) == 0.0
    assert smooth.module_.binned is None
    assert explainer._steps_share(X) == 1.0


@pytest.mark.parametrize("n_bins", [None, 8, "steps"])
def test_playerwise_networks_see_only_their_players_features(n_bins):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 4))
    membership = np.array([[1, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 1]], dtype=bool)
    if n_bins == "steps":  # thresholds between the rows' values
        edges = [np.sort(column)[:-1] + 1e-3 for column in X.T]
    else:
        edges = None if n_bins is None else quantile_bin_edges(X, n_bins)
    torch.manual_seed(0)
    net = PlayerwiseMLP(
        membership, 2, (8, 8), edges, bin_steps=n_bins == "steps", n_player_inputs=2
    )
    x = torch.as_tensor(X[:20], dtype=torch.float32)
    extra = torch.as_tensor(rng.normal(size=(20, 3, 2)), dtype=torch.float32)
    moved = x.clone()
    moved[:, 1] += 1.0  # player 1's only feature
    before, after = net(x, extra=extra).detach(), net(moved, extra=extra).detach()
    assert before.shape == (20, 3, 2)
    np.testing.assert_array_equal(before[:, [0, 2]], after[:, [0, 2]])
    assert not torch.allclose(before[:, 1], after[:, 1])
    moved = x.clone()
    moved[:, 2] += 1.0  # player 0's second feature
    after = net(moved, extra=extra).detach()
    np.testing.assert_array_equal(before[:, 1:], after[:, 1:])
    assert not torch.allclose(before[:, 0], after[:, 0])
    moved = extra.clone()
    moved[:, 2] += 1.0  # player 2's own inputs
    after = net(x, extra=moved).detach()
    np.testing.assert_array_equal(before[:, :2], after[:, :2])
    assert not torch.allclose(before[:, 2], after[:, 2])


def pairwise_model(X):
    """Interactions of two features at most: Shapley = (first + last) / 2."""
    X = np.asarray(X)
    return np.sin(X[:, 0]) + X[:, 0] * X[:, 1] - 0.5 * X[:, 2] * X[:, 3] + X[:, 1] ** 2


def three_way_model(X):
    X = np.asarray(X)
    return pairwise_model(X) + np.tanh(X[:, 0] * X[:, 1] * X[:, 2])


def test_first_last_contributions_of_a_game():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(5, 4))
    baseline = rng.normal(size=4)
    game = BaselineGame(pairwise_model, baseline)
    masks = first_last_masks(4)
    assert masks.shape == (10, 4)
    first, last, full, empty = first_last_contributions(game(X, masks))
    exact = exact_shapley(game, X)
    np.testing.assert_allclose(full, pairwise_model(X)[:, None])
    np.testing.assert_allclose(empty[:, 0], pairwise_model(baseline[None])[0])
    for i in range(4):
        alone = np.where(np.arange(4) == i, X, baseline)
        np.testing.assert_allclose(
            first[:, i, 0], pairwise_model(alone) - pairwise_model(baseline[None])
        )
        others = np.where(np.arange(4) == i, baseline, X)
        np.testing.assert_allclose(
            last[:, i, 0], pairwise_model(X) - pairwise_model(others)
        )
    # two-player interactions at most: their average is the Shapley value
    average = (first + last) / 2
    np.testing.assert_allclose(average, exact.values.reshape(average.shape), atol=1e-12)


def _four_way_model(X):
    X = np.asarray(X)
    return (
        X[:, 0] * X[:, 1] * X[:, 2] * X[:, 4]
        - 2 * X[:, 1] * X[:, 3] * X[:, 4]
        + X[:, 0] * X[:, 4]
        + np.sin(X[:, 3])
    )


@pytest.mark.parametrize("n_outputs", [1, 2])
def test_pair_correction_makes_the_average_exact_for_four_way_games(n_outputs):
    """With the pairs' correction the average of the first and last contributions
    is the Shapley value of a game whose interactions involve four players at
    most, and not of one with five."""
    rng = np.random.default_rng(0)
    d = 5
    X = rng.normal(size=(6, d))
    baseline = rng.normal(size=d)

    def model(X):
        out = _four_way_model(X)
        return np.stack([out, -3 * out + 1], axis=1)[:, :n_outputs]

    game = BaselineGame(model if n_outputs > 1 else _four_way_model, baseline)
    masks = pair_masks(d)
    assert masks.shape == (d * (d - 1), d)
    assert (masks[: len(masks) // 2].sum(axis=1) == 2).all()
    np.testing.assert_array_equal(masks[len(masks) // 2 :], ~masks[: len(masks) // 2])
    exact = exact_shapley(game, X).values.reshape(len(X), d, n_outputs)
    contributions, full, empty = contribution_inputs(game, X, pairs=True)
    first, last, correction = np.split(contributions, 3, axis=2)
    np.testing.assert_allclose((first + last) / 2 + correction, exact, atol=1e-12)
    assert np.abs((first + last) / 2 - exact).max() > 0.1
    five = BaselineGame(lambda X: np.prod(X, axis=1), baseline)
    contributions, _, _ = contribution_inputs(five, X, pairs=True)
    first, last, correction = np.split(contributions, 3, axis=2)
    exact = exact_shapley(five, X).values.reshape(len(X), d, 1)
    assert np.abs((first + last) / 2 + correction - exact).max() > 1e-3


def test_pairs_auto_follows_their_cost(data):
    X, X_test = data
    explainer = FastSHAPExplainer(
        additive_model, value_function="baseline", random_state=0, **TINY
    )
    small = explainer.fit(X)  # 4 players: 12 pair values a row
    assert small._pairs and small.module_.n_parts == 3
    assert (small.explain(X_test).n_evaluations == 2 * 4 + 2 + 12).all()
    off = sk_clone(explainer).set_params(pairs=False).fit(X)
    assert off.module_.n_parts == 2
    assert not sk_clone(explainer).set_params(first_last=False).fit(X)._pairs


@pytest.mark.parametrize(
    "hidden, playerwise, steps",
    [
        ((8,), (4,), False),
        ((8, 8), None, False),
        ((), (), True),
        ((), (), False),
    ],
)
def test_module_starts_at_the_average_of_the_contributions(hidden, playerwise, steps):
    edges = [np.array([0.0]), np.array([-1.0, 1.0]), np.array([])] if steps else None
    torch.manual_seed(0)
    module = ShapleyModule(
        3,
        3,
        2,
        hidden,
        "additive",
        2.0,
        np.eye(3, dtype=bool),
        playerwise,
        edges,
        steps,
        first_last=True,
    )
    x, contributions = torch.randn(5, 3), torch.randn(5, 3, 4)
    expected = (contributions[..., :2] + contributions[..., 2:]) / 2 * 2.0
    torch.testing.assert_close(module(x, None, contributions), expected)
    total = torch.randn(5, 2)  # the efficiency layer still applies
    phi = module(x, total, contributions)
    torch.testing.assert_close(phi.sum(dim=1), total)


def test_first_last_learns_the_higher_order_interactions(data):
    """Exact for a pairwise game from the start; for a three-way interaction the
    network learns a correction to the average that beats it and the network
    alone."""
    X, X_test = data
    kwargs = dict(
        value_function="baseline",
        hidden_layer_sizes=(64, 64),
        max_epochs=60,
        max_evaluations=50_000,
        random_state=0,
    )
    pairwise = FastSHAPExplainer(pairwise_model, **kwargs).fit(X)
    assert pairwise.module_.first_last
    exact = exact_shapley(pairwise.game_, X_test).values[:, :, 0]
    scale = np.mean(np.linalg.norm(exact, axis=1))
    assert shapley_error(pairwise.explain(X_test).values, exact) < 0.01 * scale
    errors = {}
    for first_last in (True, False):
        explainer = FastSHAPExplainer(
            three_way_model, first_last=first_last, **kwargs
        ).fit(X)
        exact = exact_shapley(explainer.game_, X_test).values[:, :, 0]
        errors[first_last] = shapley_error(explainer.explain(X_test).values, exact)
    game = explainer.game_
    first, last, _, _ = first_last_contributions(game(X_test, first_last_masks(4)))
    average = (first + last)[..., 0] / 2
    errors["average"] = shapley_error(average, exact)
    assert errors[True] < 0.5 * min(errors[False], errors["average"]), errors


def test_first_last_of_the_marginal_game_come_from_the_background_mean(data):
    X, X_test = data
    explainer = FastSHAPExplainer(
        three_way_model, value_function="marginal", n_background=20, **TINY
    ).fit(X)
    game = explainer._proxy
    assert isinstance(game, BaselineGame) and game.model is explainer.game_.model
    np.testing.assert_allclose(game.baseline, explainer.game_.background.mean(axis=0))
    exp = explainer.explain(X_test)
    assert np.all(exp.n_evaluations == 2 * 4 + 2 + 4 * 3)  # and the pairs
    exact = exact_shapley(explainer.game_, X_test)
    np.testing.assert_allclose(exp.base_values, exact.base_values[:, 0])
    np.testing.assert_allclose(
        exp.base_values + exp.values.sum(axis=1), three_way_model(X_test), atol=1e-9
    )


def test_first_last_auto_depends_on_their_cost(data, monkeypatch):
    """``first_last="auto"`` feeds the contributions when the game's proxy computes
    them for at most ``MIN_COALITIONS + 2`` model evaluations a row (what a
    training row's targets cost at the least): a model's game of 16 players, not
    17; a tree ensemble's over one baseline row at any size."""
    X, _ = data
    kwargs = dict(value_function="baseline", random_state=0, **TINY)
    assert FastSHAPExplainer(additive_model, **kwargs).fit(X).module_.first_last
    rng = np.random.default_rng(0)
    for d, expected in ((16, True), (17, False)):
        wide = rng.normal(size=(60, d))
        explainer = FastSHAPExplainer(additive_model, **kwargs).fit(wide)
        assert explainer.module_.first_last is expected
    y = wide[:, 0] * wide[:, 1] + wide[:, 2]
    trees = GradientBoostingRegressor(n_estimators=5, random_state=0).fit(wide, y)
    explainer = FastSHAPExplainer(trees, **kwargs).fit(wide)
    assert explainer.module_.first_last
    assert explainer._proxy.first_last_cost < 2 * 17 + 2
    monkeypatch.setattr(_fastshap, "MIN_COALITIONS", 7)
    explainer = FastSHAPExplainer(additive_model, **kwargs).fit(X)
    assert not explainer.module_.first_last
    assert explainer._proxy is None
    assert np.all(explainer.explain(X[:3]).n_evaluations == 2)
    for on in (True, np.True_):  # any bool the validation accepts
        forced = FastSHAPExplainer(additive_model, first_last=on, **kwargs).fit(X)
        assert forced.module_.first_last


def test_validation_on_every_coalition_is_the_expected_loss():
    """Small games are validated on all their coalitions with the Shapley kernel's
    probabilities: the sampler's distribution exactly."""
    masks, weights = _kernel_coalitions(4)
    assert masks.shape == (14, 4) and np.isclose(weights.sum(), 1.0)
    sizes = masks.sum(axis=1)
    assert sizes.min() == 1 and sizes.max() == 3
    expected = {1: 3 / (4 * 1 * 3), 2: 3 / (6 * 2 * 2), 3: 3 / (4 * 3 * 1)}
    total = sum(expected[k] * math.comb(4, k) for k in expected)
    np.testing.assert_allclose(weights, [expected[k] / total for k in sizes], rtol=1e-6)
    sampled = CoalitionSampler(4, "shapley").sample(200_000, np.random.default_rng(0))
    codes = sampled @ (1 << np.arange(4))
    frequency = np.bincount(codes, minlength=16)[1:-1] / len(codes)
    np.testing.assert_allclose(frequency, weights, atol=3e-3)


def test_loss_on_every_coalition_is_minimised_by_the_shapley_value():
    """Weighted by ``_kernel_coalitions``, the loss over all coalitions (the training
    and validation loss of small games) has the exact Shapley value as its
    efficient minimiser."""
    rng = np.random.default_rng(0)
    X, baseline = rng.normal(size=(3, 4)), rng.normal(size=4)
    game = BaselineGame(three_way_model, baseline)
    masks, weights = _kernel_coalitions(4)
    values = game(X, masks)[:, :, 0]
    empty = three_way_model(baseline[None])[0]
    total = three_way_model(X) - empty
    exact = exact_shapley(game, X).values[:, :, 0]
    A = masks.astype(float)
    for row in range(3):  # the KKT system of min Σ w (v − v(∅) − Aφ)², 1ᵀφ = total
        gram = A.T @ (weights[:, None] * A)
        kkt = np.block(
            [[2 * gram, np.ones((4, 1))], [np.ones((1, 4)), np.zeros((1, 1))]]
        )
        rhs = np.append(2 * A.T @ (weights * (values[row] - empty)), total[row])
        np.testing.assert_allclose(np.linalg.solve(kkt, rhs)[:4], exact[row], atol=1e-5)
    # ShapleyNet's loss on the minimiser is the weighted mean up to a constant
    empty_rows = np.full((3, 1), empty)
    cross, _ = game.kernel_statistics(X, empty_rows, masks, weights)
    gram = kernel_gram(masks, weights)
    batch = {"target": torch.as_tensor(np.linalg.solve(gram, cross))}
    net = ShapleyNet(ShapleyModule, criterion=torch.nn.MSELoss, gram=gram)

    def losses(phi):
        loss = net.get_loss(torch.as_tensor(phi), None, X=batch)
        residual = values - empty - np.einsum("md,nd->nm", A, phi[:, :, 0])
        return float(loss), np.mean((weights * residual**2).sum(axis=1))

    (net_a, mean_a), (net_b, mean_b) = (
        losses(rng.normal(size=(3, 4, 1))) for _ in "ab"
    )
    np.testing.assert_allclose(net_a - net_b, mean_a - mean_b, rtol=1e-8)


def test_plan_coalitions_fits_the_budget():
    """One pure function picks the coalition source from the game's size, the rows
    and the budget."""
    # a small game: every coalition, as many copies as the budget pays for
    plan = plan_coalitions(4, 100, n_coalitions=8, max_evaluations=14 * 100 * 3)
    assert plan == CoalitionPlan("all", 14, 3, 100)
    # copies at their cap: new augmented ones for as many epochs as the budget
    # pays for
    cap = _fastshap.MAX_ROWS // 100
    budget = 14 * 100 * cap * 7 + 1
    plan = plan_coalitions(4, 100, n_coalitions=8, max_evaluations=budget)
    assert plan == CoalitionPlan("all", 14, cap, 100, n_draws=7)
    # many rows: fewer copies, so that an epoch stays short; one copy (the rows)
    # has nothing to draw anew
    plan = plan_coalitions(4, 10_000, n_coalitions=8, max_evaluations=10**12)
    assert plan == CoalitionPlan("all", 14, 1, 10_000)
    # a costly value (a marginal game's): fewer copies, then sampled coalitions
    plan = plan_coalitions(
        4, 100, n_coalitions=8, max_evaluations=14 * 100 * 3, evaluation_cost=3
    )
    assert plan == CoalitionPlan("all", 14, 1, 100)
    plan = plan_coalitions(
        10, 100, n_coalitions=8, max_evaluations=8 * 100 * 2, evaluation_cost=1
    )
    assert plan == CoalitionPlan("pool", 8, 2, 100)
    # a game that shares work across rows with the same coalitions (every coalition)
    # is charged its shared cost there, its own cost for sampled coalitions
    costs = {"evaluation_cost": 100, "shared_evaluation_cost": 1}
    plan = plan_coalitions(
        4, 100, n_coalitions=8, max_evaluations=14 * 100 * 3, **costs
    )
    assert plan == CoalitionPlan("all", 14, 3, 100)
    plan = plan_coalitions(12, 100, n_coalitions=8, max_evaluations=8e4 * 3, **costs)
    assert plan == CoalitionPlan("pool", 8, 3, 100)
    # exact Shapley values cost no coalition evaluations, whatever the game's size
    for d in (10, 50):
        plan = plan_coalitions(
            d,
            100,
            n_coalitions=8,
            max_evaluations=100 * 23 * 5,
            extra_per_row=22,
            exact_values=True,
        )
        assert plan == CoalitionPlan("exact", 0, 5, 100)
    # a large game: a pool while it fits in memory, else fresh coalitions
    assert plan_coalitions(30, 100, n_coalitions=8, max_evaluations=8 * 100 * 5) == (
        CoalitionPlan("pool", 8, 5, 100)
    )
    plan = plan_coalitions(30, 10**7, n_coalitions=8, max_evaluations=8 * 10**7 * 4)
    assert plan == CoalitionPlan("fresh", 8, 4, 10**7)
    # one copy of every row's sampled coalitions over the budget: fewer rows
    plan = plan_coalitions(30, 1000, n_coalitions=8, max_evaluations=8 * 250)
    assert plan == CoalitionPlan("pool", 8, 1, 250)
    plan = plan_coalitions(30, 1000, n_coalitions=8, max_evaluations=1)
    assert plan == CoalitionPlan("pool", 8, 1, _fastshap.MIN_ROWS)
    # copies at their cap: what the budget leaves raises the coalitions per copy
    grow = {"n_coalitions": 8, "grow_coalitions": True}
    plan = plan_coalitions(
        30, 1000, max_evaluations=1000 * 10 * 22, extra_per_row=2, **grow
    )
    assert plan == CoalitionPlan("pool", 20, 10, 1000)
    plan = plan_coalitions(30, 1000, max_evaluations=10**12, **grow)
    assert plan == CoalitionPlan("pool", _fastshap.MAX_COALITIONS, 10, 1000)
    plan = plan_coalitions(30, 1000, max_evaluations=8 * 1000 * 5, **grow)
    assert plan == CoalitionPlan("pool", 8, 5, 1000)


def test_sample_statistics_solve_singular_grams():
    """Players no coalition tells apart (a singular gram), and a row whose
    coalitions are all empty (a zero gram, the pseudo-inverse's fallback): the
    minimiser still solves ``gram φ* = cross``."""
    rng = np.random.default_rng(1)
    masks = rng.random((4, 12, 5)) < 0.5
    masks[:, :, 4] = masks[:, :, 3]  # players 3 and 4 always together
    masks[3] = False
    values = rng.normal(size=(4, 12, 2))
    values[3] = 0.0
    gram, target = sample_statistics(masks, values)
    _, cross = coalition_moments(masks, values)
    np.testing.assert_allclose(gram @ target, cross, atol=1e-5)
    np.testing.assert_array_equal(target[3], 0.0)
    # the null space stays small: the two players get about the same share
    np.testing.assert_allclose(target[:, 3], target[:, 4], atol=1e-3)


@pytest.mark.parametrize("n_coalitions", [40, 4])  # the gram singular with 4
def test_sample_statistics_give_the_sampled_loss(n_coalitions):
    """A row's loss over its coalitions, up to a constant, from statistics whose
    size does not grow with the coalitions: the same training step."""
    rng = np.random.default_rng(0)
    masks = rng.random((5, n_coalitions, 6)) < 0.5
    values = rng.normal(size=(5, n_coalitions, 3))
    gram, target = sample_statistics(masks, values)
    net = ShapleyNet(ShapleyModule, criterion=torch.nn.MSELoss)
    pooled = {"masks": torch.as_tensor(masks), "values": torch.as_tensor(values)}
    pooled["empty"] = torch.zeros(5, 3, dtype=torch.float64)
    centred = {"gram": torch.as_tensor(gram), "target": torch.as_tensor(target)}
    phi_a, phi_b = (torch.as_tensor(rng.normal(size=(5, 6, 3))) for _ in "ab")
    gaps = [
        float(net.get_loss(phi_a, None, X=batch) - net.get_loss(phi_b, None, X=batch))
        for batch in (pooled, centred)
    ]
    np.testing.assert_allclose(*gaps, rtol=1e-5)
    # the validation loss's floor: its excess at φ is the same in both forms
    total = values[:, :2].sum(axis=1)
    floors = [
        _loss_floor({"total": total, "masks": masks, "values": values}, None),
        _loss_floor({"total": total, "gram": gram, "target": target}, None),
    ]
    phi = phi_a.numpy() + (total - phi_a.numpy().sum(axis=1))[:, None] / 6
    phi = torch.as_tensor(phi)
    excess = [
        float(net.get_loss(phi, None, X=batch)) - floor.mean()
        for batch, floor in zip((pooled, centred), floors)
    ]
    np.testing.assert_allclose(*excess, rtol=1e-4)
    assert excess[0] >= 0


@pytest.mark.parametrize("source", ["pool", "fresh"])
def test_every_source_trains_an_efficient_explainer(data, monkeypatch, source):
    X, X_test = data
    monkeypatch.setattr(_fastshap, "MAX_ENUMERATED_PLAYERS", 3)
    if source == "fresh":
        monkeypatch.setattr(_fastshap, "MAX_POOL_BYTES", 0)
    explainer = FastSHAPExplainer(
        additive_model, value_function="baseline", random_state=0, **TINY
    ).fit(X)
    assert explainer.plan_.source == source
    exp = explainer.explain(X_test)
    np.testing.assert_allclose(
        exp.base_values + exp.values.sum(axis=1), additive_model(X_test), atol=1e-9
    )


def test_validation_floor_is_the_loss_of_the_shapley_value():
    """On every coalition the least efficient loss is the exact Shapley value's;
    on sampled ones it is the constrained least-squares fit's."""
    rng = np.random.default_rng(0)
    X, baseline = rng.normal(size=(3, 4)), rng.normal(size=4)
    game = BaselineGame(three_way_model, baseline)
    kernel = _kernel_coalitions(4)
    empty = np.full((3, 1), three_way_model(baseline[None])[0])
    cross, _ = game.kernel_statistics(X, empty, *kernel)
    total = three_way_model(X)[:, None] - empty
    gram = kernel_gram(*kernel)
    target = np.linalg.solve(gram, cross)
    floor = _loss_floor({"total": total, "target": target}, gram)
    phi = exact_shapley(game, X).values.reshape(3, 4, 1)
    at_phi = np.einsum("ndk,de,nek->nk", phi - target, gram, phi - target)
    np.testing.assert_allclose(floor, at_phi[:, 0], rtol=1e-5, atol=1e-9)
    masks = rng.random((3, 20, 4)) < 0.5
    values = game(X, masks) - empty[:, None]
    floor = _loss_floor({"total": total, "masks": masks, "values": values}, None)
    for row in range(3):  # any other efficient φ does no better
        other = rng.normal(size=4)
        other += (total[row, 0] - other.sum()) / 4
        residual = values[row, :, 0] - masks[row] @ other
        assert floor[row] <= np.mean(residual**2) + 1e-6


def test_too_few_rows_raise(data):
    X, _ = data
    with pytest.raises(ValueError, match="at least 10 rows"):
        FastSHAPExplainer(additive_model, value_function="baseline", **TINY).fit(X[:3])


def test_surrogate_is_shared_by_explainers_of_the_same_model_and_data():
    """A search compares explainers on one game: the surrogate does not depend on
    the explainer's network parameters and is fitted once."""
    X, y = make_classification(n_samples=120, n_features=4, random_state=0)
    model = FrozenEstimator(LogisticRegression().fit(X, y))
    kwargs = dict(surrogate_params={"max_epochs": 3}, random_state=0, **TINY)
    a = FastSHAPExplainer(model, **kwargs).fit(X)
    b = FastSHAPExplainer(model, **{**kwargs, "hidden_layer_sizes": (8,)}).fit(X)
    assert a.surrogate_ is b.surrogate_
    c = FastSHAPExplainer(model, **kwargs).fit(X[:100])
    assert c.surrogate_ is not a.surrogate_


def test_epochs_draw_new_copies_while_the_budget_lasts(data, monkeypatch):
    """Exact targets: each epoch trains on new augmented copies, as many sets as
    the budget pays for, reproducibly under random_state."""
    X, X_test = data
    model = GradientBoostingRegressor(n_estimators=5, max_depth=2, random_state=0)
    model.fit(X, additive_model(X))
    drawn = []
    copies = FastSHAPExplainer._copies

    def counted(self, *args):
        data = copies(self, *args)
        drawn.append(data["x"])
        return data

    monkeypatch.setattr(FastSHAPExplainer, "_copies", counted)
    params = {**TINY, "max_epochs": 3, "value_function": "baseline"}
    params.update(random_state=0, max_evaluations=10**9)
    explainer = FastSHAPExplainer(model, **params).fit(X)
    assert explainer.plan_.source == "exact" and explainer.plan_.n_copies > 1
    assert explainer.plan_.n_draws > 3
    assert len(drawn) == 3  # one set an epoch
    first = len(drawn[0]) // explainer.plan_.n_copies  # the rows, then copies
    np.testing.assert_array_equal(drawn[0][:first], drawn[1][:first])
    assert not np.allclose(drawn[0][first:], drawn[1][first:])
    again = FastSHAPExplainer(model, **params).fit(X)
    np.testing.assert_array_equal(explainer.transform(X_test), again.transform(X_test))
    # a budget for one set: the same copies every epoch
    drawn.clear()
    explainer.set_params(max_evaluations=len(X) * 100).fit(X)
    assert explainer.plan_.n_draws == 1 and len(drawn) == 1
    # draws that would take long are announced
    monkeypatch.setattr(_fastshap, "SLOW_TARGETS", 0.0)
    with pytest.warns(UserWarning) as record:  # the targets' warning too
        again.fit(X)
    assert any("new copies of the rows for 2 epochs" in str(w.message) for w in record)


def test_weight_average_is_validated_and_kept():
    """The net ends with the exponential moving average of its steps' weights, and
    its validation losses are the average's."""
    from skorch import NeuralNetRegressor
    from skorch.callbacks import Callback
    from skorch.dataset import Dataset
    from skorch.helper import predefined_split

    from sklearn_shapley.amortized._training import WeightAverage

    class Steps(Callback):
        def on_train_begin(self, net, **kwargs):
            self.weights = [net.module_.weight.detach().clone()]

        def on_batch_end(self, net, training=False, **kwargs):
            if training:
                self.weights.append(net.module_.weight.detach().clone())

    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 3)).astype(np.float32)
    y = (X @ np.array([1.0, -2.0, 0.5], np.float32))[:, None]
    steps = Steps()
    torch.manual_seed(0)
    net = NeuralNetRegressor(
        torch.nn.Linear(3, 1, bias=False),
        lr=0.05,
        batch_size=16,
        max_epochs=3,
        train_split=predefined_split(Dataset(X[:16], y[:16])),
        callbacks=[WeightAverage(epochs=2), steps],
    ).fit(X, y)
    decay = 1 - 1 / (2 * 64 / 16)
    average = steps.weights[0]
    for w in steps.weights[1:]:
        average = average + (1 - decay) * (w - average)
    final = net.module_.weight.detach()
    torch.testing.assert_close(final, average)
    assert not torch.allclose(final, steps.weights[-1])  # not the last step's
    with torch.no_grad():
        loss = torch.mean(
            (net.module_(torch.as_tensor(X[:16])) - torch.as_tensor(y[:16])) ** 2
        )
    assert net.history[-1, "valid_loss"] == pytest.approx(float(loss), rel=1e-5)
