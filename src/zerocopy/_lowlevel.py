"""The low-level API: one kernel call each, on whichever backend is active.

Every function accepts int fds or objects with ``fileno()``, validates its
arguments (``TypeError`` for wrong types, ``ValueError`` for bad values),
returns the number of bytes the kernel moved (which may be less than asked),
and raises the :class:`OSError` subclass for the kernel's errno with a message
naming the system call.  EINTR is retried on every backend.
"""

from __future__ import annotations

import errno
import os
import threading
from collections import deque
from collections.abc import Sequence
from typing import Any

from . import _backend
from ._args import FileDescriptorLike, check_count, check_flags, check_offset, fileno
from ._constants import (
    MAX_RW_COUNT,
    SPLICE_F_GIFT,
    SPLICE_F_MORE,
    SPLICE_F_MOVE,
    SPLICE_F_NONBLOCK,
)
from ._errors import oserror

try:
    import fcntl
except ImportError:  # Windows: no fcntl (what needs it has a fallback there)
    fcntl = None  # type: ignore[assignment]
try:
    import termios
except ImportError:  # Windows
    termios = None  # type: ignore[assignment]

__all__ = ["copy_file_range", "sendfile", "splice", "tee", "vmsplice"]

_SPLICE_FLAGS = SPLICE_F_MOVE | SPLICE_F_NONBLOCK | SPLICE_F_MORE
# SPLICE_F_GIFT is refused on purpose: it needs page-aligned memory that is
# never touched again, which no ordinary Python buffer can promise.
_VMSPLICE_FLAGS = SPLICE_F_MOVE | SPLICE_F_NONBLOCK | SPLICE_F_MORE
# copy_file_range's count is chunked at 1 GiB by callers; one call is
# clamped here only so the value fits every ABI.
_MAX_COUNT = MAX_RW_COUNT

#: vmsplice(2) refuses more than IOV_MAX iovecs with EINVAL, where the os
#: backend's page-by-page write would take any number: one call takes at most
#: this many buffers on both backends, a short count like any other.
_IOV_MAX = os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 1024


def sendfile(
    out_fd: FileDescriptorLike, in_fd: FileDescriptorLike, offset: int | None, count: int
) -> int:
    """Copy up to *count* bytes from *in_fd* to *out_fd* with ``sendfile(2)``.

    With *offset* an int, reading starts there and *in_fd*'s position is left
    alone; with ``None`` the position is used and advanced.  *out_fd* may be
    any fd (socket, pipe, regular file without ``O_APPEND``).  Returns the
    bytes sent: 0 at end of file.
    """
    out = fileno(out_fd, "out_fd")
    src = fileno(in_fd, "in_fd")
    off = check_offset(offset, "offset")
    n = min(check_count(count), _MAX_COUNT)
    return int(_backend.current().sendfile(out, src, off, n))


def splice(
    src: FileDescriptorLike,
    dst: FileDescriptorLike,
    count: int,
    offset_src: int | None = None,
    offset_dst: int | None = None,
    flags: int = 0,
) -> int:
    """Move up to *count* bytes between two fds with ``splice(2)``.

    One of *src* and *dst* must be a pipe; the offset of a pipe end must be
    ``None``.  An offset given for the other end is used without moving its
    file position.  *flags* may combine ``SPLICE_F_MOVE``, ``SPLICE_F_NONBLOCK``
    and ``SPLICE_F_MORE``.  Returns the bytes moved: 0 at end of input.
    """
    a = fileno(src, "src")
    b = fileno(dst, "dst")
    n = min(check_count(count), _MAX_COUNT)
    off_a = check_offset(offset_src, "offset_src")
    off_b = check_offset(offset_dst, "offset_dst")
    f = check_flags(flags, _SPLICE_FLAGS)
    return int(_backend.current().splice(a, b, n, off_a, off_b, f))


def tee(src: FileDescriptorLike, dst: FileDescriptorLike, count: int, flags: int = 0) -> int:
    """Duplicate up to *count* bytes from pipe *src* into pipe *dst* with ``tee(2)``.

    The data stays in *src* for its reader.  Not available on the os backend,
    which raises :class:`~zerocopy.UnsupportedOperation`.
    """
    a = fileno(src, "src")
    b = fileno(dst, "dst")
    n = min(check_count(count), _MAX_COUNT)
    f = check_flags(flags, _SPLICE_FLAGS)
    return int(_backend.current().tee(a, b, n, f))


def vmsplice(fd: FileDescriptorLike, buffers: Sequence[Any], flags: int = 0) -> int:
    """Map the bytes of *buffers* into the write end of pipe *fd* with ``vmsplice(2)``.

    *buffers* is a sequence of bytes-like objects (``bytes``, ``bytearray``,
    ``memoryview``, ``mmap``...).  Returns the bytes added to the pipe, which
    may be fewer than given: one call looks at no more than ``IOV_MAX`` buffers
    (1024 on Linux), the kernel's limit for one call, on both backends.

    Buffer lifetime: the pipe refers to the buffers' memory pages until its
    reader has consumed them; a change to a buffer before then changes what
    the reader sees.  zerocopy keeps a reference (a memoryview export, so a
    ``bytearray`` cannot be resized) to each buffer until a later
    ``vmsplice`` finds its bytes consumed or its pipe closed; keeping the
    contents unchanged until the reader has them is the caller's part.  ``SPLICE_F_GIFT`` is refused
    (:class:`ValueError`) because Python buffers cannot meet its terms.  On the
    os backend the bytes are copied with :func:`os.writev` instead.
    """
    target = fileno(fd, "fd")
    if isinstance(buffers, (bytes, bytearray, memoryview, str)):
        raise TypeError("buffers must be a sequence of bytes-like objects, not a single buffer")
    try:
        items = list(buffers)
    except TypeError:
        raise TypeError(
            f"buffers must be a sequence of bytes-like objects, not {type(buffers).__name__}"
        ) from None
    for item in items:
        try:
            view = memoryview(item)
        except TypeError:
            raise TypeError(
                f"buffers must hold bytes-like objects, not {type(item).__name__}"
            ) from None
        if not view.c_contiguous:
            raise ValueError("buffers must be C-contiguous")
    if isinstance(flags, int) and not isinstance(flags, bool) and flags & SPLICE_F_GIFT:
        raise ValueError("SPLICE_F_GIFT is not supported: Python buffers cannot be gifted")
    f = check_flags(flags, _VMSPLICE_FLAGS)
    # On a read end vmsplice(2) copies *out of* the pipe into the buffers,
    # which would write into immutable bytes objects: refuse it up front.
    try:
        # Without fcntl (Windows) the backend refuses vmsplice anyway.
        mode = os.O_WRONLY if fcntl is None else fcntl.fcntl(target, fcntl.F_GETFL) & os.O_ACCMODE
    except OSError as exc:
        raise oserror(exc.errno or errno.EBADF, "vmsplice") from None
    if mode == os.O_RDONLY:
        raise oserror(errno.EBADF, "vmsplice")
    del items[_IOV_MAX:]
    backend = _backend.current()
    if backend.NAME != "cffi":
        # The os backend copies the bytes; nothing refers to the buffers after.
        return int(backend.vmsplice(target, items, f))
    views = [memoryview(item) for item in items]
    moved = int(backend.vmsplice(target, views, f))
    _pin(target, views, moved)
    return moved


class _Pins:
    """Buffers one pipe still refers to, with the running count of bytes put in."""

    __slots__ = ("held", "inode", "written")

    def __init__(self, inode: tuple[int, int]) -> None:
        self.inode = inode
        self.written = 0
        self.held: deque[tuple[int, list[memoryview]]] = deque()


_pins: dict[int, _Pins] = {}
_orphans: deque[list[tuple[int, list[memoryview]]]] = deque(maxlen=64)
_pins_lock = threading.Lock()


def _queued(fd: int) -> int:
    raw = fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0")
    return int.from_bytes(raw, "little", signed=True)


def _prune(fd: int, pins: _Pins) -> bool:
    """Drop the buffers whose bytes the pipe's reader has taken; True if none remain."""
    try:
        st = os.fstat(fd)
        same = (st.st_dev, st.st_ino) == pins.inode
        queued = _queued(fd) if same else 0
    except OSError:
        same, queued = False, 0
    if not same:
        # The write end was closed (or its number reused): how much the reader
        # has taken can no longer be learnt.  Closing the write end is how a
        # writer says "done", so its reader may still be reading: keep the
        # last buffers a while longer, among a bounded number of orphans.
        if pins.held:
            _orphans.append(list(pins.held))
        pins.held.clear()
        return True
    consumed = pins.written - queued
    while pins.held and pins.held[0][0] <= consumed:
        pins.held.popleft()
    return not pins.held


def _pin(fd: int, views: list[memoryview], moved: int) -> None:
    # After vmsplice the pipe points at the buffers' pages, so the objects must
    # outlive the reader's consumption of those bytes.  The pipe tells how much
    # is still queued (FIONREAD); everything before that has been read, and its
    # buffers are let go on the next vmsplice (of any pipe).  Holding a
    # memoryview export also stops a bytearray from being resized meanwhile.
    st = os.fstat(fd)
    inode = (st.st_dev, st.st_ino)
    with _pins_lock:
        pins = _pins.get(fd)
        if pins is None or pins.inode != inode:
            pins = _pins[fd] = _Pins(inode)
        if moved:
            pins.written += moved
            pins.held.append((pins.written, views))
        for other in list(_pins):
            if _prune(other, _pins[other]):
                del _pins[other]


def copy_file_range(
    src: FileDescriptorLike,
    dst: FileDescriptorLike,
    count: int,
    offset_src: int | None = None,
    offset_dst: int | None = None,
) -> int:
    """Copy up to *count* bytes between two regular files with ``copy_file_range(2)``.

    Offsets work as in :func:`splice`: ``None`` uses and advances the file
    position, an int leaves it alone.  The kernel may share extents (reflink)
    or copy in-kernel.  Returns the bytes copied: 0 at end of file.  A
    destination opened with ``O_APPEND`` fails with ``EBADF``.
    """
    a = fileno(src, "src")
    b = fileno(dst, "dst")
    n = min(check_count(count), _MAX_COUNT)
    off_a = check_offset(offset_src, "offset_src")
    off_b = check_offset(offset_dst, "offset_dst")
    return int(_backend.current().copy_file_range(a, b, n, off_a, off_b))
