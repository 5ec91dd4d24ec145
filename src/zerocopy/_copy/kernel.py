"""The kernel path of copyfileobj: fds, explicit offsets, a fallback chain.

Each method function copies until end of input or the limit and returns, or
raises :class:`GiveUp` before it moved a byte when the kernel says "not here"
(see :data:`FALLBACK_ERRNOS`), so the next method starts from exactly the same
offsets.  After a byte moved, every error is real and propagates.
"""

from __future__ import annotations

import errno
import io
import os
import socket
from collections.abc import Callable
from typing import Any

from .. import _backend
from .._constants import MAX_RW_COUNT
from .._engine.copy_file_range import copy_file_range
from .._engine.sendfile import CHUNK, Sendfile
from .._errors import FALLBACK_ERRNOS, GiveUp, give_up_or_raise
from .._pipes import default_pool
from .._streams import FILE, PIPE, SOCKET, read_past_urgent_mark
from .transfer import Transfer, thread_buffer

try:
    import fcntl
except ImportError:  # Windows: no fcntl (what needs it has a fallback there)
    fcntl = None  # type: ignore[assignment]

Method = Callable[[int, int, "Cursor", Transfer], None]
_RAW = (io.FileIO, socket.SocketIO)

__all__ = ["copy", "name_files", "nonblocking"]


class Cursor:
    """Where the copy stands in each file (None for pipes and sockets)."""

    __slots__ = ("d_off", "s_off")

    def __init__(self, s_off: int | None, d_off: int | None) -> None:
        self.s_off = s_off
        self.d_off = d_off


def nonblocking(fd: int, kind: str) -> bool:
    """True if a pipe or socket *fd* is in non-blocking mode (regular files never block)."""
    if kind not in (PIPE, SOCKET):
        return False
    if fcntl is None:
        return not os.get_blocking(fd)  # Windows (3.12+: pipes only)
    return bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_NONBLOCK)


def _write_fd(dfd: int, view: memoryview, cur: Cursor, t: Transfer) -> None:
    while view:
        if cur.d_off is not None:
            n = t.tally.call(os.pwrite, (dfd, view, cur.d_off))
            cur.d_off += n
        else:
            n = t.tally.call(os.write, (dfd, view))
        view = view[n:]
        t.add(n)


def _copy_file_range(sfd: int, dfd: int, cur: Cursor, t: Transfer) -> None:
    # File to file: both offsets are known.
    assert cur.s_off is not None
    assert cur.d_off is not None

    def each(n: int) -> None:
        cur.s_off += n  # type: ignore[operator]
        cur.d_off += n  # type: ignore[operator]
        t.add(n)

    # As in _sendfile: t.add(n) grows t.total by each call's count, as
    # count - moved does, so one t.chunk() asks what the loop's would.
    left = None if t.limit is None else t.limit - t.total
    copy_file_range(dfd, sfd, (cur.s_off, cur.d_off), left, t.chunk(CHUNK), t.tally, each)


def _sendfile(sfd: int, dfd: int, cur: Cursor, t: Transfer) -> None:
    # sendfile has no destination offset: a file destination is written at
    # its fd position, which is put at the cursor first and read back after.
    if cur.d_off is not None:
        os.lseek(dfd, cur.d_off, os.SEEK_SET)
    left = None if t.limit is None else t.limit - t.total
    start = cur.s_off
    assert start is not None  # a file source always has its offset
    transfer = Sendfile(dfd, sfd, start, left, t.tally)
    # t.add(n) grows t.total by what each call sent: as count - sent does, so
    # a t.chunk() taken once asks each call for what the loop's t.chunk() did.
    transfer.most, transfer.waits = t.chunk(MAX_RW_COUNT), False
    for n in transfer:
        cur.s_off = start + transfer.sent
        if cur.d_off is not None:
            cur.d_off += n
        t.add(n)


def _splice_direct(sfd: int, dfd: int, cur: Cursor, t: Transfer) -> None:
    # One end is a pipe: splice straight across.  0 means end of input.
    moved = 0
    splice = _backend.current().splice
    while want := t.chunk(MAX_RW_COUNT):
        try:
            n = splice(sfd, dfd, want, cur.s_off, cur.d_off, 0, t.tally)
        except OSError as exc:
            give_up_or_raise(exc, moved)
        if n == 0:
            if cur.s_off is not None or not (urgent := read_past_urgent_mark(sfd, None)):
                return
            _write_fd(dfd, memoryview(urgent), cur, t)  # past TCP urgent data
            moved += len(urgent)
            continue
        moved += n
        if cur.s_off is not None:
            cur.s_off += n
        if cur.d_off is not None:
            cur.d_off += n
        t.add(n)


def _splice_via_pipe(sfd: int, dfd: int, cur: Cursor, t: Transfer) -> None:
    # Socket to file/socket/device: through a pooled pipe.  Each batch read
    # into the pipe is drained completely before the next read.
    try:
        pool = default_pool()
        pipe = pool.acquire()
    except OSError as exc:  # EMFILE/ENFILE: no fds for a pipe, copy by hand
        raise GiveUp(exc.errno) from exc
    moved = 0
    splice = _backend.current().splice
    try:
        while want := t.room(pipe.size):
            try:
                # Into the pipe: not delivered yet, so not in the tally.
                n = splice(sfd, pipe.w, want, None, None, 0)
            except OSError as exc:
                give_up_or_raise(exc, moved)
            if n == 0:
                urgent = read_past_urgent_mark(sfd, None)
                if not urgent:  # end of stream (b"": nothing after the mark)
                    return
                _write_fd(dfd, memoryview(urgent), cur, t)  # past TCP urgent data
                moved += len(urgent)
                continue
            while n:
                try:
                    m = splice(pipe.r, dfd, n, None, cur.d_off, 0, t.tally)
                except OSError as exc:
                    if moved == 0 and exc.errno in FALLBACK_ERRNOS:
                        # The destination takes no splice, but the bytes
                        # already left the socket: deliver them by hand.
                        data = os.read(pipe.r, n)
                        _write_fd(dfd, memoryview(data), cur, t)
                        raise GiveUp(exc.errno) from exc
                    raise
                if m == 0:  # a file destination that takes no more
                    raise OSError(errno.EIO, "splice: destination accepted 0 bytes")
                n -= m
                moved += m
                if cur.d_off is not None:
                    cur.d_off += m
                t.add(m)
    finally:
        pool.release(pipe)  # closes it if bytes were left in it


def _read_write(sfd: int, dfd: int, cur: Cursor, t: Transfer) -> None:
    # The last resort, on fds: one reused buffer, pread/readv then write all.
    mv = thread_buffer(1 << 20)
    while want := t.room(len(mv)):
        view = mv[:want]
        if cur.s_off is not None:
            n = os.preadv(sfd, [view], cur.s_off)
            cur.s_off += n
        else:
            n = os.readv(sfd, [view])
        if n == 0:
            return
        _write_fd(dfd, view[:n], cur, t)


def _pending(fsrc: Any, skind: str, cur: Cursor, t: Transfer) -> bytes | None:
    """Take what a buffered reader already holds; None means end of input."""
    if type(fsrc) in _RAW:
        return b""
    if skind == FILE and cur.s_off is not None:  # a file always has its offset
        # The fd is ahead of the object by exactly its read-ahead.
        ahead = os.lseek(fsrc.raw.fileno(), 0, os.SEEK_CUR) - cur.s_off
        want = t.room(ahead)
        if want <= 0:
            return b""
        data: bytes = fsrc.read(want)  # served from the buffer: no I/O
        cur.s_off += len(data)
        return data
    # A pipe or socket: peek() returns everything buffered without I/O, or,
    # with nothing buffered, does one read (the first chunk a plain copy
    # would have read too).  read() then takes those bytes from the buffer.
    ahead = fsrc.peek()
    if not ahead:
        return None
    data = fsrc.read(t.room(len(ahead)))
    return data


def _chain(skind: str, dkind: str) -> list[tuple[str, Method]]:
    # (Files that stat says are under 64 KiB, procfs and sysfs among them,
    # never get here: copyfileobj copies them through the objects.)
    if skind == FILE:
        if dkind == FILE:
            return [("copy_file_range", _copy_file_range), ("sendfile", _sendfile)]
        return [("sendfile", _sendfile)]
    if skind == PIPE or dkind == PIPE:
        return [("splice", _splice_direct)]
    return [("splice", _splice_via_pipe)]


def copy(
    fsrc: Any,
    sfd: int,
    skind: str,
    fdst: Any,
    dfd: int,
    dkind: str,
    t: Transfer,
) -> None:
    """Copy through the kernel, setting ``t.method`` to what moved the bulk."""
    if type(fsrc) is io.BufferedRandom:
        fsrc.flush()  # its unwritten bytes belong before what we read
    if type(fdst) not in _RAW:
        fdst.flush()  # its buffered bytes come before ours
    cur = Cursor(fsrc.tell() if skind == FILE else None, fdst.tell() if dkind == FILE else None)
    start = Cursor(cur.s_off, cur.d_off)
    base = t.total  # what moved before, through the objects
    try:
        _copy_fds(fsrc, sfd, skind, dfd, dkind, cur, t)
    except BaseException as exc:
        # Every delivering call went through t.tally: take the count from
        # there (a signal handler may have raised between a call and its
        # bookkeeping) and put both files just past the delivered bytes, so
        # that a retry neither loses nor repeats any.
        done = t.settle() - base
        if start.s_off is not None:
            cur.s_off = start.s_off + done
        if start.d_off is not None:
            cur.d_off = start.d_off + done
        name_files(exc, fsrc, fdst)
        raise
    finally:
        # Put the objects where a plain copy would have left them; seek()
        # also drops stale buffers and cached positions.
        if cur.s_off is not None:
            fsrc.seek(cur.s_off)
        if cur.d_off is not None:
            fdst.seek(cur.d_off)


def name_files(exc: BaseException, fsrc: Any, fdst: Any) -> None:
    """Name both files in an error of our own system calls, as shutil's errors do."""
    if isinstance(exc, OSError) and exc.errno is not None and exc.filename is None:
        exc.filename = _name(fsrc)
        exc.filename2 = _name(fdst)


def _name(obj: Any) -> Any:
    name = getattr(obj, "name", None)
    return name if isinstance(name, (str, bytes)) else None


def _copy_fds(
    fsrc: Any,
    sfd: int,
    skind: str,
    dfd: int,
    dkind: str,
    cur: Cursor,
    t: Transfer,
) -> None:
    """Write the read-ahead, then run the method chain for these fd kinds."""
    t.method = "readinto"
    data = _pending(fsrc, skind, cur, t)
    if data is None:
        return
    if data:
        _write_fd(dfd, memoryview(data), cur, t)
    for name, method in _chain(skind, dkind):
        t.method = name
        try:
            method(sfd, dfd, cur, t)
        except GiveUp:
            continue
        return
    t.method = "readinto"
    _read_write(sfd, dfd, cur, t)
