"""What the blocking and asyncio send_file share: socket.sendfile's checks, chunk sizes, reads."""

from __future__ import annotations

import io
import os
import socket
import stat
from typing import Any

from .._streams import stream_fd

__all__ = [
    "COPY_CHUNK",
    "check_binary",
    "check_file_args",
    "check_offset_count",
    "check_params",
    "read_chunk",
    "regular_fd",
    "seekable",
    "settle_position",
]

#: The chunk of the read/send path (objects without a regular file behind them).
COPY_CHUNK = 256 * 1024


def check_params(sock: Any, file: Any, offset: Any, count: Any) -> None:
    """Raise what socket.socket.sendfile raises for bad arguments, in the same order."""
    if not isinstance(sock, socket.socket):
        raise TypeError(f"sock must be a socket.socket, not {type(sock).__name__}")
    check_binary(file)
    if not sock.type & socket.SOCK_STREAM:
        raise ValueError("only SOCK_STREAM type sockets are supported")
    check_offset_count(offset, count)


def check_file_args(file: Any, offset: Any, count: Any) -> None:
    """check_params without the socket: for a transport, checked on its own."""
    check_binary(file)
    check_offset_count(offset, count)


def check_binary(file: Any) -> None:
    mode = getattr(file, "mode", "b")
    # GzipFile and friends keep an int in .mode; only a text mode string is wrong.
    if (isinstance(mode, str) and "b" not in mode) or isinstance(file, io.TextIOBase):
        raise ValueError("file should be opened in binary mode")


def check_offset_count(offset: Any, count: Any) -> None:
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


def regular_fd(file: Any) -> int | None:
    """The fd of a regular file whose fd is its byte stream, else None.

    GzipFile and friends have an fd too, but it holds the compressed bytes.
    """
    fd = stream_fd(file, reading=True)
    if fd is None:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
    except OSError:
        return None
    return fd


def seekable(file: Any) -> bool:
    """True if *file* can seek (objects without seekable() but with seek() count)."""
    try:
        return bool(file.seekable())
    except (AttributeError, ValueError, OSError):
        return hasattr(file, "seek") and not hasattr(file, "seekable")


def read_chunk(file: Any, buf: memoryview) -> memoryview:
    """Read up to ``len(buf)`` bytes of *file*, into *buf* where it has ``readinto``."""
    readinto = getattr(file, "readinto", None)
    if readinto is not None:
        return buf[: readinto(buf) or 0]
    return memoryview(file.read(len(buf)))


def settle_position(file: Any, offset: int, sent: int, start: int | None) -> None:
    """Leave *file* at ``offset + sent``, as socket.sendfile; with none sent, at *start*.

    *start*: where a regular file stood when sendfile gave up (None: not
    tried); why, in :mod:`zerocopy._engine.sendfile`.
    """
    if sent > 0:
        if seekable(file):  # pipes and other streams that cannot seek are simply read
            file.seek(offset + sent)
    elif start is not None:
        file.seek(start)
