"""scikit-learn's common estimator checks, Pipelines and GridSearchCV for every explainer."""

import numpy as np
import pytest
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
    KernelExplainer,
    PermutationExplainer,
    QuadratureTreeExplainer,
)


def _explainers():
    """Every public explainer with a small default model, for the common checks."""
    return [
        ExactExplainer(Ridge()),
        KernelExplainer(Ridge(), max_evaluations=64),
        PermutationExplainer(Ridge(), max_evaluations=64),
        QuadratureTreeExplainer(DecisionTreeRegressor(max_depth=4, random_state=0)),
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
    explained = fitted.estimator_.predict(pipe[0].transform(X[:7]))
    base = fitted.explain(pipe[0].transform(X[:7])).base_values
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
