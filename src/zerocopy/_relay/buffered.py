"""One relay direction without splice: socket -> buffer -> socket.

Where the os module has no ``splice`` (macOS, the BSDs, Windows) a relay
does what a plain relay does: ``recv_into`` a buffer, ``send`` it on.
:func:`buffered_step` is the backends' ``relay_step`` for that case, with the
same statuses and the same state fields (``in_pipe`` is the bytes held in the
buffer, ``delivered`` exact through a :class:`~zerocopy._tally.Tally`), so
:class:`~zerocopy._relay.direction.Direction` and every loop over it are the
same on every platform.  A buffer holds at most one read: the source is read
again only once everything read before has gone out, as with a pipe.
"""

from __future__ import annotations

import errno
import socket

from .._constants import (
    STEP_DST_FULL,
    STEP_DST_ZERO,
    STEP_ERROR,
    STEP_SPENT,
    STEP_SRC_EMPTY,
    STEP_SRC_END,
)
from .._tally import Tally

__all__ = ["BUFFER_SIZE", "BufferState", "buffered_step"]

#: One read's most: socket.sendfile's fallback and shutil read far less, but
#: a relay's direction runs until a side would block, so a larger read saves calls.
BUFFER_SIZE = 256 * 1024


class BufferState:
    """What ``relay_step`` keeps for a direction, with a buffer for a pipe."""

    __slots__ = ("buf", "err", "in_pipe", "start", "tally")

    def __init__(self, size: int = BUFFER_SIZE) -> None:
        self.buf = memoryview(bytearray(size))
        self.start = 0  #: where the bytes not sent yet begin in buf
        self.in_pipe = 0  #: bytes read that the destination has not taken yet
        self.err = 0
        self.tally = Tally()

    @property
    def delivered(self) -> int:
        return self.tally.total()


def buffered_step(src: socket.socket, dst: socket.socket, budget: int, state: BufferState) -> int:
    """Move bytes until a side would block or *budget* went out; why it stopped (``STEP_*``).

    Both sockets are non-blocking.  Errors come back as ``STEP_ERROR`` with
    ``state.err``, as from the backends' splice pump.
    """
    tally = state.tally
    moved = 0
    try:
        while True:
            left = budget - moved
            if state.in_pipe > 0:
                want = min(state.in_pipe, left)
                try:
                    n = tally.call(dst.send, (state.buf[state.start : state.start + want],))
                except BlockingIOError:
                    return STEP_DST_FULL
                if n == 0:
                    return STEP_DST_ZERO
                state.in_pipe -= n
                state.start += n
                moved += n
                tally.fold()
                if moved >= budget:
                    return STEP_SPENT
                continue
            state.start = 0
            try:
                n = src.recv_into(state.buf[: min(len(state.buf), left)])
            except BlockingIOError:
                return STEP_SRC_EMPTY
            if n == 0:
                return STEP_SRC_END
            state.in_pipe = n
    except OSError as exc:
        state.err = exc.errno or errno.EIO
        return STEP_ERROR
