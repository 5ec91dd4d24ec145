"""uvicorn's h11 protocol with the ASGI file-body extensions, sent by ``sendfile(2)``.

h11 keeps the response's byte count and framing itself, so file bodies go
through its public passthrough API: ``Connection.send_with_data_passthrough``
takes a ``Data`` event whose data is a placeholder of the body's length,
does its Content-Length accounting or chunk framing around it, and hands
the placeholder back in place, where the kernel sends the file.

uvicorn internals this relies on (checked by
:func:`zerocopy._compat.uvicorn_h11_missing_hooks` before
:mod:`zerocopy._asgi.uvicorn_select` imports this module): ``uvicorn.protocols.http.h11_impl``'s
``H11Protocol`` assigns each new cycle to ``self.cycle`` just before it
starts the cycle's task, and ``RequestResponseCycle`` keeps ``conn``,
``transport``, ``flow``, ``scope``, ``disconnected``, ``response_started``
and ``response_complete``.
"""

from __future__ import annotations

from typing import Any

import h11
from uvicorn.protocols.http import h11_impl

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

__all__ = ["H11Protocol"]


class _Placeholder:
    """Stands in for a file body in an ``h11.Data`` event: it has the body's length only."""

    __slots__ = ("length",)

    def __init__(self, length: int) -> None:
        self.length = length

    def __len__(self) -> int:
        return self.length


class H11Cycle(h11_impl.RequestResponseCycle):
    """uvicorn's h11 cycle, plus the ``pathsend`` and ``zerocopysend`` messages."""

    async def send(self, message: Any) -> None:
        """Send one ASGI message; file bodies go out with :func:`zerocopy.aio.send_file`."""
        if not handles(self, message):
            await super().send(message)
            return
        check_message(message)
        more_body = message["type"] == ZEROCOPYSEND and message.get("more_body", False)
        if not await client_waiting(self):
            return  # as uvicorn: a body for a client that went away is dropped
        if self.scope["method"] != "HEAD":  # HEAD: no body and no file to open
            body = open_body(message)
            try:
                if body.count and not await self._send_file_body(body):
                    return
            finally:
                body.close()
        if not more_body:
            # uvicorn's own end of the response: EndOfMessage, keep-alive or close.
            await super().send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _send_file_body(self, body: FileBody) -> bool:
        """Send the body framed by h11; False if the client went away (connection closed)."""
        placeholder = _Placeholder(body.count)
        try:
            # h11's documented sendfile hook: Data takes any object with a
            # length and hands it back in place (typed as bytes, hence the ignore).
            data = h11.Data(data=placeholder)  # type: ignore[arg-type]
            parts = self.conn.send_with_data_passthrough(data)
        except h11.LocalProtocolError as exc:
            # More than Content-Length: the same RuntimeError as uvicorn's other cycle.
            raise RuntimeError("Response content longer than Content-Length") from exc
        # bytes, and our placeholder handed back in place (h11 types it bytes)
        handed_back: list[object] = list(parts or ())
        for part in handed_back:
            if isinstance(part, bytes | bytearray | memoryview):
                self.transport.write(part)
                continue
            if not await send_body(self, body):
                return False
        return True


class H11Protocol(h11_impl.H11Protocol):
    """uvicorn's h11 protocol offering ``http.response.pathsend`` and ``...zerocopysend``.

    Use it as ``uvicorn --http zerocopy.uvicorn:H11Protocol app:app``.  As
    :class:`zerocopy.uvicorn.HttpToolsProtocol`: plain-HTTP scopes only.
    """

    _zc_cycle: h11_impl.RequestResponseCycle | None = None

    # uvicorn's h11 protocol builds its cycle inline and starts the task right
    # after ``self.cycle = RequestResponseCycle(...)``: the assignment is the
    # one hook before the task runs.  The subclass adds methods only.
    @property  # type: ignore[override]
    def cycle(self) -> h11_impl.RequestResponseCycle | None:
        return self._zc_cycle

    @cycle.setter
    def cycle(self, cycle: h11_impl.RequestResponseCycle | None) -> None:
        if type(cycle) is h11_impl.RequestResponseCycle:
            cycle.__class__ = H11Cycle
            if self.scheme == "http":
                scope: Any = cycle.scope
                offered: dict[str, dict[object, object]] = {k: {} for k in EXTENSIONS}
                scope["extensions"] = {**scope.get("extensions", {}), **offered}
        self._zc_cycle = cycle
