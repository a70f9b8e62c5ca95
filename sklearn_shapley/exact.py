"""Exact Shapley values by enumerating every coalition, and the explainer built on it."""

from __future__ import annotations

from math import factorial
from numbers import Integral

import numpy as np
from sklearn.utils._param_validation import Interval

from ._explanation import ShapleyValues
from ._game_explainer import GameExplainer
from ._memory import check_fits_in_memory
from .sampling import coalitions

#: Most players :func:`exact_shapley` accepts: ``2**20`` coalitions per row.
MAX_EXACT_PLAYERS = 20


def overflow_scale(values):
    """A power of two per row that brings huge game values near 1, else 1: ``(n,)``.

    Shapley values are linear in the game, so they can be computed on ``v / s`` and
    multiplied back by ``s``; a power of two changes no bit of the result. Without it,
    differences and sums of values near the float64 limit (a model predicting 1e308)
    overflow to inf and NaN.
    """
    values = np.asarray(values, dtype=np.float64)
    peak = np.max(np.abs(values.reshape(len(values), -1)), axis=1, initial=0.0)
    return np.where(peak > 2.0**900, np.ldexp(1.0, np.frexp(peak)[1] - 1), 1.0)


def shapley_weights(n_players):
    """``|S|! (d − |S| − 1)! / d!`` for ``|S| = 0..d-1``."""
    d = n_players
    return np.array(
        [factorial(k) * factorial(d - k - 1) / factorial(d) for k in range(d)]
    )


def shapley_from_table(table):
    """Shapley values from a full table of game values.

    Parameters
    ----------
    table : ndarray of shape (n_rows, 2 ** d, n_outputs)
        ``table[:, s]`` is ``v(S)`` for the coalition whose bits are ``s``.

    Returns
    -------
    ndarray of shape (n_rows, d, n_outputs)
    """
    n, n_coal, K = table.shape
    d = int(np.log2(n_coal))
    codes = np.arange(n_coal)
    sizes = np.array([bin(c).count("1") for c in codes])
    weights = shapley_weights(d) if d > 0 else np.zeros(0)
    phi = np.empty((n, d, K))
    for i in range(d):
        without = codes[(codes >> i) & 1 == 0]
        diff = table[:, without | (1 << i)] - table[:, without]
        phi[:, i] = np.einsum("nck,c->nk", diff, weights[sizes[without]])
    return phi


def exact_shapley(game, X, *, max_players=MAX_EXACT_PLAYERS, max_values=2**24):
    """Exact Shapley values of ``game`` for every row of ``X``.

    Evaluates all ``2^d`` coalitions once per row (in row chunks so that at most
    ``max_values`` game values are held at once) and applies
    ``φ_i = Σ_{S ∌ i} |S|!(d−|S|−1)!/d! (v(S ∪ i) − v(S))``.

    Parameters
    ----------
    game : Game
        The value function (see :mod:`sklearn_shapley.games`).
    X : array-like of shape (n_rows, n_features)
    max_players : int, default=20
        Refuse games with more players (the cost is ``2^d`` evaluations per row).
    max_values : int, default=2**24
        Memory bound on the game values held at once.

    Returns
    -------
    ShapleyValues
    """
    d = game.n_players
    if d > max_players:
        raise ValueError(
            f"exact_shapley enumerates 2^d coalitions; d={d} players exceeds the limit "
            f"max_players={max_players} (2^{d} = {2**d:,} evaluations per row). Use "
            "KernelExplainer / kernel_shap, or group features with players=..."
        )
    X = np.asarray(X, dtype=np.float64)
    n_coalitions = 2**d
    # Rows per chunk, and coalitions per game call within a chunk, such that about
    # max_values game inputs (coalitions x players) are built at once.
    chunk = max(1, max_values // (n_coalitions * max(d, 1)))
    per_call = max(1, max_values // (chunk * max(d, 1)))
    if len(X):
        n_outputs = getattr(game, "n_outputs", 1)
        # The table of values and the two halves shapley_from_table subtracts.
        check_fits_in_memory(
            (min(chunk, len(X)), n_coalitions, n_outputs),
            f"The table of the game's values on all 2^{d} coalitions",
            itemsize=16,
            advice=(
                "exact enumeration doubles its cost with every player: group features "
                "into fewer players (players=...), lower max_players, or use "
                "KernelExplainer / PermutationExplainer."
            ),
        )
    values, bases = [], []
    for start in range(0, len(X), chunk):
        rows = X[start : start + chunk]
        table = np.concatenate(
            [
                game(rows, coalitions(first, min(first + per_call, n_coalitions), d))
                for first in range(0, n_coalitions, per_call)
            ],
            axis=1,
        )
        scale = overflow_scale(table)[:, None, None]
        with np.errstate(over="ignore"):  # refused by the explainer if it overflows
            values.append(shapley_from_table(table / scale) * scale)
        bases.append(table[:, 0])
    n_outputs = getattr(game, "n_outputs", 1)
    if not values:
        return ShapleyValues(
            np.zeros((0, d, n_outputs)), np.zeros((0, n_outputs)), np.zeros(0, int)
        )
    return ShapleyValues(
        np.concatenate(values), np.concatenate(bases), np.full(len(X), 2**d)
    )


class ExactExplainer(GameExplainer):
    """Exact Shapley values by enumeration of all ``2^d`` coalitions (small ``d``), or
    from the game's own exact form where it has one (a tree ensemble's marginal game,
    see :meth:`~sklearn_shapley.games.Game.shapley_values`: any ``d``).

    Parameters
    ----------
    estimator : estimator, FrozenEstimator or callable
        The model to explain (see :class:`~sklearn_shapley.BaseExplainer`).
    value_function : {"baseline", "marginal"} or Game, default="baseline"
        How held-out features are removed: replaced by ``background``'s column means
        (the most frequent category of a categorical DataFrame column; or the fixed
        values given), averaged over a background sample (whose categories a held-out
        categorical column takes), or a game object from :mod:`sklearn_shapley.games`.
    background : array-like or DataFrame, default=None
        Fixed values ``(n_features,)`` or rows ``(n, n_features)``, a DataFrame with
        fit's columns when ``X`` was one; default: from the training rows.
    n_background : int, default=100
        Rows kept for the marginal value function.
    link : {"identity", "logit", "log", "log_softmax"} or callable, default="identity"
        Applied to each prediction before averaging.
    players : list of lists of int, default=None
        Column groups treated as one player each. When every group is one column or
        a one-hot block, ``explain``'s data has one column per group (a block's: the
        position of its hot column); otherwise (an image's patches) the rows. For
        one player per original column of a Pipeline that one-hot encodes (what
        ``players="auto"`` gives :class:`~sklearn_shapley.QuadratureTreeExplainer`),
        pass the Pipeline as the model and its input DataFrame as ``X``: every
        column is then one player, and a held-out categorical column takes
        background categories, never a mean of one-hot columns.
    output : int, str or None, default=None
        Output ``transform`` returns (see :class:`~sklearn_shapley.BaseExplainer`).
    max_players : int, default=20
        Refuse more players than this.
    random_state : int, RandomState or None, default=None
        Seeds the background sample and the coalitions of ``score``.

    Attributes
    ----------
    estimator_ : the explained model
    game_ : Game
    n_features_in_, feature_names_in_, output_names_
    """

    _parameter_constraints: dict = {
        "max_players": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(
        self,
        estimator=None,
        *,
        value_function="baseline",
        background=None,
        n_background=100,
        link="identity",
        players=None,
        output=None,
        max_players=MAX_EXACT_PLAYERS,
        random_state=None,
    ):
        super().__init__(
            estimator,
            value_function=value_function,
            background=background,
            n_background=n_background,
            link=link,
            players=players,
            output=output,
            random_state=random_state,
        )
        self.max_players = max_players

    def _estimate(self, X):
        values = self.game_.shapley_values(X) if len(X) else None
        if values is None:
            return exact_shapley(self.game_, X, max_players=self.max_players)
        # the game's exact form: no coalition evaluated, beyond v(∅)
        empty = self.game_.grand_and_empty(X[:1])[1]
        base = np.broadcast_to(empty, (len(X), values.shape[2])).copy()
        return ShapleyValues(values, base, np.ones(len(X), dtype=np.int64))
