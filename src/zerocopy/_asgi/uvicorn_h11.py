"""uvicorn's h11 protocol with the ASGI file-body extensions, sent by ``sendfile(2)``.

The protocol subclass only wraps its application in a
:class:`zerocopy._asgi.uvicorn_app.FileBodies`, as the httptools one does.
h11 keeps the response's byte count and framing itself, so the file's bytes
go through its public passthrough API: ``Connection.send_with_data_passthrough``
takes a ``Data`` event whose data is a placeholder of the body's length,
does its Content-Length accounting or chunk framing around it, and hands
the placeholder back in place, where the kernel sends the file.

The uvicorn internals this touches are listed in :mod:`zerocopy._compat`
(the protocol's ``app``, the cycle's bound ``send``, the cycle attributes of
``_H11_CYCLE_ATTRIBUTES``); :mod:`zerocopy._asgi.uvicorn_select` imports this
module only after :func:`zerocopy._compat.uvicorn_h11_missing_hooks` found
them all.
"""

from __future__ import annotations

from typing import Any

import h11
from uvicorn.protocols.http import h11_impl

from .. import _compat
from .body import FileBody, send_body
from .uvicorn_app import FileBodies

__all__ = ["H11Protocol", "write_file_body"]


class _Placeholder:
    """Stands in for a file body in an ``h11.Data`` event: it has the body's length only."""

    __slots__ = ("length",)

    def __init__(self, length: int) -> None:
        self.length = length

    def __len__(self) -> int:
        return self.length


async def write_file_body(cycle: Any, body: FileBody) -> bool:
    """Send *body* (``count`` > 0) on *cycle*, framed by h11; False if the client went away."""
    placeholder = _Placeholder(body.count)
    try:
        # h11's documented sendfile hook: Data takes any object with a
        # length and hands it back in place (typed as bytes, hence the ignore).
        data = h11.Data(data=placeholder)  # type: ignore[arg-type]
        parts = cycle.conn.send_with_data_passthrough(data)
    except h11.LocalProtocolError as exc:
        # More than Content-Length: the same RuntimeError as uvicorn's other cycle.
        raise RuntimeError("Response content longer than Content-Length") from exc
    # bytes, and our placeholder handed back in place (h11 types it bytes)
    handed_back: list[object] = list(parts or ())
    for part in handed_back:
        if isinstance(part, bytes | bytearray | memoryview):
            cycle.transport.write(part)
            continue
        if not await send_body(cycle, body):
            return False
    return True


def _wrap(app: Any) -> FileBodies:
    return FileBodies(app, h11_impl.RequestResponseCycle, write_file_body)


class H11Protocol(h11_impl.H11Protocol):
    """uvicorn's h11 protocol offering ``http.response.pathsend`` and ``...zerocopysend``.

    Use it as ``uvicorn --http zerocopy.uvicorn:H11Protocol app:app``.  As
    :class:`zerocopy.uvicorn.HttpToolsProtocol`: plain-HTTP scopes only.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """uvicorn's protocol, whose application is wrapped to take the file-body messages."""
        super().__init__(*args, **kwargs)
        _compat.uvicorn_wrap_app(self, _wrap)
