"""Tree ensembles: exact Path-Dependent TreeSHAP and interactions by quadrature, and
the exact marginal (interventional) game of an ensemble."""

from ._ensemble import SUPPORTED_MODELS, flatten_ensemble
from ._explainer import QuadratureTreeExplainer
from ._marginal import TreeHybridMarginalGame, TreeMarginalGame, tree_marginal_game

__all__ = [
    "SUPPORTED_MODELS",
    "QuadratureTreeExplainer",
    "TreeHybridMarginalGame",
    "TreeMarginalGame",
    "flatten_ensemble",
    "tree_marginal_game",
]
