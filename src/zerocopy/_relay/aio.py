"""The asyncio relay: both directions of two non-blocking sockets, waiting on the running loop."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import TypeAlias, cast

from .._aiostream import BorrowedSocket, is_stream_pair
from .._aiowait import AsyncioLoop, check_nonblocking_socket
from .._args import check_timeout
from .asyncloop import relay_sockets
from .direction import annotate
from .sides import check_distinct

__all__ = ["relay"]


#: A side of a relay: a socket, or the two ends of an asyncio stream.
Side: TypeAlias = "socket.socket | tuple[asyncio.StreamReader, asyncio.StreamWriter]"


async def relay(a: Side, b: Side, *, timeout: float | None = None) -> tuple[int, int]:
    """Copy both directions between stream sockets *a* and *b* until both end.

    The asyncio twin of :func:`zerocopy.relay`: ``splice`` through pooled
    pipes (held only while bytes are in flight), an end of stream from one
    side becomes ``shutdown(SHUT_WR)`` on the other while the other direction
    carries on, and the result is ``(a_to_b, b_to_a)``.  On Linux the bytes
    move in one of the process's relay hub threads (one C call per batch of
    wake-ups, the GIL released) and the loop hears from it once, when the
    relay ends, through an eventfd: a busy relay costs the loop nothing.
    Elsewhere the relay steps on the loop, its readiness from the loop.

    Each side is a non-blocking socket or a ``(StreamReader, StreamWriter)``
    pair from :func:`asyncio.open_connection` or :func:`asyncio.start_server`
    (on asyncio's loops or uvloop).  For a pair, what the writer's transport
    buffers goes out first, reading is paused, and the bytes the reader has
    already read are delivered to the other side before any the kernel moves
    (and counted).  When the relay ends, however it ends, the pair's writer
    is closed; sockets stay open and non-blocking, and the caller closes
    them.  A TLS stream is a :class:`TypeError`, a closing one a
    :class:`ValueError`, before anything moves.

    *timeout* is an idle timeout in seconds: if neither direction moves for
    that long, :class:`TimeoutError` is raised (``inf``, like None, never
    expires; a negative or NaN timeout is a :class:`ValueError`, one that is
    not a number a :class:`TypeError`).  *a* and *b* must be two sockets (one
    socket twice, however reached, is a :class:`ValueError`).  A reset on
    either side raises the original :class:`OSError` subclass, also on a side
    whose direction has already ended.  Every exception out of ``relay``,
    :class:`asyncio.CancelledError` included, carries ``a_to_b``, ``b_to_a``
    and ``bytes_transferred``.
    """
    lent = [_check_side(name, side) for name, side in (("a", a), ("b", b))]
    check_timeout(timeout, negative=False)
    loop = AsyncioLoop()
    try:
        try:
            socks: list[socket.socket] = []
            heads: list[bytes] = []
            for side, held in zip((a, b), lent, strict=True):
                if held is None:
                    socks.append(cast(socket.socket, side))
                    heads.append(b"")
                else:
                    socks.append(held[0].lend(held[1]))
                    heads.append(held[0].head)
            check_distinct(socks[0], socks[1])  # before a transport's buffer goes out
            for held in lent:
                if held is not None:
                    await held[0].drain(loop.loop)
        except BaseException as exc:
            annotate(exc, None, None)  # nothing moved yet
            raise
        result = await relay_sockets(loop, socks[0], socks[1], timeout, (heads[0], heads[1]))
    finally:
        for held in lent:
            if held is not None:
                held[0].was_reading = False  # closed next: no point reading again
                held[0].give_back()
                held[2].close()
    for held in lent:
        if held is not None:
            with contextlib.suppress(OSError):
                await held[2].wait_closed()
    return result


Lent = tuple[BorrowedSocket, asyncio.StreamReader, asyncio.StreamWriter]


def _check_side(name: str, side: object) -> Lent | None:
    """Check one side before anything moves; for a stream pair, what will lend its socket."""
    if is_stream_pair(side):
        reader, writer = cast("tuple[asyncio.StreamReader, asyncio.StreamWriter]", side)
        return BorrowedSocket.check(writer, name, reader=reader), reader, writer
    if not isinstance(side, socket.socket):
        raise TypeError(
            f"{name} must be a socket.socket or a (StreamReader, StreamWriter) pair, "
            f"not {type(side).__name__}"
        )
    if side.type != socket.SOCK_STREAM:
        raise ValueError(f"{name} must be a SOCK_STREAM socket")
    check_nonblocking_socket(side, name)
    return None
