"""Exact enumeration, KernelSHAP and permutation sampling against oracles and axioms."""

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestRegressor
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LinearRegression, LogisticRegression

from sklearn_shapley import (
    ExactExplainer,
    KernelExplainer,
    PermutationExplainer,
    exact_shapley,
    kernel_shap,
    permutation_shapley,
)
from sklearn_shapley.games import BaselineGame, Game, MarginalGame
from sklearn_shapley.sampling import CoalitionSampler, all_coalitions


class TableGame(Game):
    """A game given by a table of values over all coalitions (same for every row)."""

    def __init__(self, table):
        self.table = np.asarray(table, dtype=float).reshape(len(table), -1)
        self.n_players = int(np.log2(len(self.table)))
        self.n_outputs = self.table.shape[1]

    def __call__(self, X, masks):
        masks = np.asarray(masks)
        codes = (masks.astype(np.int64) << np.arange(self.n_players)).sum(axis=-1)
        if codes.ndim == 1:
            codes = np.broadcast_to(codes, (len(X), len(codes)))
        return self.table[codes]


def _random_game(d, rng):
    table = rng.normal(size=2**d)
    table[0] = 0.0
    return TableGame(table)


def test_linear_model_baseline_game_is_w_times_deviation():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 7))
    model = LinearRegression().fit(X, X @ rng.normal(size=7) + 1.0)
    baseline = rng.normal(size=7)
    result = exact_shapley(BaselineGame(model, baseline), X[:9])
    expected = model.coef_ * (X[:9] - baseline)
    np.testing.assert_allclose(result.values[:, :, 0], expected, atol=1e-12)
    assert np.all(result.n_evaluations == 2**7)


def test_baseline_game_grand_and_empty_are_its_values():
    """``v(full)`` from one model call per row, ``v(∅)`` once: the game's own
    values on the grand and the empty coalition, ``v(∅)`` the same for every row
    (bit for bit, whatever rounding the model's batches have)."""
    X, y = make_classification(80, 5, random_state=0)
    model = LogisticRegression().fit(X, y)
    game = BaselineGame(model, X[0], link="logit", players=[[0, 1], [2], [3, 4]])
    full, empty = game.grand_and_empty(X[10:40])
    masks = np.array([[True] * 3, [False] * 3])
    values = game(X[10:40], masks)
    np.testing.assert_allclose(full, values[:, 0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(empty, values[:, 1], rtol=0, atol=1e-12)
    assert (empty == empty[:1]).all() and full.shape == empty.shape == (30, 2)


def test_marginal_game_of_linear_model_uses_background_mean():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(40, 4))
    model = LinearRegression().fit(X, X @ np.array([1.0, -2.0, 0.5, 3.0]))
    background = rng.normal(size=(25, 4))
    result = exact_shapley(MarginalGame(model, background), X[:5])
    expected = model.coef_ * (X[:5] - background.mean(axis=0))
    np.testing.assert_allclose(result.values[:, :, 0], expected, atol=1e-12)


@pytest.mark.parametrize("d", [1, 2, 5, 8])
def test_axioms_on_random_games(d):
    rng = np.random.default_rng(d)
    game = _random_game(d, rng)
    X = np.zeros((1, 1))
    phi = exact_shapley(game, X).values[0, :, 0]
    # Efficiency.
    assert np.isclose(phi.sum(), game.table[-1, 0] - game.table[0, 0], atol=1e-12)
    if d < 2:
        return
    # Symmetry: a game symmetric in players 0 and 1 gives them equal values.
    masks = all_coalitions(d)
    swapped = masks.copy()
    swapped[:, [0, 1]] = swapped[:, [1, 0]]
    codes = (swapped.astype(int) << np.arange(d)).sum(axis=1)
    symmetric = TableGame(game.table[:, 0] + game.table[codes, 0])
    phi_sym = exact_shapley(symmetric, X).values[0, :, 0]
    assert np.isclose(phi_sym[0], phi_sym[1], atol=1e-12)
    # Null player: a game that ignores player 0 gives it 0.
    without0 = masks.copy()
    without0[:, 0] = False
    codes0 = (without0.astype(int) << np.arange(d)).sum(axis=1)
    null = TableGame(game.table[codes0, 0])
    assert abs(exact_shapley(null, X).values[0, 0, 0]) < 1e-12


def test_exact_refuses_too_many_players():
    game = BaselineGame(lambda X: X.sum(axis=1), np.zeros(25))
    with pytest.raises(ValueError, match="exceeds the limit"):
        exact_shapley(game, np.zeros((1, 25)))


def test_kernel_shap_converges_to_exact_on_10_feature_model():
    X, y = make_classification(n_samples=300, n_features=10, random_state=0)
    model = LogisticRegression().fit(X, y)
    game = MarginalGame(model, X[:30], link="logit")
    truth = exact_shapley(game, X[:4]).values
    coarse = kernel_shap(
        game, X[:4], max_evaluations=200, random_state=0, convergence_threshold=None
    )
    fine = kernel_shap(
        game, X[:4], max_evaluations=4000, random_state=0, convergence_threshold=None
    )
    err_coarse = np.abs(coarse.values - truth).max()
    err_fine = np.abs(fine.values - truth).max()
    # LogisticRegression with logit link is additive: paired KernelSHAP is exact here.
    assert err_fine < 1e-8 and err_coarse < 1e-8


def test_kernel_shap_converges_on_nonadditive_model():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(400, 10))
    y = X[:, 0] * X[:, 1] + np.sin(X[:, 2]) + X[:, 3] ** 2
    model = RandomForestRegressor(n_estimators=10, max_depth=6, random_state=0).fit(
        X, y
    )
    game = BaselineGame(model, X.mean(axis=0))
    truth = exact_shapley(game, X[:3]).values
    errors = []
    for budget in (100, 1000, 8000):
        est = kernel_shap(
            game,
            X[:3],
            max_evaluations=budget,
            random_state=1,
            convergence_threshold=None,
        )
        errors.append(np.linalg.norm(est.values - truth, axis=1).mean())
        # Efficiency holds exactly at every budget.
        np.testing.assert_allclose(
            est.values.sum(axis=1),
            game(X[:3], np.ones((1, 10), bool))[:, 0] - est.base_values,
            atol=1e-9,
        )
    assert errors[2] < errors[0] / 4
    assert errors[2] < 0.05 * np.abs(truth).sum(axis=1).mean()


def test_kernel_shap_convergence_detection_stops_early():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(100, 6))
    model = RandomForestRegressor(n_estimators=5, random_state=0).fit(
        X, X[:, 0] * X[:, 1]
    )
    game = BaselineGame(model, X.mean(axis=0))
    est = kernel_shap(
        game, X[:5], max_evaluations=100000, random_state=0, convergence_threshold=0.01
    )
    assert np.all(est.n_evaluations < 100000)
    truth = exact_shapley(game, X[:5]).values
    spread = truth.max(axis=1) - truth.min(axis=1)
    assert np.all(np.abs(est.values - truth).max(axis=1) < 0.1 * spread)


def test_permutation_sampling_converges_and_is_efficient():
    rng = np.random.default_rng(5)
    game = _random_game(6, rng)
    X = np.zeros((2, 1))
    truth = exact_shapley(game, X).values
    est = permutation_shapley(game, X, max_evaluations=20000, random_state=0)
    np.testing.assert_allclose(
        est.values.sum(axis=1)[:, 0], game.table[-1, 0] - game.table[0, 0]
    )
    assert np.abs(est.values - truth).max() < 0.05


@pytest.mark.parametrize("Explainer", [KernelExplainer, PermutationExplainer])
def test_row_results_do_not_depend_on_batch(Explainer):
    rng = np.random.default_rng(6)
    X = rng.normal(size=(60, 5))
    model = FrozenEstimator(
        RandomForestRegressor(n_estimators=4, random_state=0).fit(X, X[:, 0] * X[:, 2])
    )
    explainer = Explainer(model, random_state=7, max_evaluations=100).fit(X)
    all_rows = explainer.transform(X[:10])
    np.testing.assert_array_equal(explainer.transform(X[3:5]), all_rows[3:5])
    again = (
        Explainer(model, random_state=7, max_evaluations=100).fit(X).transform(X[:10])
    )
    np.testing.assert_array_equal(again, all_rows)


def test_classifier_outputs_and_output_selection():
    X, y = make_classification(
        n_samples=200, n_features=5, n_informative=3, n_classes=3, random_state=0
    )
    model = FrozenEstimator(LogisticRegression().fit(X, y))
    explainer = ExactExplainer(model).fit(X)
    exp = explainer.explain(X[:6])
    assert exp.values.shape == (6, 5, 3)
    assert exp.output_names == ["0", "1", "2"]
    proba = model.predict_proba(X[:6])
    np.testing.assert_allclose(
        exp.base_values + exp.values.sum(axis=1), proba, atol=1e-12
    )
    predicted = model.predict(X[:6])
    np.testing.assert_allclose(
        explainer.transform(X[:6]), exp.values[np.arange(6), :, predicted]
    )
    explainer.set_params(output=2)
    np.testing.assert_allclose(explainer.transform(X[:6]), exp.values[:, :, 2])
    explainer.set_params(output="1")
    np.testing.assert_allclose(explainer.transform(X[:6]), exp.values[:, :, 1])
    explainer.set_params(output="nope")
    with pytest.raises(ValueError, match="output names"):
        explainer.transform(X[:6])


def test_binary_classifier_transform_is_positive_class():
    X, y = make_classification(n_samples=100, n_features=4, random_state=1)
    explainer = ExactExplainer(LogisticRegression(), link="logit").fit(X, y)
    exp = explainer.explain(X[:3])
    np.testing.assert_allclose(explainer.transform(X[:3]), exp.values[:, :, 1])
    # Under the logit link, the two classes' attributions are opposite.
    np.testing.assert_allclose(exp.values[:, :, 0], -exp.values[:, :, 1], atol=1e-9)


def test_players_group_columns():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(30, 5))
    model = LinearRegression().fit(X, X @ np.arange(1.0, 6.0))
    explainer = ExactExplainer(
        FrozenEstimator(model), players=[[0, 1], [2], [3, 4]]
    ).fit(X)
    phi = explainer.transform(X[:4])
    per_feature = model.coef_ * (X[:4] - X.mean(axis=0))
    expected = np.stack(
        [per_feature[:, :2].sum(1), per_feature[:, 2], per_feature[:, 3:].sum(1)],
        axis=1,
    )
    np.testing.assert_allclose(phi, expected, atol=1e-12)
    assert list(explainer.get_feature_names_out()) == ["x0+x1", "x2", "x3+x4"]
    with pytest.raises(ValueError, match="exactly one group"):
        ExactExplainer(FrozenEstimator(model), players=[[0, 1], [1, 2, 3, 4]]).fit(X)


def test_callable_model_and_errors():
    X = np.random.default_rng(0).normal(size=(20, 3))
    explainer = ExactExplainer(lambda Z: Z[:, 0] * Z[:, 1]).fit(X)
    assert explainer.transform(X[:2]).shape == (2, 3)
    with pytest.raises(ValueError, match="requires y"):
        ExactExplainer(LinearRegression()).fit(X)
    with pytest.raises(TypeError, match="cannot explain"):
        ExactExplainer(42).fit(X)
    with pytest.raises(ValueError, match="value_function"):
        ExactExplainer(lambda Z: Z.sum(1), value_function="nope").fit(X)
    with pytest.raises(ValueError, match="NaN|infinity"):
        ExactExplainer(lambda Z: Z.sum(1)).fit(X).transform(np.full((1, 3), np.nan))


def test_samplers():
    sampler = CoalitionSampler(6, "shapley", paired=True)
    masks = sampler.sample(1000, 0)
    assert masks.shape == (1000, 6)
    np.testing.assert_array_equal(masks[0::2], ~masks[1::2])
    sizes = masks.sum(axis=1)
    assert sizes.min() >= 1 and sizes.max() <= 5
    uniform = CoalitionSampler(6, "uniform", paired=False).sample(3000, 0).sum(axis=1)
    counts = np.bincount(uniform, minlength=7) / 3000
    np.testing.assert_allclose(counts, 1 / 7, atol=0.03)


def test_explanation_to_shap():
    shap = pytest.importorskip("shap")
    X = np.random.default_rng(0).normal(size=(20, 3))
    exp = ExactExplainer(lambda Z: Z.sum(1)).fit(X).explain(X[:4])
    converted = exp.to_shap()
    assert isinstance(converted, shap.Explanation)
    np.testing.assert_array_equal(converted.values, exp.values)
    assert exp[1:3].values.shape == (2, 3)


def _interacting_model(Z):
    return Z[:, 0] * Z[:, 1] + np.sin(Z[:, 2]) + Z[:, 3] ** 2 - Z[:, 4]


def _fast_form_models():
    from sklearn.ensemble import GradientBoostingRegressor
    from sklearn.neural_network import MLPRegressor

    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 5))
    y = X[:, 0] * X[:, 1] + np.sin(X[:, 2]) + X[:, 3]
    gb = GradientBoostingRegressor(n_estimators=20, max_depth=3, random_state=0)
    mlp = MLPRegressor(hidden_layer_sizes=(8,), max_iter=300, random_state=0)
    return X, [gb.fit(X, y), mlp.fit(X, y)]


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize(
    "Explainer", [ExactExplainer, KernelExplainer, PermutationExplainer]
)
def test_marginal_game_resolves_to_its_fast_exact_form(Explainer):
    """Every game explainer resolves a tree ensemble's or a one-hidden-layer MLP's
    marginal game to its fast exact form, with the generic game's values."""
    from sklearn_shapley.mlp import MLPMarginalGame
    from sklearn_shapley.tree import TreeMarginalGame

    X, models = _fast_form_models()
    for model, form in zip(models, (TreeMarginalGame, MLPMarginalGame)):
        kwargs = dict(value_function="marginal", n_background=30, random_state=0)
        explainer = Explainer(FrozenEstimator(model), **kwargs).fit(X)
        assert isinstance(explainer.game_, form)
        generic = MarginalGame(FrozenEstimator(model), explainer.game_.background)
        plain = Explainer(value_function=generic, random_state=0).fit(X)
        np.testing.assert_allclose(
            explainer.transform(X[:4]), plain.transform(X[:4]), atol=1e-9
        )
