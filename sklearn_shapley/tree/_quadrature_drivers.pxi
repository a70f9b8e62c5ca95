# The row drivers of orders 1 and 2: blocks of rows over OpenMP threads, each block
# walked RL rows at a time through every tree. Included by _quadrature.pyx and
# _quadrature_avx2.pyx.

def compiled_for_avx2_fma():
    """Whether this build of the kernel uses AVX2 and FMA instructions."""
    return bool(sk_compiled_avx2_fma())


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
