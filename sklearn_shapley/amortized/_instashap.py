"""InstaSHAP: an additive model of the masked game whose parts are its Shapley values.

:class:`InstaSHAPGAM` fits ``F(x, S) = b + Σ_T 1[T ⊆ S] g_T(x_T)`` — one small MLP per
component ``T`` (every player, plus chosen interaction sets up to ``max_order``) — to
the masked teacher ``v_x(S)`` (the black box under a value function) on coalitions from
the Shapley kernel or uniform participation. ``F(x, ·)`` is a game whose Harsanyi
dividends are the ``g_T``, so its Shapley values are read off in one forward pass:
``φ_i = Σ_{T ∋ i} g_T(x_T) / |T|`` with base value ``b``. The masked training purifies
the components (no post-hoc centring), and :meth:`InstaSHAPGAM.audit` compares GAMs of
increasing order with the unconstrained teacher to tell whether first-order Shapley
values can be trusted for the model and the data (Enouen & Liu, 2025).
"""

from __future__ import annotations

import copy
import itertools
import numbers
import warnings
from math import comb
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.metrics import r2_score
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from .._game_explainer import GameExplainer
from ..games import (
    BaselineGame,
    Game,
    MarginalGame,
    ModelFunction,
    _is_classifier,
    apply_link,
    player_membership,
)
from ..sampling import CoalitionSampler
from ._instashap_nets import KL_LINKS, GroupedGAM, MaskedGAMNet
from ._training import (
    MAX_ROWS,
    fit_net,
    split_rows,
    standardizer,
    subsample,
    torch_threads,
    training_callbacks,
)

__all__ = ["InstaSHAPGAM", "AuditResult", "ShapleyTrustWarning"]

VALUE_FUNCTIONS = ("surrogate", "baseline", "marginal")
LOSSES = ("mse", "kl")

#: Most game evaluations the pairwise interaction screen spends.
SCREEN_EVALUATIONS = 2**15


class ShapleyTrustWarning(UserWarning):
    """First-order Shapley values cannot represent the explained model on this data.

    Raised by :meth:`InstaSHAPGAM.audit` when an additive (first-order) model of the
    masked game is far less faithful to the black box than an unconstrained one: the
    model relies on feature interactions that per-feature attributions average away.
    """


def pair_interaction_strength(game, X, random_state=None, *, max_evaluations=None):
    """Screen every pair of players for interaction in the game.

    For each of a few rows of ``X`` a random context coalition ``S`` (uniform size) is
    drawn, and the game is evaluated at ``S``, at ``S`` with one player toggled, and at
    ``S`` with two players toggled (``1 + d + d(d-1)/2`` coalitions per row, shared by
    all pairs). The strength of ``{i, j}`` is the mean over rows and the sum over
    outputs of the squared mixed difference
    ``(v(S ⊕ ij) − v(S ⊕ i) − v(S ⊕ j) + v(S))²``, which is zero for every context
    exactly when the game has no ``{i, j}`` interaction there.

    Parameters
    ----------
    game : Game
    X : ndarray of shape (n_rows, n_features)
    random_state : int, Generator or None
    max_evaluations : int, default=None
        Budget of game evaluations (rows are subsampled to fit it, at least 4 rows);
        default :data:`SCREEN_EVALUATIONS`.

    Returns
    -------
    ndarray of shape (n_players, n_players)
        Symmetric, zero diagonal.
    """
    rng = np.random.default_rng(random_state)
    X = np.asarray(X, dtype=np.float64)
    d = game.n_players
    if max_evaluations is None:
        max_evaluations = SCREEN_EVALUATIONS
    first, second = np.triu_indices(d, 1)
    per_row = 1 + d + len(first)
    n_rows = int(min(len(X), max(4, max_evaluations // per_row)))
    rows = X[np.sort(rng.choice(len(X), size=n_rows, replace=False))]
    context = CoalitionSampler(d, "uniform", paired=False).sample(n_rows, rng)
    eye = np.eye(d, dtype=bool)
    flips = np.concatenate(
        [np.zeros((1, d), dtype=bool), eye, eye[first] | eye[second]]
    )
    masks = context[:, None, :] ^ flips[None, :, :]
    values = game(rows, masks)
    base, single, double = values[:, :1], values[:, 1 : 1 + d], values[:, 1 + d :]
    mixed = double - single[:, first] - single[:, second] + base
    strength = np.zeros((d, d))
    strength[first, second] = (mixed**2).sum(axis=2).mean(axis=0)
    return strength + strength.T


class AuditResult:
    """What :meth:`InstaSHAPGAM.audit` found: how faithful GAMs of each order are.

    Attributes
    ----------
    table : list of dict
        One row per model: ``model`` (a label), ``order`` (None for the unconstrained
        reference), ``n_components``, ``masked_fidelity`` (R² to the masked teacher
        ``v_x(S)`` on held-out coalitions), ``fidelity`` (R² of the unmasked output
        to the black box) and ``accuracy`` (against ``y``: accuracy for classifiers,
        R² for regressors; None without ``y``).
    gaps : dict of int to float
        For each order ``k``: the reference's fidelity minus the order-``k`` GAM's.
    accuracy_gaps : dict of int to float or None
        The same for accuracy, when ``y`` was given.
    gap : float
        ``gaps[1]``, the first-order fidelity gap.
    trustworthy : bool
        Whether the first-order GAM is within ``tol`` of the reference in fidelity,
        or (given ``y``) in accuracy: first-order Shapley values represent the model.
    verdict : str
        A sentence saying what to do.
    models : dict of int to InstaSHAPGAM
        The fitted GAM of each order (the explainer itself for its ``max_order``).
    tol : float
        The tolerance the verdict used.
    """

    def __init__(self, table, gaps, accuracy_gaps, trustworthy, verdict, models, tol):
        self.table = table
        self.gaps = gaps
        self.accuracy_gaps = accuracy_gaps
        self.gap = gaps[1]
        self.trustworthy = trustworthy
        self.verdict = verdict
        self.models = models
        self.tol = tol

    def to_dict(self):
        """The figures as plain Python objects (without the models)."""
        return {
            "table": [dict(row) for row in self.table],
            "gaps": dict(self.gaps),
            "accuracy_gaps": None
            if self.accuracy_gaps is None
            else dict(self.accuracy_gaps),
            "gap": self.gap,
            "trustworthy": self.trustworthy,
            "verdict": self.verdict,
            "tol": self.tol,
        }

    def __repr__(self):
        def cell(value):
            return "-" if value is None else f"{value:.3f}"

        header = ("model", "components", "masked fid.", "fidelity", "accuracy")
        lines = [
            [
                row["model"],
                "-" if row["n_components"] is None else str(row["n_components"]),
                cell(row["masked_fidelity"]),
                cell(row["fidelity"]),
                cell(row["accuracy"]),
            ]
            for row in self.table
        ]
        widths = [max(len(r[i]) for r in [header, *lines]) for i in range(5)]
        fmt = "  ".join(
            f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths)
        )
        gaps = ", ".join(f"order {k}: {g:.3f}" for k, g in self.gaps.items())
        text = [
            "InstaSHAP audit (R² on held-out rows; fidelity = unmasked output "
            "vs the black box)",
            fmt.format(*header),
            *(fmt.format(*r) for r in lines),
            f"fidelity gap to the reference: {gaps} (tol={self.tol:g})",
        ]
        if self.accuracy_gaps is not None:
            acc = ", ".join(
                f"order {k}: {g:.3f}" for k, g in self.accuracy_gaps.items()
            )
            text.append(f"accuracy gap to the reference: {acc}")
        text.append(f"verdict: {self.verdict}")
        return "\n".join(text)


class InstaSHAPGAM(GameExplainer):
    """InstaSHAP: a masked generalized additive model read out as Shapley values.

    Fits ``F(x, S) = b + Σ_{T ∈ 𝒯} 1[T ⊆ S] g_T(x_T)`` — a small MLP ``g_T`` for every
    player and for the interaction sets chosen up to ``max_order``, all evaluated
    together as one grouped network — to the masked teacher ``v_x(S)`` on coalitions
    ``S`` from the Shapley kernel (or uniform participation) plus a share of unmasked
    rows. The ``g_T`` are the Harsanyi dividends of the game ``F(x, ·)``, so its
    Shapley values are ``φ_i = Σ_{T ∋ i} g_T(x_T) / |T|`` with base value ``b``
    (efficiency is exact: ``b + Σφ = F(x, [d])``, which :meth:`predict` returns).
    Masked training purifies the components; :meth:`audit` tells whether first-order
    Shapley values are trustworthy for the model.

    The teacher is evaluated once at ``fit`` (``n_coalitions`` per row); training is a
    skorch :class:`~sklearn_shapley.amortized._instashap_nets.MaskedGAMNet` (Adam,
    ``ReduceLROnPlateau`` ×0.5, early stopping on the loss of held-out rows with the
    best weights restored), seeded by ``random_state`` in a forked torch RNG.

    Parameters
    ----------
    estimator : estimator, FrozenEstimator or callable
        The model to explain (see :class:`~sklearn_shapley.BaseExplainer`).
    max_order : int, default=1
        Largest interaction set ``|T|`` in the GAM; 1 gives a plain (purified) GAM.
    interactions : "auto" or list of tuples, default="auto"
        Interaction sets of order ``2..max_order``. ``"auto"``: all sets of an order
        when there are at most ``max_interactions`` of them, otherwise the strongest
        by :func:`pair_interaction_strength` on the teacher game (pairs by their
        strength; higher orders among the sets whose pairs were all kept, by the sum
        of their pair strengths). A list gives the sets explicitly (player indices or
        names); singletons are always included.
    max_interactions : int, default=50
        Most interaction sets of each order chosen by ``"auto"``.
    value_function : {"surrogate", "baseline", "marginal"} or Game, default="surrogate"
        The teacher ``v_x(S)``: a masked surrogate network ``g(x ⊙ S, S)`` trained to
        the model (``sklearn_shapley.amortized.fit_surrogate``, shared with FastSHAP;
        estimates ``E[f(x) | x_S]``), the model with held-out features set to
        ``background``'s means, averaged over a background sample, or any game
        object (e.g. a fitted ``SurrogateGame`` to share one surrogate).
    surrogate_params : dict, default=None
        Keyword arguments for ``fit_surrogate`` (``hidden_layer_sizes``,
        ``max_epochs``, ...).
    background : array-like, default=None
        Fixed values or rows for the baseline / marginal value functions.
    n_background : int, default=100
        Rows kept for the marginal value function.
    link : {"identity", "logit", "log", "log_softmax"} or callable, default="identity"
        Applied to the model's predictions before the game is formed; the GAM and its
        Shapley values live in this space.
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
        Output ``transform`` returns: ``None`` picks the only output of a regressor,
        class 1 of a binary classifier and the predicted class (argmax of ``F``) of a
        multi-class one (see :class:`~sklearn_shapley.BaseExplainer`).
    hidden_layer_sizes : tuple of int, default=(16, 12, 8)
        Hidden units of each component's MLP (SiLU activations).
    n_coalitions : int, default=32
        Coalitions per training row (paired with their complements), unmasked rows
        included.
    coalition_sampling : {"shapley", "uniform"}, default="shapley"
        Draw coalitions from the Shapley kernel, or with uniform size (a participation
        probability ``p ~ U(0, 1)`` shared by the players).
    unmasked_fraction : float, default=0.1
        Share of each row's coalitions that are the full coalition. ``1.0`` fits an
        ordinary (unmasked, unpurified) GAM to the model.
    loss : {"mse", "kl"}, default="mse"
        ``"mse"``: squared error in the link space (scaled by the teacher's spread),
        the Shapley least-squares objective itself. ``"kl"`` (classifiers, with
        ``link`` ``"logit"``, ``"log"`` or ``"log_softmax"``): divergence of the
        probabilities the values stand for (see
        :class:`~sklearn_shapley.amortized._instashap_nets.GameLoss`); it favours
        fidelity in probability over the least-squares fit of the log-odds.
    normalization : {None, "additive"}, default=None
        ``None``: attributions of the GAM, efficient for its own output ``F(x, [d])``
        (no model call at explain time). ``"additive"``: spread the GAM's residual
        ``v_x([d]) − F(x, [d])`` equally over the players so that
        ``b + Σφ = v_x([d])``, the explained model's output (one teacher evaluation
        per row).
    max_epochs : int, default=200
        Most training epochs.
    batch_size : int, default=256
        (row, coalition) samples per gradient step.
    learning_rate : float, default=3e-3
        Adam's step size.
    validation_fraction : float, default=0.1
        Share of the rows held out for early stopping (none when too few rows).
    n_iter_no_change : int, default=10
        Epochs without improvement of the held-out loss before training stops.
    device : str, default="cpu"
        Torch device of the networks.
    n_jobs : int or None, default=None
        CPU threads torch may use while training and evaluating the network
        (``torch.set_num_threads``, restored afterwards). ``None`` means 1: the
        per-component matrices are small, and on a busy machine thread
        synchronisation costs far more than it saves; ``-1`` uses torch's default.
    verbose : int, default=0
        skorch's progress printing.
    random_state : int, RandomState or None, default=None
        Seeds the coalitions, the interaction screen, the background sample, the
        surrogate and the network (torch in a forked RNG).

    Attributes
    ----------
    estimator_ : the explained model
    game_ : Game
        The teacher.
    components_ : list of tuple of int
        The sets ``T`` of the GAM (player indices): every player, then the
        interaction sets.
    interaction_strengths_ : ndarray of shape (n_players, n_players) or None
        The pair screen, when ``interactions="auto"`` needed it.
    base_value_ : ndarray of shape (n_outputs,)
        ``b``: the mean of ``v_x(∅)`` over the training rows, a fixed constant of the
        network (exactly ``v(∅)`` for the baseline, marginal and surrogate games,
        where it does not depend on ``x``).
    net_ : MaskedGAMNet
        The trained skorch net (``net_.module_`` is the
        :class:`~sklearn_shapley.amortized._instashap_nets.GroupedGAM`,
        ``net_.history`` its training record).
    n_features_in_, feature_names_in_, output_names_

    See Also
    --------
    sklearn_shapley.ExactExplainer : exact Shapley values of the same games.

    References
    ----------
    J. Enouen and Y. Liu. InstaSHAP: Interpretable additive models explain Shapley
    values instantly. ICLR 2025, arXiv:2502.14177.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_shapley import InstaSHAPGAM
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(300, 3))
    >>> def f(X):
    ...     return X[:, 0] + X[:, 1] * X[:, 2]
    >>> gam = InstaSHAPGAM(f, max_order=2, value_function="baseline",
    ...                    max_epochs=20, random_state=0).fit(X)
    >>> gam.transform(X[:2]).shape
    (2, 3)
    >>> gam.components_
    [(0,), (1,), (2,), (0, 1), (0, 2), (1, 2)]
    """

    _parameter_constraints: dict = {
        "max_order": [Interval(Integral, 1, None, closed="left")],
        "interactions": [StrOptions({"auto"}), "array-like"],
        "max_interactions": [Interval(Integral, 0, None, closed="left")],
        "surrogate_params": [dict, None],
        "hidden_layer_sizes": ["array-like"],
        "n_coalitions": [Interval(Integral, 1, None, closed="left")],
        "coalition_sampling": [StrOptions({"shapley", "uniform"})],
        "unmasked_fraction": [Interval(Real, 0, 1, closed="both")],
        "loss": [StrOptions(set(LOSSES))],
        "normalization": [StrOptions({"additive"}), None],
        "max_epochs": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "validation_fraction": [Interval(Real, 0, 1, closed="both")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "device": [str],
        "n_jobs": [
            Interval(Integral, None, -1, closed="right"),
            Interval(Integral, 1, None, closed="left"),
            None,
        ],
        "verbose": ["verbose"],
    }

    _nan_from_frames = False  # the component networks read the rows

    def __init__(
        self,
        estimator=None,
        *,
        max_order=1,
        interactions="auto",
        max_interactions=50,
        value_function="surrogate",
        surrogate_params=None,
        background=None,
        n_background=100,
        link="identity",
        players=None,
        output=None,
        hidden_layer_sizes=(16, 12, 8),
        n_coalitions=32,
        coalition_sampling="shapley",
        unmasked_fraction=0.1,
        loss="mse",
        normalization=None,
        max_epochs=200,
        batch_size=256,
        learning_rate=3e-3,
        validation_fraction=0.1,
        n_iter_no_change=10,
        device="cpu",
        n_jobs=None,
        verbose=0,
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
        self.max_order = max_order
        self.interactions = interactions
        self.max_interactions = max_interactions
        self.surrogate_params = surrogate_params
        self.hidden_layer_sizes = hidden_layer_sizes
        self.n_coalitions = n_coalitions
        self.coalition_sampling = coalition_sampling
        self.unmasked_fraction = unmasked_fraction
        self.loss = loss
        self.normalization = normalization
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.device = device
        self.n_jobs = n_jobs
        self.verbose = verbose

    # -- the teacher ----------------------------------------------------------------
    def _make_game(self, X):
        if isinstance(self.value_function, str) and self.value_function == "surrogate":
            if self.estimator_ is None:
                raise ValueError(
                    "value_function='surrogate' needs a model to imitate; pass one as "
                    "estimator, or pass a fitted Game as value_function."
                )
            from ._surrogate import fit_surrogate

            return fit_surrogate(
                self.estimator_,
                X,
                link=self.link,
                players=self.players,
                random_state=self._rng_seed(3),
                device=self.device,
                verbose=self.verbose,
                frame=self._frame_codec,
                **(self.surrogate_params or {}),
            )
        if isinstance(self.value_function, Game) or self.value_function in (
            "baseline",
            "marginal",
        ):
            return super()._make_game(X)
        raise ValueError(
            f"value_function must be one of {VALUE_FUNCTIONS} or a Game instance, got "
            f"{self.value_function!r}."
        )

    # -- fitting --------------------------------------------------------------------
    def _fit_explainer(self, X, y):
        if self.loss == "kl" and self.link not in KL_LINKS:
            raise ValueError(
                "loss='kl' compares probabilities through the link: it needs link in "
                f"{KL_LINKS}, got {self.link!r}; use loss='mse'."
            )
        # at most MAX_ROWS rows: the teacher's values and an epoch stay bounded
        super()._fit_explainer(subsample(X, MAX_ROWS, self.random_state), y)

    def _fit_estimator(self, X, y):
        rng = np.random.default_rng(self._rng_seed(4))
        n_players = self.game_.n_players
        self._player_columns = [
            np.flatnonzero(row) for row in player_membership(self.players, X.shape[1])
        ]
        self.components_ = self._select_components(X, rng)
        self.base_value_ = self.game_(X, np.zeros((1, n_players), dtype=bool))[
            :, 0
        ].mean(axis=0)
        self._feature_range = np.quantile(X, [0.01, 0.99], axis=0)
        self._feature_mean, self._feature_scale = standardizer(X)
        train, valid = split_rows(len(X), self.validation_fraction, rng)
        order, n_valid = np.concatenate([valid, train]), len(valid)
        masks = self._sample_coalitions(len(X), rng)
        values = self.game_(X[order], masks)
        # The teacher's values are kept so that audit() can fit lower orders on them.
        self._teacher = {
            "x": X[order],
            "masks": masks,
            "values": values,
            "n_valid": n_valid,
        }
        self._audit_models = {}
        self.net_ = self._train(self.components_)

    def _player_indices(self, item):
        names = list(self._player_names())
        index = []
        for p in np.atleast_1d(np.asarray(item, dtype=object)):
            if isinstance(p, numbers.Integral) and 0 <= p < len(names):
                index.append(int(p))
            elif isinstance(p, str) and p in names:
                index.append(names.index(p))
            else:
                raise ValueError(
                    f"interactions entry {item!r}: {p!r} is neither a player index in "
                    f"[0, {len(names)}) nor a player name."
                )
        return tuple(sorted(set(index)))

    def _select_components(self, X, rng):
        """Every player, then the interaction sets of order 2..max_order."""
        n_players = self.game_.n_players
        singles = [(p,) for p in range(n_players)]
        self.interaction_strengths_ = None
        if not isinstance(self.interactions, str):
            chosen = []
            for item in self.interactions:
                T = self._player_indices(item)
                if len(T) > self.max_order:
                    raise ValueError(
                        f"interactions entry {item!r} has order {len(T)} > "
                        f"max_order={self.max_order}."
                    )
                if len(T) > 1 and T not in chosen:
                    chosen.append(T)
            return singles + sorted(chosen, key=lambda T: (len(T), T))
        orders = range(2, min(self.max_order, n_players) + 1)
        cap = self.max_interactions
        if any(comb(n_players, k) > cap for k in orders):
            self.interaction_strengths_ = pair_interaction_strength(self.game_, X, rng)
        chosen, kept = [], None
        for k in orders:
            if comb(n_players, k) <= cap:
                candidates = list(itertools.combinations(range(n_players), k))
            else:
                candidates = self._ranked_candidates(k, kept)[:cap]
            kept = set(candidates)
            chosen.extend(sorted(candidates))
        return singles + chosen

    def _ranked_candidates(self, k, kept):
        """Order-``k`` sets whose ``k-1`` subsets were all kept, strongest first."""
        strength = self.interaction_strengths_
        n_players = len(strength)
        if k == 2:
            first, second = np.triu_indices(n_players, 1)
            candidates = list(zip(first.tolist(), second.tolist()))
        else:
            candidates = {
                T + (p,)
                for T in kept
                for p in range(T[-1] + 1, n_players)
                if all(sub in kept for sub in itertools.combinations(T + (p,), k - 1))
            }
            candidates = sorted(candidates)
        scores = [
            sum(strength[i, j] for i, j in itertools.combinations(T, 2))
            for T in candidates
        ]
        ranking = np.argsort(-np.asarray(scores, dtype=float), kind="stable")
        return [candidates[r] for r in ranking]

    def _sample_coalitions(self, n_rows, rng):
        """``(n_rows, n_coalitions, n_players)`` masks: paired draws + unmasked rows."""
        n_players = self.game_.n_players
        m = self.n_coalitions
        n_sampled = m - int(round(self.unmasked_fraction * m))
        masks = np.ones((n_rows, m, n_players), dtype=bool)
        if n_players < 2 or n_sampled == 0:
            return masks
        n_even = n_sampled + n_sampled % 2
        sampler = CoalitionSampler(n_players, self.coalition_sampling, paired=True)
        drawn = sampler.sample(n_rows * n_even, rng).reshape(n_rows, n_even, -1)
        masks[:, :n_sampled] = drawn[:, :n_sampled]
        return masks

    def _spread(self):
        """Per output, the teacher values' spread around the base value (1 if 0)."""
        values = self._teacher["values"]
        spread = (values - self.base_value_).reshape(-1, values.shape[2]).std(axis=0)
        spread[~(spread > 1e-12)] = 1.0
        return spread

    def _module(self, components, spread):
        membership = np.zeros((len(components), self.game_.n_players), dtype=bool)
        for c, T in enumerate(components):
            membership[c, list(T)] = True
        columns = [
            np.concatenate([self._player_columns[p] for p in T]) for T in components
        ]
        width = max(len(cols) for cols in columns)
        padded = np.zeros((len(components), width), dtype=np.int64)
        column_mask = np.zeros((len(components), width), dtype=bool)
        for c, cols in enumerate(columns):
            padded[c, : len(cols)] = cols
            column_mask[c, : len(cols)] = True
        return GroupedGAM(
            padded,
            column_mask,
            membership,
            tuple(self.hidden_layer_sizes),
            self._teacher["values"].shape[2],
            self.base_value_,
            spread,
            self._feature_mean,
            self._feature_scale,
        )

    def _train(self, components):
        """Fit a GAM with these components to the stored teacher values."""
        teacher = self._teacher
        n_valid = teacher["n_valid"]

        def samples(rows):
            x, masks, values = (teacher[k][rows] for k in ("x", "masks", "values"))
            m = masks.shape[1]
            inputs = {
                "x": torch.as_tensor(np.repeat(x, m, axis=0), dtype=torch.float32),
                "mask": torch.as_tensor(masks.reshape(len(x) * m, -1)).float(),
            }
            targets = values.reshape(len(x) * m, -1)
            return inputs, torch.as_tensor(targets, dtype=torch.float32)

        spread = self._spread()
        net = fit_net(
            MaskedGAMNet,
            lambda: self._module(components, spread),
            samples(slice(n_valid, None)),
            valid=samples(slice(0, n_valid)) if n_valid else None,
            seed=self._rng_seed(5),
            n_threads=self.n_jobs,
            device=self.device,
            criterion__kind=self.loss,
            criterion__link=self.link,
            criterion__scale=spread,
            lr=self.learning_rate,
            max_epochs=self.max_epochs,
            batch_size=self.batch_size,
            callbacks=training_callbacks(
                early_stopping=bool(n_valid),
                n_iter_no_change=self.n_iter_no_change,
                lr_patience=max(1, self.n_iter_no_change // 3),
            ),
            verbose=self.verbose,
        )
        return net

    # -- read-out ---------------------------------------------------------------------
    def _component_values(self, X):
        """``g_T(x_T)`` as float64 ``(n, n_components, K)``."""
        with torch_threads(self.n_jobs):
            return self.net_.evaluate("components", X)

    def _shapley_from_components(self, g):
        readout = np.zeros((len(self.components_), self.game_.n_players))
        for c, T in enumerate(self.components_):
            readout[c, list(T)] = 1.0 / len(T)
        return np.einsum("nck,cp->npk", g, readout)

    def _explain_values(self, X):
        phi = self._shapley_from_components(self._component_values(X))
        n, n_players, K = phi.shape
        base = np.broadcast_to(self.base_value_, (n, K)).copy()
        n_evaluations = np.zeros(n, dtype=np.int64)
        if self.normalization == "additive":
            full = self.game_(X, np.ones((1, n_players), dtype=bool))[:, 0]
            phi += ((full - base - phi.sum(axis=1)) / n_players)[:, None, :]
            n_evaluations += 1
        return phi, base, {"n_evaluations": n_evaluations}

    def _explained_output(self, X):
        if self.normalization == "additive":
            return super()._explained_output(X)
        return self.base_value_ + self._component_values(X).sum(axis=1)

    def _masked_prediction(self, g, masks):
        """``F(x, S)`` ``(n, m, K)`` from component values and per-row masks."""
        membership = np.zeros((len(self.components_), masks.shape[-1]))
        for c, T in enumerate(self.components_):
            membership[c, list(T)] = 1.0
        active = masks.astype(np.float64) @ membership.T >= membership.sum(axis=1)
        return self.base_value_ + np.einsum("nmc,nck->nmk", active, g)

    def predict(self, X):
        """The GAM as a model: ``F(x, [d]) = b + Σ_T g_T(x_T)`` in the link space.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,) for one output, else (n_samples, n_outputs)
            Equal to ``base_values + values.sum(axis=1)`` of :meth:`explain`
            (without ``normalization``).
        """
        check_is_fitted(self)
        X = self._validate(X, reset=False)
        out = self.base_value_ + self._component_values(X).sum(axis=1)
        return out[:, 0] if out.shape[1] == 1 else out

    def component_values(self, X):
        """Each component's value ``g_T(x_T)`` on rows of ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_components) or (n_samples, n_components, K)
            Columns in the order of ``components_``; their variance over rows is the
            importance of each component.
        """
        check_is_fitted(self)
        X = self._validate(X, reset=False)
        g = self._component_values(X)
        return g[:, :, 0] if g.shape[2] == 1 else g

    def shape_functions(self, n_points=50):
        """Each component ``g_T`` evaluated on a grid, for plotting.

        The grid of a feature spans its 1 % to 99 % training quantiles; pairs are
        evaluated on the ``n_points × n_points`` product grid, and order ``k`` sets on
        ``round(n_points ** (2 / k))`` points per axis. Needs one column per player.

        Parameters
        ----------
        n_points : int, default=50
            Grid points per axis for single features and pairs.

        Returns
        -------
        list of dict
            One per component, in the order of ``components_``, with ``players``
            (tuple of int), ``names`` (tuple of str), ``grid`` (tuple of 1-D arrays,
            one per player) and ``values`` (ndarray of shape ``(len(grid[0]), ...)``,
            with a trailing outputs axis when the game has several outputs).
        """
        check_is_fitted(self)
        if any(len(cols) != 1 for cols in self._player_columns):
            raise ValueError(
                "shape_functions needs one column per player; with grouped players "
                "use component_values on rows instead."
            )
        names = self._player_names()
        K = self.base_value_.shape[0]
        result = []
        for c, T in enumerate(self.components_):
            points = n_points if len(T) <= 2 else round(n_points ** (2 / len(T)))
            points = max(int(points), 2)
            columns = [int(self._player_columns[p][0]) for p in T]
            grid = tuple(
                np.linspace(*self._feature_range[:, col], points) for col in columns
            )
            mesh = np.meshgrid(*grid, indexing="ij")
            rows = np.tile(self._feature_mean, (mesh[0].size, 1))
            for col, axis in zip(columns, mesh):
                rows[:, col] = axis.ravel()
            index = torch.as_tensor([c], device=self.net_.device)
            with torch_threads(self.n_jobs):
                values = self.net_.evaluate("components", rows, index=index)[:, 0]
            values = values.reshape(mesh[0].shape + (K,))
            result.append(
                {
                    "players": T,
                    "names": tuple(str(names[p]) for p in T),
                    "grid": grid,
                    "values": values[..., 0] if K == 1 else values,
                }
            )
        return result

    # -- scoring and audit --------------------------------------------------------------
    def _masked_fidelity(self, X, g, seed_offset):
        rng = np.random.default_rng(self._rng_seed(seed_offset))
        masks = self._sample_coalitions(len(X), rng)
        truth = self.game_(X, masks)
        pred = self._masked_prediction(g, masks)
        K = truth.shape[2]
        return float(
            r2_score(
                truth.reshape(-1, K),
                pred.reshape(-1, K),
                multioutput="variance_weighted",
            )
        )

    def score(self, X, y=None):
        """Held-out fidelity of the GAM to the masked teacher (higher is better).

        The R² (variance weighted over outputs) of ``F(x, S)`` against ``v_x(S)`` over
        the rows of ``X`` and ``n_coalitions`` coalitions per row drawn as in training
        (fixed by ``random_state``). ``y`` is ignored.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : ignored

        Returns
        -------
        float
        """
        check_is_fitted(self)
        X = self._validate(X, reset=False)
        return self._masked_fidelity(X, self._component_values(X), 6)

    def _black_box(self, X):
        """The model's output in the link space ``(n, K)`` (the teacher's without one)."""
        if self.estimator_ is None:
            full = np.ones((1, self.game_.n_players), dtype=bool)
            return self.game_(X, full)[:, 0]
        f = ModelFunction(self.estimator_, self._frame_codec)
        return apply_link(f(X), self.link)

    def _accuracy(self, out, y):
        if _is_classifier(self.estimator_):
            classes = np.asarray(getattr(self.estimator_, "classes_", None))
            return float(np.mean(classes[np.argmax(out, axis=1)] == np.asarray(y)))
        return float(r2_score(y, out[:, 0] if out.shape[1] == 1 else out))

    def _gam_of_order(self, k):
        """The fitted GAM with the components of order <= k (trained once, cached)."""
        if k == self.max_order:
            return self
        if k not in self._audit_models:
            components = [T for T in self.components_ if len(T) <= k]
            gam = copy.copy(self)
            gam.max_order = k
            gam.interactions = [T for T in components if len(T) > 1]
            gam.components_ = components
            gam.net_ = self._train(components)
            gam._audit_models = {}
            self._audit_models[k] = gam
        return self._audit_models[k]

    def audit(self, X, y=None, *, tol=0.05):
        """Is first-order SHAP trustworthy for this model and data?

        Fits (once, on the training teacher values) the GAMs of orders
        ``1..max_order - 1`` beside this one, and compares each with the unconstrained
        masked model — the teacher at the full coalition: the surrogate network for a
        surrogate teacher, the black box itself for the baseline and marginal games —
        on held-out rows ``X``: masked fidelity (R² to ``v_x(S)``),
        fidelity of the unmasked output to the black box, and accuracy against ``y``.
        When the first-order GAM's fidelity falls more than ``tol`` below the
        reference's — and, given ``y``, its accuracy too (the paper's criterion: the
        structure it misses does not help on the task either) — per-feature Shapley
        values average away interactions the model relies on: a
        :class:`ShapleyTrustWarning` is emitted, and the verdict names the lowest
        order that closes the gap.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Held-out rows.
        y : array-like of shape (n_samples,), default=None
            Targets, for the accuracy column (accuracy for classifiers, R² for
            regressors); ignored when the explainer was given a game but no model.
        tol : float, default=0.05
            Largest acceptable gap in R² (or accuracy).

        Returns
        -------
        AuditResult
        """
        check_is_fitted(self)
        X = self._validate(X, reset=False)
        black_box = self._black_box(X)

        def fidelity(out):
            return float(r2_score(black_box, out, multioutput="variance_weighted"))

        with_y = y is not None and self.estimator_ is not None
        # The unconstrained masked model: the teacher itself at the full coalition
        # (the black box under the baseline and marginal games, else the surrogate).
        full = np.ones((1, self.game_.n_players), dtype=bool)
        reference_out = self.game_(X, full)[:, 0]
        from ._surrogate import SurrogateGame

        if isinstance(self.game_, SurrogateGame):
            label = "surrogate g(x_S, S)"
        elif isinstance(self.game_, BaselineGame | MarginalGame):
            kind = "baseline" if isinstance(self.game_, BaselineGame) else "marginal"
            label = f"black box ({kind} game)"
        else:
            label = f"teacher ({type(self.game_).__name__})"
        reference = {
            "model": label,
            "order": None,
            "n_components": None,
            "masked_fidelity": 1.0,
            "fidelity": fidelity(reference_out),
            "accuracy": self._accuracy(reference_out, y) if with_y else None,
        }
        table, models, gaps = [reference], {}, {}
        accuracy_gaps = {} if with_y else None
        for k in range(1, self.max_order + 1):
            gam = self._gam_of_order(k)
            g = gam._component_values(X)
            out = self.base_value_ + g.sum(axis=1)
            row = {
                "model": f"GAM order {k}",
                "order": k,
                "n_components": len(gam.components_),
                "masked_fidelity": gam._masked_fidelity(X, g, 7),
                "fidelity": fidelity(out),
                "accuracy": self._accuracy(out, y) if with_y else None,
            }
            table.append(row)
            models[k] = gam
            gaps[k] = reference["fidelity"] - row["fidelity"]
            if with_y:
                accuracy_gaps[k] = reference["accuracy"] - row["accuracy"]

        def matches(k):
            return gaps[k] <= tol or (with_y and accuracy_gaps[k] <= tol)

        trustworthy = matches(1)
        closing = [k for k in gaps if matches(k)]
        if trustworthy:
            verdict = (
                "first-order SHAP is trustworthy: an additive model of the masked "
                f"game is within {tol:g} of the reference (fidelity gap "
                f"{gaps[1]:.3f})."
            )
        elif closing:
            verdict = (
                f"first-order SHAP is NOT trustworthy (fidelity gap {gaps[1]:.3f} > "
                f"{tol:g}): the model relies on interactions; a GAM of order "
                f"{closing[0]} closes the gap (use max_order={closing[0]} and read "
                "its interaction components)."
            )
        else:
            verdict = (
                f"first-order SHAP is NOT trustworthy (fidelity gap {gaps[1]:.3f} > "
                f"{tol:g}), and even the order-{self.max_order} GAM misses "
                f"{gaps[self.max_order]:.3f}: the model relies on interactions of "
                "higher order (or on ones the screen did not keep)."
            )
        if not trustworthy:
            warnings.warn(verdict, ShapleyTrustWarning, stacklevel=2)
        return AuditResult(
            table, gaps, accuracy_gaps, trustworthy, verdict, models, tol
        )
