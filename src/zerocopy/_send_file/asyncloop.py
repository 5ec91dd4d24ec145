"""The async send loop of send_file, on any event loop (see :mod:`zerocopy._loop`).

The asyncio form (:mod:`.aio`) and the anyio form (:mod:`.anyio_`) differ
only in the :class:`~zerocopy._loop.Loop` they pass to :func:`send`, which
holds everything else: ``sendfile`` first, the read/send fallback, exact
counts on every exception, the fairness rule, the file position afterwards.
"""

from __future__ import annotations

import os
import select
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from .._engine.sendfile import WRITABLE, Sendfile
from .._errors import GiveUp, set_transferred
from .._fair import Turn
from .._loop import Loop, wait_key
from .._streams import FILE, kind_of, stream_fd
from .._tally import Tally
from .common import COPY_CHUNK, read_chunk, seekable, settle_position

__all__ = ["send"]


class _Sender:
    """One send_file call: its socket, its loop and the bytes sent so far.

    ``sent`` is the running count; ``tally`` logs every call that sent, and
    is the exact count after an exception (see :mod:`zerocopy._tally`).
    """

    __slots__ = ("loop", "sent", "sock", "tally", "turn", "waiter")

    def __init__(self, sock: socket.socket, loop: Loop) -> None:
        self.sock = sock
        self.loop = loop
        self.waiter = loop.waiter()
        self.sent = 0
        self.tally = Tally()
        self.turn = Turn(loop)  # the fairness rule: see zerocopy._fair

    async def writable(self) -> None:
        """Wait for room in the socket, the turn given up meanwhile (see zerocopy._fair)."""
        await self.turn.wait(wait_key(self.waiter, (self.sock.fileno(), select.POLLOUT)))

    async def send_all(self, data: memoryview) -> None:
        self.tally.fold()
        turn = self.turn
        while data:
            try:
                k = self.tally.call(self.sock.send, (data[: turn.left],))
            except BlockingIOError:
                await self.writable()
                continue
            data = data[k:]
            self.sent += k
            if turn.spend(k):
                await turn.pause()

    async def via_send(self, file: Any, offset: int, count: int | None, threaded: bool) -> None:
        if offset:
            if not seekable(file):
                raise ValueError(f"offset {offset} given for a file that cannot seek")
            file.seek(offset)
        buf = memoryview(bytearray(COPY_CHUNK))
        while True:
            want = COPY_CHUNK if count is None else min(count - self.sent, COPY_CHUNK)
            if want <= 0:
                return
            if threaded:
                # A pipe or device may block: read it in a worker thread.
                data = await self.loop.in_thread(read_chunk, file, buf[:want])
            else:
                data = read_chunk(file, buf[:want])
            if not data:
                return
            await self.send_all(data)


async def send(
    sock: socket.socket,
    loop: Loop,
    file: Any,
    offset: int,
    count: int | None,
    *,
    first: Callable[[], Awaitable[None]] | None = None,
    fallback: bool = True,
) -> int:
    """Send *file* over non-blocking *sock*, waiting on *loop*; arguments already checked.

    *first*, if given, is awaited before anything is sent (a stream's own
    buffered bytes going out), inside the accounting: an exception there too
    carries ``bytes_transferred`` (0).  Every exception, a cancellation
    included, carries ``bytes_transferred``; the waits are dropped and the file
    position set to ``offset + sent`` on the way out.

    With *fallback* False nothing is read and sent by ``send()``: where
    ``sendfile`` cannot start (not a regular file, or an errno that means "not
    here") this raises :class:`~zerocopy._errors.GiveUp`, which the caller
    turns into its own "not available" error (asyncio's
    ``SendfileNotAvailableError``); where its first call moves nothing (end of
    file at *offset*) it returns 0, as asyncio's native path does.
    """
    sender = _Sender(sock, loop)
    start = None
    try:
        if first is not None:
            await first()
        fd = stream_fd(file, reading=True)
        regular = fd is not None and kind_of(os.fstat(fd).st_mode) == FILE
        if fd is not None and regular:
            turn = sender.turn
            transfer = Sendfile(sock.fileno(), fd, offset, count, sender.tally)
            try:
                transfer.most = turn.left
                for n in transfer:
                    if n == WRITABLE:
                        await sender.writable()  # the turn given up first
                    elif turn.spend(n):
                        await turn.pause()
                    transfer.most = turn.left
                sender.sent = transfer.sent
                return sender.sent
            except GiveUp as exc:
                if not fallback:
                    # give_up_or_raise chains the errno's OSError; a bare GiveUp
                    # is a first call that moved nothing: the end of the file.
                    if exc.__cause__ is None:
                        return 0
                    raise
                start = file.tell()  # nothing went out: read and send it instead
        if not fallback:
            raise GiveUp("not a regular file: sendfile cannot send it")
        await sender.via_send(file, offset, count, threaded=fd is not None and not regular)
        return sender.sent
    except BaseException as exc:
        sender.sent = sender.tally.total()  # exact, whatever raised where
        set_transferred(exc, sender.sent)
        raise
    finally:
        sender.turn.close()
        sender.waiter.close()
        settle_position(file, offset, sender.sent, start)
