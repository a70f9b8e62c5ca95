"""sklearn_shapley: Shapley-value explainers that are scikit-learn estimators."""

__version__ = "0.1.0.dev0"
