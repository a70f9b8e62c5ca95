"""``show_versions()``: the build (OpenMP or serial) and the versions of the stack."""

from __future__ import annotations

import importlib
import platform
import sys


def build_info():
    """Dict describing how the compiled extensions were built."""
    from ._openmp import effective_n_threads, openmp_enabled
    from .mlp._marginal import kernel_build as mlp_kernel_build
    from .tree._kernel import kernel_build

    return {
        "openmp": openmp_enabled(),
        "threads": effective_n_threads(None),
        "tree_kernel": kernel_build(),
        "mlp_kernel": mlp_kernel_build(),
    }


def show_versions():
    """Print the build configuration and the versions of the dependencies."""
    from . import __version__

    info = build_info()
    lines = [
        f"sklearn_shapley: {__version__}",
        f"python: {sys.version.split()[0]} ({platform.platform()})",
        "build: "
        + (
            f"OpenMP enabled ({info['threads']} threads available)"
            if info["openmp"]
            else "serial (built without OpenMP)"
        ),
        f"tree kernel: {info['tree_kernel']}",
        f"MLP kernel: {info['mlp_kernel']}",
    ]
    for name in (
        "numpy",
        "scipy",
        "sklearn",
        "torch",
        "skorch",
        "xgboost",
        "lightgbm",
        "shap",
        "shapiq",
    ):
        try:
            module = importlib.import_module(name)
            version = getattr(module, "__version__", None) or _dist_version(name)
            lines.append(f"{name}: {version}")
        except ImportError:
            lines.append(f"{name}: not installed")
    print("\n".join(lines))


def _dist_version(name):
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version({"sklearn": "scikit-learn"}.get(name, name))
    except PackageNotFoundError:
        return "unknown"
