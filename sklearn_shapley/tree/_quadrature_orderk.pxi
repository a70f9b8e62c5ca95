# Orders k >= 3: one row at a time, leaf extraction over each leaf's k-subsets.
# Included by _quadrature.pyx and _quadrature_avx2.pyx.

cdef inline double _descend(const Ensemble* E, Scratch* S, const PosInfo* I,
                            Py_ssize_t d, const floating_t* x, Py_ssize_t Q,
                            cdptr tq, cdptr om) noexcept nogil:
    """Enter a node at depth ``d``: its indicator ``o`` (returned) and ``P``.

    The factor of the edge is ``z (1 - t) + o t``; an earlier factor of the same
    feature is divided out (times its tabulated ``1 / f``). If ``x`` already left an
    earlier edge on this feature, both factors are ``z (1 - t)`` and ``P`` just scales
    by the cover ratio. The three cases are selected without branches.
    """
    cdef double ind, op, o, a, b
    cdef Py_ssize_t row
    if not S.tab:
        _fill_row(S.inv + (d + 1) * Q, S.a1 + (d + 1) * Q, I.z, tq, Q)
    if I.is_left:
        S.golf[d - 1] = _goes_left(E, S, I, d, <double> x[I.feat])
    ind = <double> S.golf[d - 1] if I.is_left else <double> (1 - S.golf[d - 1])
    op = S.o1[I.prevd1]
    o = op * ind
    S.o1[d + 1] = o
    a = I.z if op != 0.0 else I.r
    b = o if op != 0.0 else I.r
    row = _prev_row(S, I) if op != 0.0 else 0
    _mul_factor(S.P + d * Q, S.P + (d - 1) * Q, a, b, om, tq, S.inv + row * Q, Q)
    return o


cdef void _tree_orderk(const Ensemble* E, Scratch* S, Py_ssize_t t,
                       const floating_t* x, Py_ssize_t order,
                       double* out) noexcept nogil:
    """Add tree ``t``'s order-k interactions (leaf extraction) to ``out`` (m, K)."""
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
    cdef Py_ssize_t p, d, cur = 0, q, kk, a, lvl, nd, idx
    cdef int64_t n, leaf, col
    cdef double o, s
    cdef double* base_w = S.G
    cdef double* dst
    cdef const double* src
    cdef const double* vrow
    cdef const int64_t* feats
    cdef const int64_t* cols

    if end - base <= 1:
        return
    S.pos[0] = base
    for q in range(Q):
        S.P[q] = 1.0
    for p in range(base + 1, end + 1):
        d = pinfo[p].depth if p < end else 1
        while cur >= d:
            I = pinfo + S.pos[cur]
            S.last_depth[I.feat] = I.prevd1 - 1
            cur -= 1
        if p == end:
            break
        I = pinfo + p
        o = _descend(E, S, I, d, x, Q, tq, om)
        S.aptr[d] = (S.a1 + _row(S, p, base, d) * Q) if o != 0.0 else neg
        S.last_depth[I.feat] = d
        S.pos[d] = p
        cur = d
        if not I.is_leaf:
            continue
        n = I.node
        leaf = E.leaf_index[n]
        nd = E.leaf_fptr[leaf + 1] - E.leaf_fptr[leaf]
        if nd < order:
            continue
        feats = E.leaf_feats + E.leaf_fptr[leaf]
        cols = E.leaf_cols + E.leaf_cptr[leaf]
        for a in range(nd):
            S.lptr[a] = S.aptr[S.last_depth[feats[a]]]
        _mul(base_w, w, S.P + d * Q, Q)
        vrow = E.value + p * K + kb
        # lexicographic k-combinations of the leaf's features, with prefix products
        # pre[lvl] = w P prod_{m <= lvl} A[comb[m]]
        lvl = 0
        idx = 0
        S.comb[0] = 0
        while True:
            src = base_w if lvl == 0 else S.pre + (lvl - 1) * Q
            dst = S.pre + lvl * Q
            _mul(dst, src, S.lptr[S.comb[lvl]], Q)
            if lvl < order - 1:
                S.comb[lvl + 1] = S.comb[lvl] + 1
                lvl += 1
                continue
            col = cols[idx]
            idx += 1
            if col >= 0:
                s = _sum(dst, Q)
                for kk in range(kt):
                    out[col * K + kb + kk] += vrow[kk] * s
            while lvl >= 0:
                S.comb[lvl] += 1
                if S.comb[lvl] <= nd - order + lvl:
                    break
                lvl -= 1
            if lvl < 0:
                break


def shap_orderk(KernelData kd, const floating_t[:, ::1] X, Py_ssize_t order,
                double[:, :, ::1] out, int n_threads, cols=None):
    """Add the order-``order`` Shapley interactions (n, m, K) by leaf extraction.

    Each leaf subset adds to column ``cols[i]`` of ``out`` (none where ``-1``);
    ``cols`` defaults to the KernelData's ``leaf_cols``.
    """
    cdef Py_ssize_t n = X.shape[0]
    cdef Py_ssize_t b, r, r0, r1, t
    cdef Py_ssize_t block = _block_rows(n, n_threads)
    cdef Py_ssize_t n_blocks = (n + block - 1) // block
    cdef Ensemble ens = kd.E
    cdef Ensemble* E = &ens
    cdef const int64_t[::1] cv
    cdef Scratch** scr
    cdef Scratch* sp
    if order < 1:
        raise ValueError("order must be >= 1")
    _check_shapes(E, n, X.shape[1], out.shape[0], out.shape[1], out.shape[2])
    _check_lanes(kd)
    if not kd.has_leaves:
        raise ValueError("the KernelData was built without the leaf subsets")
    if order != kd.leaf_order:
        raise ValueError(
            f"the KernelData holds the leaf subsets of order {kd.leaf_order}, not {order}")
    cv = kd.leaf_cols if cols is None else cols
    if cv.shape[0] != kd.leaf_cols.shape[0]:
        raise ValueError("cols must hold one column per leaf subset")
    if np.asarray(cv).max(initial=-1) >= out.shape[1]:
        raise ValueError("a leaf subset column lies outside out")
    if cv.shape[0]:
        E.leaf_cols = &cv[0]
    if n == 0 or E.n_trees == 0 or out.shape[1] == 0:
        return
    n_threads = max(1, min(n_threads, n_blocks))
    scr = _alloc_all(E, n_threads, order, False)
    try:
        for b in prange(n_blocks, nogil=True, schedule="dynamic",
                        num_threads=n_threads):
            sp = scr[threadid()]
            r0 = b * block
            r1 = min(r0 + block, n)
            for t in range(E.n_trees):
                _tree_tables(E, sp, t)
                for r in range(r0, r1):
                    _tree_orderk(E, sp, t, &X[r, 0], order, &out[r, 0, 0])
    finally:
        _free_all(scr, n_threads)
