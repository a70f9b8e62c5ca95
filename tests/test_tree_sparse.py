"""QuadratureTreeExplainer on scipy sparse rows, each library's meaning of an absent
entry (XGBoost: missing; LightGBM and scikit-learn: 0.0), and XGBoost's ``missing``.

Oracles: xgboost ``pred_contribs`` / ``pred_interactions`` and lightgbm
``pred_contrib`` computed on the same sparse matrix, the models' own margins on it,
and the explainer on the equivalent dense rows.
"""

import numpy as np
import pytest
from scipy import sparse
from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestRegressor
from sklearn.frozen import FrozenEstimator
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.tree import DecisionTreeRegressor
from sklearn.utils import get_tags

from sklearn_shapley import QuadratureTreeExplainer
from sklearn_shapley.tree import _flat

xgb = pytest.importorskip("xgboost")
lgb = pytest.importorskip("lightgbm")

N, D = 300, 6


def _sparse_rows(seed=0, n=N):
    """``(csr, dense with NaN at the absent entries)``: half the entries absent,
    explicit zeros stored among the others."""
    rng = np.random.default_rng(seed)
    values = rng.normal(size=(n, D))
    present = rng.random((n, D)) < 0.5
    values[present & (rng.random((n, D)) < 0.3)] = 0.0  # stored zeros
    rows, cols = np.nonzero(present)
    csr = sparse.csr_matrix((values[rows, cols], (rows, cols)), shape=(n, D))
    assert np.any(csr.data == 0.0)
    return csr, np.where(present, values, np.nan)


CSR, NAN_ROWS = _sparse_rows()
Y = np.nan_to_num(NAN_ROWS) @ np.arange(1.0, D + 1) + np.isnan(NAN_ROWS[:, 0])


def _contribs(model, X, interactions=False):
    booster = model.get_booster() if hasattr(model, "get_booster") else model
    return booster.predict(
        xgb.DMatrix(X), pred_contribs=not interactions, pred_interactions=interactions
    )


@pytest.mark.parametrize("kind", ["regressor", "ranker"])
def test_xgboost_absent_entries_are_missing(kind):
    if kind == "regressor":
        model = xgb.XGBRegressor(n_estimators=20, max_depth=4, n_jobs=1)
        model.fit(CSR, Y)
    else:
        model = xgb.XGBRanker(n_estimators=20, max_depth=4, n_jobs=1)
        model.fit(
            CSR, np.digitize(Y, np.quantile(Y, [0.3, 0.7])), qid=np.arange(N) // 30
        )
    explainer = QuadratureTreeExplainer(FrozenEstimator(model)).fit(CSR)
    rows = CSR[:80]
    exp = explainer.explain(rows)
    contribs = _contribs(model, rows)
    scale = np.abs(contribs).max()
    np.testing.assert_allclose(exp.values, contribs[:, :-1], atol=2e-5 * scale)
    np.testing.assert_allclose(exp.base_values, contribs[:, -1], atol=2e-5 * scale)
    margin = model.predict(rows, output_margin=True)
    full = exp.base_values + exp.values.sum(axis=1)
    np.testing.assert_allclose(full, margin, atol=1e-5 * scale)
    np.testing.assert_allclose(
        explainer.interactions(sparse.csc_matrix(rows)),
        _contribs(model, rows, interactions=True)[:, :-1, :-1],
        atol=2e-5 * scale,
    )
    # the absent entries are NaN, not 0.0: the data shown and the values
    assert np.array_equal(exp.data, NAN_ROWS[:80], equal_nan=True)
    np.testing.assert_array_equal(exp.values, explainer.transform(NAN_ROWS[:80]))
    zeros = explainer.transform(rows.toarray())
    assert np.abs(zeros - contribs[:, :-1]).max() > 1e-2 * scale


def test_xgboost_interventional_sparse_rows_and_background():
    model = xgb.XGBRegressor(n_estimators=15, max_depth=4, n_jobs=1).fit(CSR, Y)
    kwargs = dict(feature_perturbation="interventional", background=CSR[:40])
    ours = QuadratureTreeExplainer(FrozenEstimator(model), **kwargs).fit(CSR)
    kwargs["background"] = NAN_ROWS[:40]
    dense = QuadratureTreeExplainer(FrozenEstimator(model), **kwargs).fit(NAN_ROWS)
    np.testing.assert_array_equal(ours.expected_value_, dense.expected_value_)
    np.testing.assert_array_equal(
        ours.transform(CSR[:50]), dense.transform(NAN_ROWS[:50])
    )
    np.testing.assert_array_equal(
        ours.interactions(CSR[:20]), dense.interactions(NAN_ROWS[:20])
    )
    # the default background drawn from sparse rows: the same rows as from dense ones
    default = QuadratureTreeExplainer(
        FrozenEstimator(model),
        feature_perturbation="interventional",
        n_background=50,
        random_state=0,
    )
    np.testing.assert_array_equal(
        default.fit(CSR).transform(CSR[:10]),
        default.fit(NAN_ROWS).transform(NAN_ROWS[:10]),
    )
    full = ours.explain(CSR[:50])
    margin = model.predict(CSR[:50], output_margin=True)
    np.testing.assert_allclose(
        full.base_values + full.values.sum(axis=1), margin, atol=1e-4
    )


@pytest.mark.parametrize("zero_as_missing", [False, True])
def test_lightgbm_absent_entries_are_zero(zero_as_missing):
    model = lgb.LGBMRegressor(
        n_estimators=10,
        num_leaves=8,
        min_child_samples=3,
        verbose=-1,
        n_jobs=1,
        zero_as_missing=zero_as_missing,
    ).fit(CSR, Y)
    explainer = QuadratureTreeExplainer(FrozenEstimator(model)).fit(CSR)
    rows = CSR[:80]
    contribs = model.predict(rows, pred_contrib=True).toarray()  # sparse in, out
    exp = explainer.explain(rows)
    np.testing.assert_allclose(exp.values, contribs[:, :-1], atol=1e-10)
    np.testing.assert_allclose(exp.base_values, contribs[:, -1], atol=1e-10)
    np.testing.assert_allclose(
        explainer.explained_output(rows)[:, 0],
        model.predict(rows, raw_score=True),
        rtol=1e-12,
    )
    np.testing.assert_array_equal(exp.data, rows.toarray())


def test_sklearn_forest_sparse_equals_dense_bit_for_bit():
    model = RandomForestRegressor(n_estimators=6, max_depth=6, random_state=0)
    model.fit(CSR, Y)
    dense = CSR.toarray()
    for perturbation in ("tree_path_dependent", "interventional"):
        explainer = QuadratureTreeExplainer(
            FrozenEstimator(model), feature_perturbation=perturbation, random_state=0
        )
        on_sparse = explainer.fit(CSR)
        values, pairs = on_sparse.transform(CSR), on_sparse.interactions(CSR[:30])
        on_dense = explainer.fit(dense)
        np.testing.assert_array_equal(values, on_dense.transform(dense))
        np.testing.assert_array_equal(pairs, on_dense.interactions(dense[:30]))
    # an unfitted model is fitted on the sparse rows, as the model takes them
    fitted = QuadratureTreeExplainer(DecisionTreeRegressor(max_depth=4)).fit(CSR, Y)
    np.testing.assert_allclose(
        fitted.explained_output(CSR)[:, 0], fitted.estimator_.predict(CSR)
    )


def test_sparse_array_and_other_formats_are_read():
    model = xgb.XGBRegressor(n_estimators=10, max_depth=3, n_jobs=1).fit(CSR, Y)
    explainer = QuadratureTreeExplainer(FrozenEstimator(model)).fit(CSR)
    expected = explainer.transform(CSR[:30])
    for rows in (sparse.csr_array(CSR[:30]), CSR[:30].tocoo(), CSR[:30].tolil()):
        np.testing.assert_array_equal(explainer.transform(rows), expected)
    assert get_tags(explainer).input_tags.sparse


def test_hist_gradient_boosting_refuses_sparse_with_its_own_message():
    model = HistGradientBoostingRegressor(max_iter=5).fit(NAN_ROWS, Y)
    with pytest.raises(TypeError) as theirs:
        model.predict(CSR)
    with pytest.raises(TypeError) as ours:
        QuadratureTreeExplainer(FrozenEstimator(model)).fit(CSR)
    assert str(ours.value) == str(theirs.value)
    explainer = QuadratureTreeExplainer(FrozenEstimator(model)).fit(NAN_ROWS)
    with pytest.raises(TypeError) as ours:
        explainer.transform(CSR)
    assert str(ours.value) == str(theirs.value)
    assert not get_tags(explainer).input_tags.sparse
    # and behind a Pipeline whose preprocessing passes sparse rows on
    pipe = make_pipeline(StandardScaler(with_mean=False), model).fit(NAN_ROWS, Y)
    explainer = QuadratureTreeExplainer(FrozenEstimator(pipe)).fit(NAN_ROWS)
    with pytest.raises(TypeError) as ours:
        explainer.transform(CSR)
    assert str(ours.value) == str(theirs.value)


def test_pipeline_with_sparse_one_hot_features_explains_xgboost_exactly():
    # OneHotEncoder makes a CSR matrix: XGBoost reads its absent entries as missing
    cats = np.random.default_rng(1).integers(0, 5, size=(N, 3)).astype(float)
    y = cats[:, 0] * 2 + (cats[:, 1] == 3) + np.random.default_rng(2).normal(size=N)
    pipe = make_pipeline(
        OneHotEncoder(), xgb.XGBRegressor(n_estimators=20, max_depth=4, n_jobs=1)
    ).fit(cats, y)
    explainer = QuadratureTreeExplainer(FrozenEstimator(pipe)).fit(cats)
    features = pipe[0].transform(cats[:60])
    contribs = _contribs(pipe[-1], features)
    np.testing.assert_allclose(
        explainer.transform(cats[:60]), contribs[:, :-1], atol=2e-5
    )


def test_dmatrix_is_refused():
    model = xgb.XGBRegressor(n_estimators=5, max_depth=3, n_jobs=1).fit(CSR, Y)
    with pytest.raises(TypeError, match="xgboost.DMatrix.*the array, DataFrame or"):
        QuadratureTreeExplainer(FrozenEstimator(model)).fit(xgb.DMatrix(CSR))
    explainer = QuadratureTreeExplainer(FrozenEstimator(model)).fit(CSR)
    for method in (explainer.transform, explainer.explain, explainer.interactions):
        with pytest.raises(TypeError, match="xgboost.DMatrix"):
            method(xgb.DMatrix(CSR[:5]))


def test_booster_trained_with_missing_zero():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(N, D)).astype(np.float32).astype(np.float64)
    X[rng.random(X.shape) < 0.3] = 0.0
    X[rng.random(X.shape) < 0.05] = np.nan
    y = np.nan_to_num(X) @ np.arange(1.0, D + 1) + (X[:, 1] == 0) * 3
    booster = xgb.train(
        {"max_depth": 4, "nthread": 1},
        xgb.DMatrix(X, label=y, missing=0.0),
        num_boost_round=20,
    )
    rows = X[:80]
    contribs = booster.predict(xgb.DMatrix(rows, missing=0.0), pred_contribs=True)
    margin = booster.predict(xgb.DMatrix(rows, missing=0.0), output_margin=True)
    scale = np.abs(contribs).max()
    exact = QuadratureTreeExplainer(booster, missing=0.0).fit(X)
    exp = exact.explain(rows)
    np.testing.assert_allclose(exp.values, contribs[:, :-1], atol=2e-5 * scale)
    np.testing.assert_allclose(
        exp.base_values + exp.values.sum(axis=1), margin, atol=1e-4
    )
    # interventional: the same mapping for the rows and the background
    inter = QuadratureTreeExplainer(
        booster, missing=0.0, feature_perturbation="interventional", background=X[:30]
    ).fit(X)
    full = inter.explain(rows)
    np.testing.assert_allclose(
        full.base_values + full.values.sum(axis=1), margin, atol=1e-4
    )
    with_nan = np.where(X == 0.0, np.nan, X)
    np.testing.assert_array_equal(
        inter.transform(rows),
        QuadratureTreeExplainer(
            booster, feature_perturbation="interventional", background=with_nan[:30]
        )
        .fit(with_nan)
        .transform(with_nan[:80]),
    )
    # without missing=0.0 the zeros are explained as values: another function
    wrong = QuadratureTreeExplainer(booster).fit(X).transform(rows)
    assert np.abs(wrong - contribs[:, :-1]).max() > 1e-2 * scale


def test_missing_of_xgboost_sklearn_models_is_read_from_the_model():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(N, D))
    X[rng.random(X.shape) < 0.3] = 0.0
    y = X @ np.arange(1.0, D + 1) + (X[:, 2] == 0) * 3
    model = xgb.XGBRegressor(n_estimators=15, max_depth=4, missing=0.0, n_jobs=1)
    model.fit(X, y)
    explainer = QuadratureTreeExplainer(FrozenEstimator(model)).fit(X)
    assert explainer.ensemble_.missing_value == 0.0
    contribs = model.get_booster().predict(
        xgb.DMatrix(X[:60], missing=0.0), pred_contribs=True
    )
    np.testing.assert_allclose(
        explainer.transform(X[:60]),
        contribs[:, :-1],
        atol=2e-5 * np.abs(contribs).max(),
    )
    # the same value may be repeated; another one is refused, as for other libraries
    QuadratureTreeExplainer(FrozenEstimator(model), missing=0.0).fit(X)
    with pytest.raises(ValueError, match="differs from the XGBRegressor's own"):
        QuadratureTreeExplainer(FrozenEstimator(model), missing=-1.0).fit(X)
    forest = RandomForestRegressor(n_estimators=2).fit(X, y)
    with pytest.raises(ValueError, match="missing=0.0 is for XGBoost models"):
        QuadratureTreeExplainer(FrozenEstimator(forest), missing=0.0).fit(X)


def test_large_sparse_rows_are_made_dense_a_block_at_a_time(monkeypatch):
    model = xgb.XGBRegressor(n_estimators=10, max_depth=4, n_jobs=1).fit(CSR, Y)

    def results(perturbation):
        explainer = QuadratureTreeExplainer(
            FrozenEstimator(model), feature_perturbation=perturbation
        ).fit(CSR)
        exp = explainer.explain(CSR)
        out = [exp.values, exp.base_values, exp.data, explainer.explained_output(CSR)]
        out.append(explainer.interactions(CSR[:40]))
        if perturbation == "tree_path_dependent":
            out.append(explainer.interactions(CSR[:40], order=3, dense=True))
        return out

    perturbations = ("tree_path_dependent", "interventional")
    expected = {p: results(p) for p in perturbations}
    blocks = []
    dense_rows = _flat.dense_rows

    def spy(flat, X):
        blocks.append(X.shape[0])
        return dense_rows(flat, X)

    monkeypatch.setattr(_flat, "SPARSE_BLOCK_BYTES", 7 * 8 * D)  # 7 rows a block
    monkeypatch.setattr(_flat, "dense_rows", spy)
    for perturbation in perturbations:
        blocks.clear()
        got = results(perturbation)
        assert max(blocks) == 7 and blocks.count(7) >= N // 7
        for ours, theirs in zip(got, expected[perturbation], strict=True):
            assert np.array_equal(ours, theirs, equal_nan=True)
