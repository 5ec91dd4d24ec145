"""Server helpers: send_file and relay, over blocking sockets or sockets with a timeout."""

from __future__ import annotations

import errno
import io
import os
import select
import socket
import stat
import time
from typing import Any

from . import _backend
from ._constants import MAX_RW_COUNT
from ._errors import oserror
from ._fd import check_timeout, poll_ms, stream_fd
from ._kernel import FALLBACK_ERRNOS
from ._relay import Direction, annotate
from ._tally import Tally

__all__ = ["relay", "send_file"]

_SEND_CHUNK = 1 << 30  # like socket.sendfile: at most 1 GiB per call
_COPY_CHUNK = 256 * 1024


def _check_params(sock: Any, file: Any, offset: Any, count: Any) -> None:
    # The same checks, in the same order, as socket.socket.sendfile.
    if not isinstance(sock, socket.socket):
        raise TypeError(f"sock must be a socket.socket, not {type(sock).__name__}")
    mode = getattr(file, "mode", "b")
    # GzipFile and friends keep an int in .mode; only a text mode string is wrong.
    if (isinstance(mode, str) and "b" not in mode) or isinstance(file, io.TextIOBase):
        raise ValueError("file should be opened in binary mode")
    if not sock.type & socket.SOCK_STREAM:
        raise ValueError("only SOCK_STREAM type sockets are supported")
    if isinstance(offset, bool) or not isinstance(offset, int):
        raise TypeError(f"offset must be an int, not {type(offset).__name__}")
    if offset < 0:
        raise ValueError(f"offset must be >= 0, not {offset}")
    if offset >= 2**63:
        # No file has bytes there (off_t is 64-bit signed), and seek() would
        # raise OverflowError for it rather than the ValueError of bad input.
        raise ValueError(f"offset must be < 2**63, not {offset}")
    if count is not None:
        if isinstance(count, bool) or not isinstance(count, int):
            raise TypeError(f"count must be a positive integer (got {count!r})")
        if count <= 0:
            raise ValueError(f"count must be a positive integer (got {count!r})")


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


def _regular_fd(file: Any) -> int | None:
    # Only objects whose fd is their byte stream (not GzipFile & co., whose
    # fd holds the compressed bytes), and only regular files.
    fd = stream_fd(file, reading=True)
    if fd is None:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
    except OSError:
        return None
    return fd


class _GiveUp(Exception):
    pass


def _via_sendfile(sock: socket.socket, fd: int, offset: int, count: int | None) -> int:
    timeout = sock.gettimeout()
    sendfile = _backend.current().sendfile
    out = sock.fileno()
    tally = Tally()  # the exact count if an exception cuts the loop short
    sent = 0
    try:
        while True:
            want = _SEND_CHUNK if count is None else min(count - sent, _SEND_CHUNK)
            if want <= 0:
                return sent
            try:
                n = sendfile(out, fd, offset + sent, min(want, MAX_RW_COUNT), tally)
            except BlockingIOError:
                _wait(out, select.POLLOUT, timeout, "send_file")
                continue
            except OSError as exc:
                if sent == 0 and exc.errno in FALLBACK_ERRNOS:
                    raise _GiveUp from exc
                raise
            if n == 0:
                if sent == 0 and os.fstat(fd).st_size == 0:
                    # Empty, or a pseudo-file (procfs reports size 0) on a kernel
                    # whose sendfile cannot read it: read it by hand to be sure.
                    raise _GiveUp
                return sent  # end of file: it may have shrunk since we began
            sent += n
            tally.fold()
    except _GiveUp:
        raise
    except BaseException as exc:
        # Any failure, a signal handler's exception too, says how far it got.
        exc.bytes_transferred = tally.total()  # type: ignore[attr-defined]
        raise


def _seekable(file: Any) -> bool:
    try:
        return bool(file.seekable())
    except (AttributeError, ValueError, OSError):
        return hasattr(file, "seek") and not hasattr(file, "seekable")


def _via_send(sock: socket.socket, file: Any, offset: int, count: int | None) -> int:
    if offset:
        if not _seekable(file):
            raise ValueError(f"offset {offset} given for a file that cannot seek")
        file.seek(offset)
    sent = 0
    tally = Tally()  # the exact count if an exception cuts the loop short
    buf = memoryview(bytearray(_COPY_CHUNK))
    readinto = getattr(file, "readinto", None)
    send = sock.send
    try:
        while True:
            want = _COPY_CHUNK if count is None else min(count - sent, _COPY_CHUNK)
            if want <= 0:
                return sent
            if readinto is not None:
                n = readinto(buf[:want])
                data = buf[: n or 0]
            else:
                data = memoryview(file.read(want))
                n = len(data)
            if not n:
                return sent
            while data:
                k = tally.call(send, (data,))
                data = data[k:]
                sent += k
            tally.fold()
    except BaseException as exc:
        exc.bytes_transferred = tally.total()  # type: ignore[attr-defined]
        raise


def send_file(sock: socket.socket, file: Any, offset: int = 0, count: int | None = None) -> int:
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
    _check_params(sock, file, offset, count)
    if sock.gettimeout() == 0.0:
        raise ValueError("non-blocking sockets are not supported")
    # A TLS socket's fd carries ciphertext: sendfile would bypass the
    # encryption, so those (and any other subclass) take the send path.
    fd = _regular_fd(file) if type(sock) is socket.socket else None
    sent = 0
    try:
        try:
            if fd is not None:
                try:
                    sent = _via_sendfile(sock, fd, offset, count)
                    return sent
                except _GiveUp:
                    # Nothing went out; if the send path finds nothing either,
                    # the position stays where it was, as with sendfile.
                    start = file.tell()
                    sent = _via_send(sock, file, offset, count)
                    if sent == 0:
                        file.seek(start)
                    return sent
            sent = _via_send(sock, file, offset, count)
            return sent
        except BaseException as exc:
            sent = getattr(exc, "bytes_transferred", sent)
            raise
        finally:
            # As socket.sendfile: the position follows what was sent (pipes and
            # other streams that cannot seek are simply read).
            if sent > 0 and _seekable(file):
                file.seek(offset + sent)
    except BaseException as exc:
        # Whatever raised, wherever (a signal handler during the seek above,
        # say), the exception says how far the send got.
        if getattr(exc, "bytes_transferred", None) is None:
            exc.bytes_transferred = sent  # type: ignore[attr-defined]
        raise


def relay(a: socket.socket, b: socket.socket, *, timeout: float | None = None) -> tuple[int, int]:
    """Copy both directions between connected stream sockets *a* and *b* until both end.

    Bytes go through the kernel with ``splice`` via two pooled pipes.  An end
    of stream from one side becomes ``shutdown(SHUT_WR)`` on the other, and
    the other direction carries on.  Returns ``(a_to_b, b_to_a)``.

    *timeout* is an idle timeout in seconds: if neither direction moves for
    that long, :class:`TimeoutError` is raised (``inf``, like None, never
    expires; a negative or NaN timeout is a :class:`ValueError`).  A reset or
    error on either side stops both directions and raises it
    (``ConnectionResetError``, ``BrokenPipeError``...).  Every exception out
    of ``relay`` carries the bytes delivered so far as ``a_to_b`` and
    ``b_to_a`` (and the pair as ``bytes_transferred``).  The sockets are left
    open, their blocking mode restored; the caller closes them.
    """
    for name, sock in (("a", a), ("b", b)):
        if not isinstance(sock, socket.socket):
            raise TypeError(f"{name} must be a socket.socket, not {type(sock).__name__}")
        if type(sock) is not socket.socket:
            # ssl.SSLSocket: splice would move ciphertext between the peers.
            raise TypeError(f"{name} must be a plain socket.socket, not {type(sock).__name__}")
        if sock.type != socket.SOCK_STREAM:
            raise ValueError(f"{name} must be a SOCK_STREAM socket")
    check_timeout(timeout, negative=False)
    saved = (a.gettimeout(), b.gettimeout())
    ab: Direction | None = None
    ba: Direction | None = None
    try:
        ab = Direction(a, b)
        ba = Direction(b, a)
        try:
            a.setblocking(False)
            b.setblocking(False)
            _relay_loop(ab, ba, timeout)
        finally:
            ab.close()
            ba.close()
            a.settimeout(saved[0])
            b.settimeout(saved[1])
    except BaseException as exc:
        # Also what the clean-up raised (a signal handler, say): counts on all.
        annotate(exc, ab, ba)
        raise
    return ab.moved, ba.moved


def _relay_loop(ab: Direction, ba: Direction, timeout: float | None) -> None:
    poller = select.poll()
    registered: dict[int, int] = {}
    hung_up: set[int] = set()
    last_progress = time.monotonic()
    while not (ab.done and ba.done):
        wants: dict[int, int] = {}
        progressed = False
        for d in (ab, ba):
            if d.done:
                continue
            moved = d.step()
            progressed |= moved
            if d.waiting is not None:
                fd, events = d.waiting
                wants[fd] = wants.get(fd, 0) | events
        if progressed:
            last_progress = time.monotonic()
            continue
        if ab.done and ba.done:
            return
        # A side nobody waits on (its direction ended) is still watched for
        # errors, with no events asked: a reset there must end the relay now,
        # not after the idle timeout.  A hang-up alone is reported on every
        # poll, so a side that shows one is not watched again.
        for fd in (ab.src_fd, ba.src_fd):
            if fd not in wants and fd not in hung_up:
                wants[fd] = 0
        for fd in list(registered):
            if fd not in wants:
                poller.unregister(fd)
                del registered[fd]
        for fd, events in wants.items():
            if registered.get(fd) != events:
                poller.register(fd, events)  # register() also modifies
                registered[fd] = events
        if timeout is None:
            ms = None
        else:
            left = timeout - (time.monotonic() - last_progress)
            if left <= 0:
                raise TimeoutError(errno.ETIMEDOUT, "relay: idle timeout")
            ms = poll_ms(left)  # None for inf; a long wait is cut short and re-checked
        for fd, revents in poller.poll(ms):
            if wants.get(fd):
                continue  # a direction waits on it: its next step sees any error
            if revents & select.POLLERR:
                sock = ab.src if fd == ab.src_fd else ba.src
                err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    raise oserror(err, "relay")
            if revents & (select.POLLHUP | select.POLLERR | select.POLLNVAL):
                hung_up.add(fd)
