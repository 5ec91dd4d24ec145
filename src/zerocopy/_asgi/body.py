"""The ASGI file-body messages, checked and opened: no server or framework imported here.

``http.response.pathsend`` (a path; the whole file is the rest of the body)
and ``http.response.zerocopysend`` (an open file or fd, an optional offset and
count, ``more_body``) become one :class:`FileBody`: the file object to hand
to :func:`zerocopy.aio.send_file`, where to start, how many bytes, and
whether the response goes on.  Bad messages raise ``TypeError`` /
``ValueError`` here, before the server writes a byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import stat
from collections.abc import AsyncIterator, Mapping
from typing import Any

from .. import _localfs, aio  # send_file is looked up at call time: tests wrap it
from .._regular import NotRegularFileError, open_regular

__all__ = [
    "EXTENSIONS",
    "PATHSEND",
    "ZEROCOPYSEND",
    "FileBody",
    "check_message",
    "handles",
    "open_body",
    "opened",
    "send_body",
]

PATHSEND = "http.response.pathsend"
ZEROCOPYSEND = "http.response.zerocopysend"
EXTENSIONS = (PATHSEND, ZEROCOPYSEND)

log = logging.getLogger("zerocopy.uvicorn")


def handles(scope: Mapping[str, Any], cycle: Any, message: Mapping[str, Any]) -> bool:
    """Whether a file-body sender sends *message* itself, on uvicorn's *cycle* for *scope*.

    Only a pathsend or zerocopysend message, on a scope that was offered the
    extension, between the response start and its end; anything else goes
    to uvicorn's own ``send``, with its errors.
    """
    kind = message["type"]
    return (
        kind in EXTENSIONS
        and kind in scope.get("extensions", {})
        and cycle.response_started
        and not cycle.response_complete
    )


class FileBody:
    """One file-body message, opened: ``file`` from ``offset``, ``count`` bytes.

    ``count`` is fixed when the message is opened (for "to the end of the
    file", from ``fstat``), so the bytes sent can be checked against it and a
    chunk header can be written before the body.  ``owned`` says whether
    :meth:`close` closes ``file``: a path opened here, or the wrapper around
    an fd, never the application's own file object (ASGI leaves closing it to
    the application).
    """

    __slots__ = ("count", "file", "more_body", "offset", "owned")

    def __init__(
        self, file: io.RawIOBase | Any, offset: int, count: int, more_body: bool, owned: bool
    ) -> None:
        self.file = file
        self.offset = offset
        self.count = count
        self.more_body = more_body
        self.owned = owned

    def close(self) -> None:
        """Close what was opened here (the application's file object stays open)."""
        if self.owned:
            self.file.close()


def _optional_int(message: Mapping[str, Any], key: str) -> int | None:
    value = message.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            f"{ZEROCOPYSEND} {key!r} must be an int or None, not {type(value).__name__}"
        )
    if value < 0:
        raise ValueError(f"{ZEROCOPYSEND} {key!r} must be >= 0, not {value}")
    return value


def check_message(message: Mapping[str, Any]) -> None:
    """Raise TypeError/ValueError for a malformed file-body message; touch no file."""
    if message["type"] == PATHSEND:
        path = message.get("path")
        if not isinstance(path, str):
            raise TypeError(f"{PATHSEND} 'path' must be a str, not {type(path).__name__}")
        if not os.path.isabs(path):
            # The spec asks for an absolute path; a relative one would depend
            # on the server's working directory.
            raise ValueError(f"{PATHSEND} 'path' must be absolute, not {path!r}")
        return
    file = message.get("file")
    if isinstance(file, bool) or not (isinstance(file, int) or hasattr(file, "fileno")):
        raise TypeError(
            f"{ZEROCOPYSEND} 'file' must be an fd or a file object with fileno(), "
            f"not {type(file).__name__}"
        )
    if isinstance(file, io.TextIOBase):
        raise TypeError(f"{ZEROCOPYSEND} 'file' must be opened in binary mode")
    _optional_int(message, "offset")
    _optional_int(message, "count")
    if not isinstance(message.get("more_body", False), bool):
        raise TypeError(f"{ZEROCOPYSEND} 'more_body' must be a bool")


def _regular_size(fd: int, what: str) -> int:
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(f"{what} is not a regular file")
    return st.st_size


def open_body(message: Mapping[str, Any]) -> FileBody:
    """Open the file of a checked message (see :func:`check_message`).

    OSError from opening the path (FileNotFoundError, PermissionError...)
    propagates: the application asked for a file that is not there.  A path
    that is not a regular file raises ValueError without the event loop
    waiting on it (a FIFO's open() would block until a writer came).
    """
    if message["type"] == PATHSEND:
        try:
            file, st = open_regular(message["path"])  # closed by FileBody.close
        except NotRegularFileError as exc:
            # The error a non-regular file always gave here, to the letter:
            # zerocopysend's bad files raise ValueError too.
            raise ValueError(str(exc)) from None
        return FileBody(file, 0, st.st_size, more_body=False, owned=True)
    given = message["file"]
    owned = isinstance(given, int)
    # An fd is wrapped (not closed: closefd=False) so that send_file, which
    # takes file objects, can use it; the wrapper's seek moves the fd's
    # position, as os.sendfile with offset None would.
    file = io.FileIO(given, "rb", closefd=False) if owned else given
    fd = file.fileno()
    size = _regular_size(fd, f"{ZEROCOPYSEND} 'file'")  # first: a pipe cannot tell()
    offset = _optional_int(message, "offset")
    if offset is None:
        # The spec: without an offset, read from the file's current position
        # (tell() of a buffered reader counts what it has read ahead).
        offset = file.tell() if hasattr(file, "tell") else os.lseek(fd, 0, os.SEEK_CUR)
    count = _optional_int(message, "count")
    left = max(size - offset, 0)
    return FileBody(
        file, offset, left if count is None else count, message.get("more_body", False), owned
    )


#: pathsend paths found on a local filesystem: opened and closed on the loop.
LOCAL = _localfs.LocalFiles()


def _open_in_thread(message: Mapping[str, Any]) -> tuple[FileBody, int]:
    body = open_body(message)
    try:
        return body, os.fstat(body.file.fileno()).st_dev
    except BaseException:
        body.close()
        raise


@contextlib.asynccontextmanager
async def opened(message: Mapping[str, Any]) -> AsyncIterator[FileBody]:
    """:func:`open_body` for the body's duration, never blocking the loop on a slow filesystem.

    A ``zerocopysend`` file is the application's (opened already), and a
    ``pathsend`` path found before on a local filesystem is opened and
    closed on the loop, as nginx does.  Any other path is opened and closed
    in the loop's default executor (an open or close on NFS, SMB or FUSE can
    wait on a server), and its device is learnt for next time.  A task
    cancelled while the thread opens closes the file when it is open.
    """
    if message["type"] != PATHSEND or message["path"] in LOCAL:
        body = open_body(message)
        try:
            yield body
        finally:
            body.close()
        return
    loop = asyncio.get_running_loop()
    opening = loop.run_in_executor(None, _open_in_thread, message)
    try:
        body, dev = await asyncio.shield(opening)
    except asyncio.CancelledError:
        opening.add_done_callback(_close_when_opened)
        raise
    local = LOCAL.learn(message["path"], dev)
    try:
        yield body
    finally:
        if local:
            body.close()
        else:
            await asyncio.shield(loop.run_in_executor(None, body.close))


def _close_when_opened(opening: asyncio.Future[tuple[FileBody, int]]) -> None:
    if not opening.cancelled() and opening.exception() is None:
        opening.result()[0].close()


async def send_body(cycle: Any, body: FileBody) -> bool:
    """Send *body* on *cycle*'s connection; False if the client went away (it is closed then)."""
    try:
        sent = await aio.send_file(cycle.transport, body.file, body.offset, body.count)
    except ConnectionError as exc:
        # The client reset or closed the connection: not an application
        # error, so no traceback; uvicorn drops later messages likewise.
        log.debug("client went away during a file body: %s", exc)
        cycle.disconnected = True
        cycle.transport.close()
        return False
    except BaseException:
        # Part of the body may be out: the framing is broken, so the
        # connection cannot carry another response.
        cycle.transport.close()
        raise
    if sent != body.count:
        # The file is shorter than the message said (or shrank meanwhile):
        # the response cannot be completed, as uvicorn with a short body.
        cycle.transport.close()
        raise RuntimeError(
            f"Response content shorter than promised: the file gave {sent} of {body.count} bytes"
        )
    return True
