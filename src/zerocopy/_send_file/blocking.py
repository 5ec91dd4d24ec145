"""send_file over blocking sockets and sockets with a timeout."""

from __future__ import annotations

import errno
import os
import select
import socket
import time
from typing import Any

from .. import _backend
from .._constants import MAX_RW_COUNT
from .._errors import GiveUp, give_up_or_raise, set_transferred
from .._fd import poll_ms
from .._tally import Tally
from .._types import SupportsRead
from .common import COPY_CHUNK, SEND_CHUNK, check_params, read_chunk, regular_fd, seekable

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


def _via_sendfile(sock: socket.socket, fd: int, offset: int, count: int | None) -> int:
    timeout = sock.gettimeout()
    sendfile = _backend.current().sendfile
    out = sock.fileno()
    tally = Tally()  # the exact count if an exception cuts the loop short
    sent = 0
    try:
        while True:
            want = SEND_CHUNK if count is None else min(count - sent, SEND_CHUNK)
            if want <= 0:
                return sent
            try:
                n = sendfile(out, fd, offset + sent, min(want, MAX_RW_COUNT), tally)
            except BlockingIOError:
                _wait(out, select.POLLOUT, timeout, "send_file")
                continue
            except OSError as exc:
                give_up_or_raise(exc, sent)
            if n == 0:
                if sent == 0 and os.fstat(fd).st_size == 0:
                    # Empty, or a pseudo-file (procfs reports size 0) on a kernel
                    # whose sendfile cannot read it: read it by hand to be sure.
                    raise GiveUp
                return sent  # end of file: it may have shrunk since we began
            sent += n
            tally.fold()
    except GiveUp:
        raise
    except BaseException as exc:
        # Any failure, a signal handler's exception too, says how far it got.
        set_transferred(exc, tally.total())
        raise


def _via_send(sock: socket.socket, file: Any, offset: int, count: int | None) -> int:
    if offset:
        if not seekable(file):
            raise ValueError(f"offset {offset} given for a file that cannot seek")
        file.seek(offset)
    sent = 0
    tally = Tally()  # the exact count if an exception cuts the loop short
    buf = memoryview(bytearray(COPY_CHUNK))
    send = sock.send
    try:
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
    except BaseException as exc:
        set_transferred(exc, tally.total())
        raise


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
    sent = 0
    try:
        try:
            if fd is not None:
                try:
                    sent = _via_sendfile(sock, fd, offset, count)
                    return sent
                except GiveUp:
                    # Nothing went out; if the send path finds nothing either,
                    # the position stays where it was, as with sendfile.
                    start = obj.tell()
                    sent = _via_send(sock, file, offset, count)
                    if sent == 0:
                        obj.seek(start)
                    return sent
            sent = _via_send(sock, file, offset, count)
            return sent
        except BaseException as exc:
            sent = getattr(exc, "bytes_transferred", sent)
            raise
        finally:
            # As socket.sendfile: the position follows what was sent (pipes and
            # other streams that cannot seek are simply read).
            if sent > 0 and seekable(file):
                obj.seek(offset + sent)
    except BaseException as exc:
        # Whatever raised, wherever (a signal handler during the seek above,
        # say), the exception says how far the send got.
        if getattr(exc, "bytes_transferred", None) is None:
            set_transferred(exc, sent)
        raise
