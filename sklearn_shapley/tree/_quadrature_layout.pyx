"""The data of the Quadrature-TreeSHAP kernel, compiled once for every instruction set.

``tree_layout`` lists each tree's nodes in the pre-order the kernel walks and
``tree_structure`` measures the trees; ``KernelData`` holds a prepared ensemble and its
quadrature as the kernel reads them; and the kernel's calls allocate their per-thread
buffers, check shapes and size their blocks of rows here. None of it depends on the
instruction set, so both builds of the kernel (:mod:`._quadrature`,
:mod:`._quadrature_avx2`) cimport it from this one module (see ``_quadrature.pyx``).
"""

from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t
from libc.stdlib cimport calloc, free, malloc

from ._quadrature_lanes cimport LANES, RL

import numpy as np

#: quadrature arrays handed to the kernel hold a multiple of this many points per tree
QUADRATURE_LANES = LANES


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


cdef class KernelData:
    """Typed views of a prepared FlatEnsemble and its quadrature (built by _kernel)."""

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
