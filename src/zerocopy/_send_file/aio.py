"""send_file on the running event loop: non-blocking sockets, asyncio streams and transports."""

from __future__ import annotations

import asyncio
import functools
import socket
from typing import cast

from .._aiostream import BorrowedSocket, is_transport_like
from .._aiowait import AsyncioLoop, check_nonblocking_socket
from .._types import SupportsRead
from .asyncloop import send
from .common import check_file_args, check_params

__all__ = ["send_file"]


async def send_file(
    sock: socket.socket | asyncio.StreamWriter | asyncio.BaseTransport,
    file: SupportsRead[bytes],
    offset: int = 0,
    count: int | None = None,
) -> int:
    """Send *file* over *sock* with ``sendfile(2)``; return bytes sent.

    *sock* is a non-blocking stream socket, an :class:`asyncio.StreamWriter`
    or a stream transport (asyncio's, or uvloop's, where ``loop.sendfile``
    does not exist).

    The contract of :func:`zerocopy.send_file` and :meth:`socket.socket.sendfile`:
    sending starts at *offset* (the file position is not used), *count*
    ``None`` means to end of file, and the file position is left at
    ``offset + sent``.  A socket must be non-blocking (:class:`ValueError`
    otherwise, as :meth:`asyncio.loop.sock_sendfile`); the task waits for
    writability on the running loop between partial sends.

    A writer or transport is used as ``loop.sendfile(transport, ...)`` uses
    one: what the transport buffers goes out first, its reading is paused
    while the kernel sends and resumed afterwards, and the stream is usable
    again when this returns.  Nothing else may write to it meanwhile.  A TLS
    or datagram transport is a :class:`TypeError`, a closing one a
    :class:`ValueError`, both before any byte moves.

    Regular files go out with ``sendfile``.  Other objects are read in chunks
    and sent with ``send``: those whose fd carries their bytes but is not a
    regular file (pipes, devices) are read in a worker thread; the rest
    (``BytesIO``, compressed files...) are read directly and must not block.
    A task cancelled during a worker-thread read loses the chunk being read
    (a pipe cannot be rewound).  A file that shrinks during the send ends
    cleanly.  Every exception after the checks, :class:`asyncio.CancelledError`
    included, carries ``bytes_transferred``.
    """
    loop = asyncio.get_running_loop()
    if isinstance(sock, socket.socket) or not is_transport_like(sock):
        check_params(sock, file, offset, count)
        check_nonblocking_socket(sock, "sock")
        plain = cast(socket.socket, sock)  # check_params raised for anything else
        return await send(plain, AsyncioLoop(loop), file, offset, count)
    borrowed = BorrowedSocket.check(sock, "sock")
    check_file_args(file, offset, count)
    try:
        lent = borrowed.lend()
        # What the transport holds goes out first.
        first = functools.partial(borrowed.drain, loop)
        return await send(lent, AsyncioLoop(loop), file, offset, count, first=first)
    finally:
        borrowed.give_back()
