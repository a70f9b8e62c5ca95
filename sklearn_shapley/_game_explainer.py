"""``GameExplainer``: the base of the model-agnostic explainers that evaluate a game.

It turns ``value_function`` / ``background`` / ``link`` / ``players`` into a
:class:`~sklearn_shapley.games.Game` at ``fit`` time; subclasses estimate Shapley values
of that game (exactly, by KernelSHAP, by permutations, or by a trained network).
"""

from __future__ import annotations

from numbers import Integral

from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions

from ._base import BaseExplainer
from .games import (
    LINKS,
    BaselineGame,
    Game,
    MarginalGame,
    _is_classifier,
    baseline_values,
    default_background,
    resolve_game,
)
from .metrics import shapley_loss

VALUE_FUNCTIONS = ("baseline", "marginal")


class GameExplainer(BaseExplainer):
    """Shared parameters and machinery of explainers defined by a game.

    See :class:`~sklearn_shapley.ExactExplainer` for the parameters.
    """

    _accepts_callables = True
    _parameter_constraints: dict = {
        "value_function": [str, Game],  # the names each explainer knows: _make_game
        "background": ["array-like", None],
        "n_background": [Interval(Integral, 1, None, closed="left")],
        "link": [StrOptions(set(LINKS)), callable],
        "players": ["array-like", None],
        "random_state": ["random_state"],
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
        random_state=None,
    ):
        self.estimator = estimator
        self.value_function = value_function
        self.background = background
        self.n_background = n_background
        self.link = link
        self.players = players
        self.output = output
        self.random_state = random_state

    def _resolve_estimator(self, X, y):
        if self.estimator is None and isinstance(self.value_function, Game):
            return None
        return super()._resolve_estimator(X, y)

    def _make_game(self, X):
        """Build the game of ``value_function`` for the fitted model.

        The game is resolved to its fast exact form where the model has
        one (:func:`~sklearn_shapley.games.resolve_game`): the same values, faster.
        Fitted on a DataFrame, a held-out categorical column takes the background's
        values (marginal) or its most frequent category (baseline), never a mean.
        """
        vf = self.value_function
        if isinstance(vf, Game):
            return vf
        frame = self._frame_codec
        if vf == "baseline":
            bg = X if self.background is None else self._background_rows()
            baseline = bg if bg.ndim == 1 else baseline_values(bg, frame)
            if baseline.shape != (X.shape[1],):
                raise ValueError(
                    f"background gives {baseline.shape[0]} baseline values; X has "
                    f"{X.shape[1]} features."
                )
            game = BaselineGame(
                self.estimator_,
                baseline,
                link=self.link,
                players=self.players,
                frame=frame,
            )
            return resolve_game(game, X)
        if vf == "marginal":
            bg = X if self.background is None else self._background_rows()
            if bg.ndim != 2 or bg.shape[1] != X.shape[1]:
                raise ValueError(
                    f"background must be a 2-D array with {X.shape[1]} columns for the "
                    f"marginal value function, got shape {bg.shape}."
                )
            bg = default_background(bg, self.n_background, self._rng_seed(1))
            game = MarginalGame(
                self.estimator_, bg, link=self.link, players=self.players, frame=frame
            )
            return resolve_game(game, X)
        raise ValueError(
            f"value_function must be one of {VALUE_FUNCTIONS} or a Game instance, got "
            f"{vf!r}."
        )

    def _rng_seed(self, offset=0):
        """A reproducible integer seed derived from ``random_state`` at ``fit``."""
        return (self._seed + offset) % (2**31 - 1)

    def _fit_explainer(self, X, y):
        self._seed = int(check_random_state(self.random_state).randint(2**31 - 1))
        self.game_ = self._make_game(X)
        if self.game_.n_players != (
            X.shape[1] if self.players is None else len(self.players)
        ):
            raise ValueError(
                f"The game has {self.game_.n_players} players but X has {X.shape[1]} "
                "features."
            )
        self.game_.grand_and_empty(X[:1])  # sets n_outputs, checks the model runs
        K = self.game_.n_outputs
        names = self.game_.output_names
        self.output_names_ = (
            list(names) if names is not None else [f"output_{k}" for k in range(K)]
        )
        self._is_binary_classifier = K == 2 and _is_classifier(self.estimator_)
        self._fit_estimator(X, y)

    def _fit_estimator(self, X, y):
        """Hook for explainers that train something on top of the game."""

    def _explain_values(self, X):
        result = self._estimate(X)
        return (
            result.values,
            result.base_values,
            {"n_evaluations": result.n_evaluations},
        )

    def _explained_output(self, X):
        # v(full) evaluated exactly as the estimator evaluates it: a float32 network
        # game (a surrogate) gives results that depend on the batch's shape (BLAS
        # blocking), so another batch could differ from it in the last bits.
        return self._grand_and_empty(X)[0]

    def _grand_and_empty(self, X):
        """``(v(full), v(∅), evaluations per row)`` as the estimator computes them."""
        full, empty = self.game_.grand_and_empty(X)
        return full, empty, 2

    def _estimate(self, X):  # pragma: no cover - interface
        raise NotImplementedError

    def score(self, X, y=None, n_coalitions=64):
        """Minus the Shapley weighted-least-squares loss on held-out coalitions.

        ``-mean (v_x(S) − v_x(∅) − 1_Sᵀ φ(x))²`` over rows of ``X`` and ``n_coalitions``
        paired coalitions from the Shapley kernel (fixed by ``random_state``); exact
        Shapley values minimise it, so higher is better. ``y`` is ignored.
        """
        exp = self.explain(X)
        values = exp.values if exp.values.ndim == 3 else exp.values[:, :, None]
        X = self._validate(X, reset=False)
        return -shapley_loss(
            self.game_,
            X,
            values,
            n_coalitions=n_coalitions,
            random_state=self._rng_seed(2),
        )
