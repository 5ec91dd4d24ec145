"""The os backend: the same calls over the :mod:`os` module.

Used where the compiled module is missing, or when ``ZEROCOPY_BACKEND=os``.
``sendfile``, ``splice`` and ``copy_file_range`` are the kernel's own calls
through :mod:`os` (which already retries EINTR, PEP 475).  ``vmsplice`` is
emulated with :func:`os.writev`: same bytes, same errors for non-pipes, but
the data is copied rather than mapped.  ``tee`` cannot be reached at all.
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import socket
import stat
import termios
from collections.abc import Sequence
from typing import Any

from ._constants import SPLICE_F_NONBLOCK
from ._errors import UnsupportedOperation, oserror, reraise_as

__all__ = [
    "NAME",
    "copy_file_range",
    "probe",
    "send",
    "sendfile",
    "splice",
    "tee",
    "vmsplice",
]

NAME = "os"

_F_GETPIPE_SZ = getattr(fcntl, "F_GETPIPE_SZ", 1032)


def sendfile(out_fd: int, in_fd: int, offset: int | None, count: int) -> int:
    try:
        return os.sendfile(out_fd, in_fd, offset, count)
    except OSError as exc:
        raise reraise_as(exc, "sendfile") from None


def splice(
    src: int, dst: int, count: int, offset_src: int | None, offset_dst: int | None, flags: int
) -> int:
    try:
        return os.splice(src, dst, count, offset_src, offset_dst, flags)
    except OSError as exc:
        raise reraise_as(exc, "splice") from None


def tee(src: int, dst: int, count: int, flags: int) -> int:
    raise UnsupportedOperation("tee", "the os backend cannot call tee(2); use the cffi backend")


def copy_file_range(
    src: int, dst: int, count: int, offset_src: int | None, offset_dst: int | None
) -> int:
    try:
        return os.copy_file_range(src, dst, count, offset_src, offset_dst)
    except OSError as exc:
        raise reraise_as(exc, "copy_file_range") from None


def _pipe_room(fd: int) -> int:
    # Bytes a write can add to the pipe without blocking (approximately: the
    # kernel counts pages, not bytes, so this may under-report, never over).
    size = fcntl.fcntl(fd, _F_GETPIPE_SZ)
    queued = int.from_bytes(fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"), "little", signed=True)
    return max(0, size - queued)


def vmsplice(fd: int, buffers: Sequence[Any], flags: int) -> int:
    try:
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            raise oserror(errno.EBADF, "vmsplice")
        views = [memoryview(buf).cast("B") for buf in buffers]
        if flags & SPLICE_F_NONBLOCK:
            poller = select.poll()
            poller.register(fd, select.POLLOUT)
            if not poller.poll(0):
                raise oserror(errno.EAGAIN, "vmsplice")
            room = _pipe_room(fd)
            if room == 0:
                raise oserror(errno.EAGAIN, "vmsplice")
            trimmed = []
            for view in views:
                if room <= 0:
                    break
                trimmed.append(view[:room])
                room -= len(trimmed[-1])
            views = trimmed
        if not views:
            return 0
        return os.writev(fd, views)
    except OSError as exc:
        raise reraise_as(exc, "vmsplice") from None


def send(fd: int, buf: Any, flags: int) -> int:
    """One ``send(2)`` through a borrowed :class:`socket.socket`."""
    sock = socket.socket(fileno=fd)
    try:
        return sock.send(buf, flags)
    except OSError as exc:
        raise reraise_as(exc, "send") from None
    finally:
        sock.detach()


def _exists(call: Any, *args: Any) -> bool:
    try:
        call(*args)
    except OSError as exc:
        return exc.errno not in (errno.ENOSYS, errno.EPERM)
    return True


def probe() -> set[str]:
    """Return the features this backend can perform in this process."""
    found = set()
    if hasattr(os, "sendfile") and _exists(os.sendfile, -1, -1, None, 0):
        found.add("sendfile")
    if hasattr(os, "splice") and _exists(os.splice, -1, -1, 0):
        found.add("splice")
    if hasattr(os, "copy_file_range") and _exists(os.copy_file_range, -1, -1, 0):
        found.add("copy_file_range")
    if hasattr(os, "writev"):
        found.add("vmsplice")
    return found
