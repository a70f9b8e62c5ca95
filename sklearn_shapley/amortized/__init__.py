"""Amortized Shapley-value explainers: networks trained once, explaining in one pass.

- :class:`FastSHAPExplainer`: an explainer network trained on the Shapley
  weighted-least-squares loss (FastSHAP).
- :class:`InstaSHAPGAM`: a masked additive model whose components give Shapley
  values in one forward pass, with an audit of when first-order SHAP can be trusted.
- :func:`fit_surrogate` / :class:`SurrogateGame`: a masked surrogate network of a model,
  the learned ("in-distribution") value function.

All train through one recipe (``_training.py``); the image explainers, trained the
same way, are in :mod:`sklearn_shapley.vision`.
"""

from ._fastshap import FastSHAPExplainer
from ._instashap import InstaSHAPGAM, ShapleyTrustWarning
from ._surrogate import SurrogateGame, fit_surrogate

__all__ = [
    "FastSHAPExplainer",
    "InstaSHAPGAM",
    "ShapleyTrustWarning",
    "SurrogateGame",
    "fit_surrogate",
]
