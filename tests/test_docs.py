"""The API reference (doc/api.rst) lists every public name."""

import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import pytest

API = Path(__file__).resolve().parents[1] / "doc" / "api.rst"
PUBLIC_MODULES = [
    "sklearn_shapley",
    "sklearn_shapley.games",
    "sklearn_shapley.sampling",
    "sklearn_shapley.metrics",
    "sklearn_shapley.tree",
    "sklearn_shapley.mlp",
    "sklearn_shapley.amortized",
    "sklearn_shapley.plotting",
    "sklearn_shapley.vision",
    "sklearn_shapley.vision.metrics",
]


def public_names(module):
    """``__all__``, or the functions and classes a module without one defines."""
    if hasattr(module, "__all__"):
        return list(module.__all__)
    return [
        name
        for name, obj in vars(module).items()
        if not name.startswith("_")
        and (inspect.isfunction(obj) or inspect.isclass(obj))
        and obj.__module__ == module.__name__
    ]


def documented_objects():
    """The objects api.rst documents (autosummary entries and ``data`` directives)."""
    objects, current, in_table = [], None, False
    for line in API.read_text().splitlines():
        if line.startswith(".. currentmodule::"):
            current = line.split("::")[1].strip()
        elif line.startswith(".. autosummary::"):
            in_table = True
        elif in_table and re.fullmatch(r"   [A-Za-z_][\w.]*", line):
            objects.append(pkgutil.resolve_name(f"{current}.{line.strip()}"))
        elif line.startswith(".. data::"):
            name = line.split("::")[1].strip()
            objects.append(pkgutil.resolve_name(f"{current}.{name}"))
            in_table = False
        elif in_table and line and not line.startswith("   "):
            in_table = False
    return objects


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_api_reference_lists_every_public_name(module_name):
    module = importlib.import_module(module_name)
    documented = documented_objects()
    missing = [
        name
        for name in public_names(module)
        if not any(getattr(module, name) is obj for obj in documented)
    ]
    assert not missing, f"add to doc/api.rst: {module_name}.{missing}"
