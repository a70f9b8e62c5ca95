"""What the CPU runs: the probe that picks a kernel's AVX2 + FMA build (``_simd``).

Compiled once, for the portable instruction set, so that it runs on any CPU.
"""

cdef extern from *:
    """
    static int ss_cpu_has_avx2_fma(void)
    {
    #if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    #else
        return 0;
    #endif
    }
    """
    int ss_cpu_has_avx2_fma() nogil


def cpu_has_avx2_fma():
    """Whether this CPU runs AVX2 and FMA instructions."""
    return bool(ss_cpu_has_avx2_fma())
