"""send_file on the running event loop, over non-blocking sockets."""

from __future__ import annotations

import asyncio
import select
import socket
from collections.abc import Callable
from typing import Any

from .._aiowait import Waiter, check_nonblocking_socket
from .._types import SupportsRead
from .asyncloop import send
from .common import check_params

__all__ = ["send_file"]


class _AsyncioWaits:
    """The waits of a send on the running asyncio loop (uvloop included)."""

    __slots__ = ("fd", "waiter")

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
        self.fd = sock.fileno()
        self.waiter = Waiter(loop)

    async def writable(self) -> None:
        self.waiter.watch({(self.fd, select.POLLOUT)})
        await self.waiter.wait()

    async def checkpoint(self) -> None:
        await asyncio.sleep(0)

    async def in_thread(self, fn: Callable[..., memoryview], *args: Any) -> memoryview:
        return await asyncio.to_thread(fn, *args)

    def close(self) -> None:
        self.waiter.close()


async def send_file(
    sock: socket.socket, file: SupportsRead[bytes], offset: int = 0, count: int | None = None
) -> int:
    """Send *file* over non-blocking stream socket *sock* with ``sendfile(2)``; return bytes sent.

    The contract of :func:`zerocopy.send_file` and :meth:`socket.socket.sendfile`:
    sending starts at *offset* (the file position is not used), *count*
    ``None`` means to end of file, and the file position is left at
    ``offset + sent``.  *sock* must be non-blocking (:class:`ValueError`
    otherwise, as :meth:`asyncio.loop.sock_sendfile`); the task waits for
    writability on the running loop between partial sends.

    Regular files go out with ``sendfile``.  Other objects are read in chunks
    and sent with ``send``: those whose fd carries their bytes but is not a
    regular file (pipes, devices) are read in a worker thread; the rest
    (``BytesIO``, compressed files...) are read directly and must not block.
    A task cancelled during a worker-thread read loses the chunk being read
    (a pipe cannot be rewound).  A file that shrinks during the send ends
    cleanly.  Every exception after the checks, :class:`asyncio.CancelledError`
    included, carries ``bytes_transferred``.
    """
    check_params(sock, file, offset, count)
    check_nonblocking_socket(sock, "sock")
    waits = _AsyncioWaits(asyncio.get_running_loop(), sock)
    return await send(sock, waits, file, offset, count)
