"""Sphinx configuration for sknc.

The build is offline and strict: ``sphinx -n -W`` (every reference resolved,
every warning an error) runs in the test suite. The gallery executes every
``examples/plot_*.py`` on the CPU; the metrics reference table is generated
from ``sknc.metrics.REPORT_KEYS`` so it cannot drift from the code.
"""

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
os.environ.setdefault("MPLBACKEND", "Agg")

import sknc  # noqa: E402
from sknc.metrics import REPORT_KEYS  # noqa: E402

project = "sknc"
author = "sknc developers"
copyright = "2026, sknc developers"
release = sknc.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",  # MathJax shipped with the pages: math renders without a network (no CDN)
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

autosummary_generate = True
autodoc_default_options = {"members": True, "inherited-members": False}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
numpydoc_validation_checks = set()
templates_path = ["_templates"]
exclude_patterns = ["_build", "**.ipynb_checkpoints", "auto_examples/*.py", "auto_examples/*.ipynb",
                    "auto_examples/*.zip", "auto_examples/*.md5", "auto_examples/*.json"]
suppress_warnings = ["autosummary.import_cycle"]

# Offline build: objects of other projects cannot be resolved (no intersphinx), so references to
# them are accepted by name. Everything of sknc itself must resolve.
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(numpy|np|pandas|pd|torch|skorch|sklearn|scipy|matplotlib|joblib|dask|distributed)(\..*)?"),
    (r"py:.*", r"(array-like|array_like|ndarray|Series|DataFrame|Tensor|Module|Figure|Axes|optional|default.*)"),
    (r"py:.*", r"(int|float|str|bool|dict|list|tuple|callable|None|object|iterable|sequence|RandomState)( .*)?"),
    (r"py:.*", r"(of|or|shape|like|in|with|and|any)( .*)?"),
]

html_theme = "pydata_sphinx_theme"
html_title = f"sknc {release}"
html_static_path = []
html_theme_options = {
    "navigation_depth": 2,
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc"],
}

sphinx_gallery_conf = {
    "examples_dirs": str(HERE.parent / "examples"),
    "gallery_dirs": str(HERE / "auto_examples"),
    "filename_pattern": r"/plot_",
    "ignore_pattern": r"(/data/|__init__\.py)",
    "image_scrapers": ("matplotlib",),
    "abort_on_example_error": True,
    "remove_config_comments": True,
    "min_reported_time": 0,
    "show_memory": False,
    "download_all_examples": False,
    "within_subsection_order": "FileNameSortKey",
}


def _write_metrics_table():
    """docs/generated/metrics_table.rst: one row per report key, from the registry in the code."""
    from sknc.metrics._report import nc_report
    import inspect

    defaults = inspect.signature(nc_report).parameters
    rows = []
    for info in REPORT_KEYS:
        conventions = ", ".join(
            f"``{name}={defaults[name].default!r}``" if name in defaults else f"``{name}``"
            for name in info.conventions
        ) or "none"
        better = {True: "lower", False: "higher", None: "count"}[info.lower_is_better]
        needs = f" (needs {info.needs})" if info.needs else ""
        rows.append([f"``{info.key}``", f"{info.meaning}{needs}".replace("|", "\\|"), f":math:`{info.formula}`", conventions,
                     info.reference or "-", info.nan_when.replace("|", "\\|"), better])
    lines = [".. list-table::", "   :header-rows: 1", "   :widths: 12 22 26 14 12 18 6", "",
             "   * - key", "     - meaning", "     - formula", "     - conventions (default)",
             "     - follows", "     - NaN when", "     - better"]
    for row in rows:
        lines.append(f"   * - {row[0]}")
        lines += [f"     - {cell}" for cell in row[1:]]
    out = HERE / "generated"
    out.mkdir(exist_ok=True)
    (out / "metrics_table.rst").write_text("\n".join(lines) + "\n")


_write_metrics_table()


def _documented_names():
    """Short name -> the full name under which the API page documents it (``sknc.X`` for re-exports)."""
    import importlib

    table = {}
    for module in ("metrics", "geometry", "theory", "ufm", "extract", "classifier", "decision", "losses", "nn",
                   "callbacks", "scoring", "study", "transformers", "model_selection", "datasets", "plotting",
                   "exceptions"):
        mod = importlib.import_module(f"sknc.{module}")
        for name in getattr(mod, "__all__", []):
            table.setdefault(name, f"sknc.{name}" if name in sknc.__all__ else f"sknc.{module}.{name}")
    return table


_DOCUMENTED = _documented_names()


def _resolve_sknc_reference(app, env, node, contnode):
    """``sknc.extract.model_nc_report`` or a bare ``nc_report`` in a module docstring -> where it is documented."""
    if node.get("refdomain") != "py":
        return None
    target = node.get("reftarget", "")
    name = target.rsplit(".", 1)[-1]
    full = _DOCUMENTED.get(name)
    if full is None or full == target or not (target == name or target.startswith("sknc.")):
        return None
    domain = env.get_domain("py")
    return domain.resolve_xref(env, node["refdoc"], app.builder, node["reftype"], full, node, contnode)


def _skip_metadata_requests(app, what, name, obj, skip, options):
    """scikit-learn generates ``set_<method>_request`` for every estimator; their docs are sklearn's."""
    if name.startswith("set_") and name.endswith("_request"):
        return True
    return None


def setup(app):
    app.connect("missing-reference", _resolve_sknc_reference)
    app.connect("autodoc-skip-member", _skip_metadata_requests)
