# The Quadrature-TreeSHAP kernel, included by _quadrature.pyx (portable build) and
# _quadrature_avx2.pyx (compiled for AVX2 + FMA): see _quadrature.pyx's docstring.

from cython.parallel cimport prange, threadid
from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t
from libc.stdlib cimport calloc, free, malloc

import numpy as np

cdef enum:
    # rows per work item: each tree is walked for a block of rows while in cache
    ROW_BLOCK = 32
    # fewer rows than ROW_BLOCK * this per thread: smaller blocks (see _block_rows)
    BLOCKS_PER_THREAD = 4
    # order k: quadrature points are padded (weight 0) to a multiple of LANES, so the
    # inner loops have a fixed width the compiler unrolls and vectorises
    LANES = 2
    # orders 1 and 2: a leaf is folded in one pass over its points (_leaf_rows) in
    # trees of at least this many points; in smaller trees the separate passes of
    # _descend_rows / _extract_rows are as fast and the fused pass's setup is not
    LEAF_FUSED_MIN_Q = 4
    # order 2: where one row's pairs (n_features^2 * n_outputs cells) exceed this
    # many (64 KB), the cells an edge writes are prefetched before its dot products
    # (fashion's 784 features: 4.9 MB per row, a cache miss per cell); smaller
    # blocks stay in cache and the prefetches only cost
    PAIR_PREFETCH_MIN_CELLS = 8192

cdef extern from "_lanes.h" nogil:
    # Orders 1 and 2 walk each tree for RL rows at once: every buffer is laid out
    # [point][row], so the inner loops run over RL rows whatever the tree's Q (no
    # padding of Q) and the per-node work (layout loads, table rows, branch-free
    # selects) is shared by the RL rows. The lane operations live in _lanes.h.
    enum:
        RL "SK_RL"

#: quadrature arrays handed to the kernel hold a multiple of this many points per tree
QUADRATURE_LANES = LANES

cdef extern from *:
    # restrict-qualified pointers: the per-depth buffers never overlap, and saying so
    # spares the vectorised lane loops their runtime alias checks
    ctypedef double* dptr "double *__restrict__"
    ctypedef const double* cdptr "const double *__restrict__"

ctypedef fused floating_t:
    float
    double


# ---- fixed-width lane operations of the single-row (order k) walk ------------------
# Every buffer holds a multiple of LANES points (the loops step by 2 == LANES: Cython
# needs a literal step); the restrict-qualified parameters let the compiler vectorise
# each block of lanes without runtime alias checks.

cdef inline void _mul(dptr dst, cdptr a, cdptr b, Py_ssize_t Q) noexcept nogil:
    """dst = a * b"""
    cdef Py_ssize_t c, qq
    for c in range(0, Q, 2):
        for qq in range(LANES):
            dst[c + qq] = a[c + qq] * b[c + qq]


cdef inline double _sum(cdptr a, Py_ssize_t Q) noexcept nogil:
    cdef Py_ssize_t c, qq
    cdef double s = 0.0
    for c in range(0, Q, 2):
        for qq in range(LANES):
            s = s + a[c + qq]
    return s


cdef inline void _mul_factor(dptr dst, cdptr src, double a, double b, cdptr om,
                             cdptr tq, cdptr ip, Py_ssize_t Q) noexcept nogil:
    """dst = src * (a (1 - t) + b t) * ip"""
    cdef Py_ssize_t c, qq
    for c in range(0, Q, 2):
        for qq in range(LANES):
            dst[c + qq] = src[c + qq] * ((a * om[c + qq] + b * tq[c + qq]) * ip[c + qq])


# ---- data -----------------------------------------------------------------------

cdef struct PosInfo:
    # one node of the pre-order layout (see tree_layout)
    int64_t node      # node id in the flat arrays
    double z          # z of the edge's feature after the edge
    double r          # cover ratio of the edge
    int32_t depth
    int32_t prevd1    # 1 + depth of the previous edge on the same feature, 0 if none
    int32_t prow      # table row of that edge (1 + its offset in the tree), 0 if none
    int32_t feat      # feature of the edge into the node (-1 at roots)
    int32_t is_left
    int32_t is_leaf
    # a first child (is_left) decides for its parent: the parent's split (its feature
    # is feat), read in layout order with the rest instead of by node id
    double thr        # threshold
    uint8_t mleft     # missing values go left
    uint8_t skind     # 0: numeric (x <= thr), else categorical (by node id)


cdef struct Ensemble:
    const int64_t* tree_offsets
    const int64_t* tree_group
    const int64_t* cat_start
    const int64_t* cat_len
    const uint32_t* cat_bitsets
    const double* value        # (n_nodes, n_outputs), by position in the layout
    const PosInfo* pinfo       # pre-order layout; tree t keeps its node range
    # quadrature, per tree (padded to LANES)
    const int64_t* qoff        # (n_trees + 1,) offsets into the quadrature arrays
    const double* qt           # nodes t_q on [0, 1]
    const double* qw           # weights (0 on padding)
    const double* qom          # 1 - t_q
    const double* qneg         # -1 / (1 - t_q): A of an edge x does not follow
    # order k >= 3
    const int64_t* leaf_index  # node -> leaf id, -1 elsewhere
    const int64_t* leaf_fptr   # CSR of each leaf's sorted distinct path features
    const int64_t* leaf_feats
    const int64_t* leaf_cptr   # CSR of each leaf's subset columns (combination order)
    const int64_t* leaf_cols
    Py_ssize_t n_trees
    Py_ssize_t n_features
    Py_ssize_t n_outputs
    Py_ssize_t max_depth
    Py_ssize_t max_q
    Py_ssize_t max_tree_nodes
    Py_ssize_t table_bytes     # per-thread budget for the per-position tables
    int decision_f32


cdef struct Scratch:
    double* P           # (max_depth + 1) * max_q: path polynomial per depth
    double* G           # max_q: w P at the leaf (order k)
    double* inv         # rows 1.. : 1 / (z + t (1 - z)) per position; row 0: ones
    double* a1          # rows 1.. : (1 - z) / (z + t (1 - z)), A for o = 1; row 0: 0
    double* o1          # o1[d + 1]: indicator o (0 or 1) of the edge into depth d;
                        # o1[0] = 1 stands for "no earlier edge on this feature"
    const double** aptr  # A of the edge into each depth (order k)
    int64_t* pos        # position of the internal node at each depth
    int64_t* golf       # x goes left at the node at this depth
    int64_t* last_depth  # per feature: depth of its live edge, or -1 (orders >= 2)
    int64_t* active     # distinct features on the path, in order of appearance
    int64_t* comb       # order-k combination positions
    double* pre         # order-k prefix products, order * max_q
    const double** lptr  # order-k: A of each leaf feature
    # orders 1 and 2, RL rows at once ([point][row] layout)
    double* PR          # (max_depth + 1) * max_q * RL
    double* HR          # (max_depth + 1) * n_outputs * max_q * RL
    double* GR          # 2 * max_q: w (A_edge - A_previous) for o = 1, o = 0
    double* wd          # the same per table row (tab): rows for o = 1, then o = 0
    Py_ssize_t wstride  # offset of the o = 0 block in wd (or GR)
    double* HGR         # max_q * RL: the pairs' H w (A_edge - A_previous)
    double* vR          # max_depth * RL: the pair terms of one edge
    double* oR          # (max_depth + 2) * RL: o1 per row
    double* gR          # max_depth * RL: x goes left at the node at this depth
    Py_ssize_t n_active
    int tab             # 1: inv / a1 rows per tree position, filled once per tree
                        # and block; 0 (huge trees): per depth, filled on entry
    int rows            # 1: buffers of the RL-row walk (orders 1, 2); 0: leaf
                        # extraction (order k)


cdef void _scratch_free(Scratch* s) noexcept nogil:
    if s == NULL:
        return
    free(s.P)
    free(s.G)
    free(s.inv)
    free(s.a1)
    free(s.o1)
    free(s.aptr)
    free(s.pos)
    free(s.golf)
    free(s.last_depth)
    free(s.active)
    free(s.comb)
    free(s.pre)
    free(s.lptr)
    free(s.PR)
    free(s.HR)
    free(s.GR)
    free(s.wd)
    free(s.HGR)
    free(s.vR)
    free(s.oR)
    free(s.gR)
    free(s)


cdef Scratch* _scratch_new(const Ensemble* E, Py_ssize_t order,
                          bint rows) noexcept nogil:
    """One thread's buffers: the RL-row walk's (``rows``: orders 1 and 2) or the
    single-row leaf extraction's at ``order``; the per-position tables and path state
    for both."""
    cdef Scratch* s = <Scratch*> calloc(1, sizeof(Scratch))
    cdef Py_ssize_t dm = E.max_depth + 1
    cdef Py_ssize_t qm = E.max_q
    cdef Py_ssize_t km = E.n_outputs
    cdef Py_ssize_t i
    cdef Py_ssize_t n_rows
    cdef bint ok
    if s == NULL:
        return NULL
    s.rows = rows
    # inv and a1, plus the edge weights (two more) for the RL-row walk
    s.tab = ((E.max_tree_nodes + 1) * qm * (4 if s.rows else 2) * sizeof(double)
             <= E.table_bytes)
    n_rows = E.max_tree_nodes + 1 if s.tab else dm + 1
    s.inv = <double*> malloc(n_rows * qm * sizeof(double))
    s.a1 = <double*> malloc(n_rows * qm * sizeof(double))
    s.pos = <int64_t*> malloc(dm * sizeof(int64_t))
    s.last_depth = <int64_t*> malloc((E.n_features + 1) * sizeof(int64_t))
    s.active = <int64_t*> malloc(dm * sizeof(int64_t))
    ok = (s.inv != NULL and s.a1 != NULL and s.pos != NULL and s.last_depth != NULL
          and s.active != NULL)
    if s.rows:
        s.PR = <double*> malloc(dm * qm * RL * sizeof(double))
        s.HR = <double*> malloc(dm * km * qm * RL * sizeof(double))
        s.GR = <double*> malloc(2 * qm * sizeof(double))
        s.wd = <double*> malloc((2 * n_rows * qm if s.tab else 1) * sizeof(double))
        s.HGR = <double*> malloc(qm * RL * sizeof(double))
        s.vR = <double*> malloc(dm * RL * sizeof(double))
        s.oR = <double*> malloc((dm + 1) * RL * sizeof(double))
        s.gR = <double*> malloc(dm * RL * sizeof(double))
        ok = ok and (s.PR != NULL and s.HR != NULL and s.GR != NULL and s.wd != NULL
                     and s.HGR != NULL and s.vR != NULL and s.oR != NULL
                     and s.gR != NULL)
    else:
        s.P = <double*> malloc(dm * qm * sizeof(double))
        s.G = <double*> malloc(qm * sizeof(double))
        s.o1 = <double*> malloc((dm + 1) * sizeof(double))
        s.aptr = <const double**> malloc(dm * sizeof(double*))
        s.golf = <int64_t*> malloc(dm * sizeof(int64_t))
        s.comb = <int64_t*> malloc((order + 1) * sizeof(int64_t))
        s.pre = <double*> malloc((order + 1) * qm * sizeof(double))
        s.lptr = <const double**> malloc(dm * sizeof(double*))
        ok = ok and (s.P != NULL and s.G != NULL and s.o1 != NULL and s.aptr != NULL
                     and s.golf != NULL and s.comb != NULL and s.pre != NULL
                     and s.lptr != NULL)
    if not ok:
        _scratch_free(s)
        return NULL
    s.n_active = 0  # row 0 of inv and a1 is set per tree (_tree_tables)
    for i in range(E.n_features + 1):
        s.last_depth[i] = -1
    if s.rows:
        for i in range(2 * RL):
            s.oR[i] = 1.0
    else:
        s.o1[0] = 1.0
        s.o1[1] = 1.0
    return s


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


cdef extern from "_lanes.h" nogil:
    # vectors of RL doubles: one quadrature point of RL rows ([point][row] layout)
    void sk_descend(double* Pd, const double* Pp, const double* a, const double* b,
                    const double* op, const double* om, const double* tq,
                    const double* ip, Py_ssize_t Q)
    void sk_edge(double* o, double* a, double* b, double* g, const double* op,
                 double z, double r, int first, long long goes_left)
    void sk_descend_new(double* Pd, const double* Pp, const double* a, const double* b,
                        const double* om, const double* tq, Py_ssize_t Q)
    void sk_dot2(double* s1, double* s0, const double* H, const double* wd1,
                 const double* wd0, Py_ssize_t Q)
    void sk_dot2_fold(double* Hp, double* s1, double* s0, const double* H,
                      const double* wd1, const double* wd0, int first, Py_ssize_t Q)
    void sk_leaf(double* H, double* s1, double* s0, const double* Pp, const double* a,
                 const double* b, const double* op, const double* om, const double* tq,
                 const double* ip, const double* wd1, const double* wd0, double v,
                 int first, Py_ssize_t Q)
    void sk_scale(double* dst, const double* src, double v, Py_ssize_t n)
    void sk_axpy(double* dst, const double* src, double v, Py_ssize_t n)
    void sk_add(double* dst, const double* src, Py_ssize_t n)
    void sk_copy(double* dst, const double* src, Py_ssize_t n)
    void sk_pair_weights(double* HG, double* s, double* sn, const double* H,
                         const double* c1, const double* c0, const double* wd1,
                         const double* wd0, const double* neg, Py_ssize_t Q)
    void sk_dot1(double* s, const double* H, const double* a, Py_ssize_t Q)
    void sk_prefetch_w(const double* p)
    int sk_cpu_has_avx2_fma()
    int sk_compiled_avx2_fma()


def cpu_has_avx2_fma():
    """Whether this CPU runs AVX2 and FMA instructions."""
    return bool(sk_cpu_has_avx2_fma())


def compiled_for_avx2_fma():
    """Whether this build of the kernel uses AVX2 and FMA instructions."""
    return bool(sk_compiled_avx2_fma())


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


cdef void _block_walk(const Ensemble* E, Scratch* S, const floating_t* X,
                      Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t order,
                      double* out) noexcept nogil:
    """Rows ``r0:r1`` of ``X``, every tree, RL rows at a time (a short last group
    repeats its last row and writes only the real ones): Shapley values (``order``
    1, ``out`` (n, d, K)) or the pairs (2, ``out`` (n, d, d, K))."""
    cdef Py_ssize_t nf = E.n_features
    cdef Py_ssize_t step = (nf if order == 1 else nf * nf) * E.n_outputs
    cdef Py_ssize_t t, g0, j, r, nr
    cdef const floating_t* xs[RL]
    cdef double* outs[RL]
    for t in range(E.n_trees):
        _tree_tables(E, S, t)
        g0 = r0
        while g0 < r1:
            nr = min(RL, r1 - g0)
            for j in range(RL):
                r = min(g0 + j, r1 - 1)
                xs[j] = X + r * nf
                outs[j] = out + r * step
            if order == 1:
                _tree_order1_rows(E, S, t, xs, outs, nr)
            else:
                _tree_order2_rows(E, S, t, xs, outs, nr)
            g0 += RL


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


cdef class KernelData:
    """Typed views of a prepared FlatEnsemble and its quadrature (built by _kernel)."""

    cdef const int64_t[::1] tree_offsets
    cdef const int64_t[::1] tree_group
    cdef const int64_t[::1] cat_start
    cdef const int64_t[::1] cat_len
    cdef const uint32_t[::1] cat_bitsets
    cdef const double[:, ::1] value
    cdef const int64_t[::1] qoff
    cdef const double[::1] qt
    cdef const double[::1] qw
    cdef const double[::1] qom
    cdef const double[::1] qneg
    cdef const int64_t[::1] leaf_index
    cdef const int64_t[::1] leaf_fptr
    cdef const int64_t[::1] leaf_feats
    cdef const int64_t[::1] leaf_cptr
    cdef const int64_t[::1] leaf_cols
    cdef PosInfo* pinfo
    cdef Ensemble E
    cdef bint has_leaves
    cdef readonly Py_ssize_t leaf_order  # the order of the leaf subsets (0: none)
    cdef public object subsets  # (m, leaf_order) subsets leaf_cols index, or None
    cdef readonly Py_ssize_t lanes  # every tree's rule holds a multiple of this

    def __cinit__(self):
        self.pinfo = NULL

    def leaf_columns(self):
        """The column of each leaf subset (order >= 3), as an array."""
        return np.asarray(self.leaf_cols)

    def __dealloc__(self):
        free(self.pinfo)

    def __init__(self, tree_offsets, tree_group, left, const double[::1] threshold,
                 const uint8_t[::1] missing_left, const uint8_t[::1] split_kind,
                 cat_start, cat_len, cat_bitsets, value,
                 layout, qoff, qt, qw, Py_ssize_t n_features, Py_ssize_t max_depth,
                 bint decision_f32, leaf_index=None, leaf_fptr=None, leaf_feats=None,
                 leaf_cptr=None, leaf_cols=None, Py_ssize_t leaf_order=0,
                 Py_ssize_t table_bytes=32 << 20,
                 Py_ssize_t lanes=LANES):
        cdef const int64_t[::1] lnode = layout["node"]
        cdef const int64_t[::1] ldepth = layout["depth"]
        cdef const int64_t[::1] lprev = layout["prev"]
        cdef const uint8_t[::1] lleft = layout["is_left"]
        cdef const int64_t[::1] lfeat = layout["feature"]
        cdef const double[::1] lz = layout["z"]
        cdef const double[::1] lr = layout["ratio"]
        cdef const int64_t[::1] lchild = left
        cdef const int64_t[::1] toff = tree_offsets
        cdef Py_ssize_t n_nodes = lnode.shape[0], t, p, pp
        empty = np.zeros(1, dtype=np.int64)
        qt = np.ascontiguousarray(qt, dtype=np.float64)
        if lanes < 1 or np.any(np.diff(np.asarray(qoff)) % lanes):
            raise ValueError("every tree's quadrature must hold a multiple of lanes")
        self.lanes = lanes
        self.tree_offsets = tree_offsets
        self.tree_group = tree_group
        self.cat_start = cat_start
        self.cat_len = cat_len
        self.cat_bitsets = cat_bitsets
        # by position in the layout, so the walk reads the leaf values in order
        self.value = np.ascontiguousarray(np.asarray(value)[np.asarray(lnode)])
        self.qoff = qoff
        self.qt = qt
        self.qw = qw
        self.qom = 1.0 - qt
        self.qneg = -1.0 / (1.0 - qt)
        self.has_leaves = leaf_index is not None
        self.leaf_order = leaf_order if self.has_leaves else 0
        self.subsets = None
        self.leaf_index = empty if leaf_index is None else leaf_index
        self.leaf_fptr = empty if leaf_fptr is None else leaf_fptr
        self.leaf_feats = empty if leaf_feats is None else leaf_feats
        self.leaf_cptr = empty if leaf_cptr is None else leaf_cptr
        self.leaf_cols = empty if leaf_cols is None else leaf_cols

        self.pinfo = <PosInfo*> malloc((n_nodes + 1) * sizeof(PosInfo))
        if self.pinfo == NULL:
            raise MemoryError()
        for t in range(toff.shape[0] - 1):
            for p in range(toff[t], toff[t + 1]):
                pp = lprev[p]
                self.pinfo[p].node = lnode[p]
                self.pinfo[p].z = lz[p]
                self.pinfo[p].r = lr[p]
                self.pinfo[p].depth = <int32_t> ldepth[p]
                self.pinfo[p].prevd1 = <int32_t> (ldepth[pp] + 1 if pp >= 0 else 0)
                self.pinfo[p].prow = <int32_t> (pp - toff[t] + 1 if pp >= 0 else 0)
                self.pinfo[p].feat = <int32_t> lfeat[p]
                self.pinfo[p].is_left = lleft[p]
                self.pinfo[p].is_leaf = lchild[lnode[p]] < 0
                self.pinfo[p].thr = 0.0
                self.pinfo[p].mleft = 0
                self.pinfo[p].skind = 0
                if lleft[p]:  # the parent is the position before (pre-order)
                    self.pinfo[p].thr = threshold[lnode[p - 1]]
                    self.pinfo[p].mleft = missing_left[lnode[p - 1]]
                    self.pinfo[p].skind = split_kind[lnode[p - 1]]

        self.E.tree_offsets = &self.tree_offsets[0]
        self.E.tree_group = &self.tree_group[0]
        self.E.cat_start = &self.cat_start[0]
        self.E.cat_len = &self.cat_len[0]
        self.E.cat_bitsets = &self.cat_bitsets[0]
        self.E.value = &self.value[0, 0]
        self.E.pinfo = self.pinfo
        self.E.qoff = &self.qoff[0]
        self.E.qt = &self.qt[0]
        self.E.qw = &self.qw[0]
        self.E.qom = &self.qom[0]
        self.E.qneg = &self.qneg[0]
        self.E.leaf_index = &self.leaf_index[0]
        self.E.leaf_fptr = &self.leaf_fptr[0]
        self.E.leaf_feats = &self.leaf_feats[0]
        self.E.leaf_cptr = &self.leaf_cptr[0]
        self.E.leaf_cols = &self.leaf_cols[0]
        self.E.n_trees = self.tree_offsets.shape[0] - 1
        self.E.n_features = n_features
        self.E.n_outputs = self.value.shape[1]
        self.E.max_depth = max_depth
        sizes = np.diff(np.asarray(qoff))
        self.E.max_q = int(sizes.max()) if sizes.size else LANES
        sizes = np.diff(np.asarray(tree_offsets))
        self.E.max_tree_nodes = int(sizes.max()) if sizes.size else 1
        self.E.decision_f32 = decision_f32
        self.E.table_bytes = table_bytes


cdef int _check_lanes(KernelData kd) except -1:
    if kd.lanes % LANES:
        raise ValueError(
            f"this kernel needs every tree's quadrature padded to a multiple of {LANES} "
            f"points, the KernelData holds multiples of {kd.lanes}")
    return 0


cdef Py_ssize_t _block_rows(Py_ssize_t n, int n_threads) noexcept:
    """Rows per work item: ROW_BLOCK, or fewer (a multiple of RL) so that there are
    about BLOCKS_PER_THREAD items per thread, which take them as they finish (a
    dynamic schedule): 100 rows on 2 threads in blocks of 32 would leave one thread
    64 rows, the other 36. A row's result does not depend on its block."""
    cdef Py_ssize_t per
    if n_threads <= 1 or n >= ROW_BLOCK * BLOCKS_PER_THREAD * n_threads:
        return ROW_BLOCK
    per = (n + BLOCKS_PER_THREAD * n_threads - 1) // (BLOCKS_PER_THREAD * n_threads)
    return max(RL, (per + RL - 1) // RL * RL)


cdef int _check_shapes(const Ensemble* E, Py_ssize_t n, Py_ssize_t d, Py_ssize_t n_out,
                       Py_ssize_t out_cols, Py_ssize_t out_k) except -1:
    if d != E.n_features or n_out != n or out_k != E.n_outputs or out_cols < 0:
        raise ValueError("X / out shapes do not match the ensemble")
    return 0


cdef void _free_all(Scratch** scr, int n) noexcept:
    cdef int i
    for i in range(n):
        _scratch_free(scr[i])
    free(scr)


cdef Scratch** _alloc_all(const Ensemble* E, int n_threads, Py_ssize_t order,
                          bint rows) except NULL:
    cdef Scratch** scr = <Scratch**> malloc(n_threads * sizeof(Scratch*))
    cdef int i
    if scr == NULL:
        raise MemoryError()
    for i in range(n_threads):
        scr[i] = _scratch_new(E, order, rows)
        if scr[i] == NULL:
            _free_all(scr, i)
            raise MemoryError()
    return scr


cdef int _walk_rows(KernelData kd, const floating_t[:, ::1] X, double* out,
                    Py_ssize_t order, int n_threads) except -1:
    """The RL-row walk of orders 1 and 2 over all rows of ``X``, in blocks spread
    over ``n_threads`` OpenMP threads; ``out`` as in ``_block_walk``."""
    cdef Py_ssize_t n = X.shape[0]
    cdef Py_ssize_t b, r0, r1
    cdef Py_ssize_t block = _block_rows(n, n_threads)
    cdef Py_ssize_t n_blocks = (n + block - 1) // block
    cdef Py_ssize_t n_groups = (n + RL - 1) // RL
    cdef Ensemble* E = &kd.E
    cdef Scratch** scr
    cdef Scratch* sp
    if n == 0 or E.n_trees == 0:
        return 0
    n_threads = max(1, min(n_threads, n_blocks))
    scr = _alloc_all(E, n_threads, order, True)
    try:
        for b in prange(n_blocks, nogil=True, schedule="dynamic",
                        num_threads=n_threads):
            sp = scr[threadid()]
            # the RL-row groups shared out evenly: 300 rows in blocks of 32 would
            # end on a block of 12
            r0 = b * n_groups // n_blocks * RL
            r1 = min((b + 1) * n_groups // n_blocks * RL, n)
            _block_walk(E, sp, &X[0, 0], r0, r1, order, out)
    finally:
        _free_all(scr, n_threads)
    return 0


def shap_order1(KernelData kd, const floating_t[:, ::1] X, double[:, :, ::1] out,
                int n_threads):
    """Add every tree's Shapley values of each row of ``X`` to ``out`` (n, d, K)."""
    _check_shapes(&kd.E, X.shape[0], X.shape[1], out.shape[0], out.shape[1],
                  out.shape[2])
    if out.shape[1] != kd.E.n_features:
        raise ValueError("out must have shape (n, n_features, n_outputs)")
    if out.shape[0]:
        _walk_rows(kd, X, &out[0, 0, 0], 1, n_threads)


def shap_order2(KernelData kd, const floating_t[:, ::1] X, double[:, :, :, ::1] out,
                int n_threads):
    """Add the TreeSHAP-convention interaction values of each row of ``X`` to ``out``
    (n, d, d, K): every row of each (d, d) block sums to the Shapley value."""
    cdef Py_ssize_t nf = kd.E.n_features
    _check_shapes(&kd.E, X.shape[0], X.shape[1], out.shape[0], out.shape[1],
                  out.shape[3])
    if out.shape[1] != nf or out.shape[2] != nf:
        raise ValueError("out must have shape (n, n_features, n_features, n_outputs)")
    if out.shape[0]:
        _walk_rows(kd, X, &out[0, 0, 0, 0], 2, n_threads)


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


def tree_layout(const int64_t[::1] tree_offsets, const int64_t[::1] left,
                const int64_t[::1] right, const int64_t[::1] feature,
                const double[::1] ratio, Py_ssize_t n_features):
    """Pre-order layout of every tree (left child first), row-independent.

    ``ratio[c]`` is ``cover[c] / cover[parent]``. Returns a dict of arrays indexed by
    position (tree ``t`` keeps positions ``tree_offsets[t]:tree_offsets[t + 1]``):
    ``node``, ``depth``, ``prev`` (position of the closest ancestor edge on the same
    feature, -1), ``is_left``, ``feature`` (of the edge into the node, -1 at roots),
    ``z`` (product of the ratios of that feature's edges down to here) and ``ratio``.
    """
    cdef Py_ssize_t n_trees = tree_offsets.shape[0] - 1
    cdef Py_ssize_t n_nodes = left.shape[0]
    cdef Py_ssize_t t, top, p
    cdef int64_t node, f, c, pp
    out = {
        "node": np.zeros(n_nodes, dtype=np.int64),
        "depth": np.zeros(n_nodes, dtype=np.int64),
        "prev": np.full(n_nodes, -1, dtype=np.int64),
        "is_left": np.zeros(n_nodes, dtype=np.uint8),
        "feature": np.full(n_nodes, -1, dtype=np.int64),
        "z": np.ones(n_nodes, dtype=np.float64),
        "ratio": np.ones(n_nodes, dtype=np.float64),
    }
    cdef int64_t[::1] pnode = out["node"]
    cdef int64_t[::1] pdepth = out["depth"]
    cdef int64_t[::1] pprev = out["prev"]
    cdef uint8_t[::1] pleft = out["is_left"]
    cdef int64_t[::1] pfeat = out["feature"]
    cdef double[::1] pz = out["z"]
    cdef double[::1] pr = out["ratio"]
    last_arr = np.full(n_features + 1, -1, dtype=np.int64)
    stack_arr = np.zeros(n_nodes + 1, dtype=np.int64)  # positions on the path
    state_arr = np.zeros(n_nodes + 1, dtype=np.uint8)
    cdef int64_t[::1] last = last_arr
    cdef int64_t[::1] stack = stack_arr
    cdef uint8_t[::1] state = state_arr
    for t in range(n_trees):
        if tree_offsets[t + 1] <= tree_offsets[t]:
            continue
        p = tree_offsets[t]
        pnode[p] = tree_offsets[t]
        top = 0
        stack[0] = p
        state[0] = 0
        p += 1
        while top >= 0:
            node = pnode[stack[top]]
            if left[node] >= 0 and state[top] < 2:
                c = left[node] if state[top] == 0 else right[node]
                f = feature[node]
                pp = last[f]
                pnode[p] = c
                pdepth[p] = top + 1
                pprev[p] = pp
                pleft[p] = state[top] == 0
                pfeat[p] = f
                pr[p] = ratio[c]
                pz[p] = (pz[pp] if pp >= 0 else 1.0) * ratio[c]
                last[f] = p
                state[top] += 1
                top += 1
                stack[top] = p
                state[top] = 0
                p += 1
                continue
            # leave the node at this depth: restore its feature's live edge
            if top > 0:
                last[pfeat[stack[top]]] = pprev[stack[top]]
            top -= 1
    return out


def tree_structure(const int64_t[::1] tree_offsets, const int64_t[::1] left,
                   const int64_t[::1] right, const int64_t[::1] feature,
                   Py_ssize_t n_features, bint with_leaves=False):
    """Depth and path-feature statistics of every tree.

    Returns ``(max_depth, max_distinct)`` (int64 per tree: the most edges, and the
    most distinct features, on a root-to-leaf path) and, if ``with_leaves``, also
    ``(leaf_nodes, leaf_fptr, leaf_feats)``: the leaves in depth-first order and a CSR
    of each leaf's distinct path features, sorted ascending.
    """
    cdef Py_ssize_t n_trees = tree_offsets.shape[0] - 1
    cdef Py_ssize_t n_nodes = left.shape[0]
    cdef Py_ssize_t t, d, a, b, n_leaves = 0, pos = 0, n_act
    cdef int64_t node, f, c, tmp
    md_arr = np.zeros(n_trees, dtype=np.int64)
    mu_arr = np.zeros(n_trees, dtype=np.int64)
    cnt_arr = np.zeros(n_features + 1, dtype=np.int64)
    stack_arr = np.zeros(n_nodes + 1, dtype=np.int64)
    state_arr = np.zeros(n_nodes + 1, dtype=np.uint8)
    act_arr = np.zeros(n_nodes + 1, dtype=np.int64)
    cdef int64_t[::1] md = md_arr
    cdef int64_t[::1] mu = mu_arr
    cdef int64_t[::1] cnt = cnt_arr
    cdef int64_t[::1] stack = stack_arr
    cdef uint8_t[::1] state = state_arr
    cdef int64_t[::1] act = act_arr
    cdef int64_t[::1] lnodes
    cdef int64_t[::1] lptr
    cdef int64_t[::1] lfeats
    cdef int pass_, n_pass = 2 if with_leaves else 1

    for pass_ in range(n_pass):
        if pass_ == 1:
            lptr_arr = np.zeros(n_leaves + 1, dtype=np.int64)
            lptr_arr[1:] = np.cumsum(np.asarray(lnodes)[:n_leaves])  # pass-0 counts
            lptr = lptr_arr
            lnodes_arr = np.zeros(n_leaves, dtype=np.int64)
            lnodes = lnodes_arr
            lfeats_arr = np.zeros(lptr_arr[n_leaves], dtype=np.int64)
            lfeats = lfeats_arr
        elif with_leaves:
            lnodes = np.zeros(n_nodes + 1, dtype=np.int64)
        n_leaves = 0
        for t in range(n_trees):
            if tree_offsets[t + 1] <= tree_offsets[t]:
                continue
            d = 0
            n_act = 0
            stack[0] = tree_offsets[t]
            state[0] = 0
            while d >= 0:
                node = stack[d]
                if left[node] < 0:
                    if d > md[t]:
                        md[t] = d
                    if n_act > mu[t]:
                        mu[t] = n_act
                    if with_leaves:
                        if pass_ == 0:
                            lnodes[n_leaves] = n_act
                        else:
                            lnodes[n_leaves] = node
                            pos = lptr[n_leaves]
                            for a in range(n_act):
                                lfeats[pos + a] = act[a]
                            # insertion sort of the leaf's features
                            for a in range(1, n_act):
                                tmp = lfeats[pos + a]
                                b = a - 1
                                while b >= 0 and lfeats[pos + b] > tmp:
                                    lfeats[pos + b + 1] = lfeats[pos + b]
                                    b -= 1
                                lfeats[pos + b + 1] = tmp
                    n_leaves += 1
                    state[d] = 2
                if state[d] < 2:
                    c = left[node] if state[d] == 0 else right[node]
                    state[d] += 1
                    f = feature[node]
                    cnt[f] += 1
                    if cnt[f] == 1:
                        act[n_act] = f
                        n_act += 1
                    d += 1
                    stack[d] = c
                    state[d] = 0
                    continue
                # leave node at depth d: undo the edge into it
                if d > 0:
                    f = feature[stack[d - 1]]
                    cnt[f] -= 1
                    if cnt[f] == 0:
                        n_act -= 1
                d -= 1
    if with_leaves:
        return md_arr, mu_arr, (lnodes_arr, lptr_arr, lfeats_arr)
    return md_arr, mu_arr
