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
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memset

import numpy as np

cdef extern from *:
    # restrict-qualified pointers: the halves a superset sum adds never overlap
    ctypedef double* dptr "double *__restrict__"
    ctypedef const double* cdptr "const double *__restrict__"

ctypedef fused floating_t:
    float
    double

cdef enum:
    # rows per block (a multiple of 64): each tree is walked for a block of rows, and
    # the tables of a leaf stay in cache while every row of the block looks them up;
    # the larger the block, the fewer times the tables (beyond the caches) are read
    MIN_BLOCK = 64
    MAX_BLOCK = 1024
    # the fail patterns of a block (leaves x rows, per thread) take at most this
    PATTERN_BYTES = 4 << 20
    # add_values: blocks smaller than MAX_BLOCK where there are too few rows to give
    # every thread this many
    BLOCKS_PER_THREAD = 4

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
    const int32_t* pos_depth     # depth of each position of ``order`` (-1: unused)
    const uint8_t* pos_left      # 1 where the position's node is a first child
    bint f32


cdef struct Pos:
    # one reachable node, in its tree's pre-order (the order array), with what the
    # pattern walk reads of it side by side
    int64_t node
    double thr
    uint32_t bit      # its split's slot on the path, as a bit
    int32_t feat
    int32_t depth
    int32_t leaf      # index among its tree's leaves, -1 at internal nodes
    uint8_t is_left   # first child of its parent
    uint8_t mleft
    uint8_t kind      # 0: numeric, else categorical


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


cdef Pos* _positions(const Trees* T, Py_ssize_t first_tree,
                     Py_ssize_t last_tree) noexcept nogil:
    """The nodes of trees ``first_tree:last_tree`` as ``Pos``, by position of
    ``order`` (malloc'd; NULL if out of memory)."""
    cdef Py_ssize_t lo = T.offsets[first_tree], hi = T.offsets[last_tree], i, t
    cdef int64_t n
    cdef Pos* P = <Pos*> malloc(max(hi - lo, 1) * sizeof(Pos))
    cdef Pos* I
    if P == NULL:
        return NULL
    for t in range(first_tree, last_tree):
        for i in range(T.offsets[t], T.offsets[t + 1]):
            I = P + (i - lo)
            n = T.order[i]
            I.depth = T.pos_depth[i]
            if n < 0:
                break
            I.node = n
            I.is_left = T.pos_left[i]
            if T.left[n] < 0:
                I.leaf = <int32_t> (T.leaf_of_node[n] - T.tree_leaves[t])
                continue
            I.leaf = -1
            I.thr = T.threshold[n]
            I.bit = (<uint32_t> 1) << T.node_bit[n]
            I.feat = <int32_t> T.feature[n]
            I.mleft = T.missing_left[n]
            I.kind = T.split_kind[n]
    return P


cdef inline void _decide(const Trees* T, const Pos* I, const double* x,
                         Py_ssize_t nb, uint32_t* go) noexcept nogil:
    """``go[r]`` = all ones where row ``r`` (value ``x[r]``) goes left at ``I``, else
    0, for ``nb`` rows; numeric splits branch-free, so the loop is vectorised."""
    cdef Py_ssize_t r
    cdef double v, thr = I.thr
    cdef int ml = I.mleft != 0
    if I.kind != 0:
        for r in range(nb):
            go[r] = (<uint32_t> 0) - <uint32_t> _goes_left(T, I.node, x[r])
    elif T.f32:
        for r in range(nb):
            v = <double> (<float> x[r])
            go[r] = (<uint32_t> 0) - <uint32_t> ((v <= thr) | ((v != v) & ml))
    else:
        for r in range(nb):
            v = x[r]
            go[r] = (<uint32_t> 0) - <uint32_t> ((v <= thr) | ((v != v) & ml))


cdef void _patterns(const Trees* T, const Pos* P, Py_ssize_t p0, Py_ssize_t t,
                    const double* Xt,
                    Py_ssize_t ld, Py_ssize_t nb, Py_ssize_t B, uint32_t* fd,
                    uint32_t* go, uint32_t* pbit, uint32_t* out,
                    Py_ssize_t stride) noexcept nogil:
    """``out[leaf * stride + r]`` = the slots whose constraints row ``r`` breaks on
    the path to each leaf of tree ``t`` (``leaf`` counted within the tree), for
    ``nb`` rows whose feature ``f`` is ``Xt[f * ld + r]``.

    The tree's nodes are walked once in pre-order for all the rows, each step a loop
    over the rows: ``go`` (the split's decision per row) and ``fd`` (the fails on the
    path) are kept per depth, ``B >= nb`` apart; ``pbit`` holds the split's bit per
    depth."""
    cdef Py_ssize_t first = T.offsets[t], last = T.offsets[t + 1]
    cdef const Pos* I
    cdef Py_ssize_t i, r, d
    cdef const uint32_t* src
    cdef const uint32_t* g
    cdef uint32_t* dst
    cdef uint32_t b
    I = P + (first - p0)  # P holds the run's positions from p0 on
    if I.leaf >= 0:
        for r in range(nb):
            out[r] = 0
        return
    for r in range(nb):
        fd[r] = 0
    _decide(T, I, Xt + I.feat * ld, nb, go)
    pbit[0] = I.bit
    for i in range(first + 1, last):
        I = P + (i - p0)
        d = I.depth
        if d < 0:
            break  # unreachable nodes follow the rest
        src = fd + (d - 1) * B
        g = go + (d - 1) * B
        b = pbit[d - 1]
        dst = (out + I.leaf * stride) if I.leaf >= 0 else (fd + d * B)
        if I.is_left:
            for r in range(nb):
                dst[r] = src[r] | (~g[r] & b)
        else:
            for r in range(nb):
                dst[r] = src[r] | (g[r] & b)
        if I.leaf < 0:
            _decide(T, I, Xt + I.feat * ld, nb, go + d * B)
            pbit[d] = I.bit


cdef inline void _add_into(dptr dst, cdptr src, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t j
    for j in range(n):
        dst[j] += src[j]


cdef void _superset_sums(double* a, int k) noexcept nogil:
    """``a[v] = sum of a[w] over w ⊇ v``, in place: for each bit, every ``v`` without
    it adds ``v | bit``, taken in runs of ``bit`` contiguous entries (vectorised)."""
    cdef Py_ssize_t size = (<Py_ssize_t> 1) << k
    cdef Py_ssize_t bit, base, v
    if k >= 1:
        for v in range(0, size, 2):
            a[v] += a[v + 1]
    bit = 2
    while bit < size:
        base = 0
        while base < size:
            _add_into(a + base, a + base + bit, bit)
            base += 2 * bit
        bit <<= 1


cdef void _build_leaf(double* tab, double* counts, double* f, double* f2, int k,
                      int order, const double* qt, const double* qw, Py_ssize_t Q,
                      double scale, const uint8_t* pc) noexcept nogil:
    """The leaf's tables from its background counts (in ``tab``'s second table,
    replaced); ``counts``, ``f``, ``f2``: scratch of ``2^k``; ``pc[v]``: the bits
    set in ``v``."""
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
            f[v] = counts[v] * tp[k - 1 - pc[v]]
        f[full] = 0.0
        _superset_sums(f, k)
        if order == 2:
            for v in range(size):
                s = pc[v]
                f2[v] = counts[v] * tp[k - 2 - s] if s <= k - 2 else 0.0
            _superset_sums(f2, k)
        for v in range(size):
            m = pc[v]
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


cdef Py_ssize_t _block(Py_ssize_t max_leaves, Py_ssize_t n,
                      int n_threads) noexcept:
    """Rows per block: as many as PATTERN_BYTES of patterns allow (a multiple of
    MIN_BLOCK, at most MAX_BLOCK), fewer where ``n`` rows would give some of the
    ``n_threads`` threads fewer than BLOCKS_PER_THREAD blocks (``n_threads`` 0: no
    such limit). A row's result does not depend on its block."""
    cdef Py_ssize_t b = PATTERN_BYTES // (4 * max(max_leaves, 1))
    cdef Py_ssize_t per
    b = min(MAX_BLOCK, max(MIN_BLOCK, b // MIN_BLOCK * MIN_BLOCK))
    if n_threads > 0:
        per = (n + BLOCKS_PER_THREAD * n_threads - 1) // (BLOCKS_PER_THREAD * n_threads)
        per = (per + MIN_BLOCK - 1) // MIN_BLOCK * MIN_BLOCK
        b = max(MIN_BLOCK, min(b, per))
    return b


cdef class TreeArrays:
    """An ensemble's flat arrays as the kernel reads them (:c:type:`Trees`), with
    each leaf's table offsets for one order; holds the arrays while it lives."""

    cdef Trees T
    cdef object held

    def __init__(
        self,
        const int64_t[::1] offsets, const int64_t[::1] left,
        const int64_t[::1] right, const int64_t[::1] feature,
        const double[::1] threshold, const uint8_t[::1] missing_left,
        const uint8_t[::1] split_kind, const int64_t[::1] cat_start,
        const int64_t[::1] cat_len, const uint32_t[::1] cat_bitsets,
        const int32_t[::1] node_bit, const int64_t[::1] order,
        const int64_t[::1] leaf_of_node, const int64_t[::1] leaf_node,
        const int32_t[::1] leaf_k, const int64_t[::1] tree_leaves,
        const int64_t[::1] table_at, const int32_t[::1] pos_depth,
        const uint8_t[::1] pos_left, bint f32,
    ):
        self.held = (offsets, left, right, feature, threshold, missing_left,
                     split_kind, cat_start, cat_len, cat_bitsets, node_bit, order,
                     leaf_of_node, leaf_node, leaf_k, tree_leaves, table_at,
                     pos_depth, pos_left)
        self.T.offsets = &offsets[0]
        self.T.left = &left[0]
        self.T.right = &right[0]
        self.T.feature = &feature[0]
        self.T.threshold = &threshold[0]
        self.T.missing_left = &missing_left[0]
        self.T.split_kind = &split_kind[0]
        self.T.cat_start = &cat_start[0]
        self.T.cat_len = &cat_len[0]
        self.T.cat_bitsets = &cat_bitsets[0]
        self.T.node_bit = &node_bit[0]
        self.T.order = &order[0]
        self.T.leaf_of_node = &leaf_of_node[0]
        self.T.leaf_node = &leaf_node[0]
        self.T.leaf_k = &leaf_k[0]
        self.T.tree_leaves = &tree_leaves[0]
        self.T.table_at = &table_at[0]
        self.T.pos_depth = &pos_depth[0]
        self.T.pos_left = &pos_left[0]
        self.T.f32 = f32


def leaf_tables(
    TreeArrays trees, const double[:, ::1] background_t, Py_ssize_t first_tree,
    Py_ssize_t last_tree, int interaction_order, const int64_t[::1] rule_at,
    const double[::1] rule_t, const double[::1] rule_w, double[::1] tables,
    int n_threads,
):
    """Fill ``tables`` with the tables of the leaves of trees
    ``first_tree:last_tree`` over the background (``background_t``: transposed,
    one row per column; each leaf's at ``table_at``, its ``k``-point rule
    ``rule_t/w[rule_at[k]:rule_at[k + 1]]``)."""
    cdef Trees T = trees.T
    # the arrays the loops below index, by their names
    cdef const int64_t* offsets = T.offsets
    cdef const int64_t* tree_leaves = T.tree_leaves
    cdef const int64_t* table_at = T.table_at
    cdef const int32_t* leaf_k = T.leaf_k
    cdef const int32_t* pos_depth = T.pos_depth
    cdef Py_ssize_t n_bg = background_t.shape[1]
    cdef Py_ssize_t t, r, r0, nb, li, lo, hi, max_leaves = 1, max_size = 1
    cdef Py_ssize_t max_depth = 0, i, size, at0, bi, B
    cdef int k, tid
    cdef uint32_t mask
    cdef uint32_t* walk
    cdef uint32_t* pattern
    cdef uint32_t* pat
    cdef double* scratch
    cdef uint8_t* pc
    cdef double* tab
    cdef double scale = 1.0 / max(n_bg, 1)
    cdef int n_tab = 3 if interaction_order == 1 else 8
    cdef Pos* P
    cdef Py_ssize_t walk_size
    for t in range(first_tree, last_tree):
        max_leaves = max(max_leaves, tree_leaves[t + 1] - tree_leaves[t])
        for li in range(tree_leaves[t], tree_leaves[t + 1]):
            max_size = max(max_size, (<Py_ssize_t> 1) << leaf_k[li])
        for i in range(offsets[t], offsets[t + 1]):
            max_depth = max(max_depth, pos_depth[i])
    n_threads = max(1, min(n_threads, last_tree - first_tree))
    B = _block(max_leaves, n_bg, 0)
    # per thread: fd and go per depth, the bits per depth
    walk_size = (2 * B + 1) * (max_depth + 1)
    walk = <uint32_t*> calloc(n_threads * walk_size, sizeof(uint32_t))
    pattern = <uint32_t*> calloc(n_threads * max_leaves * B, sizeof(uint32_t))
    scratch = <double*> calloc(n_threads * 3 * max_size, sizeof(double))
    pc = <uint8_t*> malloc(max_size * sizeof(uint8_t))
    P = _positions(&T, first_tree, last_tree)
    if (walk == NULL or pattern == NULL or scratch == NULL or P == NULL
            or pc == NULL):
        free(walk)
        free(pattern)
        free(scratch)
        free(P)
        free(pc)
        raise MemoryError("no memory for the interventional kernel's scratch")
    at0 = table_at[tree_leaves[first_tree]]
    # the bits set in each subset of the largest leaf's slots
    pc[0] = 0
    for i in range(1, max_size):
        pc[i] = pc[i >> 1] + (i & 1)
    try:
        for t in prange(first_tree, last_tree, nogil=True, schedule="dynamic",
                        num_threads=n_threads):
            tid = threadid()
            lo = tree_leaves[t]
            hi = tree_leaves[t + 1]
            pat = pattern + tid * max_leaves * B
            # the counts go in each leaf's second table, replaced by _build_leaf
            for li in range(lo, hi):
                k = leaf_k[li]
                memset(&tables[table_at[li] - at0], 0,
                       n_tab * ((<Py_ssize_t> 1) << k) * sizeof(double))
            for bi in range((n_bg + B - 1) // B):
                r0 = bi * B
                nb = min(B, n_bg - r0)
                _patterns(&T, P, offsets[first_tree], t, &background_t[0, r0], n_bg,
                          nb, B,
                          walk + tid * walk_size,
                          walk + tid * walk_size + (max_depth + 1) * B,
                          walk + tid * walk_size + 2 * (max_depth + 1) * B,
                          pat, B)
                for li in range(lo, hi):
                    k = leaf_k[li]
                    size = (<Py_ssize_t> 1) << k
                    tab = &tables[table_at[li] - at0 + size]
                    mask = <uint32_t> (size - 1)
                    # passes J = complement of the fails, within the leaf's slots
                    for r in range(nb):
                        tab[(~pat[(li - lo) * B + r]) & mask] += 1.0
            for li in range(lo, hi):
                k = leaf_k[li]
                if k == 0:
                    continue
                _build_leaf(
                    &tables[table_at[li] - at0],
                    scratch + tid * 3 * max_size,
                    scratch + tid * 3 * max_size + max_size,
                    scratch + tid * 3 * max_size + 2 * max_size,
                    k, interaction_order, &rule_t[rule_at[k]], &rule_w[rule_at[k]],
                    rule_at[k + 1] - rule_at[k], scale, pc,
                )
    finally:
        free(walk)
        free(pattern)
        free(scratch)
        free(P)
        free(pc)


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
    TreeArrays trees, const int64_t[::1] leaf_players_at,
    const int64_t[::1] leaf_players, const double[:, ::1] value,
    const int64_t[::1] tree_group,
    const floating_t[:, ::1] X, Py_ssize_t first_tree, Py_ssize_t last_tree,
    int interaction_order, const double[::1] tables, double[::1] out,
    Py_ssize_t n_players, int n_threads,
):
    """Add the values of the leaves of trees ``first_tree:last_tree`` (their
    ``tables`` from :func:`leaf_tables`) to ``out``, the flattened ``(n, d, K)``
    (order 1) or ``(n, d, d, K)`` (order 2) array, for every row of ``X``."""
    cdef Trees T = trees.T
    # the arrays the loops below index, by their names
    cdef const int64_t* offsets = T.offsets
    cdef const int64_t* tree_leaves = T.tree_leaves
    cdef const int64_t* table_at = T.table_at
    cdef const int64_t* leaf_node = T.leaf_node
    cdef const int32_t* leaf_k = T.leaf_k
    cdef const int32_t* pos_depth = T.pos_depth
    cdef Py_ssize_t n = X.shape[0], K = value.shape[1], d = n_players
    cdef Py_ssize_t nf = X.shape[1]
    cdef Py_ssize_t row_stride = d * K * (d if interaction_order == 2 else 1)
    cdef Py_ssize_t n_blocks, B
    cdef Py_ssize_t b, r, r0, r1, t, li, lo, hi, g0, g1, base, f, i
    cdef Py_ssize_t max_leaves = 1, max_depth = 0, walk_size
    cdef int tid
    cdef uint32_t* walk
    cdef uint32_t* patterns
    cdef uint32_t* mine
    cdef uint32_t* wk
    cdef double* xts
    cdef double* xt
    cdef Pos* P
    if n == 0 or last_tree <= first_tree:
        return
    for t in range(first_tree, last_tree):
        max_leaves = max(max_leaves, tree_leaves[t + 1] - tree_leaves[t])
        for i in range(offsets[t], offsets[t + 1]):
            max_depth = max(max_depth, pos_depth[i])
    B = _block(max_leaves, n, max(n_threads, 1))
    n_blocks = (n + B - 1) // B
    n_threads = max(1, min(n_threads, n_blocks))
    base = table_at[tree_leaves[first_tree]]
    walk_size = (2 * B + 1) * (max_depth + 1)
    walk = <uint32_t*> calloc(n_threads * walk_size, sizeof(uint32_t))
    patterns = <uint32_t*> calloc(n_threads * max_leaves * B, sizeof(uint32_t))
    xts = <double*> calloc(n_threads * max(nf, 1) * B, sizeof(double))
    P = _positions(&T, first_tree, last_tree)
    if walk == NULL or patterns == NULL or xts == NULL or P == NULL:
        free(walk)
        free(patterns)
        free(xts)
        free(P)
        raise MemoryError("no memory for the interventional kernel's scratch")
    try:
        for b in prange(n_blocks, nogil=True, schedule="dynamic",
                        num_threads=n_threads):
            tid = threadid()
            mine = patterns + tid * max_leaves * B
            wk = walk + tid * walk_size
            xt = xts + tid * nf * B
            r0 = b * B
            r1 = min(r0 + B, n)
            # the block's rows transposed: a feature's values side by side
            for r in range(r0, r1):
                for f in range(nf):
                    xt[f * B + r - r0] = <double> X[r, f]
            for t in range(first_tree, last_tree):
                lo = tree_leaves[t]
                hi = tree_leaves[t + 1]
                # [leaf][row]: a leaf's rows side by side
                _patterns(&T, P, offsets[first_tree], t, xt, B, r1 - r0, B, wk,
                          wk + (max_depth + 1) * B, wk + 2 * (max_depth + 1) * B,
                          mine, B)
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
                              mine + (li - lo) * B, r1 - r0,
                              interaction_order, &out[r0 * row_stride], row_stride,
                              d, K)
    finally:
        free(walk)
        free(patterns)
        free(xts)
        free(P)


def layout(const int64_t[::1] offsets, const int64_t[::1] left,
           const int64_t[::1] right, const int64_t[::1] feature,
           const int64_t[::1] player_of_feature, Py_ssize_t max_depth):
    """The kernel's view of the trees: each tree's nodes in pre-order, the slot of
    every split's player on its path (players numbered by first appearance from the
    root), and the leaves in that order with their path players.

    Returns ``(order, node_bit, leaf_of_node, leaf_node, leaf_k, tree_leaves,
    leaf_players_at, leaf_players, pos_depth, pos_left)``: the last two by position
    of ``order``, each node's depth (-1 past a tree's reachable nodes) and whether
    it is a first child.
    """
    cdef Py_ssize_t n_trees = offsets.shape[0] - 1, n_nodes = left.shape[0]
    cdef Py_ssize_t t, top, i, n, depth, j, p, n_leaves = 0, n_slots = 0
    order_ = np.full(n_nodes, -1, dtype=np.int64)  # -1: unreachable, after the rest
    node_bit_ = np.zeros(n_nodes, dtype=np.int32)
    leaf_of_node_ = np.full(n_nodes, -1, dtype=np.int64)
    tree_leaves_ = np.zeros(n_trees + 1, dtype=np.int64)
    pos_depth_ = np.full(n_nodes, -1, dtype=np.int32)
    pos_left_ = np.zeros(n_nodes, dtype=np.uint8)
    cdef int32_t[::1] pos_depth = pos_depth_
    cdef uint8_t[::1] pos_left = pos_left_
    cdef int64_t[::1] order = order_
    cdef int32_t[::1] node_bit = node_bit_
    cdef int64_t[::1] leaf_of_node = leaf_of_node_
    cdef int64_t[::1] tree_leaves = tree_leaves_
    stack_ = np.empty((max_depth + 2, 3), dtype=np.int64)
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
        stack[0, 2] = 0
        top = 1
        count[0] = 0
        while top:
            top -= 1
            n = stack[top, 0]
            depth = stack[top, 1]
            order[i] = n
            pos_depth[i] = <int32_t> depth
            pos_left[i] = <uint8_t> stack[top, 2]
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
            stack[top, 2] = 0
            stack[top + 1, 0] = left[n]
            stack[top + 1, 1] = depth + 1
            stack[top + 1, 2] = 1
            top += 2
        tree_leaves[t + 1] = n_leaves
    k_ = np.asarray(leaf_k, dtype=np.int32)
    at = np.zeros(n_leaves + 1, dtype=np.int64)
    np.cumsum(k_, out=at[1:])
    players = (
        np.concatenate(leaf_players) if n_leaves else np.zeros(0, dtype=np.int64)
    )
    return (order_, node_bit_, leaf_of_node_, np.asarray(leaf_node, dtype=np.int64),
            k_, tree_leaves_, at, players.astype(np.int64), pos_depth_, pos_left_)
