"""One direction of a relay: socket -> pipe -> socket, never blocking.

Shared by the threaded relay (:mod:`.blocking`, which waits with ``poll``)
and the asyncio one (:mod:`.aio`, which waits on the event loop).  Both sockets must
be non-blocking; :meth:`Direction.step` moves what it can and then says, in
:attr:`Direction.waiting`, which fd and event it needs next.

EAGAIN is ambiguous in a relay: from ``splice(socket -> pipe)`` it can mean an
empty socket or a full pipe.  This side only reads into an *empty* pipe, so
EAGAIN there always means the socket is empty, and EAGAIN while draining the
pipe always means the destination socket is full.  No hot loop either way.
The splices run in the backend's ``relay_step`` (one C call per step on the
cffi backend), which returns why it stopped instead of raising EAGAIN and
keeps the counts in the direction's ``state``.

A direction holds a pipe from the pool only while bytes are in flight, so an
idle relay holds none, and looks for the TCP urgent mark only after a call
that read nothing (see :meth:`Direction._past_urgent_mark`).  The bytes read
past a mark never go into the pipe: a blocking write into a pipe that only
this thread (or event loop) drains never returns once the pipe is smaller
than the write, and pipes shrink to 8 KiB past the per-user pipe budget.
They are sent straight to the destination, like a stream reader's
read-ahead (:attr:`Direction.head`).

A direction keeps the backend it was made with: its ``state`` belongs to
that backend, and a ``_backend.use()`` while a relay runs must not hand it
to the other one.
"""

from __future__ import annotations

import errno
import socket
from typing import Any

from .. import _backend
from .._constants import (
    POLLIN,
    POLLOUT,
    STEP_BYTES,
    STEP_DST_FULL,
    STEP_DST_ZERO,
    STEP_SPENT,
    STEP_SRC_EMPTY,
    STEP_SRC_END,
)
from .._errors import oserror, set_relay_counts
from .._pipes import Pipe, PipePool, default_pool
from .._streams import read_past_urgent_mark
from .._tally import Tally

__all__ = ["Direction", "annotate"]


class Direction:
    """Copy *src* to *dst* (both non-blocking stream sockets) through a pipe."""

    __slots__ = (
        "backend",
        "buffered",
        "done",
        "dst",
        "dst_fd",
        "family",
        "head",
        "head_base",
        "head_sent",
        "pipe",
        "pool",
        "src",
        "src_fd",
        "state",
        "waiting",
    )

    def __init__(
        self,
        src: socket.socket,
        dst: socket.socket,
        pool: PipePool | None = None,
        *,
        head: bytes = b"",
        backend: Any = None,
    ):
        self.src = src
        self.dst = dst
        self.src_fd = src.fileno()
        self.family = src.family
        self.dst_fd = dst.fileno()
        self.pool = pool if pool is not None else default_pool()
        self.pipe: Pipe | None = None
        #: The backend of every step: the one whose relay_step understands state
        #: (a relay hub's own, which may not be the current one).
        self.backend = _backend.current() if backend is None else backend
        #: Without splice (macOS, the BSDs, Windows): a plain relay through a
        #: buffer, the same steps and counts (see .buffered).
        self.buffered = "splice" not in _backend.features(self.backend)
        #: in_pipe, delivered and err, kept by the backend's relay_step.
        self.state = _buffer_state() if self.buffered else self.backend.relay_state()
        self.done = False
        #: ``(fd, poll events)`` this direction waits for, or None.
        self.waiting: tuple[int, int] | None = None
        #: Bytes to deliver before any more from src: what a StreamReader had
        #: read already, then what was read past each urgent mark (see
        #: _send_head).  head_sent logs every send of them, so it counts all
        #: heads so far; head_base is its total when this head was set.
        self.head = memoryview(head) if head else None
        self.head_sent = Tally()
        self.head_base = 0

    def step(self, budget: int = STEP_BYTES) -> bool:
        """Move bytes until something would block or *budget* went out; True if anything changed.

        A spent budget leaves :attr:`waiting` None: step again after others had
        their turn (the async forms pass their loop's slice, see ``_fair``).

        The direction holds a pipe only while bytes are in flight: it takes one
        from the pool when it starts a step without one, and gives it back as
        soon as the source is empty and the pipe has drained.  An idle relay
        holds no pipe.  No pipe to be had (EMFILE, ENFILE) raises that
        :class:`OSError`, counts exact as always.
        """
        self.waiting = None
        if self.done:
            return False
        if self.head is not None:
            before_head = self.moved
            if not self._send_head():
                self.waiting = (self.dst_fd, POLLOUT)
                return self.moved != before_head
            return self._pump(budget) or self.moved != before_head
        return self._pump(budget)

    def _pump(self, budget: int) -> bool:
        return self._buffered(budget) if self.buffered else self._splice(budget)

    def _splice(self, budget: int) -> bool:
        pipe = self.pipe
        if pipe is None:
            pipe = self.pool.take(self)  # sets self.pipe first: see PipePool.take
        backend = self.backend
        state = self.state
        before = (state.delivered, state.in_pipe)
        while True:
            # One call moves src -> pipe -> dst until something would block
            # (the backend's relay_step: one C call on the cffi backend).
            seen = state.delivered + state.in_pipe
            status = backend.relay_step(
                self.src_fd, pipe.r, pipe.w, self.dst_fd, pipe.size, budget, state
            )
            if status == STEP_DST_FULL:
                self.waiting = (self.dst_fd, POLLOUT)
                break
            if status in (STEP_SRC_EMPTY, STEP_SRC_END):
                urgent = self._past_urgent_mark(status, state.delivered + state.in_pipe == seen)
                if urgent:
                    # The pipe is empty (relay_step read nothing since it
                    # drained), so sending these now keeps the stream's order.
                    self.head = memoryview(urgent)
                    self.head_base = self.head_sent.total()
                    if self._send_head():
                        continue
                    self.waiting = (self.dst_fd, POLLOUT)
                    self._give_back(pipe)
                    return True  # bytes left src: progress, even if none reached dst yet
                if status == STEP_SRC_END and urgent is None:
                    self._finish()
                    return True
                self.waiting = (self.src_fd, POLLIN)
                if not state.in_pipe:
                    self._give_back(pipe)  # idle until the source has bytes
                break
            if status == STEP_SPENT:
                break  # waiting None: step again after the other side's turn
            if status == STEP_DST_ZERO:  # a stream socket never takes 0 bytes; do not spin
                raise OSError(errno.EIO, "splice: destination accepted 0 bytes")
            if state.err != errno.EINTR:
                raise oserror(state.err, "splice")
            # EINTR: the loop's backward jump runs the signal handlers; go on.
        return (state.delivered, state.in_pipe) != before

    def _buffered(self, budget: int) -> bool:
        # No splice here: recv and send through the direction's buffer.  A
        # plain read skips an urgent byte as recv does for shutil, so there is
        # no mark to look for.
        from .buffered import buffered_step  # off Linux only: not imported there

        state = self.state
        before = (state.delivered, state.in_pipe)
        while True:
            status = buffered_step(self.src, self.dst, budget, state)
            if status == STEP_DST_FULL:
                self.waiting = (self.dst_fd, POLLOUT)
            elif status == STEP_SRC_EMPTY:
                self.waiting = (self.src_fd, POLLIN)
            elif status == STEP_SRC_END:
                self._finish()
                return True
            elif status == STEP_DST_ZERO:
                raise OSError(errno.EIO, "send: destination accepted 0 bytes")
            elif status != STEP_SPENT:
                if state.err == errno.EINTR:
                    continue
                raise oserror(state.err, "relay")
            return (state.delivered, state.in_pipe) != before

    def _give_back(self, pipe: Pipe) -> None:
        # The pipe is empty: back to the pool while the direction waits.
        # self.pipe is cleared only once the pool has it, so an exception in
        # between leaves it to close(), never lost.
        self.pool.give_back(pipe)
        self.pipe = None

    def _send_head(self) -> bool:
        """Send what is left of :attr:`head`; True once all of it is out.

        Sent with a non-blocking ``send`` (never written into the pipe, see
        the module docstring), counted by a :class:`Tally`: a signal
        handler's exception between a send and the count cannot make
        :attr:`moved` short.
        """
        head, tally = self.head, self.head_sent
        assert head is not None
        while True:
            sent = tally.total() - self.head_base
            if sent >= len(head):
                self.head = None
                return True
            try:
                tally.call(self.dst.send, (head[sent:],))
            except BlockingIOError:
                return False
            tally.fold()

    def _past_urgent_mark(self, status: int, read_nothing: bool) -> bytes | None:
        """Bytes past the source's TCP urgent mark if the step stopped there, else None.

        splice stops at the urgent mark for good, with EAGAIN, or 0 once the
        peer has ended the stream.  Only a call that read nothing can be
        sitting there (one that read bytes stopped before the mark at worst,
        and the wake-up after it reads nothing), so only then, or at an end
        of stream, is the mark looked for: no ioctl after every EAGAIN.
        """
        if status == STEP_SRC_END or read_nothing:
            return read_past_urgent_mark(self.src_fd, self.family)
        return None

    @property
    def in_pipe(self) -> int:
        """Bytes read from src that dst has not taken yet."""
        return int(self.state.in_pipe)

    @property
    def moved(self) -> int:
        """Bytes delivered to dst; exact even if a signal handler's exception ended the step."""
        return int(self.state.delivered) + self.head_sent.total()

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
        """Give the pipe back, if it holds one (the pool closes it if bytes are left in it)."""
        pipe = self.pipe
        if pipe is not None:
            self.pool.release(pipe, self)  # a no-op if the pool has it already
            self.pipe = None


def _buffer_state() -> Any:
    # Imported where there is no splice only: Linux's import stays as it was.
    from .buffered import BufferState

    return BufferState()


def annotate(exc: BaseException, ab: Direction | None, ba: Direction | None) -> BaseException:
    """Put both directions' counts on *exc*: ``a_to_b``, ``b_to_a``, ``bytes_transferred``.

    A direction not made yet (None) moved nothing.
    """
    a_to_b = 0 if ab is None else ab.moved
    b_to_a = 0 if ba is None else ba.moved
    set_relay_counts(exc, a_to_b, b_to_a)
    return exc
