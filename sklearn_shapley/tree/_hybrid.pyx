"""Raw outputs of a tree ensemble on hybrid rows ``(x_S, b_¬S)``, without building them.

A hybrid row goes left at an internal node exactly when the row it takes that node's
feature from does: ``x`` where the feature's player is in ``S``, ``b`` elsewhere. So
the decisions of the explained rows and of the background rows at every internal
node, made once by the model's own rule, decide every hybrid row's path, with no
feature value compared again. In a tree of at most ``SMALL_NODES`` internal nodes
the hybrid's decisions form a bit pattern, ``(s & x) | (~s & b)`` over the tree's
nodes, and a table gives the leaf it reaches: a few operations per tree, no branch.
A larger tree is walked, each node's decision taken from ``x`` or ``b``. With one
background row only the nodes where ``x`` and ``b`` decide differently depend on the
coalition, and only those are read from it.

This is the marginal game's cost for a model whose output is not linear in its
trees' sums (a classifier's probabilities), where one hybrid row per background row
cannot be avoided.

``first_last_raw`` gives every row's singletons ``(x_i, b_¬i)`` and leave-one-outs
``(b_i, x_¬i)`` against one baseline ``b``: a singleton leaves ``b``'s path only at
the first node of it where its player's feature decides differently, so all ``2d``
coalitions cost a walk per player diverging there, per tree.

``pair_raw`` gives their pairwise interactions at both ends: in a small tree only
the players whose nodes decide differently for ``x`` and ``b`` interact, and each pair
of them costs four pattern look-ups; in a larger one, a pair's hybrid leaves the path
where the first of its players diverges and then follows that player's singleton's
walk, so it costs one more walk, from where the second diverges on that walk.

``hybrid_raw`` fills ``out[p, b] = base + Σ_t value_t(leaf reached by the hybrid of
pair p's row, pair p's coalition and background row b)``; OpenMP over pairs, each
pair's sums in tree order: bit-identical for any thread count.

The row-level steps around these walks are here too, each a flat loop over rows on
OpenMP threads: ``threshold_decisions`` (every node's decision for a block of rows,
compared in place), ``decision_patterns`` (those decisions as per-tree bit patterns),
``gather_sum`` (sums of table entries picked by an index, the marginal game's sums
over leaves) and ``softmax`` (a multi-class ensemble's probabilities from its sums).
"""

from cython.parallel cimport parallel, prange, threadid
from libc.math cimport exp
from libc.stdint cimport int32_t, int64_t, uint8_t

import numpy as np

cdef extern from *:
    """
    static inline unsigned int _lowest_bit(unsigned int v) { return __builtin_ctz(v); }
    """
    unsigned int _lowest_bit(unsigned int v) noexcept nogil

cdef enum:
    # most internal nodes of a tree whose leaves are looked up by decision pattern
    SMALL_NODES = 8


def leaf_offsets(const int64_t[::1] tree_offsets, const int64_t[::1] left,
                 const int64_t[::1] right):
    """Per small tree, the leaf each decision pattern at its nodes reaches.

    Returns ``(n_trees, 2**SMALL_NODES)`` uint8: the leaf's node index less the
    tree's root, for a pattern whose bit ``j`` says the hybrid goes left at the
    tree's ``j``-th internal node (in node order); zeros for a larger tree.
    """
    cdef Py_ssize_t n_trees = tree_offsets.shape[0] - 1
    out = np.zeros((n_trees, 1 << SMALL_NODES), dtype=np.uint8)
    cdef uint8_t[:, ::1] table = out
    cdef int64_t[::1] bit = np.zeros(left.shape[0], dtype=np.int64)
    cdef Py_ssize_t t, n, j, pattern
    cdef int64_t node, root
    for t in range(n_trees):
        root = tree_offsets[t]
        j = 0
        for n in range(root, tree_offsets[t + 1]):
            if left[n] >= 0:
                bit[n] = j
                j += 1
        if j > SMALL_NODES:
            continue
        for pattern in range(1 << j):
            node = root
            while left[node] >= 0:
                node = left[node] if (pattern >> bit[node]) & 1 else right[node]
            table[t, pattern] = node - root
    return out


def small_leaf_values(const int64_t[::1] tree_offsets, const int32_t[:, ::1] trees,
                      const double[:, ::1] value):
    """Per tree of at most ``SMALL_NODES`` internal nodes that adds to one output,
    its nodes' values on that output: ``(n_trees, 2 * SMALL_NODES + 1)`` float64,
    indexed like :func:`leaf_offsets` (zeros for other trees). A tree's leaves
    then lie in one or two cache lines instead of one row each of ``value``."""
    cdef Py_ssize_t n_trees = trees.shape[0], t, o
    out = np.zeros((n_trees, 2 * SMALL_NODES + 1), dtype=np.float64)
    cdef double[:, ::1] table = out
    for t in range(n_trees):
        if trees[t, 3] <= SMALL_NODES and trees[t, 1] >= 0:
            for o in range(tree_offsets[t + 1] - tree_offsets[t]):
                table[t, o] = value[tree_offsets[t] + o, trees[t, 1]]
    return out


def hybrid_raw(
    const uint8_t[:, ::1] masks,
    const int64_t[::1] pair_mask,
    const int32_t[::1] player,
    const uint8_t[:, ::1] x_left,
    const uint8_t[:, ::1] b_left,
    const uint8_t[:, ::1] x_bits_of,
    const uint8_t[:, ::1] b_bits,
    const int64_t[::1] pair_row,
    const int32_t[:, ::1] nodes,
    const int32_t[:, ::1] trees,
    const uint8_t[:, ::1] leaf_offset,
    const double[:, ::1] small_value,
    const double[:, ::1] value,
    const double[::1] base,
    double[:, :, ::1] out,
    int n_threads,
):
    """Raw outputs of every (pair, background row) hybrid.

    Parameters
    ----------
    masks : (n_masks, n_players) uint8
        Coalitions.
    pair_mask : (n_pairs,) int64
        The coalition of each pair.
    player : (n_internal,) int32
        The player of each internal node's feature.
    x_left : (n_rows, n_internal) uint8
        Whether each explained row goes left at each internal node.
    b_left : (n_background, n_internal) uint8
        The same for the background rows.
    x_bits_of, b_bits : (n_rows, n_trees), (n_background, n_trees) uint8
        Their :func:`decision_patterns`.
    pair_row : (n_pairs,) int64
        The explained row of each pair.
    nodes : (n_nodes, 3) int32
        Per node: left child, right child (-1 at a leaf), internal-node column.
    trees : (n_trees, 4) int32
        Per tree: root, the one output it adds to (-1: all of them), its first
        internal-node column, its number of internal nodes.
    leaf_offset : (n_trees, 2**SMALL_NODES) uint8
        :func:`leaf_offsets`.
    small_value : (n_trees, 2 * SMALL_NODES + 1) float64
        :func:`small_leaf_values`.
    value : (n_nodes, n_outputs) float64
        Leaf values.
    base : (n_outputs,) float64
    out : (n_pairs, n_background, n_outputs) float64
    n_threads : int
    """
    cdef Py_ssize_t n_pairs = pair_mask.shape[0]
    cdef Py_ssize_t n_bg = b_left.shape[0], n_trees = trees.shape[0]
    cdef Py_ssize_t n_out = value.shape[1]
    cdef Py_ssize_t p, b, t, k, r
    cdef int32_t node, group, first
    cdef unsigned int differ, j
    cdef uint8_t pattern
    cdef const uint8_t* s
    cdef const uint8_t* xl
    cdef const uint8_t* bl
    cdef double* o
    cdef uint8_t* take_x
    cdef uint8_t* x_bits
    if n_pairs == 0 or n_bg == 0:
        return
    # per thread: the pair's patterns (which nodes x decides, x's decisions there)
    cdef uint8_t[:, ::1] scratch = np.zeros((max(n_threads, 1), 2 * n_trees + 1),
                                            dtype=np.uint8)
    with nogil, parallel(num_threads=n_threads):
        take_x = &scratch[threadid(), 0]
        x_bits = take_x + n_trees
        for p in prange(n_pairs, schedule="static"):
            s = &masks[pair_mask[p], 0]
            r = pair_row[p]
            xl = &x_left[r, 0]
            if n_bg == 1:
                # one background row: a small tree's pattern is b's, flipped at
                # the nodes where x decides differently (often few) and the
                # coalition takes x's decision
                bl = &b_left[0, 0]
                o = &out[p, 0, 0]
                for k in range(n_out):
                    o[k] = base[k]
                for t in range(n_trees):
                    group = trees[t, 1]
                    if trees[t, 3] <= SMALL_NODES:
                        first = trees[t, 2]
                        differ = x_bits_of[r, t] ^ b_bits[0, t]
                        pattern = b_bits[0, t]
                        while differ:
                            j = _lowest_bit(differ)
                            pattern = pattern ^ (s[player[first + j]] << j)
                            differ = differ & (differ - 1)
                        if group >= 0:
                            o[group] += small_value[t, leaf_offset[t, pattern]]
                            continue
                        node = trees[t, 0] + leaf_offset[t, pattern]
                    else:
                        node = _hybrid_leaf(nodes, trees[t, 0], xl, bl, s, &player[0])
                    _add(o, value, group, node, -1, n_out)
                continue
            # the pair's patterns: the nodes decided by x, and x's decisions there
            for t in range(n_trees):
                take_x[t] = 0
                if trees[t, 3] <= SMALL_NODES:
                    first = trees[t, 2]
                    differ = (1u << trees[t, 3]) - 1
                    while differ:
                        j = _lowest_bit(differ)
                        take_x[t] = take_x[t] | (s[player[first + j]] << j)
                        differ = differ & (differ - 1)
                x_bits[t] = take_x[t] & x_bits_of[r, t]
            for b in range(n_bg):
                bl = &b_left[b, 0]
                o = &out[p, b, 0]
                for k in range(n_out):
                    o[k] = base[k]
                for t in range(n_trees):
                    group = trees[t, 1]
                    if trees[t, 3] <= SMALL_NODES:
                        pattern = x_bits[t] | (~take_x[t] & b_bits[b, t])
                        if group >= 0:
                            o[group] += small_value[t, leaf_offset[t, pattern]]
                            continue
                        node = trees[t, 0] + leaf_offset[t, pattern]
                    else:
                        node = _hybrid_leaf(nodes, trees[t, 0], xl, bl, s, &player[0])
                    _add(o, value, group, node, -1, n_out)


def threshold_decisions(const double[:, ::1] rows, const int64_t[::1] feature,
                        const double[::1] threshold, uint8_t[:, ::1] out,
                        int n_threads):
    """``out[i, j] = rows[i, feature[j]] <= threshold[j]``: every row's decision at
    every node, read from the row in place (no ``(rows, nodes)`` gather); OpenMP
    over rows. The model's exceptions (missing values, categorical splits) are
    the caller's."""
    cdef Py_ssize_t n = rows.shape[0], m = feature.shape[0], i, j
    for i in prange(n, nogil=True, num_threads=n_threads, schedule="static"):
        for j in range(m):
            out[i, j] = rows[i, feature[j]] <= threshold[j]


def softmax(const double[:, ::1] raw, int n_threads):
    """Each row's softmax, ``(n, K)``: the probabilities of a multi-class
    ensemble from its trees' sums, shifted by the row's maximum; OpenMP over
    rows, each row's arithmetic in one order (the same for any thread count)."""
    cdef Py_ssize_t n = raw.shape[0], K = raw.shape[1], i, k
    result = np.empty((n, K), dtype=np.float64)
    cdef double[:, ::1] out = result
    cdef double top, total
    for i in prange(n, nogil=True, num_threads=n_threads, schedule="static"):
        top = raw[i, 0]
        for k in range(1, K):
            if raw[i, k] > top:
                top = raw[i, k]
        total = 0.0
        for k in range(K):
            out[i, k] = exp(raw[i, k] - top)
            total = total + out[i, k]
        for k in range(K):
            out[i, k] = out[i, k] / total
    return result


def gather_sum(const int64_t[:, ::1] index, const double[:, ::1] table,
               const int64_t[:, ::1] columns, double[:, ::1] out, int n_threads):
    """``out[i, columns[u, c]] += table[index[i, u], c]`` for every unit ``u`` and
    ``c < columns.shape[1]``: each row's sum of its units' table rows, each
    unit's entries scattered to its own columns, in unit order; OpenMP over
    rows."""
    cdef Py_ssize_t n = index.shape[0], n_units = index.shape[1]
    cdef Py_ssize_t n_cols = columns.shape[1], i, u, c
    cdef const double* source
    cdef const int64_t* target
    cdef double* row
    for i in prange(n, nogil=True, num_threads=n_threads, schedule="static"):
        row = &out[i, 0]
        for u in range(n_units):
            source = &table[index[i, u], 0]
            target = &columns[u, 0]
            for c in range(n_cols):
                row[target[c]] += source[c]


def decision_patterns(const uint8_t[:, ::1] left, const int32_t[:, ::1] trees,
                      int n_threads=1):
    """Each row's decision pattern at every tree of at most ``SMALL_NODES``
    internal nodes: ``(n_rows, n_trees)`` uint8, bit ``j`` the ``j``-th node's
    (``left``: the rows' decisions, as ``x_left`` in :func:`hybrid_raw`); OpenMP
    over rows."""
    cdef Py_ssize_t n = left.shape[0], n_trees = trees.shape[0], i, t, j
    cdef uint8_t[:, ::1] out = np.zeros((n, n_trees), dtype=np.uint8)
    cdef uint8_t pattern
    cdef int32_t first, count
    for i in prange(n, nogil=True, num_threads=n_threads, schedule="static"):
        for t in range(n_trees):
            first = trees[t, 2]
            count = trees[t, 3]
            if count <= SMALL_NODES:
                pattern = 0
                for j in range(count):
                    pattern = pattern | (left[i, first + j] << j)
                out[i, t] = pattern
    return out


cdef inline int32_t _pair_leaf(const int32_t[:, ::1] nodes, int32_t node,
                               const uint8_t* xl, const uint8_t* bl,
                               const int32_t* player, int32_t p,
                               int32_t q) noexcept nogil:
    """The leaf below ``node`` of the hybrid taking players ``p``'s and ``q``'s
    decisions from ``xl`` and every other player's from ``bl``."""
    cdef int32_t c
    while nodes[node, 0] >= 0:
        c = nodes[node, 2]
        if (xl[c] if player[c] == p or player[c] == q else bl[c]):
            node = nodes[node, 0]
        else:
            node = nodes[node, 1]
    return node


cdef inline int32_t _leaf(const int32_t[:, ::1] nodes, int32_t node,
                          const uint8_t* xl, const uint8_t* bl,
                          const int32_t* player, int32_t p) noexcept nogil:
    """The leaf below ``node`` of the hybrid taking player ``p``'s decisions from
    ``xl`` and every other player's from ``bl``."""
    return _pair_leaf(nodes, node, xl, bl, player, p, p)


cdef inline int32_t _hybrid_leaf(const int32_t[:, ::1] nodes, int32_t node,
                                 const uint8_t* xl, const uint8_t* bl,
                                 const uint8_t* s, const int32_t* player) noexcept nogil:
    """The leaf below ``node`` of the hybrid taking the coalition ``s``'s players'
    decisions from ``xl`` and the others' from ``bl``."""
    cdef int32_t c
    while nodes[node, 0] >= 0:
        c = nodes[node, 2]
        if (xl[c] if s[player[c]] else bl[c]):
            node = nodes[node, 0]
        else:
            node = nodes[node, 1]
    return node


cdef inline void _add(double* o, const double[:, ::1] value, int32_t group,
                      int32_t leaf, int32_t minus, Py_ssize_t n_out) noexcept nogil:
    """``o += value[leaf] − value[minus]`` on the tree's output(s); no subtraction
    when ``minus`` is negative."""
    cdef Py_ssize_t k
    if group >= 0:
        o[group] += value[leaf, group] - (value[minus, group] if minus >= 0 else 0.0)
    else:
        for k in range(n_out):
            o[k] += value[leaf, k] - (value[minus, k] if minus >= 0 else 0.0)


cdef inline unsigned int _player_nodes(unsigned int differ, const int32_t* player,
                                       int32_t first_node, int32_t* p) noexcept nogil:
    """The bits of ``differ`` (a small tree's nodes, from ``first_node``) whose
    nodes test a feature of the player of its lowest bit's node, that player in
    ``p``."""
    cdef unsigned int same = 0, bit = differ, j
    p[0] = player[first_node + _lowest_bit(differ)]
    while bit:
        j = _lowest_bit(bit)
        if player[first_node + j] == p[0]:
            same = same | (1u << j)
        bit = bit & (bit - 1)
    return same


cdef inline void _diverging(const int32_t[:, ::1] nodes, int32_t root,
                            const uint8_t* own, const uint8_t* other,
                            const int32_t* player, int64_t* seen, int64_t stamp,
                            double* out, Py_ssize_t n_out, const double[:, ::1] value,
                            int32_t group, int32_t own_leaf) noexcept nogil:
    """Along ``own``'s path, at the first node of each player where ``other``
    decides differently, the walk of the hybrid taking that player's decisions
    from ``other``: ``out[p] += value[its leaf] − value[own_leaf]``."""
    cdef int32_t node = root, c, p
    while nodes[node, 0] >= 0:
        c = nodes[node, 2]
        p = player[c]
        if own[c] != other[c] and seen[p] != stamp:
            seen[p] = stamp
            _add(out + p * n_out, value, group,
                 _leaf(nodes, nodes[node, 0] if other[c] else nodes[node, 1],
                       other, own, player, p),
                 own_leaf, n_out)
        node = nodes[node, 0] if own[c] else nodes[node, 1]


def first_last_raw(
    const uint8_t[:, ::1] x_left,
    const uint8_t[::1] b_left,
    const uint8_t[:, ::1] x_bits_of,
    const uint8_t[::1] b_bits,
    const int32_t[::1] player,
    const int32_t[:, ::1] nodes,
    const int32_t[:, ::1] trees,
    const uint8_t[:, ::1] leaf_offset,
    const double[:, ::1] small_value,
    const double[:, ::1] value,
    double[:, :, ::1] first,
    double[:, :, ::1] last,
    double[:, ::1] full,
    int n_threads,
):
    """Raw sums of every row's singletons and leave-one-outs against one baseline.

    For row ``x`` and baseline ``b``, player ``i``'s singleton ``(x_i, b_¬i)``
    leaves ``b``'s path in a tree only at the first node of ``b``'s path where
    ``i``'s feature decides differently for ``x`` and ``b``; from there one walk
    reaches its leaf. So a tree costs one walk per player that diverges on
    ``b``'s path, the leave-one-outs ``(b_i, x_¬i)`` the same along ``x``'s path:
    a few walks per tree for all ``2d`` coalitions. In a tree of at most
    ``SMALL_NODES`` internal nodes no walk is needed: player ``i``'s singleton's
    decision pattern is ``b``'s with the bits flipped where ``i``'s feature decides
    differently for ``x`` and ``b``, its leave-one-out's ``x``'s with the same
    bits flipped, and a table gives their leaves.

    Parameters
    ----------
    x_left : (n_rows, n_internal) uint8
        Whether each row goes left at each internal node.
    b_left : (n_internal,) uint8
        The same for the baseline.
    x_bits_of, b_bits : (n_rows, n_trees), (n_trees,) uint8
        Their :func:`decision_patterns`.
    player : (n_internal,) int32
        The player of each internal node's feature.
    nodes, trees, leaf_offset, small_value, value
        As in :func:`hybrid_raw`.
    first : (n_rows, n_players, n_outputs) float64, zeroed
        Receives ``f(x_i, b_¬i) − f(b)``.
    last : (n_rows, n_players, n_outputs) float64, zeroed
        Receives ``f(b_i, x_¬i) − f(x)``.
    full : (n_rows, n_outputs) float64, zeroed
        Receives ``f(x)`` less the base offset.
    n_threads : int
    """
    cdef Py_ssize_t n = x_left.shape[0], n_trees = trees.shape[0]
    cdef Py_ssize_t n_out = value.shape[1], d = first.shape[1]
    cdef Py_ssize_t r, t
    cdef int32_t leaf_x, group, first_node, root, p
    cdef unsigned int differ, same
    cdef uint8_t xb
    cdef double value_x, value_b
    cdef int64_t stamp
    cdef const uint8_t* xl
    cdef const uint8_t* bl = &b_left[0] if b_left.shape[0] else NULL
    cdef int64_t* seen
    if n == 0 or n_trees == 0:
        return
    # per thread: the stamp of the (row, tree, path) that last saw each player
    cdef int64_t[:, ::1] scratch = np.full((max(n_threads, 1), max(d, 1)), -1,
                                           dtype=np.int64)
    # the baseline's leaf in every tree, the same for every row
    cdef int32_t[::1] leaf_b = np.empty(n_trees, dtype=np.int32)
    for t in range(n_trees):
        leaf_b[t] = _leaf(nodes, trees[t, 0], bl, bl, &player[0], -1)
    with nogil, parallel(num_threads=n_threads):
        seen = &scratch[threadid(), 0]
        for r in prange(n, schedule="static"):
            xl = &x_left[r, 0]
            for t in range(n_trees):
                group = trees[t, 1]
                if trees[t, 3] <= SMALL_NODES:
                    root, first_node = trees[t, 0], trees[t, 2]
                    xb = x_bits_of[r, t]
                    leaf_x = root + leaf_offset[t, xb]
                    if group >= 0:  # the tree's leaves in one compact row
                        value_x = small_value[t, leaf_offset[t, xb]]
                        value_b = small_value[t, leaf_offset[t, b_bits[t]]]
                        full[r, group] += value_x
                    else:
                        _add(&full[r, 0], value, group, leaf_x, -1, n_out)
                    differ = xb ^ b_bits[t]
                    while differ:  # one player's differing nodes at a time
                        same = _player_nodes(differ, &player[0], first_node, &p)
                        differ = differ & ~same
                        if group >= 0:
                            first[r, p, group] += (
                                small_value[t, leaf_offset[t, b_bits[t] ^ same]]
                                - value_b
                            )
                            last[r, p, group] += (
                                small_value[t, leaf_offset[t, xb ^ same]] - value_x
                            )
                        else:
                            _add(&first[r, p, 0], value, group,
                                 root + leaf_offset[t, b_bits[t] ^ same], leaf_b[t],
                                 n_out)
                            _add(&last[r, p, 0], value, group,
                                 root + leaf_offset[t, xb ^ same], leaf_x, n_out)
                    continue
                leaf_x = _leaf(nodes, trees[t, 0], xl, xl, &player[0], -1)
                _add(&full[r, 0], value, group, leaf_x, -1, n_out)
                stamp = 2 * (r * n_trees + t)
                # singletons, along b's path; leave-one-outs, along x's
                _diverging(nodes, trees[t, 0], bl, xl, &player[0], seen, stamp,
                           &first[r, 0, 0], n_out, value, group, leaf_b[t])
                _diverging(nodes, trees[t, 0], xl, bl, &player[0], seen, stamp + 1,
                           &last[r, 0, 0], n_out, value, group, leaf_x)


cdef inline void _diverging_pairs(const int32_t[:, ::1] nodes, int32_t root,
                                  const uint8_t* own, const uint8_t* other,
                                  const int32_t* player, int64_t* seen,
                                  int64_t* marked, int32_t* earlier, int64_t stamp,
                                  Py_ssize_t d, double* out, bint summed,
                                  Py_ssize_t n_out, const double[:, ::1] value,
                                  int32_t group, int32_t own_leaf) noexcept nogil:
    """A walked tree's pairwise interactions ``f(o_pq) − f(o_p) − f(o_q) + f(own)``
    (``o_p``: ``own`` with player ``p``'s decisions from ``other``) added to ``out
    (d, d or 1, n_out)``.

    A pair's hybrid leaves ``own``'s path where the first of its two players
    diverges on it, say ``p``, and then follows ``p``'s singleton's path until
    ``q`` decides differently there. So along ``own``'s path, at each player's
    first diverging node: one walk for its singleton, one more for each player
    not diverged before it that decides differently on that walk (``f(o_pq) −
    f(o_p)``), and ``f(o_p) − f(own)`` taken from its pair with every player
    diverged before it.
    """
    cdef int32_t node = root, walk, c, c2, p, q, leaf, leaf_p, child
    cdef Py_ssize_t k = 0, a, qi = 0, pi = 0, width = 1 if summed else d
    cdef int64_t mark
    while nodes[node, 0] >= 0:
        c = nodes[node, 2]
        p = player[c]
        if own[c] != other[c] and seen[p] != stamp:
            seen[p] = stamp
            child = nodes[node, 0] if other[c] else nodes[node, 1]
            leaf_p = _pair_leaf(nodes, child, other, own, player, p, p)
            for a in range(k):  # − (f(o_p) − f(own)) on its pairs with the earlier
                q = earlier[a]
                if not summed:
                    qi, pi = q, p
                _add(out + (p * width + qi) * n_out, value, group, own_leaf, leaf_p,
                     n_out)
                _add(out + (q * width + pi) * n_out, value, group, own_leaf, leaf_p,
                     n_out)
            # along p's singleton's path: f(o_pq) − f(o_p) for the later players
            mark = stamp * (d + 1) + k + 1
            walk = child
            while nodes[walk, 0] >= 0:
                c2 = nodes[walk, 2]
                q = player[c2]
                if (q != p and own[c2] != other[c2] and seen[q] != stamp
                        and marked[q] != mark):
                    marked[q] = mark
                    if not summed:
                        qi, pi = q, p
                    leaf = _pair_leaf(nodes,
                                      nodes[walk, 0] if other[c2] else nodes[walk, 1],
                                      other, own, player, p, q)
                    _add(out + (p * width + qi) * n_out, value, group, leaf, leaf_p,
                         n_out)
                    _add(out + (q * width + pi) * n_out, value, group, leaf, leaf_p,
                         n_out)
                if other[c2] if q == p else own[c2]:
                    walk = nodes[walk, 0]
                else:
                    walk = nodes[walk, 1]
            earlier[k] = p
            k = k + 1
        node = nodes[node, 0] if own[c] else nodes[node, 1]


def pair_raw(
    const uint8_t[:, ::1] x_left,
    const uint8_t[::1] b_left,
    const uint8_t[:, ::1] x_bits_of,
    const uint8_t[::1] b_bits,
    const int32_t[::1] player,
    const int32_t[:, ::1] nodes,
    const int32_t[:, ::1] trees,
    const uint8_t[:, ::1] leaf_offset,
    const double[:, ::1] small_value,
    const double[:, ::1] value,
    double[:, :, :, ::1] at_empty,
    double[:, :, :, ::1] at_full,
    int n_threads,
):
    """Raw pairwise interactions of every row's players against one baseline.

    For players ``p ≠ q``, ``at_empty[r, p, q]`` receives ``f(x_pq, b) − f(x_p, b) −
    f(x_q, b) + f(b)`` and ``at_full[r, p, q]`` ``f(b_pq, x) − f(b_p, x) − f(b_q, x) +
    f(x)`` (``x_p``: player ``p``'s features from row ``r``, the rest from ``b``;
    ``b_p`` the reverse), summed over trees. A tree adds to a pair only when both
    players' features decide differently for ``x`` and ``b`` at some of its nodes.
    In a tree of at most ``SMALL_NODES`` internal nodes: four leaf look-ups by
    decision pattern (:func:`first_last_raw`) per such pair; in a larger one, a
    walk per such pair that meets on a singleton's path (:func:`_diverging_pairs`).

    Parameters
    ----------
    x_left, b_left, x_bits_of, b_bits, player, nodes, trees, leaf_offset,
    small_value, value
        As in :func:`first_last_raw`.
    at_empty, at_full : (n_rows, n_players, n_players or 1, n_outputs) float64, zeroed
        With a third axis of length 1, each player's interactions summed over
        the others.
    n_threads : int
    """
    cdef Py_ssize_t n = x_bits_of.shape[0], n_trees = trees.shape[0]
    cdef Py_ssize_t n_out = value.shape[1], d = at_empty.shape[1]
    cdef Py_ssize_t r, t, a, c
    cdef int32_t group, first_node, root, p, q, pi, qi, leaf_x
    cdef bint summed = at_empty.shape[2] == 1
    cdef unsigned int differ, same, xb, bb, k
    cdef int32_t* players
    cdef unsigned int* sames
    cdef int64_t* seen
    cdef int64_t* marked
    cdef const uint8_t* offset
    cdef const uint8_t* xl
    cdef const uint8_t* bl = &b_left[0] if b_left.shape[0] else NULL
    cdef int64_t stamp
    cdef double v
    if n == 0 or n_trees == 0:
        return
    # per thread: a small tree's differing players and their nodes' bits; a
    # walked tree's stamps of the players diverged on the path and met on a walk
    cdef Py_ssize_t width = max(SMALL_NODES, d)
    cdef int32_t[:, ::1] player_scratch = np.empty(
        (max(n_threads, 1), width), dtype=np.int32)
    cdef unsigned int[:, ::1] same_scratch = np.empty(
        (max(n_threads, 1), SMALL_NODES), dtype=np.uintc)
    cdef int64_t[:, ::1] stamps = np.full((max(n_threads, 1), 2 * max(d, 1)), -1,
                                          dtype=np.int64)
    # the baseline's leaf in every tree, the same for every row
    cdef int32_t[::1] leaf_b = np.empty(n_trees, dtype=np.int32)
    for t in range(n_trees):
        leaf_b[t] = _leaf(nodes, trees[t, 0], bl, bl, &player[0], -1)
    with nogil, parallel(num_threads=n_threads):
        players = &player_scratch[threadid(), 0]
        sames = &same_scratch[threadid(), 0]
        seen = &stamps[threadid(), 0]
        marked = &stamps[threadid(), d]
        for r in prange(n, schedule="static"):
            xl = &x_left[r, 0]
            for t in range(n_trees):
                group, root, first_node = trees[t, 1], trees[t, 0], trees[t, 2]
                if trees[t, 3] > SMALL_NODES:
                    stamp = 2 * (r * n_trees + t)
                    leaf_x = _leaf(nodes, root, xl, xl, &player[0], -1)
                    _diverging_pairs(nodes, root, bl, xl, &player[0], seen, marked,
                                     players, stamp, d, &at_empty[r, 0, 0, 0],
                                     summed, n_out, value, group, leaf_b[t])
                    _diverging_pairs(nodes, root, xl, bl, &player[0], seen, marked,
                                     players, stamp + 1, d, &at_full[r, 0, 0, 0],
                                     summed, n_out, value, group, leaf_x)
                    continue
                offset = &leaf_offset[t, 0]
                xb, bb = x_bits_of[r, t], b_bits[t]
                differ = xb ^ bb
                k = 0
                while differ:  # one player's differing nodes at a time
                    same = _player_nodes(differ, &player[0], first_node, &p)
                    differ = differ & ~same
                    players[k], sames[k] = p, same
                    k = k + 1
                for a in range(k):
                    for c in range(a + 1, k):
                        p, q = players[a], players[c]
                        pi, qi = p, q
                        if summed:
                            pi, qi = 0, 0
                        if group >= 0:
                            v = _pattern_pair(&small_value[t, 0], offset, bb,
                                              sames[a], sames[c])
                            at_empty[r, p, qi, group] += v
                            at_empty[r, q, pi, group] += v
                            v = _pattern_pair(&small_value[t, 0], offset, xb,
                                              sames[a], sames[c])
                            at_full[r, p, qi, group] += v
                            at_full[r, q, pi, group] += v
                        else:
                            _pair_add(&at_empty[r, p, qi, 0], &at_empty[r, q, pi, 0],
                                      value, root, offset, bb, sames[a], sames[c],
                                      n_out)
                            _pair_add(&at_full[r, p, qi, 0], &at_full[r, q, pi, 0],
                                      value, root, offset, xb, sames[a], sames[c],
                                      n_out)


cdef inline double _pattern_pair(const double* values, const uint8_t* offset,
                                 unsigned int base, unsigned int a,
                                 unsigned int c) noexcept nogil:
    """``value[ac] − value[a] − value[c] + value[base]`` in a small tree whose
    leaves' values are one compact row, the leaves those flips of ``base``'s
    pattern reach."""
    return (values[offset[base ^ a ^ c]] - values[offset[base ^ a]]
            - values[offset[base ^ c]] + values[offset[base]])


cdef inline void _pair_add(double* o, double* o2, const double[:, ::1] value,
                           int32_t root, const uint8_t* offset, unsigned int base,
                           unsigned int a, unsigned int c,
                           Py_ssize_t n_out) noexcept nogil:
    """``o, o2 += value[ab] − value[a] − value[c] + value[base]`` on every output,
    the leaves those flips of ``base``'s pattern reach."""
    cdef Py_ssize_t k
    cdef double v
    for k in range(n_out):
        v = (value[root + offset[base ^ a ^ c], k] - value[root + offset[base ^ a], k]
             - value[root + offset[base ^ c], k] + value[root + offset[base], k])
        o[k] += v
        o2[k] += v
