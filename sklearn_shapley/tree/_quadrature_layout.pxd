# The data of the Quadrature-TreeSHAP kernel, compiled once (_quadrature_layout.pyx):
# the pre-order layout of the trees, the prepared ensemble (KernelData), each thread's
# buffers and the checks and block sizes of a call. The kernel builds of both
# instruction sets (_quadrature.pyx, _quadrature_avx2.pyx) cimport it.

from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t

cdef enum:
    # rows per work item: each tree is walked for a block of rows while in cache
    ROW_BLOCK = 32
    # fewer rows than ROW_BLOCK * this per thread: smaller blocks (see _block_rows)
    BLOCKS_PER_THREAD = 4


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


cdef class KernelData:
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


cdef Scratch* _scratch_new(const Ensemble* E, Py_ssize_t order,
                           bint rows) noexcept nogil
cdef void _scratch_free(Scratch* s) noexcept nogil
cdef Scratch** _alloc_all(const Ensemble* E, int n_threads, Py_ssize_t order,
                          bint rows) except NULL
cdef void _free_all(Scratch** scr, int n) noexcept
cdef int _check_lanes(KernelData kd) except -1
cdef Py_ssize_t _block_rows(Py_ssize_t n, int n_threads) noexcept
cdef int _check_shapes(const Ensemble* E, Py_ssize_t n, Py_ssize_t d, Py_ssize_t n_out,
                       Py_ssize_t out_cols, Py_ssize_t out_k) except -1
