"""Open a path for sending only if it is a regular file, without blocking on the way.

A server that opens whatever a path names can be held up by it: ``open()``
of a FIFO for reading blocks until some writer opens it (a handler thread
of ``serve``, or the whole event loop under uvicorn, waits as long), and
opening a device runs its driver's open (a tape rewinds, a watchdog arms).
:func:`open_regular` looks before it opens and checks again what it opened:

1. ``stat`` the path: anything but a regular file is refused without being
   opened at all;
2. ``open`` it with ``O_NONBLOCK`` (and ``O_NOCTTY``): if the path was
   swapped for a FIFO or device between the two steps, the open still
   returns at once instead of waiting for a writer;
3. ``fstat`` the descriptor: what is sent is what was checked, whatever the
   path names by now.

Used by :mod:`zerocopy.http` (the stdlib handler's file bodies) and by
``zerocopy._asgi.body`` (uvicorn's ``http.response.pathsend``).
"""

from __future__ import annotations

import errno
import io
import os
import stat

__all__ = ["NotRegularFileError", "open_regular"]

# O_NOCTTY: a terminal device opened here must never become the server's
# controlling terminal (it is refused after fstat, but the open happened).
_FLAGS = os.O_RDONLY | sum(getattr(os, flag, 0) for flag in ("O_NONBLOCK", "O_CLOEXEC", "O_NOCTTY"))


class NotRegularFileError(ValueError):
    """The path names a FIFO, socket or device, not a regular file: nothing to send."""


def _refuse(path: str, mode: int) -> OSError | NotRegularFileError:
    if stat.S_ISDIR(mode):
        # What open(path, "rb") raises for a directory: callers that used
        # open() keep their error.
        return IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
    return NotRegularFileError(f"{path} is not a regular file")


def open_regular(path: str) -> tuple[io.FileIO, os.stat_result]:
    """Open *path* for reading if it is a regular file; return the raw file and its fstat.

    Never blocks on what the path names (a FIFO without a writer included).
    Raises :class:`NotRegularFileError` (a ``ValueError``) for a FIFO,
    socket or device, ``IsADirectoryError`` for a directory, and the
    ``OSError`` of ``stat`` or ``open`` otherwise (``FileNotFoundError``,
    ``PermissionError``...).  The file is unbuffered, in blocking mode, and
    closes its descriptor; its ``name`` is *path*.
    """
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
        raise _refuse(path, mode)
    fd = os.open(path, _FLAGS)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _refuse(path, st.st_mode)  # swapped after the stat
        # The descriptor goes to code written for a plain open() (read()
        # fallbacks included); O_NONBLOCK has done its job, which was only
        # to keep the open from waiting.
        os.set_blocking(fd, True)
        file = io.FileIO(fd, "rb", closefd=True)
    except BaseException:
        os.close(fd)
        raise
    file.name = path
    return file, st
