"""Value functions ("games") ``v_x(S)``: a model's output with only the players in ``S`` known.

A game is evaluated for many rows and many coalitions at once::

    game(X, masks) -> ndarray (n_rows, n_coalitions, n_outputs)

where ``masks`` is a boolean ``(n_coalitions, n_players)`` array shared by every row or an
``(n_rows, n_coalitions, n_players)`` array with one set per row. The classes here hold a
model; a learned surrogate (``sklearn_shapley.amortized``) implements the same
interface. Games know nothing of explainers.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import sparse
from sklearn.base import is_classifier
from sklearn.utils import check_random_state

__all__ = [
    "Game",
    "BaselineGame",
    "MarginalGame",
    "ModelFunction",
    "model_function",
    "apply_link",
    "first_last_masks",
    "pair_interaction_sums",
    "pair_masks",
    "resolve_game",
    "LINKS",
]

LINKS = ("identity", "logit", "log", "log_softmax")
_EPS = 1e-12
#: Rounding slack of a probability (float32 softmax) before a link refuses it.
_PROBABILITY_TOL = 1e-6


def apply_link(values, link):
    """Apply ``link`` to predictions ``(n, n_outputs)`` before they are averaged.

    ``"identity"`` leaves them; ``"logit"`` maps probabilities to log-odds;
    ``"log"`` to log-probabilities; ``"log_softmax"`` to log-probabilities normalised
    over the outputs; a callable is applied as is. The three probability links
    refuse values outside ``[0, 1]`` (a regressor's predictions, a margin) rather
    than clip them into a different model.
    """
    if callable(link):
        return np.asarray(link(values), dtype=np.float64)
    if link == "identity":
        return values
    with np.errstate(invalid="ignore"):
        outside = (values < -_PROBABILITY_TOL) | (values > 1.0 + _PROBABILITY_TOL)
    if np.any(outside):
        bad = np.asarray(values)[outside].flat[0]
        raise ValueError(
            f"link={link!r} maps probabilities, but the model output {bad:.6g}, "
            "outside [0, 1]. Use link='identity' for a regressor or a model's "
            "margin, or explain the model's predict_proba."
        )
    clipped = np.clip(values, _EPS, 1.0 - _EPS)
    if link == "logit":
        return np.log(clipped) - np.log1p(-clipped)
    if link == "log":
        return np.log(clipped)
    if link == "log_softmax":
        logp = np.log(clipped)
        return logp - np.log(np.exp(logp).sum(axis=1, keepdims=True))
    raise ValueError(f"link must be one of {LINKS} or a callable, got {link!r}.")


class ModelFunction:
    """``f(X) -> ndarray (n, n_outputs)`` float64 for a model; picklable.

    Classifiers are explained through ``predict_proba`` (all classes), regressors through
    ``predict``; a torch module or any other callable is called on the array. A model
    fitted on a DataFrame gets a DataFrame with its column names, or with ``frame`` (a
    :class:`~sklearn_shapley._frames.FrameCodec`) the DataFrame it decodes from the
    rows: its dtypes, and its categories from their codes.
    """

    def __init__(self, model, frame=None):
        self.model = model
        self.frame = frame
        self.names_in = getattr(model, "feature_names_in_", None)
        if _is_classifier(model) and hasattr(model, "predict_proba"):
            self.method = "predict_proba"
            classes = getattr(model, "classes_", None)
            self.output_names = None if classes is None else [str(c) for c in classes]
        elif hasattr(model, "predict"):
            self.method, self.output_names = "predict", None
        elif _is_torch_module(model):
            self.method, self.output_names = "torch", None
        elif callable(model):
            self.method, self.output_names = "call", None
        else:
            raise TypeError(
                f"Cannot explain an object of type {type(model).__name__}: pass a "
                "fitted scikit-learn estimator, a torch module or a callable "
                "f(X) -> array."
            )

    def __call__(self, X):
        if self.method == "torch":
            out = self._call_torch(X)
        elif self.method == "call":
            out = self.model(X)
        else:
            if self.frame is not None:
                X = self.frame.decode(X)
            elif self.names_in is not None:
                import pandas as pd

                X = pd.DataFrame(X, columns=self.names_in)
            out = getattr(self.model, self.method)(X)
        return self._check_output(np.asarray(out, dtype=np.float64), X)

    def _check_output(self, out, X):
        """``out`` as ``(n, n_outputs)``, or one clear error for a wrong shape or a
        non-finite value (no Shapley value of it would be meaningful)."""
        n = len(X)
        if out.ndim == 0 or out.shape[0] != n:
            raise ValueError(
                f"The model returned an output of shape {out.shape} for {n} input "
                f"rows; it must return one row per input row, (n,) or "
                "(n, n_outputs)."
            )
        out = out.reshape(n, -1)
        bad = ~np.isfinite(out).all(axis=1)
        if bad.any():
            X = np.asarray(X, dtype=np.float64)
            with np.errstate(invalid="ignore"):
                largest = np.nanmax(np.abs(X[bad]), initial=0.0)
            raise ValueError(
                f"The model returned non-finite outputs (NaN or inf) for "
                f"{int(bad.sum())} of the {n} rows it was given (largest |x| among them "
                f"{largest:.3g}); Shapley values need finite model outputs. Explain "
                "rows the model predicts finitely (rescale very large inputs)."
            )
        return out

    def _call_torch(self, X):
        import torch

        param = next(self.model.parameters(), None)
        dtype = torch.float32 if param is None else param.dtype
        device = "cpu" if param is None else param.device
        with torch.no_grad():
            out = self.model(torch.as_tensor(np.asarray(X), dtype=dtype, device=device))
        return out.detach().cpu().numpy().astype(np.float64)


def model_function(model, frame=None):
    """Return ``(f, output_names)`` with ``f`` a :class:`ModelFunction` of ``model``."""
    f = ModelFunction(model, frame)
    return f, f.output_names


def _is_classifier(model):
    """``sklearn.base.is_classifier`` that answers False for non-estimators."""
    try:
        return is_classifier(model)
    except (AttributeError, TypeError):
        return False


def _is_torch_module(obj):
    torch = __import__("sys").modules.get("torch")
    return torch is not None and isinstance(obj, torch.nn.Module)


def check_rows(X, n_features):
    """``X`` as a float64 ``(n_rows, n_features)`` array, or ``ValueError``."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != n_features:
        raise ValueError(f"X must have shape (n_rows, {n_features}), got {X.shape}.")
    return X


def check_masks(masks, n_players, n_rows):
    """Player ``masks`` as a boolean array, shared ``(m, n_players)`` or per row
    ``(n_rows, m, n_players)``, or ``ValueError``."""
    masks = np.asarray(masks, dtype=bool)
    if masks.shape[-1] != n_players:
        raise ValueError(
            f"masks have {masks.shape[-1]} players; this game has {n_players}."
        )
    if masks.ndim != 2 and masks.shape[0] != n_rows:
        raise ValueError(f"Per-row masks have {masks.shape[0]} rows, X has {n_rows}.")
    return masks


def player_membership(players, n_features):
    """Boolean ``(n_players, n_features)`` matrix mapping players to feature columns.

    ``players=None`` makes every feature its own player. Otherwise ``players`` is a list
    of column-index groups that must partition ``range(n_features)``.
    """
    if players is None:
        return np.eye(n_features, dtype=bool)
    membership = np.zeros((len(players), n_features), dtype=bool)
    for p, group in enumerate(players):
        cols = np.atleast_1d(np.asarray(group, dtype=np.int64))
        if cols.size == 0 or cols.min() < 0 or cols.max() >= n_features:
            raise ValueError(
                f"players[{p}] = {list(cols)} must be a non-empty list of column indices "
                f"in [0, {n_features})."
            )
        membership[p, cols] = True
    counts = membership.sum(axis=0)
    if not np.all(counts == 1):
        bad = np.flatnonzero(counts != 1)[:10].tolist()
        raise ValueError(
            "players must put every feature column in exactly one group; columns "
            f"{bad} are in {counts[bad].tolist()} groups."
        )
    return membership


def first_last_masks(n_players):
    """The singletons, the leave-one-outs, then the grand and empty coalitions."""
    eye = np.eye(n_players, dtype=bool)
    ends = np.array([[True] * n_players, [False] * n_players])
    return np.concatenate([eye, ~eye, ends])


def pair_masks(n_players):
    """Every pair of players (``i < j`` in lexicographic order), then every pair's
    complement in the same order."""
    i, j = np.triu_indices(n_players, k=1)
    pairs = np.zeros((len(i), n_players), dtype=bool)
    pairs[np.arange(len(i)), i] = pairs[np.arange(len(i)), j] = True
    return np.concatenate([pairs, ~pairs])


def pair_interaction_sums(first_last, pair_values):
    """Each player's pairwise interactions summed at the empty and at the full
    coalition: ``(s, t)``, each ``(n, d, K)``.

    ``s_i = Σ_j v({i, j}) − v({i}) − v({j}) + v(∅)`` and ``t_i = Σ_j v(N) − v(N∖{i})
    − v(N∖{j}) + v(N∖{i, j})`` (over ``j ≠ i``), from the game on
    :func:`first_last_masks` ``(n, 2d + 2, K)`` and on :func:`pair_masks`
    ``(n, d (d − 1), K)``.
    """
    d = (first_last.shape[1] - 2) // 2
    full, empty = first_last[:, 2 * d], first_last[:, 2 * d + 1]
    first = first_last[:, :d] - empty[:, None]  # v({i}) − v(∅)
    last = full[:, None] - first_last[:, d : 2 * d]  # v(N) − v(N∖{i})
    i, j = np.triu_indices(d, k=1)
    n_pairs = len(i)
    pair = np.arange(n_pairs)
    incidence = sparse.csr_matrix(  # each pair's two players
        (np.ones(2 * n_pairs), (np.r_[i, j], np.r_[pair, pair])), shape=(d, n_pairs)
    )

    def per_player(pairs):  # Σ over each player's pairs of (n, pair, K) values
        n, _, K = pairs.shape
        summed = incidence @ pairs.transpose(1, 0, 2).reshape(n_pairs, n * K)
        return np.asarray(summed).reshape(d, n, K).transpose(1, 0, 2)

    s = per_player(pair_values[:, : len(i)]) - (d - 1) * empty[:, None]
    s -= (d - 2) * first + first.sum(axis=1, keepdims=True)
    t = (d - 2) * last + last.sum(axis=1, keepdims=True) - (d - 1) * full[:, None]
    t += per_player(pair_values[:, len(i) :])
    return s, t


class Game:
    """Interface of a cooperative game over the players of each row.

    Subclasses set ``n_players``, ``n_outputs`` and implement ``__call__``. The other
    methods are capabilities with a generic default that a game with a faster exact
    form overrides (a tree ensemble's marginal game answers them from its tables).
    """

    n_players: int
    n_outputs: int
    output_names = None
    #: Model evaluations one value costs, roughly: what training budgets count.
    evaluation_cost = 1

    @property
    def shared_evaluation_cost(self):
        """Model evaluations one value costs when every row has the same
        coalitions (a game may share work across rows then); by default
        :attr:`evaluation_cost`."""
        return self.evaluation_cost

    def __call__(self, X, masks):  # pragma: no cover - interface
        raise NotImplementedError

    def grand_and_empty(self, X):
        """``(v(full), v(empty))``, each ``(n_rows, n_outputs)``."""
        masks = np.stack(
            [np.ones(self.n_players, dtype=bool), np.zeros(self.n_players, dtype=bool)]
        )
        values = self(X, masks)
        return values[:, 0], values[:, 1]

    @property
    def first_last_cost(self):
        """Model evaluations one row's :meth:`first_last_values` cost, roughly: by
        default one value per coalition, the same coalitions for every row."""
        return (2 * self.n_players + 2) * self.shared_evaluation_cost

    def first_last_values(self, X):
        """The game on :func:`first_last_masks`: ``(n_rows, 2 d + 2, n_outputs)``."""
        return self(X, first_last_masks(self.n_players))

    @property
    def pair_cost(self):
        """Model evaluations one row's :meth:`pair_values` cost, roughly."""
        return self.n_players * (self.n_players - 1) * self.shared_evaluation_cost

    def pair_values(self, X):
        """The game on :func:`pair_masks`: ``(n_rows, d (d − 1), n_outputs)``."""
        return self(X, pair_masks(self.n_players))

    def contribution_values(self, X, pairs=False):
        """``(first_last, pair_sums)``: :meth:`first_last_values`, and with ``pairs``
        the players' :func:`pair_interaction_sums` ``(s, t)`` (else None).

        What an amortized explainer takes from the game for every row it
        explains; by default from :meth:`first_last_values` and
        :meth:`pair_values`. A game with fast forms of both computes them in one
        pass over the rows.
        """
        values = self.first_last_values(X)
        if not pairs:
            return values, None
        return values, pair_interaction_sums(values, self.pair_values(X))

    def shapley_values(self, X):
        """Exact Shapley values ``(n_rows, n_players, n_outputs)`` from the game's own
        exact form (a tree ensemble's marginal game has one), or None when it has
        none: then they are enumerated or estimated from the game's values."""
        return None

    def proxy(self, max_cost=None):
        """A game with the same ``v(full)``, at most one model evaluation a value.

        Features computed from a game (the players' first and last contributions)
        come from it; the game itself by default. A game with several proxies
        returns the most faithful one whose :attr:`first_last_cost` is at most
        ``max_cost`` where it has one (None: no limit).
        """
        return self

    def split_thresholds(self):
        """Per feature column, the values at which the game's values can change
        when that feature crosses them (a row goes left when ``x_j <= t``, as in
        trees), or None when the game does not know them. A network's encoding of
        the rows at these points represents the game's step-shaped Shapley values
        exactly."""
        return None

    def kernel_statistics(self, X, empty, masks, weights):
        """``(cross (n, d, K), square (n, K))`` of the weighted least-squares loss.

        ``Σ_S w_S (v_x(S) − v_x(∅) − 1_Sᵀφ)² = square − 2 φᵀ cross + φᵀ A φ`` for
        every ``φ``, with ``A = Σ_S w_S 1_S 1_Sᵀ`` over the coalitions ``masks
        (m, d)`` of weights ``weights (m,)``, ``empty`` the rows' ``v(∅) (n, K)``.
        """
        targets = self(X, masks) - np.asarray(empty)[:, None, :]
        weights = np.asarray(weights, dtype=np.float64)
        cross = np.einsum("m,nmk,md->ndk", weights, targets, masks.astype(np.float64))
        square = np.einsum("m,nmk->nk", weights, np.square(targets))
        return cross, square


class _ModelGame(Game):
    """Common machinery: model function, link, player groups, batching."""

    def __init__(
        self, model, *, link="identity", players=None, batch_size=65536, frame=None
    ):
        self.model = model
        self.link = link
        self.frame = frame
        self._f, self.output_names = model_function(model, frame)
        self.players = players
        self.batch_size = int(batch_size)
        self._membership = None

    def _setup(self, n_features):
        self._membership = player_membership(self.players, n_features)
        self.n_players = self._membership.shape[0]
        self.n_features = n_features

    def _feature_masks(self, masks):
        if self.players is None:
            return masks
        return (masks.astype(np.uint8) @ self._membership.astype(np.uint8)).astype(bool)

    def _predict(self, Z):
        """Model output with the link applied, in batches of ``batch_size`` rows."""
        outs = [
            apply_link(self._f(Z[i : i + self.batch_size]), self.link)
            for i in range(0, len(Z), self.batch_size)
        ]
        out = np.concatenate(outs, axis=0)
        if self.output_names is not None and out.shape[1] != len(self.output_names):
            self.output_names = None
        self.n_outputs = out.shape[1]
        return out

    def _check_X(self, X):
        return check_rows(X, self.n_features)

    def split_thresholds(self):
        """A tree ensemble's numeric split thresholds per feature (see
        :meth:`Game.split_thresholds`), or None for another model."""
        from sklearn.frozen import FrozenEstimator

        from .tree import flatten_ensemble

        model = self.model
        if isinstance(model, FrozenEstimator):
            model = model.estimator
        try:
            flat = flatten_ensemble(model)
        except (TypeError, ValueError, AttributeError, NotImplementedError):
            return None  # not a tree ensemble the package reads, or not fitted
        if flat.n_features > self.n_features:
            return None
        return ensemble_thresholds(flat, self.n_features)

    def _broadcast_masks(self, X, masks):
        fmasks = self._feature_masks(check_masks(masks, self.n_players, len(X)))
        if fmasks.ndim == 2:
            fmasks = np.broadcast_to(fmasks, (len(X),) + fmasks.shape)
        return fmasks


class BaselineGame(_ModelGame):
    """Held-out features are replaced by fixed values: ``v_x(S) = f(x_S, b_{¬S})``.

    Parameters
    ----------
    model : estimator or callable
        The model (see :func:`model_function`).
    baseline : array-like of shape (n_features,)
        Values for held-out features (e.g. column means).
    link : str or callable, default="identity"
        Applied to each prediction (see :func:`apply_link`).
    players : list of lists of int, default=None
        Column groups treated as one player each.
    batch_size : int, default=65536
        Most rows sent to the model in one call.
    frame : FrameCodec, default=None
        The DataFrame the model takes (see :class:`ModelFunction`): its categorical
        columns are category codes in the rows, and a baseline holds a code.
    """

    def __init__(
        self,
        model,
        baseline,
        *,
        link="identity",
        players=None,
        batch_size=65536,
        frame=None,
    ):
        super().__init__(
            model, link=link, players=players, batch_size=batch_size, frame=frame
        )
        self.baseline = np.asarray(baseline, dtype=np.float64).reshape(-1)
        self._setup(len(self.baseline))

    def grand_and_empty(self, X):
        """``v(full) = link(f(x))`` from one model call per row; ``v(∅) =
        link(f(b))``, the same for every row, computed once."""
        X = self._check_X(X)
        full = self._predict(X)
        if getattr(self, "_empty", None) is None:
            self._empty = self._predict(self.baseline[None])[0]
        return full, np.broadcast_to(self._empty, full.shape).copy()

    def __call__(self, X, masks):
        X = self._check_X(X)
        fmasks = self._broadcast_masks(X, masks)
        Z = np.where(fmasks, X[:, None, :], self.baseline)
        n, m, d = Z.shape
        return self._predict(Z.reshape(n * m, d)).reshape(n, m, -1)

    def as_marginal(self):
        """The same game as a :class:`MarginalGame` over the one baseline row."""
        return MarginalGame(
            self.model,
            self.baseline[None],
            link=self.link,
            players=self.players,
            batch_size=self.batch_size,
            frame=self.frame,
        )

    def proxy(self, max_cost=None):
        """The same game in a one-hidden-layer MLP's exact form
        (:func:`~sklearn_shapley.mlp.mlp_marginal_game` over the baseline row),
        whose first and last values cost a fraction of the model's; else itself."""
        if getattr(self, "_proxy", None) is None:
            from .mlp import mlp_marginal_game

            self._proxy = mlp_marginal_game(self.as_marginal()) or self
        return self._proxy


class MarginalGame(_ModelGame):
    """Held-out features are averaged over a background sample (interventional SHAP).

    ``v_x(S) = mean_b link(f(x_S, b_{¬S}))`` over the rows ``b`` of ``background``.

    Parameters
    ----------
    model : estimator or callable
    background : array-like of shape (n_background, n_features)
    link, players, batch_size, frame : see :class:`BaselineGame`.
    """

    def __init__(
        self,
        model,
        background,
        *,
        link="identity",
        players=None,
        batch_size=65536,
        frame=None,
    ):
        super().__init__(
            model, link=link, players=players, batch_size=batch_size, frame=frame
        )
        self.background = np.asarray(background, dtype=np.float64)
        if self.background.ndim != 2 or len(self.background) == 0:
            raise ValueError("background must be a non-empty 2-D array.")
        self._setup(self.background.shape[1])

    def __call__(self, X, masks):
        X = self._check_X(X)
        fmasks = self._broadcast_masks(X, masks)
        n, m, d = fmasks.shape
        n_bg = len(self.background)
        out = None
        # Chunk (row, coalition) pairs so that chunk * n_bg rows fit the batch size.
        pairs = max(1, self.batch_size // n_bg)
        flat_masks = fmasks.reshape(n * m, d)
        row_of_pair = np.repeat(np.arange(n), m)
        for start in range(0, n * m, pairs):
            sl = slice(start, start + pairs)
            Z = np.where(
                flat_masks[sl, None, :], X[row_of_pair[sl], None, :], self.background
            )
            vals = self._predict(Z.reshape(-1, d)).reshape(-1, n_bg, self.n_outputs)
            if out is None:
                out = np.empty((n * m, self.n_outputs))
            out[sl] = vals.mean(axis=1)
        return out.reshape(n, m, -1)

    @property
    def evaluation_cost(self):
        return len(self.background)

    def grand_and_empty(self, X):
        """``v(full) = link(f(x))`` from one model call per row; ``v(∅)``, the same
        for every row, computed once."""
        X = self._check_X(X)
        full = self._predict(X)
        if getattr(self, "_empty", None) is None:
            self._empty = self._predict(self.background).mean(axis=0)
        return full, np.broadcast_to(self._empty, full.shape).copy()

    def proxy(self, max_cost=None):
        """The baseline game at the background's mean (its mode in a categorical
        column): the same ``v(full)``, one model evaluation a value instead of
        ``n_background``."""
        return BaselineGame(
            self.model,
            baseline_values(self.background, self.frame),
            link=self.link,
            players=self.players,
            batch_size=self.batch_size,
            frame=self.frame,
        )


def baseline_values(rows, frame=None):
    """The values a baseline holds: the column means of ``rows``; with ``frame``
    (rows from a DataFrame) the means of the values present, and the most frequent
    code of a categorical column (a mean of codes is no category)."""
    rows = np.asarray(rows, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-missing column
        baseline = np.nanmean(rows, axis=0) if frame is not None else rows.mean(0)
    if frame is not None:
        modes = frame.mode(rows)
        baseline = np.where(np.isnan(modes), baseline, modes)
    return baseline


def ensemble_thresholds(flat, n_features):
    """The sorted numeric split thresholds of each of ``n_features`` features in a
    flat tree ensemble, or None when a split is not numeric (categorical). A feature
    whose values within ``ZERO_THRESHOLD`` of zero are missing (LightGBM's
    ``zero_as_missing``) also steps at both ends of that interval, and every split
    feature at an XGBoost model's ``missing`` value."""
    from .tree._flat import NUMERIC_SPLIT, ZERO_THRESHOLD

    internal = flat.feature >= 0
    if np.any(flat.split_kind[internal] != NUMERIC_SPLIT):
        return None
    zero_ends = [np.nextafter(-ZERO_THRESHOLD, -np.inf), ZERO_THRESHOLD]
    missing = np.float32(flat.missing_value)  # XGBoost's missing=: a step at it
    missing_ends = (
        [] if np.isnan(missing) else [np.nextafter(missing, -np.inf), missing]
    )
    thresholds = []
    for j in range(n_features):
        t = flat.threshold[internal & (flat.feature == j)]
        if t.size:
            t = np.r_[t, zero_ends if j in flat.zero_as_missing else [], missing_ends]
        thresholds.append(np.unique(t))
    return thresholds


def resolve_game(game, rows=None):
    """The fastest exact form of ``game``: the same values, computed faster.

    A tree ensemble's marginal game from its leaves
    (:func:`~sklearn_shapley.tree.tree_marginal_game`), a one-hidden-layer MLP's
    from its weights (:func:`~sklearn_shapley.mlp.mlp_marginal_game`); ``game``
    itself when it has none. A tree ensemble's baseline game, the marginal game
    over the one baseline row, keeps the model's values (one evaluation each)
    and gains exact Shapley values; a tree classifier's probabilities take the
    hybrid form. Both give every player's first and last values in a few walks
    per tree (their ``proxy``). ``rows`` are probe rows on which the exact form
    is checked against the model.
    """
    from .mlp import mlp_marginal_game
    from .tree import tree_marginal_game

    if type(game) is BaselineGame:
        fast = tree_marginal_game(game.as_marginal(), rows, tables=False)
        return game if fast is None else fast
    if type(game) is not MarginalGame:
        return game

    for exact_form in (tree_marginal_game, mlp_marginal_game):
        fast = exact_form(game, rows)
        if fast is not None:
            return fast
    return game


def default_background(X, n_background, random_state=None):
    """At most ``n_background`` rows of ``X`` drawn without replacement (a scipy
    sparse ``X`` gives a sparse matrix of the drawn rows)."""
    rng = check_random_state(random_state)
    if not sparse.issparse(X):
        X = np.asarray(X, dtype=np.float64)
    if X.shape[0] <= n_background:
        return X.astype(np.float64, copy=True)
    idx = rng.choice(X.shape[0], size=n_background, replace=False)
    return X[np.sort(idx)].astype(np.float64)
