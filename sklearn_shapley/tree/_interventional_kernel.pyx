"""Interventional (background) TreeSHAP and Banzhaf values on flat tree arrays.

For a leaf with value ``v`` and distinct path players ``P`` (``k`` of them, numbered
by first appearance on the path: "slots"), a row ``x`` fails the players ``U`` whose
split constraints it breaks and a background row ``b`` passes the players ``J``. The
hybrid ``(x_S, b_¬S)`` reaches the leaf iff every player is taken from a side that
passes, which needs ``U ⊆ J``; the leaf's game for the pair is then ``v`` on the
coalitions that hold ``A = P ∖ J`` (only ``x`` passes, ``a = k − |J|``) and avoid
``B = U`` (only ``b`` passes, ``b = |U|``); the other players are null. Its Shapley value
is ``v ∫₀¹ t^{a−1} (1−t)^b dt`` for a player of ``A`` and ``−v ∫₀¹ t^a (1−t)^{b−1} dt``
for one of ``B``, its Banzhaf value the integrand at ``t = ½``; pair interactions drop
one more factor. Only the pattern pair matters, so the background is folded once per
leaf into the counts ``c(J)``, and at each point ``t`` of the rule the superset sums
``F(V) = Σ_{J ⊇ V} c(J) t^{k − 1 − |J|}`` (over ``J ≠ P``) give every row's values by
a few table look-ups at its ``U``:

    φ_i = −Σ_q w_q (1−t_q)^{|U|−1} F0_q(U)                  (i ∈ U, F0 = t F + c(P))
    φ_i = D(U) − E(U ∪ {i}),  D(V) = Σ_q w_q (1−t_q)^{|V|} F_q(V),
                              E(V) = Σ_q w_q (1−t_q)^{|V|−1} F_q(V)   (i ∉ U).

The cost is background rows × nodes for the counts, ``Q k 2^k`` per leaf for the
tables, and rows × nodes + rows × leaves × ``k`` (``k²`` for pairs) for the rows:
rows plus background rows, never their product.

``leaf_tables`` builds the tables of a run of trees (OpenMP over trees);
``add_values`` adds their values to every row (OpenMP over blocks of rows, each row
by one thread in a fixed order: bit-identical for any thread count).
"""

from cython.parallel cimport prange, threadid
from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t
from libc.stdlib cimport calloc, free
from libc.string cimport memset

import numpy as np

cdef extern from *:
    int popcount "__builtin_popcount"(unsigned int) nogil

ctypedef fused floating_t:
    float
    double

cdef enum:
    # rows per work item of add_values: the tables of a leaf stay in cache while
    # every row of the block looks them up
    ROW_BLOCK = 64

#: tables per leaf, by order: first order (OUT, D, E), pairs (those, then
#: M1, Q0, P0, P1, P2)
N_TABLES = (0, 3, 8)


cdef struct Trees:
    const int64_t* offsets
    const int64_t* left
    const int64_t* right
    const int64_t* feature
    const double* threshold
    const uint8_t* missing_left
    const uint8_t* split_kind
    const int64_t* cat_start
    const int64_t* cat_len
    const uint32_t* cat_bitsets
    const int32_t* node_bit      # slot of the split's player on the node's path
    const int64_t* order         # each tree's reachable nodes in pre-order, then -1
    const int64_t* leaf_of_node  # index among leaves, -1 at internal nodes
    const int64_t* leaf_node
    const int32_t* leaf_k
    const int64_t* tree_leaves   # leaves of tree t: tree_leaves[t]:tree_leaves[t+1]
    const int64_t* table_at      # offset of each leaf's tables (from the run's first)
    bint f32


cdef inline bint _goes_left(const Trees* T, int64_t n, double xv) noexcept nogil:
    """The model's decision at internal node ``n`` for the value ``xv``."""
    cdef int64_t c, nw
    if xv != xv:
        return T.missing_left[n] != 0
    if T.f32:
        xv = <double> (<float> xv)
    if T.split_kind[n] == 0:
        return xv <= T.threshold[n]
    nw = T.cat_len[n]
    if not (xv > -1.0 and xv < 32.0 * nw):
        return False
    c = <int64_t> xv
    return ((T.cat_bitsets[T.cat_start[n] + (c >> 5)] >> (c & 31)) & 1) != 0


cdef inline void _fail_patterns(const Trees* T, Py_ssize_t t, const floating_t* x,
                                uint32_t* fail, uint32_t* out,
                                Py_ssize_t stride) noexcept nogil:
    """``out[(leaf − first leaf of t) * stride]`` = the slots whose constraints ``x``
    breaks on the leaf's path, for every leaf of tree ``t`` (``fail``: per-node
    scratch)."""
    cdef int64_t first = T.offsets[t], last = T.offsets[t + 1]
    cdef int64_t first_leaf = T.tree_leaves[t]
    cdef int64_t i, n, local
    cdef uint32_t bit, here
    cdef bint left
    fail[0] = 0
    for i in range(first, last):
        n = T.order[i]
        if n < 0:
            break
        local = n - first
        here = fail[local]
        if T.left[n] < 0:
            out[(T.leaf_of_node[n] - first_leaf) * stride] = here
            continue
        bit = (<uint32_t> 1) << T.node_bit[n]
        left = _goes_left(T, n, <double> x[T.feature[n]])
        fail[T.left[n] - first] = here | (0 if left else bit)
        fail[T.right[n] - first] = here | (bit if left else 0)


cdef void _superset_sums(double* a, int k) noexcept nogil:
    cdef Py_ssize_t size = (<Py_ssize_t> 1) << k
    cdef Py_ssize_t bit, v
    bit = 1
    while bit < size:
        for v in range(size):
            if not (v & bit):
                a[v] += a[v | bit]
        bit <<= 1


cdef void _build_leaf(double* tab, double* counts, double* f, double* f2, int k,
                      int order, const double* qt, const double* qw, Py_ssize_t Q,
                      double scale) noexcept nogil:
    """The leaf's tables from its background counts (in ``tab``'s second table,
    replaced); ``counts``, ``f``, ``f2``: scratch of ``2^k``."""
    cdef Py_ssize_t size = (<Py_ssize_t> 1) << k
    cdef Py_ssize_t full = size - 1
    cdef Py_ssize_t v, q, j
    cdef int m, s
    cdef double t, w, cp, f0
    cdef double om[34]
    cdef double tp[33]
    cdef double* OUT = tab
    cdef double* D = tab + size
    cdef double* E = tab + 2 * size
    cdef double* M1 = tab + 3 * size
    cdef double* Q0 = tab + 4 * size
    cdef double* P0 = tab + 5 * size
    cdef double* P1 = tab + 6 * size
    cdef double* P2 = tab + 7 * size
    for v in range(size):
        counts[v] = D[v] * scale
    memset(tab, 0, (3 if order == 1 else 8) * size * sizeof(double))
    cp = counts[full]
    for q in range(Q):
        t, w = qt[q], qw[q]
        # om[m + 2] = (1 − t)^m, 0 for m < 0 (those entries are never read)
        om[0] = 0.0
        om[1] = 0.0
        om[2] = 1.0
        tp[0] = 1.0
        for j in range(1, k + 1):
            om[j + 2] = om[j + 1] * (1.0 - t)
            tp[j] = tp[j - 1] * t
        for v in range(full):
            f[v] = counts[v] * tp[k - 1 - popcount(<unsigned int> v)]
        f[full] = 0.0
        _superset_sums(f, k)
        if order == 2:
            for v in range(size):
                s = popcount(<unsigned int> v)
                f2[v] = counts[v] * tp[k - 2 - s] if s <= k - 2 else 0.0
            _superset_sums(f2, k)
        for v in range(size):
            m = popcount(<unsigned int> v)
            f0 = t * f[v] + cp
            OUT[v] -= w * om[m + 1] * f0
            D[v] += w * om[m + 2] * f[v]
            E[v] += w * om[m + 1] * f[v]
            if order == 2:
                M1[v] += w * om[m] * f[v]
                Q0[v] += w * om[m] * f0
                P0[v] += w * om[m + 2] * f2[v]
                P1[v] += w * om[m + 1] * f2[v]
                P2[v] += w * om[m] * f2[v]


def leaf_tables(
    const int64_t[::1] offsets, const int64_t[::1] left, const int64_t[::1] right,
    const int64_t[::1] feature, const double[::1] threshold,
    const uint8_t[::1] missing_left, const uint8_t[::1] split_kind,
    const int64_t[::1] cat_start, const int64_t[::1] cat_len,
    const uint32_t[::1] cat_bitsets, const int32_t[::1] node_bit,
    const int64_t[::1] order, const int64_t[::1] leaf_of_node,
    const int64_t[::1] leaf_node, const int32_t[::1] leaf_k,
    const int64_t[::1] tree_leaves, const int64_t[::1] table_at, bint f32,
    const floating_t[:, ::1] background, Py_ssize_t first_tree,
    Py_ssize_t last_tree, int interaction_order, const int64_t[::1] rule_at,
    const double[::1] rule_t, const double[::1] rule_w, double[::1] tables,
    int n_threads,
):
    """Fill ``tables`` with the tables of the leaves of trees
    ``first_tree:last_tree`` over ``background`` (each leaf's at ``table_at``, its
    ``k``-point rule ``rule_t/w[rule_at[k]:rule_at[k + 1]]``)."""
    cdef Trees T
    cdef Py_ssize_t n_bg = background.shape[0]
    cdef Py_ssize_t t, r, li, lo, hi, max_nodes = 1, max_leaves = 1, max_size = 1
    cdef int k, tid
    cdef uint32_t* fail
    cdef uint32_t* pattern
    cdef double* scratch
    cdef double* tab
    cdef double scale = 1.0 / max(n_bg, 1)
    cdef int n_tab = 3 if interaction_order == 1 else 8
    T = _trees(offsets, left, right, feature, threshold, missing_left, split_kind,
               cat_start, cat_len, cat_bitsets, node_bit, order, leaf_of_node,
               leaf_node, leaf_k, tree_leaves, table_at, f32)
    for t in range(first_tree, last_tree):
        max_nodes = max(max_nodes, offsets[t + 1] - offsets[t])
        max_leaves = max(max_leaves, tree_leaves[t + 1] - tree_leaves[t])
        for li in range(tree_leaves[t], tree_leaves[t + 1]):
            max_size = max(max_size, (<Py_ssize_t> 1) << leaf_k[li])
    n_threads = max(1, min(n_threads, last_tree - first_tree))
    fail = <uint32_t*> calloc(n_threads * max_nodes, sizeof(uint32_t))
    pattern = <uint32_t*> calloc(n_threads * max_leaves, sizeof(uint32_t))
    scratch = <double*> calloc(n_threads * 3 * max_size, sizeof(double))
    if fail == NULL or pattern == NULL or scratch == NULL:
        free(fail)
        free(pattern)
        free(scratch)
        raise MemoryError("no memory for the interventional kernel's scratch")
    try:
        for t in prange(first_tree, last_tree, nogil=True, schedule="dynamic",
                        num_threads=n_threads):
            tid = threadid()
            lo = tree_leaves[t]
            hi = tree_leaves[t + 1]
            # the counts go in each leaf's second table, replaced by _build_leaf
            for li in range(lo, hi):
                k = leaf_k[li]
                memset(&tables[table_at[li] - table_at[tree_leaves[first_tree]]], 0,
                       n_tab * ((<Py_ssize_t> 1) << k) * sizeof(double))
            for r in range(n_bg):
                _fail_patterns(&T, t, &background[r, 0], fail + tid * max_nodes,
                               pattern + tid * max_leaves, 1)
                for li in range(lo, hi):
                    k = leaf_k[li]
                    tab = &tables[table_at[li] - table_at[tree_leaves[first_tree]]]
                    # passes J = complement of the fails, within the leaf's slots
                    tab[((<Py_ssize_t> 1) << k) + (
                        (~pattern[tid * max_leaves + li - lo])
                        & ((<uint32_t> 1 << k) - 1))] += 1.0
            for li in range(lo, hi):
                k = leaf_k[li]
                if k == 0:
                    continue
                _build_leaf(
                    &tables[table_at[li] - table_at[tree_leaves[first_tree]]],
                    scratch + tid * 3 * max_size,
                    scratch + tid * 3 * max_size + max_size,
                    scratch + tid * 3 * max_size + 2 * max_size,
                    k, interaction_order, &rule_t[rule_at[k]], &rule_w[rule_at[k]],
                    rule_at[k + 1] - rule_at[k], scale,
                )
    finally:
        free(fail)
        free(pattern)
        free(scratch)


cdef Trees _trees(
    const int64_t[::1] offsets, const int64_t[::1] left, const int64_t[::1] right,
    const int64_t[::1] feature, const double[::1] threshold,
    const uint8_t[::1] missing_left, const uint8_t[::1] split_kind,
    const int64_t[::1] cat_start, const int64_t[::1] cat_len,
    const uint32_t[::1] cat_bitsets, const int32_t[::1] node_bit,
    const int64_t[::1] order, const int64_t[::1] leaf_of_node,
    const int64_t[::1] leaf_node, const int32_t[::1] leaf_k,
    const int64_t[::1] tree_leaves, const int64_t[::1] table_at, bint f32,
):
    cdef Trees T
    T.offsets = &offsets[0]
    T.left = &left[0]
    T.right = &right[0]
    T.feature = &feature[0]
    T.threshold = &threshold[0]
    T.missing_left = &missing_left[0]
    T.split_kind = &split_kind[0]
    T.cat_start = &cat_start[0]
    T.cat_len = &cat_len[0]
    T.cat_bitsets = &cat_bitsets[0]
    T.node_bit = &node_bit[0]
    T.order = &order[0]
    T.leaf_of_node = &leaf_of_node[0]
    T.leaf_node = &leaf_node[0]
    T.leaf_k = &leaf_k[0]
    T.tree_leaves = &tree_leaves[0]
    T.table_at = &table_at[0]
    T.f32 = f32
    return T


cdef void _add_leaf(const double* tab, int k, const int64_t* players,
                    const double* value, Py_ssize_t g0, Py_ssize_t g1,
                    const uint32_t* fails, Py_ssize_t n_rows, int order,
                    double* out, Py_ssize_t row_stride, Py_ssize_t d,
                    Py_ssize_t K) noexcept nogil:
    """Add one leaf's values (outputs ``g0:g1``) to ``n_rows`` rows of ``out`` whose
    fail patterns are ``fails``."""
    cdef Py_ssize_t size = (<Py_ssize_t> 1) << k
    cdef const double* OUT = tab
    cdef const double* D = tab + size
    cdef const double* E = tab + 2 * size
    cdef const double* M1 = tab + 3 * size
    cdef const double* Q0 = tab + 4 * size
    cdef const double* P0 = tab + 5 * size
    cdef const double* P1 = tab + 6 * size
    cdef const double* P2 = tab + 7 * size
    cdef Py_ssize_t r, s, u, g
    cdef uint32_t U, bs, bu
    cdef double o, dv, sii, failed
    cdef double phi[32]
    cdef double rest[32]
    cdef double* row
    for r in range(n_rows):
        U = fails[r]
        o = OUT[U]
        if U and o == 0.0:
            # no background row passes every player x fails: every term is zero
            continue
        dv = D[U]
        for s in range(k):
            # branch-free: a row's fails are as good as random
            failed = (U >> s) & 1
            phi[s] = failed * o + (1.0 - failed) * (dv - E[U | (<uint32_t> 1) << s])
        row = out + r * row_stride
        if order == 1:
            if g1 - g0 == 1:
                for s in range(k):
                    row[players[s] * K + g0] += value[g0] * phi[s]
                continue
            for s in range(k):
                for g in range(g0, g1):
                    row[players[s] * K + g] += value[g] * phi[s]
            continue
        for s in range(k):
            rest[s] = 0.0
        for s in range(k):
            bs = (<uint32_t> 1) << s
            for u in range(s + 1, k):
                bu = (<uint32_t> 1) << u
                if U & bs:
                    if U & bu:
                        sii = Q0[U]
                    else:
                        sii = M1[U | bu] - E[U]
                elif U & bu:
                    sii = M1[U | bs] - E[U]
                else:
                    sii = P0[U] - P1[U | bs] - P1[U | bu] + P2[U | bs | bu]
                sii *= 0.5
                rest[s] += sii
                rest[u] += sii
                for g in range(g0, g1):
                    row[(players[s] * d + players[u]) * K + g] += value[g] * sii
                    row[(players[u] * d + players[s]) * K + g] += value[g] * sii
        for s in range(k):
            for g in range(g0, g1):
                row[(players[s] * d + players[s]) * K + g] += value[g] * (
                    phi[s] - rest[s])


def add_values(
    const int64_t[::1] offsets, const int64_t[::1] left, const int64_t[::1] right,
    const int64_t[::1] feature, const double[::1] threshold,
    const uint8_t[::1] missing_left, const uint8_t[::1] split_kind,
    const int64_t[::1] cat_start, const int64_t[::1] cat_len,
    const uint32_t[::1] cat_bitsets, const int32_t[::1] node_bit,
    const int64_t[::1] order, const int64_t[::1] leaf_of_node,
    const int64_t[::1] leaf_node, const int32_t[::1] leaf_k,
    const int64_t[::1] tree_leaves, const int64_t[::1] table_at, bint f32,
    const int64_t[::1] leaf_players_at, const int64_t[::1] leaf_players,
    const double[:, ::1] value, const int64_t[::1] tree_group,
    const floating_t[:, ::1] X, Py_ssize_t first_tree, Py_ssize_t last_tree,
    int interaction_order, const double[::1] tables, double[::1] out,
    Py_ssize_t n_players, int n_threads,
):
    """Add the values of the leaves of trees ``first_tree:last_tree`` (their
    ``tables`` from :func:`leaf_tables`) to ``out``, the flattened ``(n, d, K)``
    (order 1) or ``(n, d, d, K)`` (order 2) array, for every row of ``X``."""
    cdef Trees T
    cdef Py_ssize_t n = X.shape[0], K = value.shape[1], d = n_players
    cdef Py_ssize_t row_stride = d * K * (d if interaction_order == 2 else 1)
    cdef Py_ssize_t n_blocks = (n + ROW_BLOCK - 1) // ROW_BLOCK
    cdef Py_ssize_t b, r, r0, r1, t, li, lo, hi, g0, g1, base
    cdef Py_ssize_t max_nodes = 1, max_leaves = 1
    cdef int tid
    cdef uint32_t* fail
    cdef uint32_t* patterns
    cdef uint32_t* mine
    if n == 0 or last_tree <= first_tree:
        return
    T = _trees(offsets, left, right, feature, threshold, missing_left, split_kind,
               cat_start, cat_len, cat_bitsets, node_bit, order, leaf_of_node,
               leaf_node, leaf_k, tree_leaves, table_at, f32)
    for t in range(first_tree, last_tree):
        max_nodes = max(max_nodes, offsets[t + 1] - offsets[t])
        max_leaves = max(max_leaves, tree_leaves[t + 1] - tree_leaves[t])
    n_threads = max(1, min(n_threads, n_blocks))
    base = table_at[tree_leaves[first_tree]]
    fail = <uint32_t*> calloc(n_threads * max_nodes, sizeof(uint32_t))
    patterns = <uint32_t*> calloc(n_threads * max_leaves * ROW_BLOCK,
                                  sizeof(uint32_t))
    if fail == NULL or patterns == NULL:
        free(fail)
        free(patterns)
        raise MemoryError("no memory for the interventional kernel's scratch")
    try:
        for b in prange(n_blocks, nogil=True, schedule="dynamic",
                        num_threads=n_threads):
            tid = threadid()
            mine = patterns + tid * max_leaves * ROW_BLOCK
            r0 = b * ROW_BLOCK
            r1 = min(r0 + ROW_BLOCK, n)
            for t in range(first_tree, last_tree):
                lo = tree_leaves[t]
                hi = tree_leaves[t + 1]
                # [leaf][row]: a leaf's rows side by side
                for r in range(r0, r1):
                    _fail_patterns(&T, t, &X[r, 0], fail + tid * max_nodes,
                                   mine + (r - r0), ROW_BLOCK)
                if tree_group[t] >= 0:
                    g0 = tree_group[t]
                    g1 = g0 + 1
                else:
                    g0 = 0
                    g1 = K
                for li in range(lo, hi):
                    if leaf_k[li] == 0:
                        continue
                    _add_leaf(&tables[table_at[li] - base], leaf_k[li],
                              &leaf_players[leaf_players_at[li]],
                              &value[leaf_node[li], 0], g0, g1,
                              mine + (li - lo) * ROW_BLOCK, r1 - r0,
                              interaction_order, &out[r0 * row_stride], row_stride,
                              d, K)
    finally:
        free(fail)
        free(patterns)


def layout(const int64_t[::1] offsets, const int64_t[::1] left,
           const int64_t[::1] right, const int64_t[::1] feature,
           const int64_t[::1] player_of_feature, Py_ssize_t max_depth):
    """The kernel's view of the trees: each tree's nodes in pre-order, the slot of
    every split's player on its path (players numbered by first appearance from the
    root), and the leaves in that order with their path players.

    Returns ``(order, node_bit, leaf_of_node, leaf_node, leaf_k, tree_leaves,
    leaf_players_at, leaf_players)``.
    """
    cdef Py_ssize_t n_trees = offsets.shape[0] - 1, n_nodes = left.shape[0]
    cdef Py_ssize_t t, top, i, n, depth, j, p, n_leaves = 0, n_slots = 0
    order_ = np.full(n_nodes, -1, dtype=np.int64)  # -1: unreachable, after the rest
    node_bit_ = np.zeros(n_nodes, dtype=np.int32)
    leaf_of_node_ = np.full(n_nodes, -1, dtype=np.int64)
    tree_leaves_ = np.zeros(n_trees + 1, dtype=np.int64)
    cdef int64_t[::1] order = order_
    cdef int32_t[::1] node_bit = node_bit_
    cdef int64_t[::1] leaf_of_node = leaf_of_node_
    cdef int64_t[::1] tree_leaves = tree_leaves_
    stack_ = np.empty((max_depth + 2, 2), dtype=np.int64)
    slots_ = np.empty(max_depth + 1, dtype=np.int64)
    count_ = np.zeros(max_depth + 2, dtype=np.int64)
    cdef int64_t[:, ::1] stack = stack_
    cdef int64_t[::1] slots = slots_
    cdef int64_t[::1] count = count_
    leaf_node, leaf_k, leaf_players = [], [], []
    for t in range(n_trees):
        i = offsets[t]
        stack[0, 0] = offsets[t]
        stack[0, 1] = 0
        top = 1
        count[0] = 0
        while top:
            top -= 1
            n = stack[top, 0]
            depth = stack[top, 1]
            order[i] = n
            i += 1
            if left[n] < 0:
                leaf_of_node[n] = n_leaves
                n_leaves += 1
                leaf_node.append(n)
                leaf_k.append(count[depth])
                leaf_players.append(slots_[: count[depth]].copy())
                continue
            p = player_of_feature[feature[n]]
            j = 0
            while j < count[depth] and slots[j] != p:
                j += 1
            if j == count[depth]:
                slots[j] = p
                count[depth + 1] = count[depth] + 1
            else:
                count[depth + 1] = count[depth]
            node_bit[n] = j
            stack[top, 0] = right[n]
            stack[top, 1] = depth + 1
            stack[top + 1, 0] = left[n]
            stack[top + 1, 1] = depth + 1
            top += 2
        tree_leaves[t + 1] = n_leaves
    k_ = np.asarray(leaf_k, dtype=np.int32)
    at = np.zeros(n_leaves + 1, dtype=np.int64)
    np.cumsum(k_, out=at[1:])
    players = (
        np.concatenate(leaf_players) if n_leaves else np.zeros(0, dtype=np.int64)
    )
    return (order_, node_bit_, leaf_of_node_, np.asarray(leaf_node, dtype=np.int64),
            k_, tree_leaves_, at, players.astype(np.int64))
