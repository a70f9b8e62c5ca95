"""OpenMP helpers: whether the extensions were built with OpenMP, and thread counts.

This is the smallest parallel kernel of the package; the tree kernel uses the same
``effective_n_threads`` rule so ``n_jobs`` means one thing everywhere.
"""

import os

from cython.parallel cimport prange

cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    static int ss_openmp_enabled(void) { return 1; }
    static int ss_max_threads(void) { return omp_get_max_threads(); }
    static int ss_thread_num(void) { return omp_get_thread_num(); }
    #else
    static int ss_openmp_enabled(void) { return 0; }
    static int ss_max_threads(void) { return 1; }
    static int ss_thread_num(void) { return 0; }
    #endif
    """
    int ss_openmp_enabled() nogil
    int ss_max_threads() nogil
    int ss_thread_num() nogil


def openmp_enabled():
    """Return True if the compiled extensions use OpenMP threads."""
    return bool(ss_openmp_enabled())


def effective_n_threads(n_jobs=None):
    """Number of OpenMP threads to use for ``n_jobs``, as in scikit-learn.

    ``None`` means every thread OpenMP would use (``OMP_NUM_THREADS`` respected);
    a negative value counts back from the number of CPUs (``-1`` = all).
    Without OpenMP this is always 1.
    """
    if n_jobs == 0:
        raise ValueError("n_jobs == 0 has no meaning; use None, a positive or a negative int.")
    if not ss_openmp_enabled():
        return 1
    if n_jobs is None:
        return int(ss_max_threads())
    n_jobs = int(n_jobs)
    if n_jobs < 0:
        return max(1, (os.cpu_count() or 1) + 1 + n_jobs)
    return n_jobs


def parallel_thread_ids(Py_ssize_t n_items, int n_threads):
    """Thread id that processed each of ``n_items`` items in a static ``prange``.

    A test hook showing that the parallel loop runs (and how work is split).
    """
    cdef Py_ssize_t i
    ids = bytearray(n_items)
    cdef unsigned char[::1] out = ids
    for i in prange(n_items, nogil=True, schedule="static", num_threads=n_threads):
        out[i] = <unsigned char> ss_thread_num()
    return list(ids)
