"""The marginal-game kernel of :mod:`._kernel` compiled for AVX2 + FMA.

setup.py builds it with ``-mavx2 -mfma`` on x86-64 (and skips it elsewhere);
:mod:`._marginal` imports it only where the CPU runs it.
"""

include "_kernel_impl.pxi"
