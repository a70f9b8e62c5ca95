# The kernel both builds compile (_quadrature.pyx, _quadrature_avx2.pyx): its
# imports, then one .pxi per part of the walk.

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
