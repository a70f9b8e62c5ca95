"""MLPMarginalGame: a one-hidden-layer MLP's marginal game from its weights, against
MarginalGame (the model evaluated on every hybrid row)."""

import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.frozen import FrozenEstimator
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import (
    MaxAbsScaler,
    MinMaxScaler,
    PolynomialFeatures,
    StandardScaler,
)

from sklearn_shapley import exact_shapley
from sklearn_shapley.amortized import FastSHAPExplainer
from sklearn_shapley.games import BaselineGame, MarginalGame, first_last_masks
from sklearn_shapley.mlp import MLPMarginalGame, _marginal, mlp_marginal_game
from sklearn_shapley.mlp import _kernel as portable_kernel
from sklearn_shapley.sampling import all_coalitions


def _data(n=200, d=5, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) * [1.0, 3.0, 0.5, 10.0, 1.0][:d] + 2.0
    y = X[:, 0] * X[:, 1] + np.sin(X[:, 2]) + 0.1 * X[:, 3]
    return X, y


def _fit(model, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(X, y)


def _check_same_game(model, X, players=None, background=None):
    background = X[:37] if background is None else background
    game = MarginalGame(model, background, players=players)
    mlp_game = mlp_marginal_game(game, X)
    assert isinstance(mlp_game, MLPMarginalGame)
    masks = all_coalitions(game.n_players)
    rows = X[50:83]  # more than one block of rows in the kernel
    expected = game(rows, masks)
    got = mlp_game(rows, masks)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-10)
    # v(full) from one evaluation a row, v(∅) once: the game's and the model's
    for mine, theirs in zip(mlp_game.grand_and_empty(rows), game.grand_and_empty(rows)):
        np.testing.assert_allclose(mine, theirs, rtol=1e-10, atol=1e-10)
    # over one baseline row, the first and last values from one step per player
    baseline = BaselineGame(model, background[0], players=players)
    proxy = baseline.proxy()
    assert isinstance(proxy, MLPMarginalGame) and proxy is baseline.proxy()
    assert proxy.first_last_cost < 2 * game.n_players + 2
    np.testing.assert_allclose(
        proxy.first_last_values(np.asfortranarray(rows)),  # any memory layout
        baseline(rows, first_last_masks(game.n_players)),
        rtol=1e-10,
        atol=1e-10,
    )
    return game, mlp_game


@pytest.mark.parametrize("activation", ["relu", "tanh", "logistic", "identity"])
@pytest.mark.parametrize(
    "scaler", [None, StandardScaler(), MinMaxScaler(), MaxAbsScaler()]
)
def test_regressor_matches_the_model_game(activation, scaler):
    X, y = _data()
    mlp = MLPRegressor(
        hidden_layer_sizes=(13,), activation=activation, max_iter=50, random_state=0
    )
    model = mlp if scaler is None else make_pipeline(scaler, mlp)
    _check_same_game(FrozenEstimator(_fit(model, X, y)), X)


def test_chained_scalers_and_passthrough():
    X, y = _data()
    model = make_pipeline(
        StandardScaler(with_mean=False),
        "passthrough",
        MinMaxScaler(),
        MLPRegressor(hidden_layer_sizes=(9,), max_iter=50, random_state=0),
    )
    _check_same_game(_fit(model, X, y), X)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_classifier_probabilities_match(n_classes):
    X, y = _data()
    labels = np.digitize(y, np.quantile(y, np.linspace(0, 1, n_classes + 1)[1:-1]))
    model = make_pipeline(
        StandardScaler(),
        MLPClassifier(hidden_layer_sizes=(11,), max_iter=100, random_state=0),
    )
    game, mlp_game = _check_same_game(_fit(model, X, labels), X)
    assert mlp_game.n_outputs == n_classes
    assert mlp_game.output_names == game.output_names


def test_multilabel_and_multi_output_regression():
    X, y = _data()
    Y = np.column_stack([y > 0, y > 2, X[:, 0] > 2]).astype(int)
    _check_same_game(
        _fit(MLPClassifier(hidden_layer_sizes=(7,), max_iter=50, random_state=0), X, Y),
        X,
    )
    Y = np.column_stack([y, X[:, 1]])
    _check_same_game(
        _fit(MLPRegressor(hidden_layer_sizes=(7,), max_iter=50, random_state=0), X, Y),
        X,
    )


def test_players_and_per_row_masks():
    X, y = _data()
    model = _fit(
        MLPRegressor(hidden_layer_sizes=(8,), max_iter=50, random_state=0), X, y
    )
    players = [[0, 3], [1], [2, 4]]
    game, mlp_game = _check_same_game(model, X, players=players)
    rng = np.random.default_rng(1)
    masks = rng.random((6, 5, 3)) < 0.5
    np.testing.assert_allclose(
        mlp_game(X[:6], masks), game(X[:6], masks), rtol=1e-10, atol=1e-10
    )
    assert mlp_game(X[:0], masks[:0]).shape == (0, 5, 1)
    # and its Shapley values are the model game's
    np.testing.assert_allclose(
        exact_shapley(mlp_game, X[:4]).values,
        exact_shapley(game, X[:4]).values,
        atol=1e-9,
    )


def test_any_thread_count_and_either_build_give_the_same_values(monkeypatch):
    X, y = _data()
    model = _fit(
        MLPRegressor(hidden_layer_sizes=(40,), max_iter=50, random_state=0), X, y
    )
    masks = all_coalitions(5)
    game = mlp_marginal_game(MarginalGame(model, X[:30]), X)
    values = game(X[:70], masks)
    one_row = game.with_background(X[:1])
    first_last = one_row.first_last_values(X[:70])
    for n_jobs in (1, 2, 3):
        game.n_jobs = one_row.n_jobs = n_jobs
        np.testing.assert_array_equal(game(X[:70], masks), values)
        np.testing.assert_array_equal(one_row.first_last_values(X[:70]), first_last)
    monkeypatch.setattr(_marginal, "_kernel", portable_kernel)
    np.testing.assert_allclose(game(X[:70], masks), values, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(
        one_row.first_last_values(X[:70]), first_last, rtol=1e-12, atol=1e-12
    )


def test_with_background_is_the_same_network_on_other_rows():
    X, y = _data()
    model = _fit(MLPRegressor(hidden_layer_sizes=(8,), max_iter=50), X, y)
    game = mlp_marginal_game(MarginalGame(model, X[:30], players=[[0, 1], [2, 3, 4]]))
    other = game.with_background(X[100:110])
    masks = all_coalitions(2)
    np.testing.assert_allclose(
        other(X[:9], masks),
        MarginalGame(model, X[100:110], players=[[0, 1], [2, 3, 4]])(X[:9], masks),
        rtol=1e-10,
        atol=1e-10,
    )


def test_other_models_and_links_have_none():
    X, y = _data()
    two_layers = _fit(
        MLPRegressor(hidden_layer_sizes=(5, 5), max_iter=50, random_state=0), X, y
    )
    assert mlp_marginal_game(MarginalGame(two_layers, X[:10])) is None
    one_layer = _fit(
        MLPRegressor(hidden_layer_sizes=(5,), max_iter=50, random_state=0), X, y
    )
    assert mlp_marginal_game(MarginalGame(one_layer, X[:10])) is not None
    poly = _fit(
        make_pipeline(
            PolynomialFeatures(), MLPRegressor(hidden_layer_sizes=(5,), max_iter=50)
        ),
        X,
        y,
    )
    assert mlp_marginal_game(MarginalGame(poly, X[:10])) is None
    clipped = _fit(
        make_pipeline(MinMaxScaler(clip=True), MLPRegressor(hidden_layer_sizes=(5,))),
        X,
        y,
    )
    assert mlp_marginal_game(MarginalGame(clipped, X[:10])) is None
    classifier = _fit(MLPClassifier(hidden_layer_sizes=(5,), max_iter=50), X, y > 2)
    assert mlp_marginal_game(MarginalGame(classifier, X[:10], link="logit")) is None
    assert mlp_marginal_game(BaselineGame(one_layer, X[0])) is None
    assert mlp_marginal_game(MarginalGame(lambda Z: Z.sum(axis=1), X[:10])) is None
    # an unfitted model (its predictions fail when the game is made) has none either
    assert mlp_marginal_game(MarginalGame(MLPRegressor(), X[:10])) is None


def test_bad_input_raises():
    X, y = _data()
    model = _fit(
        MLPRegressor(hidden_layer_sizes=(6,), max_iter=50, random_state=0), X, y
    )
    game = mlp_marginal_game(MarginalGame(model, X[:10]))
    with pytest.raises(ValueError, match="shape"):
        game(X[:, :4], np.ones((1, 5), dtype=bool))
    with pytest.raises(ValueError, match="players"):
        game(X, np.ones((1, 4), dtype=bool))
    with pytest.raises(MemoryError, match="fewer rows or coalitions"):
        game(np.zeros((2**20, 5)), np.ones((2**20, 5), dtype=bool))
    weights = (model.coefs_[0], model.intercepts_[0], *model.coefs_[1:])
    weights = (*weights, model.intercepts_[1])
    with pytest.raises(ValueError, match="weights"):
        MLPMarginalGame((weights[0], weights[1][:3], *weights[2:]), X[:10])
    with pytest.raises(ValueError, match="features"):
        MLPMarginalGame(weights, X[:10, :4])
    with pytest.raises(ValueError, match="non-empty"):
        MLPMarginalGame(weights, X[:0])
    with pytest.raises(ValueError, match="activation"):
        MLPMarginalGame(weights, X[:10], activation="softmax")
    with pytest.raises(ValueError, match="output_map"):
        MLPMarginalGame(weights, X[:10], output_map=np.eye(2))


def test_fastshap_trains_on_the_exact_mlp_game():
    """FastSHAP's marginal game of a one-hidden-layer MLP resolves to
    MLPMarginalGame; the network's contributions come from its proxy, the same
    network's game on PROXY_BACKGROUND of the background rows that stand for the
    rest (the nearest to k-means centres)."""
    X, y = _data(n=300, d=4)
    model = _fit(
        MLPRegressor(hidden_layer_sizes=(10,), max_iter=100, random_state=0), X, y
    )
    explainer = FastSHAPExplainer(
        FrozenEstimator(model),
        value_function="marginal",
        n_background=30,
        hidden_layer_sizes=(32,),
        max_epochs=3,
        batch_size=64,
        random_state=0,
    ).fit(X)
    assert isinstance(explainer.game_, MLPMarginalGame)
    assert explainer.plan_.source == "all"
    contributions = explainer._proxy
    assert isinstance(contributions, MLPMarginalGame)
    background = explainer.game_.background
    chosen = contributions.background
    assert 1 < len(chosen) <= MLPMarginalGame.PROXY_BACKGROUND < len(background)
    assert (chosen[:, None] == background[None]).all(axis=2).any(axis=1).all()
    np.testing.assert_array_equal(explainer.game_.proxy().background, chosen)
    # where those cost too much, the baseline game at the background's mean
    cheap = explainer.game_.proxy(max_cost=contributions.first_last_cost - 1)
    np.testing.assert_allclose(
        cheap.background, explainer.game_.background.mean(axis=0)[None]
    )
    assert cheap.first_last_cost < contributions.first_last_cost
    values = explainer.explain(X[:5])
    np.testing.assert_allclose(
        values.values.sum(axis=1) + values.base_values,
        model.predict(X[:5]),
        rtol=1e-6,
    )


def test_proxy_of_a_background_with_repeated_rows_takes_distinct_rows():
    """A background of few distinct rows, each repeated: the proxy's rows are
    those distinct rows, without a k-means warning."""
    X, y = _data()
    model = _fit(MLPRegressor(hidden_layer_sizes=(8,), max_iter=50), X, y)
    game = mlp_marginal_game(MarginalGame(model, np.repeat(X[:5], 10, axis=0)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        proxy = game.proxy()
    np.testing.assert_array_equal(proxy.background, np.unique(X[:5], axis=0))


def test_poisson_regressor_matches():
    X, y = _data()
    model = MLPRegressor(
        loss="poisson", hidden_layer_sizes=(6,), max_iter=50, random_state=0
    )
    game, mlp_game = _check_same_game(_fit(model, X, np.exp(y / 10)), X)
    assert mlp_game.out_activation == "exp"


def test_show_versions_names_the_kernel_build(capsys):
    from sklearn_shapley import show_versions

    assert _marginal.kernel_build() in ("avx2+fma", "portable")
    show_versions()
    assert f"MLP kernel: {_marginal.kernel_build()}" in capsys.readouterr().out
