"""DataFrames with numeric, category and string columns (and NaN) in every explainer,
and Pipelines: names kept, columns checked, categories coded as the model codes them.

Oracles: the model's own raw prediction (efficiency), xgboost ``pred_contribs`` and
lightgbm ``pred_contrib``, and Shapley values enumerated here over pandas rows.
"""

import itertools
import math

import matplotlib
import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.compose import make_column_transformer
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.frozen import FrozenEstimator
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

from sklearn_shapley import (
    ExactExplainer,
    FastSHAPExplainer,
    InstaSHAPGAM,
    KernelExplainer,
    PermutationExplainer,
    QuadratureTreeExplainer,
    plotting,
)
from sklearn_shapley.tree import TreeMarginalGame

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def frame():
    """Numeric (with NaN), category (with NaN) and string columns, and a target."""
    rng = np.random.default_rng(0)
    n = 150
    X = pd.DataFrame(
        {
            "size": rng.normal(size=n),
            "colour": pd.Categorical(
                rng.choice(["red", "green", "blue"], n),
                categories=["red", "green", "blue"],
            ),
            "shape": rng.choice(["round", "square"], n).astype(object),
            "weight": rng.normal(size=n),
        }
    )
    X.loc[::7, "size"] = np.nan
    X.loc[::11, "colour"] = np.nan
    y = (
        X["size"].fillna(0.0)
        + 2.0 * (X["colour"] == "green")
        - (X["shape"] == "square")
        + X["weight"] * (X["colour"] == "blue")
    )
    return X, y.to_numpy()


def _numeric_and_category(X):
    return X[["size", "colour", "weight"]]


def _efficiency_gap(exp, explained):
    values = exp.values if exp.values.ndim == 3 else exp.values[:, :, None]
    base = exp.base_values if exp.base_values.ndim == 2 else exp.base_values[:, None]
    return np.abs(base + values.sum(axis=1) - explained.reshape(len(values), -1)).max()


def _check_marginal_game(model, X, rows):
    """The model-agnostic marginal game on the DataFrame: resolved to the tree
    ensemble's exact form (its codes are the model's), efficient on the model."""
    explainer = ExactExplainer(
        FrozenEstimator(model), value_function="marginal", n_background=20
    ).fit(X)
    assert isinstance(explainer.game_, TreeMarginalGame)
    assert _efficiency_gap(explainer.explain(rows), model.predict(rows)) < 1e-5


def _reordered_categories(X):
    """The same rows with the category dtype's categories in another order."""
    X = X.copy()
    X["colour"] = pd.Categorical(
        X["colour"].astype(object), categories=["blue", "red", "green"]
    )
    return X


@pytest.mark.parametrize("categorical_features", ["from_dtype", ["colour", "shape"]])
def test_hist_gradient_boosting_categories_in_the_tree_explainer(
    frame, categorical_features
):
    X, y = frame
    if categorical_features == "from_dtype":  # category columns only
        X = _numeric_and_category(X)
    model = HistGradientBoostingRegressor(
        categorical_features=categorical_features, max_iter=15
    ).fit(X, y)
    explainer = QuadratureTreeExplainer(FrozenEstimator(model)).fit(X)
    rows = _reordered_categories(X[:30])
    exp = explainer.explain(rows)
    assert exp.feature_names == list(X.columns)
    assert list(explainer.get_feature_names_out()) == list(X.columns)
    assert _efficiency_gap(exp, model.predict(rows)) < 1e-10
    # the categorical column carries the model's attribution, not noise
    assert np.abs(exp.values[:, 1]).mean() > 0.5
    _check_marginal_game(model, X, rows)


def test_xgboost_categorical_matches_pred_contribs(frame):
    xgboost = pytest.importorskip("xgboost")
    X, y = frame
    X = _numeric_and_category(X)
    model = xgboost.XGBRegressor(
        enable_categorical=True, n_estimators=8, max_depth=3, tree_method="hist"
    ).fit(X, y)
    rows = _reordered_categories(X[:30])
    exp = QuadratureTreeExplainer(FrozenEstimator(model)).fit(X).explain(rows)
    contribs = model.get_booster().predict(
        xgboost.DMatrix(rows, enable_categorical=True), pred_contribs=True
    )
    np.testing.assert_allclose(exp.values, contribs[:, :-1], atol=1e-5)
    assert _efficiency_gap(exp, model.predict(rows, output_margin=True)) < 1e-5
    _check_marginal_game(model, X, rows)


def test_lightgbm_categorical_matches_pred_contrib(frame):
    lightgbm = pytest.importorskip("lightgbm")
    X, y = frame
    X = _numeric_and_category(X)
    model = lightgbm.LGBMRegressor(
        n_estimators=8, min_child_samples=5, n_jobs=1, verbose=-1
    ).fit(X, y)
    rows = _reordered_categories(X[:30])
    exp = QuadratureTreeExplainer(FrozenEstimator(model)).fit(X).explain(rows)
    contribs = model.predict(rows, pred_contrib=True)
    np.testing.assert_allclose(exp.values, contribs[:, :-1], atol=1e-10)
    assert _efficiency_gap(exp, model.predict(rows, raw_score=True)) < 1e-10
    _check_marginal_game(model, X, rows)


def _enumerated_shapley(predict, row, held_out):
    """Shapley values of ``v(S) = mean predict(row on S, held_out rows elsewhere)``
    by enumerating every coalition on pandas rows (one ``predict`` call)."""
    columns = list(row.columns)
    d = len(columns)
    coalitions = [
        c for size in range(d + 1) for c in itertools.combinations(range(d), size)
    ]
    blocks = []
    for coalition in coalitions:
        rows = held_out.copy()
        for j in coalition:
            rows[columns[j]] = row[columns[j]].iloc[0]
            rows[columns[j]] = rows[columns[j]].astype(held_out[columns[j]].dtype)
        blocks.append(rows)
    predictions = predict(pd.concat(blocks, ignore_index=True))
    means = predictions.reshape(len(coalitions), len(held_out)).mean(axis=1)
    values = dict(zip(coalitions, means))

    def value(coalition):
        return values[tuple(sorted(coalition))]

    phi = np.zeros(d)
    for j in range(d):
        others = [k for k in range(d) if k != j]
        for size in range(d):
            weight = math.factorial(size) * math.factorial(d - size - 1)
            weight /= math.factorial(d)
            for coalition in itertools.combinations(others, size):
                phi[j] += weight * (value(coalition + (j,)) - value(coalition))
    return phi


def _pipeline(X, y):
    encode = make_column_transformer(
        (OneHotEncoder(handle_unknown="ignore"), ["colour", "shape"]),
        (SimpleImputer(), ["size", "weight"]),
    )
    return make_pipeline(encode, HistGradientBoostingRegressor(max_iter=15)).fit(X, y)


@pytest.mark.parametrize("value_function", ["baseline", "marginal"])
def test_held_out_categories_take_background_values_or_the_mode(frame, value_function):
    X, y = frame
    model = _pipeline(X, y)
    background = X[:12]
    explainer = ExactExplainer(
        FrozenEstimator(model), value_function=value_function, background=background
    ).fit(X)
    row = X.iloc[[3]]
    if value_function == "marginal":
        held_out = background.reset_index(drop=True)
    else:  # the mean of a numeric column, the most frequent category otherwise
        held_out = pd.DataFrame(
            {
                "size": [background["size"].mean()],
                "colour": pd.Categorical(
                    [background["colour"].mode()[0]],
                    categories=X["colour"].cat.categories,
                ),
                "shape": [background["shape"].mode()[0]],
                "weight": [background["weight"].mean()],
            }
        ).astype({"shape": object})
    expected = _enumerated_shapley(model.predict, row, held_out)
    np.testing.assert_allclose(explainer.transform(row)[0], expected, atol=1e-10)


@pytest.mark.parametrize(
    "make_explainer",
    [
        lambda m: ExactExplainer(m, value_function="marginal", n_background=20),
        lambda m: KernelExplainer(
            m, max_evaluations=100, convergence_threshold=None, random_state=0
        ),
        lambda m: PermutationExplainer(m, max_evaluations=30, random_state=0),
        lambda m: FastSHAPExplainer(
            m,
            hidden_layer_sizes=(8,),
            max_epochs=2,
            surrogate_params={"hidden_layer_sizes": (8,), "max_epochs": 2},
            random_state=0,
        ),
        lambda m: InstaSHAPGAM(
            m,
            value_function="baseline",
            hidden_layer_sizes=(8,),
            max_epochs=2,
            random_state=0,
        ),
    ],
    ids=["exact", "kernel", "permutation", "fastshap", "instashap"],
)
def test_model_agnostic_explainers_take_a_pipeline_on_string_columns(
    frame, make_explainer
):
    X, y = frame
    model = _pipeline(X, y)
    explainer = make_explainer(FrozenEstimator(model))
    amortized = isinstance(explainer, FastSHAPExplainer | InstaSHAPGAM)
    if amortized:
        # their networks read the rows: missing values are refused, named
        with pytest.raises(ValueError, match="NaN"):
            clone(explainer).fit(X)
        X = X.dropna()
    explainer.fit(X)
    exp = explainer.explain(X[:10])
    assert exp.feature_names == list(X.columns)
    assert exp.values.shape == exp.data.shape == (10, 4)
    assert np.isfinite(exp.values).all()
    explained = explainer.explained_output(X[:10])
    assert _efficiency_gap(exp, explained) < 1e-5
    if not amortized:  # the model's own output, not a network's
        np.testing.assert_allclose(explained[:, 0], model.predict(X[:10]))


@pytest.mark.parametrize(
    "columns, message",
    [
        (["size", "colour", "shape"], r"missing \['weight'\]"),
        (
            ["size", "colour", "shape", "weight", "extra"],
            r"not seen at fit \['extra'\]",
        ),
        (["colour", "size", "shape", "weight"], "column 0 is 'colour', was 'size'"),
    ],
)
def test_columns_that_differ_from_fit_are_named(frame, columns, message):
    X, y = frame
    explainer = ExactExplainer(FrozenEstimator(_pipeline(X, y))).fit(X)
    rows = X[:3].assign(extra=1.0)[columns]
    with pytest.raises(ValueError, match=message):
        explainer.transform(rows)


def test_an_unseen_category_is_refused_by_name(frame):
    X, y = frame
    explainer = ExactExplainer(FrozenEstimator(_pipeline(X, y))).fit(X)
    rows = X[:3].copy()
    rows["shape"] = ["round", "oval", "square"]
    with pytest.raises(ValueError, match=r"Column 'shape'.*\['oval'\]"):
        explainer.transform(rows)


def test_tree_explainer_explains_a_pipelines_last_step(frame):
    X, y = frame
    model = _pipeline(X, y)
    explainer = QuadratureTreeExplainer(FrozenEstimator(model)).fit(X)
    exp = explainer.explain(X[:20])
    names = list(model[:-1].get_feature_names_out())
    assert exp.feature_names == names == list(explainer.get_feature_names_out())
    assert exp.values.shape == exp.data.shape == (20, len(names))
    np.testing.assert_array_equal(exp.data, model[:-1].transform(X[:20]))
    assert _efficiency_gap(exp, model.predict(X[:20])) < 1e-10


@pytest.mark.parametrize("perturbation", ["tree_path_dependent", "interventional"])
def test_players_auto_sums_each_columns_one_hot_block(frame, perturbation):
    X, y = frame
    model = _pipeline(X, y)
    kwargs = {"feature_perturbation": perturbation, "background": X[:30]}
    if perturbation == "tree_path_dependent":
        kwargs = {}
    per_feature = QuadratureTreeExplainer(FrozenEstimator(model), **kwargs).fit(X)
    grouped = QuadratureTreeExplainer(
        FrozenEstimator(model), players="auto", **kwargs
    ).fit(X)
    exp = grouped.explain(X[:20])
    assert exp.feature_names == list(X.columns)
    names = list(per_feature.get_feature_names_out())
    values = per_feature.transform(X[:20])
    for j, column in enumerate(X.columns):
        block = [i for i, name in enumerate(names) if f"__{column}" in name]
        np.testing.assert_allclose(exp.values[:, j], values[:, block].sum(axis=1))
    # the data follows the players: one column each, categories by their codes
    assert exp.data.shape == (20, 4)
    assert set(np.unique(exp.data[:, 2])) == {0.0, 1.0}
    interactions = grouped.interactions(X[:5])
    np.testing.assert_allclose(interactions.sum(axis=2), exp.values[:5], atol=1e-10)
    np.testing.assert_array_equal(grouped.interactions(X[:5], order=1), exp.values[:5])
    for draw in (plotting.beeswarm, plotting.bar):
        ax = draw(exp)
        assert {t.get_text() for t in ax.get_yticklabels()} >= {"colour", "shape"}
    shap = pytest.importorskip("shap")
    shap.plots.beeswarm(exp.to_shap(), show=False)
    matplotlib.pyplot.close("all")


def test_one_hot_groups_are_named_by_the_column_they_encode(frame):
    X, y = frame
    encode = _pipeline(X, y)[:-1]
    encoded = pd.DataFrame(encode.transform(X), columns=encode.get_feature_names_out())
    model = HistGradientBoostingRegressor(max_iter=5).fit(encoded, y)
    players = [[0, 1, 2, 3], [4, 5], [6], [7]]
    explainer = ExactExplainer(FrozenEstimator(model), players=players).fit(encoded)
    assert list(explainer.get_feature_names_out()) == [
        "colour",
        "shape",
        "simpleimputer__size",
        "simpleimputer__weight",
    ]
    shared = ExactExplainer(
        FrozenEstimator(model), players=[[0, 1], [2, 3], [4, 5, 6, 7]]
    )
    assert list(shared.fit(encoded).get_feature_names_out())[:2] == [
        "onehotencoder__colour_blue+onehotencoder__colour_green",
        "onehotencoder__colour_red+onehotencoder__colour_nan",
    ]


def test_player_groups_give_one_data_column_per_group(frame):
    X, y = frame
    encoded = _pipeline(X, y)[:-1].transform(X)  # colour: 4 columns (NaN), shape: 2
    encoded = pd.DataFrame(encoded, columns=[f"f{i}" for i in range(8)])
    model = HistGradientBoostingRegressor(max_iter=5).fit(encoded, y)
    players = [[0, 1, 2, 3], [4, 5], [6], [7]]
    exp = (
        ExactExplainer(FrozenEstimator(model), players=players)
        .fit(encoded)
        .explain(encoded[:10])
    )
    assert exp.values.shape == exp.data.shape == (10, 4)
    assert exp.feature_names == ["f0+f1+f2+f3", "f4+f5", "f6", "f7"]
    np.testing.assert_array_equal(
        exp.data[:, 0], np.argmax(encoded.to_numpy()[:10, :4], axis=1)
    )
    np.testing.assert_array_equal(exp.data[:, 3], encoded["f7"][:10])
    shap = pytest.importorskip("shap")
    shap.plots.beeswarm(exp.to_shap(), show=False)
    matplotlib.pyplot.close("all")
