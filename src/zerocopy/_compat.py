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
``import zerocopy`` stays free of them.  The ``*_missing_hooks`` functions
are each integration's one check of everything it needs of its framework,
run at import; :mod:`zerocopy._integrations` decides from their answer.

Checked against: CPython 3.11 to 3.14 (asyncio, io, socket), uvloop 0.23
(it uses asyncio's StreamReader), anyio 4.7 to 4.16, aiohttp 3.10 to 3.14,
uvicorn 0.45 to 0.55.
"""

from __future__ import annotations

import dis
import inspect
import io
import socket
import warnings
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from itertools import starmap
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:  # asyncio is imported by the async forms, not by ``import zerocopy``
    import asyncio

__all__ = [
    "BUFFERED_SIZEOF_BASE",
    "aiohttp_hook_sendfile",
    "aiohttp_missing_hooks",
    "aiohttp_prepare",
    "aiohttp_prepare_missing",
    "aiohttp_response_path",
    "aiohttp_sendfile_fallback",
    "anyio_is_asyncio_tcp",
    "anyio_missing_hooks",
    "anyio_take_read_ahead",
    "anyio_transport",
    "socketio_socket",
    "stream_reader_buffer",
    "text_writes_through",
    "uvicorn_cycle",
    "uvicorn_h11_missing_hooks",
    "uvicorn_httptools_missing_hooks",
    "uvicorn_wrap_app",
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
    caller (``_streams.stream_fd``) treats the object as one whose fd is not its
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


def anyio_missing_hooks(backend: Any) -> list[str]:
    """What the zero-copy path for anyio's asyncio TCP streams needs of anyio; [] if none.

    *backend* is ``anyio._backends._asyncio`` (None if it did not import).
    Needed (anyio 4.7 to 4.16 have them all): its ``SocketStream`` whose
    ``__init__`` sets ``_transport`` and ``_protocol``
    (:func:`anyio_transport`), and its ``StreamProtocol`` whose
    ``connection_made`` sets ``read_queue`` and ``read_event``
    (:func:`anyio_take_read_ahead`).  Raw sockets, trio's streams and
    anyio's UNIX streams need none of them.  With any missing, the caller
    sends such streams' files through the stream's own ``send`` and refuses
    to relay them.
    """
    if backend is None:
        return ["the module anyio._backends._asyncio"]
    missing: list[str] = []
    stream = getattr(backend, "SocketStream", None)
    absent = {"_transport", "_protocol"} - _stored_attributes(getattr(stream, "__init__", None))
    missing.extend(f"SocketStream().{name}" for name in sorted(absent))
    protocol = getattr(backend, "StreamProtocol", None)
    made = getattr(protocol, "connection_made", None)
    absent = {"read_queue", "read_event"} - _stored_attributes(made)
    missing.extend(f"StreamProtocol().{name}" for name in sorted(absent))
    return missing


def anyio_is_asyncio_tcp(stream: Any) -> bool:
    """Whether *stream* is anyio's asyncio TCP ``SocketStream`` (the one over a transport)."""
    return _is_anyio_asyncio_tcp(stream)


# --- framework hooks: how they are checked ------------------------------------

_Writer = TypeVar("_Writer")


def _parameters(fn: object) -> list[str] | None:
    try:
        return list(inspect.signature(fn).parameters)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _stored_attributes(fn: object) -> frozenset[str]:
    """The attribute names *fn*'s own code assigns (``x.name = ...``), read from its bytecode.

    How an instance attribute that a framework sets in ``__init__`` (or in
    a method) is checked without making an instance.
    """
    code = getattr(fn, "__code__", None)
    if code is None:
        return frozenset()
    return frozenset(
        str(ins.argval) for ins in dis.get_instructions(code) if ins.opname == "STORE_ATTR"
    )


def _method_missing(cls: object, name: str, params: list[str], stores: Iterable[str] = ()) -> bool:
    """Whether *cls* lacks method *name* taking *params*, or one whose code sets all of *stores*."""
    method = getattr(cls, name, None)
    return _parameters(method) != params or not set(stores) <= _stored_attributes(method)


# --- aiohttp -------------------------------------------------------------------


def aiohttp_missing_hooks(file_response: type, fileresponse: Any, writer: type) -> list[str]:
    """What ``zerocopy.aiohttp.FileResponse`` needs of aiohttp and this aiohttp lacks; [] if none.

    *file_response* is ``aiohttp.web.FileResponse``, *fileresponse* the
    ``aiohttp.web_fileresponse`` module, *writer* ``aiohttp.abc.AbstractStreamWriter``.
    Needed (aiohttp 3.10 to 3.14 have them all): the private hook
    ``FileResponse._sendfile(request, fobj, offset, count)``, which aiohttp
    calls once status and headers are decided, to send them and the body;
    its chunked copy, the coroutine ``_sendfile_fallback(writer, fobj,
    offset, count)`` (:func:`aiohttp_sendfile_fallback`); the
    ``AIOHTTP_NOSENDFILE`` switch, ``web_fileresponse.NOSENDFILE``; and the
    writer's counters ``output_size``, ``buffer_size`` and ``length``, which
    the hook keeps as aiohttp's copy would.  With any missing, the caller
    leaves its class sending bodies as aiohttp's own.
    """
    missing = []
    if _method_missing(file_response, "_sendfile", ["self", "request", "fobj", "offset", "count"]):
        missing.append("FileResponse._sendfile(self, request, fobj, offset, count)")
    fallback = getattr(file_response, "_sendfile_fallback", None)
    if _parameters(fallback) != ["self", "writer", "fobj", "offset", "count"] or not (
        inspect.iscoroutinefunction(fallback)
    ):
        missing.append("async FileResponse._sendfile_fallback(self, writer, fobj, offset, count)")
    if not isinstance(getattr(fileresponse, "NOSENDFILE", None), bool):
        missing.append("web_fileresponse.NOSENDFILE")
    missing.extend(
        f"AbstractStreamWriter.{name}"
        for name in ("output_size", "buffer_size", "length")
        if not hasattr(writer, name)
    )
    return missing


def aiohttp_hook_sendfile(
    cls: type, send: Callable[[Any, Any, Any, int, int], Awaitable[Any]]
) -> None:
    """Make *send* the ``_sendfile`` hook of *cls*, an ``aiohttp.web.FileResponse`` subclass.

    Only where :func:`aiohttp_missing_hooks` found nothing missing.
    """
    cls._sendfile = send  # type: ignore[attr-defined]


async def aiohttp_sendfile_fallback(
    response: Any, writer: _Writer, fobj: Any, offset: int, count: int
) -> _Writer:
    """aiohttp's own chunked body copy, ``FileResponse._sendfile_fallback`` (aiohttp 3.10 to 3.14).

    Only called from a hook that :func:`aiohttp_hook_sendfile` installed,
    which happens only where this method exists with these parameters.
    """
    done: _Writer = await response._sendfile_fallback(writer, fobj, offset, count)
    return done  # aiohttp returns the writer it was given


#: The names aiohttp's ``FileResponse.prepare`` uses, 3.11.18 to 3.14.5 (the
#: same body in all of them): :func:`aiohttp_prepare` is that body with the
#: open and close on the loop, so it runs only where prepare still is it.
_AIOHTTP_PREPARE_NAMES = frozenset(
    {
        *("ACCEPT_ENCODING", "HTTPForbidden", "HTTPNotFound", "NOT_ACCEPTABLE", "NOT_MODIFIED"),
        *("OSError", "PRE_CONDITION_FAILED", "PermissionError", "_CLOSE_FUTURES"),
        *("_FileResponseResult", "_make_response", "_not_modified", "_precondition_failed"),
        *("_prepare_open_file", "add", "add_done_callback", "asyncio", "close", "get"),
        *("get_running_loop", "hdrs", "headers", "lower", "prepare", "remove"),
        *("run_in_executor", "set_status", "st_mtime", "st_mtime_ns", "st_size", "status_code"),
        "super",
    }
)


def aiohttp_prepare_missing(file_response: type, fileresponse: Any) -> list[str]:
    """What :func:`aiohttp_prepare` needs of aiohttp and this aiohttp lacks; [] if none.

    aiohttp 3.11.18 to 3.14 have it all: ``FileResponse.prepare`` with the
    body :func:`aiohttp_prepare` repeats (checked by the names its code
    uses), the private ``_make_response(request, accept_encoding)`` (stat and
    open, which aiohttp runs in a worker thread), the coroutines
    ``_prepare_open_file``, ``_not_modified``, ``_precondition_failed``, the
    ``_FileResponseResult`` members and the ``_path`` set in ``__init__``.
    Older ones (3.10, 3.11.0) open in more steps; there the caller keeps
    aiohttp's own prepare.
    """
    missing = []
    prepare = getattr(getattr(file_response, "prepare", None), "__code__", None)
    if prepare is None or frozenset(prepare.co_names) != _AIOHTTP_PREPARE_NAMES:
        missing.append("FileResponse.prepare as in aiohttp 3.11.18 to 3.14")
    if _method_missing(file_response, "_make_response", ["self", "request", "accept_encoding"]):
        missing.append("FileResponse._make_response(self, request, accept_encoding)")
    for name, params in (
        ("_prepare_open_file", ["self", "request", "fobj", "st", "file_encoding"]),
        ("_not_modified", ["self", "request", "etag_value", "last_modified"]),
        ("_precondition_failed", ["self", "request"]),
    ):
        method = getattr(file_response, name, None)
        if _parameters(method) != params or not inspect.iscoroutinefunction(method):
            missing.append(f"async FileResponse.{name}({', '.join(params)})")
    result = getattr(fileresponse, "_FileResponseResult", None)
    members = ("SEND_FILE", "NOT_ACCEPTABLE", "PRE_CONDITION_FAILED", "NOT_MODIFIED")
    if result is None or not all(hasattr(result, m) for m in members):
        missing.append(f"web_fileresponse._FileResponseResult.{{{','.join(members)}}}")
    if "_path" not in _stored_attributes(getattr(file_response, "__init__", None)):
        missing.append("FileResponse._path")
    return missing


_CLOSING: set[Any] = set()  # closes in worker threads, held until done (as aiohttp holds them)


async def aiohttp_prepare(
    response: Any,
    request: Any,
    file_response: type,
    fileresponse: Any,
    on_loop: Callable[[str], bool],
    learn: Callable[[str, int], object],
) -> Any:
    """aiohttp's ``FileResponse.prepare`` (3.11.18 to 3.14), the file opened where *on_loop* says.

    *on_loop(path)* says whether the stat and open of the response's path
    may run on the event loop (a file known to live on a local filesystem);
    otherwise they run in the loop's default executor, as aiohttp's, and
    *learn(path, st_dev)* is told where the file turned out to be.  The
    file is closed the same way.  Everything else is aiohttp's code, step
    for step: 403 and 404, preconditions, 304, then ``_prepare_open_file``.
    Only where :func:`aiohttp_prepare_missing` found nothing missing.
    """
    import asyncio

    stream_prepare = super(file_response, response).prepare  # type: ignore[arg-type]
    accept_encoding = request.headers.get("Accept-Encoding", "").lower()
    path = str(response._path)
    inline = on_loop(path)
    loop = asyncio.get_running_loop()
    try:
        if inline:
            result, fobj, st, file_encoding = response._make_response(request, accept_encoding)
        else:
            result, fobj, st, file_encoding = await loop.run_in_executor(
                None, response._make_response, request, accept_encoding
            )
            learn(path, st.st_dev)
    except PermissionError:
        response.set_status(403)
        return await stream_prepare(request)
    except OSError:
        # FileNotFoundError, or a loop of symlinks: aiohttp's 404.
        response.set_status(404)
        return await stream_prepare(request)
    results = fileresponse._FileResponseResult
    if result is results.NOT_ACCEPTABLE:  # not a regular file
        response.set_status(403)
        return await stream_prepare(request)
    if result is results.PRE_CONDITION_FAILED:
        return await response._precondition_failed(request)
    if result is results.NOT_MODIFIED:
        etag_value = f"{st.st_mtime_ns:x}-{st.st_size:x}"
        return await response._not_modified(request, etag_value, st.st_mtime)
    try:
        return await response._prepare_open_file(request, fobj, st, file_encoding)
    finally:
        if inline:
            fobj.close()
        else:
            # Not awaited, as aiohttp's: the connection goes on meanwhile.
            closing = loop.run_in_executor(None, fobj.close)
            _CLOSING.add(closing)
            closing.add_done_callback(_CLOSING.discard)


def aiohttp_response_path(response: Any) -> object:
    """The path a ``FileResponse`` was made with, for a log line (``_path``; aiohttp 3.10 to 3.14).

    Without it: ``"<file>"``.
    """
    return getattr(response, "_path", "<file>")


# --- uvicorn -------------------------------------------------------------------
#
# Everything zerocopy.uvicorn touches of uvicorn, both protocols (0.45 to 0.55):
#
# - the protocol's ``app`` attribute: set in ``__init__`` from
#   ``config.loaded_app``, read where each request's cycle is made
#   (``on_headers_complete``, h11's ``handle_events``).  The subclasses wrap
#   it once per connection (:func:`uvicorn_wrap_app`): no private method is
#   overridden, no cycle class is swapped.
# - the ``send`` each cycle's ``run_asgi(app)`` hands to the app is the
#   cycle's own bound method, so ``send.__self__`` is the cycle
#   (:func:`uvicorn_cycle`).
# - ``RequestResponseCycle.send(message)`` itself, called with plain
#   ``http.response.body`` messages for what uvicorn can do: flow control,
#   HEAD, the end of the body (chunked terminator, Content-Length too short,
#   keep-alive or close, the pipelined next request).
# - the cycle attributes each protocol's file-body writer reads or writes
#   (:data:`_HTTPTOOLS_CYCLE_ATTRIBUTES`, :data:`_H11_CYCLE_ATTRIBUTES`).

#: What both writers read and write on uvicorn's ``RequestResponseCycle``
#: instances, all set in its ``__init__``: the socket's transport; whether
#: the response started and ended (a file message out of place goes to
#: uvicorn's ``send`` as itself, for uvicorn's error); ``disconnected``, set
#: when the client goes away mid-file, as uvicorn does for its own writes.
_CYCLE_ATTRIBUTES = ("transport", "disconnected", "response_started", "response_complete")
#: httptools' cycle frames bodies itself: a file body is one chunk, or counts
#: against the Content-Length left.
_HTTPTOOLS_CYCLE_ATTRIBUTES = (*_CYCLE_ATTRIBUTES, "chunked_encoding", "expected_content_length")
#: h11's cycle frames through its ``h11.Connection``.
_H11_CYCLE_ATTRIBUTES = (*_CYCLE_ATTRIBUTES, "conn")


def _loaded_attributes(fn: object) -> frozenset[str]:
    """The attribute names *fn*'s own code reads (``x.name``), from its bytecode."""
    code = getattr(fn, "__code__", None)
    if code is None:
        return frozenset()
    return frozenset(
        str(ins.argval)
        for ins in dis.get_instructions(code)
        if ins.opname in {"LOAD_ATTR", "LOAD_METHOD"}
    )


def _uvicorn_missing(
    module: Any, name: str, protocol: str, starts: str, attributes: Iterable[str]
) -> list[str]:
    """What *module*'s *protocol* and ``RequestResponseCycle`` lack of the touches above.

    *starts* is the protocol method that makes each cycle and reads
    ``self.app`` for it; *attributes* the cycle attributes its writer uses.
    """
    if module is None:
        return [f"the module uvicorn.protocols.http.{name}"]
    proto, cycle = getattr(module, protocol, None), getattr(module, "RequestResponseCycle", None)
    missing = [
        label
        for label, cls in ((protocol, proto), ("RequestResponseCycle", cycle))
        if not isinstance(cls, type)
    ]
    if isinstance(proto, type):
        if "app" not in _stored_attributes(getattr(proto, "__init__", None)):
            missing.append(f"{protocol}.__init__ setting self.app")
        if _method_missing(proto, starts, ["self"]) or "app" not in _loaded_attributes(
            getattr(proto, starts, None)
        ):
            missing.append(f"{protocol}.{starts}(self) reading self.app")
    if isinstance(cycle, type):
        if _parameters(getattr(cycle, "send", None)) != ["self", "message"]:
            missing.append("RequestResponseCycle.send(self, message)")
        run = getattr(cycle, "run_asgi", None)
        if _parameters(run) != ["self", "app"] or "send" not in _loaded_attributes(run):
            missing.append("RequestResponseCycle.run_asgi(self, app) passing self.send")
        absent = set(attributes) - _stored_attributes(getattr(cycle, "__init__", None))
        missing.extend(f"RequestResponseCycle().{attr}" for attr in sorted(absent))
    return missing


def uvicorn_httptools_missing_hooks(module: Any) -> list[str]:
    """What ``zerocopy.uvicorn.HttpToolsProtocol`` needs of uvicorn's httptools module; [] if none.

    *module* is ``uvicorn.protocols.http.httptools_impl`` (None if it did not
    import).  Needed (uvicorn 0.45 to 0.55 have them all): its
    ``HttpToolsProtocol`` whose ``__init__`` sets ``self.app`` and whose
    ``on_headers_complete(self)`` reads it for each cycle; its
    ``RequestResponseCycle`` with ``send(self, message)``, a
    ``run_asgi(self, app)`` that hands the app ``self.send``, and the
    instance attributes of :data:`_HTTPTOOLS_CYCLE_ATTRIBUTES`.  With any
    missing, the caller serves with uvicorn's own class.
    """
    return _uvicorn_missing(
        module,
        "httptools_impl",
        "HttpToolsProtocol",
        "on_headers_complete",
        _HTTPTOOLS_CYCLE_ATTRIBUTES,
    )


def uvicorn_h11_missing_hooks(module: Any, h11: Any) -> list[str]:
    """What ``zerocopy.uvicorn.H11Protocol`` needs of uvicorn's h11 module and h11; [] if none.

    *module* is ``uvicorn.protocols.http.h11_impl`` (None if it did not
    import), *h11* the h11 package.  Needed (uvicorn 0.45 to 0.55, h11 0.16):
    as :func:`uvicorn_httptools_missing_hooks`, with ``handle_events(self)``
    making the cycles and :data:`_H11_CYCLE_ATTRIBUTES`; and h11's public
    ``Connection.send_with_data_passthrough``.  With any missing, the caller
    serves with uvicorn's own class.
    """
    missing = _uvicorn_missing(
        module, "h11_impl", "H11Protocol", "handle_events", _H11_CYCLE_ATTRIBUTES
    )
    if not callable(getattr(getattr(h11, "Connection", None), "send_with_data_passthrough", None)):
        missing.append("h11.Connection.send_with_data_passthrough")
    return missing


def uvicorn_wrap_app(protocol: Any, wrap: Callable[[Any], Any]) -> None:
    """Replace *protocol*'s ``app`` (uvicorn's ``config.loaded_app``) by ``wrap(app)``.

    Called from the ``__init__`` of zerocopy's protocol subclasses, after
    uvicorn's: every request of the connection then runs the wrapped app
    (uvicorn's 503 app, under ``--limit-concurrency``, stays unwrapped).
    Only where the ``*_missing_hooks`` check found ``__init__`` setting
    ``self.app`` and the cycle-making method reading it.
    """
    protocol.app = wrap(protocol.app)


def uvicorn_cycle(send: Any, cycle_class: type) -> Any | None:
    """The ``RequestResponseCycle`` whose bound ``send`` *send* is, else None.

    uvicorn's ``run_asgi`` calls ``app(self.scope, self.receive, self.send)``
    (uvicorn 0.45 to 0.55): the ``send`` an app receives is the cycle's own
    method.  Anything else (a wrapper some later uvicorn puts around it)
    gives None, and the caller offers no extension for that request.
    """
    cycle = getattr(send, "__self__", None)
    return cycle if isinstance(cycle, cycle_class) else None
