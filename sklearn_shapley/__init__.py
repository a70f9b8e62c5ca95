"""sklearn_shapley: Shapley-value explainers that are scikit-learn estimators.

Every explainer is a transformer: ``fit`` prepares it (fitting the model when given an
unfitted one), ``transform`` returns attributions ``(n_samples, n_players)``, ``explain``
returns an :class:`Explanation`, and ``score`` is a higher-is-better fidelity figure.
"""

from ._base import BaseExplainer
from ._explanation import Explanation, ShapleyValues
from ._show_versions import show_versions
from .amortized import FastSHAPExplainer, InstaSHAPGAM, SurrogateGame, fit_surrogate
from .exact import ExactExplainer, exact_shapley
from .kernel import KernelExplainer, kernel_shap
from .permutation import PermutationExplainer, permutation_shapley
from .tree import QuadratureTreeExplainer
from .vision import UNetShapleyExplainer, ViTClassifier, ViTShapleyExplainer

__version__ = "0.1.0.dev0"

__all__ = [
    "BaseExplainer",
    "ExactExplainer",
    "Explanation",
    "FastSHAPExplainer",
    "InstaSHAPGAM",
    "KernelExplainer",
    "PermutationExplainer",
    "QuadratureTreeExplainer",
    "ShapleyValues",
    "SurrogateGame",
    "UNetShapleyExplainer",
    "ViTClassifier",
    "ViTShapleyExplainer",
    "exact_shapley",
    "fit_surrogate",
    "kernel_shap",
    "permutation_shapley",
    "show_versions",
]
