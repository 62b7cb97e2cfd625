"""Sphinx configuration for sknc (builds offline; CI builds with -W)."""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

project = "sknc"
author = "sknc developers"
copyright = "2026, sknc developers"
release = "0.1.0"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
]
autosummary_generate = True
autodoc_default_options = {"members": True, "inherited-members": False}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
templates_path = ["_templates"]
exclude_patterns = ["_build"]
html_theme = "alabaster"
html_static_path = []
nitpicky = False
suppress_warnings = ["autosummary.import_cycle"]
