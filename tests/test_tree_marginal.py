"""TreeMarginalGame: a tree ensemble's marginal game from its leaves, against
MarginalGame (the model evaluated on every hybrid row) and exact enumeration."""

import pickle

import lightgbm
import numpy as np
import pytest
import xgboost
from sklearn.datasets import make_classification
from sklearn.ensemble import (
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import Ridge

from sklearn_shapley import exact_shapley
from sklearn_shapley.amortized import FastSHAPExplainer
from sklearn_shapley.amortized._fastshap import _kernel_coalitions
from sklearn_shapley.amortized._nets import kernel_gram, shapley_kernel_gram
from sklearn_shapley.games import (
    BaselineGame,
    MarginalGame,
    first_last_masks,
    pair_interaction_sums,
    pair_masks,
    resolve_game,
)
from sklearn_shapley.tree import flatten_ensemble
from sklearn_shapley.tree._flat import predict_raw
from sklearn_shapley.tree._marginal import (
    TablesTooLargeError,
    TreeHybridMarginalGame,
    TreeMarginalGame,
    TreeShapleyMarginalGame,
    tree_marginal_game,
)


def _regression(n=240, d=6, seed=0, missing=0.0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = 2 * X[:, 0] + X[:, 1] * X[:, 2] + np.sin(3 * X[:, 3]) + (X[:, 4] > 0)
    if missing:
        X[rng.random(X.shape) < missing] = np.nan
        y = y + np.isnan(X[:, 5])
    return X, y


def _cases():
    X, y = _regression()
    Xn, yn = _regression(seed=1, missing=0.1)
    Xc, yc = make_classification(240, 6, n_informative=4, random_state=0)
    Xk = Xn.copy()
    Xk[:, 4] = np.random.default_rng(2).integers(0, 5, len(Xk))
    return {
        # depth 3: every tree is one table indexed by its decisions
        "gb": (GradientBoostingRegressor(n_estimators=30, random_state=0), X, y, {}),
        # deeper trees: a table per leaf, indexed by its pattern; column groups
        "gb-deep-groups": (
            GradientBoostingRegressor(n_estimators=10, max_depth=5, random_state=0),
            X,
            y,
            {"players": [[0, 1], [2], [3, 4, 5]]},
        ),
        "gb-classifier-logit": (
            GradientBoostingClassifier(n_estimators=20, random_state=0),
            Xc,
            yc,
            {"link": "logit"},
        ),
        "forest-probabilities": (
            RandomForestClassifier(n_estimators=8, max_depth=4, random_state=0),
            Xc,
            yc,
            {},
        ),
        "xgboost-missing": (
            xgboost.XGBRegressor(n_estimators=15, max_depth=4),
            Xn,
            yn,
            {},
        ),
        "lightgbm-classifier-missing": (
            lightgbm.LGBMClassifier(n_estimators=15, num_leaves=12, verbose=-1),
            Xn,
            (yn > np.median(yn)).astype(int),
            {"link": "logit"},
        ),
        "hist-categorical": (
            HistGradientBoostingRegressor(max_iter=10, categorical_features=[4]),
            Xk,
            yn + Xk[:, 4],
            {},
        ),
    }


CASES = _cases()


@pytest.fixture(scope="module", params=sorted(CASES))
def games(request):
    model, X, y, kwargs = CASES[request.param]
    model.fit(X, y)
    marginal = MarginalGame(model, X[:25], **kwargs)
    tree = tree_marginal_game(marginal, X)
    assert isinstance(tree, TreeMarginalGame), request.param
    # XGBoost and LightGBM predict in float32 (their probabilities' logits: ~1e-5)
    atol = 1e-10 if isinstance(model, (GradientBoostingRegressor,)) else 5e-5
    return marginal, tree, X[100:112], atol


def test_values_are_the_marginal_games(games):
    marginal, tree, X, atol = games
    rng = np.random.default_rng(0)
    shared = rng.random((30, marginal.n_players)) < 0.5
    per_row = rng.random((len(X), 5, marginal.n_players)) < 0.5
    for masks in (shared, per_row):
        np.testing.assert_allclose(tree(X, masks), marginal(X, masks), atol=atol)
    queries = first_last_masks(marginal.n_players)
    np.testing.assert_allclose(
        tree.first_last_values(X), marginal(X, queries), atol=atol
    )
    for mine, theirs in zip(tree.grand_and_empty(X), marginal.grand_and_empty(X)):
        np.testing.assert_allclose(mine, theirs, atol=atol)


def test_pair_interaction_sums_are_the_marginal_games(games):
    """The players' pairwise interactions summed at the empty and the full
    coalition from one more look-up per unit: the generic game's; the generic
    path where those tables would be too large."""
    marginal, tree, X, atol = games
    d = marginal.n_players
    expected = pair_interaction_sums(
        marginal(X, first_last_masks(d)), marginal(X, pair_masks(d))
    )
    values, sums = tree.contribution_values(X, pairs=True)
    np.testing.assert_allclose(values, tree.first_last_values(X), atol=1e-12)
    for mine, theirs in zip(sums, expected):
        assert mine.shape == (len(X), d, marginal.n_outputs)
        np.testing.assert_allclose(mine, theirs, atol=20 * atol)
    assert tree.pair_cost == tree.first_last_cost
    small = pickle.loads(pickle.dumps(tree))
    small.max_table_entries = tree._pair_entries - 1
    assert small.pair_cost == d * (d - 1) * small.evaluation_cost
    for mine, theirs in zip(small.contribution_values(X, pairs=True)[1], sums):
        np.testing.assert_allclose(mine, theirs, atol=1e-10)


def test_shapley_values_are_exact(games):
    marginal, tree, X, atol = games
    exact = exact_shapley(marginal, X).values
    exact = exact if exact.ndim == 3 else exact[..., None]
    np.testing.assert_allclose(tree.shapley_values(X), exact, atol=atol)


def test_exact_targets_minimise_the_expected_loss(games):
    """FastSHAP's "exact" targets, the tree game's Shapley values, minimise the
    loss over every coalition among efficient φ: its gradient there is along 1."""
    marginal, tree, X, atol = games
    masks, weights = _kernel_coalitions(marginal.n_players)
    empty = np.broadcast_to(
        marginal.grand_and_empty(X[:1])[1], (len(X), tree.n_outputs)
    )
    cross, _ = marginal.kernel_statistics(X, empty, masks, weights)
    gram = shapley_kernel_gram(marginal.n_players)
    np.testing.assert_allclose(gram, kernel_gram(masks, weights), atol=1e-15)
    gradient = np.einsum("de,nek->ndk", gram, tree.shapley_values(X)) - cross
    along_ones = gradient - gradient.mean(axis=1, keepdims=True)
    np.testing.assert_allclose(
        along_ones, 0, atol=atol + 1e-8 * (1 + np.abs(cross).max())
    )


def test_unsupported_games_give_none():
    X, y = _regression()
    Xc, yc = make_classification(240, 6, n_informative=4, n_classes=3, random_state=0)
    gb = GradientBoostingRegressor(n_estimators=5, random_state=0).fit(X, y)
    multiclass = GradientBoostingClassifier(n_estimators=5, random_state=0).fit(Xc, yc)
    unsupported = [
        MarginalGame(Ridge().fit(X, y), X[:10]),  # not a tree ensemble
        MarginalGame(lambda Z: Z[:, :1], X[:10]),  # a callable
        MarginalGame(gb, X[:10], link=np.tanh),  # a callable link
    ]
    for game in unsupported:
        assert tree_marginal_game(game, X) is None
    # probabilities, not the raw sum: the model's values from the trees' paths
    for link in ("identity", "log_softmax"):
        game = MarginalGame(multiclass, Xc[:10], link=link)
        assert isinstance(tree_marginal_game(game, X), TreeHybridMarginalGame)
        assert isinstance(
            tree_marginal_game(game, X, tables=False), TreeHybridMarginalGame
        )
    assert tree_marginal_game(MarginalGame(FrozenEstimator(gb), X[:10])) is not None


def _hybrid_cases():
    X, y = _regression(seed=1, missing=0.1)
    y3 = np.digitize(y, np.quantile(y, [1 / 3, 2 / 3]))
    Xk = X.copy()
    Xk[:, 4] = np.random.default_rng(2).integers(0, 5, len(Xk))
    return {
        # depth 3: every tree's leaf from its decision pattern; column groups
        "gb-softmax-groups": (
            GradientBoostingClassifier(n_estimators=10, random_state=0),
            np.nan_to_num(X),
            y3,
            {"players": [[0, 1], [2], [3, 4, 5]]},
        ),
        "gb-sigmoid": (
            GradientBoostingClassifier(n_estimators=10, max_depth=2, random_state=0),
            np.nan_to_num(X),
            y3 == 2,
            {},
        ),
        # 30 leaves a tree: walked; missing values and a categorical feature
        "hist-softmax-categorical": (
            HistGradientBoostingClassifier(max_iter=5, categorical_features=[4]),
            Xk,
            y3,
            {"link": "log_softmax"},
        ),
        "forest-logit": (
            RandomForestClassifier(n_estimators=5, max_depth=5, random_state=0),
            np.nan_to_num(X),
            y3 == 1,
            {"link": "logit"},
        ),
        # small trees that add to every output
        "forest-depth3-log": (
            RandomForestClassifier(n_estimators=5, max_depth=3, random_state=0),
            np.nan_to_num(X),
            y3,
            {"link": "log"},
        ),
        "xgboost-softprob-missing": (
            xgboost.XGBClassifier(n_estimators=8, max_depth=4),
            X,
            y3,
            {},
        ),
        "lightgbm-multiclass-missing": (
            lightgbm.LGBMClassifier(n_estimators=8, num_leaves=6, verbose=-1),
            X,
            y3,
            {},
        ),
    }


@pytest.mark.parametrize("case", sorted(_hybrid_cases()))
def test_hybrid_game_is_the_models_marginal_game(case):
    """A classifier's probabilities from the trees' paths on the hybrid rows: the
    model's own values, on shared and per-row coalitions, for any thread count;
    over one background row (a baseline game) too."""
    from threadpoolctl import threadpool_limits

    model, X, y, kwargs = _hybrid_cases()[case]
    model.fit(X, y)
    rng = np.random.default_rng(0)
    rows = X[100:110]
    # XGBoost and LightGBM predict in float32
    atol = 1e-12 if "xgboost" not in case and "lightgbm" not in case else 2e-6
    for background in (X[:20], X[3:4]):
        marginal = MarginalGame(model, background, **kwargs)
        hybrid = tree_marginal_game(marginal, X)
        assert isinstance(hybrid, TreeHybridMarginalGame)
        shared = rng.random((12, marginal.n_players)) < 0.5
        per_row = rng.random((len(rows), 6, marginal.n_players)) < 0.5
        for masks in (shared, per_row):
            values = hybrid(rows, masks)
            np.testing.assert_allclose(values, marginal(rows, masks), rtol=0, atol=atol)
            with threadpool_limits(1, "openmp"):
                np.testing.assert_array_equal(hybrid(rows, masks), values)
        assert hybrid.n_outputs == marginal.n_outputs == len(np.unique(y))
    np.testing.assert_array_equal(
        pickle.loads(pickle.dumps(hybrid))(rows, shared), hybrid(rows, shared)
    )


@pytest.mark.parametrize("case", sorted(_hybrid_cases()))
def test_first_and_last_values_over_one_row_are_the_models(case):
    """Against one baseline row (with missing values where the data has them), the
    players' singletons and leave-one-outs from a few walks per tree: the model's
    own values on those hybrid rows, bit-identical for any thread count."""
    from threadpoolctl import threadpool_limits

    model, X, y, kwargs = _hybrid_cases()[case]
    model.fit(X, y)
    baseline = BaselineGame(model, X[3], **kwargs)
    proxy = resolve_game(baseline, X).proxy()
    assert isinstance(proxy, TreeHybridMarginalGame)
    assert proxy.first_last_cost < 2 * baseline.n_players + 2
    rows = X[100:130]
    values = proxy.first_last_values(rows)
    masks = first_last_masks(baseline.n_players)
    atol = 1e-12 if "xgboost" not in case and "lightgbm" not in case else 2e-6
    np.testing.assert_allclose(values, baseline(rows, masks), rtol=0, atol=atol)
    np.testing.assert_allclose(values, proxy(rows, masks), rtol=0, atol=1e-12)
    with threadpool_limits(1, "openmp"):
        np.testing.assert_array_equal(proxy.first_last_values(rows), values)
    assert proxy.first_last_values(rows[:0]).shape == (0, *values.shape[1:])


@pytest.mark.parametrize("case", sorted(_hybrid_cases()))
def test_pair_values_over_one_row_are_the_models(case):
    """Against one baseline row, the game on every pair of players and every pair's
    complement from the pairwise interactions in small trees (the hybrid values
    for larger ones): the model's own values, bit-identical for any thread
    count."""
    from threadpoolctl import threadpool_limits

    model, X, y, kwargs = _hybrid_cases()[case]
    model.fit(X, y)
    baseline = BaselineGame(model, X[3], **kwargs)
    proxy = resolve_game(baseline, X).proxy()
    rows = X[100:130]
    values = proxy.pair_values(rows)
    masks = pair_masks(baseline.n_players)
    atol = 1e-12 if "xgboost" not in case and "lightgbm" not in case else 2e-6
    np.testing.assert_allclose(values, baseline(rows, masks), rtol=0, atol=atol)
    np.testing.assert_allclose(values, proxy(rows, masks), rtol=0, atol=1e-12)
    with threadpool_limits(1, "openmp"):
        np.testing.assert_array_equal(proxy.pair_values(rows), values)
    assert proxy.pair_values(rows[:0]).shape == (0, *values.shape[1:])
    # their sums per player, from the kernel's sums when the values are raw sums
    first_last, sums = proxy.contribution_values(rows, pairs=True)
    expected = pair_interaction_sums(
        baseline(rows, first_last_masks(len(masks[0]))), values
    )
    for mine, theirs in zip(sums, expected):
        np.testing.assert_allclose(mine, theirs, rtol=0, atol=10 * atol)
    with threadpool_limits(1, "openmp"):
        for mine, again in zip(sums, proxy.contribution_values(rows, pairs=True)[1]):
            np.testing.assert_array_equal(again, mine)


@pytest.mark.parametrize("kind", ["regressor", "multi-output", "log-odds"])
@pytest.mark.parametrize("depth", [3, 6])
def test_linear_pair_sums_over_one_row_are_summed_in_the_kernel(kind, depth):
    """Where the values are the raw sums (a regressor's), the players' pair
    interaction sums come from the kernel's sums (a few look-ups or walks per
    tree, nothing per pair value): the model's, for trees adding to one output
    or to all, small enough for look-ups or walked. A binary classifier's
    log-odds go through its pair values (the logit link clips probabilities)."""
    X, y = _regression(seed=1)
    link, atol = "identity", 1e-12
    if kind == "multi-output":
        model = RandomForestRegressor(n_estimators=6, max_depth=depth, random_state=0)
        y = np.stack([y, X[:, 0] * X[:, 3]], axis=1)
    elif kind == "log-odds":  # confident: the link clips some probabilities
        model = GradientBoostingClassifier(
            n_estimators=60, learning_rate=1.0, max_depth=depth, random_state=0
        )
        y, link, atol = y > np.median(y), "logit", 1e-9
    else:
        model = GradientBoostingRegressor(
            n_estimators=20, max_depth=depth, random_state=0
        )
    players = [[0, 1], [2], [3], [4, 5]]
    baseline = BaselineGame(model.fit(X, y), X[3], players=players, link=link)
    proxy = resolve_game(baseline, X).proxy()
    assert isinstance(proxy, TreeHybridMarginalGame)
    d = len(players)
    assert (proxy.pair_cost < d * (d - 1)) == (kind != "log-odds")
    rows = X[100:130]
    expected = pair_interaction_sums(
        baseline(rows, first_last_masks(d)), baseline(rows, pair_masks(d))
    )
    first_last, sums = proxy.contribution_values(rows, pairs=True)
    np.testing.assert_allclose(first_last, proxy.first_last_values(rows), atol=0)
    for mine, theirs in zip(sums, expected):
        np.testing.assert_allclose(mine, theirs, rtol=0, atol=atol)
        assert np.abs(theirs).max() > 0.1
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, "openmp"):
        for mine, again in zip(sums, proxy.contribution_values(rows, pairs=True)[1]):
            np.testing.assert_array_equal(again, mine)


def test_the_proxy_of_a_tree_game_is_a_hybrid_form_over_one_row():
    """A tree ensemble's baseline game takes its first and last values from its
    one-row hybrid form (a regressor's too, whose values are the model's); a
    marginal game over a background from its baseline game at the mean, in the
    same form."""
    X, y = _regression(seed=1)
    players = [[0, 1], [2], [3, 4, 5]]
    classifier = GradientBoostingClassifier(n_estimators=10, random_state=0)
    classifier.fit(X, y > 1)
    regressor = GradientBoostingRegressor(n_estimators=10, random_state=0).fit(X, y)
    rows = X[100:120]
    masks = first_last_masks(len(players))
    for game in (
        BaselineGame(classifier, X[0], players=players),
        BaselineGame(classifier, X[0], players=players, link="logit"),
        BaselineGame(regressor, X[0], players=players),
    ):
        fast = resolve_game(game, X)
        assert isinstance(fast, (TreeHybridMarginalGame, TreeShapleyMarginalGame))
        proxy = fast.proxy()
        assert isinstance(proxy, TreeHybridMarginalGame) and proxy is fast.proxy()
        np.testing.assert_allclose(
            proxy.first_last_values(rows), game(rows, masks), rtol=0, atol=1e-12
        )
    marginal = resolve_game(MarginalGame(classifier, X[:30], players=players), X)
    assert isinstance(marginal, TreeHybridMarginalGame)
    proxy = marginal.proxy()
    assert isinstance(proxy, TreeHybridMarginalGame) and proxy is marginal.proxy()
    at_mean = BaselineGame(classifier, X[:30].mean(axis=0), players=players)
    np.testing.assert_allclose(
        proxy.first_last_values(rows), at_mean(rows, masks), rtol=0, atol=1e-12
    )


def test_constant_trees_and_zero_rows():
    """An ensemble of one-leaf trees (a constant) has tables with no units: its
    values are the constant, its contributions and pair sums zero; zero rows
    keep their shapes."""
    X, y = _regression()
    constant = GradientBoostingRegressor(
        n_estimators=3, max_depth=1, min_samples_split=10_000
    ).fit(X, y)
    tree = tree_marginal_game(MarginalGame(constant, X[:20]), X)
    assert isinstance(tree, TreeMarginalGame)
    values, (s, t) = tree.contribution_values(X[:4], pairs=True)
    np.testing.assert_allclose(values, constant.predict(X[:1])[0], rtol=1e-12)
    assert values.shape == (4, 2 * X.shape[1] + 2, 1)
    assert s.shape == t.shape == (4, X.shape[1], 1) and not s.any() and not t.any()
    model = GradientBoostingRegressor(n_estimators=5, random_state=0).fit(X, y)
    tree = tree_marginal_game(MarginalGame(model, X[:20]), X)
    values, (s, t) = tree.contribution_values(X[:0], pairs=True)
    assert values.shape == (0, 2 * X.shape[1] + 2, 1) and s.shape == (0, X.shape[1], 1)


def test_bad_input_raises():
    X, y = _regression()
    gb = GradientBoostingRegressor(n_estimators=5, random_state=0).fit(X, y)
    flat = flatten_ensemble(gb)
    with pytest.raises(TablesTooLargeError, match="MarginalGame instead"):
        TreeMarginalGame(flat, X[:10], max_table_entries=10)
    with pytest.raises(ValueError, match="non-empty 2-D"):
        TreeMarginalGame(flat, X[:0])
    with pytest.raises(ValueError, match="features"):
        TreeMarginalGame(flat, X[:10, :3])
    game = TreeMarginalGame(flat, X[:10])
    with pytest.raises(ValueError, match="shape"):
        game.shapley_values(X[:, :4])
    with pytest.raises(ValueError, match="players"):
        game(X[:2], np.ones((3, 4), dtype=bool))
    with pytest.raises(ValueError, match="rows"):
        game(X[:2], np.ones((3, 3, 6), dtype=bool))


def test_a_constant_tree_is_an_offset():
    """A tree that is one leaf adds its value to every coalition's."""
    X, y = _regression()
    gb = GradientBoostingRegressor(n_estimators=3, random_state=0).fit(X, y)
    flat = flatten_ensemble(gb)
    # replace the second tree by its root, a leaf worth 1
    start, stop = flat.tree_offsets[1], flat.tree_offsets[2]
    flat.children_left[start], flat.children_right[start] = -1, -1
    flat.feature[start] = -1
    flat.value[start] = 1.0
    flat.value[start + 1 : stop] = 0.0
    game = TreeMarginalGame(flat, X[:10])  # its other nodes are unreachable
    full, empty = game.grand_and_empty(X[:4])
    np.testing.assert_allclose(full, predict_raw(flat, X[:4]), atol=1e-12)
    masks = np.ones((1, 6), dtype=bool)
    np.testing.assert_allclose(game(X[:4], masks)[:, 0], full, atol=1e-12)
    phi = game.shapley_values(X[:4])
    np.testing.assert_allclose(phi.sum(axis=1), full - empty, atol=1e-12)


def test_fastshap_trains_on_the_exact_tree_game():
    """The marginal game of a tree ensemble resolves to its exact tables, which
    give the first and last contributions; the targets are its exact Shapley
    values; a baseline game resolves to exact Shapley values too."""
    X, y = _regression(n=200)
    gb = GradientBoostingRegressor(n_estimators=20, random_state=0).fit(X, y)
    kwargs = dict(value_function="marginal", n_background=20, max_epochs=2)
    explainer = FastSHAPExplainer(FrozenEstimator(gb), random_state=0, **kwargs).fit(X)
    assert isinstance(explainer.game_, TreeMarginalGame)
    assert explainer._proxy is explainer.game_
    assert explainer.plan_.source == "exact"
    exp = explainer.explain(X[:5])
    np.testing.assert_allclose(
        exp.base_values + exp.values.sum(axis=1), gb.predict(X[:5]), atol=1e-9
    )
    again = FastSHAPExplainer(FrozenEstimator(gb), random_state=0, **kwargs).fit(X)
    np.testing.assert_array_equal(again.explain(X[:5]).values, exp.values)
    kwargs["value_function"] = "baseline"
    baseline = FastSHAPExplainer(FrozenEstimator(gb), random_state=0, **kwargs).fit(X)
    assert isinstance(baseline.game_, TreeShapleyMarginalGame)
    assert baseline.plan_.source == "exact"
    game = BaselineGame(gb, X.mean(axis=0))
    masks = np.random.default_rng(0).random((7, X.shape[1])) < 0.5
    np.testing.assert_array_equal(baseline.game_(X[:5], masks), game(X[:5], masks))
    np.testing.assert_allclose(
        baseline.game_.shapley_values(X[:5]),
        exact_shapley(game, X[:5]).values,
        atol=1e-9,
    )


def test_fastshap_adds_up_to_a_rounded_model_output():
    """XGBoost predicts in float32: the attributions add up to its output, not to
    the trees' float64 sum; a TreeMarginalGame is also a value function itself."""
    X, y = _regression(n=200)
    model = xgboost.XGBRegressor(n_estimators=10, max_depth=3).fit(X, y)
    kwargs = dict(n_background=20, max_epochs=1, random_state=0)
    explainer = FastSHAPExplainer(
        FrozenEstimator(model), value_function="marginal", **kwargs
    ).fit(X)
    assert explainer.game_.matches_model is False
    exp = explainer.explain(X[:5])
    full = explainer.game_.grand_and_empty(X[:5])[0][:, 0]
    np.testing.assert_allclose(
        exp.base_values + exp.values.sum(axis=1), full, atol=1e-9
    )
    game = TreeMarginalGame(flatten_ensemble(model), X[:20])
    own = FastSHAPExplainer(model, value_function=game, **kwargs).fit(X)
    exp = own.explain(X[:5])
    full = game.grand_and_empty(X[:5])[0][:, 0]
    np.testing.assert_allclose(
        exp.base_values + exp.values.sum(axis=1), full, atol=1e-9
    )
