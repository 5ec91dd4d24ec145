"""send_file under anyio (asyncio and trio backends), over a socket or an anyio SocketStream."""

from __future__ import annotations

import socket

import anyio.abc

from .._anyiowait import AnyioLoop, StreamSocket
from .._types import SupportsRead
from .asyncloop import send
from .common import check_params

__all__ = ["send_file"]


async def send_file(
    sock: socket.socket | anyio.abc.SocketStream,
    file: SupportsRead[bytes],
    offset: int = 0,
    count: int | None = None,
) -> int:
    """Send *file* over *sock* with ``sendfile(2)``, under anyio; return the bytes sent.

    *sock* is a non-blocking stream ``socket.socket`` or an
    :class:`anyio.abc.SocketStream` (TCP or UNIX, either backend); a TLS
    stream is a :class:`TypeError`, a closed one a :class:`ValueError`.  The
    contract is :func:`zerocopy.aio.send_file`'s: sending starts at *offset*,
    *count* ``None`` means to end of file, the file position is left at
    ``offset + sent``, other objects than regular files are read and sent in
    chunks (pipes and devices in a worker thread), and every exception after
    the argument checks, a cancellation included (``CancelledError`` on
    asyncio, ``trio.Cancelled`` on trio), carries ``bytes_transferred``.

    A stream must not be sent on by another task meanwhile.  Its earlier
    sends go first, also those of a cancelled ``send()`` that an asyncio
    transport still holds (the transfer waits for them), and the stream is
    usable again afterwards.
    """
    target = StreamSocket(sock, "sock")
    try:
        check_params(target.sock, file, offset, count)
        return await send(target.sock, AnyioLoop(), file, offset, count, first=target.drain)
    finally:
        target.close()
