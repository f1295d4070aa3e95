"""Sphinx configuration of the deepinv-energy documentation."""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))
import deepinv_energy  # noqa: E402

project = "deepinv-energy"
author = "deepinv-energy developers"
copyright = "2026, deepinv-energy developers"
release = deepinv_energy.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "sphinx_gallery.gen_gallery",
]
autosummary_generate = True
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "none"
nitpicky = False
exclude_patterns = ["_build", "examples", "sg_execution_times.rst", "auto_examples/*.ipynb", "auto_examples/*.py.md5", "auto_examples/*.zip"]
templates_path = []

sphinx_gallery_conf = {
    "examples_dirs": "examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "download_all_examples": False,
    "remove_config_comments": True,
    "abort_on_example_error": True,
}

html_theme = "pydata_sphinx_theme"
html_title = "deepinv-energy"
html_theme_options = {"navigation_depth": 2, "show_toc_level": 2}
html_static_path = []
