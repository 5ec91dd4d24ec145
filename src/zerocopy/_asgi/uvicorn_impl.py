"""uvicorn's httptools protocol with the ASGI file-body extensions, sent by ``sendfile(2)``.

This module leans on uvicorn internals (no public API exists for adding
ASGI extensions): ``uvicorn.protocols.http.httptools_impl.HttpToolsProtocol``
and its ``on_message_begin`` and ``_start_asgi_task`` methods (the private
one hooked by :func:`zerocopy._compat.uvicorn_hook_start_asgi_task`), and the
attributes of ``RequestResponseCycle`` (``transport``, ``flow``, ``scope``,
``disconnected``, ``response_started``, ``response_complete``,
``chunked_encoding``, ``expected_content_length``, ``keep_alive``,
``message_event``, ``on_response``).  Those can change in any release, so
:mod:`zerocopy._asgi.uvicorn_select` imports this module only after
:func:`zerocopy._compat.uvicorn_httptools_missing_hooks` found them all.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from uvicorn.protocols.http import httptools_impl

from .. import _compat
from .body import (
    EXTENSIONS,
    ZEROCOPYSEND,
    FileBody,
    check_message,
    client_waiting,
    handles,
    open_body,
    send_body,
)

__all__ = ["HttpToolsProtocol", "ZeroCopyCycle"]


class ZeroCopyCycle(httptools_impl.RequestResponseCycle):
    """uvicorn's request/response cycle, plus the ``pathsend`` and ``zerocopysend`` messages.

    Every other message, and these ones out of place (before the response
    start, after the response end, or on a scope that was not offered the
    extension), go to uvicorn's own ``send``, with its errors.
    """

    async def send(self, message: Any) -> None:
        """Send one ASGI message; file bodies go out with :func:`zerocopy.aio.send_file`."""
        if not handles(self, message):
            await super().send(message)
            return
        check_message(message)
        if not await client_waiting(self):
            return  # as uvicorn: a body for a client that went away is dropped
        if self.scope["method"] == "HEAD":
            # No body on HEAD, and no file to open; Content-Length stays as given.
            self.expected_content_length = 0
            if not (message["type"] == ZEROCOPYSEND and message.get("more_body", False)):
                self._complete()
            return
        body = open_body(message)
        try:
            await self._send_file_body(body)
        finally:
            body.close()

    async def _send_file_body(self, body: FileBody) -> None:
        if not self.chunked_encoding and body.count > self.expected_content_length:
            raise RuntimeError("Response content longer than Content-Length")
        if body.count:
            if self.chunked_encoding:
                self.transport.write(b"%x\r\n" % body.count)
            if not await send_body(self, body):
                return
            if self.chunked_encoding:
                self.transport.write(b"\r\n")
        if not self.chunked_encoding:
            self.expected_content_length -= body.count
        if not body.more_body:
            if self.chunked_encoding:
                self.transport.write(b"0\r\n\r\n")
            self._complete()

    def _complete(self) -> None:
        """End the response: uvicorn's end of ``http.response.body`` without ``more_body``."""
        if self.expected_content_length != 0:
            raise RuntimeError("Response content shorter than Content-Length")
        self.response_complete = True
        self.message_event.set()
        if not self.keep_alive:
            self.transport.close()
        self.on_response()


class HttpToolsProtocol(httptools_impl.HttpToolsProtocol):
    """uvicorn's httptools protocol offering ``http.response.pathsend`` and ``...zerocopysend``.

    Use it as ``uvicorn --http zerocopy.uvicorn:HttpToolsProtocol app:app``
    (or ``uvicorn.Config(app, http=HttpToolsProtocol)``).  Plain-HTTP
    scopes get both extensions; TLS scopes get neither, since the kernel
    cannot encrypt what ``sendfile`` sends, so frameworks send those bodies
    the usual way.
    """

    def on_message_begin(self) -> None:
        """Start a request's scope as uvicorn does, then offer the extensions on plain HTTP."""
        super().on_message_begin()
        if self.scheme == "http":
            scope: Any = self.scope
            extensions: Mapping[str, Any] = scope.get("extensions", {})
            # What each HTTP scope offers, on connections without TLS.
            scope["extensions"] = {**extensions, **{k: {} for k in EXTENSIONS}}


def _adopt(cycle: httptools_impl.RequestResponseCycle) -> None:
    """Make uvicorn's *cycle* a :class:`ZeroCopyCycle`, before its task starts.

    uvicorn builds its own cycle class by name in on_headers_complete; every
    cycle (pipelined ones too) starts in the protocol's private
    ``_start_asgi_task``, before its task runs, so that is the one place to
    make it a ZeroCopyCycle.  The subclass adds methods only, so the
    instance's state is unchanged.
    """
    if type(cycle) is httptools_impl.RequestResponseCycle:
        cycle.__class__ = ZeroCopyCycle


# Checked beforehand (uvicorn_select): every cycle becomes a ZeroCopyCycle.
_compat.uvicorn_hook_start_asgi_task(HttpToolsProtocol, _adopt)
