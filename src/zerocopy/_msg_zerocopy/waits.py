"""Blocking waits of a ZeroCopySender: poll() for room or completions, never spinning."""

from __future__ import annotations

import errno
import select
import socket
import time
from collections.abc import Callable

from .._args import poll_ms

__all__ = ["wait_event", "wait_writable"]


def wait_event(
    fd: int, events: int, ms: int | None, backoff: list[float], drain: Callable[[], object]
) -> int:
    """poll() *fd* for *events*; never return at once twice on a hang-up alone.

    POLLERR (completions queued) calls *drain*.  *backoff* holds the pause
    after a wake-up for nothing asked, doubled each time up to 50 ms.
    """
    poller = select.poll()
    poller.register(fd, events)
    ready = poller.poll(ms)
    revents = ready[0][1] if ready else 0
    if revents & select.POLLERR:
        drain()
    if revents and not revents & (events | select.POLLERR):
        # POLLHUP (peer gone) is reported whatever we ask: without a
        # pause this would spin until the completions trickle in.
        pause = backoff[0] if ms is None else min(backoff[0], ms / 1000)
        time.sleep(pause)
        backoff[0] = min(backoff[0] * 2, 0.05)
    return revents


def wait_writable(sock: socket.socket, fd: int, drain: Callable[[], object]) -> None:
    """Wait until *sock* (fd *fd*) has room, within its timeout; drain completions meanwhile."""
    timeout = sock.gettimeout()
    if timeout == 0.0:
        raise BlockingIOError(errno.EAGAIN, "send: socket is non-blocking and full")
    deadline = None if timeout is None else time.monotonic() + timeout
    backoff = [0.001]
    while True:
        ms = None
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(errno.ETIMEDOUT, "send: timed out")
            ms = poll_ms(left)  # clamped to what poll(2) takes; the loop re-checks
        # POLLERR (completions queued) is drained and waited past: only
        # room to write, or a hang-up the send itself will report, ends it.
        if wait_event(fd, select.POLLOUT, ms, backoff, drain) & (select.POLLOUT | select.POLLHUP):
            return
