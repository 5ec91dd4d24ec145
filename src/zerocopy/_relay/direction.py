"""One direction of a relay: socket -> pipe -> socket, never blocking.

Shared by the threaded relay (:mod:`.blocking`, which waits with ``poll``)
and the asyncio one (:mod:`.aio`, which waits on the event loop).  Both sockets must
be non-blocking; :meth:`Direction.step` moves what it can and then says, in
:attr:`Direction.waiting`, which fd and event it needs next.

EAGAIN is ambiguous in a relay: from ``splice(socket -> pipe)`` it can mean an
empty socket or a full pipe.  This side only reads into an *empty* pipe, so
EAGAIN there always means the socket is empty, and EAGAIN while draining the
pipe always means the destination socket is full.  No hot loop either way.
"""

from __future__ import annotations

import errno
import os
import select
import socket
from collections.abc import Callable

from .. import _backend
from .._constants import SPLICE_F_NONBLOCK, STEP_BUDGET
from .._errors import set_relay_counts
from .._fd import read_past_urgent_mark
from .._pipes import Pipe, PipePool, default_pool
from .._tally import Tally

__all__ = ["Direction", "annotate"]


class Direction:
    """Copy *src* to *dst* (both non-blocking stream sockets) through a pipe."""

    __slots__ = (
        "done",
        "dst",
        "dst_fd",
        "eof",
        "family",
        "in_pipe",
        "pipe",
        "pool",
        "src",
        "src_fd",
        "tally",
        "waiting",
    )

    def __init__(self, src: socket.socket, dst: socket.socket, pool: PipePool | None = None):
        self.src = src
        self.dst = dst
        self.src_fd = src.fileno()
        self.family = src.family
        self.dst_fd = dst.fileno()
        self.pool = pool if pool is not None else default_pool()
        self.pipe: Pipe | None = None
        self.in_pipe = 0  # bytes read from src that dst has not taken yet
        self.tally = Tally()  # the splices that delivered to dst
        self.eof = False
        self.done = False
        #: ``(fd, poll events)`` this direction waits for, or None.
        self.waiting: tuple[int, int] | None = None

    def step(self) -> bool:
        """Move bytes until something would block; True if anything changed."""
        self.waiting = None
        if self.done:
            return False
        if self.pipe is None:
            self.pipe = self.pool.acquire()
        pipe = self.pipe
        splice = _backend.current().splice
        tally = self.tally
        tally.fold()
        progressed = False
        budget = STEP_BUDGET
        while budget > 0:
            if self.in_pipe:
                try:
                    n = splice(
                        pipe.r, self.dst_fd, self.in_pipe, None, None, SPLICE_F_NONBLOCK, tally
                    )
                except BlockingIOError:
                    self.waiting = (self.dst_fd, select.POLLOUT)
                    return progressed
                if n == 0:  # a stream socket never takes 0 bytes; do not spin
                    raise OSError(errno.EIO, "splice: destination accepted 0 bytes")
                self.in_pipe -= n
                budget -= n
                progressed = True
                continue
            if self.eof:
                self._finish()
                return True
            n = self._fill(pipe, splice)
            if n < 0:
                self.waiting = (self.src_fd, select.POLLIN)
                return progressed
            progressed = True
            if n == 0:
                self.eof = True
            self.in_pipe = n
        return progressed

    def _fill(self, pipe: Pipe, splice: Callable[..., int]) -> int:
        """Read src into the (empty) pipe: bytes read, 0 at end of stream, -1 if src is empty."""
        try:
            n = splice(self.src_fd, pipe.w, pipe.size, None, None, SPLICE_F_NONBLOCK)
        except BlockingIOError:
            n = -1
        if n <= 0:
            # EAGAIN or 0 can also mean "stopped at TCP urgent data".
            urgent = read_past_urgent_mark(self.src_fd, self.family)
            if urgent:
                return os.write(pipe.w, urgent)  # the pipe is empty
            if urgent is not None:
                return -1  # past the urgent byte, nothing after it yet
        return n

    @property
    def moved(self) -> int:
        """Bytes delivered to dst; exact even if a signal handler's exception ended the step."""
        return self.tally.total()

    def _finish(self) -> None:
        # End of stream from src: pass the half-close on; the other direction
        # carries on.  ENOTCONN: the peer is gone already, nothing to tell it.
        try:
            self.dst.shutdown(socket.SHUT_WR)
        except OSError as exc:
            if exc.errno != errno.ENOTCONN:
                raise
        self.done = True
        self.close()

    def close(self) -> None:
        """Give the pipe back (the pool closes it if bytes are left in it)."""
        pipe, self.pipe = self.pipe, None
        if pipe is not None:
            self.pool.release(pipe)


def annotate(exc: BaseException, ab: Direction | None, ba: Direction | None) -> BaseException:
    """Put both directions' counts on *exc*: ``a_to_b``, ``b_to_a``, ``bytes_transferred``.

    A direction not made yet (None) moved nothing.
    """
    a_to_b = 0 if ab is None else ab.moved
    b_to_a = 0 if ba is None else ba.moved
    set_relay_counts(exc, a_to_b, b_to_a)
    return exc
