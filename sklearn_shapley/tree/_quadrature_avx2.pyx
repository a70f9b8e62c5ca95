"""The Quadrature-TreeSHAP kernel of :mod:`._quadrature` compiled for AVX2 + FMA.

setup.py builds it with ``-mavx2 -mfma`` on x86-64 (and skips it elsewhere);
:mod:`._kernel` imports it only where :func:`sklearn_shapley._cpu.cpu_has_avx2_fma`
says the CPU runs it. The source is the same as the portable build's (see
``_quadrature.pyx``).
"""

include "_quadrature_kernel.pxi"
