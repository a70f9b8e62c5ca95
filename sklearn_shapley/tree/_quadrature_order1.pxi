# First order (Shapley values) of the RL-row walk. Included by _quadrature.pyx and
# _quadrature_avx2.pyx.

# a leaf is folded in one pass over its points (_leaf_rows) in trees of at least this
# many points; in smaller trees the separate passes of _descend_rows / _extract_rows
# are as fast and the fused pass's setup is not
cdef enum:
    LEAF_FUSED_MIN_Q = 4


cdef inline void _add_edge_term(Scratch* S, const PosInfo* I, Py_ssize_t d,
                                const double* s1, const double* s0, double v,
                                double** outs, Py_ssize_t nr,
                                Py_ssize_t col) noexcept nogil:
    """Add ``v`` times the term of the edge into depth ``d`` to column ``col`` of the
    first ``nr`` rows: ``s1`` (its sum with ``A_edge = a1``) where the row follows the
    edge, ``s0`` (``A_edge = -1 / (1 - t)``) where not, 0 where the row left an earlier
    edge on the feature."""
    cdef Py_ssize_t r
    cdef const double* ov = S.oR + (d + 1) * RL
    cdef const double* opv = S.oR + I.prevd1 * RL
    cdef double sr[RL]
    for r in range(RL):  # all RL lanes: a loop of fixed length, vectorised
        sr[r] = opv[r] * (ov[r] * s1[r] + (1.0 - ov[r]) * s0[r])
    for r in range(nr):
        outs[r][col] += v * sr[r]


cdef inline void _extract_rows(Scratch* S, const PosInfo* I, Py_ssize_t d,
                               Py_ssize_t row, cdptr w, cdptr neg, Py_ssize_t Q,
                               const double* H, double* Hp, Py_ssize_t kt,
                               const double* vals, double** outs, Py_ssize_t nr,
                               Py_ssize_t col) noexcept nogil:
    """Add ``sum_q H_q w_q (A_edge - A_previous)_q`` of the edge into depth ``d`` to
    the output columns ``col .. col + kt`` of the first ``nr`` rows (see
    ``_add_edge_term``).

    A leaf (``vals`` its values, ``H = P``, ``Hp`` unused): the one sum is scaled by
    each output's leaf value. An internal node (``vals`` NULL): ``H`` holds one block
    of ``Q RL`` per output, and in the same pass each is folded into the parent's
    ``Hp`` (copied by a first child, added by a second)."""
    cdef Py_ssize_t kk
    cdef const double* wd1 = _edge_weights(S, I, row, w, neg, Q)
    cdef const double* wd0 = wd1 + S.wstride
    cdef double s1[RL]
    cdef double s0[RL]
    if vals != NULL:
        sk_dot2(s1, s0, H, wd1, wd0, Q)
        for kk in range(kt):
            _add_edge_term(S, I, d, s1, s0, vals[kk], outs, nr, col + kk)
        return
    for kk in range(kt):
        sk_dot2_fold(Hp + kk * Q * RL, s1, s0, H + kk * Q * RL, wd1, wd0, I.is_left,
                     Q)
        _add_edge_term(S, I, d, s1, s0, 1.0, outs, nr, col + kk)


cdef inline void _leaf_rows(const Ensemble* E, Scratch* S, const PosInfo* I,
                            Py_ssize_t d, const floating_t** xs, Py_ssize_t Q,
                            cdptr tq, cdptr om, Py_ssize_t row, cdptr w, cdptr neg,
                            double* Hp, double v, double** outs, Py_ssize_t nr,
                            Py_ssize_t col) noexcept nogil:
    """A leaf (value ``v``, one output) at depth ``d`` for RL rows:
    ``_descend_rows``, ``_extract_rows`` and the fold of ``v P`` into the parent's
    ``Hp`` (set by a first child, added by a second) in one pass over the points."""
    cdef double a[RL]
    cdef double b[RL]
    cdef double s1[RL]
    cdef double s0[RL]
    cdef const double* wd1
    cdef const double* ip = NULL
    _edge_rows(E, S, I, d, xs, Q, tq, a, b)
    wd1 = _edge_weights(S, I, row, w, neg, Q)
    if I.prevd1 != 0:
        ip = S.inv + _prev_row(S, I) * Q
    sk_leaf(Hp, s1, s0, S.PR + (d - 1) * Q * RL, a, b, S.oR + I.prevd1 * RL, om, tq,
            ip, wd1, wd1 + S.wstride, v, I.is_left, Q)
    _add_edge_term(S, I, d, s1, s0, v, outs, nr, col)


cdef void _tree_order1_rows(const Ensemble* E, Scratch* S, Py_ssize_t t,
                            const floating_t** xs, double** outs,
                            Py_ssize_t nr) noexcept nogil:
    """Add tree ``t``'s Shapley values for the RL rows ``xs`` to ``outs``
    (each ``(n_features, K)``; only the first ``nr`` are written): the depth-first
    walk of the module docstring with every buffer laid out ``[point][row]``."""
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
    cdef double v
    cdef double* P = S.PR
    cdef double* H = S.HR
    cdef const double* vrow

    if end - base <= 1:
        return
    S.pos[0] = base
    for i in range(QR):
        P[i] = 1.0
    for p in range(base + 1, end + 1):
        d = pinfo[p].depth if p < end else 1
        # complete the internal subtrees at depths >= d: extract through their edges
        while cur >= d:
            e = S.pos[cur]
            I = pinfo + e
            _extract_rows(S, I, cur, _row(S, e, base, cur), w, neg, Q, H + cur * L,
                          H + (cur - 1) * L, kt, NULL, outs, nr, I.feat * K + kb)
            cur -= 1
        if p == end:
            break
        I = pinfo + p
        vrow = E.value + p * K + kb
        if I.is_leaf and kt == 1 and Q >= LEAF_FUSED_MIN_Q:
            # a leaf of one output in one pass: P, its extraction and v P folded
            # into the parent, P never stored
            _leaf_rows(E, S, I, d, xs, Q, tq, om, _row(S, p, base, d), w, neg,
                       H + (d - 1) * L, vrow[0], outs, nr, I.feat * K + kb)
            cur = d - 1
            continue
        _descend_rows(E, S, I, d, xs, Q, tq, om)
        if not I.is_leaf:
            S.pos[d] = p
            cur = d
            continue
        # a leaf: extract through its edge and fold v P into the parent at once
        _extract_rows(S, I, d, _row(S, p, base, d), w, neg, Q, P + d * QR, NULL,
                      kt, vrow, outs, nr, I.feat * K + kb)
        for kk in range(kt):
            v = vrow[kk]
            if I.is_left:
                sk_scale(H + (d - 1) * L + kk * QR, P + d * QR, v, QR)
            else:
                sk_axpy(H + (d - 1) * L + kk * QR, P + d * QR, v, QR)
        cur = d - 1
