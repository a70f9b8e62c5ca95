# The kernel of ``_kernel.pyx`` and ``_kernel_avx2.pyx`` (see the former's docstring).
import numpy as np

from cython.parallel cimport parallel, prange, threadid
from libc.math cimport exp, tanh
from libc.string cimport memset

cdef enum:
    ROWS = 32

# hidden activations and output functions, as scikit-learn names them
cdef enum:
    RELU = 0
    IDENTITY = 1
    TANH = 2
    LOGISTIC = 3
    SOFTMAX = 4
    EXP = 5


cdef inline double _activate(double z, int activation) noexcept nogil:
    if activation == RELU:
        return z if z > 0.0 else 0.0
    if activation == TANH:
        return tanh(z)
    if activation == LOGISTIC:
        return 1.0 / (1.0 + exp(-z))
    if activation == EXP:
        return exp(z)
    return z


cdef void _one_coalition(
    Py_ssize_t s,
    const double* XT, Py_ssize_t n_rows,
    const unsigned char* masks, Py_ssize_t n_masks, Py_ssize_t n_features,
    const double* background, Py_ssize_t n_background,
    const double* W1, const double* b1, Py_ssize_t H,
    const double* W2, const double* b2, Py_ssize_t K,
    int activation, int out_fn,
    double* out,
    double* part_b, double* part_x, double* hidden, double* acc, double* total,
) noexcept nogil:
    cdef const unsigned char* mask = masks + s * n_features
    cdef Py_ssize_t b, h, j, k, r, r0, nr
    cdef double v, w, z, top, norm
    cdef double* row_b
    cdef double* xh
    # the background rows' parts: b1 + Σ_{j ∉ S} b_j W1[j]
    for b in range(n_background):
        row_b = part_b + b * H
        for h in range(H):
            row_b[h] = b1[h]
        for j in range(n_features):
            if mask[j]:
                continue
            v = background[b * n_features + j]
            for h in range(H):
                row_b[h] += v * W1[j * H + h]
    r0 = 0
    while r0 < n_rows:
        nr = min(<Py_ssize_t> ROWS, n_rows - r0)
        # the rows' parts Σ_{j ∈ S} x_j W1[j], [unit][row]; rows past nr stay 0
        memset(part_x, 0, H * ROWS * sizeof(double))
        for j in range(n_features):
            if not mask[j]:
                continue
            for h in range(H):
                w = W1[j * H + h]
                xh = part_x + h * ROWS
                for r in range(nr):
                    xh[r] += w * XT[j * n_rows + r0 + r]
        memset(total, 0, K * ROWS * sizeof(double))
        for b in range(n_background):
            row_b = part_b + b * H
            memset(acc, 0, K * ROWS * sizeof(double))
            for h in range(H):
                v = row_b[h]
                xh = part_x + h * ROWS
                if activation == RELU:
                    for r in range(ROWS):
                        z = xh[r] + v
                        hidden[r] = z if z > 0.0 else 0.0
                else:
                    for r in range(ROWS):
                        hidden[r] = _activate(xh[r] + v, activation)
                for k in range(K):
                    w = W2[h * K + k]
                    for r in range(ROWS):
                        acc[k * ROWS + r] += w * hidden[r]
            # the output function of each (row, background row), then the mean
            for r in range(nr):
                if out_fn == SOFTMAX:
                    top = acc[r] + b2[0]
                    for k in range(1, K):
                        top = max(top, acc[k * ROWS + r] + b2[k])
                    norm = 0.0
                    for k in range(K):
                        z = exp(acc[k * ROWS + r] + b2[k] - top)
                        acc[k * ROWS + r] = z
                        norm += z
                    for k in range(K):
                        total[k * ROWS + r] += acc[k * ROWS + r] / norm
                else:
                    for k in range(K):
                        total[k * ROWS + r] += _activate(
                            acc[k * ROWS + r] + b2[k], out_fn
                        )
        for r in range(nr):
            for k in range(K):
                out[((r0 + r) * n_masks + s) * K + k] = (
                    total[k * ROWS + r] / n_background
                )
        r0 += ROWS


def marginal_values(
    const double[:, ::1] XT,
    const unsigned char[:, ::1] masks,
    const double[:, ::1] background,
    const double[:, ::1] W1,
    const double[::1] b1,
    const double[:, ::1] W2,
    const double[::1] b2,
    int activation,
    int out_fn,
    double[:, :, ::1] out,
    int n_threads,
):
    """Fill ``out (n_rows, n_masks, K)`` with the marginal game's values.

    ``XT (n_features, n_rows)``: the rows, transposed; ``masks (n_masks,
    n_features)``: 1 where the feature comes from the row; ``background
    (n_background, n_features)``; ``W1 (n_features, H)``, ``b1 (H,)``, ``W2 (H, K)``,
    ``b2 (K,)``; ``activation`` and ``out_fn``: 0 relu, 1 identity, 2 tanh,
    3 logistic (the output only: 4 softmax, 5 exp).
    """
    cdef Py_ssize_t n_rows = XT.shape[1], n_features = XT.shape[0]
    cdef Py_ssize_t n_masks = masks.shape[0], n_background = background.shape[0]
    cdef Py_ssize_t H = W1.shape[1], K = W2.shape[1], s
    cdef Py_ssize_t n_threads_used, per_thread, t
    cdef double[:, ::1] scratch
    if n_rows == 0 or n_masks == 0:
        return
    if (
        masks.shape[1] != n_features or background.shape[1] != n_features
        or W1.shape[0] != n_features or b1.shape[0] != H or W2.shape[0] != H
        or b2.shape[0] != K or n_background == 0 or H == 0 or K == 0
        or out.shape[0] != n_rows or out.shape[1] != n_masks or out.shape[2] != K
    ):
        raise ValueError("marginal_values: inconsistent array shapes.")
    n_threads_used = max(1, min(n_threads, n_masks))
    # each thread's buffers: background parts, row parts, hidden units, sums
    per_thread = n_background * H + H * ROWS + ROWS + 2 * K * ROWS
    scratch = np.empty((n_threads_used, per_thread))
    with nogil, parallel(num_threads=n_threads_used):
        for s in prange(n_masks, schedule="dynamic"):
            t = threadid()
            _one_coalition(
                s, &XT[0, 0], n_rows, &masks[0, 0], n_masks, n_features,
                &background[0, 0], n_background, &W1[0, 0], &b1[0], H,
                &W2[0, 0], &b2[0], K, activation, out_fn, &out[0, 0, 0],
                &scratch[t, 0],
                &scratch[t, n_background * H],
                &scratch[t, n_background * H + H * ROWS],
                &scratch[t, n_background * H + H * ROWS + ROWS],
                &scratch[t, n_background * H + H * ROWS + ROWS + K * ROWS],
            )


cdef void _first_last_row(
    const double* x, const double* baseline, Py_ssize_t n_features,
    const long long* indptr, const long long* indices, Py_ssize_t d,
    const double* W1, const double* empty, Py_ssize_t H,
    const double* W2, const double* b2, Py_ssize_t K,
    int activation, int out_fn,
    double* out, double* full, double* part, double* pre, double* acc,
) noexcept nogil:
    """One row's network outputs on its ``C = 2d + 2`` first-last coalitions.

    ``part`` holds each player's share of ``(x − b) W1`` (``[player][unit]``, built
    along ``W1``'s rows, in vectors); ``pre`` holds ``[unit][coalition]``
    (coalitions innermost, in vectors): the singletons' pre-activations ``empty +
    part_p``, the leave-one-outs' ``full − part_p``, then ``full`` and ``empty``.
    """
    cdef Py_ssize_t C = 2 * d + 2, h, j, p, k, c, q
    cdef double v, z, top, norm, w
    cdef double* ph
    cdef double* pp
    cdef const double* wj
    for h in range(H):
        full[h] = empty[h]
    for j in range(n_features):
        v = x[j] - baseline[j]
        wj = W1 + j * H
        for h in range(H):
            full[h] += v * wj[h]
    for p in range(d):
        pp = part + p * H
        for h in range(H):
            pp[h] = 0.0
        for q in range(indptr[p], indptr[p + 1]):
            j = indices[q]
            v = x[j] - baseline[j]
            wj = W1 + j * H
            for h in range(H):
                pp[h] += v * wj[h]
    for h in range(H):
        ph = pre + h * C
        for p in range(d):
            ph[p] = empty[h] + part[p * H + h]
            ph[d + p] = full[h] - part[p * H + h]
        ph[2 * d] = full[h]
        ph[2 * d + 1] = empty[h]
        if activation == RELU:
            for c in range(C):
                z = ph[c]
                ph[c] = z if z > 0.0 else 0.0
        elif activation != IDENTITY:
            for c in range(C):
                ph[c] = _activate(ph[c], activation)
    for k in range(K):
        for c in range(C):
            acc[k * C + c] = b2[k]
    for h in range(H):
        ph = pre + h * C
        for k in range(K):
            w = W2[h * K + k]
            for c in range(C):
                acc[k * C + c] += w * ph[c]
    for c in range(C):
        if out_fn == SOFTMAX:
            top = acc[c]
            for k in range(1, K):
                top = max(top, acc[k * C + c])
            norm = 0.0
            for k in range(K):
                z = exp(acc[k * C + c] - top)
                acc[k * C + c] = z
                norm += z
            for k in range(K):
                out[c * K + k] = acc[k * C + c] / norm
        else:
            for k in range(K):
                out[c * K + k] = _activate(acc[k * C + c], out_fn)


def first_last_values(
    const double[:, ::1] X,
    const double[::1] baseline,
    const long long[::1] indptr,
    const long long[::1] indices,
    const double[:, ::1] W1,
    const double[::1] b1,
    const double[:, ::1] W2,
    const double[::1] b2,
    int activation,
    int out_fn,
    double[:, :, ::1] out,
    int n_threads,
):
    """Fill ``out (n_rows, 2d + 2, K)`` with the network's outputs on every row's
    singletons, leave-one-outs, grand and empty coalitions against ``baseline``.

    ``indptr (d + 1,)`` and ``indices``: each player's features (CSR); the rest as
    in :func:`marginal_values`. Rows are spread over OpenMP threads, each value
    computed by one thread in a fixed order.
    """
    cdef Py_ssize_t n_rows = X.shape[0], n_features = X.shape[1]
    cdef Py_ssize_t d = indptr.shape[0] - 1, H = W1.shape[1], K = W2.shape[1]
    cdef Py_ssize_t C = 2 * d + 2, r, t, h, j, per_thread
    cdef double[:, ::1] scratch
    cdef double[::1] empty
    if n_rows == 0:
        return
    if (
        baseline.shape[0] != n_features or W1.shape[0] != n_features
        or b1.shape[0] != H or W2.shape[0] != H or b2.shape[0] != K
        or out.shape[0] != n_rows or out.shape[1] != C or out.shape[2] != K
        or H == 0 or K == 0
    ):
        raise ValueError("first_last_values: inconsistent array shapes.")
    empty = np.empty(H)
    for h in range(H):
        empty[h] = b1[h]
    for j in range(n_features):
        for h in range(H):
            empty[h] += baseline[j] * W1[j, h]
    n_threads = max(1, min(n_threads, n_rows))
    # each thread's buffers: the row's pre-activation, the players' parts, the
    # coalitions' pre-activations, the outputs' sums
    per_thread = H + d * H + H * C + K * C
    scratch = np.empty((n_threads, per_thread))
    with nogil, parallel(num_threads=n_threads):
        for r in prange(n_rows, schedule="static"):
            t = threadid()
            _first_last_row(
                &X[r, 0], &baseline[0], n_features, &indptr[0], &indices[0], d,
                &W1[0, 0], &empty[0], H, &W2[0, 0], &b2[0], K,
                activation, out_fn, &out[r, 0, 0],
                &scratch[t, 0], &scratch[t, H], &scratch[t, H + d * H],
                &scratch[t, H + d * H + H * C],
            )
