"""Tests of the tree-ensemble readers against the models' own raw predictions."""

import json

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    IsolationForest,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.exceptions import NotFittedError
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LinearRegression
from sklearn.tree import (
    DecisionTreeClassifier,
    DecisionTreeRegressor,
    ExtraTreeClassifier,
    ExtraTreeRegressor,
)
from threadpoolctl import threadpool_limits

from sklearn_shapley.tree import _flat
from sklearn_shapley.tree._ensemble import SUPPORTED_MODELS, flatten_ensemble
from sklearn_shapley.tree._flat import FlatEnsemble, predict_raw
from sklearn_shapley.tree._xgboost import _parse_xgb_base_score

N = 240
RNG = np.random.default_rng(0)
X = RNG.normal(size=(N, 5))
Y = X[:, 0] + X[:, 1] ** 2 + 0.1 * RNG.normal(size=N)
Y_BIN = (X[:, 0] + X[:, 2] > 0).astype(int)
Y_MULTI = np.digitize(X[:, 0] + 0.5 * X[:, 3], [-0.5, 0.5])
Y_2D = np.c_[Y, X[:, 2] - X[:, 4]]
X_NAN = X.copy()
X_NAN[RNG.random(X.shape) < 0.12] = np.nan
# A categorical column (raw values, not consecutive) for the categorical tests.
CATS = RNG.choice([0, 1, 3, 4, 7, 8, 10, 12], size=N).astype(float)
X_CAT = X_NAN.copy()
X_CAT[:, 4] = CATS
X_CAT[RNG.random(N) < 0.1, 4] = np.nan
Y_CAT = np.nan_to_num(X_CAT[:, 0]) + 2.0 * np.isin(CATS, [1, 4, 10]) + (CATS == 7)


def _test_X_cat(codes_max=12):
    """Test rows for categorical models: unseen, large and negative categories too."""
    Xt = X_CAT.copy()
    Xt[:8, 4] = [-1, 2, 5, codes_max + 1, 40, 100, -7, 3.7]
    Xt[8:12, 4] = np.nan
    return Xt


@pytest.fixture(autouse=True, scope="module")
def _single_openmp_thread():
    """The models are tiny: OpenMP thread start-up would dominate the run time."""
    with threadpool_limits(limits=1, user_api="openmp"):
        try:
            import xgboost
        except ImportError:
            yield
            return
        with xgboost.config_context(nthread=1):
            yield


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------

_DTYPES = {
    "tree_offsets": np.int64,
    "children_left": np.int64,
    "children_right": np.int64,
    "feature": np.int64,
    "threshold": np.float64,
    "missing_left": np.uint8,
    "split_kind": np.uint8,
    "cat_start": np.int64,
    "cat_len": np.int64,
    "cat_bitsets": np.uint32,
    "cover": np.float64,
    "value": np.float64,
    "tree_group": np.int64,
    "base_offset": np.float64,
}


def check_contract(flat):
    """Dtypes, contiguity, structure and covers of a FlatEnsemble."""
    assert isinstance(flat, FlatEnsemble)
    for name, dtype in _DTYPES.items():
        arr = getattr(flat, name)
        assert arr.dtype == dtype, (name, arr.dtype)
        assert arr.flags.c_contiguous, name
    n_nodes, n_trees, n_out = flat.n_nodes, flat.n_trees, flat.n_outputs
    assert flat.value.shape == (n_nodes, n_out)
    assert flat.base_offset.shape == (n_out,)
    assert flat.tree_group.shape == (n_trees,)
    assert flat.tree_offsets[0] == 0 and flat.tree_offsets[-1] == n_nodes
    assert np.all(np.diff(flat.tree_offsets) >= 1)
    assert np.all((flat.tree_group >= -1) & (flat.tree_group < n_out))
    assert flat.decision_dtype in (np.float32, np.float64)
    assert len(flat.output_names) == n_out
    for name in (
        "children_left",
        "children_right",
        "feature",
        "threshold",
        "missing_left",
        "split_kind",
        "cat_start",
        "cat_len",
        "cover",
    ):
        assert getattr(flat, name).shape == (n_nodes,), name
    left, right = flat.children_left, flat.children_right
    leaf = left < 0
    assert np.array_equal(leaf, right < 0)
    assert np.all(flat.feature[leaf] == -1)
    assert np.all((flat.feature[~leaf] >= 0) & (flat.feature[~leaf] < flat.n_features))
    assert np.all(flat.value[~leaf] == 0.0)
    tree_of = np.repeat(np.arange(n_trees), np.diff(flat.tree_offsets))
    internal = np.flatnonzero(~leaf)
    for child in (left[internal], right[internal]):
        assert np.all(tree_of[child] == tree_of[internal])
        assert np.all(child > internal)
    # every non-root node has exactly one parent
    parents = np.zeros(n_nodes, dtype=int)
    np.add.at(parents, left[internal], 1)
    np.add.at(parents, right[internal], 1)
    roots = flat.tree_offsets[:-1]
    assert np.all(parents[roots] == 0)
    parents[roots] = 1
    assert np.all(parents == 1)
    # covers: positive, children no larger than the parent
    assert np.all(np.isfinite(flat.cover)) and np.all(flat.cover > 0)
    for child in (left[internal], right[internal]):
        assert np.all(flat.cover[child] <= flat.cover[internal] * (1 + 1e-12))
    cat = flat.split_kind == _flat.CATEGORICAL_SPLIT
    assert np.all(flat.cat_start[cat] + flat.cat_len[cat] <= flat.cat_bitsets.size)
    assert np.all(flat.cat_len[cat] >= 0)


def check_model(model, X_test, reference, rtol=1e-6):
    """The flat ensemble's raw output equals the model's own raw output."""
    flat = flatten_ensemble(model)
    check_contract(flat)
    expected = np.asarray(reference, dtype=np.float64).reshape(len(X_test), -1)
    got = predict_raw(flat, X_test)
    assert got.shape == expected.shape
    scale = max(1.0, float(np.abs(expected).max()))
    assert_allclose(got, expected, rtol=rtol, atol=rtol * scale)
    return flat


# --------------------------------------------------------------------------------------
# predict_raw itself
# --------------------------------------------------------------------------------------


def test_predict_raw_decision_rule():
    # tree 0: numeric split on f0 (NaN left); tree 1: categorical on f1 ({1, 33} left,
    # NaN right), adding to output 1 only; base offset (0.5, -1).
    cat_bits = np.array([0b10, 0b10], dtype=np.uint32)  # categories 1 and 33
    flat = FlatEnsemble(
        tree_offsets=np.array([0, 3, 6]),
        children_left=np.array([1, -1, -1, 4, -1, -1]),
        children_right=np.array([2, -1, -1, 5, -1, -1]),
        feature=np.array([0, -1, -1, 1, -1, -1]),
        threshold=np.array([0.25, 0, 0, 0, 0, 0.0]),
        missing_left=np.array([1, 0, 0, 0, 0, 0], dtype=np.uint8),
        split_kind=np.array([0, 0, 0, 1, 0, 0], dtype=np.uint8),
        cat_start=np.array([0, 0, 0, 0, 0, 0]),
        cat_len=np.array([0, 0, 0, 2, 0, 0]),
        cat_bitsets=cat_bits,
        cover=np.array([4.0, 3, 1, 4, 2, 2]),
        value=np.array([[0, 0], [1, 10], [2, 20], [0, 0], [0, 100], [0, 200.0]]),
        tree_group=np.array([-1, 1]),
        base_offset=np.array([0.5, -1.0]),
        n_features=2,
        decision_dtype=np.float64,
    )
    Xt = np.array(
        [
            [0.25, 1.0],  # left, category 1 -> left
            [0.3, 33.9],  # right, 33 -> left
            [np.nan, 2.0],  # NaN left, category 2 -> right
            [-1.0, np.nan],  # left, NaN -> right
            [1.0, -1.0],  # right, negative -> right
            [1.0, 64.0],  # right, out of range -> right
            [1.0, 0.5],  # right, category 0 -> right
        ]
    )
    expected = np.array(
        [
            [1.5, 10 + 100 - 1],
            [2.5, 20 + 100 - 1],
            [1.5, 10 + 200 - 1],
            [1.5, 10 + 200 - 1],
            [2.5, 20 + 200 - 1],
            [2.5, 20 + 200 - 1],
            [2.5, 20 + 200 - 1],
        ]
    )
    assert_allclose(predict_raw(flat, Xt), expected)
    assert_allclose(predict_raw(flat, Xt, chunk_size=2), expected)


def test_predict_raw_float32_threshold():
    # In float32, 0.1 + 1e-9 rounds to float32(0.1): it goes left of threshold 0.1f.
    t = float(np.float32(0.1))
    flat = FlatEnsemble(
        tree_offsets=np.array([0, 3]),
        children_left=np.array([1, -1, -1]),
        children_right=np.array([2, -1, -1]),
        feature=np.array([0, -1, -1]),
        threshold=np.array([t, 0, 0]),
        missing_left=np.zeros(3, dtype=np.uint8),
        split_kind=np.zeros(3, dtype=np.uint8),
        cat_start=np.zeros(3, dtype=np.int64),
        cat_len=np.zeros(3, dtype=np.int64),
        cat_bitsets=np.zeros(0, dtype=np.uint32),
        cover=np.array([2.0, 1, 1]),
        value=np.array([[0.0], [1.0], [2.0]]),
        tree_group=np.array([0]),
        base_offset=np.zeros(1),
        n_features=1,
        decision_dtype=np.float32,
    )
    assert predict_raw(flat, [[t + 1e-9]])[0, 0] == 1.0
    flat.decision_dtype = np.float64
    assert predict_raw(flat, [[t + 1e-9]])[0, 0] == 2.0


# --------------------------------------------------------------------------------------
# scikit-learn
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "model, y",
    [
        (DecisionTreeRegressor(max_depth=5, random_state=0), Y),
        (DecisionTreeRegressor(max_depth=4, random_state=0), Y_2D),
        (ExtraTreeRegressor(max_depth=5, random_state=0), Y),
        (RandomForestRegressor(n_estimators=4, max_depth=4, random_state=0), Y),
        (RandomForestRegressor(n_estimators=3, max_depth=4, random_state=0), Y_2D),
        (ExtraTreesRegressor(n_estimators=4, max_depth=4, random_state=0), Y_2D),
    ],
    ids=lambda v: type(v).__name__ if hasattr(v, "fit") else None,
)
def test_sklearn_regressors(model, y):
    model.fit(X, y)
    flat = check_model(model, X_NAN, model.predict(X_NAN), rtol=1e-12)
    assert flat.decision_dtype is np.float32
    assert np.all(flat.tree_group == -1)
    assert flat.n_outputs == (1 if y.ndim == 1 else y.shape[1])


@pytest.mark.parametrize(
    "model, y",
    [
        (DecisionTreeClassifier(max_depth=4, random_state=0), Y_BIN),
        (ExtraTreeClassifier(max_depth=5, random_state=0), Y_MULTI),
        (RandomForestClassifier(n_estimators=4, max_depth=4, random_state=0), Y_BIN),
        (RandomForestClassifier(n_estimators=4, max_depth=4, random_state=0), Y_MULTI),
        (ExtraTreesClassifier(n_estimators=4, max_depth=4, random_state=0), Y_MULTI),
    ],
    ids=lambda v: type(v).__name__ if hasattr(v, "fit") else None,
)
def test_sklearn_classifiers(model, y):
    model.fit(X_NAN, y)  # trained with missing values
    flat = check_model(model, X_NAN, model.predict_proba(X_NAN), rtol=1e-12)
    assert flat.n_outputs == len(model.classes_)  # binary keeps both columns
    assert np.all(flat.tree_group == -1)


def test_sklearn_multioutput_classifier():
    model = RandomForestClassifier(n_estimators=3, max_depth=4, random_state=0)
    model.fit(X, np.c_[Y_BIN, Y_MULTI])
    flat = check_model(model, X, np.hstack(model.predict_proba(X)), rtol=1e-12)
    assert flat.n_outputs == 2 + 3


def test_sklearn_sample_weight_cover():
    w = RNG.uniform(0.5, 2.0, size=N)
    model = RandomForestRegressor(n_estimators=3, max_depth=4, random_state=0)
    model.fit(X, Y, sample_weight=w)
    flat = check_model(model, X, model.predict(X), rtol=1e-12)
    first = model.estimators_[0].tree_
    assert_allclose(flat.cover[: first.node_count], first.weighted_n_node_samples)


@pytest.mark.parametrize(
    "model, y",
    [
        (GradientBoostingRegressor(n_estimators=6, max_depth=3, random_state=0), Y),
        (
            GradientBoostingRegressor(
                n_estimators=6, loss="huber", subsample=0.7, random_state=0
            ),
            Y,
        ),
        (GradientBoostingRegressor(n_estimators=4, init="zero", random_state=0), Y),
        (GradientBoostingClassifier(n_estimators=6, random_state=0), Y_BIN),
        (GradientBoostingClassifier(n_estimators=4, random_state=0), Y_MULTI),
    ],
    ids=lambda v: type(v).__name__ if hasattr(v, "fit") else None,
)
def test_sklearn_gradient_boosting(model, y):
    model.fit(X, y)
    ref = model.decision_function(X) if hasattr(model, "classes_") else model.predict(X)
    flat = check_model(model, X, ref, rtol=1e-12)
    n_groups = model.estimators_.shape[1]
    assert flat.n_outputs == n_groups
    assert_allclose(flat.base_offset, model._raw_predict_init(X[:1])[0])
    assert np.array_equal(flat.tree_group, np.tile(np.arange(n_groups), len(model)))
    # base_offset is the raw output at zero trees: first stage minus its trees
    staged = (
        model.staged_decision_function
        if hasattr(model, "classes_")
        else model.staged_predict
    )
    first = np.asarray(next(staged(X)), dtype=np.float64).reshape(N, -1)
    trees = np.column_stack([t.predict(X) for t in model.estimators_[0]])
    assert_allclose(
        first - model.learning_rate * trees, np.tile(flat.base_offset, (N, 1))
    )


def test_sklearn_gradient_boosting_custom_init_not_implemented():
    from sklearn.dummy import DummyClassifier

    for model, y in [
        (GradientBoostingRegressor(n_estimators=2, init=LinearRegression()), Y),
        (
            GradientBoostingClassifier(
                n_estimators=2, init=DummyClassifier(strategy="stratified")
            ),
            Y_BIN,
        ),
    ]:
        model.fit(X, y)
        with pytest.raises(NotImplementedError, match="init"):
            flatten_ensemble(model)


@pytest.mark.parametrize(
    "model, y",
    [
        (HistGradientBoostingRegressor(max_iter=6, max_leaf_nodes=8), Y),
        (HistGradientBoostingClassifier(max_iter=6, max_leaf_nodes=8), Y_BIN),
        (HistGradientBoostingClassifier(max_iter=4, max_leaf_nodes=8), Y_MULTI),
    ],
    ids=lambda v: type(v).__name__ if hasattr(v, "fit") else None,
)
def test_sklearn_hist_gradient_boosting(model, y):
    model.fit(X_NAN, y)
    ref = model._raw_predict(X_NAN)
    if hasattr(model, "classes_"):
        assert_allclose(
            ref.reshape(N, -1), model.decision_function(X_NAN).reshape(N, -1)
        )
    flat = check_model(model, X_NAN, ref, rtol=1e-12)
    assert flat.decision_dtype is np.float64
    assert flat.n_outputs == (3 if len(getattr(model, "classes_", [])) == 3 else 1)
    assert_allclose(flat.base_offset, np.ravel(model._baseline_prediction))


@pytest.mark.parametrize("seed", [0, 1])
def test_sklearn_hist_gradient_boosting_categorical(seed):
    model = HistGradientBoostingRegressor(
        max_iter=8, max_leaf_nodes=8, categorical_features=[4], random_state=seed
    ).fit(X_CAT, Y_CAT)
    n_swapped = sum(
        int(
            np.sum(
                (p.nodes["is_categorical"] == 1) & (p.nodes["missing_go_to_left"] == 1)
            )
        )
        for preds in model._predictors
        for p in preds
    )
    Xt = _test_X_cat()
    Xt[7, 4] = 6.0  # HGB sends non-integer values (3.7) the missing way, unlike int()
    flat = check_model(model, Xt, model.predict(Xt), rtol=1e-12)
    assert np.any(flat.split_kind == _flat.CATEGORICAL_SPLIT)
    # categorical features are mapped back to their input column
    assert set(flat.feature[flat.split_kind == 1]) == {4}
    if seed == 0:
        assert n_swapped > 0  # children swapped where unknown categories go left


def test_sklearn_hist_gradient_boosting_pandas_categories():
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame(
        {
            "a": X_NAN[:, 0],
            "s": pd.Categorical(RNG.choice(list("pqrstu"), N)),
            "b": X_NAN[:, 1],
            "n": pd.Categorical(RNG.choice([5, 9, 11], N)),
        }
    )
    y = (df.s.isin(["p", "r"]).to_numpy() + (df.n == 9).to_numpy() + (df.a > 0)).astype(
        int
    )
    model = HistGradientBoostingClassifier(
        max_iter=4, max_leaf_nodes=8, categorical_features="from_dtype"
    ).fit(df, y)
    encoder = model._preprocessor.named_transformers_["encoder"]
    # string categories: their index in the encoder's categories; integer ones: raw
    s_codes = df.s.map({c: i for i, c in enumerate(encoder.categories_[0])})
    Xt = np.c_[df.a, s_codes.astype(float), df.b, df.n.astype(float)]
    flat = check_model(model, Xt, model.decision_function(df), rtol=1e-12)
    assert {1, 3} <= set(flat.feature[flat.split_kind == 1])


def test_sklearn_isolation_forest():
    from sklearn.ensemble._iforest import _average_path_length

    for max_features in (1.0, 3):
        model = IsolationForest(
            n_estimators=8, max_features=max_features, random_state=0
        ).fit(X_NAN)
        c = _average_path_length([model.max_samples_])[0]
        ref = -np.log2(-model.score_samples(X_NAN)) * c
        check_model(model, X_NAN, ref, rtol=1e-10)


# --------------------------------------------------------------------------------------
# XGBoost
# --------------------------------------------------------------------------------------


def _xgb_margin(model, X_test):
    xgb = pytest.importorskip("xgboost")
    if isinstance(model, xgb.Booster):
        return model.predict(xgb.DMatrix(X_test), output_margin=True)
    return model.predict(X_test, output_margin=True)


@pytest.mark.parametrize(
    "objective, base_score",
    [
        ("reg:squarederror", None),
        ("reg:squarederror", 0.3),
        ("binary:logistic", None),
        ("binary:logistic", 0.3),
        ("binary:logitraw", 0.3),
        ("count:poisson", None),
        ("reg:gamma", 2.0),
        ("multi:softprob", None),
        ("multi:softmax", 0.3),
    ],
)
def test_xgboost_objectives_and_base_score(objective, base_score):
    xgb = pytest.importorskip("xgboost")
    y = {
        "reg": Y,
        "bin": Y_BIN,
        "cou": RNG.poisson(np.exp(0.5 * X[:, 0])),
        "mul": Y_MULTI,
    }[objective[:3]]
    if objective == "reg:gamma":
        y = np.exp(0.3 * Y)
    params = {"objective": objective, "max_depth": 3, "eta": 0.3}
    if objective.startswith("multi"):
        params["num_class"] = 3
    if base_score is not None:
        params["base_score"] = base_score
    booster = xgb.train(params, xgb.DMatrix(X_NAN, label=y), num_boost_round=3)
    flat = check_model(booster, X_NAN, _xgb_margin(booster, X_NAN))
    assert flat.decision_dtype is np.float32
    stored = json.loads(booster.save_config())["learner"]["learner_model_param"]
    bs = _parse_xgb_base_score(stored["base_score"])
    if base_score is not None:
        assert_allclose(bs, base_score, rtol=1e-6)
    if objective == "binary:logistic":
        assert_allclose(flat.base_offset, np.log(bs / (1 - bs)), rtol=1e-6)
    elif objective in ("count:poisson", "reg:gamma"):
        assert_allclose(flat.base_offset, np.log(bs), rtol=1e-6, atol=1e-7)
    else:
        assert_allclose(
            flat.base_offset, np.broadcast_to(bs, flat.n_outputs), rtol=1e-7
        )
    if objective.startswith("multi"):
        assert flat.n_outputs == 3
        assert np.array_equal(flat.tree_group, np.tile([0, 1, 2], 3))


@pytest.mark.parametrize(
    "text, expected",
    [
        ("0.5", [0.5]),
        ("5E-1", [0.5]),
        ("[5E-1]", [0.5]),
        ("[-6.3264415E-2,9.985707E-1]", [-6.3264415e-2, 9.985707e-1]),
        (" [ 1E0 , 2E0 ] ", [1.0, 2.0]),
    ],
)
def test_xgboost_base_score_formats(text, expected):
    assert_allclose(_parse_xgb_base_score(text), expected)


def test_xgboost_sklearn_wrappers():
    xgb = pytest.importorskip("xgboost")
    kw = {"n_estimators": 4, "max_depth": 3}
    for model, y in [
        (xgb.XGBRegressor(**kw), Y),
        (xgb.XGBClassifier(**kw), Y_BIN),
        (xgb.XGBClassifier(**kw), Y_MULTI),
        (xgb.XGBRFClassifier(**kw), Y_MULTI),
        (xgb.XGBClassifier(num_parallel_tree=2, **kw), Y_BIN),
    ]:
        model.fit(X_NAN, y)
        flat = check_model(model, X_NAN, _xgb_margin(model, X_NAN))
        assert flat.n_outputs == (3 if len(np.unique(y)) == 3 else 1)
    ranker = xgb.XGBRanker(**kw).fit(
        X_NAN, Y_MULTI, qid=np.repeat(np.arange(4), N // 4)
    )
    check_model(ranker, X_NAN, _xgb_margin(ranker, X_NAN))


def test_xgboost_best_iteration():
    xgb = pytest.importorskip("xgboost")
    model = xgb.XGBClassifier(
        n_estimators=60, max_depth=3, learning_rate=0.9, early_stopping_rounds=2
    )
    model.fit(X[:160], Y_BIN[:160], eval_set=[(X[160:], Y_BIN[160:])], verbose=False)
    n_rounds = model.get_booster().num_boosted_rounds()
    assert model.best_iteration + 1 < n_rounds
    flat = check_model(model, X, _xgb_margin(model, X))  # uses best_iteration
    assert flat.n_trees == model.best_iteration + 1
    # a bare Booster predicts with every tree
    booster = model.get_booster()
    flat = check_model(booster, X, _xgb_margin(booster, X))
    assert flat.n_trees == n_rounds


def test_xgboost_dart():
    xgb = pytest.importorskip("xgboost")
    for model, y in [
        (xgb.XGBRegressor(booster="dart", rate_drop=0.5, skip_drop=0.0), Y),
        (xgb.XGBClassifier(booster="dart", rate_drop=0.3, skip_drop=0.0), Y_MULTI),
    ]:
        model.set_params(n_estimators=6, max_depth=3, random_state=0)
        model.fit(X_NAN, y)
        learner = json.loads(model.get_booster().save_raw("json"))["learner"]
        weights = learner["gradient_booster"]["weight_drop"]
        assert min(weights) < 1.0  # the tree weights matter
        check_model(model, X_NAN, _xgb_margin(model, X_NAN))


@pytest.mark.parametrize("max_cat_to_onehot", [1, 32])
def test_xgboost_categorical_dmatrix(max_cat_to_onehot):
    xgb = pytest.importorskip("xgboost")
    types = ["q", "q", "q", "q", "c"]
    dtrain = xgb.DMatrix(
        X_CAT, label=Y_CAT, feature_types=types, enable_categorical=True
    )
    params = {
        "max_depth": 4,
        "tree_method": "hist",
        "max_cat_to_onehot": max_cat_to_onehot,
    }
    booster = xgb.train(params, dtrain, num_boost_round=4)
    # xgboost treats negative fractions as invalid; -0.5 etc. is outside the contract
    Xt = _test_X_cat()
    ref = booster.predict(
        xgb.DMatrix(Xt, feature_types=types, enable_categorical=True),
        output_margin=True,
    )
    flat = check_model(booster, Xt, ref)
    assert np.any(flat.split_kind == _flat.CATEGORICAL_SPLIT)


def test_xgboost_categorical_pandas():
    xgb = pytest.importorskip("xgboost")
    pd = pytest.importorskip("pandas")
    codes = np.where(np.isnan(X_CAT[:, 4]), -1, X_CAT[:, 4]).astype(int)
    df = pd.DataFrame(X_CAT[:, :4], columns=list("abcd"))
    df["k"] = pd.Categorical.from_codes(codes, categories=[f"c{i}" for i in range(13)])
    model = xgb.XGBClassifier(
        n_estimators=4, max_depth=3, enable_categorical=True, tree_method="hist"
    ).fit(df, (Y_CAT > 1).astype(int))
    Xt = np.c_[X_CAT[:, :4], np.where(codes < 0, np.nan, codes)]
    flat = check_model(model, Xt, model.predict(df, output_margin=True))
    assert np.any(flat.split_kind == _flat.CATEGORICAL_SPLIT)


@pytest.mark.parametrize("strategy", ["multi_output_tree", "one_output_per_tree"])
def test_xgboost_multi_target(strategy):
    xgb = pytest.importorskip("xgboost")
    model = xgb.XGBRegressor(
        n_estimators=4, max_depth=3, tree_method="hist", multi_strategy=strategy
    ).fit(X_NAN, Y_2D)
    flat = check_model(model, X_NAN, _xgb_margin(model, X_NAN))
    assert flat.n_outputs == 2
    if strategy == "multi_output_tree":
        assert np.all(flat.tree_group == -1)
    else:
        assert np.array_equal(flat.tree_group, np.tile([0, 1], 4))


def test_xgboost_zero_cover_is_repaired():
    xgb = pytest.importorskip("xgboost")
    booster = xgb.train({"max_depth": 3}, xgb.DMatrix(X, label=Y), num_boost_round=2)
    model = json.loads(booster.save_raw("json"))
    tree = model["learner"]["gradient_booster"]["model"]["trees"][0]
    left, right = tree["left_children"], tree["right_children"]
    tree["sum_hessian"][left[0]] = 0.0  # a zero-cover child
    tree["sum_hessian"][left[1]] = 0.0  # two zero-cover siblings
    tree["sum_hessian"][right[1]] = 0.0
    broken = xgb.Booster()
    broken.load_model(bytearray(json.dumps(model).encode()))
    check_model(broken, X, _xgb_margin(broken, X))


def test_xgboost_pruned_nodes_are_dropped():
    xgb = pytest.importorskip("xgboost")
    params = {"tree_method": "exact", "gamma": 5.0, "max_depth": 6}
    booster = xgb.train(params, xgb.DMatrix(X, label=Y), num_boost_round=2)
    trees = json.loads(booster.save_raw("json"))["learner"]["gradient_booster"]
    n_deleted = [int(t["tree_param"]["num_deleted"]) for t in trees["model"]["trees"]]
    assert sum(n_deleted) > 0  # pruned nodes stay in xgboost's arrays
    flat = check_model(booster, X_NAN, _xgb_margin(booster, X_NAN))
    n_nodes = sum(len(t["left_children"]) for t in trees["model"]["trees"])
    assert flat.n_nodes == n_nodes - sum(n_deleted)


def test_xgboost_missing_value():
    # values equal to the model's missing= are missing: mapped to NaN (in float32)
    xgb = pytest.importorskip("xgboost")
    Xm = X_NAN.copy()
    Xm[RNG.random(X.shape) < 0.3] = 0.5
    Xt = Xm.copy()
    Xt[:3, 0] = [np.float32(0.5), 0.5 + 1e-9, np.nextafter(np.float32(0.5), 1)]
    model = xgb.XGBRegressor(n_estimators=5, missing=0.5).fit(Xm, Y)
    flat = check_model(model, Xt, model.predict(Xt, output_margin=True))
    assert flat.missing_value == 0.5 and np.isnan(flat.sparse_fill)
    booster = model.get_booster()
    margin = booster.predict(xgb.DMatrix(Xt, missing=0.5), output_margin=True)
    assert_allclose(  # xgboost's margin is float32
        predict_raw(flatten_ensemble(booster, missing=0.5), Xt),
        margin[:, None],
        rtol=1e-6,
        atol=1e-6 * np.abs(margin).max(),
    )
    assert not np.allclose(predict_raw(flatten_ensemble(booster), Xt)[:, 0], margin)


def test_xgboost_unsupported_options():
    xgb = pytest.importorskip("xgboost")
    linear = xgb.XGBRegressor(n_estimators=2, booster="gblinear").fit(X, Y)
    with pytest.raises(NotImplementedError, match="gblinear"):
        flatten_ensemble(linear)


# --------------------------------------------------------------------------------------
# LightGBM
# --------------------------------------------------------------------------------------

LGB_KW = {
    "n_estimators": 5,
    "num_leaves": 8,
    "min_child_samples": 5,
    "verbose": -1,
    "n_jobs": 1,
}


def _lgb_raw(model, X_test):
    return model.predict(X_test, raw_score=True)


@pytest.mark.parametrize("train_nan", [False, True])
def test_lightgbm_models(train_nan):
    lgb = pytest.importorskip("lightgbm")
    Xtr = X_NAN if train_nan else X
    Xt = X_NAN.copy()
    Xt[:10, :] = 0.0
    for model, y in [
        (lgb.LGBMRegressor(**LGB_KW), Y),
        (lgb.LGBMClassifier(**LGB_KW), Y_BIN),
        (lgb.LGBMClassifier(**LGB_KW), Y_MULTI),
    ]:
        model.fit(Xtr, y)
        flat = check_model(model, Xt, _lgb_raw(model, Xt), rtol=1e-12)
        assert flat.decision_dtype is np.float64
        K = 3 if len(np.unique(y)) == 3 else 1
        assert flat.n_outputs == K
        assert np.array_equal(flat.tree_group, np.arange(flat.n_trees) % K)


@pytest.mark.parametrize("train_nan", [False, True])
def test_lightgbm_categorical(train_nan):
    lgb = pytest.importorskip("lightgbm")
    Xtr = X_CAT.copy()
    if not train_nan:
        Xtr = np.nan_to_num(Xtr)
    Xt = _test_X_cat()
    for model, y in [
        (lgb.LGBMRegressor(**LGB_KW), Y_CAT),
        (lgb.LGBMClassifier(**LGB_KW), np.digitize(Y_CAT, [0.5, 2.0])),
    ]:
        model.fit(Xtr, y, categorical_feature=[4])
        flat = check_model(model, Xt, _lgb_raw(model, Xt), rtol=1e-12)
        assert np.any(flat.split_kind == _flat.CATEGORICAL_SPLIT)


def test_lightgbm_pandas_categorical():
    lgb = pytest.importorskip("lightgbm")
    pd = pytest.importorskip("pandas")
    codes = np.where(np.isnan(X_CAT[:, 4]), -1, X_CAT[:, 4]).astype(int)
    df = pd.DataFrame(X_CAT[:, :4], columns=list("abcd"))
    df["k"] = pd.Categorical.from_codes(codes, categories=[f"c{i}" for i in range(13)])
    model = lgb.LGBMRegressor(**LGB_KW).fit(df, Y_CAT)
    Xt = np.c_[X_CAT[:, :4], np.where(codes < 0, np.nan, codes)]
    flat = check_model(model, Xt, _lgb_raw(model, df), rtol=1e-12)
    assert np.any(flat.split_kind == _flat.CATEGORICAL_SPLIT)


def test_lightgbm_boosting_modes_and_ranker():
    lgb = pytest.importorskip("lightgbm")
    for extra in [
        {"boosting_type": "dart"},
        {"boosting_type": "rf", "bagging_fraction": 0.5, "bagging_freq": 1},
        {"data_sample_strategy": "goss"},
    ]:
        model = lgb.LGBMRegressor(**LGB_KW, **extra).fit(X_NAN, Y)
        check_model(model, X_NAN, _lgb_raw(model, X_NAN), rtol=1e-12)
    ranker = lgb.LGBMRanker(**LGB_KW).fit(X_NAN, Y_MULTI, group=[N // 4] * 4)
    check_model(ranker, X_NAN, _lgb_raw(ranker, X_NAN), rtol=1e-12)


def test_lightgbm_booster_best_iteration():
    lgb = pytest.importorskip("lightgbm")
    train = lgb.Dataset(X_NAN[:160], Y[:160])
    valid = lgb.Dataset(X_NAN[160:], Y[160:], reference=train)
    booster = lgb.train(
        {"num_leaves": 8, "learning_rate": 0.9, "verbose": -1, "num_threads": 1},
        train,
        num_boost_round=60,
        valid_sets=[valid],
        callbacks=[lgb.early_stopping(2, verbose=False)],
    )
    flat = check_model(
        booster, X_NAN, booster.predict(X_NAN, raw_score=True), rtol=1e-12
    )
    assert flat.n_trees == booster.best_iteration
    # covers are the sample counts
    assert flat.cover[0] == 160


def _zero_rows(seed, n):
    """Rows with exact zeros, NaN and values within 1e-35 of zero (which LightGBM's
    zero_as_missing treats as zero) besides normal values."""
    rng = np.random.default_rng(seed)
    Xz = rng.normal(size=(n, 5))
    Xz[rng.random(Xz.shape) < 0.3] = 0.0
    Xz[rng.random(Xz.shape) < 0.05] = np.nan
    Xz[:, 4] = np.abs(Xz[:, 4])  # a feature whose zeros are its smallest values
    tiny = [1e-36, -1e-36, 1e-30, -0.0, 1e-35, -1e-35, 2e-35, -2e-35]
    Xz[: len(tiny), 0] = tiny
    Xz[len(tiny) : 2 * len(tiny), 1] = tiny
    return Xz


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("task", ["regression", "multiclass"])
def test_lightgbm_zero_as_missing(seed, task):
    lgb = pytest.importorskip("lightgbm")
    from sklearn_shapley import QuadratureTreeExplainer

    Xz, Xt = _zero_rows(seed, 300), _zero_rows(seed + 100, 60)
    y = np.nan_to_num(Xz[:, 0]) + np.nan_to_num(Xz[:, 1]) ** 2 + (Xz[:, 2] == 0)
    kw = dict(LGB_KW, n_estimators=8, min_child_samples=3, random_state=seed)
    if task == "regression":
        model = lgb.LGBMRegressor(**kw, zero_as_missing=True).fit(Xz, y)
    else:
        y = np.digitize(y, [0.5, 1.5])
        model = lgb.LGBMClassifier(**kw, zero_as_missing=True).fit(Xz, y)
    # exact, with zeros that leave the side their value falls on
    flat = check_model(model, Xt, _lgb_raw(model, Xt), rtol=1e-12)
    assert flat.zero_as_missing.size > 0
    sides = [
        (n["default_left"], n["threshold"] >= 0)
        for info in model.booster_.dump_model()["tree_info"]
        for n in _lgb_splits(info["tree_structure"])
        if n["missing_type"] == "Zero"
    ]
    assert any(left != zero_left for left, zero_left in sides)
    # path-dependent values: LightGBM's own TreeSHAP
    K = flat.n_outputs
    contribs = model.predict(Xt, pred_contrib=True).reshape(len(Xt), K, -1)
    path = QuadratureTreeExplainer(FrozenEstimator(model)).fit(Xz)
    values = path.explain(Xt).values.reshape(len(Xt), 5, K)
    assert_allclose(values, contribs[:, :, :-1].transpose(0, 2, 1), atol=1e-10)
    # interventional values: the marginal game of the model's own predictions
    from test_tree_interventional import _coalitions, index_values

    background, rows = Xz[:10], Xt[:10]
    inter = QuadratureTreeExplainer(
        FrozenEstimator(model),
        feature_perturbation="interventional",
        background=background,
    ).fit(Xz)
    values = inter.explain(rows).values.reshape(len(rows), 5, K)
    masks = _coalitions(5)
    for r, x in enumerate(rows):
        hybrid = np.where(masks[:, None, :], x, background[None]).reshape(-1, 5)
        v = _lgb_raw(model, hybrid).reshape(len(masks), len(background), K)
        exact, _ = index_values(v.mean(axis=1), 5, "shapley")
        assert_allclose(values[r], exact, atol=1e-10)


def _lgb_splits(node):
    """The split nodes of a LightGBM ``tree_structure`` dict."""
    stack = [node]
    while stack:
        node = stack.pop()
        if "split_index" in node:
            yield node
            stack += [node["left_child"], node["right_child"]]


def _lgb_stump(missing_type, default_left, threshold, feature=0):
    """A two-node LightGBM ``tree_structure`` (a split and two leaves)."""
    leaf = {"leaf_index": 0, "leaf_value": 1.0, "leaf_count": 5}
    return {
        "split_index": 0,
        "split_feature": feature,
        "threshold": threshold,
        "decision_type": "<=",
        "default_left": default_left,
        "missing_type": missing_type,
        "internal_count": 10,
        "left_child": leaf,
        "right_child": dict(leaf, leaf_value=-1.0),
    }


def test_lightgbm_zero_as_missing_mixed_splits():
    # splits of another missing type on a zero-as-missing feature: exact where zero,
    # NaN and the values within 1e-35 of zero go to one side, else refused by name
    from sklearn_shapley.tree._lightgbm import _lightgbm_tree, _missing_left

    zero = np.array([0])

    def missing_left(*stump):
        tree = _lightgbm_tree(_lgb_stump(*stump))
        return bool(_missing_left(tree, zero, 0)[0])

    assert missing_left("Zero", False, 1.0) is False  # zero right, against 1.0
    assert missing_left("None", True, 1.0) is True  # NaN is 0.0 there
    assert missing_left("None", False, -1.0) is False
    assert missing_left("NaN", True, 1.0) is True
    assert missing_left("NaN", False, 1.0, 1) is False  # not on feature 0
    with pytest.raises(NotImplementedError, match="default side .* not where"):
        missing_left("NaN", False, 1.0)
    with pytest.raises(NotImplementedError, match="threshold splits the values"):
        missing_left("None", True, 0.0)
    with pytest.raises(NotImplementedError, match="threshold splits the values"):
        missing_left("NaN", False, -1e-35)
    assert missing_left("None", True, float(np.float32(1e-35))) is True


def test_lightgbm_linear_tree_not_implemented():
    lgb = pytest.importorskip("lightgbm")
    model = lgb.LGBMRegressor(**LGB_KW, linear_tree=True).fit(X, Y)
    with pytest.raises(NotImplementedError, match="linear"):
        flatten_ensemble(model)


# --------------------------------------------------------------------------------------
# unsupported and unfitted models
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", [LinearRegression().fit(X, Y), [1, 2, 3], None])
def test_unsupported_models(model):
    with pytest.raises(TypeError, match="Supported models") as info:
        flatten_ensemble(model)
    assert "RandomForestRegressor" in str(info.value)
    assert "XGBClassifier" in str(info.value) and "LGBMRegressor" in str(info.value)
    assert len(SUPPORTED_MODELS) > 10


def test_unfitted_models():
    unfitted = [
        DecisionTreeClassifier(),
        RandomForestRegressor(),
        GradientBoostingClassifier(),
        HistGradientBoostingRegressor(),
        IsolationForest(),
    ]
    try:
        import xgboost

        unfitted.append(xgboost.XGBRegressor())
    except ImportError:
        pass
    try:
        import lightgbm

        unfitted.append(lightgbm.LGBMClassifier())
    except ImportError:
        pass
    for model in unfitted:
        with pytest.raises(NotFittedError):
            flatten_ensemble(model)


# --------------------------------------------------------------------------------------
# covers mean what TreeSHAP expects: the base value matches the libraries' own
# --------------------------------------------------------------------------------------


def _expected_value(flat):
    """base_offset + cover-weighted mean leaf value of every tree (recursively)."""
    mean = flat.value.copy()
    for node in range(flat.n_nodes - 1, -1, -1):  # children come after parents
        left, right = flat.children_left[node], flat.children_right[node]
        if left >= 0:
            mean[node] = (
                flat.cover[left] * mean[left] + flat.cover[right] * mean[right]
            ) / flat.cover[node]
    out = flat.base_offset.copy()
    for t, g in enumerate(flat.tree_group):
        root = mean[flat.tree_offsets[t]]
        if g < 0:
            out += root
        else:
            out[g] += root[g]
    return out


def test_expected_value_matches_library_treeshap():
    xgb = pytest.importorskip("xgboost")
    lgb = pytest.importorskip("lightgbm")
    booster = xgb.train(
        {"objective": "multi:softprob", "num_class": 3, "max_depth": 3},
        xgb.DMatrix(X_NAN, label=Y_MULTI),
        num_boost_round=3,
    )
    contribs = booster.predict(xgb.DMatrix(X_NAN[:2]), pred_contribs=True)
    assert_allclose(
        _expected_value(flatten_ensemble(booster)), contribs[0, :, -1], rtol=1e-5
    )
    model = lgb.LGBMClassifier(**LGB_KW).fit(X_NAN, Y_MULTI)
    contribs = model.predict(X_NAN[:2], pred_contrib=True).reshape(2, 3, -1)
    assert_allclose(
        _expected_value(flatten_ensemble(model)), contribs[0, :, -1], rtol=1e-9
    )


def test_xgboost_read_is_kept_until_the_model_changes():
    # read_xgboost keeps the last models read, by their saved bytes
    xgb = pytest.importorskip("xgboost")
    model = xgb.XGBRegressor(n_estimators=3, max_depth=3).fit(X, Y)
    first = flatten_ensemble(model)
    assert flatten_ensemble(model) is first
    assert flatten_ensemble(model.get_booster()) is not first  # another model type
    model.fit(X, -Y)  # refitted in place: new bytes, read again
    again = flatten_ensemble(model)
    assert again is not first
    assert_allclose(predict_raw(again, X)[:, 0], model.predict(X), rtol=1e-5, atol=1e-5)
