"""What the fd behind a file object carries, and where a TCP stream stops splice.

``stream_fd`` finds the fd that *is* an object's byte stream (or None, and
the plain path runs); ``kind_of`` classifies what ``fstat`` says it is;
``is_append`` asks for ``O_APPEND``; ``read_past_urgent_mark`` steps over
the urgent mark that stops splice(2) from TCP for good.
"""

from __future__ import annotations

try:
    import fcntl
except ImportError:  # Windows: no fcntl (what needs it has a fallback there)
    fcntl = None  # type: ignore[assignment]
import io
import os
import socket
import stat
from typing import Any

from ._compat import socketio_socket

__all__ = [
    "CHAR",
    "FILE",
    "OTHER",
    "PIPE",
    "SOCKET",
    "is_append",
    "kind_of",
    "read_past_urgent_mark",
    "stream_fd",
]

FILE = "file"
PIPE = "pipe"
SOCKET = "socket"
CHAR = "char"
OTHER = "other"

_READERS = (io.BufferedReader, io.BufferedRandom)
_WRITERS = (io.BufferedWriter, io.BufferedRandom)


def stream_fd(obj: Any, reading: bool) -> int | None:
    """Return the fd that carries exactly the bytes *obj* reads or writes, else None.

    Only the C implementations whose fd *is* the byte stream qualify: a
    ``FileIO``, a buffered reader/writer/random over a ``FileIO``, and a
    ``socket.SocketIO`` (what ``makefile()`` builds on) or buffered object over
    one, for a blocking ``SOCK_STREAM`` socket without a timeout.  Subclasses
    (``ssl.SSLSocket``, user classes), text wrappers, compressors and archive
    members do not: their fd is not what they read.  A closed object, or one
    not open for this direction, gets None so the plain path raises exactly
    the error ``shutil`` would.
    """
    kind = type(obj)
    if kind is io.FileIO or kind is socket.SocketIO:
        raw = obj
    elif kind in (_READERS if reading else _WRITERS):
        raw = obj.raw
    else:
        return None
    raw_kind = type(raw)
    if raw_kind is socket.SocketIO:
        sock = socketio_socket(raw)  # None without it: not the byte stream, as for others
        if type(sock) is not socket.socket or sock.type != socket.SOCK_STREAM:
            return None
        if sock.gettimeout() is not None:
            return None
    elif raw_kind is not io.FileIO:
        return None
    try:
        if obj.closed or not (obj.readable() if reading else obj.writable()):
            return None
        fd = raw.fileno()
    except (OSError, ValueError):
        return None
    return fd if isinstance(fd, int) and fd >= 0 else None


def kind_of(mode: int) -> str:
    """Classify an ``st_mode``: regular file, pipe, socket, character device, other."""
    if stat.S_ISREG(mode):
        return FILE
    if stat.S_ISFIFO(mode):
        return PIPE
    if stat.S_ISSOCK(mode):
        return SOCKET
    if stat.S_ISCHR(mode):
        return CHAR
    return OTHER


def is_append(fd: int) -> bool:
    """True if *fd* is open with ``O_APPEND`` now (flags can change after open).

    Without fcntl (Windows) there is no asking: False, and the copy writes
    through the file object, which appends as it was opened to.
    """
    if fcntl is None:
        return False
    return bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_APPEND)


_SIOCATMARK = 0x8905  # linux/sockios.h


def read_past_urgent_mark(fd: int, family: int | None, size: int = 64 * 1024) -> bytes | None:
    """If TCP socket *fd* sits at its urgent mark, read past it; else None.

    splice(2) from TCP stops at the urgent mark (MSG_OOB data) and returns 0
    or EAGAIN there for good, which would look like end of stream (bytes
    lost) or an endless "readable" (a spin).  A plain read skips the urgent
    byte, as ``recv`` does for shutil, and returns the bytes after it
    (``b""`` if none have arrived yet on a non-blocking socket).
    """
    if family is not None and family not in (socket.AF_INET, socket.AF_INET6):
        return None
    if fcntl is None:
        return None  # no splice there either: nothing stops at the mark
    try:
        at_mark = int.from_bytes(fcntl.ioctl(fd, _SIOCATMARK, b"\0\0\0\0"), "little")
    except OSError:
        return None
    if not at_mark:
        return None
    try:
        return os.read(fd, size)
    except BlockingIOError:
        return b""
