"""copyfileobj: shutil's contract, the kernel's shortcuts.

The strategy, in order:

0. Every copy (with a chunk size up to 1 MiB) starts as shutil's own loop:
   read a chunk, write it, read the next.  A copy that ends there, as most
   do, has cost what shutil's costs; only a second chunk with bytes in it
   pays for the checks below, which then decide for the rest of the copy.
1. Objects whose fd is not the byte stream (text, compressors, archive
   members, user classes, BytesIO, non-blocking or timed-out objects) go on
   with shutil's loop, so everything observable is shutil's.
2. Known objects whose fds cannot take a kernel path here (same file on both
   sides, an ``O_APPEND`` destination, a character-device source, a regular
   file with less than a chunk left) take a ``readinto`` loop over one
   reused buffer.
3. Otherwise (:mod:`.kernel`): what a buffered reader already holds
   is written first, a buffered writer is flushed first, the kernel copies
   with explicit offsets, and both objects are seeked to where a plain copy
   would have left them.
"""

from __future__ import annotations

import logging
import operator
import os
import socket
from collections.abc import Callable
from io import BufferedReader, BufferedWriter, FileIO, TextIOWrapper
from itertools import starmap
from typing import Any, AnyStr

from .. import _backend
from .._args import check_count
from .._errors import set_transferred
from .._streams import CHAR, FILE, OTHER, PIPE, SOCKET, is_append, kind_of, stream_fd
from .._types import SupportsRead, SupportsWrite
from . import kernel
from .transfer import BUFSIZE, COPY_BUFSIZE, Transfer, note_method, per_thread, thread_buffer
from .writer import SIZEOF, TextCount, put, write_direct

__all__ = ["copyfileobj"]

log = logging.getLogger("zerocopy")

#: Regular-file copies smaller than this go through the objects, not the kernel.
SMALL_COPY = COPY_BUFSIZE


def _next_chunk(read: Callable[[int], Any], length: int, t: Transfer) -> Any:
    # One read of shutil's loop (length already 0 -> 64 KiB), cut to the limit.
    if t.limit is None:
        return read(length)
    want = t.limit - t.total if length < 0 else t.room(length)
    if want <= 0:
        return None
    # length < 0 reads everything, bounded here by the count left; but
    # read(want) would allocate all of it up front (MemoryError for 2**40
    # and a 3-byte file, OverflowError from 2**63) where shutil's
    # read(-1) grows as it reads: gather a large count in chunks.
    buf = _read_upto(read, want) if length < 0 and want > BUFSIZE else read(want)
    if buf and len(buf) > want:
        buf = buf[:want]
    return buf


def _put(fdst: Any, t: Transfer) -> Callable[[Any, list[Any]], int]:
    # put(fdst), but one TextCount per copy: it keeps what it learned
    # (where the buffer is, what a newline becomes) from one loop to the next.
    if type(fdst) is TextIOWrapper:
        if t.text is None:
            t.text = TextCount(fdst)
        return t.text
    return put(fdst)


def _probe(fsrc: Any, fdst: Any, length: int, t: Transfer) -> Any:
    """Shutil's loop for one chunk and the read of the next: that chunk, or None at the end."""
    t.method = "read"
    length = length or COPY_BUFSIZE
    read = fsrc.read1 if type(fsrc) is BufferedReader else fsrc.read
    buf = _next_chunk(read, length, t)
    if not buf:
        return None
    t.add(_put(fdst, t)(buf, t.tally.log))
    return _next_chunk(read, length, t) or None


def _shutil_loop(fsrc: Any, fdst: Any, length: int, t: Transfer, pending: Any = None) -> None:
    # shutil.copyfileobj's loop, statement for statement, plus the limit;
    # *pending* is a chunk already read, written first.
    t.method = "read"
    length = length or COPY_BUFSIZE
    fsrc_read = fsrc.read
    fdst_write = _put(fdst, t)
    log = t.tally.log
    buf = pending if pending else _next_chunk(fsrc_read, length, t)
    while buf:
        t.add(fdst_write(buf, log))
        buf = _next_chunk(fsrc_read, length, t)


def _read_upto(read: Callable[[int], Any], n: int) -> Any:
    """What ``read(n)`` returns, gathered a chunk at a time instead of allocated at once.

    Chunks are read until *n* are in, or until one comes back short or
    empty: where ``read(n)`` itself stops (end of input; for a raw stream,
    what was available).  Reading all of it before the caller writes keeps
    read-everything semantics, which a file copied onto itself depends on.
    """
    parts = []
    got = 0
    while True:
        ask = min(n - got, BUFSIZE)
        part = read(ask)
        if not part:
            break
        parts.append(part)
        got += len(part)
        if len(part) < ask or got >= n:
            break
    if len(parts) <= 1:
        return parts[0] if parts else part  # as read() gave it, None and b"" included
    return "".join(parts) if isinstance(parts[0], str) else b"".join(parts)


def _write_all(fdst: Any, view: memoryview, log: list[Any]) -> None:
    # All of view, a short write retried (the readinto loops are ours, not shutil's).
    if type(fdst) is BufferedWriter:
        put(fdst)(view, log)
        return
    write = fdst.write
    while view:
        log.extend(starmap(write, ((view,),)))
        n = log[-1]
        if n is None:
            raise BlockingIOError(11, "write would block", None)
        view = view[n:]


def _readinto_loop(fsrc: Any, fdst: Any, length: int, t: Transfer) -> None:
    t.method = "readinto"
    mv = thread_buffer(length if length > 0 else BUFSIZE)
    readinto = fsrc.readinto
    while True:
        want = t.room(len(mv))
        if want == 0:
            break
        n = readinto(mv[:want])
        if not n:
            break
        _write_all(fdst, mv[:n], t.tally.log)
        t.add(n)


def _kind(obj: Any, mode: int) -> str:
    kind = kind_of(mode)
    if kind == SOCKET:
        raw = obj if type(obj) is socket.SocketIO else getattr(obj, "raw", None)
        if type(raw) is not socket.SocketIO:
            return OTHER  # a FileIO over a socket fd: its type is unknown
    return kind


def _write_pending(fdst: Any, pending: Any, t: Transfer) -> None:
    # The chunk shutil's loop read last goes out before anything else moves.
    if pending:
        t.add(put(fdst)(pending, t.tally.log))


def _same_file(
    fsrc: Any, fdst: Any, dfd: int, size: int, length: int, t: Transfer, pending: Any
) -> None:
    # Source and destination are one file.  Appending to it would feed the
    # copy forever (shutil never returns): stop at the size it had when we
    # began.  Otherwise shutil's own loop gives shutil's result where shutil
    # ends, and a guard a few chunks past the original size ends the cases
    # where shutil would not (a destination ahead of the source).
    append = is_append(dfd)
    if append and pending:
        fdst.flush()  # what moved so far was appended: the file grew by t.total
        size = os.fstat(dfd).st_size
    # What was left when the copy began: the source has since advanced by
    # t.total + len(pending), the file grown by at most t.total (by exactly
    # that when appending), so this is never more, and at most t.total less.
    remaining = max(0, size - fsrc.tell() + (len(pending) if pending else 0))
    if append:
        t.limit = remaining if t.limit is None else min(t.limit, remaining)
        if pending and (cut := len(pending) - t.room(len(pending))):
            # shutil's loop read back some of what it appended: unread it.
            fsrc.seek(fsrc.tell() - cut)
            pending = pending[:-cut]
        _write_pending(fdst, pending, t)
        return _readinto_loop(fsrc, fdst, length, t)
    guard = remaining + 4 * max(length, COPY_BUFSIZE) + BUFSIZE
    t.limit = guard if t.limit is None else min(t.limit, guard)
    return _shutil_loop(fsrc, fdst, length, t, pending)


def kernel_copies() -> bool:
    """Whether this platform's backend has any kernel copy (else: shutil's loop, as shutil).

    Decided by what the backend found (``FEATURES``), not by platform name:
    macOS and Windows have none that zerocopy can use, FreeBSD has
    copy_file_range.
    """
    return not _backend.features().isdisjoint(("copy_file_range", "sendfile", "splice"))


def _copy(fsrc: Any, fdst: Any, length: int, t: Transfer, pending: Any) -> None:
    # Shutil's loop moved the first chunk and read a second, *pending*: the
    # copy is not small, and the kernel may take the rest.  (pending is None
    # for the lengths that take no probe: nothing has moved yet.)
    sfd = stream_fd(fsrc, reading=True)
    dfd = stream_fd(fdst, reading=False) if sfd is not None else None
    if sfd is None or dfd is None or fsrc is fdst or not kernel_copies():
        return _shutil_loop(fsrc, fdst, length, t, pending)
    sst = os.fstat(sfd)
    dst = os.fstat(dfd)
    skind = _kind(fsrc, sst.st_mode)
    dkind = _kind(fdst, dst.st_mode)
    if kernel.nonblocking(sfd, skind) or kernel.nonblocking(dfd, dkind):
        return _shutil_loop(fsrc, fdst, length, t, pending)
    if skind == FILE and dkind == FILE and (sst.st_dev, sst.st_ino) == (dst.st_dev, dst.st_ino):
        return _same_file(fsrc, fdst, dfd, sst.st_size, length, t, pending)
    _write_pending(fdst, pending, t)
    if skind not in (FILE, PIPE, SOCKET) or dkind not in (FILE, PIPE, SOCKET, CHAR):
        return _readinto_loop(fsrc, fdst, length, t)
    if dkind == FILE and is_append(dfd):
        return _readinto_loop(fsrc, fdst, length, t)
    if skind == FILE and sst.st_size - fsrc.tell() < SMALL_COPY:
        # Less than a chunk left: a kernel call saves nothing here, and
        # going through the objects keeps even error timing exactly
        # shutil's (a buffered writer reports a broken pipe at close, not now).
        return _readinto_loop(fsrc, fdst, length, t)
    kernel.copy(fsrc, sfd, skind, fdst, dfd, dkind, t)


def copyfileobj(
    fsrc: SupportsRead[AnyStr],
    fdst: SupportsWrite[AnyStr],
    length: int = 0,
    *,
    count: int | None = None,
    progress: Callable[[int], object] | None = None,
) -> int:
    """Copy the contents of file object *fsrc* to *fdst*, like :func:`shutil.copyfileobj`.

    For every pair of objects ``shutil.copyfileobj`` accepts, the bytes that
    reach *fdst*, the positions of both objects afterwards and the exception
    type of a failing copy are the same.  Where both objects' fds carry their
    bytes (files, pipes, sockets' ``makefile()`` objects) and the source
    holds more than two chunks, the kernel copies the rest with
    ``copy_file_range``, ``sendfile`` or ``splice``.

    *length* is the chunk size of the read/write loop (0: 64 KiB; negative:
    read everything at once), as in shutil.  *count* copies at most that many
    bytes.  *progress* is called with the running total after every chunk
    and once at the end.  Returns the number of bytes copied.

    A failure after some bytes moved raises the original :class:`OSError`
    subclass with ``bytes_transferred`` set to the bytes that reached *fdst*.

    For a text destination (an :class:`io.TextIOWrapper`) the unit of the
    count, returned or in ``bytes_transferred``, is the character, as the
    chunks are :class:`str`: after a failed write it is the number of
    characters whose encoded bytes (newlines translated) the wrapper's binary
    buffer accepted, so that ``fdst.buffer.tell()`` has moved past exactly
    them, plus at most part of the next one, which is not counted.  The
    wrapper hands every write's bytes to its buffer at once (shutil's keeps
    up to 8 KiB pending); when nothing fails, the bytes and positions are
    shutil's.  Where its buffer has no position (a pipe, a socket) or its
    encoder keeps state between characters (utf-7, iso2022, hz, idna,
    punycode, big5hkscs), a write that fails counts none of its characters,
    though some of its bytes may have reached the buffer.
    """
    if (
        count is None
        and progress is None
        and type(length) is int
        and (not length or 0 < length <= BUFSIZE)
    ):
        # The common call.  Shutil's own loop first: a copy whose second read
        # finds the end (one chunk or less: most copies) ends here, having
        # made shutil's calls and nothing else.  Only a second chunk with
        # bytes in it says the copy may be large enough to weigh the kernel.
        # A BufferedReader is read with read1: the same chunks from a file,
        # in no more system calls; from a pipe or socket, what has arrived,
        # never held in a read that waits for more (where a signal would
        # lose it).
        # A write that fails part-way counts what its file got (.writer):
        # a BufferedWriter's raw writes, a FileIO's short write, in *log*.
        done = 0
        log: list[Any] | tuple[()] = ()
        try:
            read = fsrc.read1 if type(fsrc) is BufferedReader else fsrc.read
            n = length or COPY_BUFSIZE
            buf = read(n)
            if buf:
                if type(fdst) is BufferedWriter:
                    if len(buf) > (size := fdst.__sizeof__() - SIZEOF) > 0:  # see _compat
                        # More than its buffer holds: it would flush and write
                        # to its raw file, and lose count of a raw write that a
                        # later one's failure follows; so this does it, counting.
                        fdst.flush()
                        done = fdst.raw.write(buf)
                        if done != len(buf):  # short (ENOSPC, EFBIG next?), or None
                            log = [done]
                            done = write_direct(fdst, buf, size, log, False, done)
                    else:
                        fdst.write(buf)  # into its buffer
                        done = len(buf)
                elif type(fdst) is FileIO:
                    done = fdst.write(buf) or 0  # shutil ignores a short write; the count does not
                elif type(fdst) is TextIOWrapper:
                    # Characters whose bytes its buffer accepted (.writer.TextCount).
                    text = TextCount(fdst)
                    log = []
                    done = text(buf, log)
                else:
                    fdst.write(buf)
                    done = len(buf)
                buf = read(n)
        except BaseException as exc:
            note_method("read")
            set_transferred(exc, sum(n for n in log if n) if log else done)
            raise
        if not buf:
            per_thread.method = "read"
            return done
        t = Transfer(None, None)
        t.total = t.base = done
        t.method = "read"
        if type(fdst) is TextIOWrapper:
            t.text = text  # bound above: the first chunk went through it
        return _run(fsrc, fdst, length, t, buf)
    length = _length(length)
    limit = None if count is None else check_count(count, "count")
    if progress is not None and not callable(progress):
        raise TypeError(f"progress must be callable, not {type(progress).__name__}")
    return _run(fsrc, fdst, length, Transfer(limit, progress), None)


def _length(length: Any) -> int:
    # The chunk size as shutil takes it: None too ("if not length"), not a bool.
    if length is None:
        return 0
    if isinstance(length, bool):
        raise TypeError("length must be an int, not bool")
    return operator.index(length)


def _run(fsrc: Any, fdst: Any, length: int, t: Transfer, pending: Any) -> int:
    # Everything but a copy that the fast path finished; *pending* is the
    # fast path's second chunk, or None when nothing has moved yet.
    try:
        if pending is not None:
            _copy(fsrc, fdst, length, t, pending)
        elif t.limit == 0:
            pass  # method "none"
        elif length < 0 or length > BUFSIZE:
            # No probe: its chunks would go through Python whole (read(-1)
            # of a large file, a huge read(length)); decide first, as before.
            _copy(fsrc, fdst, length, t, None)
        elif pending := _probe(fsrc, fdst, length, t):
            _copy(fsrc, fdst, length, t, pending)
        if t.progress is not None:
            t.progress(t.total)
        log.debug("copyfileobj: %d bytes by %s", t.total, t.method)
    except BaseException as exc:
        # Any failure, a signal handler's exception or the progress
        # callback's included, says how far the copy got: exactly, from the
        # tally, where writes went through it.
        set_transferred(exc, t.settle())
        raise
    finally:
        note_method(t.method)
    return t.total
