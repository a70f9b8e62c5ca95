"""The per-call set-up of QuadratureTreeExplainer on small calls: what a new explainer
on an unchanged model reuses (the XGBoost read found by its booster, the kernel's
prepared data kept with the ensemble), what still detects a changed model, and that
the values stay bit-identical."""

import gc

import numpy as np
import pytest
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.frozen import FrozenEstimator
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_shapley import QuadratureTreeExplainer
from sklearn_shapley._base import FINGERPRINT_QUANTILES, _fingerprint_rows
from sklearn_shapley.tree import _kernel
from sklearn_shapley.tree import _xgboost as xgb_reader
from sklearn_shapley.tree._ensemble import flatten_ensemble
from sklearn_shapley.tree._flat import predict_raw


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 6))
    y = X[:, 0] + np.sin(2 * X[:, 1]) * X[:, 2] + 0.1 * rng.normal(size=300)
    return X, y


def _fresh_values(model, X, missing=None):
    """The kernel's values on a model read from its JSON now, data prepared now."""
    import xgboost as xgb

    booster = model.get_booster() if isinstance(model, xgb.XGBModel) else model
    flat = xgb_reader._read_booster(booster, *xgb_reader._resolve(model, missing)[1:])
    return _kernel.shap_values(flat, X)[..., 0]


class _SaveCounter:
    """Counts ``Booster.save_raw`` calls (the hashed read's cost)."""

    def __init__(self, monkeypatch, xgb):
        self.calls = 0
        original = xgb.Booster.save_raw

        def save_raw(booster, *args, **kwargs):
            self.calls += 1
            return original(booster, *args, **kwargs)

        monkeypatch.setattr(xgb.Booster, "save_raw", save_raw)


def test_a_new_explainer_on_the_same_xgboost_model_skips_hashing_it(data, monkeypatch):
    xgb = pytest.importorskip("xgboost")
    X, y = data
    model = xgb.XGBRegressor(n_estimators=20, max_depth=3).fit(X, y)
    first = QuadratureTreeExplainer(FrozenEstimator(model)).fit(X)
    counter = _SaveCounter(monkeypatch, xgb)
    second = QuadratureTreeExplainer(FrozenEstimator(model), n_jobs=2).fit(X[:50])
    assert counter.calls == 0  # found by its booster, checked by its margin
    assert second.ensemble_ is first.ensemble_
    values = second.transform(X[:50])
    assert second._kernel_data(1) is first._kernel_data(1)  # kept with the ensemble
    np.testing.assert_array_equal(values, first.transform(X[:50]))
    np.testing.assert_array_equal(values, _fresh_values(model, X[:50]))


def test_an_xgboost_booster_changed_in_place_is_read_again(data, monkeypatch):
    xgb = pytest.importorskip("xgboost")
    X, y = data
    dtrain = xgb.DMatrix(X, label=y)
    params = {"max_depth": 3, "eta": 0.3}
    booster = xgb.train(params, dtrain, num_boost_round=10)
    other = xgb.train({**params, "eta": 0.5}, dtrain, num_boost_round=10)
    first = QuadratureTreeExplainer(booster).fit(X)

    # another model of as many rounds loaded into the same Booster object: the
    # margin check fails, the model is read again by its bytes
    booster.load_model(bytearray(other.save_raw(raw_format="ubj")))
    counter = _SaveCounter(monkeypatch, xgb)
    second = QuadratureTreeExplainer(booster).fit(X)
    assert counter.calls >= 1
    assert second.ensemble_ is not first.ensemble_
    np.testing.assert_array_equal(
        second.transform(X[:30]), _fresh_values(other, X[:30])
    )

    # one more round in place: another number of rounds, read again
    booster.update(dtrain, 10)
    third = QuadratureTreeExplainer(booster).fit(X)
    assert third.ensemble_.n_trees == 11
    np.testing.assert_array_equal(
        third.transform(X[:30]), _fresh_values(booster, X[:30])
    )
    np.testing.assert_allclose(
        predict_raw(third.ensemble_, X)[:, 0],
        booster.predict(xgb.DMatrix(X), output_margin=True),
        rtol=1e-5,
        atol=1e-5,
    )


@pytest.mark.parametrize("change", ["refit", "update", "load_model"])
def test_an_xgboost_model_changed_after_fit_is_refused(data, change):
    xgb = pytest.importorskip("xgboost")
    X, y = data
    model = xgb.XGBRegressor(n_estimators=10, max_depth=3).fit(X, y)
    explainer = QuadratureTreeExplainer(FrozenEstimator(model)).fit(X)
    explainer.transform(X[:3])
    if change == "refit":
        model.fit(X, -y)
    elif change == "update":
        model.get_booster().update(xgb.DMatrix(X, label=y), 10)
    else:
        other = xgb.XGBRegressor(n_estimators=10, max_depth=3).fit(X, y**2)
        model.get_booster().load_model(bytearray(other.get_booster().save_raw()))
    with pytest.raises(ValueError, match="changed after fit"):
        explainer.transform(X[:3])
    explainer.fit(X)  # explains the model as it is now
    np.testing.assert_array_equal(
        explainer.transform(X[:5]), _fresh_values(model, X[:5])
    )


def test_the_fingerprint_keeps_fits_missing_value(data):
    # a bare Booster's margin depends on `missing`: set again after fit, it must
    # not look like a changed model (the explainer explains fit's until refitted)
    xgb = pytest.importorskip("xgboost")
    X, y = data
    X = X.copy()
    X[::2, 0] = 0.0  # the median of feature 0 is a missing value
    y = 3 * np.abs(X[:, 0]) + y
    booster = xgb.train({"max_depth": 3}, xgb.DMatrix(X, label=y, missing=0.0), 10)
    explainer = QuadratureTreeExplainer(booster, missing=0.0).fit(X)
    rows = explainer._model_fingerprint[0]
    assert not np.array_equal(  # the fingerprint depends on `missing`
        xgb_reader.xgboost_margin(booster, rows, 0.0),
        xgb_reader.xgboost_margin(booster, rows, None),
    )
    values = explainer.transform(X[:20])
    explainer.set_params(missing=None)
    np.testing.assert_array_equal(explainer.transform(X[:20]), values)
    np.testing.assert_array_equal(values, _fresh_values(booster, X[:20], 0.0))


def test_the_read_probe_must_match_bit_for_bit(data, monkeypatch):
    xgb = pytest.importorskip("xgboost")
    X, y = data
    model = xgb.XGBRegressor(n_estimators=20, max_depth=3).fit(X, 100 * y)
    assert xgb_reader.probe_rows(model) is None  # never read with a probe
    rows = _fingerprint_rows(X)
    margins = xgb_reader.xgboost_margin(model, rows)
    assert margins.shape == (len(rows), 1)
    flat = xgb_reader.read_xgboost(model, probe=(rows, margins))
    kept = xgb_reader.probe_rows(model)
    np.testing.assert_array_equal(kept, rows)
    assert not kept.flags.writeable
    again = xgb_reader.xgboost_margin(model, kept)
    np.testing.assert_array_equal(again, margins)  # the booster is deterministic
    counter = _SaveCounter(monkeypatch, xgb)
    assert xgb_reader.read_xgboost(model, probe=(kept, again)) is flat
    assert counter.calls == 0
    # one float32 ulp off, or other rows: read by the bytes (found there)
    off = np.nextafter(again.astype(np.float32), np.float32(np.inf)).astype(float)
    assert xgb_reader.read_xgboost(model, probe=(kept, off)) is flat
    assert counter.calls == 1
    assert xgb_reader.read_xgboost(model, probe=(X[:5], again)) is flat
    assert counter.calls == 2
    # without a probe: by the bytes, and the next probe does not match
    assert xgb_reader.read_xgboost(model) is flat
    assert counter.calls == 3
    assert xgb_reader.probe_rows(model) is None
    # the explainer's fingerprint probes the kept rows: no hashing after the first
    QuadratureTreeExplainer(FrozenEstimator(model)).fit(X)
    calls = counter.calls
    explainer = QuadratureTreeExplainer(FrozenEstimator(model)).fit(X[100:])
    assert counter.calls == calls
    np.testing.assert_array_equal(
        explainer._model_fingerprint[0], xgb_reader.probe_rows(model)
    )


def test_xgboost_multiclass_and_early_stopping_take_the_probe(data, monkeypatch):
    xgb = pytest.importorskip("xgboost")
    X, y = data
    classes = np.digitize(y, [-0.5, 0.5])
    model = xgb.XGBClassifier(
        n_estimators=30, max_depth=3, early_stopping_rounds=3, eval_metric="mlogloss"
    ).fit(X[:200], classes[:200], eval_set=[(X[200:], classes[200:])], verbose=False)
    first = QuadratureTreeExplainer(FrozenEstimator(model)).fit(X)
    counter = _SaveCounter(monkeypatch, xgb)
    second = QuadratureTreeExplainer(FrozenEstimator(model)).fit(X)
    assert counter.calls == 0
    assert second.ensemble_ is first.ensemble_
    np.testing.assert_array_equal(second.transform(X[:20]), first.transform(X[:20]))


def test_tree_models_are_fingerprinted_with_one_call(data, monkeypatch):
    X, y = data
    calls = []
    original = QuadratureTreeExplainer._fingerprint_outputs

    def counting(self, rows):
        calls.append(len(rows))
        return original(self, rows)

    monkeypatch.setattr(QuadratureTreeExplainer, "_fingerprint_outputs", counting)
    model = GradientBoostingRegressor(n_estimators=5, random_state=0).fit(X, y)
    QuadratureTreeExplainer(FrozenEstimator(model)).fit(X)
    assert len(calls) == 1
    # a Pipeline's steps are not known to be deterministic: asked twice
    calls.clear()
    pipe = make_pipeline(StandardScaler(), GradientBoostingRegressor(n_estimators=5))
    QuadratureTreeExplainer(FrozenEstimator(pipe.fit(X, y))).fit(X)
    assert len(calls) == 2


def test_the_kernel_data_kept_with_an_ensemble_is_dropped_with_it(data):
    X, y = data
    model = GradientBoostingRegressor(n_estimators=5, random_state=0).fit(X, y)
    flat = flatten_ensemble(model)
    kd = _kernel.prepare_kept(flat, 1)
    assert _kernel.prepare_kept(flat, 1) is kd
    assert _kernel.prepare_kept(flat, 2) is not kd
    assert _kernel.prepare_kept(flat, 1, index="banzhaf") is not kd
    np.testing.assert_array_equal(
        _kernel.shap_values(flat, X[:20], prepared=kd),
        _kernel.shap_values(flat, X[:20]),
    )
    base = _kernel.expected_value_kept(flat)
    base[0] = np.inf  # a copy: the kept one is not changed
    np.testing.assert_array_equal(
        _kernel.expected_value_kept(flat), _kernel.expected_value(flat)
    )
    key = id(flat)
    assert key in _kernel._KEPT
    del flat, kd
    gc.collect()
    assert key not in _kernel._KEPT


def test_small_calls_run_on_one_thread_with_the_same_values(data):
    X, y = data
    assert _kernel._n_threads(2, 4, 4_000) == 1
    assert _kernel._n_threads(2, 50, 6_000) == 2
    assert _kernel._n_threads(1, 10_000, 20_000) == 1
    assert _kernel._n_threads(2, 1, 10**9) == 1
    assert _kernel._n_threads(2, 10_000) == 2  # no cap without the node count
    model = GradientBoostingRegressor(n_estimators=50, random_state=0).fit(X, y)
    flat = flatten_ensemble(model)
    assert _kernel._n_threads(2, 20, flat.n_nodes) == 1
    one = _kernel.shap_values(flat, X, n_threads=1)
    assert _kernel._n_threads(2, len(X), flat.n_nodes) == 2
    np.testing.assert_array_equal(_kernel.shap_values(flat, X, n_threads=2), one)
    np.testing.assert_array_equal(
        _kernel.shap_values(flat, X[:7], n_threads=2), one[:7]
    )


@pytest.mark.parametrize("n_rows", [1, 2, 3, 5, 10, 51, 1000])
def test_fingerprint_rows_are_the_nan_quantiles(n_rows):
    rng = np.random.default_rng(n_rows)
    X = np.round(rng.normal(size=(n_rows, 7)), 1)
    expected = np.nanquantile(X, FINGERPRINT_QUANTILES, axis=0, method="nearest")
    np.testing.assert_array_equal(_fingerprint_rows(X), expected)
    assert _fingerprint_rows(X.astype(np.float32)).dtype == np.float32
    X[::2, 1] = np.nan
    X[:, 4] = np.nan
    with np.errstate(all="ignore"), pytest.warns(RuntimeWarning):
        expected = np.nanquantile(X, FINGERPRINT_QUANTILES, axis=0, method="nearest")
    np.testing.assert_array_equal(_fingerprint_rows(X), expected)
