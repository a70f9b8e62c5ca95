"""InstaSHAPGAM against analytic Shapley values, exact enumeration and the Möbius oracle."""

import copy
import itertools
import warnings

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import r2_score

from sklearn_shapley import exact_shapley
from sklearn_shapley.amortized._instashap import (
    AuditResult,
    InstaSHAPGAM,
    ShapleyTrustWarning,
    pair_interaction_strength,
)
from sklearn_shapley.games import BaselineGame, MarginalGame
from sklearn_shapley.sampling import all_coalitions

FAST = {"n_coalitions": 16, "max_epochs": 60, "batch_size": 512}


def synthetic(X):
    """``x1 + x2·x3 + sin(x4)``; the other columns are null features."""
    return X[:, 0] + X[:, 1] * X[:, 2] + np.sin(X[:, 3])


def analytic_baseline_shapley(X, b):
    """Shapley values of ``synthetic`` under the baseline game with baseline ``b``."""
    phi = np.zeros_like(X)
    phi[:, 0] = X[:, 0] - b[0]
    # x2·x3: dividends x2 b3 − b2 b3, b2 x3 − b2 b3 and (x2 − b2)(x3 − b3).
    phi[:, 1] = (X[:, 1] - b[1]) * (X[:, 2] + b[2]) / 2
    phi[:, 2] = (X[:, 2] - b[2]) * (X[:, 1] + b[1]) / 2
    phi[:, 3] = np.sin(X[:, 3]) - np.sin(b[3])
    return phi


def mobius(game, X, components):
    """Harsanyi dividends ``Σ_{S ⊆ T} (−1)^{|T∖S|} v_x(S)`` of every component."""
    d = game.n_players
    masks = all_coalitions(d)
    table = game(X, masks)[:, :, 0]
    code = {tuple(np.flatnonzero(m)): i for i, m in enumerate(masks)}
    out = np.zeros((len(X), len(components)))
    for c, T in enumerate(components):
        for k in range(len(T) + 1):
            for S in itertools.combinations(T, k):
                out[:, c] += (-1) ** (len(T) - k) * table[:, code[S]]
    return out


@pytest.fixture(scope="module")
def synthetic_fit():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 6))
    gam = InstaSHAPGAM(
        synthetic, max_order=2, value_function="baseline", random_state=0, **FAST
    ).fit(X)
    return gam, rng.normal(size=(200, 6))


def test_order_two_recovers_analytic_shapley_values(synthetic_fit):
    gam, X = synthetic_fit
    assert len(gam.components_) == 6 + 15  # d = 6 is small: every pair is kept
    phi = gam.transform(X)
    truth = analytic_baseline_shapley(X, gam.game_.baseline)
    np.testing.assert_allclose(
        truth, exact_shapley(gam.game_, X).values[:, :, 0], atol=1e-10
    )
    assert r2_score(truth.ravel(), phi.ravel()) >= 0.95
    for i in range(4):
        assert r2_score(truth[:, i], phi[:, i]) >= 0.95
    assert np.abs(phi[:, 4:]).mean() < 0.05 * np.abs(truth[:, :4]).mean()
    assert gam.score(X) >= 0.95


def test_efficiency_is_exact_for_the_gam(synthetic_fit):
    gam, X = synthetic_fit
    exp = gam.explain(X)
    prediction = gam.predict(X)
    np.testing.assert_allclose(
        exp.base_values + exp.values.sum(axis=1), prediction, atol=1e-10
    )
    np.testing.assert_allclose(gam.explained_output(X)[:, 0], prediction)
    np.testing.assert_allclose(exp.base_values, synthetic(gam.game_.baseline[None])[0])
    assert r2_score(synthetic(X), prediction) >= 0.95


def test_additive_normalization_matches_the_model_output(synthetic_fit):
    gam, X = synthetic_fit
    # The normalization acts at explain time only: no refit needed.
    normalized = copy.deepcopy(gam).set_params(normalization="additive")
    exp = normalized.explain(X)
    np.testing.assert_allclose(
        exp.base_values + exp.values.sum(axis=1), synthetic(X), atol=1e-10
    )


def test_audit_flags_the_missing_interaction(synthetic_fit):
    gam, X = synthetic_fit
    with pytest.warns(ShapleyTrustWarning, match="order 2 closes the gap"):
        result = gam.audit(X, y=synthetic(X))
    assert isinstance(result, AuditResult)
    assert not result.trustworthy
    assert result.gap > 0.2  # an additive model misses Var(x2·x3)
    assert result.gaps[2] <= result.tol
    assert [row["order"] for row in result.table] == [None, 1, 2]
    assert "GAM order 1" in repr(result) and "verdict" in repr(result)
    assert result.to_dict()["gaps"] == result.gaps

    first_order = result.models[1]
    assert first_order.max_order == 1 and len(first_order.components_) == 6
    with pytest.warns(ShapleyTrustWarning):
        alone = first_order.audit(X)
    assert alone.gap == pytest.approx(result.gap)
    # The cached lower-order GAM is reused, not refitted.
    with pytest.warns(ShapleyTrustWarning):
        assert gam.audit(X).models[1] is first_order


def test_audit_trusts_an_additive_model():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(300, 4))
    coef = np.array([1.0, -2.0, 0.5, 0.0])

    def additive(X):
        return X @ coef + np.tanh(X[:, 2])

    gam = InstaSHAPGAM(additive, value_function="baseline", random_state=0, **FAST).fit(
        X
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", ShapleyTrustWarning)
        result = gam.audit(rng.normal(size=(100, 4)))
    assert result.trustworthy and "trustworthy" in result.verdict


def test_correlated_inputs_components_stay_purified():
    rho, d = 0.8, 4
    cov = np.full((d, d), rho) + (1 - rho) * np.eye(d)
    rng = np.random.default_rng(2)
    X = rng.multivariate_normal(np.zeros(d), cov, size=400)
    X_test = rng.multivariate_normal(np.zeros(d), cov, size=200)
    params = dict(
        max_order=2, value_function="marginal", n_background=40, random_state=0
    )
    masked = InstaSHAPGAM(synthetic, **params, **FAST).fit(X)
    ordinary = InstaSHAPGAM(synthetic, unmasked_fraction=1.0, **params, **FAST).fit(X)
    truth = mobius(masked.game_, X_test, masked.components_)
    error = {
        name: ((gam.component_values(X_test) - truth) ** 2).mean(axis=0)
        for name, gam in [("masked", masked), ("ordinary", ordinary)]
    }
    # Masked training recovers the purified (Möbius) components of the game; the
    # ordinary GAM fits f as well but spreads it over arbitrary components.
    assert error["masked"].sum() < 0.25 * error["ordinary"].sum()
    pair = masked.components_.index((1, 2))
    masked_pair = masked.component_values(X_test)[:, pair]
    assert r2_score(truth[:, pair], masked_pair) >= 0.9
    assert r2_score(synthetic(X_test), ordinary.predict(X_test)) >= 0.9


def test_binary_classifier_kl_loss_in_logit_space():
    X, y = make_classification(n_samples=300, n_features=5, random_state=0)
    model = LogisticRegression().fit(X, y)
    gam = InstaSHAPGAM(
        FrozenEstimator(model),
        value_function="baseline",
        link="logit",
        loss="kl",
        random_state=0,
        **FAST,
    ).fit(X)
    exp = gam.explain(X[:50])
    assert exp.values.shape == (50, 5, 2)
    truth = exact_shapley(gam.game_, X[:50]).values
    # A logistic model is additive in log-odds: a first-order GAM is exact.
    assert r2_score(truth.ravel(), exp.values.ravel()) >= 0.95
    np.testing.assert_allclose(gam.transform(X[:50]), exp.values[:, :, 1])
    assert gam.predict(X[:50]).shape == (50, 2)


def test_kl_loss_needs_a_log_link():
    X, y = make_classification(
        n_samples=40, n_features=3, n_informative=2, n_redundant=0, random_state=0
    )
    gam = InstaSHAPGAM(LogisticRegression(), value_function="baseline", loss="kl")
    with pytest.raises(ValueError, match="link"):
        gam.fit(X, y)


def test_random_state_reproducible():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(80, 4))
    params = dict(max_order=2, value_function="marginal", n_background=10, max_epochs=3)
    a = InstaSHAPGAM(synthetic, random_state=7, **params).fit(X).transform(X)
    b = InstaSHAPGAM(synthetic, random_state=7, **params).fit(X).transform(X)
    c = InstaSHAPGAM(synthetic, random_state=8, **params).fit(X).transform(X)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_pair_screen_finds_the_interacting_pairs():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(200, 12))

    def f(X):
        return X.sum(axis=1) + 2 * X[:, 0] * X[:, 1] + X[:, 5] * X[:, 7]

    game = BaselineGame(f, np.zeros(12))
    strength = pair_interaction_strength(game, X, 0)
    assert strength.shape == (12, 12)
    np.testing.assert_allclose(strength, strength.T)
    top = np.dstack(np.unravel_index(np.argsort(-np.triu(strength, 1), None), (12, 12)))
    assert {tuple(p) for p in top[0, :2]} == {(0, 1), (5, 7)}

    gam = InstaSHAPGAM(
        f, max_order=3, max_interactions=2, value_function="baseline", max_epochs=1
    ).fit(X)
    assert gam.components_[12:14] == [(0, 1), (5, 7)]
    assert len(gam.components_) == 14  # no triple has all its pairs kept
    assert gam.interaction_strengths_ is not None


def test_explicit_interactions_by_index_or_name():
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(5)
    frame = pd.DataFrame(rng.normal(size=(60, 4)), columns=["a", "b", "c", "d"])
    gam = InstaSHAPGAM(
        Ridge(),
        max_order=2,
        interactions=[("b", "c"), (0, 3), (1,)],
        value_function="baseline",
        max_epochs=1,
    ).fit(frame, frame["a"] + frame["b"] * frame["c"])
    assert gam.components_ == [(0,), (1,), (2,), (3,), (0, 3), (1, 2)]
    assert gam.interaction_strengths_ is None
    for bad in ([(0, 1, 2)], [("a", "z")]):
        with pytest.raises(ValueError, match="interactions entry"):
            InstaSHAPGAM(
                Ridge(), max_order=2, interactions=bad, value_function="baseline"
            ).fit(frame, frame["a"])


def test_shape_functions_and_component_values(synthetic_fit):
    gam, X = synthetic_fit
    shapes = gam.shape_functions(n_points=7)
    assert [s["players"] for s in shapes] == gam.components_
    single, pair = shapes[0], shapes[6]
    assert single["names"] == ("x0",) and single["values"].shape == (7,)
    assert pair["names"] == ("x0", "x1") and pair["values"].shape == (7, 7)
    rows = np.tile(X[:1], (7, 1))
    rows[:, 0] = single["grid"][0]
    np.testing.assert_allclose(
        gam.component_values(rows)[:, 0], single["values"], atol=1e-6
    )
    # The x1 shape function is x1 − b1 (up to the fit).
    truth = single["grid"][0] - gam.game_.baseline[0]
    assert np.abs(single["values"] - truth).max() < 0.2
    assert gam.component_values(X).shape == (len(X), len(gam.components_))


def test_grouped_players():
    rng = np.random.default_rng(6)
    X = rng.normal(size=(60, 4))
    gam = InstaSHAPGAM(
        synthetic,
        max_order=2,
        players=[[0], [1, 2], [3]],
        value_function="marginal",
        n_background=10,
        max_epochs=2,
    ).fit(X)
    assert gam.transform(X).shape == (60, 3)
    assert list(gam.get_feature_names_out()) == ["x0", "x1+x2", "x3"]
    assert gam.components_[-1] == (1, 2)
    with pytest.raises(ValueError, match="one column per player"):
        gam.shape_functions()


def test_shared_surrogate_teacher():
    surrogate = pytest.importorskip("sklearn_shapley.amortized._surrogate")
    rng = np.random.default_rng(7)
    X = rng.normal(size=(200, 4))
    settings = {"hidden_layer_sizes": (32,), "max_epochs": 15}
    gam = InstaSHAPGAM(
        synthetic,
        max_order=2,
        surrogate_params=settings,
        random_state=0,
        n_coalitions=8,
        max_epochs=5,
    ).fit(X)
    assert isinstance(gam.game_, surrogate.SurrogateGame)
    exp = gam.explain(X[:20])
    np.testing.assert_allclose(
        exp.base_values + exp.values.sum(axis=1), gam.predict(X[:20]), atol=1e-10
    )
    # A fitted surrogate is a game: pass it to share one teacher between explainers.
    shared = InstaSHAPGAM(value_function=gam.game_, max_epochs=2).fit(X)
    assert shared.game_ is gam.game_
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ShapleyTrustWarning)
        rows = [r["model"] for r in gam.audit(X[:50]).table]
    assert rows == ["surrogate g(x_S, S)", "GAM order 1", "GAM order 2"]


@pytest.mark.parametrize(
    "params, match",
    [
        ({"max_order": 0}, "max_order"),
        ({"n_coalitions": 0}, "n_coalitions"),
        ({"unmasked_fraction": 1.5}, "unmasked_fraction"),
        ({"coalition_sampling": "banzhaf"}, "coalition_sampling"),
        ({"loss": "hinge"}, "loss"),
        ({"normalization": "multiplicative"}, "normalization"),
        ({"interactions": "all"}, "interactions"),
        ({"value_function": "conditional"}, "value_function"),
        ({"n_jobs": 0}, "n_jobs"),
    ],
)
def test_invalid_parameters(params, match):
    X = np.random.default_rng(8).normal(size=(20, 3))
    params = {"value_function": "baseline", **params}
    with pytest.raises(ValueError, match=match):
        InstaSHAPGAM(synthetic_three, **params).fit(X)


def synthetic_three(X):
    return X[:, 0] * X[:, 1] + X[:, 2]


def test_uniform_coalitions_and_marginal_game():
    rng = np.random.default_rng(9)
    X = rng.normal(size=(300, 3))
    gam = InstaSHAPGAM(
        synthetic_three,
        max_order=2,
        value_function="marginal",
        n_background=30,
        coalition_sampling="uniform",
        random_state=0,
        **FAST,
    ).fit(X)
    assert isinstance(gam.game_, MarginalGame)
    truth = exact_shapley(gam.game_, X[:100]).values[:, :, 0]
    assert r2_score(truth.ravel(), gam.transform(X[:100]).ravel()) >= 0.95


def test_large_data_is_subsampled(monkeypatch):
    from sklearn_shapley.amortized import _instashap

    monkeypatch.setattr(_instashap, "MAX_ROWS", 120)
    X = np.random.default_rng(3).normal(size=(300, 3))
    gam = InstaSHAPGAM(synthetic_three, max_order=1, random_state=0, **FAST).fit(X)
    assert len(gam._teacher["x"]) == 120  # the teacher's rows: a subsample
    assert gam.transform(X[:5]).shape == (5, 3)
