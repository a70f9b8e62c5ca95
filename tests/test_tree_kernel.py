"""Tests of the Quadrature-TreeSHAP kernel against brute-force oracles.

The ensembles are synthetic :class:`FlatEnsemble` objects (random structure, repeated
features on paths, cover that does not always add up, NaN with ``missing_left``,
categorical bitsets, several outputs and output groups). The oracle evaluates the
path-dependent game ``v(S)`` for all ``2^d`` coalitions by the TreeSHAP recursion
("features in S follow x, the others both branches weighted by cover") and enumerates
Shapley values and Shapley interaction indices from it.
"""

from itertools import combinations
from math import factorial

import numpy as np
import pytest

from sklearn_shapley._simd import cpu_has_avx2_fma
from sklearn_shapley.tree import _kernel
from sklearn_shapley.tree._flat import CATEGORICAL_SPLIT, NUMERIC_SPLIT, FlatEnsemble
from sklearn_shapley.tree._kernel import (
    expected_value,
    gauss_legendre_01,
    interaction_subsets,
    max_path_features,
    n_quadrature_per_tree,
    shap_interaction_values,
    shap_values,
    shapley_interactions,
)

CAT_FEATURE = 0  # in the random ensembles, feature 0 holds small integer categories
TOL = 1e-10


# ----------------------------------------------------------------------------------
# random ensembles
# ----------------------------------------------------------------------------------


class _Builder:
    """Accumulates nodes of one tree (local child indices)."""

    def __init__(self, n_outputs):
        self.n_outputs = n_outputs
        self.left, self.right, self.feature, self.threshold = [], [], [], []
        self.missing_left, self.kind, self.cats, self.cover, self.value = (
            [],
            [],
            [],
            [],
            [],
        )

    def add(self, cover):
        self.left.append(-1)
        self.right.append(-1)
        self.feature.append(-1)
        self.threshold.append(0.0)
        self.missing_left.append(0)
        self.kind.append(NUMERIC_SPLIT)
        self.cats.append(None)
        self.cover.append(cover)
        self.value.append(np.zeros(self.n_outputs))
        return len(self.left) - 1

    def split(self, rng, n, n_features, p_cat=0.5, u=None, slack=True):
        f = int(rng.integers(n_features))
        self.feature[n] = f
        self.missing_left[n] = int(rng.integers(2))
        if f == CAT_FEATURE and rng.random() < p_cat:
            self.kind[n] = CATEGORICAL_SPLIT
            n_words = int(rng.integers(1, 3))
            self.cats[n] = rng.integers(0, 2**32, size=n_words, dtype=np.uint64).astype(
                np.uint32
            )
        elif f == CAT_FEATURE:
            self.threshold[n] = float(np.float32(rng.uniform(0, 40)))
        else:
            self.threshold[n] = float(np.float32(rng.normal()))
        c = self.cover[n]
        u = rng.uniform(0.05, 0.95) if u is None else u
        slack = 1.0 if not slack or rng.random() < 0.6 else rng.uniform(0.6, 1.0)
        lc, rc = self.add(c * u * slack), self.add(c * (1 - u) * slack)
        self.left[n], self.right[n] = lc, rc
        return lc, rc

    def leaf(self, rng, n):
        self.value[n] = rng.normal(size=self.n_outputs)


def random_tree(rng, n_features, max_depth, n_outputs, p_leaf=0.25):
    """A random tree of depth at most ``max_depth`` (features repeat on paths)."""
    b = _Builder(n_outputs)
    stack = [(b.add(float(rng.uniform(50, 200))), 0)]
    while stack:
        n, dep = stack.pop()
        if dep >= max_depth or (dep > 0 and rng.random() < p_leaf):
            b.leaf(rng, n)
            continue
        lc, rc = b.split(rng, n, n_features)
        stack += [(lc, dep + 1), (rc, dep + 1)]
    return b


def spine_tree(rng, n_features, depth, n_outputs):
    """A tree of exactly ``depth`` levels: a long spine with small side subtrees.

    The spine keeps 85-99 % of the cover at every split, so the deep leaves carry
    weight. Returns the builder and the spine as ``(node, goes_left)`` pairs.
    """
    b = _Builder(n_outputs)
    n = b.add(1000.0)
    spine_path = []
    for dep in range(depth):
        go_left = rng.random() < 0.5
        keep = rng.uniform(0.85, 0.99)
        lc, rc = b.split(
            rng, n, n_features, p_cat=0.0, u=keep if go_left else 1 - keep, slack=False
        )
        spine, side = (lc, rc) if go_left else (rc, lc)
        spine_path.append((n, go_left))
        # the side child: a leaf or a stump
        if dep < depth - 1 and rng.random() < 0.3:
            a, c = b.split(rng, side, n_features, p_cat=0.0)
            b.leaf(rng, a)
            b.leaf(rng, c)
        else:
            b.leaf(rng, side)
        n = spine
    b.leaf(rng, n)
    return b, spine_path


def rows_along(rng, b, spine_path, n_rows, n_features, p_follow=0.97):
    """Rows that follow a spine as far as their earlier choices allow."""
    X = rng.normal(size=(n_rows, n_features))
    for x in X:
        known = set()
        for n, go_left in spine_path:
            f = b.feature[n]
            if f in known:
                continue
            known.add(f)
            side = go_left if rng.random() < p_follow else not go_left
            gap = abs(rng.normal()) + 1e-3
            x[f] = b.threshold[n] - gap if side else b.threshold[n] + gap
    return X


def to_flat(builders, n_features, groups=None, base=None, decision=np.float32):
    """Concatenate builders into a FlatEnsemble with global child indices."""
    n_outputs = builders[0].n_outputs
    offsets = np.zeros(len(builders) + 1, dtype=np.int64)
    cols = {
        k: []
        for k in (
            "left",
            "right",
            "feature",
            "threshold",
            "missing_left",
            "kind",
            "cover",
            "value",
            "cat_start",
            "cat_len",
        )
    }
    words = []
    for t, b in enumerate(builders):
        off = offsets[t]
        offsets[t + 1] = off + len(b.left)
        cols["left"] += [c + off if c >= 0 else -1 for c in b.left]
        cols["right"] += [c + off if c >= 0 else -1 for c in b.right]
        for k in ("feature", "threshold", "missing_left", "kind", "cover", "value"):
            cols[k] += list(getattr(b, k))
        for cat in b.cats:
            if cat is None:
                cols["cat_start"].append(0)
                cols["cat_len"].append(0)
            else:
                cols["cat_start"].append(len(words))
                cols["cat_len"].append(len(cat))
                words += list(cat)
    return FlatEnsemble(
        tree_offsets=offsets,
        children_left=np.array(cols["left"], dtype=np.int64),
        children_right=np.array(cols["right"], dtype=np.int64),
        feature=np.array(cols["feature"], dtype=np.int64),
        threshold=np.array(cols["threshold"], dtype=np.float64),
        missing_left=np.array(cols["missing_left"], dtype=np.uint8),
        split_kind=np.array(cols["kind"], dtype=np.uint8),
        cat_start=np.array(cols["cat_start"], dtype=np.int64),
        cat_len=np.array(cols["cat_len"], dtype=np.int64),
        cat_bitsets=np.array(words, dtype=np.uint32),
        cover=np.array(cols["cover"], dtype=np.float64),
        value=np.array(cols["value"], dtype=np.float64).reshape(-1, n_outputs),
        tree_group=np.array(
            [-1] * len(builders) if groups is None else groups, dtype=np.int64
        ),
        base_offset=(
            np.zeros(n_outputs) if base is None else np.asarray(base, dtype=np.float64)
        ),
        n_features=n_features,
        decision_dtype=decision,
    )


def random_ensemble(
    seed, n_features=8, n_trees=4, max_depth=7, n_outputs=2, groups=None
):
    rng = np.random.default_rng(seed)
    trees = [random_tree(rng, n_features, max_depth, n_outputs) for _ in range(n_trees)]
    return to_flat(trees, n_features, groups=groups, base=rng.normal(size=n_outputs))


def random_X(seed, n, n_features, p_nan=0.15):
    rng = np.random.default_rng(seed + 1000)
    X = rng.normal(size=(n, n_features))
    X[:, CAT_FEATURE] = rng.integers(0, 70, size=n)  # some beyond the bitsets
    X[rng.random(X.shape) < p_nan] = np.nan
    return X


# ----------------------------------------------------------------------------------
# oracle
# ----------------------------------------------------------------------------------


def goes_left(flat, n, xv):
    """The FlatEnsemble decision rule, written independently of the kernel."""
    if np.isnan(xv):
        return bool(flat.missing_left[n])
    xv = float(np.asarray(xv).astype(flat.decision_dtype))
    if flat.split_kind[n] == NUMERIC_SPLIT:
        return xv <= flat.threshold[n]
    c = int(xv)
    start, length = flat.cat_start[n], flat.cat_len[n]
    if not 0 <= c < 32 * length:
        return False
    return bool((int(flat.cat_bitsets[start + c // 32]) >> (c % 32)) & 1)


def tree_output(flat, t, leaf_row):
    """(n_outputs,) contribution of leaf value row ``leaf_row`` for tree ``t``."""
    g = flat.tree_group[t]
    if g < 0:
        return leaf_row
    out = np.zeros(flat.n_outputs)
    out[g] = leaf_row[g]
    return out


def predict_raw(flat, X):
    out = np.tile(flat.base_offset, (len(X), 1)).astype(np.float64)
    for r, x in enumerate(X):
        for t in range(flat.n_trees):
            n = flat.tree_offsets[t]
            while flat.children_left[n] >= 0:
                f = flat.feature[n]
                n = (
                    flat.children_left[n]
                    if goes_left(flat, n, x[f])
                    else flat.children_right[n]
                )
            out[r] += tree_output(flat, t, flat.value[n])
    return out


def game(flat, x):
    """v(S) for all 2^d coalitions (bit j of S = feature j known): (2^d, n_outputs)."""
    d = flat.n_features
    masks = (np.arange(2**d)[:, None] >> np.arange(d)) & 1
    v = np.tile(flat.base_offset, (2**d, 1)).astype(np.float64)
    L, R, cover = flat.children_left, flat.children_right, flat.cover

    def rec(n, t):
        if L[n] < 0:
            return np.tile(tree_output(flat, t, flat.value[n]), (2**d, 1))
        f = flat.feature[n]
        vl, vr = rec(L[n], t), rec(R[n], t)
        follow = vl if goes_left(flat, n, x[f]) else vr
        unknown = (cover[L[n]] * vl + cover[R[n]] * vr) / cover[n]
        return np.where(masks[:, f : f + 1] == 1, follow, unknown)

    for t in range(flat.n_trees):
        v += rec(flat.tree_offsets[t], t)
    return v


def sii(v, d, T):
    """Shapley interaction index of the tuple ``T`` from the full game table."""
    k = len(T)
    tm = sum(1 << j for j in T)
    coal = np.arange(2**d)
    S = coal[(coal & tm) == 0]
    size = np.array([bin(s).count("1") for s in S])
    w = np.array(
        [factorial(s) * factorial(d - s - k) / factorial(d - k + 1) for s in size]
    )
    delta = np.zeros((len(S), v.shape[1]))
    for r in range(k + 1):
        for Lsub in combinations(T, r):
            lm = sum(1 << j for j in Lsub)
            delta += (-1) ** (k - r) * v[S | lm]
    return w @ delta


def oracle(flat, X, order):
    """SII of every ``order``-subset of all features: (n, C(d, order), K)."""
    d = flat.n_features
    subs = list(combinations(range(d), order))
    out = np.zeros((len(X), len(subs), flat.n_outputs))
    for r, x in enumerate(X):
        v = game(flat, x)
        for c, T in enumerate(subs):
            out[r, c] = sii(v, d, T)
    return np.array(subs, dtype=np.int64).reshape(-1, order), out


def treeshap_matrix(phi, pairs, pair_sii, d):
    """TreeSHAP-convention interaction matrix from phi and the pairwise SII."""
    n, K = phi.shape[0], phi.shape[2]
    M = np.zeros((n, d, d, K))
    for c, (i, j) in enumerate(pairs):
        M[:, i, j] = M[:, j, i] = pair_sii[:, c] / 2
    for i in range(d):
        M[:, i, i] = phi[:, i] - M[:, i].sum(axis=1)
    return M


@pytest.fixture(scope="module")
def cases():
    """Random ensembles with their oracle values (computed once)."""
    out = []
    specs = [
        dict(seed=0, n_features=8, n_trees=3, max_depth=7, n_outputs=2),
        dict(
            seed=1,
            n_features=6,
            n_trees=4,
            max_depth=6,
            n_outputs=3,
            groups=[0, 2, -1, 1],
        ),
        dict(seed=2, n_features=5, n_trees=5, max_depth=7, n_outputs=1),
    ]
    for spec in specs:
        flat = random_ensemble(**spec)
        X = random_X(spec["seed"], 5, flat.n_features)
        orc = {k: oracle(flat, X, k) for k in (1, 2, 3)}
        out.append((flat, X, orc))
    # Rules of very different sizes in one ensemble (1 point, then 4, then 1): each
    # tree's tables must not read what a tree with a smaller rule left in the scratch,
    # within a block of rows and from the last tree of one block to the first of the
    # next (70 rows: several blocks).
    rng = np.random.default_rng(3)
    trees = [
        random_tree(rng, 8, 2, 2),
        random_tree(rng, 8, 10, 2, p_leaf=0.05),
        random_tree(rng, 8, 1, 2),
    ]
    flat = to_flat(trees, 8, base=rng.normal(size=2))
    X = random_X(3, 70, flat.n_features)
    out.append((flat, X, {k: oracle(flat, X, k) for k in (1, 2, 3)}))
    return out


# ----------------------------------------------------------------------------------
# tests against the oracle
# ----------------------------------------------------------------------------------


def _builds():
    """The portable kernel and, where built and the CPU runs it, the AVX2 + FMA one."""
    from sklearn_shapley.tree import _quadrature

    try:
        from sklearn_shapley.tree import _quadrature_avx2
    except ImportError:
        _quadrature_avx2 = None
    runnable = _quadrature_avx2 is not None and cpu_has_avx2_fma()
    return [
        pytest.param(_quadrature, id="portable"),
        pytest.param(
            _quadrature_avx2,
            id="avx2",
            marks=pytest.mark.skipif(
                not runnable, reason="AVX2 + FMA build not built or not runnable here"
            ),
        ),
    ]


@pytest.fixture(params=_builds())
def build(request, monkeypatch):
    """Run the test with each build of the kernel."""
    monkeypatch.setattr(_kernel, "_quadrature", request.param)
    return request.param


def test_random_trees_have_repeats_and_categoricals(cases):
    """The fixture exercises repeated features, categorical splits, NaN, groups."""
    for flat, X, _ in cases:
        assert np.isnan(X).any()
        depth_feats = max_path_features(flat)
        assert depth_feats.max() <= flat.n_features
    flat = cases[0][0]
    assert (flat.split_kind == CATEGORICAL_SPLIT).any()
    # some path repeats a feature: fewer distinct features than depth
    assert (max_path_features(flat) < 7).any()


def test_shap_values_match_oracle(cases, build):
    for flat, X, orc in cases:
        phi = shap_values(flat, X)
        assert phi.shape == (len(X), flat.n_features, flat.n_outputs)
        np.testing.assert_allclose(phi, orc[1][1], rtol=0, atol=TOL)


@pytest.mark.parametrize("order", [2, 3])
def test_shapley_interactions_match_oracle(cases, order, build):
    for flat, X, orc in cases:
        subs_all, ref = orc[order]
        got = shapley_interactions(flat, X, order, subsets=subs_all)
        np.testing.assert_allclose(got, ref, rtol=0, atol=TOL)
        # default subsets: exactly those that can be nonzero
        subs = interaction_subsets(flat, order)
        got = shapley_interactions(flat, X, order)
        assert got.shape == (len(X), len(subs), flat.n_outputs)
        idx = [int(np.flatnonzero((subs_all == s).all(axis=1))[0]) for s in subs]
        np.testing.assert_allclose(got, ref[:, idx], rtol=0, atol=TOL)
        others = np.setdiff1d(np.arange(len(subs_all)), idx)
        np.testing.assert_allclose(ref[:, others], 0, atol=TOL)


def test_shap_interaction_values_match_oracle(cases, build):
    for flat, X, orc in cases:
        pairs, pair_sii = orc[2]
        ref = treeshap_matrix(orc[1][1], pairs, pair_sii, flat.n_features)
        got = shap_interaction_values(flat, X)
        np.testing.assert_allclose(got, ref, rtol=0, atol=TOL)
        # symmetric, rows sum to phi
        np.testing.assert_allclose(got, got.transpose(0, 2, 1, 3), rtol=0, atol=1e-14)
        np.testing.assert_allclose(got.sum(axis=2), shap_values(flat, X), atol=1e-12)


def test_order_one_interactions_are_shap_values(cases):
    flat, X, _ = cases[0]
    subs = interaction_subsets(flat, 1)
    np.testing.assert_array_equal(
        shapley_interactions(flat, X, 1), shap_values(flat, X)[:, subs[:, 0]]
    )


def test_subsets_in_any_order_and_repeated(cases):
    flat, X, orc = cases[0]
    subs_all, ref = orc[2]
    pick = np.array([[3, 1], [1, 3], [0, 7], [2, 5]])
    got = shapley_interactions(flat, X, 2, subsets=pick)
    idx = [int(np.flatnonzero((subs_all == sorted(p)).all(axis=1))[0]) for p in pick]
    np.testing.assert_allclose(got, ref[:, idx], rtol=0, atol=TOL)


@pytest.mark.parametrize("n_features", [6, 3000, 2**21])
def test_distinct_subsets_match_row_unique(n_features):
    # small key space (a mask), large (sorted int keys), overflowing int64 (rows)
    rng = np.random.default_rng(n_features)
    rows = np.sort(rng.choice(n_features, size=(400, 3)), axis=1)
    rows = rows[(np.diff(rows, axis=1) > 0).all(axis=1)]
    rows = np.concatenate([rows, rows[::3]])
    uniq, inv = _kernel._distinct_subsets(rows, n_features)
    ref, ref_inv = np.unique(rows, axis=0, return_inverse=True)
    np.testing.assert_array_equal(uniq, ref)
    np.testing.assert_array_equal(inv, ref_inv.ravel())
    probe = np.concatenate([ref[::2], ref[:3] + [0, 0, 1]])
    expect = [
        int(np.flatnonzero((ref == p).all(axis=1))[0])
        if (ref == p).all(axis=1).any()
        else -1
        for p in probe
    ]
    assert _kernel._positions(probe, ref, n_features).tolist() == expect


def test_prepared_order_k_is_reused(cases):
    flat, X, orc = cases[0]
    kd = _kernel.prepare(flat, 3)
    np.testing.assert_array_equal(kd.subsets, interaction_subsets(flat, 3))
    fresh = shapley_interactions(flat, X, 3)
    assert np.array_equal(shapley_interactions(flat, X, 3, prepared=kd), fresh)
    subs_all, ref = orc[3]
    got = shapley_interactions(flat, X, 3, subsets=subs_all[::-1], prepared=kd)
    np.testing.assert_allclose(got, ref[:, ::-1], rtol=0, atol=TOL)
    with pytest.raises(ValueError, match="prepared must be prepare"):
        shapley_interactions(flat, X, 2, prepared=kd)
    with pytest.raises(ValueError, match="order 3, not 4"):
        out = np.zeros((len(X), 1, flat.n_outputs))
        _kernel._quadrature.shap_orderk(kd, np.ascontiguousarray(X, float), 4, out, 1)


@pytest.mark.parametrize("seed", range(4))
def test_trees_of_mixed_sizes_match_oracle(seed, build, monkeypatch):
    """Single leaves, stumps and deep trees in random order, two blocks of rows on
    two threads: no tree may depend on what the previous one left in the scratch
    (with the per-node tables and without)."""
    # small calls run on one thread (_n_threads): here every call uses two
    monkeypatch.setattr(_kernel, "_ROW_NODES_PER_THREAD", 1)
    rng = np.random.default_rng(100 + seed)
    depths = rng.choice([0, 1, 2, 3, 6, 9], size=int(rng.integers(3, 7)))
    trees = [random_tree(rng, 7, int(dep), 2, p_leaf=0.1) for dep in depths]
    groups = rng.integers(-1, 2, size=len(trees))
    flat = to_flat(trees, 7, groups=groups, base=rng.normal(size=2))
    X = random_X(seed, 40, 7)
    orc = {k: oracle(flat, X, k) for k in (1, 2, 3)}
    phi = shap_values(flat, X, n_threads=2)
    np.testing.assert_allclose(phi, orc[1][1], rtol=0, atol=TOL)
    pairs, pair_sii = orc[2]
    phi2 = shap_interaction_values(flat, X, n_threads=2)
    ref2 = treeshap_matrix(phi, pairs, pair_sii, 7)
    np.testing.assert_allclose(phi2, ref2, rtol=0, atol=TOL)
    subs, ref = orc[3]
    got = shapley_interactions(flat, X, 3, subsets=subs, n_threads=2)
    np.testing.assert_allclose(got, ref, rtol=0, atol=TOL)
    monkeypatch.setattr(_kernel, "_TABLE_BYTES", 0)
    assert np.array_equal(shap_values(flat, X, n_threads=2), phi)
    assert np.array_equal(shap_interaction_values(flat, X, n_threads=2), phi2)
    got0 = shapley_interactions(flat, X, 3, subsets=subs, n_threads=2)
    assert np.array_equal(got0, got)


def test_efficiency_and_expected_value(cases):
    for flat, X, _ in cases:
        ev = expected_value(flat)
        np.testing.assert_allclose(ev, game(flat, X[0])[0], rtol=0, atol=1e-12)
        phi = shap_values(flat, X)
        np.testing.assert_allclose(
            ev + phi.sum(axis=1), predict_raw(flat, X), atol=1e-11
        )


def test_threads_are_bit_identical(cases, build, monkeypatch):
    # small calls run on one thread (_n_threads): here every call uses two
    monkeypatch.setattr(_kernel, "_ROW_NODES_PER_THREAD", 1)
    flat, _, _ = cases[0]
    X = random_X(7, 203, flat.n_features)
    for fn in (shap_values, shap_interaction_values):
        assert np.array_equal(fn(flat, X, n_threads=1), fn(flat, X, n_threads=2))
    a = shapley_interactions(flat, X, 3, n_threads=1)
    assert np.array_equal(a, shapley_interactions(flat, X, 3, n_threads=2))
    assert np.array_equal(a, shapley_interactions(flat, X, 3, n_threads=-1))
    # fewer rows than two full blocks: smaller blocks, so both threads work
    few = X[:13]
    for fn in (shap_values, shap_interaction_values):
        assert np.array_equal(fn(flat, few, n_threads=1), fn(flat, few, n_threads=2))
    assert np.array_equal(
        shapley_interactions(flat, few, 3, n_threads=1),
        shapley_interactions(flat, few, 3, n_threads=2),
    )


def test_kernel_selection(monkeypatch):
    from sklearn_shapley.tree import _quadrature

    monkeypatch.setenv("SKLEARN_SHAPLEY_KERNEL", "portable")
    assert _kernel._select_kernel() is _quadrature
    monkeypatch.delenv("SKLEARN_SHAPLEY_KERNEL")
    chosen = _kernel._select_kernel()
    assert chosen.compiled_for_avx2_fma() == (chosen is not _quadrature)
    if chosen is not _quadrature:
        assert cpu_has_avx2_fma()
    assert _kernel.kernel_build() in ("avx2+fma", "portable")


def test_untabulated_path_is_identical(cases, monkeypatch):
    """Huge trees skip the per-node tables (1 / f computed on entry): same numbers."""
    flat, X, orc = cases[1]
    ref = (
        shap_values(flat, X),
        shap_interaction_values(flat, X),
        shapley_interactions(flat, X, 3),
    )
    monkeypatch.setattr(_kernel, "_TABLE_BYTES", 0)
    got = (
        shap_values(flat, X),
        shap_interaction_values(flat, X),
        shapley_interactions(flat, X, 3),
    )
    for a, b in zip(ref, got):
        assert np.array_equal(a, b)


def test_float32_and_read_only_X(cases):
    flat, X, orc = cases[0]
    X32 = X.astype(np.float32)
    phi32 = shap_values(flat, X32)
    assert phi32.dtype == np.float64
    # float32 thresholds and float32 decisions: the same rows, the same values
    assert np.array_equal(phi32, shap_values(flat, X32.astype(np.float64)))
    np.testing.assert_allclose(phi32, orc[1][1], rtol=0, atol=TOL)
    ro = X.copy()
    ro.setflags(write=False)
    assert np.array_equal(shap_values(flat, ro), shap_values(flat, X))
    ro32 = X32.copy()
    ro32.setflags(write=False)
    assert np.array_equal(
        shap_interaction_values(flat, ro32), shap_interaction_values(flat, X32)
    )
    assert np.array_equal(
        shapley_interactions(flat, ro32, 3), shapley_interactions(flat, X32, 3)
    )
    # integer X is cast
    Xi = np.nan_to_num(X).round().astype(np.int64)
    np.testing.assert_array_equal(
        shap_values(flat, Xi), shap_values(flat, Xi.astype(float))
    )


def test_float64_decisions():
    """decision_dtype float64 compares in double: x just above a float32 threshold."""
    b = _Builder(1)
    root = b.add(10.0)
    b.feature[root] = 1
    b.threshold[root] = 0.1  # not a float32 number
    lc, rc = b.add(4.0), b.add(6.0)
    b.left[root], b.right[root] = lc, rc
    b.value[lc], b.value[rc] = np.array([1.0]), np.array([-1.0])
    x = np.array([[0.0, np.nextafter(0.1, 1.0)]])  # rounds to float32(0.1) > 0.1
    f64 = to_flat([b], 2, decision=np.float64)
    f32 = to_flat([b], 2, decision=np.float32)
    # float64: goes right, phi = -1 - (0.4 - 0.6) = -0.8; float32: float32(x) > 0.1 too
    np.testing.assert_allclose(shap_values(f64, x)[0, 1, 0], -0.8, atol=1e-15)
    x_down = np.array([[0.0, np.nextafter(0.1, 0.0)]])
    np.testing.assert_allclose(shap_values(f64, x_down)[0, 1, 0], 1.2, atol=1e-15)
    # float32(nextafter(0.1, 0)) == float32(0.1) > 0.1: right in float32
    np.testing.assert_allclose(shap_values(f32, x_down)[0, 1, 0], -0.8, atol=1e-15)


def test_tree_group_routing():
    rng = np.random.default_rng(5)
    trees = [random_tree(rng, 4, 4, 3) for _ in range(2)]
    X = random_X(5, 6, 4)
    only1 = to_flat(trees[:1], 4, groups=[1])
    phi = shap_values(only1, X)
    assert np.all(phi[:, :, [0, 2]] == 0)
    assert np.any(phi[:, :, 1] != 0)
    ev = expected_value(only1)
    assert ev[0] == 0 and ev[2] == 0
    # a group-g tree reads column g of its leaf values only
    alone = to_flat(trees[:1], 4, groups=[-1])
    np.testing.assert_allclose(phi[:, :, 1], shap_values(alone, X)[:, :, 1], atol=1e-14)
    both = to_flat(trees, 4, groups=[2, -1])
    np.testing.assert_allclose(
        expected_value(both) + shap_values(both, X).sum(axis=1),
        predict_raw(both, X),
        atol=1e-12,
    )
    M = shap_interaction_values(both, X)
    m0 = shap_interaction_values(to_flat(trees[1:], 4, groups=[-1]), X)
    np.testing.assert_allclose(M[..., :2], m0[..., :2], atol=1e-14)


def test_single_leaf_trees_and_empty_rows():
    b = _Builder(2)
    b.leaf(np.random.default_rng(0), b.add(3.0))
    flat = to_flat([b], 3, base=[1.0, 2.0])
    X = np.zeros((2, 3))
    assert np.all(shap_values(flat, X) == 0)
    np.testing.assert_allclose(expected_value(flat), flat.base_offset + flat.value[0])
    assert max_path_features(flat).tolist() == [0]
    assert n_quadrature_per_tree(flat).tolist() == [1]
    assert interaction_subsets(flat, 2).shape == (0, 2)
    assert shapley_interactions(flat, X, 2).shape == (2, 0, 2)
    assert shap_values(flat, X[:0]).shape == (0, 3, 2)


# ----------------------------------------------------------------------------------
# quadrature rule
# ----------------------------------------------------------------------------------


@pytest.mark.parametrize("q", [1, 2, 5, 13, 40])
def test_gauss_legendre_01_exact(q):
    t, w = gauss_legendre_01(q)
    assert np.all((t > 0) & (t < 1)) and np.all(w > 0)
    for p in (0, q, 2 * q - 1):
        np.testing.assert_allclose(w @ t**p, 1 / (p + 1), rtol=1e-12)


def test_max_path_features_and_q_rule(cases):
    flat = cases[0][0]
    ref = []
    for t in range(flat.n_trees):
        best, stack = 0, [(flat.tree_offsets[t], frozenset())]
        while stack:
            n, feats = stack.pop()
            if flat.children_left[n] < 0:
                best = max(best, len(feats))
                continue
            feats = feats | {int(flat.feature[n])}
            stack += [(flat.children_left[n], feats), (flat.children_right[n], feats)]
        ref.append(best)
    assert max_path_features(flat).tolist() == ref
    ref = np.array(ref)
    for k in (1, 2, 3):
        q = n_quadrature_per_tree(flat, k)
        assert (
            q.tolist() == np.maximum(1, np.ceil((ref - k + 1) / 2)).astype(int).tolist()
        )
    assert n_quadrature_per_tree(flat, 1, 5).tolist() == [5] * flat.n_trees
    with pytest.raises(ValueError):
        n_quadrature_per_tree(flat, 1, 0)
    with pytest.raises(ValueError):
        n_quadrature_per_tree(flat, 1, "many")


def test_too_few_points_is_inexact_more_is_exact(cases):
    flat, X, orc = cases[0]
    assert max_path_features(flat).max() >= 4
    err_1 = np.abs(shap_values(flat, X, n_quadrature=1) - orc[1][1]).max()
    assert err_1 > 1e-6
    np.testing.assert_allclose(
        shap_values(flat, X, n_quadrature=9), orc[1][1], atol=TOL
    )


def test_bad_inputs(cases):
    flat, X, _ = cases[0]
    with pytest.raises(ValueError):
        shap_values(flat, X[:, :3])
    with pytest.raises(ValueError):
        shap_values(flat, X[0])
    with pytest.raises(ValueError):
        shapley_interactions(flat, X, 2, subsets=[[1, 1]])
    with pytest.raises(ValueError):
        shapley_interactions(flat, X, 2, subsets=[[1, 2, 3]])
    with pytest.raises(ValueError):
        interaction_subsets(flat, 0)
    odd = to_flat([random_tree(np.random.default_rng(3), 3, 3, 1)], 3)
    odd.split_kind[odd.children_left >= 0] = 2  # a split rule the kernel lacks
    with pytest.raises(ValueError, match="split kinds"):
        shap_values(odd, np.zeros((1, 3)))
    # n_threads=None means every OpenMP thread; results do not change
    assert np.array_equal(shap_values(flat, X, n_threads=None), shap_values(flat, X))


# ----------------------------------------------------------------------------------
# deep trees
# ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def deep():
    rng = np.random.default_rng(11)
    n_features = 64
    built = [spine_tree(rng, n_features, depth, 1) for depth in (40, 80, 80)]
    flat = to_flat([b for b, _ in built], n_features, base=[0.5])
    X = np.vstack(
        [rows_along(rng, b, path, 12, n_features) for b, path in built]
        + [rng.normal(size=(4, n_features))]
    )
    return flat, X


def test_deep_trees_efficiency(deep):
    flat, X = deep
    du = max_path_features(flat)
    assert du.min() > 16 and flat.n_features >= 60
    pred = predict_raw(flat, X)[:, 0]
    ev = expected_value(flat)[0]
    scale = np.abs(flat.value).max() * flat.n_trees

    def efficiency_error(**kw):
        phi = shap_values(flat, X, **kw)[:, :, 0]
        return np.abs(ev + phi.sum(axis=1) - pred).max() / scale

    auto = efficiency_error()
    fixed8 = efficiency_error(n_quadrature=8)
    assert auto < 1e-9
    # 8 fixed points are exact only up to 16 distinct features on a path
    assert fixed8 > 1e-8
    # interaction rows still sum to phi at depth
    M = shap_interaction_values(flat, X[:5])
    np.testing.assert_allclose(M.sum(axis=2), shap_values(flat, X[:5]), atol=1e-12)


def leaf_formula(flat, x, Q=64):
    """phi and the pairwise SII of one row from the leaf formula, in numpy.

    Each leaf adds ``v_l (o_i - z_i) sum_q w_q P(t_q) / f_i(t_q)`` to feature ``i`` and
    ``v_l (o_i - z_i)(o_j - z_j) sum_q w_q P / (f_i f_j)`` to the pair; ``Q = 64`` is
    exact up to 127 distinct features on a path. An implementation independent of the
    kernel's depth-first telescoping.
    """
    t, w = gauss_legendre_01(Q)
    d, K = flat.n_features, flat.n_outputs
    phi, pair = np.zeros((d, K)), np.zeros((d, d, K))
    for tr in range(flat.n_trees):
        stack = [(flat.tree_offsets[tr], {})]
        while stack:
            n, zo = stack.pop()
            if flat.children_left[n] >= 0:
                f = flat.feature[n]
                gl = goes_left(flat, n, x[f])
                for c, ind in (
                    (flat.children_left[n], gl),
                    (flat.children_right[n], not gl),
                ):
                    z, o = zo.get(f, (1.0, 1.0))
                    new = dict(zo)
                    new[f] = (z * flat.cover[c] / flat.cover[n], o * float(ind))
                    stack.append((c, new))
                continue
            if not zo:
                continue
            feats = np.array(list(zo))
            z, o = np.array([zo[f] for f in feats]).T
            F = z[:, None] + t * (o - z)[:, None]  # (D, Q), positive: covers > 0
            A = (o - z)[:, None] / F
            wP = w * F.prod(axis=0)
            v = tree_output(flat, tr, flat.value[n])
            phi[feats] += np.outer(A @ wP, v)
            S = (A * wP) @ A.T
            np.fill_diagonal(S, 0.0)
            pair[np.ix_(feats, feats)] += S[:, :, None] * v
    return phi, pair


def test_deep_trees_match_leaf_formula(deep):
    flat, X = deep
    phi = shap_values(flat, X)
    M = shap_interaction_values(flat, X[::4])
    err_phi = err_pair = 0.0
    for r, x in enumerate(X):
        ref_phi, ref_pair = leaf_formula(flat, x)
        err_phi = max(err_phi, np.abs(phi[r] - ref_phi).max())
        if r % 4 == 0:
            off = M[r // 4].copy()
            idx = np.arange(flat.n_features)
            off[idx, idx] = 0.0
            err_pair = max(err_pair, np.abs(off - ref_pair / 2).max())
    assert err_phi < 1e-12
    assert err_pair < 1e-12


def test_deep_tree_matches_shap_treeshap(deep):
    """Cross-check with shap's TreeSHAP on the depth-40 tree.

    (At depth 80 shap's own float64 recursion drifts by about 1e-6 from the leaf
    formula, which the kernel matches to 1e-15.)
    """
    shap = pytest.importorskip("shap")
    flat, X = deep
    t = 0
    sl = slice(flat.tree_offsets[t], flat.tree_offsets[t + 1])
    off = flat.tree_offsets[t]
    left = flat.children_left[sl]
    right = flat.children_right[sl]
    tree = {
        "children_left": np.where(left >= 0, left - off, -1),
        "children_right": np.where(right >= 0, right - off, -1),
        "children_default": np.where(left >= 0, left - off, -1),
        "features": np.where(left >= 0, flat.feature[sl], -2),
        "thresholds": flat.threshold[sl],
        "values": flat.value[sl],
        "node_sample_weight": flat.cover[sl],
    }
    explainer = shap.TreeExplainer(
        {"trees": [tree], "base_offset": 0.0},
        feature_perturbation="tree_path_dependent",
    )
    X = np.nan_to_num(X)
    ref = explainer.shap_values(X, check_additivity=False)
    one = FlatEnsemble(
        tree_offsets=np.array([0, sl.stop]),
        children_left=left,
        children_right=right,
        feature=flat.feature[sl],
        threshold=flat.threshold[sl],
        missing_left=flat.missing_left[sl],
        split_kind=flat.split_kind[sl],
        cat_start=flat.cat_start[sl],
        cat_len=flat.cat_len[sl],
        cat_bitsets=flat.cat_bitsets,
        cover=flat.cover[sl],
        value=flat.value[sl],
        tree_group=np.array([-1]),
        base_offset=np.zeros(1),
        n_features=flat.n_features,
        decision_dtype=np.float64,
    )
    assert max_path_features(one)[0] > 30
    got = shap_values(one, X)[:, :, 0]
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-9)
