"""The relay under anyio (asyncio and trio backends), over sockets or anyio SocketStreams."""

from __future__ import annotations

import socket

import anyio.abc

from .._anyiowait import AnyioLoop, StreamSocket
from .._args import check_timeout
from .asyncloop import relay_sockets
from .direction import annotate
from .sides import check_distinct

__all__ = ["relay"]

End = socket.socket | anyio.abc.SocketStream


async def relay(a: End, b: End, *, timeout: float | None = None) -> tuple[int, int]:
    """Copy both directions between *a* and *b* until both end, under anyio.

    *a* and *b* are non-blocking stream sockets or :class:`anyio.abc.SocketStream`
    objects, on anyio's asyncio or trio backend.  The contract is
    :func:`zerocopy.aio.relay`'s: ``splice`` through pooled pipes, half-closes
    passed on, ``(a_to_b, b_to_a)`` returned, *timeout* an idle timeout
    (:class:`TimeoutError`), one socket on both sides refused
    (:class:`ValueError`), a reset raising its :class:`OSError`, and every
    exception, a cancellation included, carrying ``a_to_b``, ``b_to_a`` and
    ``bytes_transferred``.  Bytes a stream received but did not hand out yet
    (anyio's asyncio streams read ahead) go first.  Nothing is closed: the
    caller closes the sockets or streams; no other task may use them meanwhile.
    As there, on Linux the relay hub's thread moves the bytes and the task
    waits for the end.
    """
    ends: list[StreamSocket] = []
    try:
        for name, obj in (("a", a), ("b", b)):
            ends.append(StreamSocket(obj, name))
        check_timeout(timeout, negative=False)
        check_distinct(ends[0].sock, ends[1].sock)
        return await _relay(ends[0], ends[1], timeout)
    finally:
        for end in ends:
            end.close()


async def _relay(a: StreamSocket, b: StreamSocket, timeout: float | None) -> tuple[int, int]:
    try:
        for end in (a, b):
            await end.drain()  # what a stream's transport still holds goes first
        heads = (a.take_read_ahead(), b.take_read_ahead())
    except BaseException as exc:
        annotate(exc, None, None)  # nothing moved yet
        raise
    return await relay_sockets(AnyioLoop(), a.sock, b.sock, timeout, heads)
