"""File descriptors: turning arguments into fds, and validating numbers and timeouts."""

from __future__ import annotations

try:
    import fcntl
except ImportError:  # Windows: no fcntl (what needs it has a fallback there)
    fcntl = None  # type: ignore[assignment]
import io
import math
import numbers
import operator
import os
import socket
import stat
from typing import Any, Protocol

from ._compat import socketio_socket

__all__ = [
    "FileDescriptorLike",
    "check_count",
    "check_flags",
    "check_offset",
    "check_timeout",
    "fileno",
    "is_append",
    "kind_of",
    "poll_ms",
    "read_past_urgent_mark",
    "stream_fd",
]

_INT64_MAX = 2**63 - 1
_UINT_MAX = 2**32 - 1
#: poll(2) takes its timeout as a C int of milliseconds (about 24.8 days).
_POLL_MAX_MS = 2**31 - 1


class _HasFileno(Protocol):
    def fileno(self) -> int: ...


#: What every low-level call accepts as a file: an ``int`` fd or an object with
#: a ``fileno()`` method (files, sockets, pipes opened with ``open(fd)``).
FileDescriptorLike = int | _HasFileno


def fileno(obj: Any, name: str = "fd") -> int:
    """Return the file descriptor behind *obj*.

    Raises :class:`TypeError` for anything that is neither an int nor has a
    ``fileno()`` method (``bool`` included: ``True`` as fd 1 is a bug), and
    :class:`ValueError` for a negative descriptor.  ``fileno()`` itself may
    raise, e.g. :class:`ValueError` on a closed file or
    :class:`io.UnsupportedOperation` on a ``BytesIO``; that propagates.
    """
    if type(obj) is int and 0 <= obj <= _UINT_MAX // 2:
        return obj  # the common case, first and cheap: copies call this per chunk
    if isinstance(obj, bool):
        raise TypeError(f"{name} must be an int file descriptor or have fileno(), not bool")
    if isinstance(obj, int):
        fd = obj
    else:
        method = getattr(obj, "fileno", None)
        if method is None or not callable(method):
            raise TypeError(
                f"{name} must be an int file descriptor or have fileno(), not {type(obj).__name__}"
            )
        fd = method()
        if isinstance(fd, bool) or not isinstance(fd, int):
            raise TypeError(f"{name}.fileno() returned {type(fd).__name__}, not int")
    if fd < 0:
        raise ValueError(f"{name} must be a non-negative file descriptor, not {fd}")
    if fd > _UINT_MAX // 2:
        raise ValueError(f"{name} {fd} is not a valid file descriptor")
    return int(fd)


def _integer(value: Any, name: str) -> int:
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int, not bool")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, not {type(value).__name__}") from None


def check_count(value: Any, name: str = "count") -> int:
    """Validate a byte count: a non-negative int (larger counts are clamped by callers)."""
    if type(value) is int and value >= 0:
        return value
    count = _integer(value, name)
    if count < 0:
        raise ValueError(f"{name} must be >= 0, not {count}")
    return count


def check_offset(value: Any, name: str) -> int | None:
    """Validate an optional file offset: ``None`` or an int in ``[0, 2**63)``."""
    if value is None:
        return None
    if type(value) is int and 0 <= value <= _INT64_MAX:
        return value
    offset = _integer(value, name)
    if offset < 0:
        raise ValueError(f"{name} must be >= 0 or None, not {offset}")
    if offset > _INT64_MAX:
        raise ValueError(f"{name} must be < 2**63, not {offset}")
    return offset


def check_flags(value: Any, allowed: int, name: str = "flags") -> int:
    """Validate a flags word: an int made only of the bits in *allowed*."""
    flags = _integer(value, name)
    if flags < 0 or flags & ~allowed:
        raise ValueError(f"{name} has unknown bits: {flags:#x} (allowed: {allowed:#x})")
    return flags


def check_timeout(value: Any, name: str = "timeout", *, negative: bool = True) -> Any:
    """Validate an optional timeout in seconds and return it.

    Anything but None or a real number (``bool`` included: ``True`` as one
    second is a bug) is a :class:`TypeError` that names the argument, before
    a comparison or a deadline's arithmetic fails somewhere less clear.  NaN
    is refused (:class:`ValueError`): it compares false with everything, so a
    deadline made of it never passes and a wait on it never ends.  With
    *negative* false, a negative timeout is refused too; otherwise it means
    "already expired", as it did before.  ``inf`` is accepted: no time limit.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number of seconds or None, not {type(value).__name__}")
    if math.isnan(value):
        raise ValueError(f"{name} must be a number of seconds or None, not nan")
    if not negative and value < 0:
        raise ValueError(f"{name} must be >= 0 or None, not {value}")
    return value


def poll_ms(seconds: float | None) -> int | None:
    """Turn a wait of *seconds* into ``select.poll().poll()``'s milliseconds.

    None and ``inf`` wait for ever (None).  A finite wait is rounded up, so it
    never ends just before its deadline (and a positive one is never 0, a
    busy loop), and is clamped to the C int poll(2) takes: a longer wait ends
    early, and callers re-check their deadline after every wait.
    """
    if seconds is None or seconds == math.inf:
        return None
    if seconds <= 0:
        return 0
    ms = seconds * 1000  # compared as a float first: ceil() of 1e308 * 1000 would overflow
    return _POLL_MAX_MS if ms >= _POLL_MAX_MS else math.ceil(ms)


# --- What a Python file object's fd carries -----------------------------------

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
