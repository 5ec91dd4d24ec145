"""send_file on the running event loop, over non-blocking sockets."""

from __future__ import annotations

import asyncio
import os
import select
import socket
from typing import Any, cast

from .. import _backend
from .._aiostream import BorrowedSocket, is_transport_like
from .._aiowait import Waiter, check_nonblocking_socket
from .._constants import MAX_RW_COUNT, STEP_BUDGET
from .._errors import GiveUp, give_up_or_raise, set_transferred
from .._fd import FILE, kind_of, stream_fd
from .._tally import Tally
from .._types import SupportsRead
from .common import (
    COPY_CHUNK,
    SEND_CHUNK,
    check_file_args,
    check_params,
    read_chunk,
    seekable,
)

__all__ = ["send_file"]


class _Sender:
    """One send_file call: its loop, socket, waiter and the bytes sent so far.

    ``sent`` is the running count; ``tally`` logs every call that sent, and
    is the exact count after an exception (see :mod:`zerocopy._tally`).
    """

    __slots__ = ("loop", "sent", "sock", "tally", "waiter")

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
        self.loop = loop
        self.sock = sock
        self.sent = 0
        self.tally = Tally()
        self.waiter = Waiter(loop)

    async def writable(self) -> None:
        self.waiter.watch({(self.sock.fileno(), select.POLLOUT)})
        await self.waiter.wait()

    async def via_sendfile(self, fd: int, offset: int, count: int | None) -> None:
        """Send with sendfile; :class:`GiveUp` if it cannot start here (nothing sent)."""
        since_yield = 0
        sendfile = _backend.current().sendfile
        out = self.sock.fileno()
        while True:
            want = SEND_CHUNK if count is None else min(count - self.sent, SEND_CHUNK)
            if want <= 0:
                return
            self.tally.fold()
            try:
                n = sendfile(out, fd, offset + self.sent, min(want, MAX_RW_COUNT), self.tally)
            except BlockingIOError:
                await self.writable()
                since_yield = 0
                continue
            except OSError as exc:
                give_up_or_raise(exc, self.sent)
            if n == 0:
                # End of file (it may have shrunk since we began), or procfs and
                # sysfs files, which report size 0: let read() have the last word.
                if self.sent == 0:
                    raise GiveUp("sendfile moved nothing")
                return
            self.sent += n
            since_yield += n
            if since_yield >= STEP_BUDGET:  # a fast peer must not starve the loop
                since_yield = 0
                await asyncio.sleep(0)

    async def send_all(self, data: memoryview) -> None:
        self.tally.fold()
        while data:
            try:
                k = self.tally.call(self.sock.send, (data,))
            except BlockingIOError:
                await self.writable()
                continue
            data = data[k:]
            self.sent += k

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
                data = await asyncio.to_thread(read_chunk, file, buf[:want])
            else:
                data = read_chunk(file, buf[:want])
            if not data:
                return
            await self.send_all(data)


async def send_file(
    sock: socket.socket | asyncio.StreamWriter | asyncio.BaseTransport,
    file: SupportsRead[bytes],
    offset: int = 0,
    count: int | None = None,
) -> int:
    """Send *file* over *sock* with ``sendfile(2)``; return bytes sent.

    *sock* is a non-blocking stream socket, an :class:`asyncio.StreamWriter`
    or a stream transport (asyncio's, or uvloop's, where ``loop.sendfile``
    does not exist).

    The contract of :func:`zerocopy.send_file` and :meth:`socket.socket.sendfile`:
    sending starts at *offset* (the file position is not used), *count*
    ``None`` means to end of file, and the file position is left at
    ``offset + sent``.  A socket must be non-blocking (:class:`ValueError`
    otherwise, as :meth:`asyncio.loop.sock_sendfile`); the task waits for
    writability on the running loop between partial sends.

    A writer or transport is used as ``loop.sendfile(transport, ...)`` uses
    one: what the transport buffers goes out first, its reading is paused
    while the kernel sends and resumed afterwards, and the stream is usable
    again when this returns.  Nothing else may write to it meanwhile.  A TLS
    or datagram transport is a :class:`TypeError`, a closing one a
    :class:`ValueError`, both before any byte moves.

    Regular files go out with ``sendfile``.  Other objects are read in chunks
    and sent with ``send``: those whose fd carries their bytes but is not a
    regular file (pipes, devices) are read in a worker thread; the rest
    (``BytesIO``, compressed files...) are read directly and must not block.
    A task cancelled during a worker-thread read loses the chunk being read
    (a pipe cannot be rewound).  A file that shrinks during the send ends
    cleanly.  Every exception after the checks, :class:`asyncio.CancelledError`
    included, carries ``bytes_transferred``.
    """
    if isinstance(sock, socket.socket) or not is_transport_like(sock):
        check_params(sock, file, offset, count)
        check_nonblocking_socket(sock, "sock")
        plain = cast(socket.socket, sock)  # check_params raised for anything else
        return await _send(asyncio.get_running_loop(), plain, file, offset, count, None)
    borrowed = BorrowedSocket.check(sock, "sock")
    check_file_args(file, offset, count)
    loop = asyncio.get_running_loop()
    try:
        return await _send(loop, borrowed.lend(), file, offset, count, borrowed)
    finally:
        borrowed.give_back()


async def _send(
    loop: asyncio.AbstractEventLoop,
    sock: socket.socket,
    file: SupportsRead[bytes],
    offset: int,
    count: int | None,
    borrowed: BorrowedSocket | None,
) -> int:
    obj: Any = file  # told and seeked too, as any file object
    sender = _Sender(loop, sock)
    try:
        if borrowed is not None:
            await borrowed.drain(loop)
        fd = stream_fd(file, reading=True)
        regular = fd is not None and kind_of(os.fstat(fd).st_mode) == FILE
        if fd is not None and regular:
            try:
                await sender.via_sendfile(fd, offset, count)
                return sender.sent
            except GiveUp:
                pass  # nothing went out: read and send it instead
        await sender.via_send(file, offset, count, threaded=fd is not None and not regular)
        return sender.sent
    except BaseException as exc:
        sender.sent = sender.tally.total()  # exact, whatever raised where
        set_transferred(exc, sender.sent)
        raise
    finally:
        sender.waiter.close()
        # As socket.sendfile: the position follows what was sent.
        if sender.sent > 0 and seekable(file):
            obj.seek(offset + sender.sent)
