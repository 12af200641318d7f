"""Sphinx configuration for flask_dispatch."""

from __future__ import annotations

import importlib.metadata

project = "flask_dispatch"
copyright = "2026, the flask_dispatch developers"
release = importlib.metadata.version("flask-dispatch")
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.intersphinx",
    "pallets_sphinx_themes",
]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_preserve_defaults = True
intersphinx_mapping = {}
nitpicky = False

html_theme = "flask"
html_context = {}
html_theme_options = {"index_sidebar_logo": False}
html_title = f"flask_dispatch {version}"
html_show_sourcelink = False
html_sidebars = {"**": ["localtoc.html", "relations.html", "searchbox.html"]}
