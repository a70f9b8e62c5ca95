"""scikit-learn's common estimator checks, Pipelines and GridSearchCV for every explainer."""

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import make_regression
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import Ridge
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeRegressor
from sklearn.utils.estimator_checks import parametrize_with_checks

from sklearn_shapley import (
    ExactExplainer,
    FastSHAPExplainer,
    InstaSHAPGAM,
    KernelExplainer,
    PermutationExplainer,
    QuadratureTreeExplainer,
    UNetShapleyExplainer,
    ViTShapleyExplainer,
)


def _explainers():
    """Every public explainer with a small default model, for the common checks."""
    return [
        ExactExplainer(Ridge()),
        KernelExplainer(Ridge(), max_evaluations=100),
        PermutationExplainer(Ridge(), max_evaluations=64),
        InstaSHAPGAM(
            Ridge(),
            value_function="baseline",
            normalization="additive",
            hidden_layer_sizes=(4,),
            n_coalitions=4,
            max_epochs=2,
        ),
        QuadratureTreeExplainer(DecisionTreeRegressor(max_depth=4, random_state=0)),
        FastSHAPExplainer(
            Ridge(),
            hidden_layer_sizes=(8,),
            max_epochs=2,
            surrogate_params={"max_epochs": 2},
        ),
        # Image explainers on 2-D rows: each column a 1 x 1 patch (one player).
        ViTShapleyExplainer(
            Ridge(),
            value_function="model",
            vit_params={"embed_dim": 8, "depth": 1, "n_heads": 1},
            n_coalitions=4,
            max_epochs=1,
        ),
        UNetShapleyExplainer(
            Ridge(), value_function="model", channels=4, n_coalitions=4, max_epochs=1
        ),
    ]


@parametrize_with_checks(_explainers())
def test_sklearn_compatible_explainer(estimator, check):
    check(estimator)


@pytest.mark.parametrize("explainer", _explainers(), ids=lambda e: type(e).__name__)
def test_pipeline_fits_model_then_explainer(explainer):
    X, y = make_regression(n_samples=80, n_features=5, random_state=0)
    pipe = make_pipeline(StandardScaler(), explainer)
    phi = pipe.fit(X, y).transform(X[:7])
    assert phi.shape == (7, 5)
    fitted = pipe[-1]
    Z = pipe[0].transform(X[:7])
    # The pipeline fitted the model on the scaled data ...
    expected_model = clone(explainer.estimator).fit(pipe[0].transform(X), y)
    np.testing.assert_allclose(fitted.estimator_.predict(Z), expected_model.predict(Z))
    # ... and the attributions add up to the output the explainer explains.
    explained = fitted.explained_output(Z)[:, 0]
    base = fitted.explain(Z).base_values
    np.testing.assert_allclose(base + phi.sum(axis=1), explained, atol=1e-8)


def test_grid_search_over_explainer_hyperparameters():
    X, y = make_regression(n_samples=60, n_features=6, random_state=1)
    model = FrozenEstimator(Ridge().fit(X, y))
    search = GridSearchCV(
        KernelExplainer(model, random_state=0, convergence_threshold=None),
        {"max_evaluations": [8, 200]},
        cv=2,
    )
    search.fit(X)
    # The larger budget is the better Shapley estimate: the loss-based score knows.
    assert search.best_params_ == {"max_evaluations": 200}


def test_set_output_pandas_names_columns():
    pd = pytest.importorskip("pandas")
    X, y = make_regression(n_samples=40, n_features=3, random_state=2)
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    explainer = ExactExplainer(Ridge()).set_output(transform="pandas").fit(frame, y)
    out = explainer.transform(frame)
    assert list(out.columns) == ["a", "b", "c"]


@pytest.mark.parametrize("explainer", _explainers(), ids=lambda e: type(e).__name__)
def test_explainer_is_callable_like_shap(explainer):
    X, y = make_regression(n_samples=40, n_features=4, random_state=0)
    if "random_state" in explainer.get_params():
        explainer = clone(explainer).set_params(random_state=0)
    explainer.fit(X, y)
    called, explained = explainer(X[:3]), explainer.explain(X[:3])
    np.testing.assert_array_equal(called.values, explained.values)
    np.testing.assert_array_equal(called.base_values, explained.base_values)
