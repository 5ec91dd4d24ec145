"""uvicorn's httptools protocol with the ASGI file-body extensions, sent by ``sendfile(2)``.

The protocol subclass only wraps its application in a
:class:`zerocopy._asgi.uvicorn_app.FileBodies` (which ends every file body
through uvicorn's own ``send``); what is left here is the framing of the
file's bytes, which uvicorn's httptools cycle does itself for ``bytes``
bodies and cannot do for a file: one chunk under chunked encoding, else a
count against the Content-Length left.  The uvicorn internals this touches
are listed in :mod:`zerocopy._compat` (the protocol's ``app``, the cycle's
bound ``send``, the cycle attributes of ``_HTTPTOOLS_CYCLE_ATTRIBUTES``);
:mod:`zerocopy._asgi.uvicorn_select` imports this module only after
:func:`zerocopy._compat.uvicorn_httptools_missing_hooks` found them all.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.http import httptools_impl

from .. import _compat
from .body import FileBody, send_body
from .uvicorn_app import FileBodies

__all__ = ["HttpToolsProtocol", "write_file_body"]


async def write_file_body(cycle: Any, body: FileBody) -> bool:
    """Send *body* (``count`` > 0) on *cycle*, framed as uvicorn frames a ``bytes`` body.

    False if the client went away (the connection is closed then).
    """
    if cycle.chunked_encoding:
        cycle.transport.write(b"%x\r\n" % body.count)
        if not await send_body(cycle, body):
            return False
        cycle.transport.write(b"\r\n")
        return True
    if body.count > cycle.expected_content_length:
        raise RuntimeError("Response content longer than Content-Length")  # uvicorn's words
    if not await send_body(cycle, body):
        return False
    cycle.expected_content_length -= body.count
    return True


def _wrap(app: Any) -> FileBodies:
    return FileBodies(app, httptools_impl.RequestResponseCycle, write_file_body)


class HttpToolsProtocol(httptools_impl.HttpToolsProtocol):
    """uvicorn's httptools protocol offering ``http.response.pathsend`` and ``...zerocopysend``.

    Use it as ``uvicorn --http zerocopy.uvicorn:HttpToolsProtocol app:app``
    (or ``uvicorn.Config(app, http=HttpToolsProtocol)``).  Plain-HTTP
    scopes get both extensions; TLS scopes get neither, since the kernel
    cannot encrypt what ``sendfile`` sends, so frameworks send those bodies
    the usual way.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """uvicorn's protocol, whose application is wrapped to take the file-body messages."""
        super().__init__(*args, **kwargs)
        _compat.uvicorn_wrap_app(self, _wrap)
