# Lane operations of the Quadrature-TreeSHAP kernel (cimported by _quadrature.pyx and
# _quadrature_avx2.pyx): the row lanes of orders 1 and 2 (_lanes.h), the fixed-width
# loops of the single-row walk of order k, and the types they share. Everything here
# is inline, so each build compiles it for its own instruction set.

cdef enum:
    # order k: quadrature points are padded (weight 0) to a multiple of LANES, so the
    # inner loops have a fixed width the compiler unrolls and vectorises
    LANES = 2

cdef extern from "_lanes.h" nogil:
    # Orders 1 and 2 walk each tree for RL rows at once: every buffer is laid out
    # [point][row], so the inner loops run over RL rows whatever the tree's Q (no
    # padding of Q) and the per-node work (layout loads, table rows, branch-free
    # selects) is shared by the RL rows. The lane operations live in _lanes.h.
    enum:
        RL "SK_RL"

cdef extern from *:
    # restrict-qualified pointers: the per-depth buffers never overlap, and saying so
    # spares the vectorised lane loops their runtime alias checks
    ctypedef double* dptr "double *__restrict__"
    ctypedef const double* cdptr "const double *__restrict__"

ctypedef fused floating_t:
    float
    double


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
    int sk_compiled_avx2_fma()


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
