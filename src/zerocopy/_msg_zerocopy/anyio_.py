"""AsyncZeroCopySender under anyio (asyncio and trio backends)."""

from __future__ import annotations

from .._anyiowait import AnyioLoop
from .._loop import Loop
from .aio import AsyncZeroCopySender as _AsyncioSender

__all__ = ["AsyncZeroCopySender"]


class AsyncZeroCopySender(_AsyncioSender):
    """:class:`zerocopy.aio.AsyncZeroCopySender` on anyio's running backend.

    The same arguments and contract, for a non-blocking ``socket.socket``,
    waiting with ``anyio.wait_readable``/``wait_writable`` on a private
    duplicate of its fd; a cancellation (``CancelledError`` on asyncio,
    ``trio.Cancelled`` on trio) carries ``bytes_transferred`` like any other
    exception out of :meth:`sendall`.
    """

    def _loop(self) -> Loop:
        return AnyioLoop()
