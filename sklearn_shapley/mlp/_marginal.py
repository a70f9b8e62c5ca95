"""The marginal (interventional) game of a one-hidden-layer perceptron, exactly and fast.

For scikit-learn's ``MLPRegressor`` / ``MLPClassifier`` with one hidden layer, behind
column-wise scalers in a ``Pipeline`` or not, the explained output is
``f(z) = out(W2ᵀ act(W1ᵀ z + b1) + b2)`` (the scalers folded into ``W1`` and ``b1``),
and the marginal game over a background ``B`` is ``v_x(S) = mean_b f(x_S, b_{¬S})``.
The hybrid row's hidden pre-activation is a part of ``x`` on ``S`` plus a part of ``b``
off ``S``, each computed once per coalition (:mod:`._kernel`), so a value costs
``n_background × H`` multiply-adds instead of ``n_background × (n_features + 1) × H``
and no Python call per batch: about 30 times faster than
:class:`~sklearn_shapley.games.MarginalGame` on diabetes' 10 features, with the same
values to float64 rounding.
"""

from __future__ import annotations

import numpy as np

from .._memory import check_fits_in_memory
from .._openmp import effective_n_threads
from .._simd import select_build
from ..games import Game, MarginalGame, check_masks, check_rows, player_membership
from . import _kernel as _portable

__all__ = ["MLPMarginalGame", "mlp_marginal_game"]

#: The kernel's codes of scikit-learn's activations (hidden) and output functions.
ACTIVATIONS = {
    "relu": 0,
    "identity": 1,
    "tanh": 2,
    "logistic": 3,
    "softmax": 4,
    "exp": 5,
}
HIDDEN_ACTIVATIONS = ("relu", "identity", "tanh", "logistic")
OUT_ACTIVATIONS = ("identity", "logistic", "softmax", "exp")


_kernel = select_build(_portable)


def kernel_build():
    """``"avx2+fma"`` or ``"portable"``: the build of the kernel in use."""
    return "avx2+fma" if _kernel is not _portable else "portable"


class MLPMarginalGame(Game):
    """The marginal game of a one-hidden-layer perceptron, exact and fast.

    ``v_x(S) = mean_b g(out(W2ᵀ act(W1ᵀ z + b1) + b2))`` with ``z = (x_S, b_{¬S})``,
    over the rows ``b`` of ``background``, where ``g(o) = o @ output_map +
    output_offset`` maps the network's outputs to the explained ones: the same values
    as :class:`~sklearn_shapley.games.MarginalGame` of the model (see
    :func:`mlp_marginal_game`), at a fraction of the cost.

    Parameters
    ----------
    weights : sequence of four arrays
        ``(W1 (n_features, H), b1 (H,), W2 (H, K), b2 (K,))``.
    background : array-like of shape (n_background, n_features)
    activation : {"relu", "identity", "tanh", "logistic"}, default="relu"
        The hidden units'.
    out_activation : {"identity", "logistic", "softmax", "exp"}, default="identity"
        ``"exp"``: a Poisson regressor's.
    players : list of lists of int, default=None
        Column groups treated as one player each.
    output_map : array-like of shape (K, n_outputs), default=None
        Identity when None.
    output_offset : array-like of shape (n_outputs,), default=None
        Zeros when None.
    n_jobs : int, default=None
        OpenMP threads (None: all); the values do not depend on it.
    """

    def __init__(
        self,
        weights,
        background,
        *,
        activation="relu",
        out_activation="identity",
        players=None,
        output_map=None,
        output_offset=None,
        n_jobs=None,
    ):
        W1, b1, W2, b2 = (np.asarray(w, dtype=np.float64) for w in weights)
        if W2.ndim == 1:
            W2 = W2[:, None]
        b1, b2 = np.atleast_1d(b1), np.atleast_1d(b2)
        if (
            W1.ndim != 2
            or b1.shape != (W1.shape[1],)
            or W2.shape[0] != W1.shape[1]
            or b2.shape != (W2.shape[1],)
        ):
            raise ValueError(
                "weights must be (W1 (n_features, H), b1 (H,), W2 (H, K), b2 (K,)); "
                f"got shapes {[w.shape for w in (W1, b1, W2, b2)]}."
            )
        background = np.asarray(background, dtype=np.float64)
        if background.ndim != 2 or len(background) == 0:
            raise ValueError("background must be a non-empty 2-D array.")
        if background.shape[1] != W1.shape[0]:
            raise ValueError(
                f"background has {background.shape[1]} features, the network "
                f"{W1.shape[0]}."
            )
        for name, value, allowed in (
            ("activation", activation, HIDDEN_ACTIVATIONS),
            ("out_activation", out_activation, OUT_ACTIVATIONS),
        ):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}.")
        K = W2.shape[1]
        output_map = np.eye(K) if output_map is None else np.asarray(output_map, float)
        if output_map.ndim != 2 or output_map.shape[0] != K:
            raise ValueError(f"output_map must have shape ({K}, n_outputs).")
        self.n_outputs = output_map.shape[1]
        output_offset = (
            np.zeros(self.n_outputs)
            if output_offset is None
            else np.asarray(output_offset, dtype=np.float64)
        )
        if output_offset.shape != (self.n_outputs,):
            raise ValueError(f"output_offset must have shape ({self.n_outputs},).")
        self.weights = tuple(np.ascontiguousarray(w) for w in (W1, b1, W2, b2))
        self.background = np.ascontiguousarray(background)
        self.activation = activation
        self.out_activation = out_activation
        self.players = players
        self.output_map = output_map
        self.output_offset = output_offset
        self.n_jobs = n_jobs
        self.n_features = W1.shape[0]
        self._membership = player_membership(players, self.n_features)
        self.n_players = self._membership.shape[0]

    #: Background rows of :meth:`proxy`.
    PROXY_BACKGROUND = 20

    @property
    def evaluation_cost(self):
        """Model evaluations one value costs, roughly: one per background row when
        each row has coalitions of its own (nothing is shared)."""
        return len(self.background)

    @property
    def shared_evaluation_cost(self):
        """The same when every row has the same coalitions: the background's
        hidden-layer inputs are then computed once per coalition, about a sixteenth
        of a model evaluation per background row."""
        return max(1, len(self.background) // 16)

    def proxy(self, max_cost=None):
        """The same network's marginal game on ``PROXY_BACKGROUND`` background rows
        that stand for the rest (each the nearest to a k-means centre): features
        at a fraction of the cost, same ``v(full)``.
        Where their first and last values cost more than ``max_cost``, its
        baseline game at the background's mean, whose first and last values cost
        a step per player (:meth:`first_last_values`)."""
        rows = self.background[: self.PROXY_BACKGROUND]
        if (
            max_cost is not None
            and self.with_background(rows).first_last_cost > max_cost
        ):
            return self.with_background(self.background.mean(axis=0)[None])
        return self.with_background(
            _representatives(self.background, self.PROXY_BACKGROUND)
        )

    def with_background(self, background):
        """The same network's marginal game over another ``background``."""
        game = MLPMarginalGame(
            self.weights,
            background,
            activation=self.activation,
            out_activation=self.out_activation,
            players=self.players,
            output_map=self.output_map,
            output_offset=self.output_offset,
            n_jobs=self.n_jobs,
        )
        game.output_names = self.output_names
        return game

    def __call__(self, X, masks):
        """``(n_rows, n_coalitions, n_outputs)`` values of the rows ``X`` on player
        ``masks``, shared ``(m, n_players)`` or per row ``(n_rows, m, n_players)``."""
        X = check_rows(X, self.n_features)
        masks = check_masks(masks, self.n_players, len(X))
        if masks.ndim == 3 and len(X) and np.all(masks == masks[:1]):
            masks = masks[0]  # the same coalitions for every row (broadcast)
        # a feature comes from the row when its player does
        membership = self._membership.astype(np.uint8)
        fmasks = (masks.astype(np.uint8) @ membership).astype(np.uint8)
        check_fits_in_memory(
            (len(X), fmasks.shape[-2], max(self.n_outputs, self.weights[2].shape[1])),
            "The game's values",
            advice="evaluate fewer rows or coalitions at a time.",
        )
        if fmasks.ndim == 2:
            raw = self._raw(X, fmasks)
        else:  # each row with its own coalitions
            K = self.weights[2].shape[1]
            raw = np.empty((len(X), fmasks.shape[1], K))
            for i in range(len(X)):
                raw[i] = self._raw(X[i : i + 1], fmasks[i])[0]
        return raw @ self.output_map + self.output_offset

    def grand_and_empty(self, X):
        """``v(full)``, one network evaluation a row (every feature comes from the
        row, so one background row stands for all); ``v(∅)``, the same for every
        row, computed once."""
        X = check_rows(X, self.n_features)
        every = np.ones((1, self.n_features), dtype=np.uint8)
        full = self._raw(X, every, self.background[:1])[:, 0]
        if getattr(self, "_empty", None) is None:
            self._empty = self._raw(self.background[:1], 1 - every)[0, 0]
        out = (np.vstack([full, self._empty]) @ self.output_map) + self.output_offset
        return out[:-1], np.broadcast_to(out[-1], (len(X), self.n_outputs)).copy()

    @property
    def first_last_cost(self):
        """Model evaluations a row's first and last values cost: with one
        background row, each coalition's hidden layer costs ``H (1 + K)``
        multiply-adds against a model evaluation's ``H (n_features + K)`` (its
        pre-activation differs from the row's or the baseline's by one player's
        part); else one value per coalition."""
        if len(self.background) == 1:
            K = self.weights[2].shape[1]
            return (2 * self.n_players + 2) * (1 + K) / (self.n_features + K)
        return super().first_last_cost

    def first_last_values(self, X):
        """The game on the singletons, the leave-one-outs, then the grand and empty
        coalitions, ``(n, 2 n_players + 2, n_outputs)``.

        With one background row ``b``, player ``i``'s singleton's hidden
        pre-activation is ``b``'s plus ``i``'s part of ``(x − b) W1``, its
        leave-one-out's ``x``'s minus it: no product over the features per
        coalition. Else the values of the coalitions.
        """
        if len(self.background) != 1:
            return super().first_last_values(X)
        X = np.ascontiguousarray(check_rows(X, self.n_features))
        if getattr(self, "_players_csr", None) is None:
            groups = [np.flatnonzero(row) for row in self._membership]
            self._players_csr = (
                np.r_[0, np.cumsum([len(g) for g in groups])].astype(np.longlong),
                np.concatenate(groups).astype(np.longlong),
            )
        indptr, indices = self._players_csr
        K = self.weights[2].shape[1]
        out = np.empty((len(X), 2 * self.n_players + 2, K))
        _kernel.first_last_values(
            X,
            self.background[0],
            indptr,
            indices,
            *self._network(),
            out,
            effective_n_threads(self.n_jobs),
        )
        return out @ self.output_map + self.output_offset

    def _network(self):
        """The kernels' arguments for the network: its weights, then the codes of
        its activations."""
        return (
            *self.weights,
            ACTIVATIONS[self.activation],
            ACTIVATIONS[self.out_activation],
        )

    def _raw(self, X, fmasks, background=None):
        """The network's outputs averaged over the ``background`` (default the
        game's): ``(n, m, K)``."""
        out = np.empty((len(X), len(fmasks), self.weights[2].shape[1]))
        _kernel.marginal_values(
            np.ascontiguousarray(X.T),
            np.ascontiguousarray(fmasks),
            self.background if background is None else background,
            *self._network(),
            out,
            effective_n_threads(self.n_jobs),
        )
        return out


def _column_affine(step, n_features):
    """``(scale, shift)`` of a fitted column-wise affine transformer, ``x * scale +
    shift``, or None for any other step."""
    from sklearn.preprocessing import MaxAbsScaler, MinMaxScaler, StandardScaler

    if step is None or step == "passthrough":
        return np.ones(n_features), np.zeros(n_features)
    if type(step) is StandardScaler:
        # (mean_ and scale_ may be set when with_mean / with_std is off: unused)
        scale = 1.0 / step.scale_ if step.with_std else np.ones(n_features)
        mean = step.mean_ if step.with_mean else np.zeros(n_features)
        return scale, -mean * scale
    if type(step) is MinMaxScaler and not step.clip:
        return step.scale_, step.min_
    if type(step) is MaxAbsScaler:
        return 1.0 / step.scale_, np.zeros(n_features)
    return None


def mlp_marginal_game(game, rows=None, *, n_jobs=None):
    """The exact :class:`MLPMarginalGame` of a :class:`MarginalGame`, or None.

    None unless the game's link is the identity and its model (or the model in a
    ``FrozenEstimator``) is a fitted scikit-learn ``MLPRegressor`` or
    ``MLPClassifier`` with one hidden layer, alone or at the end of a ``Pipeline``
    whose other steps are ``StandardScaler``, ``MinMaxScaler`` (without ``clip``),
    ``MaxAbsScaler`` or ``"passthrough"``. The network's outputs are checked against
    the game's on the background and ``rows`` (the first 1,000) to ``1e-9`` relative
    to the largest; the two games then agree to float64 rounding on every row and
    coalition.
    """
    from sklearn.frozen import FrozenEstimator
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    from sklearn.pipeline import Pipeline

    if not isinstance(game, MarginalGame) or game.link != "identity":
        return None
    model = game.model
    if isinstance(model, FrozenEstimator):
        model = model.estimator
    n_features = game.background.shape[1]
    scale, shift = np.ones(n_features), np.zeros(n_features)
    if isinstance(model, Pipeline):
        *steps, model = [step for _, step in model.steps]
        for step in steps:
            affine = _column_affine(step, n_features)
            if affine is None:
                return None
            # this step after the earlier ones: x * s + t, then * s' + t'
            scale, shift = scale * affine[0], shift * affine[0] + affine[1]
    if type(model) not in (MLPRegressor, MLPClassifier):
        return None
    coefs = getattr(model, "coefs_", None)
    if coefs is None or len(coefs) != 2 or coefs[0].shape[0] != n_features:
        return None  # not fitted, several hidden layers, or other columns
    if (
        model.activation not in HIDDEN_ACTIVATIONS
        or model.out_activation_ not in OUT_ACTIVATIONS
    ):
        return None
    W1 = coefs[0] * scale[:, None]
    b1 = model.intercepts_[0] + shift @ coefs[0]
    W2, b2 = coefs[1], model.intercepts_[1]
    output_map = output_offset = None
    binary = isinstance(model, MLPClassifier) and model.out_activation_ == "logistic"
    if binary and W2.shape[1] == 1 and len(model.classes_) == 2:  # [1 − p, p]
        output_map, output_offset = np.array([[-1.0, 1.0]]), np.array([1.0, 0.0])
    mlp_game = MLPMarginalGame(
        (W1, b1, W2, b2),
        game.background,
        activation=model.activation,
        out_activation=model.out_activation_,
        players=game.players,
        output_map=output_map,
        output_offset=output_offset,
        n_jobs=n_jobs,
    )
    if mlp_game.n_players != game.n_players:
        return None
    probe = game.background
    if rows is not None:
        probe = np.vstack([probe, np.asarray(rows, dtype=np.float64)[:1000]])
    expected = game._predict(probe)
    if expected.shape[1] != mlp_game.n_outputs:
        return None
    full = np.ones((1, mlp_game.n_players), dtype=bool)
    got = mlp_game(probe, full)[:, 0]
    if np.abs(got - expected).max() > 1e-9 * (1.0 + np.abs(expected).max()):
        return None
    mlp_game.output_names = game.output_names
    return mlp_game


def _representatives(rows, k):
    """At most ``k`` of the ``rows`` that stand for all of them: the distinct row
    nearest each centre of a k-means clustering (seeded); all distinct rows when
    there are at most ``k``."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import pairwise_distances_argmin

    distinct = np.unique(rows, axis=0)
    if len(distinct) <= k:
        return distinct
    centres = KMeans(k, random_state=0, n_init=1).fit(distinct).cluster_centers_
    return distinct[np.unique(pairwise_distances_argmin(centres, distinct))]
