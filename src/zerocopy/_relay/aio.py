"""The asyncio relay: both directions of two non-blocking sockets, waiting on the running loop."""

from __future__ import annotations

import asyncio
import socket

from .._aiowait import ErrorWatch, Waiter, check_nonblocking_socket
from .._fd import check_timeout
from .asyncloop import relay_rounds
from .direction import Direction, annotate

__all__ = ["relay"]


class _AsyncioClock:
    """The running loop's clock, and ``sleep(0)`` to let other tasks run."""

    __slots__ = ("loop",)

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def now(self) -> float:
        return self.loop.time()

    async def checkpoint(self) -> None:
        await asyncio.sleep(0)


async def relay(
    a: socket.socket, b: socket.socket, *, timeout: float | None = None
) -> tuple[int, int]:
    """Copy both directions between non-blocking stream sockets *a* and *b* until both end.

    The asyncio twin of :func:`zerocopy.relay`: ``splice`` through pooled
    pipes (held only while bytes are in flight), an end of stream from one
    side becomes ``shutdown(SHUT_WR)`` on the other while the other direction
    carries on, and the result is ``(a_to_b, b_to_a)``.  Readiness comes from
    the running loop.

    *timeout* is an idle timeout in seconds: if neither direction moves for
    that long, :class:`TimeoutError` is raised (``inf``, like None, never
    expires; a negative or NaN timeout is a :class:`ValueError`).  A reset on
    either side raises the original :class:`OSError` subclass, also on a side
    whose direction has already ended.  Every exception out of ``relay``,
    :class:`asyncio.CancelledError` included, carries ``a_to_b``, ``b_to_a``
    and ``bytes_transferred``.  The sockets stay open and non-blocking; the
    caller closes them.
    """
    for name, sock in (("a", a), ("b", b)):
        if not isinstance(sock, socket.socket):
            raise TypeError(f"{name} must be a socket.socket, not {type(sock).__name__}")
        if sock.type != socket.SOCK_STREAM:
            raise ValueError(f"{name} must be a SOCK_STREAM socket")
        check_nonblocking_socket(sock, name)
    check_timeout(timeout, negative=False)
    loop = asyncio.get_running_loop()
    ab = Direction(a, b)
    ba = Direction(b, a)
    waiter = Waiter(loop)
    errors = ErrorWatch()
    try:
        await relay_rounds(waiter, errors, ab, ba, timeout, _AsyncioClock(loop))
    except BaseException as exc:
        annotate(exc, ab, ba)
        raise
    finally:
        waiter.close()
        errors.close()  # after the waiter: its reader is on the epoll fd
        ab.close()
        ba.close()
    return ab.moved, ba.moved
