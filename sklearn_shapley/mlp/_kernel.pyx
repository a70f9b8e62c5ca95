"""The exact marginal game of a one-hidden-layer perceptron, on flat arrays.

For the network ``f(z) = out(W2ᵀ act(W1ᵀ z + b1) + b2)`` and a background ``B``, the
marginal game is ``v_x(S) = mean_{b ∈ B} f(x_S, b_{¬S})``. The hidden pre-activation
of the hybrid row splits into a part of the row and a part of the background row,

    W1ᵀ (x_S, b_{¬S}) + b1 = Σ_{j ∈ S} x_j W1[j] + (b1 + Σ_{j ∉ S} b_j W1[j]),

so for each coalition the background parts (``n_background × H``) are computed once
and the rows' parts once per block of rows, and each (row, coalition, background row)
costs one add, one activation and one multiply-add per hidden unit and output,
instead of the ``n_features × H`` of the first layer. Blocks of ``ROWS`` rows are laid
out ``[unit][row]`` so the inner loops run over rows, in vectors.

``first_last_values`` gives the same network's values on every row's singletons and
leave-one-outs against one baseline row ``b``: player ``i``'s singleton's
pre-activation is ``b``'s plus ``i``'s share of ``(x − b) W1``, its leave-one-out's
the row's minus it, so ``2d`` coalitions cost ``d`` shares and ``2d`` hidden layers.

Coalitions are spread over OpenMP threads with a dynamic ``prange``; each value is
computed by one thread in a fixed order, so results are bit-identical for any thread
count.

This is the portable build; ``_kernel_avx2`` is the same source (``_kernel_impl.pxi``)
compiled for AVX2 + FMA, which :mod:`._marginal` takes where the CPU has both
(measured: 1.5x faster on one thread).
"""

include "_kernel_impl.pxi"
