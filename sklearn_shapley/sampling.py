"""Coalition samplers: the Shapley kernel, uniform cardinality, paired (antithetic) masks.

A coalition is a boolean vector over ``n_players``; a batch is an ``(m, n_players)``
boolean array. The empty and the full coalition are never drawn by the Shapley-kernel
sampler (they carry infinite kernel weight and enter as constraints instead).
"""

from __future__ import annotations

import zlib

import numpy as np


def shapley_kernel_size_weights(n_players):
    """Probability of each coalition size ``1..n_players-1`` under the Shapley kernel.

    ``P(k) ∝ 1 / (k (d − k))``: drawing the size this way, then ``k`` players uniformly,
    samples coalitions with probability ``∝ (d − 1) / (C(d, k) k (d − k))``.

    Returns
    -------
    ndarray of shape (n_players - 1,)
    """
    if n_players < 2:
        raise ValueError("The Shapley kernel needs at least 2 players.")
    sizes = np.arange(1, n_players)
    weights = 1.0 / (sizes * (n_players - sizes))
    return weights / weights.sum()


def as_generator(random_state):
    """A ``numpy.random.Generator`` from None, an int, a RandomState or a Generator."""
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(2**31 - 1))
    return np.random.default_rng(random_state)


def _masks_of_sizes(sizes, n_players, rng):
    """Uniformly random coalitions with the given sizes (one per entry of ``sizes``)."""
    scores = rng.random((len(sizes), n_players))
    sizes = np.asarray(sizes)
    # the players of the ``size`` smallest scores (one sort, no ties almost surely)
    kth = np.take_along_axis(
        np.sort(scores, axis=1), np.maximum(sizes - 1, 0)[:, None], 1
    )
    return (scores <= kth) & (sizes[:, None] > 0)


class CoalitionSampler:
    """Draw coalitions of ``n_players`` players.

    Parameters
    ----------
    n_players : int
        Number of players.
    distribution : {"shapley", "uniform"}, default="shapley"
        ``"shapley"``: the Shapley kernel (sizes ``1..d-1`` with ``P(k) ∝ 1/(k(d-k))``).
        ``"uniform"``: size uniform in ``0..d`` (ViT Shapley's surrogate masks), then
        players uniformly.
    paired : bool, default=True
        Return every coalition together with its complement (rows ``2i`` and
        ``2i + 1``); halves the variance of least-squares estimators.
    """

    def __init__(self, n_players, distribution="shapley", paired=True):
        if distribution not in ("shapley", "uniform"):
            raise ValueError(
                f"distribution must be 'shapley' or 'uniform', got {distribution!r}."
            )
        self.n_players = int(n_players)
        self.distribution = distribution
        self.paired = paired
        if distribution == "shapley":
            self._size_p = shapley_kernel_size_weights(self.n_players)

    def sample(self, n_coalitions, random_state=None):
        """Draw ``n_coalitions`` coalitions (rounded up to even when ``paired``).

        Returns
        -------
        ndarray of bool, shape (n_coalitions, n_players)
        """
        rng = as_generator(random_state)
        d = self.n_players
        n_draws = (n_coalitions + 1) // 2 if self.paired else n_coalitions
        if self.distribution == "shapley":
            sizes = rng.choice(np.arange(1, d), size=n_draws, p=self._size_p)
        else:
            sizes = rng.integers(0, d + 1, size=n_draws)
        masks = _masks_of_sizes(sizes, d, rng)
        if self.paired:
            masks = np.stack([masks, ~masks], axis=1).reshape(-1, d)
        return masks


def all_coalitions(n_players):
    """Every coalition of ``n_players`` players, row ``s`` being the bits of ``s``.

    Returns
    -------
    ndarray of bool, shape (2 ** n_players, n_players)
    """
    return coalitions(0, 2**n_players, n_players)


def coalitions(start, stop, n_players):
    """The coalitions whose bits are ``start, ..., stop - 1`` (a block of
    :func:`all_coalitions`, without building all of them).

    Returns
    -------
    ndarray of bool, shape (stop - start, n_players)
    """
    codes = np.arange(start, stop, dtype=np.int64)
    return ((codes[:, None] >> np.arange(n_players)) & 1).astype(bool)


def row_generators(X, random_state):
    """One independent generator per row, seeded by ``random_state`` and the row itself.

    A row's random draws then depend only on its own values, not on which other rows
    share the batch, their order or the number of jobs.
    """
    if isinstance(random_state, np.random.RandomState):
        base = int(random_state.randint(2**31 - 1))
    elif random_state is None:
        base = int(np.random.SeedSequence().entropy % (2**63))
    else:
        base = int(random_state)
    X = np.ascontiguousarray(X, dtype=np.float64)
    return [
        np.random.default_rng([base, zlib.crc32(row.tobytes()), len(row)]) for row in X
    ]
