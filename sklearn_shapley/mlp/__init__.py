"""Multi-layer perceptrons: the exact marginal (interventional) game of a scikit-learn
MLP with one hidden layer, evaluated by a kernel that shares the first layer's work."""

from ._marginal import MLPMarginalGame, mlp_marginal_game

__all__ = ["MLPMarginalGame", "mlp_marginal_game"]
