# Pairs (interaction values in the TreeSHAP convention) of the RL-row walk. Included
# by _quadrature.pyx and _quadrature_avx2.pyx.

# order 2: where one row's pairs (n_features^2 * n_outputs cells) exceed this many
# (64 KB), the cells an edge writes are prefetched before its dot products (fashion's
# 784 features: 4.9 MB per row, a cache miss per cell); smaller blocks stay in cache
# and the prefetches only cost
cdef enum:
    PAIR_PREFETCH_MIN_CELLS = 8192


cdef inline void _pairs_rows(const Ensemble* E, Scratch* S, const PosInfo* I,
                             Py_ssize_t d, Py_ssize_t row, Py_ssize_t base,
                             cdptr w, cdptr neg, Py_ssize_t Q, const double* H,
                             Py_ssize_t kt, double** outs, Py_ssize_t nr,
                             Py_ssize_t col) noexcept nogil:
    """The pairs through the completed edge into depth ``d`` (feature ``i``), for the
    first ``nr`` of the RL rows: with ``HG = H w (A_edge - A_previous)`` (0 for rows
    that left an earlier edge on ``i``), ``sum_q HG`` adds to ``phi_i`` on the
    diagonal and ``sum_q HG A_j / 2`` to ``(i, j)`` and ``(j, i)`` for every other
    feature ``j`` on the path (``A_j`` of its live edge: ``a1`` of that edge where the
    row follows it, ``-1 / (1 - t)`` where not). The diagonal ends as ``phi_i`` minus
    the rest of its row: each pair term is also taken off both diagonals."""
    cdef Py_ssize_t K = E.n_outputs
    cdef Py_ssize_t nf = E.n_features
    cdef Py_ssize_t r, kk, a, dj
    cdef int64_t i = I.feat, j
    cdef const double* wd1
    cdef const double* wd0
    cdef double* HG = S.HGR
    cdef double* vs = S.vR
    cdef const double* ov = S.oR + (d + 1) * RL
    cdef const double* opv = S.oR + I.prevd1 * RL
    cdef const double* oj
    cdef double* o
    cdef double c1[RL]
    cdef double c0[RL]
    cdef double sd[RL]
    cdef double sn[RL]
    cdef double s1[RL]
    cdef double v
    cdef bint any_row = False
    for r in range(RL):
        c1[r] = opv[r] * ov[r]
        c0[r] = opv[r] * (1.0 - ov[r])
        any_row = any_row or opv[r] != 0.0
    if not any_row:
        return
    # the cells of this edge's pairs, scattered over blocks larger than the caches:
    # asked for before the dot products, so that the misses overlap
    if nf * nf * K > PAIR_PREFETCH_MIN_CELLS:
        for a in range(S.n_active):
            j = S.active[a]
            for r in range(nr):
                sk_prefetch_w(outs[r] + (i * nf + j) * K + col)
                sk_prefetch_w(outs[r] + (j * nf + i) * K + col)
    wd1 = _edge_weights(S, I, row, w, neg, Q)
    wd0 = wd1 + S.wstride
    for kk in range(kt):
        sk_pair_weights(HG, sd, sn, H + kk * Q * RL, c1, c0, wd1, wd0, neg, Q)
        for r in range(nr):
            outs[r][(i * nf + i) * K + col + kk] += sd[r]
        # all pair terms first, then the scattered writes: the prefetched cells
        # have until then to arrive
        for a in range(S.n_active):
            j = S.active[a]
            if j == i:
                continue
            dj = S.last_depth[j]
            oj = S.oR + (dj + 1) * RL
            sk_dot1(s1, HG, S.a1 + _row(S, S.pos[dj], base, dj) * Q, Q)
            for r in range(RL):
                vs[a * RL + r] = 0.5 * (oj[r] * s1[r] + (1.0 - oj[r]) * sn[r])
        for a in range(S.n_active):
            j = S.active[a]
            if j == i:
                continue
            for r in range(nr):
                v = vs[a * RL + r]
                o = outs[r] + col + kk
                o[(i * nf + j) * K] += v
                o[(j * nf + i) * K] += v
                o[(i * nf + i) * K] -= v
                o[(j * nf + j) * K] -= v


cdef void _tree_order2_rows(const Ensemble* E, Scratch* S, Py_ssize_t t,
                            const floating_t** xs, double** outs,
                            Py_ssize_t nr) noexcept nogil:
    """Add tree ``t``'s phi (on the diagonal) and SII / 2 (off it) of the RL rows
    ``xs`` to ``outs`` (each ``(n_features, n_features, K)``; only the first ``nr``
    are written): the first-order walk, extracting pairs at every edge."""
    cdef Py_ssize_t K = E.n_outputs
    cdef int64_t g = E.tree_group[t]
    cdef Py_ssize_t kt = K if g < 0 else 1
    cdef Py_ssize_t kb = 0 if g < 0 else g
    cdef Py_ssize_t base = E.tree_offsets[t]
    cdef Py_ssize_t end = E.tree_offsets[t + 1]
    cdef Py_ssize_t Q = E.qoff[t + 1] - E.qoff[t]
    cdef cdptr tq = E.qt + E.qoff[t]
    cdef cdptr w = E.qw + E.qoff[t]
    cdef cdptr om = E.qom + E.qoff[t]
    cdef cdptr neg = E.qneg + E.qoff[t]
    cdef const PosInfo* pinfo = E.pinfo
    cdef const PosInfo* I
    cdef Py_ssize_t QR = Q * RL
    cdef Py_ssize_t L = kt * QR
    cdef Py_ssize_t p, d, cur = 0, i, kk, e
    cdef double* P = S.PR
    cdef double* H = S.HR
    cdef const double* vrow

    if end - base <= 1:
        return
    S.pos[0] = base
    S.n_active = 0
    for i in range(QR):
        P[i] = 1.0
    for p in range(base + 1, end + 1):
        d = pinfo[p].depth if p < end else 1
        while cur >= d:
            e = S.pos[cur]
            I = pinfo + e
            S.last_depth[I.feat] = I.prevd1 - 1
            if I.prevd1 == 0:
                S.n_active -= 1
            _pairs_rows(E, S, I, cur, _row(S, e, base, cur), base, w, neg, Q,
                        H + cur * L, kt, outs, nr, kb)
            if I.is_left:
                sk_copy(H + (cur - 1) * L, H + cur * L, L)
            else:
                sk_add(H + (cur - 1) * L, H + cur * L, L)
            cur -= 1
        if p == end:
            break
        I = pinfo + p
        _descend_rows(E, S, I, d, xs, Q, tq, om)
        if I.prevd1 == 0:
            S.active[S.n_active] = I.feat
            S.n_active += 1
        S.last_depth[I.feat] = d
        S.pos[d] = p
        cur = d
        if I.is_leaf:
            vrow = E.value + p * K + kb
            for kk in range(kt):
                sk_scale(H + d * L + kk * QR, P + d * QR, vrow[kk], QR)
