"""Sphinx configuration of plait's site: ``make docs`` builds it into docs/_build/html."""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the plait of this tree, not an installed one
sys.path.insert(0, str(HERE / "_ext"))

import plait  # noqa: E402

project = "plait"
author = "the plait authors"
copyright = "the plait authors"
release = version = plait.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.intersphinx",
    "python_inventory",
    "plait_api",
]

root_doc = "index"
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
# the recorded benchmark report is a part of benchmarks.md, not a page of its own
exclude_patterns = ["_build", "benchmarks/recorded"]

myst_enable_extensions = ["colon_fence"]  # ::: fences, for admonitions
myst_heading_anchors = 3  # [text](#a-heading) links

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True

html_theme = "furo"
html_title = f"plait {release}"
