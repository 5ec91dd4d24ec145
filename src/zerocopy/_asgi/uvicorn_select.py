"""Which protocol classes ``zerocopy.uvicorn`` exports on the installed uvicorn.

:mod:`zerocopy._asgi.uvicorn_impl` and :mod:`zerocopy._asgi.uvicorn_h11`
subclass uvicorn internals, so they are imported only once
:mod:`zerocopy._compat` found every hook each needs.  Otherwise the public
name is uvicorn's own class (what ``--http httptools`` or ``--http h11``
would serve with), and :func:`zerocopy._integrations.decide` warns.  The
uvicorn version never makes the import fail; a missing httptools does, with
the extra to install.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
from types import ModuleType

import h11
import uvicorn
import uvicorn.config
import uvicorn.importer

from .. import _compat, _integrations

__all__ = ["SUPPORTED", "protocols", "tested"]

#: The uvicorn releases zerocopy.uvicorn was tested with, as ``(major, minor)``
#: pairs: the test suite passed on the first release of each (and on 0.52.4).
SUPPORTED = tuple((0, minor) for minor in range(45, 56))
_TESTED = "uvicorn 0.45 to 0.55"


def tested(version: str) -> bool:
    """Whether uvicorn *version* is of a series in :data:`SUPPORTED`."""
    return _integrations.major_minor(version) in SUPPORTED


def _module(name: str) -> ModuleType | None:
    """Module *name* of uvicorn's, or None where this uvicorn has none by that name."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def _stock(name: str) -> type[asyncio.Protocol]:
    """uvicorn's own protocol class for ``--http NAME``, found as uvicorn itself finds it."""
    cls: type[asyncio.Protocol] = uvicorn.importer.import_from_string(
        uvicorn.config.HTTP_PROTOCOLS[name]
    )
    return cls


def protocols() -> tuple[type[asyncio.Protocol], type[asyncio.Protocol]]:
    """``(HttpToolsProtocol, H11Protocol)``: zerocopy's where uvicorn has the hooks, else uvicorn's.

    Raises ImportError when httptools is not installed: that is a missing
    extra, not a uvicorn release, and uvicorn's ``--http httptools`` would
    fail too.
    """
    if importlib.util.find_spec("httptools") is None:
        raise ImportError(
            "zerocopy.uvicorn needs httptools (No module named 'httptools'):"
            " pip install httptools (or, in a clone of zerocopy, pip install -e '.[uvicorn]')"
        )
    httptools_impl = _module("uvicorn.protocols.http.httptools_impl")
    h11_impl = _module("uvicorn.protocols.http.h11_impl")
    on = _integrations.decide(
        "zerocopy.uvicorn",
        "uvicorn",
        uvicorn.__version__,
        _TESTED,
        tested(uvicorn.__version__),
        {
            "HttpToolsProtocol": _compat.uvicorn_httptools_missing_hooks(httptools_impl),
            "H11Protocol": _compat.uvicorn_h11_missing_hooks(h11_impl, h11),
        },
    )
    # Imported only here: they subclass what the checks above found.
    httptools_cls = _stock("httptools")
    if on["HttpToolsProtocol"]:
        from . import uvicorn_impl

        httptools_cls = uvicorn_impl.HttpToolsProtocol
    h11_cls = _stock("h11")
    if on["H11Protocol"]:
        from . import uvicorn_h11

        h11_cls = uvicorn_h11.H11Protocol
    return httptools_cls, h11_cls
