"""Sphinx configuration for the sklearn_shapley documentation.

Build from this folder with ``python -m sphinx -W --keep-going -b html . _build/html``.
The API pages (``generated/``) and the gallery (``auto_examples/``, made by running
every ``examples/plot_*.py``) are generated during the build and not tracked.
"""

import os

import sklearn_shapley

project = "sklearn_shapley"
release = sklearn_shapley.__version__
version = release
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]
exclude_patterns = ["_build"]

# A class page documents its own methods and those of its sklearn_shapley bases; the
# methods every scikit-learn estimator has (get_params, set_output, ...) are left to
# scikit-learn's documentation (see _templates/autosummary/class.rst).
templates_path = ["_templates"]
autosummary_generate = True
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False

html_theme = "pydata_sphinx_theme"
html_title = f"sklearn_shapley {release}"
html_theme_options = {"navigation_with_keys": False, "show_toc_level": 2}

# Every example runs during the build (each is sized to run in well under a minute);
# the figures open at the end of a cell are shown below it.
os.environ.setdefault("MPLBACKEND", "Agg")
sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "download_all_examples": False,
    "doc_module": ("sklearn_shapley",),
    "backreferences_dir": "generated",
    "min_reported_time": 1,
}


def skip_metadata_request_methods(app, what, name, obj, skip, options):
    """Leave out ``set_*_request``: scikit-learn generates them on every estimator."""
    if name.startswith("set_") and name.endswith("_request"):
        return True
    return None


def setup(app):
    app.connect("autodoc-skip-member", skip_metadata_request_methods)
