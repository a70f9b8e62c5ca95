"""Which build of a compiled kernel runs: the AVX2 + FMA one where the CPU has both."""

from __future__ import annotations

import importlib
import os

from ._cpu import cpu_has_avx2_fma

__all__ = ["cpu_has_avx2_fma", "select_build"]


def select_build(portable):
    """The ``<name>_avx2`` build of the extension module ``portable`` where the CPU
    runs AVX2 and FMA and that build exists (setup.py compiles it on x86-64 only),
    else ``portable``; ``SKLEARN_SHAPLEY_KERNEL=portable`` forces the latter."""
    if os.environ.get("SKLEARN_SHAPLEY_KERNEL", "").strip().lower() == "portable":
        return portable
    if not cpu_has_avx2_fma():
        return portable
    try:
        return importlib.import_module(f"{portable.__name__}_avx2")
    except ImportError:  # not built on this platform
        return portable
