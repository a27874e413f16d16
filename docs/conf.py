"""Sphinx configuration of the documentation site (``sphinx-build -W docs docs/_build``)."""

from __future__ import annotations

import os
import tempfile

# Importing the provider imports Airflow, which writes a configuration into its home
# (a temporary one, removed at exit).
_airflow_home = tempfile.TemporaryDirectory(prefix="airflow-provider-flux-docs-")
os.environ.setdefault("AIRFLOW_HOME", _airflow_home.name)

import airflow_provider_flux  # noqa: E402

project = "airflow-provider-flux"
copyright = "the airflow-provider-flux authors"
release = airflow_provider_flux.__version__
version = release

extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinx.ext.viewcode"]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]
html_theme = "furo"
html_title = f"airflow-provider-flux {release}"

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
