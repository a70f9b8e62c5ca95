# The steps of the Quadrature-TreeSHAP walk every order shares: a node's decision for
# a row, the per-tree tables and an edge's indicators and factor (orders 1 and 2: RL
# rows at once). Included by _quadrature.pyx and _quadrature_avx2.pyx.

cdef inline bint _goes_left(const Ensemble* E, const Scratch* S, const PosInfo* I,
                            Py_ssize_t d, double xv) noexcept nogil:
    """The model's own decision for the value ``xv`` at the parent of the first child
    ``I`` (at depth ``d``)."""
    cdef int64_t c, nw, n
    if xv != xv:
        return I.mleft != 0
    if E.decision_f32:
        xv = <double> (<float> xv)
    if I.skind == 0:
        return xv <= I.thr
    n = E.pinfo[S.pos[d - 1]].node
    nw = E.cat_len[n]
    if not (xv > -1.0 and xv < 32.0 * nw):
        return False
    c = <int64_t> xv
    return ((E.cat_bitsets[E.cat_start[n] + (c >> 5)] >> (c & 31)) & 1) != 0


cdef inline void _fill_weights(double* wd, Py_ssize_t stride, cdptr w, cdptr neg,
                               cdptr a1row, cdptr prev, Py_ssize_t Q) noexcept nogil:
    """``wd = w (A_edge - A_previous)`` with ``A_edge = a1row`` (o = 1) and, ``stride``
    doubles later, with ``A_edge = -1 / (1 - t)`` (o = 0)."""
    cdef Py_ssize_t q
    for q in range(Q):
        wd[q] = w[q] * (a1row[q] - prev[q])
        wd[stride + q] = w[q] * (neg[q] - prev[q])


cdef void _tree_tables(const Ensemble* E, Scratch* S, Py_ssize_t t) noexcept nogil:
    """Tabulate 1 / f and A for o = 1 at every position of tree ``t`` (rows 1..), and
    for the RL-row walk the edge weights ``w (A - A_previous)`` for o = 1 and o = 0
    (``_edge_weights``)."""
    cdef Py_ssize_t base = E.tree_offsets[t]
    cdef Py_ssize_t m = E.tree_offsets[t + 1] - base
    cdef Py_ssize_t Q = E.qoff[t + 1] - E.qoff[t]
    cdef cdptr tq = E.qt + E.qoff[t]
    cdef cdptr w = E.qw + E.qoff[t]
    cdef cdptr neg = E.qneg + E.qoff[t]
    cdef Py_ssize_t p, q, row
    # row 0 ("no earlier edge on the feature"): an earlier tree with a smaller rule
    # wrote its rows over part of it
    for q in range(Q):
        S.inv[q] = 1.0
        S.a1[q] = 0.0
    if not S.tab:
        S.wstride = Q  # _edge_weights computes into GR
        return
    S.wstride = (m + 1) * Q
    for p in range(m):
        row = p + 1
        _fill_row(S.inv + row * Q, S.a1 + row * Q, E.pinfo[base + p].z, tq, Q)
        if not S.rows:
            continue  # order k reads no edge weights
        # the previous edge on the feature lies above, so its row is filled already
        _fill_weights(S.wd + row * Q, S.wstride, w, neg, S.a1 + row * Q,
                      S.a1 + E.pinfo[base + p].prow * Q, Q)


cdef inline void _fill_row(dptr inv, dptr a1, double z, cdptr tq,
                           Py_ssize_t Q) noexcept nogil:
    """inv = 1 / (z + t (1 - z)), a1 = (1 - z) inv: the factor of a followed edge."""
    cdef Py_ssize_t q
    cdef double dz = 1.0 - z
    cdef double iv
    for q in range(Q):
        iv = 1.0 / (z + tq[q] * dz)
        inv[q] = iv
        a1[q] = dz * iv


cdef inline Py_ssize_t _row(const Scratch* S, Py_ssize_t p, Py_ssize_t base,
                            Py_ssize_t d) noexcept nogil:
    """Table row of the edge into position ``p`` (at depth ``d``)."""
    return p - base + 1 if S.tab else d + 1


cdef inline Py_ssize_t _prev_row(const Scratch* S, const PosInfo* I) noexcept nogil:
    """Table row of the previous edge on the same feature (0: none)."""
    return I.prow if S.tab else I.prevd1


cdef inline const double* _edge_weights(Scratch* S, const PosInfo* I, Py_ssize_t row,
                                       cdptr w, cdptr neg,
                                       Py_ssize_t Q) noexcept nogil:
    """``w (A_edge - A_previous)`` of the edge in table row ``row`` for ``o = 1``;
    ``S.wstride`` doubles later, the same for ``o = 0`` (``A_edge = -1 / (1 - t)``).
    Tabulated per tree where the tables fit, else computed here."""
    if S.tab:
        return S.wd + row * Q
    _fill_weights(S.GR, S.wstride, w, neg, S.a1 + row * Q,
                  S.a1 + _prev_row(S, I) * Q, Q)
    return S.GR


cdef inline void _edge_rows(const Ensemble* E, Scratch* S, const PosInfo* I,
                            Py_ssize_t d, const floating_t** xs, Py_ssize_t Q,
                            cdptr tq, double* a, double* b) noexcept nogil:
    """The edge into depth ``d`` for RL rows: its indicators ``o`` (kept in ``oR``)
    and the coefficients of its factor ``a om_q + b t_q`` per row (and, untabulated,
    its table row).

    ``o`` is 0 or 1, so ``c x + (1 - c) y`` selects exactly between finite values.
    """
    cdef Py_ssize_t r
    cdef double xv
    cdef long long goes_left = 0
    cdef double* g = S.gR + (d - 1) * RL
    cdef const double* oprev = S.oR + I.prevd1 * RL
    cdef double* onew = S.oR + (d + 1) * RL
    if not S.tab:
        _fill_row(S.inv + (d + 1) * Q, S.a1 + (d + 1) * Q, I.z, tq, Q)
    if I.is_left:
        for r in range(RL):
            xv = <double> xs[r][I.feat]
            goes_left |= (<long long> _goes_left(E, S, I, d, xv)) << r
    sk_edge(onew, a, b, g, oprev, I.z, I.r, I.is_left, goes_left)


cdef inline void _descend_rows(const Ensemble* E, Scratch* S, const PosInfo* I,
                               Py_ssize_t d, const floating_t** xs, Py_ssize_t Q,
                               cdptr tq, cdptr om) noexcept nogil:
    """``_descend`` for RL rows: ``o`` of the edge into depth ``d`` and ``P`` at
    that depth, lane by lane."""
    cdef double a[RL]
    cdef double b[RL]
    cdef const double* oprev = S.oR + I.prevd1 * RL
    _edge_rows(E, S, I, d, xs, Q, tq, a, b)
    if I.prevd1 == 0:
        sk_descend_new(S.PR + d * Q * RL, S.PR + (d - 1) * Q * RL, a, b, om, tq, Q)
    else:
        sk_descend(S.PR + d * Q * RL, S.PR + (d - 1) * Q * RL, a, b, oprev, om, tq,
                   S.inv + _prev_row(S, I) * Q, Q)
