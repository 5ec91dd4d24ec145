"""Sphinx configuration for zerocopy's documentation (Sphinx + MyST Markdown).

Build with ``python -m sphinx -W -b html docs docs/_build/html`` after
``pip install '.[docs]'``.  The theme is furo (code blocks scroll, never cut
off).  Intersphinx links to Python, aiohttp and anyio, but a default build
never reaches the network, so that it builds (warnings as errors) offline and
in the test suite: an inventory is read from ``docs/_inventories/NAME.inv``
where that file exists, and from its site only with
``ZEROCOPY_DOCS_INTERSPHINX=1``.  Without either, those references render as
plain code, with no warning.
"""

from __future__ import annotations

import os
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
    "sphinx.ext.intersphinx",
]

#: The sites whose objects the docs name, and their inventories.
INTERSPHINX_SITES = {
    "python": "https://docs.python.org/3",
    "aiohttp": "https://docs.aiohttp.org/en/stable",
    "anyio": "https://anyio.readthedocs.io/en/stable",
}
_ONLINE = os.environ.get("ZEROCOPY_DOCS_INTERSPHINX") == "1"
_LOCAL = Path(__file__).resolve().parent / "_inventories"


def _inventory(name: str, url: str) -> tuple[str, str | None] | None:
    """(site, inventory) for intersphinx: a local copy, else the site when online."""
    local = _LOCAL / f"{name}.inv"
    if local.is_file():
        return url, str(local)
    return (url, None) if _ONLINE else None


intersphinx_mapping = {
    name: entry
    for name, url in INTERSPHINX_SITES.items()
    if (entry := _inventory(name, url)) is not None
}
intersphinx_timeout = 10

source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence", "deflist"]

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
autodoc_type_aliases = {"FileDescriptorLike": "FileDescriptorLike"}

html_theme = "furo"
html_title = f"zerocopy {release}"
html_static_path = ["_static"]
html_css_files = ["code.css"]
