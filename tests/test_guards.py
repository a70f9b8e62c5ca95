"""Guards against silent wrong answers: a model changed after fit, non-finite results,
budgets that cannot determine KernelSHAP, memory limits, invalid parameters."""

import os
import pickle
import warnings

import numpy as np
import pytest
from sklearn.ensemble import (
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestRegressor,
)
from sklearn.exceptions import ConvergenceWarning
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import Ridge
from sklearn.tree import DecisionTreeRegressor
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.estimator_checks import check_param_validation

from sklearn_shapley import (
    ExactExplainer,
    KernelExplainer,
    PermutationExplainer,
    QuadratureTreeExplainer,
    _memory,
    kernel_shap,
)
from sklearn_shapley.games import BaselineGame
from sklearn_shapley.kernel import min_evaluations


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(200, 5))


# -- a model changed after fit ---------------------------------------------------------
def test_tree_explainer_refuses_a_model_refitted_after_fit(data):
    X = data
    model = GradientBoostingRegressor(n_estimators=20, random_state=0).fit(X, X[:, 0])
    explainer = QuadratureTreeExplainer(FrozenEstimator(model)).fit(X)
    explainer.transform(X[:3])  # the model is unchanged: fine
    model.fit(X, 5 * X[:, 3])
    for method in ("transform", "explain", "explained_output", "score"):
        with pytest.raises(ValueError, match="changed after fit.*Refit the explainer"):
            getattr(explainer, method)(X[:3])
    # Refitting the explainer explains the new model.
    explainer.fit(X)
    exp = explainer.explain(X[:3])
    np.testing.assert_allclose(
        exp.base_values + exp.values.sum(axis=1), model.predict(X[:3]), atol=1e-9
    )


@pytest.mark.parametrize("explainer_class", [KernelExplainer, ExactExplainer])
def test_game_explainers_refuse_a_model_refitted_after_fit(data, explainer_class):
    X = data
    model = Ridge().fit(X, X[:, 0])
    explainer = explainer_class(FrozenEstimator(model)).fit(X)
    model.fit(X, X[:, 1])
    with pytest.raises(ValueError, match="changed after fit"):
        explainer.transform(X[:2])


def test_a_callable_changed_after_fit_is_detected(data):
    X = data
    weights = np.arange(5.0)

    def f(Z):
        return Z @ weights

    explainer = PermutationExplainer(f, max_evaluations=50).fit(X)
    explainer.transform(X[:2])
    weights[0] = 10.0
    with pytest.raises(ValueError, match="changed after fit"):
        explainer.transform(X[:2])


def test_fingerprint_survives_pickling_and_skips_random_models(data):
    X = data
    model = GradientBoostingRegressor(n_estimators=5, random_state=0).fit(X, X[:, 0])
    explainer = QuadratureTreeExplainer(FrozenEstimator(model)).fit(X)
    restored = pickle.loads(pickle.dumps(explainer))
    np.testing.assert_array_equal(restored.transform(X[:4]), explainer.transform(X[:4]))

    # A model whose outputs are random cannot be fingerprinted: no false alarm.
    rng = np.random.default_rng(1)

    def noisy(Z):
        return Z[:, 0] + 1e-3 * rng.normal(size=len(Z))

    KernelExplainer(noisy, max_evaluations=100).fit(X).transform(X[:2])


# -- non-finite values for finite input ------------------------------------------------
@pytest.mark.parametrize(
    "explainer", [ExactExplainer(), KernelExplainer(), PermutationExplainer()]
)
def test_model_agnostic_explainers_hold_outputs_near_the_float64_limit(data, explainer):
    X = data[:, :4]
    coef = np.array([0.5, 0.49, -0.3, 0.2])
    model = Ridge(alpha=1e-6).fit(X, X @ coef)
    rows = X[:3].copy()
    rows[0, :2] = 1e308
    rows[1] = [1e308, -1e308, -1e308, 1e308]
    predicted = model.predict(rows)
    assert np.all(np.isfinite(predicted)) and predicted[0] > 9.8e307
    exp = explainer.set_params(estimator=FrozenEstimator(model)).fit(X).explain(rows)
    # The baseline game of a linear model: φ_i = w_i (x_i − mean_i).
    expected = model.coef_ * (rows - X.mean(axis=0))
    np.testing.assert_allclose(exp.values, expected, rtol=1e-9, atol=1e-12 * 1e308)
    np.testing.assert_allclose(
        exp.base_values + exp.values.sum(axis=1), predicted, rtol=1e-12, atol=1e-9
    )


def test_attributions_outside_float64_are_refused(data):
    X = data[:, :3]

    def f(Z):  # finite outputs whose Shapley value of x0 is 3.4e308
        return np.where(Z[:, 0] > 0, 1.7e308, -1.7e308)

    explainer = ExactExplainer(f, background=np.full(3, -1.0)).fit(X)
    with pytest.raises(ValueError, match=r"non-finite attributions.*1\.8e308"):
        explainer.transform(np.ones((2, 3)))


@pytest.mark.parametrize(
    "f, message",
    [
        (lambda Z: np.full(len(Z), np.nan), "non-finite outputs"),
        (lambda Z: np.where(Z[:, 0] > 0, np.inf, 0.0), "non-finite outputs"),
        (lambda Z: Z[:-1, 0], "one row per input row"),
        (lambda Z: np.float64(1.0), "one row per input row"),
    ],
    ids=["nan", "overflow", "one-row-short", "scalar"],
)
def test_a_callable_with_bad_outputs_gets_one_clear_error(data, f, message):
    with pytest.raises(ValueError, match=message):
        KernelExplainer(f).fit(data).transform(data[:2])


# -- KernelSHAP budgets that cannot determine the values --------------------------------
def test_kernel_shap_raises_a_budget_too_small_for_a_wide_game():
    rng = np.random.default_rng(0)
    d = 500
    weights = rng.normal(size=d)
    X = rng.normal(size=(50, d))
    explainer = KernelExplainer(
        lambda Z: Z @ weights, max_evaluations=1000, random_state=0
    ).fit(X)
    with pytest.warns(ConvergenceWarning, match="cannot determine.*raised to 1252"):
        phi = explainer.transform(X[:2])
    # Linear model, baseline game: φ_i = w_i (x_i − mean_i), exactly.
    expected = weights * (X[:2] - X.mean(axis=0))
    np.testing.assert_allclose(phi, expected, atol=1e-8 * np.abs(expected).max())
    assert min_evaluations(d) == 1252


def test_kernel_shap_warns_with_the_measured_standard_error():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(100, 8))

    def f(Z):
        return np.sin(3 * Z[:, 0] * Z[:, 1]) + Z[:, 2] * Z[:, 3] * Z[:, 4]

    explainer = KernelExplainer(f, max_evaluations=200, random_state=0).fit(X)
    with pytest.warns(ConvergenceWarning, match=r"standard error is up to \d"):
        explainer.transform(X[:3])
    # A budget it converges within: no warning.
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        KernelExplainer(lambda Z: Z @ np.arange(8.0), random_state=0).fit(X).transform(
            X[:3]
        )


# -- memory guards that respect the effective limit -------------------------------------
def _vm_size():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


@pytest.fixture
def half_gib_address_space(monkeypatch):
    """An RLIMIT_AS 0.5 GiB above the process's size (as under ``ulimit -v``)."""
    resource = pytest.importorskip("resource")
    if not os.path.exists("/proc/self/status"):
        pytest.skip("needs /proc/self/status")
    limit = _vm_size() + 2**29
    real = resource.getrlimit

    def getrlimit(which):
        if which == resource.RLIMIT_AS:
            return limit, resource.RLIM_INFINITY
        return real(which)

    monkeypatch.setattr(resource, "getrlimit", getrlimit)


def test_available_memory_reads_the_address_space_limit(half_gib_address_space):
    assert _memory.available_memory_bytes() <= 2**29
    assert abs(_memory.address_space_available_bytes() - 2**29) < 2**26


@pytest.mark.parametrize("version", [1, 2])
def test_available_memory_reads_the_cgroup_limit(monkeypatch, version):
    own = "/sys/fs/cgroup/memory/job" if version == 1 else "/sys/fs/cgroup/job"
    files = {
        "/proc/self/cgroup": "4:memory:/job\n0::/job",
        own + ("/memory.limit_in_bytes" if version == 1 else "/memory.max"): str(
            3 * 2**30
        ),
        own + ("/memory.usage_in_bytes" if version == 1 else "/memory.current"): str(
            2**31
        ),
        # The root cgroup: no limit.
        "/sys/fs/cgroup/memory.max": "max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes": "9223372036854771712",
    }
    real = _memory._read_text
    monkeypatch.setattr(
        _memory,
        "_read_text",
        lambda path: files.get(path, real(path) if path == "/proc/meminfo" else None),
    )
    assert _memory.cgroup_available_bytes() == 2**30
    assert _memory.available_memory_bytes() <= 2**30


def test_exact_explainer_above_20_players_checks_memory(half_gib_address_space):
    d = 26  # a table of 2^26 values and their differences: 1 GiB
    explainer = ExactExplainer(lambda Z: Z.sum(axis=1), max_players=d).fit(
        np.zeros((3, d))
    )
    with pytest.raises(MemoryError, match=r"2\^26 coalitions.*0\.5 GiB.*players="):
        explainer.transform(np.ones((1, d)))


def test_kernel_explainer_on_2000_features_checks_memory(half_gib_address_space):
    d = 2000  # d x d matrices and a batch of 5,000 coalitions per row: 0.5 GiB
    game = BaselineGame(lambda Z: Z.sum(axis=1), np.zeros(d))
    with pytest.raises(MemoryError, match=r"KernelSHAP's work arrays.*players="):
        kernel_shap(game, np.ones((1, d)), max_evaluations=6000)


# -- parameters, checked once in the shared fit ----------------------------------------
def _all_explainers():
    from test_common import _explainers

    return _explainers()


@pytest.mark.parametrize("explainer", _all_explainers(), ids=lambda e: type(e).__name__)
def test_every_parameter_has_a_constraint_checked_at_fit(explainer):
    # scikit-learn's own check: one constraint per parameter, and fit refuses a value
    # of a wrong type or out of range with InvalidParameterError naming it.
    check_param_validation(type(explainer).__name__, explainer)


@pytest.mark.parametrize(
    "explainer, message",
    [
        (PermutationExplainer(Ridge(), max_evaluations=-5), "'max_evaluations'"),
        (KernelExplainer(Ridge(), max_evaluations=0), "'max_evaluations'"),
        (QuadratureTreeExplainer(DecisionTreeRegressor(), n_jobs="two"), "'n_jobs'"),
        (QuadratureTreeExplainer(DecisionTreeRegressor(), interaction_order=3), "'in"),
        (ExactExplainer(Ridge(), link="logistic"), "'link'"),
    ],
)
def test_invalid_parameters_are_refused_at_fit(data, explainer, message):
    with pytest.raises(InvalidParameterError, match=message):
        explainer.fit(data, data[:, 0])


def test_interactions_refuse_a_fractional_order(data):
    model = DecisionTreeRegressor(max_depth=3, random_state=0).fit(data, data[:, 0])
    explainer = QuadratureTreeExplainer(FrozenEstimator(model)).fit(data)
    with pytest.raises(TypeError, match="order must be an instance of"):
        explainer.interactions(data[:2], order=2.7)
    with pytest.raises(ValueError, match="order == 0, must be >= 1"):
        explainer.interactions(data[:2], order=0)


def test_a_probability_link_refuses_a_regressor_instead_of_clipping(data):
    model = FrozenEstimator(Ridge().fit(data, 3 + 2 * data[:, 0]))
    for explainer in (ExactExplainer(model, link="logit"), KernelExplainer(model)):
        explainer.set_params(link="logit")
        with pytest.raises(ValueError, match="link='logit' maps probabilities"):
            explainer.fit(data)


def test_no_dtype_parameter_and_no_gpu_promise():
    assert "dtype" not in QuadratureTreeExplainer().get_params()
    with pytest.raises(ValueError, match="device='cuda' is not available"):
        QuadratureTreeExplainer(DecisionTreeRegressor(), device="cuda").fit(
            np.ones((4, 2)), np.arange(4.0)
        )


# -- the tree explainer takes exactly the inputs the model takes ------------------------
def _with(X, value):
    X = X[:4].copy()
    X[0, 1] = value
    return X


@pytest.mark.parametrize(
    "model, value, message",
    [
        (GradientBoostingRegressor(n_estimators=5), np.nan, "does not accept missing"),
        (GradientBoostingRegressor(n_estimators=5), 1e39, "too large for dtype"),
        (RandomForestRegressor(n_estimators=3), -1e39, "too large for dtype"),
        (DecisionTreeRegressor(max_depth=3), np.inf, "too large for dtype"),
    ],
)
def test_tree_explainer_refuses_what_the_sklearn_model_refuses(
    data, model, value, message
):
    model.set_params(random_state=0).fit(data, data[:, 1])
    X = _with(data, value)
    with pytest.raises(ValueError, match=message):
        model.predict(X)  # the model's own refusal ...
    explainer = QuadratureTreeExplainer(FrozenEstimator(model)).fit(data)
    with pytest.raises(ValueError, match=message):  # ... is the explainer's
        explainer.transform(X)
    with pytest.raises(ValueError, match=message):
        QuadratureTreeExplainer(FrozenEstimator(model)).fit(X)


@pytest.mark.parametrize(
    "model, values",
    [
        (HistGradientBoostingRegressor(max_iter=5), (np.nan, 1e39, -np.inf)),
        (DecisionTreeRegressor(max_depth=3), (np.nan,)),
        (RandomForestRegressor(n_estimators=3), (np.nan,)),
    ],
)
def test_tree_explainer_explains_what_the_model_takes(data, model, values):
    model.set_params(random_state=0).fit(data, data[:, 1])
    explainer = QuadratureTreeExplainer(FrozenEstimator(model)).fit(data)
    for value in values:
        X = _with(data, value)
        exp = explainer.explain(X)
        np.testing.assert_allclose(
            exp.base_values + exp.values.sum(axis=1), model.predict(X), atol=1e-9
        )


def test_tree_explainer_refuses_what_xgboost_refuses(data):
    xgboost = pytest.importorskip("xgboost")
    model = xgboost.XGBRegressor(n_estimators=3).fit(data, data[:, 1])
    explainer = QuadratureTreeExplainer(FrozenEstimator(model)).fit(data)
    for value in (1e39, np.inf):
        X = _with(data, value)
        with pytest.raises(xgboost.core.XGBoostError, match="inf"):
            model.get_booster().predict(xgboost.DMatrix(X))
        with pytest.raises(ValueError, match="inf.*XGBoost"):
            explainer.transform(X)


# -- HistGradientBoosting's own rule for categorical values ----------------------------
@pytest.mark.parametrize("offset", [0.0, 0.5], ids=["integer", "fractional"])
def test_hist_gradient_boosting_categories_follow_the_model(offset):
    # The model's ordinal encoder takes a value only when it equals a training
    # category exactly; any other (2.5, -0.5, an unseen 7) is missing. offset=0.5
    # trains on fractional categories (0.5, 1.5, ...), which it encodes in order.
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.integers(0, 6, 400) + offset, rng.normal(size=400)])
    y = 3 * np.sin(1.3 * X[:, 0]) + X[:, 1]
    model = HistGradientBoostingRegressor(
        max_iter=20, categorical_features=[0], random_state=0
    ).fit(X, y)
    Z = np.tile(X[:1], (9, 1))
    Z[:, 0] = np.array([2.5, -0.5, 0.5, 5.9, 3, 7, 1.5, 0, np.nan])
    expected = model.predict(Z)  # model's raw output
    explainer = QuadratureTreeExplainer(FrozenEstimator(model)).fit(X)
    exp = explainer.explain(Z)
    np.testing.assert_allclose(exp.base_values + exp.values.sum(axis=1), expected)
    np.testing.assert_allclose(explainer.explained_output(Z)[:, 0], expected)
    marginal = ExactExplainer(FrozenEstimator(model), value_function="marginal")
    exp = marginal.fit(X[:50]).explain(Z[:-1])  # the tree's marginal game (no NaN)
    np.testing.assert_allclose(exp.base_values + exp.values.sum(axis=1), expected[:-1])
    interventional = QuadratureTreeExplainer(
        FrozenEstimator(model), feature_perturbation="interventional", background=X[:50]
    )
    exp = interventional.fit(X).explain(Z)
    np.testing.assert_allclose(exp.base_values + exp.values.sum(axis=1), expected)


def test_hist_gradient_boosting_trained_on_one_class(data):
    model = HistGradientBoostingClassifier(max_iter=5).fit(data, np.zeros(len(data)))
    explainer = QuadratureTreeExplainer(FrozenEstimator(model)).fit(data)
    exp = explainer.explain(data[:5])
    assert explainer.output_names_ == ["decision_function"]
    np.testing.assert_allclose(
        exp.base_values + exp.values.sum(axis=1), model.decision_function(data[:5])
    )
    np.testing.assert_array_equal(exp.values, 0.0)  # every tree is a single leaf
