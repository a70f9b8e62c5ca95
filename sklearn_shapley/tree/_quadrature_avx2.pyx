"""The Quadrature-TreeSHAP kernel of :mod:`._quadrature` compiled for AVX2 + FMA.

setup.py builds it with ``-mavx2 -mfma`` on x86-64 (and skips it elsewhere);
:mod:`._kernel` imports it only where :func:`sklearn_shapley._cpu.cpu_has_avx2_fma`
says the CPU runs it. The source is the same as the portable build's (see
``_quadrature.pyx``).
"""

from cython.parallel cimport prange, threadid
from libc.stdint cimport int64_t

# the lane operations (sk_* of _lanes.h, _mul, _sum, _mul_factor) and their types
from ._quadrature_lanes cimport *

from ._quadrature_layout cimport (
    BLOCKS_PER_THREAD,
    ROW_BLOCK,
    Ensemble,
    KernelData,
    PosInfo,
    Scratch,
    _alloc_all,
    _block_rows,
    _check_lanes,
    _check_shapes,
    _free_all,
)

import numpy as np

include "_quadrature_edges.pxi"
include "_quadrature_order1.pxi"
include "_quadrature_pairs.pxi"
include "_quadrature_orderk.pxi"
include "_quadrature_drivers.pxi"
