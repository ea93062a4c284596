"""Sphinx configuration for the pytest-rngguard documentation (MyST Markdown, furo)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pytest_rngguard import __version__  # noqa: E402

project = "pytest-rngguard"
author = "The pytest-rngguard developers"
copyright = "the pytest-rngguard developers"
version = release = __version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.intersphinx",
]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]

myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

html_theme = "furo"
html_title = f"pytest-rngguard {release}"

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True}

# Inventories cannot be fetched without network, and a failed fetch is a warning that
# -W turns into an error: offline builds (RNGGUARD_DOCS_OFFLINE=1, set by tox's docs
# environment and the test suite) leave cross-project links as plain literals.
intersphinx_mapping = {}
if not os.environ.get("RNGGUARD_DOCS_OFFLINE"):
    intersphinx_mapping = {
        "python": ("https://docs.python.org/3/", None),
        "pytest": ("https://docs.pytest.org/en/stable/", None),
        "numpy": ("https://numpy.org/doc/stable/", None),
        "torch": ("https://pytorch.org/docs/stable/", None),
    }
intersphinx_timeout = 10
