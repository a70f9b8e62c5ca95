"""Tree ensembles: exact Path-Dependent TreeSHAP and interactions by quadrature."""

from ._ensemble import SUPPORTED_MODELS, flatten_ensemble
from ._explainer import QuadratureTreeExplainer

__all__ = ["SUPPORTED_MODELS", "QuadratureTreeExplainer", "flatten_ensemble"]
