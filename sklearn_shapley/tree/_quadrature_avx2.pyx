"""The Quadrature-TreeSHAP kernel of :mod:`sklearn_shapley.tree._quadrature`, compiled
with ``-mavx2 -mfma`` (setup.py adds them to modules whose name ends in ``_avx2``):
the lane loops run as 256-bit FMA vectors. ``_kernel`` uses it when the CPU reports
both features (``sklearn_shapley._openmp.cpu_has_avx2_fma``)."""

include "_quadrature_impl.pxi"
