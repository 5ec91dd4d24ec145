"""The ASGI wrapper both zerocopy.uvicorn protocols put around the application.

uvicorn has no API for adding ASGI extensions, so each protocol subclass
wraps its ``app`` once per connection (:func:`zerocopy._compat.uvicorn_wrap_app`)
in a :class:`FileBodies`.  For each plain-HTTP request it offers the
extensions in the scope and hands the application a ``send`` that takes the
file-body messages itself and passes everything else to uvicorn's own
``send`` untouched (the very coroutine, no extra frame).

What a file body needs of uvicorn goes through uvicorn's ``send`` with plain
``http.response.body`` messages, which the ASGI spec defines: an empty chunk
with ``more_body`` before the file (uvicorn waits out its write flow control
and drops it if the client went away; it writes nothing), the HEAD case
(uvicorn sends no body), and the empty last chunk after it (uvicorn writes
the chunked terminator, checks that Content-Length is met, ends the
response, keeps the connection alive or closes it, starts the next
pipelined request).  Only the framing of the file's own bytes is the
protocol's writer: httptools' cycle frames bodies itself
(:mod:`zerocopy._asgi.uvicorn_impl`), h11's through its
``h11.Connection`` (:mod:`zerocopy._asgi.uvicorn_h11`).
"""

from __future__ import annotations

import warnings
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from .. import _compat, _integrations
from .body import EXTENSIONS, ZEROCOPYSEND, FileBody, check_message, handles, opened

__all__ = ["FileBodies", "Writer"]

#: A protocol's writer: send *body* framed on uvicorn's *cycle*; False if the
#: client went away (the connection is closed then).
Writer = Callable[[Any, FileBody], Awaitable[bool]]

_MORE: Mapping[str, Any] = {"type": "http.response.body", "body": b"", "more_body": True}
_END: Mapping[str, Any] = {"type": "http.response.body", "body": b"", "more_body": False}


class FileBodies:
    """An ASGI app wrapper offering ``pathsend`` and ``zerocopysend`` on one uvicorn connection.

    *cycle_class* is the protocol module's ``RequestResponseCycle``; *write*
    the protocol's :data:`Writer`.  Requests on TLS connections, or whose
    ``send`` is not a cycle's (see :func:`zerocopy._compat.uvicorn_cycle`),
    run the application unchanged.
    """

    __slots__ = ("app", "cycle_class", "write")

    def __init__(self, app: Any, cycle_class: type, write: Writer) -> None:
        self.app = app
        self.cycle_class = cycle_class
        self.write = write

    def __call__(self, scope: Any, receive: Any, send: Any) -> Awaitable[None]:
        """Run the application, with the extensions offered on plain HTTP."""
        cycle = _compat.uvicorn_cycle(send, self.cycle_class)
        if cycle is None:
            _cycle_not_found()
            result: Awaitable[None] = self.app(scope, receive, send)
            return result
        if cycle.transport.get_extra_info("sslcontext") is not None:
            # The kernel cannot encrypt what sendfile sends: TLS scopes get
            # neither extension, so frameworks send those bodies the usual way.
            result = self.app(scope, receive, send)
            return result
        offered: dict[str, dict[object, object]] = {k: {} for k in EXTENSIONS}
        scope["extensions"] = {**scope.get("extensions", {}), **offered}
        result = self.app(scope, receive, _Sender(scope, cycle, send, self.write).send)
        return result


def _cycle_not_found() -> None:
    warnings.warn(
        "zerocopy.uvicorn: this uvicorn hands the application a send that is not its"
        " RequestResponseCycle's; the request runs without the file-body extensions",
        _integrations.IntegrationFallbackWarning,
        stacklevel=3,
    )


class _Sender:
    """One request's ``send``: file-body messages here, everything else to uvicorn's."""

    __slots__ = ("cycle", "scope", "uvicorn_send", "write")

    def __init__(
        self,
        scope: Mapping[str, Any],
        cycle: Any,
        uvicorn_send: Callable[[Any], Awaitable[None]],
        write: Writer,
    ) -> None:
        self.scope = scope
        self.cycle = cycle
        self.uvicorn_send = uvicorn_send
        self.write = write

    def send(self, message: Any) -> Awaitable[None]:
        """Send one ASGI message; file bodies go out with :func:`zerocopy.aio.send_file`."""
        if handles(self.scope, self.cycle, message):
            return self._send_file(message)
        return self.uvicorn_send(message)  # uvicorn's coroutine itself

    async def _send_file(self, message: Mapping[str, Any]) -> None:
        check_message(message)
        more_body = message["type"] == ZEROCOPYSEND and message.get("more_body", False)
        if self.scope["method"] == "HEAD":
            # uvicorn's HEAD: no body, the application's Content-Length kept,
            # the file not even opened.
            await self.uvicorn_send({**_MORE, "more_body": more_body})
            return
        await self.uvicorn_send(_MORE)  # waits out flow control; writes nothing
        cycle = self.cycle
        if cycle.disconnected or cycle.transport.is_closing():
            return  # as uvicorn: a body for a client that went away is dropped
        async with opened(message) as body:
            if body.count and not await self.write(cycle, body):
                return
        if not more_body:
            await self.uvicorn_send(_END)
