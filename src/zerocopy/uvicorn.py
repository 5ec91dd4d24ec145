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

Needs the ``uvicorn`` extra (``pip install 'zerocopy-io[uvicorn]'``); importing
this module on a uvicorn release it was not tested with raises ImportError
naming the supported ones (:data:`SUPPORTED`).
"""

from __future__ import annotations

# First, on purpose: it checks the uvicorn version before anything else of
# uvicorn's internals is imported.
from ._asgi.uvicorn_impl import SUPPORTED, HttpToolsProtocol

# isort: split
from ._asgi.uvicorn_h11 import H11Protocol

__all__ = ["SUPPORTED", "H11Protocol", "HttpToolsProtocol"]
