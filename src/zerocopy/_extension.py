"""Why the compiled module is missing, and the command that builds it again.

A build that could not compile the extension (no compiler, no headers) still
installs, and ``setup.py`` leaves :data:`MARKER` in the package holding the
reason.  The import warning and ``python -m zerocopy info`` read it here.

The rebuild command skips pip's wheel cache: pip caches the wheel it built
from an sdist, extension or not, and would install that same wheel again
after a compiler appears.
"""

from __future__ import annotations

import json
import shlex
import sys
from importlib import metadata
from pathlib import Path
from urllib.parse import unquote, urlsplit

__all__ = ["DISTRIBUTION", "MARKER", "build_failure", "rebuild_command", "unavailable"]

#: The name on PyPI (``zerocopy`` there is another project).
DISTRIBUTION = "zerocopy-io"

#: Written by setup.py's build_ext beside where the module would have gone.
MARKER = "_extension_missing.txt"


def build_failure() -> str | None:
    """Return why this installation's build could not compile the module, if it failed."""
    try:
        text = Path(__file__).with_name(MARKER).read_text(encoding="utf-8")
    except OSError:
        return None
    return text.strip() or "unknown reason"


_SDIST_SUFFIXES = (".tar.gz", ".zip")


def _source() -> tuple[str, bool] | None:
    """Return (local path, editable) when pip installed zerocopy from one (PEP 610).

    A local directory or sdist can be built again; a wheel file or anything
    remote cannot, and gives None (rebuild from the index's sdist).
    """
    try:
        recorded = metadata.distribution(DISTRIBUTION).read_text("direct_url.json")
    except (metadata.PackageNotFoundError, OSError):
        return None
    try:
        info = json.loads(recorded or "")
    except ValueError:
        return None
    if not isinstance(info, dict):
        return None
    url = urlsplit(str(info.get("url", "")))
    if url.scheme != "file":
        return None
    path = unquote(url.path)
    dir_info = info.get("dir_info")
    if isinstance(dir_info, dict):
        return path, bool(dir_info.get("editable"))
    if "archive_info" in info and path.endswith(_SDIST_SUFFIXES) and Path(path).is_file():
        return path, False
    return None


def rebuild_command() -> str:
    """Return the pip command, for this interpreter, that compiles the module again.

    ``--no-cache-dir`` keeps pip from reusing a cached wheel built without the
    extension; ``--no-binary`` (from the index) makes pip build from the sdist.
    """
    pip = [sys.executable, "-m", "pip", "install", "--force-reinstall", "--no-deps"]
    pip.append("--no-cache-dir")
    source = _source()
    if source is None:
        # Read from the metadata: this runs while zerocopy/__init__ is still
        # importing the backend, before it has defined __version__.
        try:
            pinned = f"{DISTRIBUTION}=={metadata.version(DISTRIBUTION)}"
        except metadata.PackageNotFoundError:
            pinned = DISTRIBUTION
        target = ["--no-binary", DISTRIBUTION, pinned]
    else:
        path, editable = source
        target = ["-e", path] if editable else [path]
    return shlex.join(pip + target)


def unavailable(exc: BaseException) -> str:
    """Return the message for a compiled module that does not import: what, why, the cure."""
    why = build_failure()
    built = f"; the C extension was not built at install time ({why})" if why else ""
    return (
        f"zerocopy's compiled module is not available: {exc}{built}; to build it, install "
        f"a C compiler and the Python headers, then run: {rebuild_command()}"
    )
