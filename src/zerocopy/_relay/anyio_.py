"""The relay under anyio (asyncio and trio backends), over sockets or anyio SocketStreams."""

from __future__ import annotations

import socket

import anyio.abc

from .._aiowait import ErrorWatch
from .._anyiowait import AnyioClock, AnyioWaits, EpollWaiter, StreamSocket
from .._errors import set_relay_counts
from .._fd import check_timeout
from .._send_file.asyncloop import Sender
from .asyncloop import relay_rounds
from .direction import Direction

__all__ = ["relay"]

End = socket.socket | anyio.abc.SocketStream


async def relay(a: End, b: End, *, timeout: float | None = None) -> tuple[int, int]:
    """Copy both directions between *a* and *b* until both end, under anyio.

    *a* and *b* are non-blocking stream sockets or :class:`anyio.abc.SocketStream`
    objects, on anyio's asyncio or trio backend.  The contract is
    :func:`zerocopy.aio.relay`'s: ``splice`` through pooled pipes, half-closes
    passed on, ``(a_to_b, b_to_a)`` returned, *timeout* an idle timeout
    (:class:`TimeoutError`), a reset raising its :class:`OSError`, and every
    exception, a cancellation included, carrying ``a_to_b``, ``b_to_a`` and
    ``bytes_transferred``.  Bytes a stream received but did not hand out yet
    (anyio's asyncio streams read ahead) go first.  Nothing is closed: the
    caller closes the sockets or streams; no other task may use them meanwhile.
    """
    ends: list[StreamSocket] = []
    try:
        for name, obj in (("a", a), ("b", b)):
            ends.append(StreamSocket(obj, name))
        check_timeout(timeout, negative=False)
        return await _relay(ends[0], ends[1], timeout)
    finally:
        for end in ends:
            end.close()


async def _relay(a: StreamSocket, b: StreamSocket, timeout: float | None) -> tuple[int, int]:
    ahead = [Sender(b.sock, AnyioWaits(b.sock)), Sender(a.sock, AnyioWaits(a.sock))]
    ab = Direction(a.sock, b.sock)
    ba = Direction(b.sock, a.sock)
    waiter = EpollWaiter()
    errors = ErrorWatch()
    try:
        for end in (a, b):
            await end.drain()  # what the streams still have to write goes first
        for sender, end in zip(ahead, (a, b), strict=True):
            data = end.hold_reading()
            if data:
                await sender.send_all(memoryview(data))
        await relay_rounds(waiter, errors, ab, ba, timeout, AnyioClock())
    except BaseException as exc:
        set_relay_counts(exc, ahead[0].tally.total() + ab.moved, ahead[1].tally.total() + ba.moved)
        raise
    finally:
        waiter.close()
        errors.close()
        ab.close()
        ba.close()
    return ahead[0].tally.total() + ab.moved, ahead[1].tally.total() + ba.moved
