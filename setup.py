"""Build script: the Cython extensions, compiled with OpenMP where the compiler has it.

Every ``*.pyx`` file under ``sklearn_shapley/`` becomes an extension module. OpenMP is
probed by compiling and linking a tiny program with ``-fopenmp``; when that fails (or
``SKLEARN_SHAPLEY_NO_OPENMP=1`` is set) the extensions are built serial, and
``sklearn_shapley.show_versions()`` says which at import. A module whose name ends in
``_avx2`` (a kernel's second build, from the same sources as the portable one) is
compiled with ``-mavx2 -mfma`` on x86 and skipped elsewhere; the package imports it
only where ``sklearn_shapley._cpu.cpu_has_avx2_fma()`` says the CPU runs both.
"""

import os
import platform
import shutil
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools._distutils.ccompiler import new_compiler
from setuptools._distutils.errors import CompileError, LinkError
from setuptools._distutils.sysconfig import customize_compiler

HERE = Path(__file__).parent.resolve()


def openmp_flags():
    """Return ``(compile_args, link_args)`` for OpenMP, or ``([], [])`` if unsupported."""
    if os.environ.get("SKLEARN_SHAPLEY_NO_OPENMP", "0") not in ("", "0"):
        print("sklearn_shapley: OpenMP disabled by SKLEARN_SHAPLEY_NO_OPENMP")
        return [], []
    if sys.platform == "win32":
        candidates = [(["/openmp"], [])]
    elif sys.platform == "darwin":
        candidates = [
            (["-Xpreprocessor", "-fopenmp"], ["-lomp"]),
            (["-fopenmp"], ["-fopenmp"]),
        ]
    else:
        candidates = [(["-fopenmp"], ["-fopenmp"])]
    code = textwrap.dedent(
        """
        #include <omp.h>
        #include <stdio.h>
        int main(void) {
            int n = 0;
            #pragma omp parallel reduction(+:n)
            n += 1;
            printf("%d", n > 0);
            return 0;
        }
        """
    )
    compiler = new_compiler()
    customize_compiler(compiler)
    for compile_args, link_args in candidates:
        tmp = tempfile.mkdtemp()
        try:
            src = os.path.join(tmp, "probe.c")
            with open(src, "w") as f:
                f.write(code)
            objects = compiler.compile(
                [src], output_dir=tmp, extra_postargs=compile_args
            )
            compiler.link_executable(
                objects, "probe", output_dir=tmp, extra_postargs=link_args
            )
        except (CompileError, LinkError, OSError):
            continue
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        print(f"sklearn_shapley: building with OpenMP ({' '.join(compile_args)})")
        return compile_args, link_args
    print("sklearn_shapley: OpenMP not found, building serial extensions")
    return [], []


def extensions():
    omp_compile, omp_link = openmp_flags()
    optimise = ["/O2"] if sys.platform == "win32" else ["-O3"]
    modules = []
    x86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")
    for pyx in sorted((HERE / "sklearn_shapley").rglob("*.pyx")):
        rel = pyx.relative_to(HERE)
        name = ".".join(rel.with_suffix("").parts)
        simd = []
        if name.endswith("_avx2"):
            # a variant of a portable module compiled for AVX2 + FMA, imported only
            # where the CPU runs both (x86 with GCC / Clang; skipped elsewhere)
            if not x86 or sys.platform == "win32":
                continue
            simd = ["-mavx2", "-mfma"]
        modules.append(
            Extension(
                name,
                [str(rel)],
                include_dirs=[np.get_include()],
                define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
                extra_compile_args=optimise + simd + omp_compile,
                extra_link_args=omp_link,
            )
        )
    return cythonize(
        modules,
        compiler_directives={
            "language_level": 3,
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
        },
    )


setup(ext_modules=extensions())
