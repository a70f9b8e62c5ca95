"""``FastSHAPExplainer``: amortized Shapley values from a network trained on the game.

FastSHAP (Jethani et al., 2022) trains an explainer network ``φ(x; θ) ∈ R^{d × K}`` to
minimise ``E_x E_{S ~ Shapley kernel} Σ_k (v_xk(S) − v_xk(∅) − 1_Sᵀ φ_k(x; θ))²`` with
the additive efficient normalization as its output layer; the global optimum is the
exact Shapley value of the game ``v``. After training, explaining a row costs one
forward pass plus ``v(full)``, and with ``first_last`` (by default where the game
computes them cheaply) ``2d + 1`` more values of the game's proxy: the players' first
and last marginal contributions, inputs of the network, which learns a correction to
their average; where they are cheap (``pairs``), each player's pairwise interactions
summed at both ends (from ``d (d − 1)`` more values, or the game's fast form), which
make that average exact for interactions of up to four players.

Training has one mechanism: the loss above, on targets from one coalition source that
:func:`plan_coalitions` picks from the game's size, the number of rows and the budget
of game evaluations, with early stopping on held-out rows with fixed coalitions.
"""

from __future__ import annotations

import hashlib
import math
import time
import warnings
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.utils._param_validation import Interval, StrOptions
from torch import nn

from .._explanation import ShapleyValues
from .._game_explainer import GameExplainer
from ..games import Game, player_membership
from ..sampling import CoalitionSampler, all_coalitions, shapley_kernel_size_weights
from ._nets import (
    AUTO_BINS,
    NORMALIZATIONS,
    ShapleyModule,
    ShapleyNet,
    augment_rows,
    coalition_moments,
    contribution_inputs,
    kernel_gram,
    pooled_bytes,
    quantile_bin_edges,
    sample_statistics,
    shapley_kernel_gram,
    thin_thresholds,
)
from ._surrogate import fit_surrogate
from ._training import (
    MAX_ROWS,
    fit_net,
    inference_threads,
    split_rows,
    standardizer,
    subsample,
    training_callbacks,
)

__all__ = ["FastSHAPExplainer", "CoalitionPlan", "plan_coalitions"]

VALUE_FUNCTIONS = ("surrogate", "baseline", "marginal")

#: Model evaluations for the training targets with ``max_evaluations="auto"``: a
#: few seconds of a tree ensemble's or a small network's predictions on 2 cores.
MAX_EVALUATIONS = 10_000_000
#: Most players for which the targets are the expected loss over every coalition.
MAX_ENUMERATED_PLAYERS = 10
#: Sampled coalitions per row copy with ``n_coalitions="auto"``, raised to at most
#: ``MAX_COALITIONS`` by the budget the copies leave (their noise limits accuracy).
MIN_COALITIONS, MAX_COALITIONS = 32, 128
#: Seconds of evaluating the game for the targets past which ``fit`` warns.
SLOW_TARGETS = 30
#: Most bytes of the targets evaluated before training (else fresh coalitions are
#: evaluated for every batch).
MAX_POOL_BYTES = 2**28
#: Fewest rows FastSHAP trains on.
MIN_ROWS = 10
#: Most model evaluations explaining a row may cost with ``pairs="auto"``: a tenth
#: of what KernelSHAP with 1,000 evaluations spends.
MAX_ROW_COST = 100


@dataclass(frozen=True)
class CoalitionPlan:
    """Where the training targets come from (see :func:`plan_coalitions`).

    Attributes
    ----------
    source : {"exact", "all", "pool", "fresh"}
        ``"exact"``: the game's exact Shapley values (its fast exact form), from
        which the expected loss over every coalition follows in closed form;
        ``"all"``: every coalition, weighted by the Shapley kernel (the expected
        loss, exact); ``"pool"``: ``n_coalitions`` sampled coalitions per copy of a
        row, evaluated before training; ``"fresh"``: as many drawn and evaluated
        for every batch.
    n_coalitions : int
        Coalitions per row copy (``2^d − 2`` for ``"all"``, 0 for ``"exact"``).
    n_copies : int
        Augmented copies of each training row evaluated before training; for
        ``"fresh"`` the most epochs the budget pays for.
    n_rows : int
        Training rows used: all of them, or as many as the budget pays for when
        one copy of every row's sampled coalitions would exceed it.
    n_draws : int, default=1
        Sets of ``n_copies`` copies the budget pays for (``"exact"`` and
        ``"all"``, with augmented copies): training draws new augmented copies
        for each of its first ``n_draws`` epochs, so that the network does not
        see the same ones again.
    """

    source: str
    n_coalitions: int
    n_copies: int
    n_rows: int
    n_draws: int = 1


def plan_coalitions(
    n_players,
    n_rows,
    *,
    n_coalitions,
    max_evaluations,
    grow_coalitions=False,
    evaluation_cost=1,
    shared_evaluation_cost=None,
    extra_per_row=0,
    n_outputs=1,
    exact_values=False,
):
    """Choose the training targets' coalition source for a budget.

    The game's exact Shapley values when it has a fast exact form; every
    coalition (the exact expected loss) for a game of at most
    ``MAX_ENUMERATED_PLAYERS`` players when one copy of the rows fits the budget;
    else a pool of ``n_coalitions`` sampled coalitions per row copy, evaluated
    before training, when it fits ``MAX_POOL_BYTES``; else fresh coalitions for
    every batch. The copies of the rows (augmented, to generalise beyond them) are
    as many as the budget pays for, at most ``MAX_ROWS`` row copies an epoch; when
    one copy of every row's sampled coalitions exceeds the budget, fewer rows (at
    least ``MIN_ROWS``). What the budget leaves once the copies reach their cap
    pays, for exact and every-coalition targets, new sets of augmented copies
    drawn epoch by epoch (``n_draws``); with ``grow_coalitions``, for sampled
    ones, more coalitions per copy, to at most ``MAX_COALITIONS``.

    Parameters
    ----------
    n_players, n_rows : int
        The game's players and the training rows.
    n_coalitions : int
        Sampled coalitions per row copy.
    max_evaluations : int
        Model evaluations the targets may cost.
    grow_coalitions : bool, default=False
        Spend the budget the copies leave on more coalitions per copy.
    evaluation_cost : float, default=1
        Model evaluations per game value (:attr:`Game.evaluation_cost`).
    shared_evaluation_cost : float, default=None
        The same when every row has the same coalitions, as with every coalition
        (:attr:`Game.shared_evaluation_cost`); ``None``: ``evaluation_cost``.
    extra_per_row : float, default=0
        Game values each row copy costs besides its coalitions (``v(full)``,
        ``v(∅)``, the first and last contributions).
    n_outputs : int, default=1
    exact_values : bool, default=False
        The game gives exact Shapley values
        (:meth:`~sklearn_shapley.games.Game.shapley_values`): a row copy then costs
        its extra values and about one value for them.

    Returns
    -------
    CoalitionPlan
    """
    n_rows = max(int(n_rows), 1)
    max_copies = max(1, MAX_ROWS // n_rows)
    if shared_evaluation_cost is None:
        shared_evaluation_cost = evaluation_cost
    per_value, per_shared_value = (
        max(float(cost), 1e-9) for cost in (evaluation_cost, shared_evaluation_cost)
    )
    if exact_values:
        per_copy = n_rows * (extra_per_row + 1) * per_value
        copies = max(1, int(max_evaluations // per_copy))
        return _drawn("exact", 0, copies, max_copies, n_rows)
    n_all = 2**n_players - 2
    if n_players <= MAX_ENUMERATED_PLAYERS:
        per_copy = n_rows * (extra_per_row + n_all) * per_shared_value
        copies = int(max_evaluations // per_copy)
        if copies >= 1:
            return _drawn("all", n_all, copies, max_copies, n_rows)
    m = int(n_coalitions)
    per_row = (m + extra_per_row) * per_value
    rows = min(n_rows, max(MIN_ROWS, int(max_evaluations // per_row)))
    copies = max(1, int(max_evaluations // (rows * per_row)))
    if grow_coalitions and copies > max_copies:
        affordable = max_evaluations // (rows * max_copies * per_value) - extra_per_row
        m = max(m, min(int(affordable) // 2 * 2, MAX_COALITIONS))
    bytes_per_copy = rows * pooled_bytes(n_players, n_outputs, m)[0]
    pooled = min(copies, max_copies, MAX_POOL_BYTES // max(bytes_per_copy, 1))
    if pooled >= 1:
        return CoalitionPlan("pool", m, int(pooled), rows)
    return CoalitionPlan("fresh", m, copies, rows)


def _drawn(source, n_coalitions, copies, max_copies, n_rows):
    """A plan of at most ``max_copies`` copies a set, and as many sets as
    ``copies`` in all pay for where a set has augmented copies to renew."""
    per_draw = min(copies, max_copies)
    n_draws = copies // per_draw if per_draw > 1 else 1
    return CoalitionPlan(source, n_coalitions, per_draw, n_rows, n_draws)


class FastSHAPExplainer(GameExplainer):
    """Amortized Shapley values: an explainer network trained by FastSHAP.

    ``fit`` builds the game (by default a surrogate network of the model, trained
    first and kept as ``surrogate_``; the marginal game of a tree ensemble or of a
    one-hidden-layer MLP in its fast exact form,
    :func:`~sklearn_shapley.games.resolve_game`), then trains an explainer network
    ``φ(x) ∈ R^{d × K}`` through skorch on the Shapley weighted-least-squares loss
    ``Σ_k (v_xk(S) − v_xk(∅) − 1_Sᵀ φ_k(x))²`` with the efficiency normalization
    inside the forward pass.

    ``fit`` uses at most 10,000 rows (a random subsample of larger data, for the
    surrogate too) and evaluates the targets before training, within
    ``max_evaluations`` model evaluations (:func:`plan_coalitions`); it warns
    before evaluations that will take long. The targets are, for a game with
    exact Shapley values of its own (a tree ensemble's baseline or marginal game
    of its raw output) or of at most 10 players, the expected loss over every
    coalition of augmented copies of the training rows (exact, no sampling
    noise); else ``n_coalitions`` paired Shapley-kernel coalitions per copy. Copies are the rows with some players'
    values swapped with other rows' (``swap_probability``) and Gaussian noise
    (``input_noise``), the game evaluated at the new rows, so the network learns
    the Shapley values around the data; where the budget pays for more copies
    than an epoch holds (exact or every-coalition targets), every epoch draws new
    ones (``plan_.n_draws``). Early stopping watches the same loss on
    held-out rows with fixed seeded coalitions (``n_iter_no_change``, ``tol``); the
    learning rate is halved on plateaus, the weights validated and kept are an
    exponential moving average of the last epoch's steps, and the best are
    restored.

    ``transform`` / ``explain`` then cost one forward pass plus ``v(full)`` and
    ``v(∅)`` per row, and with ``first_last`` the ``2d + 2`` values of the players'
    first and last contributions in the game's proxy
    (:meth:`~sklearn_shapley.games.Game.proxy`: the game itself, or the baseline
    game at the background's mean for a marginal game), and with ``pairs`` its
    players' pairwise interaction sums
    (:meth:`~sklearn_shapley.games.Game.contribution_values`). The additive
    normalization is applied again in float64, so ``base_values +
    values.sum(axis=1)`` equals the explained output to float precision.
    ``benchmarks/results/fastshap.md`` reports accuracy and fit time against
    KernelSHAP.

    Parameters
    ----------
    estimator : estimator, FrozenEstimator or callable, default=None
        The model to explain (see :class:`~sklearn_shapley.BaseExplainer`).
    value_function : {"surrogate", "baseline", "marginal"} or Game, default="surrogate"
        ``"surrogate"``: a masked network ``g(x ⊙ S, S)`` trained on the model
        (:func:`~sklearn_shapley.amortized.fit_surrogate`, the conditional /
        in-distribution value function); ``"baseline"``: held-out features set to
        ``background`` (default the column means); ``"marginal"``: averaged over a
        background sample (``n_background`` rows of ``background`` or of ``X``); or a
        :class:`~sklearn_shapley.games.Game` (a fitted surrogate, to share one
        across explainers).
    background : array-like, default=None
        Baseline values ``(n_features,)`` or rows ``(n, n_features)``.
    n_background : int, default=100
        Rows kept for the marginal value function.
    link : {"identity", "logit", "log", "log_softmax"} or callable, default="identity"
        Applied to each prediction before the game averages or differences it.
    players : list of lists of int, default=None
        Column groups (e.g. one-hot blocks) treated as one player each. When every
        group is one column or a one-hot block, ``explain``'s data has one column per
        group (a block's: the position of its hot column); otherwise the rows. For
        one player per original column of a Pipeline that one-hot encodes (what
        ``players="auto"`` gives :class:`~sklearn_shapley.QuadratureTreeExplainer`),
        pass the Pipeline as the model and its input DataFrame as ``X``: every
        column is then one player, and a held-out categorical column takes
        background categories, never a mean of one-hot columns.
    normalization : {"additive", "multiplicative", "none"}, default="additive"
        Efficiency layer of the training forward pass: ``φ + (v(full) − v(∅) −
        1ᵀφ)/d``, ``φ · (v(full) − v(∅)) / 1ᵀφ``, or none (see
        ``efficiency_lambda``).
    paired_sampling : bool, default=True
        Sample every coalition together with its complement.
    n_coalitions : int or "auto", default="auto"
        Sampled coalitions per training row copy, when the game is too large for
        every coalition (rounded up to even when paired); more make each target
        less noisy and cost proportionally more evaluations. ``"auto"``: 32, and
        up to 128 where the budget has evaluations left once the copies reach
        their cap (10,000 row copies).
    max_evaluations : int or "auto", default="auto"
        Budget of model evaluations for the training targets (a marginal value
        costs one per background row). ``"auto"``: 10 million, a few seconds for
        fast models; the copies of the rows shrink to fit it.
    hidden_layer_sizes : tuple of int, default=(256, 256)
        Hidden ReLU layers of the explainer network.
    playerwise_layer_sizes : tuple of int or None, default=(16, 16)
        Hidden layers of a second branch, one small MLP per player on that player's
        own features, added to the joint MLP's output: a bias towards main
        effects. ``None`` disables it.
    n_bins : int, "auto" or None, default="auto"
        Quantile bins per feature of a piecewise-linear encoding the networks see
        beside the standardised row: the Shapley values of tree ensembles are step
        functions that ReLU layers on raw values fit poorly. ``"auto"``, when the
        explained output is piecewise constant (small moves of a feature mostly
        leave it unchanged): steps at the game's own split thresholds when it
        knows them (a tree ensemble's,
        :meth:`~sklearn_shapley.games.Game.split_thresholds`), where its Shapley
        values are exactly representable, else 32 quantile bins; no encoding for
        a smooth output. ``None``: no encoding.
    first_last : "auto" or bool, default="auto"
        Feed every player's first and last marginal contributions
        ``v({i}) − v(∅)`` and ``v(N) − v(N∖{i})`` (in the game's proxy) to the
        network (the player's own branch, and the joint MLP where they at most
        double its first layer), which outputs a correction to their average
        (exact for games whose interactions involve at most two players).
        ``"auto"``: where they cost at most 34 model evaluations a row
        (:attr:`~sklearn_shapley.games.Game.first_last_cost`): for a game of at
        most 16 players, and for any number where the game has a fast form for
        them (a tree ensemble's or a one-hidden-layer MLP's game over one
        baseline row).
    pairs : "auto" or bool, default="auto"
        With ``first_last``, also feed the network the correction computed from
        each player's pairwise interactions (the game on every pair of players
        and every pair's complement, ``d (d − 1)`` more values a row, or the
        game's fast form for their sums), which makes the average the Shapley
        value of a game whose interactions involve at most four players (a tree
        ensemble of depth at most 4 exactly, and a closer start for smooth models).
        ``"auto"``: where a row's explanation then costs at most 100 model
        evaluations (:attr:`~sklearn_shapley.games.Game.pair_cost` besides the
        contributions and ``v(full)``, ``v(∅)``), a tenth of what KernelSHAP with
        1,000 evaluations spends: at any number of players for a tree ensemble
        whose explained output is its trees' sums (a regressor's: its pair sums
        cost a few look-ups per tree, unless its marginal game's tables would
        exceed their size limit), else up to 9 players, or 10 where the game has
        a fast form for the contributions.
    efficiency_lambda : float, default=0.0
        Weight of the penalty ``(1ᵀφ − v(full) + v(∅))²`` added to the loss.
    input_noise : float, default=0.1
        Gaussian noise, in standard deviations, added to the row copies.
    swap_probability : float, default=0.2
        Probability that a player of a row copy takes its values in another
        training row.
    batch_size : int, default=128
        Rows per optimizer step.
    learning_rate : float, default=1e-3
        Adam's initial learning rate.
    max_epochs : int, default=50
        Most passes over the training targets.
    early_stopping : bool, default=True
        Hold out ``validation_fraction`` of the rows and stop when their loss has
        not improved by ``tol`` (relative) for ``n_iter_no_change`` epochs,
        restoring the best weights.
    n_iter_no_change : int, default=10
        Epochs without improvement before stopping (the learning rate is halved
        after half as many).
    tol : float, default=1e-2
        Relative improvement of the held-out loss that counts.
    validation_fraction : float, default=0.1
        Share of the rows held out for early stopping.
    surrogate_params : dict, default=None
        Keyword arguments for :func:`~sklearn_shapley.amortized.fit_surrogate`
        (``hidden_layer_sizes``, ``max_epochs``, ...). The surrogate does not
        depend on the explainer's own network parameters, so explainers compared
        in a search share one game: it is fitted once per model, data and
        parameters, and reused.
    output : int, str or None, default=None
        Output ``transform`` returns (see :class:`~sklearn_shapley.BaseExplainer`).
    device : str, default="cpu"
        Torch device of the networks.
    random_state : int, RandomState or None, default=None
        Seeds the split, the coalitions, the copies, the background sample and
        torch (in a forked RNG): equal seeds give equal explainers.
    verbose : int, default=0
        Print the training plan and skorch's per-epoch table of the losses.

    Attributes
    ----------
    estimator_ : the explained model
    game_ : Game
        The value function the explainer was trained on.
    surrogate_ : SurrogateGame
        The surrogate (``value_function="surrogate"`` only).
    plan_ : CoalitionPlan
        Where the training targets came from.
    module_ : ShapleyModule
        The trained explainer network.
    history_ : skorch History
        Training and validation losses per epoch.
    n_features_in_, feature_names_in_, output_names_

    Examples
    --------
    >>> from sklearn.datasets import load_diabetes
    >>> from sklearn.frozen import FrozenEstimator
    >>> from sklearn.linear_model import Ridge
    >>> from sklearn_shapley import FastSHAPExplainer
    >>> X, y = load_diabetes(return_X_y=True)
    >>> model = FrozenEstimator(Ridge().fit(X, y))
    >>> explainer = FastSHAPExplainer(
    ...     model, value_function="baseline", max_epochs=5, random_state=0
    ... ).fit(X)
    >>> explainer.transform(X[:3]).shape
    (3, 10)
    """

    _nan_from_frames = False  # the explainer network reads the rows

    _parameter_constraints = {
        "normalization": [StrOptions(set(NORMALIZATIONS))],
        "paired_sampling": ["boolean"],
        "n_coalitions": [
            StrOptions({"auto"}),
            Interval(Integral, 1, None, closed="left"),
        ],
        "max_evaluations": [
            StrOptions({"auto"}),
            Interval(Integral, 1, None, closed="left"),
        ],
        "hidden_layer_sizes": ["array-like"],
        "playerwise_layer_sizes": ["array-like", None],
        "n_bins": [
            StrOptions({"auto"}),
            Interval(Integral, 1, None, closed="left"),
            None,
        ],
        "first_last": [StrOptions({"auto"}), "boolean"],
        "pairs": [StrOptions({"auto"}), "boolean"],
        "efficiency_lambda": [Interval(Real, 0, None, closed="left")],
        "input_noise": [Interval(Real, 0, None, closed="left")],
        "swap_probability": [Interval(Real, 0, 1, closed="both")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "max_epochs": [Interval(Integral, 1, None, closed="left")],
        "early_stopping": ["boolean"],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "surrogate_params": [dict, None],
        "device": [str],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        estimator=None,
        *,
        value_function="surrogate",
        background=None,
        n_background=100,
        link="identity",
        players=None,
        normalization="additive",
        paired_sampling=True,
        n_coalitions="auto",
        max_evaluations="auto",
        hidden_layer_sizes=(256, 256),
        playerwise_layer_sizes=(16, 16),
        n_bins="auto",
        first_last="auto",
        pairs="auto",
        efficiency_lambda=0.0,
        input_noise=0.1,
        swap_probability=0.2,
        batch_size=128,
        learning_rate=1e-3,
        max_epochs=50,
        early_stopping=True,
        n_iter_no_change=10,
        tol=1e-2,
        validation_fraction=0.1,
        surrogate_params=None,
        output=None,
        device="cpu",
        random_state=None,
        verbose=0,
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
        self.normalization = normalization
        self.paired_sampling = paired_sampling
        self.n_coalitions = n_coalitions
        self.max_evaluations = max_evaluations
        self.hidden_layer_sizes = hidden_layer_sizes
        self.playerwise_layer_sizes = playerwise_layer_sizes
        self.n_bins = n_bins
        self.first_last = first_last
        self.pairs = pairs
        self.efficiency_lambda = efficiency_lambda
        self.input_noise = input_noise
        self.swap_probability = swap_probability
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.max_epochs = max_epochs
        self.early_stopping = early_stopping
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.validation_fraction = validation_fraction
        self.surrogate_params = surrogate_params
        self.device = device
        self.verbose = verbose

    # -- the game -----------------------------------------------------------------
    def _make_game(self, X):
        vf = self.value_function
        if isinstance(vf, Game):
            return vf
        if not isinstance(vf, str) or vf not in VALUE_FUNCTIONS:
            raise ValueError(
                f"value_function must be one of {VALUE_FUNCTIONS} or a Game instance, "
                f"got {vf!r}."
            )
        if vf != "surrogate":
            return super()._make_game(X)
        params = {"device": self.device, "verbose": self.verbose}
        params.update(self.surrogate_params or {})
        self.surrogate_ = _cached_surrogate(
            self.estimator_,
            X,
            frame=self._frame_codec,
            link=self.link,
            players=self.players,
            random_state=self._rng_seed(4),
            **params,
        )
        return self.surrogate_

    # -- training -------------------------------------------------------------------
    def _fit_explainer(self, X, y):
        for name in ("hidden_layer_sizes", "playerwise_layer_sizes"):
            sizes = getattr(self, name)
            if (
                sizes is not None
                and not all(
                    isinstance(h, Integral) and not isinstance(h, bool) and h >= 1
                    for h in np.atleast_1d(np.asarray(sizes, dtype=object))
                )
                or np.ndim(sizes) > 1
                or (name == "hidden_layer_sizes" and np.ndim(sizes) != 1)
            ):
                raise ValueError(f"{name} must be a tuple of ints >= 1, got {sizes!r}.")
        if isinstance(self.n_bins, bool):
            raise ValueError(
                f"n_bins must be 'auto', None or an int >= 1, got {self.n_bins!r}."
            )
        if len(X) < MIN_ROWS:
            raise ValueError(
                f"FastSHAPExplainer needs at least {MIN_ROWS} rows to learn from, got "
                f"n_samples = {len(X)}; explain so few rows with KernelExplainer or "
                "ExactExplainer instead."
            )
        super()._fit_explainer(subsample(X, MAX_ROWS, self.random_state), y)

    def _fit_estimator(self, X, y):
        game = self.game_
        # v(full), v(∅) and the contributions: a surrogate's evaluated row by row,
        # so that a row's explanation does not depend on the rows explained with it
        rowwise = getattr(game, "rowwise_copy", None)
        self._grand_game = rowwise() if rowwise is not None else game
        self._mean, self._scale = standardizer(X)
        n, d, K = len(X), game.n_players, game.n_outputs
        hidden = tuple(int(h) for h in self.hidden_layer_sizes)
        self.module_ = ShapleyModule(X.shape[1], d, K, hidden, self.normalization)
        self.history_ = []
        self._proxy = self._empty = None
        self._pairs = False
        self.plan_ = None
        if d < 2:  # one player: φ = v(full) − v(∅), nothing to learn
            return
        if isinstance(self.first_last, str):
            # "auto": where a row's first and last values cost at most what a
            # training row's targets cost at the least, as every explained row pays
            max_cost = MIN_COALITIONS + 2
            proxy = self._grand_game.proxy(max_cost=max_cost)
            use_first_last = proxy.first_last_cost <= max_cost
        else:
            use_first_last = bool(self.first_last)
            proxy = self._grand_game.proxy() if use_first_last else None
        if use_first_last:
            self._proxy = proxy
            row_cost = 2 + proxy.first_last_cost + proxy.pair_cost
            self._pairs = (
                row_cost <= MAX_ROW_COST
                if isinstance(self.pairs, str)
                else bool(self.pairs)
            )
        full, empty, contributions = self._inputs(X)
        if np.all(empty == empty[:1]):  # v(∅) knows nothing of the row: kept
            self._empty = empty[0]
        self._output_scale = _value_scale(full - empty)

        rng = np.random.default_rng(self._rng_seed(5))
        fraction = self.validation_fraction if self.early_stopping else 0
        train, valid = split_rows(n, fraction, rng)
        n_valid = len(valid)
        auto = self.n_coalitions == "auto"
        m = MIN_COALITIONS if auto else int(self.n_coalitions)
        m += m % 2 if self.paired_sampling else 0
        budget = (
            MAX_EVALUATIONS
            if isinstance(self.max_evaluations, str)
            else int(self.max_evaluations)
        )
        # v(full), v(∅) and the contributions, in the game's values
        extra = 2
        if use_first_last:
            cost = proxy.first_last_cost + (proxy.pair_cost if self._pairs else 0)
            extra += cost / max(game.evaluation_cost, 1e-9)
        self.plan_ = plan = plan_coalitions(
            d,
            len(train),
            n_coalitions=m,
            max_evaluations=budget,
            grow_coalitions=auto,
            evaluation_cost=game.evaluation_cost,
            shared_evaluation_cost=game.shared_evaluation_cost,
            extra_per_row=extra,
            n_outputs=K,
            exact_values=game.shapley_values(X[:1]) is not None,
        )
        train = train[: plan.n_rows]  # a random subset: train is shuffled
        if self.verbose:
            print(
                f"FastSHAP: {plan.source} coalitions ({plan.n_coalitions} per row), "
                f"{plan.n_copies} copies of {len(train)} training rows "
                f"(new copies for each of the first {plan.n_draws} epochs), "
                f"{n_valid} held out"
            )
        sampler = CoalitionSampler(d, "shapley", paired=self.paired_sampling)
        kernel = _kernel_coalitions(d) if plan.source == "all" else None
        gram = None
        if kernel is not None:
            gram = kernel_gram(*kernel)
        elif plan.source == "exact":
            gram = shapley_kernel_gram(d)
        membership = player_membership(self.players, X.shape[1])

        def targets(rows, row_empty, coalitions):
            """The loss's targets at ``rows``: its minimiser (and gram), or masks
            and values."""
            if plan.source == "exact":  # the game's Shapley values
                return _chunked(
                    lambda r, e: (game.shapley_values(r).astype(np.float32),),
                    rows,
                    row_empty,
                    d * X.shape[1],
                    ("target",),
                )
            if kernel is not None:

                def minimiser(r, e):
                    cross, _ = game.kernel_statistics(r, e, *kernel)
                    return (np.linalg.solve(gram, cross).astype(np.float32),)

                return _chunked(
                    minimiser, rows, row_empty, len(kernel[0]) * X.shape[1], ("target",)
                )
            statistics = pooled_bytes(d, K, coalitions)[1]

            def sampled(r, e):
                masks = sampler.sample(len(r) * coalitions, rng)
                masks = masks[: len(r) * coalitions].reshape(len(r), coalitions, d)
                values = game(r, masks) - e[:, None, :]
                if statistics:
                    return sample_statistics(masks, values)
                return masks, values.astype(np.float32)

            names = ("gram", "target") if statistics else ("masks", "values")
            return _chunked(sampled, rows, row_empty, coalitions * X.shape[1], names)

        data = {
            "x": self._standardize(X),
            "rows": X.astype(np.float64),
            "empty": empty.astype(np.float32),
            "total": (full - empty).astype(np.float32),
        }
        if use_first_last:
            data["contributions"] = (contributions / self._output_scale).astype(
                np.float32
            )
        valid_data = None
        if n_valid:
            valid_data = {key: value[valid] for key, value in data.items()}
            valid_data.update(targets(X[valid], empty[valid], 4 * plan.n_coalitions))
            valid_data["empty"] = np.zeros_like(valid_data["empty"])
            valid_data["floor"] = _loss_floor(valid_data, gram)
        epoch_data = None
        if plan.source == "fresh":
            train_data = {key: value[train] for key, value in data.items()}
            max_epochs = min(int(self.max_epochs), plan.n_copies)
        else:

            def draw():
                """A set of row copies with their targets."""
                copies = self._copies(X, train, plan.n_copies, membership, rng)
                rows = copies.pop("rows")
                copies.update(targets(rows, copies["empty"], plan.n_coalitions))
                copies["empty"] = np.zeros_like(copies["empty"])
                return copies

            start = time.perf_counter()
            train_data = draw()
            max_epochs = int(self.max_epochs)
            # the next epochs' sets, drawn as they begin
            n_draws = min(plan.n_draws, max_epochs) - 1
            epoch_data = (draw() for _ in range(n_draws))
            eta = (time.perf_counter() - start) * n_draws
            if n_draws and eta > SLOW_TARGETS:
                warnings.warn(
                    f"FastSHAPExplainer: drawing new copies of the rows for "
                    f"{n_draws} epochs will take about {eta:.0f} s. For a faster fit "
                    "lower max_evaluations or max_epochs.",
                    UserWarning,
                    stacklevel=2,
                )
        edges, steps = self._bin_edges(X[train])
        n_iter = int(self.n_iter_no_change)

        def make_module():
            return ShapleyModule(
                X.shape[1],
                d,
                K,
                hidden,
                self.normalization,
                output_scale=self._output_scale,
                membership=membership,
                playerwise_layer_sizes=self.playerwise_layer_sizes,
                bin_edges=edges,
                bin_steps=steps,
                first_last=use_first_last,
                pairs=self._pairs,
            )

        net = fit_net(
            ShapleyNet,
            make_module,
            (train_data, None),
            valid=None if valid_data is None else (valid_data, None),
            seed=self._rng_seed(7),
            device=self.device,
            criterion=nn.MSELoss,  # unused: get_loss computes the Shapley loss
            lr=self.learning_rate,
            batch_size=int(self.batch_size),
            max_epochs=max_epochs,
            callbacks=training_callbacks(
                early_stopping=valid_data is not None,
                n_iter_no_change=n_iter,
                tol=float(self.tol),
                average_epochs=1,
            ),
            game=game,
            n_coalitions=plan.n_coalitions,
            efficiency_lambda=self.efficiency_lambda,
            input_noise=self.input_noise,
            swap_probability=self.swap_probability,
            donor_rows=X[train].astype(np.float64),
            membership=membership,
            gram=gram,
            first_last_game=self._proxy,
            feature_scale=self._scale,
            sampler=sampler,
            mask_seed=self._rng_seed(6),
            epoch_data=epoch_data,
            verbose=self.verbose,
        )
        self.module_ = net.module_.eval()
        self.history_ = net.history

    def _copies(self, X, train, n_copies, membership, rng):
        """The training rows (the first copy) and ``n_copies − 1`` augmented copies of
        them, with the network's inputs there: a dict of arrays by row copy."""
        rows = np.repeat(X[train][None], n_copies, axis=0).reshape(-1, X.shape[1])
        moved = slice(len(train), None)  # copies after the first
        rows[moved] += self._scale * augment_rows(
            rows[moved],
            rng,
            donors=X[train],
            membership=membership,
            swap_probability=self.swap_probability,
            input_noise=self.input_noise,
            feature_scale=self._scale,
        )
        full, empty, contributions = self._inputs(rows)
        data = {
            "x": self._standardize(rows),
            "rows": rows,
            "empty": empty,
            "total": (full - empty).astype(np.float32),
        }
        if contributions is not None:
            data["contributions"] = (contributions / self._output_scale).astype(
                np.float32
            )
        return data

    def _bin_edges(self, rows):
        """The encoding's edges for the standardised training ``rows`` and whether
        they are split thresholds (steps): ``(None, False)`` for none.

        ``n_bins="auto"``, when the explained output is piecewise constant
        (:meth:`_steps_share` at least 1/2): the game's own split thresholds when it
        knows them (:meth:`~sklearn_shapley.games.Game.split_thresholds`: a tree
        ensemble's), thinned by :func:`thin_thresholds`, else ``AUTO_BINS``
        quantile bins.
        """
        n_bins = self.n_bins
        if isinstance(n_bins, str):
            if self._steps_share(rows) < 0.5:
                return None, False
            thresholds = self.game_.split_thresholds()
            if thresholds is not None:
                edges = []
                for j, t in enumerate(thresholds):
                    t = thin_thresholds(t, rows[:, j])
                    t = ((t - self._mean[j]) / self._scale[j]).astype(np.float32)
                    # float32 may merge thresholds or send far ones to ±inf: a
                    # step that no finite value crosses is constant, dropped
                    edges.append(np.unique(t[np.isfinite(t)]))
                return edges, True
            n_bins = AUTO_BINS
        if n_bins is None:
            return None, False
        return quantile_bin_edges(self._standardize(rows), n_bins), False

    def _steps_share(self, rows, n_rows=64, n_moves=1024):
        """Share of small one-feature moves that leave ``v(full)`` exactly unchanged.

        Up to ``n_moves`` (row, feature) pairs of the first ``n_rows`` rows, each
        feature moved by ``1e-4`` of its standard deviation: a tree ensemble's
        output almost never changes, a smooth model's almost always does.
        """
        rows = rows[:n_rows]
        n, n_features = rows.shape
        if not n:
            return 0.0
        moves = np.arange(min(n_moves, n * n_features))
        row, feature = moves % n, (moves // n) % n_features
        moved = rows[row]
        moved[moves, feature] += 1e-4 * self._scale[feature]
        full, _ = self._grand_game.grand_and_empty(np.vstack([rows, moved]))
        return float(np.mean(np.all(full[n:] == full[row], axis=-1)))

    def _standardize(self, X):
        return ((X - self._mean) / self._scale).astype(np.float32)

    # -- inference -------------------------------------------------------------------
    def _inputs(self, X):
        """``(v(full), v(∅), contributions (n, d, 2K) or None)`` of rows ``X``."""
        grand, proxy = self._grand_game, self._proxy
        if proxy is None or not len(X):
            full, empty = grand.grand_and_empty(X)
            return full, empty, None
        contributions, full, empty = contribution_inputs(proxy, X, self._pairs)
        if proxy is not grand:  # the same v(full), not the same v(∅)
            empty = (
                grand.grand_and_empty(X)[1]
                if self._empty is None
                else np.broadcast_to(self._empty, full.shape)
            )
        return full, empty, contributions

    def _grand_and_empty(self, X):
        full, empty = self._grand_game.grand_and_empty(X)
        return full, empty, 2

    def _explained_output(self, X):
        return self._inputs(X)[0]  # as explain computes it (a surrogate rounds
        # v(full) by the shape of its products)

    def _estimate(self, X):
        full, empty, contributions = self._inputs(X)
        total = full - empty
        d = self.game_.n_players
        evaluations = 2 if contributions is None else 2 * d + 2
        if self._pairs:
            evaluations += d * (d - 1)
        if d < 2 or len(X) == 0:
            values = total[:, None, :].copy()
        else:
            param = next(self.module_.parameters())
            if contributions is not None:
                contributions = torch.as_tensor(
                    contributions / self._output_scale,
                    dtype=torch.float32,
                    device=param.device,
                )
            # counted in attributions: a row's network computes d of them
            with torch.no_grad(), inference_threads(len(X) * d):
                phi = self.module_(
                    torch.as_tensor(self._standardize(X), device=param.device),
                    torch.as_tensor(total, dtype=torch.float32, device=param.device),
                    contributions,
                )
            values = phi.cpu().numpy().astype(np.float64)
            values += (total - values.sum(axis=1))[:, None, :] / d
        return ShapleyValues(values, np.array(empty), np.full(len(X), evaluations))


def _chunked(function, rows, empty, cost_per_row, names, max_cost=2**23):
    """``function(rows, empty)`` on row chunks of at most ``max_cost`` feature
    values (``cost_per_row`` each: coalitions times features), the results
    concatenated into a dict of ``names``.

    The first chunk is at most a sixteenth of the rows: when the rest will take
    more than ``SLOW_TARGETS`` seconds at its pace, a warning says so before the
    long work, and how to shorten it.
    """
    step = max(1, max_cost // max(cost_per_row, 1))
    first = min(step, max(1, len(rows) // 16))
    bounds = [0, *range(first, len(rows), step), len(rows)]
    parts = []
    start = time.perf_counter()
    for a, b in zip(bounds[:-1], bounds[1:]):
        parts.append(function(rows[a:b], empty[a:b]))
        if a == 0 and b < len(rows):
            eta = (time.perf_counter() - start) * (len(rows) - b) / b
            if eta > SLOW_TARGETS:
                warnings.warn(
                    f"FastSHAPExplainer: evaluating the game for the training "
                    f"targets of {len(rows):,} row copies will take about "
                    f"{eta:.0f} s more. For a faster fit lower max_evaluations "
                    "(fewer copies), n_background (a marginal game's cost) or "
                    "n_coalitions, or use a cheaper value_function.",
                    UserWarning,
                    stacklevel=2,
                )
    return {name: np.concatenate(p) for name, p in zip(names, zip(*parts))}


def _loss_floor(data, gram):
    """Per row, the least loss an efficient ``φ`` reaches on the row's targets.

    The validation loss less it is the excess over the best fit, which goes to
    zero as the explainer improves, so that a relative ``tol`` means the same on
    every game. ``data`` holds ``"total"`` and either the minimiser ``"target"``
    of the loss ``(φ − φ*)ᵀ A (φ − φ*)`` (``A = gram``, or each row's ``"gram"``)
    or ``"masks"``/``"values"`` (the mean squared error over them).
    """
    total = np.asarray(data["total"], dtype=np.float64)  # (n, K)
    if "target" in data:
        # each row's own gram, or the shared one, inverted once
        gram = np.asarray(data.get("gram", gram), np.float64)
        gram, inverse = (
            np.broadcast_to(a, (len(total), *gram.shape[-2:]))
            for a in (gram, np.linalg.pinv(gram, hermitian=True))
        )
        best = np.asarray(data["target"], dtype=np.float64)  # φ*, (n, d, K)
        least = 0.0
    else:
        values = np.asarray(data["values"], dtype=np.float64)  # (n, m, K)
        gram, cross = coalition_moments(data["masks"], values)
        inverse = np.linalg.pinv(gram, hermitian=True)
        best = inverse @ cross
        # the loss at φ* (cross lies in the range of gram)
        least = np.square(values).mean(axis=1) - np.einsum("ndk,ndk->nk", best, cross)
    a = inverse @ np.ones(gram.shape[-1])  # A⁺1, (n, d)
    # the efficient φ nearest φ*: φ* − A⁺1 λ with 1ᵀφ = total
    lam = (best.sum(axis=1) - total) / np.maximum(a.sum(axis=1), 1e-300)[:, None]
    curvature = np.einsum("nd,nde,ne->n", a, gram, a)[:, None]
    floor = least + lam**2 * curvature
    return floor.sum(axis=1).astype(np.float32)


def _kernel_coalitions(n_players):
    """Every coalition but the empty and full ones, and its Shapley-kernel
    probability ``(d − 1) / (C(d, k) k (d − k))`` normalised to sum to 1."""
    masks = all_coalitions(n_players)[1:-1]
    sizes = masks.sum(axis=1)
    per_size = shapley_kernel_size_weights(n_players)[sizes - 1]
    counts = np.array([math.comb(n_players, int(k)) for k in sizes])
    return masks, per_size / counts


def _value_scale(total):
    """Typical size of the attributions: the RMS of ``v(full) − v(∅)`` (1 if 0)."""
    scale = float(np.sqrt(np.mean(np.square(total)))) if total.size else 0.0
    return scale if scale > 1e-12 else 1.0


_SURROGATES = {}


def _cached_surrogate(model, X, frame=None, **params):
    """:func:`fit_surrogate`, fitted once per model object, data and parameters.

    Explainers compared in a search (``GridSearchCV`` over a ``FrozenEstimator``)
    then explain, and are scored on, the same game. The cache holds the last few
    surrogates, keyed by the model's identity and a digest of the rows.
    """
    rows = np.ascontiguousarray(np.asarray(X, dtype=np.float64))
    key = (
        id(model),
        hashlib.sha1(rows.tobytes()).hexdigest(),
        rows.shape,
        repr(sorted(params.items(), key=lambda item: item[0])),
        None if frame is None else repr((frame.columns, frame.categories)),
    )
    hit = _SURROGATES.get(key)
    if hit is not None and hit[0] is model:
        return hit[1]
    surrogate = fit_surrogate(model, X, frame=frame, **params)
    while len(_SURROGATES) >= 8:
        _SURROGATES.pop(next(iter(_SURROGATES)))
    _SURROGATES[key] = (model, surrogate)
    return surrogate
