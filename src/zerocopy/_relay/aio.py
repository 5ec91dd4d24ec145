"""The asyncio relay: both directions of two non-blocking sockets, waiting on the running loop."""

from __future__ import annotations

import asyncio
import errno
import socket

from .._aiowait import ErrorWatch, Waiter, check_nonblocking_socket
from .._fd import check_timeout
from .direction import Direction, annotate

__all__ = ["relay"]


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
        await _relay_loop(loop, waiter, errors, ab, ba, timeout)
    except BaseException as exc:
        annotate(exc, ab, ba)
        raise
    finally:
        waiter.close()
        errors.close()  # after the waiter: its reader is on the epoll fd
        ab.close()
        ba.close()
    return ab.moved, ba.moved


async def _relay_loop(
    loop: asyncio.AbstractEventLoop,
    waiter: Waiter,
    errors: ErrorWatch,
    ab: Direction,
    ba: Direction,
    timeout: float | None,
) -> None:
    last_progress = loop.time()
    while True:
        if errors.key in waiter.fired:
            errors.check()
        progressed = False
        for d in (ab, ba):
            # Step a direction only when what it waits for fired (or it waits on
            # nothing: first round, or its step budget ran out).
            if not d.done and (d.waiting is None or d.waiting in waiter.fired):
                progressed |= d.step()
        waiter.fired.clear()
        if ab.done and ba.done:
            return
        if progressed:
            last_progress = loop.time()
        live = [d for d in (ab, ba) if not d.done]
        wanted = {d.waiting for d in live if d.waiting is not None}
        # As in the threaded relay, a side whose direction ended is still
        # watched for errors: a reset there must end the relay now, not after
        # the idle timeout (or never, without one).
        errors.watch(ab.src if ab.done else ba.src if ba.done else None)
        if errors.key is not None:
            wanted.add(errors.key)
        waiter.watch(wanted)
        if any(d.waiting is None for d in live):
            await asyncio.sleep(0)  # out of budget, not blocked: let other tasks run
            continue
        left = None
        if timeout is not None:
            left = timeout - (loop.time() - last_progress)
            if left <= 0:
                raise TimeoutError(errno.ETIMEDOUT, "relay: idle timeout")
        await waiter.wait(left)
