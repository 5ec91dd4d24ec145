"""Sphinx configuration for zerocopy's documentation (Sphinx + MyST Markdown).

Build with ``python -m sphinx -W -b html docs docs/_build/html`` after
``pip install '.[docs]'``.  Nothing here reaches the network: no intersphinx.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The docs do not depend on the backend, so the "using its os backend" warning
# of a copy without the compiled module is only noise here.
warnings.filterwarnings(
    "ignore", message="zerocopy is using its os backend", category=RuntimeWarning
)

# Autodoc imports zerocopy.  Prefer an installed copy (it carries the compiled
# module); fall back to the source tree, which imports on its os backend.
try:
    import zerocopy
except ImportError:
    sys.path.insert(0, str(ROOT / "src"))
    import zerocopy

project = "zerocopy"
author = "zerocopy maintainers"
copyright = "2026, zerocopy maintainers"
release = zerocopy.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
]

source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence", "deflist"]

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
autodoc_type_aliases = {"FileDescriptorLike": "FileDescriptorLike"}

html_theme = "alabaster"
html_title = f"zerocopy {release}"
html_static_path: list[str] = []
