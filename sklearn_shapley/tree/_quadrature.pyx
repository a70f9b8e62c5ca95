"""Quadrature-TreeSHAP: the exact path-dependent SHAP kernel on flat tree arrays.

For a row ``x`` and a leaf ``l`` with distinct path features ``P_l``, every feature
``j`` of the path has a factor ``f_j(t) = (1 - t) z_j + t o_j`` (``z_j`` the product of
the cover ratios of the path's splits on ``j``, ``o_j`` the product of the indicators
that ``x`` follows those edges), and the Shapley interaction index of a set ``T`` is

    sum_l v_l * integral_0^1 prod_{i in T} (o_i - z_i) prod_{j in P_l \\ T} f_j(t) dt,

evaluated exactly by Gauss-Legendre quadrature with enough points for the tree.

Every row visits every node (a feature outside the coalition follows both branches), so
the depth-first order is the same for all rows: ``tree_layout`` lists each tree's nodes
in pre-order (left child first) with their depth, the feature of the edge into them,
``z`` and the position of the previous edge on the same feature above them. A row then
walks that list; only the indicators ``o`` depend on it, and ``o`` is 0 or 1.

First order and pairs carry the path polynomial ``P(t) = prod_j f_j(t)`` down at the
``Q`` quadrature nodes, bring the subtree sums ``H(t) = sum_{leaves below} v_l P_l(t)``
back up (pointwise addition), and extract at the edge ``e`` that sets feature ``i``'s
factor ``sum_q w_q H(t_q) (A_e - A_prev)(t_q)`` with ``A = (o - z) / f``: a deeper split
on a feature replaces its factor (the old one is divided out of ``P``) and telescopes
against it. ``1 / f`` for ``o = 1`` depends on the tree only, so it is tabulated once
per tree and block of rows (per depth on entry for trees too big for ``table_bytes``);
the three cases of an edge (followed, not followed, feature already left) are selected
without branches. Orders 1 and 2 walk each tree for 4 rows at once with every buffer
laid out ``[point][row]`` (one vector of 4 doubles per quadrature point,
``_lanes.h``), so the per-node work is shared and no point is padding. First order
makes one pass over the points per leaf (its ``P``, its extraction and ``v P`` folded
into the parent's ``H``; trees of one output and at least ``LEAF_FUSED_MIN_Q`` points)
and one per internal node on the way up (extraction and fold), besides the descent; the values the vector loops read are stored as vectors (scalar
stores read back as a vector stall the load), and the leaf values lie in layout order.
Pairs ``(i, j)`` are extracted
at the deeper of their edges against the live ``A`` of every other feature on the path
(``O(nodes * Q * D)``); each pair term is also taken off both diagonals there, so the
diagonal ends as ``phi_i`` minus the rest of its row without a pass over the ``d x d``
matrix. Orders ``k >= 3`` walk one row, each tree's rule padded with zero-weight points
to a multiple of ``LANES`` so inner loops have a fixed width, and use leaf extraction
over the precomputed ``k``-subsets of each leaf's features, with prefix products over
the combinations.

Rows are spread over OpenMP threads in blocks with a dynamic ``prange`` (each tree is
walked for a whole block while it is in cache; blocks of ``ROW_BLOCK`` rows, smaller
where there are too few rows to give every thread ``BLOCKS_PER_THREAD`` of them); each
row is computed by one thread in a fixed order, so results are bit-identical for any
thread count.

This is the portable build; ``_quadrature_avx2`` is the same source compiled for
AVX2 + FMA, which :mod:`._kernel` takes where the CPU has both. The source is laid out
as scikit-learn's ``_hist_gradient_boosting`` keeps its code: the lane operations and
the types they share in ``_quadrature_lanes.pxd`` (inline, compiled by each build);
one ``.pxi`` per part of the walk (``_quadrature_edges``: the steps every order
shares; ``_order1``, ``_pairs``, ``_orderk``; ``_drivers``: the row blocks of orders 1
and 2); and what does not depend on the instruction set (the tree layout,
``KernelData``, the per-thread buffers) compiled once in :mod:`._quadrature_layout`.
"""

include "_quadrature_kernel.pxi"
