"""uvicorn integration: an HTTP protocol whose file bodies go out with ``sendfile(2)``.

Run an ASGI application with::

    uvicorn --http zerocopy.uvicorn:HttpToolsProtocol app:app

(or ``zerocopy.uvicorn:H11Protocol``, uvicorn's pure-Python h11 protocol).

Each plain-HTTP request scope then offers the ASGI extensions
``http.response.pathsend`` (Starlette's and FastAPI's ``FileResponse`` and
``StaticFiles`` use it) and ``http.response.zerocopysend``; the server sends
those bodies with :func:`zerocopy.aio.send_file`, on asyncio and on uvloop.
Everything else (parsing, keep-alive, HEAD, ``Content-Length`` and chunked
framing, the access log) is uvicorn's own.

Needs the ``uvicorn`` extra (``pip install -e '.[uvicorn]'`` in a clone; without
httptools, importing this module raises ImportError naming it).  The
classes subclass uvicorn internals, so importing this module checks every
hook each needs, on every uvicorn: on a release outside :data:`SUPPORTED`
whose hooks are all there they run, with a
:class:`zerocopy.UntestedVersionWarning`; a class whose hook is missing is
uvicorn's own class (no extensions offered, zero-copy off), with a
:class:`zerocopy.IntegrationFallbackWarning` naming the hook.  The server
always starts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._asgi import uvicorn_select

__all__ = ["SUPPORTED", "H11Protocol", "HttpToolsProtocol"]

#: The uvicorn releases this module was tested with, as ``(major, minor)`` pairs:
#: the test suite passed on the first release of each (and on 0.52.4).
SUPPORTED = uvicorn_select.SUPPORTED

if TYPE_CHECKING:  # the classes they are where uvicorn has every hook
    from ._asgi.uvicorn_h11 import H11Protocol
    from ._asgi.uvicorn_impl import HttpToolsProtocol
else:
    HttpToolsProtocol, H11Protocol = uvicorn_select.protocols()
