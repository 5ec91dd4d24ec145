"""Other libraries' internals: every private attribute zerocopy touches, in this one module.

Each accessor below names the private attribute it reads or writes, the
versions it was checked against, and what its caller does when the
attribute is gone: zerocopy detects that and falls back (the plain path, or
the stock framework behaviour), it never fails a user's import or server for
it.  tests/test_compat.py checks each attribute against the installed
versions, so a release that removes one fails a test, and runs each
fallback; a guard test there (and ruff's SLF001, ignored in this file only)
keeps private accesses of other libraries out of every other module.

Nothing here imports a third-party library: the anyio, aiohttp and uvicorn
accessors take the objects or classes the caller already has, so
``import zerocopy`` stays free of them.

Checked against: CPython 3.11 to 3.14 (asyncio, io, socket), uvloop 0.23
(it uses asyncio's StreamReader), anyio 4.7 to 4.16, aiohttp 3.10 to 3.14,
uvicorn 0.45 to 0.55.
"""

from __future__ import annotations

import inspect
import io
import socket
import warnings
from collections import deque
from collections.abc import Awaitable, Callable
from itertools import starmap
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:  # asyncio is imported by the async forms, not by ``import zerocopy``
    import asyncio

__all__ = [
    "BUFFERED_SIZEOF_BASE",
    "aiohttp_hook_sendfile",
    "aiohttp_response_path",
    "aiohttp_sendfile_fallback",
    "anyio_take_read_ahead",
    "anyio_transport",
    "socketio_socket",
    "stream_reader_buffer",
    "text_writes_through",
    "uvicorn_hook_start_asgi_task",
    "write_text_now",
]


# --- asyncio -------------------------------------------------------------------


def stream_reader_buffer(reader: asyncio.StreamReader) -> bytearray | None:
    """*reader*'s ``StreamReader._buffer``: the bytes it read and has not handed out yet.

    Checked: CPython 3.8 to 3.14 (and uvloop, which uses asyncio's class).
    No public call takes the buffer without waiting, and ``read()`` would
    resume a transport that the reader's flow control paused.  The caller
    (the asyncio relay's ``BorrowedSocket``) copies and clears it.  When it
    is missing, or not a bytearray, this returns None and the relay refuses
    the pair up front with TypeError, before anything changed.
    """
    buf = getattr(reader, "_buffer", None)
    return buf if isinstance(buf, bytearray) else None


# --- socket --------------------------------------------------------------------


def socketio_socket(raw: socket.SocketIO) -> socket.socket | None:
    """``SocketIO._sock``: the socket under a ``makefile()`` object, else None.

    Checked: CPython 3.8 to 3.14 (socket.py has set it since 3.0).
    ``SocketIO`` has no public way to its socket, and its type and timeout
    decide whether the kernel may work on its fd.  When it is missing, the
    caller (``_fd.stream_fd``) treats the object as one whose fd is not its
    byte stream: copyfileobj copies it through Python, as shutil does.
    """
    sock = getattr(raw, "_sock", None)
    return sock if isinstance(sock, socket.socket) else None


# --- io ------------------------------------------------------------------------


def _buffered_sizeof_base() -> int:
    """What to subtract from a BufferedWriter's ``__sizeof__()`` to get its buffer size.

    CPython's ``buffered_sizeof`` is the object's struct plus its buffer
    (checked: CPython 3.8 to 3.14): the buffer size without a system call.
    If two writers whose buffers differ by 4095 bytes do not differ by that
    much, the layout is not CPython's: the base is then larger than any
    ``__sizeof__()``, so the difference is negative and the callers take the
    object's own ``write`` (exact counts after a failed large write are then
    lost, as with shutil).
    """
    small = io.BufferedWriter(io.BytesIO(), 1).__sizeof__()
    large = io.BufferedWriter(io.BytesIO(), 4096).__sizeof__()
    if large - small != 4095:
        return 1 << 62
    return small - 1


#: A BufferedWriter's ``__sizeof__() - BUFFERED_SIZEOF_BASE`` is its buffer size
#: (CPython), or negative where that does not hold: see :func:`_buffered_sizeof_base`.
#: A constant, not a function, because copyfileobj's per-call path reads it.
BUFFERED_SIZEOF_BASE = _buffered_sizeof_base()


def text_writes_through(wrapper: Any) -> bool:
    """Whether *wrapper* has CPython's ``TextIOWrapper._CHUNK_SIZE`` (see :func:`write_text_now`).

    Without it, :class:`zerocopy._copy.writer.TextCount` gives up exact
    counts for that copy (a failing write then counts none of its
    characters, as documented there) and writes as ``wrapper.write`` does.
    """
    return isinstance(getattr(wrapper, "_CHUNK_SIZE", None), int)


def write_text_now(wrapper: Any, text: Any, log: list[Any]) -> None:
    """``wrapper.write(text)``, its encoded bytes handed to ``wrapper.buffer`` before it returns.

    ``TextIOWrapper._CHUNK_SIZE`` (read and written; CPython's C and
    ``_pyio`` classes, checked 3.8 to 3.14, present since 3.0) is how many
    encoded bytes the wrapper keeps pending before it writes them to its
    buffer: at 1 it writes each call's bytes, and only those, at once.  What
    it changes is only when the same bytes reach the buffer, and it is
    restored after the write.  Without the attribute this is a plain
    ``wrapper.write(text)`` (see :func:`text_writes_through`).  The write's
    result goes into *log* from C, before a signal handler can run.
    """
    chunk = getattr(wrapper, "_CHUNK_SIZE", None)
    if not isinstance(chunk, int):
        log.extend(starmap(wrapper.write, ((text,),)))
        return
    wrapper._CHUNK_SIZE = 1
    try:
        log.extend(starmap(wrapper.write, ((text,),)))
    finally:
        wrapper._CHUNK_SIZE = chunk


# --- anyio ---------------------------------------------------------------------


def anyio_transport(stream: Any) -> Any | None:
    """The asyncio transport under anyio's asyncio ``SocketStream`` (its ``_transport``), else None.

    Checked: anyio 4.7 to 4.16 (``anyio._backends._asyncio.SocketStream``).
    The caller (``_anyiowait.StreamSocket``) lends that transport as
    :mod:`zerocopy.aio` lends one: reading paused, write buffer drained.
    Streams without one (trio's, anyio's UNIX streams) read their socket
    only when asked and get None: the caller then works on a duplicate of
    the raw socket's fd.  If anyio's asyncio TCP stream loses the attribute,
    this warns (its transport may then read bytes the transfer should move)
    and returns None, and the caller takes that same raw-socket path.
    """
    transport = getattr(stream, "_transport", None)
    if transport is None and _is_anyio_asyncio_tcp(stream):
        warnings.warn(
            "zerocopy: this anyio's asyncio SocketStream has no _transport; its reading"
            " cannot be paused during a transfer (tested: anyio 4.7 to 4.16)",
            RuntimeWarning,
            stacklevel=3,
        )
    return transport


def _is_anyio_asyncio_tcp(stream: Any) -> bool:
    kind = type(stream)
    return kind.__module__ == "anyio._backends._asyncio" and kind.__name__ == "SocketStream"


def anyio_take_read_ahead(stream: Any) -> bytes:
    """Take the bytes anyio's asyncio ``SocketStream`` read but has not handed out.

    ``receive(max_bytes)`` keeps the rest of a larger chunk in
    ``stream._protocol.read_queue`` (a deque of bytes), and a stream made by
    ``SocketStream.from_socket`` reads on its own until its reading is
    paused.  This joins and clears that queue, and clears
    ``_protocol.read_event`` as ``receive()`` does once the queue is empty
    (both written, not only read).  Checked: anyio 4.7 to 4.16.  Streams
    without them (trio's, UNIX streams), or an anyio that renamed them, give
    ``b""``: the relay then starts with what is in the socket.
    """
    protocol = getattr(stream, "_protocol", None)
    queue = getattr(protocol, "read_queue", None)
    if not isinstance(queue, deque) or not queue:
        return b""
    data = b"".join(queue)
    queue.clear()
    import asyncio  # here: ``import zerocopy`` does not import asyncio

    event = getattr(protocol, "read_event", None)
    if isinstance(event, asyncio.Event):
        event.clear()  # as receive() does once the queue is empty
    return data


# --- aiohttp -------------------------------------------------------------------

_Writer = TypeVar("_Writer")


def _parameters(fn: object) -> list[str] | None:
    try:
        return list(inspect.signature(fn).parameters)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def aiohttp_hook_sendfile(
    cls: type, send: Callable[[Any, Any, Any, int, int], Awaitable[Any]]
) -> bool:
    """Make *send* the ``_sendfile`` hook of *cls*, an ``aiohttp.web.FileResponse`` subclass.

    aiohttp calls ``FileResponse._sendfile(request, fobj, offset, count)``
    once the status and headers are decided, to send them and the body; its
    own chunked copy is ``_sendfile_fallback(writer, fobj, offset, count)``
    (:func:`aiohttp_sendfile_fallback`).  Checked: aiohttp 3.10 to 3.14.
    Both are checked here by their parameters; if either is missing or has
    changed, this warns and installs nothing (returns False): the class then
    sends its bodies exactly as aiohttp's own FileResponse does.
    """
    hook = _parameters(getattr(cls, "_sendfile", None))
    fallback = _parameters(getattr(cls, "_sendfile_fallback", None))
    if hook != ["self", "request", "fobj", "offset", "count"] or fallback != [
        "self",
        "writer",
        "fobj",
        "offset",
        "count",
    ]:
        warnings.warn(
            "zerocopy.aiohttp: this aiohttp's FileResponse has no _sendfile(request, fobj,"
            " offset, count) and _sendfile_fallback(writer, fobj, offset, count) hooks;"
            " zerocopy.aiohttp.FileResponse sends bodies as aiohttp does",
            RuntimeWarning,
            stacklevel=3,
        )
        return False
    cls._sendfile = send  # type: ignore[attr-defined]
    return True


async def aiohttp_sendfile_fallback(
    response: Any, writer: _Writer, fobj: Any, offset: int, count: int
) -> _Writer:
    """aiohttp's own chunked body copy, ``FileResponse._sendfile_fallback`` (aiohttp 3.10 to 3.14).

    Only called from a hook that :func:`aiohttp_hook_sendfile` installed,
    which it does only where this method exists with these parameters.
    """
    done: _Writer = await response._sendfile_fallback(writer, fobj, offset, count)
    return done  # aiohttp returns the writer it was given


def aiohttp_response_path(response: Any) -> object:
    """The path a ``FileResponse`` was made with, for a log line (``_path``; aiohttp 3.10 to 3.14).

    Without it: ``"<file>"``.
    """
    return getattr(response, "_path", "<file>")


# --- uvicorn -------------------------------------------------------------------


def uvicorn_hook_start_asgi_task(cls: type, before: Callable[[Any], None]) -> bool:
    """Call *before(cycle)* in *cls*'s ``_start_asgi_task``, ahead of uvicorn's own.

    uvicorn's httptools ``HttpToolsProtocol._start_asgi_task(cycle, app)``
    (checked: uvicorn 0.45 to 0.55) starts every request's cycle, pipelined
    ones included, before its task runs: the one place to adopt the cycle.
    If the method is missing or its parameters changed, this warns and
    installs nothing (returns False): the caller then offers no extensions,
    so the protocol serves as uvicorn's own.
    """
    start = getattr(cls, "_start_asgi_task", None)
    if _parameters(start) != ["self", "cycle", "app"]:
        warnings.warn(
            "zerocopy.uvicorn: this uvicorn's HttpToolsProtocol has no"
            " _start_asgi_task(cycle, app); HttpToolsProtocol offers no file-body extensions",
            RuntimeWarning,
            stacklevel=3,
        )
        return False
    assert start is not None

    def _start_asgi_task(self: Any, cycle: Any, app: Any) -> None:
        before(cycle)
        start(self, cycle, app)

    cls._start_asgi_task = _start_asgi_task  # type: ignore[attr-defined]
    return True
