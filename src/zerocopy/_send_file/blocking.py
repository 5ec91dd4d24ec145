"""send_file over blocking sockets and sockets with a timeout."""

from __future__ import annotations

import errno
import select
import socket
import time
from typing import Any

from .. import _backend
from .._args import poll_ms
from .._engine.sendfile import WRITABLE, Sendfile
from .._errors import GiveUp, set_transferred
from .._tally import Tally
from .._types import SupportsRead
from .common import COPY_CHUNK, check_params, read_chunk, regular_fd, seekable, settle_position

__all__ = ["send_file"]


def _wait(fd: int, events: int, timeout: float | None, call: str) -> None:
    poller = select.poll()
    poller.register(fd, events)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            raise TimeoutError(errno.ETIMEDOUT, f"{call}: timed out")
        # poll_ms clamps a timeout longer than poll(2) takes: loop until the deadline.
        if poller.poll(poll_ms(left)):
            return


def _no_sendfile() -> bool:
    # The backend found no sendfile with Linux's semantics here.
    return "sendfile" not in _backend.features()


def _via_send(sock: socket.socket, file: Any, offset: int, count: int | None, tally: Tally) -> int:
    if offset:
        if not seekable(file):
            raise ValueError(f"offset {offset} given for a file that cannot seek")
        file.seek(offset)
    sent = 0
    buf = memoryview(bytearray(COPY_CHUNK))
    send = sock.send
    while True:
        want = COPY_CHUNK if count is None else min(count - sent, COPY_CHUNK)
        if want <= 0:
            return sent
        data = read_chunk(file, buf[:want])
        if not data:
            return sent
        while data:
            k = tally.call(send, (data,))
            data = data[k:]
            sent += k
        tally.fold()


def send_file(
    sock: socket.socket, file: SupportsRead[bytes], offset: int = 0, count: int | None = None
) -> int:
    """Send *file* over stream socket *sock* with ``sendfile(2)``; return bytes sent.

    Semantics of :meth:`socket.socket.sendfile`: sending starts at *offset*
    (the file position is not used), *count* ``None`` means to end of file,
    and the file position is left at ``offset + sent``.  Works on blocking
    sockets and sockets with a timeout (waiting with ``poll`` between partial
    sends; when one wait exceeds the timeout, :class:`TimeoutError` is raised
    with ``bytes_transferred``).  Non-blocking sockets raise
    :class:`ValueError`; use :func:`zerocopy.aio.send_file`.

    Objects without a regular file behind them (``BytesIO``, pipes, gzip...)
    are read and sent with ``send``, and so is everything sent over a TLS
    socket (an :class:`ssl.SSLSocket`: sendfile would bypass the encryption).
    A file that shrinks during the send ends cleanly with the bytes that
    existed.  Any failure after bytes went out
    carries ``bytes_transferred``.
    """
    obj: Any = file  # told and seeked too, as any file object
    check_params(sock, file, offset, count)
    if sock.gettimeout() == 0.0:
        raise ValueError("non-blocking sockets are not supported")
    # A TLS socket's fd carries ciphertext: sendfile would bypass the
    # encryption, so those (and any other subclass) take the send path.
    fd = regular_fd(file) if type(sock) is socket.socket else None
    tally = Tally()  # the exact count, however the send ends
    start = None
    try:
        try:
            if fd is not None:
                out, timeout = sock.fileno(), sock.gettimeout()
                try:
                    for n in (transfer := Sendfile(out, fd, offset, count, tally)):
                        if n == WRITABLE:
                            _wait(out, select.POLLOUT, timeout, "send_file")
                    return transfer.sent
                except GiveUp:
                    start = obj.tell()  # nothing went out: read and send it instead
                    if not offset and _no_sendfile():
                        # No Linux sendfile on this platform: a regular file
                        # still goes from *offset*, as socket.sendfile sends
                        # it with the BSDs' sendfile (macOS, FreeBSD).
                        obj.seek(0)
            return _via_send(sock, file, offset, count, tally)
        finally:
            settle_position(obj, offset, tally.total(), start)
    except BaseException as exc:
        # Any failure, a signal handler's too (in a seek above, say), says
        # how far the send got.
        set_transferred(exc, tally.total())
        raise
