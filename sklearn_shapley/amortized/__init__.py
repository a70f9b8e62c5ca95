"""Amortized Shapley-value explainers: networks trained once, explaining in one pass.

- :class:`FastSHAPExplainer`: an explainer network trained on the Shapley
  weighted-least-squares loss (FastSHAP).
- :func:`fit_surrogate` / :class:`SurrogateGame`: a masked surrogate network of a model,
  the learned ("in-distribution") value function.
"""

from ._fastshap import FastSHAPExplainer
from ._surrogate import SurrogateGame, fit_surrogate

__all__ = ["FastSHAPExplainer", "SurrogateGame", "fit_surrogate"]
