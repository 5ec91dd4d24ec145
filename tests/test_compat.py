"""Other libraries' internals (zerocopy._compat): each still there, each fallback, the guard.

For every private attribute zerocopy touches, a test against the installed
version fails when a release removes it or changes its shape; a second
test removes it and checks the documented fallback.  The guard test keeps
such touches out of every module but ``_compat``.
"""

from __future__ import annotations

import _pyio
import ast
import asyncio
import importlib
import inspect
import io
import re
import socket
import sys
import warnings
from collections import deque
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import pytest
import uvloop

from zerocopy import _compat
from zerocopy._aiostream import BorrowedSocket
from zerocopy._copy import writer
from zerocopy._streams import stream_fd

SRC = Path(_compat.__file__).parent
#: The checkout (pyproject.toml), wherever the package itself is installed.
ROOT = Path(__file__).resolve().parents[1]

LOOPS = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


def run_on(loop_name: str, coro: Any) -> Any:
    with asyncio.Runner(loop_factory=LOOPS[loop_name]) as runner:
        return runner.run(coro)


# --- asyncio.StreamReader._buffer --------------------------------------------


@pytest.mark.parametrize("loop_name", sorted(LOOPS))
def test_stream_reader_buffer_is_its_bytearray(loop_name: str) -> None:
    """``StreamReader._buffer`` is a bytearray holding what was fed and not read (uvloop too)."""

    async def main() -> None:
        reader = asyncio.StreamReader()
        reader.feed_data(b"ahead")
        buf = _compat.stream_reader_buffer(reader)
        assert type(buf) is bytearray
        assert buf == b"ahead"
        buf.clear()
        reader.feed_eof()
        assert await reader.read() == b""  # the same buffer: what was taken is gone

    run_on(loop_name, main())


def test_stream_reader_without_buffer_is_refused_up_front(monkeypatch: pytest.MonkeyPatch) -> None:
    """No ``_buffer``: the relay refuses the pair with TypeError before anything changes."""

    async def main() -> None:
        reader = asyncio.StreamReader()
        monkeypatch.delattr(reader, "_buffer")
        assert _compat.stream_reader_buffer(reader) is None
        with pytest.raises(TypeError, match="keeps no buffer"):
            BorrowedSocket.check(object(), "a", reader=reader)

    run_on("asyncio", main())


# --- socket.SocketIO._sock --------------------------------------------------


def test_socketio_sock_is_its_socket() -> None:
    """``SocketIO._sock`` is the socket ``makefile()`` was called on; stream_fd finds its fd."""
    a, b = socket.socketpair()
    with a, b:
        raw = a.makefile("rb", buffering=0)
        buffered = a.makefile("rb")
        try:
            assert type(raw) is socket.SocketIO
            assert _compat.socketio_socket(raw) is a
            assert stream_fd(raw, True) == a.fileno()
            assert stream_fd(buffered, True) == a.fileno()
        finally:
            raw.close()
            buffered.close()


def test_socketio_without_sock_is_copied_by_python() -> None:
    """No ``_sock``: stream_fd says None, so copyfileobj copies through Python as shutil does."""
    a, b = socket.socketpair()
    with a, b:
        raw = a.makefile("rb", buffering=0)
        with pytest.MonkeyPatch.context() as m:
            m.delattr(raw, "_sock")
            assert _compat.socketio_socket(raw) is None
            assert stream_fd(raw, True) is None
        raw.close()  # with its _sock back: close() needs it


# --- io.BufferedWriter.__sizeof__ and TextIOWrapper._CHUNK_SIZE ----------------


@pytest.mark.parametrize("size", [1, 4096, 65536])
def test_buffered_writer_sizeof_gives_its_buffer(size: int) -> None:
    """CPython's BufferedWriter ``__sizeof__`` is its struct plus its buffer."""
    assert _compat.BUFFERED_SIZEOF_BASE < 1 << 62, "the layout check failed on this Python"
    fdst = io.BufferedWriter(io.BytesIO(), size)
    assert fdst.__sizeof__() - _compat.BUFFERED_SIZEOF_BASE == size
    assert writer.direct_size(fdst, size + 1) == size
    assert writer.direct_size(fdst, size) == 0


def test_buffered_writer_sizeof_other_layout_means_its_own_write(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A ``__sizeof__`` without the buffer: every size turns negative, so no direct write."""

    class Flat(io.BufferedWriter):
        def __sizeof__(self) -> int:
            return 200

    monkeypatch.setattr(io, "BufferedWriter", Flat)
    base = _compat._buffered_sizeof_base()
    monkeypatch.undo()
    assert base >= 1 << 62
    monkeypatch.setattr(writer, "SIZEOF", base)
    assert writer.direct_size(io.BufferedWriter(io.BytesIO(), 16), 1 << 20) == 0


@pytest.mark.parametrize("module", [io, _pyio], ids=["c", "pyio"])
def test_text_wrapper_chunk_size_hands_bytes_over_at_once(module: Any) -> None:
    """``TextIOWrapper._CHUNK_SIZE``: an int; at 1 each write reaches the buffer; restored."""
    raw = io.BytesIO()
    fdst = module.TextIOWrapper(module.BufferedWriter(raw, 1 << 16), encoding="utf-8")
    before = fdst._CHUNK_SIZE
    assert isinstance(before, int)
    assert _compat.text_writes_through(fdst)
    log: list[Any] = []
    _compat.write_text_now(fdst, "héllo", log)
    assert log == [5]
    assert fdst.buffer.tell() == len("héllo".encode())  # in the buffer, not pending
    assert before == fdst._CHUNK_SIZE


class _NoChunkSize(io.TextIOWrapper):
    """A TextIOWrapper as a Python without ``_CHUNK_SIZE`` would have it."""

    @property
    def _CHUNK_SIZE(self) -> int:
        raise AttributeError("_CHUNK_SIZE")


def test_text_wrapper_without_chunk_size_writes_inexactly() -> None:
    """No ``_CHUNK_SIZE``: plain writes, and TextCount counts no characters of a failed write."""
    raw = io.BytesIO()
    fdst = _NoChunkSize(io.BufferedWriter(raw), encoding="utf-8")
    assert not _compat.text_writes_through(fdst)
    count = writer.TextCount(fdst)
    log: list[Any] = []
    assert count("abc\ndef", log) == 7
    assert count.pos is None  # exact counting off: nothing is read from the buffer's position
    fdst.flush()
    assert raw.getvalue() == b"abc\ndef"


# --- anyio's asyncio SocketStream: _transport, _protocol.read_queue/read_event --


async def _tcp_streams() -> tuple[anyio.abc.SocketStream, anyio.abc.SocketStream]:
    listener = socket.create_server(("127.0.0.1", 0))
    with listener:
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    client.setblocking(False)
    server.setblocking(False)
    return (
        await anyio.abc.SocketStream.from_socket(client),
        await anyio.abc.SocketStream.from_socket(server),
    )


@pytest.mark.parametrize("use_uvloop", [False, True], ids=["asyncio", "uvloop"])
def test_anyio_asyncio_stream_transport_and_read_queue(use_uvloop: bool) -> None:
    """anyio's asyncio TCP stream: ``_transport``, a transport; ``_protocol``, its read-ahead."""

    async def main() -> None:
        client, server = await _tcp_streams()
        async with client, server:
            transport = _compat.anyio_transport(server)
            assert transport is not None
            for method in ("pause_reading", "resume_reading", "is_reading", "get_extra_info"):
                assert callable(getattr(transport, method))
            protocol = server._protocol  # type: ignore[attr-defined]
            assert isinstance(protocol.read_queue, deque)
            assert isinstance(protocol.read_event, asyncio.Event)
            await client.send(b"hello world")
            got = b""
            while len(got) < 5:
                got += await server.receive(5 - len(got))
            with anyio.fail_after(5):
                while not protocol.read_queue:  # the rest of the chunk, or bytes still coming
                    await protocol.read_event.wait()
                    await anyio.lowlevel.checkpoint()
            ahead = _compat.anyio_take_read_ahead(server)
            assert got + ahead == b"hello world"[: len(got + ahead)]
            assert ahead
            assert not protocol.read_queue
            assert not protocol.read_event.is_set()

    anyio.run(main, backend="asyncio", backend_options={"use_uvloop": use_uvloop})


def test_anyio_trio_stream_has_no_transport() -> None:
    """trio's streams read their socket only when asked: no transport, no read-ahead, no warning."""

    async def main() -> None:
        client, server = await _tcp_streams()
        async with client, server:
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                assert _compat.anyio_transport(server) is None
            assert _compat.anyio_take_read_ahead(server) == b""

    anyio.run(main, backend="trio")


def test_anyio_stream_without_transport_warns_and_uses_the_raw_socket() -> None:
    """``_transport`` renamed: a warning; StreamSocket works on a duplicate of the raw socket."""
    from zerocopy._anyiowait import StreamSocket

    async def main() -> None:
        client, server = await _tcp_streams()
        async with client, server:
            with pytest.MonkeyPatch.context() as m:
                # As if anyio kept its transport under another name: its own
                # raw_socket attribute still works, ours finds nothing.
                transport = server._transport  # type: ignore[attr-defined]
                raw = property(lambda _: transport.get_extra_info("socket"))
                m.setattr(type(server), "_raw_socket", raw)
                m.delattr(server, "_transport")
                with pytest.warns(RuntimeWarning, match="no _transport"):
                    ends = StreamSocket(server, "b")
                try:
                    assert ends.borrowed is None
                    assert ends.owned
                    ends.sock.send(b"x")  # the stream's own socket (its reading is not paused)
                    with anyio.fail_after(5):
                        assert await client.receive() == b"x"
                finally:
                    ends.close()

    anyio.run(main, backend="asyncio")


def test_anyio_stream_without_read_queue_takes_nothing() -> None:
    """No ``read_queue``: nothing taken ahead; the relay starts with what is in the socket."""

    async def main() -> None:
        client, server = await _tcp_streams()
        async with client, server:
            protocol = server._protocol  # type: ignore[attr-defined]
            protocol.read_queue.append(b"queued")
            with pytest.MonkeyPatch.context() as m:
                m.delattr(protocol, "read_queue")
                assert _compat.anyio_take_read_ahead(server) == b""
            assert protocol.read_queue == deque([b"queued"])  # untouched

    anyio.run(main, backend="asyncio")


# --- aiohttp: FileResponse._sendfile, _sendfile_fallback, _path ----------------


def reimport(monkeypatch: pytest.MonkeyPatch, module: str, *others: str) -> Any:
    """Import *module* afresh (and *others*, its submodules); the old ones return after the test."""
    for name in (module, *others):
        monkeypatch.delitem(sys.modules, name, raising=False)
    return importlib.import_module(module)


UVICORN_MODULES = (
    "zerocopy.uvicorn",
    "zerocopy._asgi.uvicorn_select",
    "zerocopy._asgi.uvicorn_impl",
    "zerocopy._asgi.uvicorn_h11",
)


def test_aiohttp_file_response_hooks() -> None:
    """aiohttp's FileResponse has the hooks, with the parameters zerocopy.aiohttp expects."""
    from aiohttp import web, web_fileresponse
    from aiohttp.abc import AbstractStreamWriter

    import zerocopy.aiohttp as zc_aiohttp

    hook = inspect.signature(web.FileResponse._sendfile)
    assert list(hook.parameters) == ["self", "request", "fobj", "offset", "count"]
    fallback = inspect.signature(web.FileResponse._sendfile_fallback)
    assert list(fallback.parameters) == ["self", "writer", "fobj", "offset", "count"]
    assert inspect.iscoroutinefunction(web.FileResponse._sendfile_fallback)
    assert isinstance(web_fileresponse.NOSENDFILE, bool)
    missing = _compat.aiohttp_missing_hooks(
        web.FileResponse, web_fileresponse, AbstractStreamWriter
    )
    assert missing == []
    assert zc_aiohttp.FileResponse._sendfile is zc_aiohttp._send  # installed
    response = zc_aiohttp.FileResponse("some/file.bin")
    assert _compat.aiohttp_response_path(response) == Path("some/file.bin")


def test_aiohttp_missing_hooks_are_each_named() -> None:
    """Each hook aiohttp could lose (or reshape) is named by the check, and only that one."""
    from aiohttp import web, web_fileresponse
    from aiohttp.abc import AbstractStreamWriter

    class Changed(web.FileResponse):
        async def _sendfile_fallback(self, writer: Any, fobj: Any, chunk: int) -> Any:  # type: ignore[override]
            raise AssertionError("not called")

    def check(cls: type = web.FileResponse, module: Any = web_fileresponse) -> list[str]:
        return _compat.aiohttp_missing_hooks(cls, module, AbstractStreamWriter)

    assert check(Changed) == [
        "async FileResponse._sendfile_fallback(self, writer, fobj, offset, count)"
    ]
    assert len(check(web.StreamResponse)) == 2  # neither hook
    assert check(module=object()) == ["web_fileresponse.NOSENDFILE"]
    assert _compat.aiohttp_missing_hooks(web.FileResponse, web_fileresponse, object) == [
        "AbstractStreamWriter.output_size",
        "AbstractStreamWriter.buffer_size",
        "AbstractStreamWriter.length",
    ]
    assert _compat.aiohttp_response_path(object()) == "<file>"


def test_aiohttp_without_hooks_sends_as_aiohttp(monkeypatch: pytest.MonkeyPatch) -> None:
    """A hook reshaped: the import warns naming it; FileResponse keeps aiohttp's ``_sendfile``."""
    from aiohttp import web

    import zerocopy

    async def reshaped(self: Any, writer: Any, fobj: Any, chunk: int) -> Any:
        raise AssertionError("not called")

    monkeypatch.setattr(web.FileResponse, "_sendfile_fallback", reshaped)
    with pytest.warns(zerocopy.IntegrationFallbackWarning) as caught:
        module = reimport(monkeypatch, "zerocopy.aiohttp")
    [warning] = caught
    text = str(warning.message)
    assert "zero-copy is off" in text
    assert "_sendfile_fallback(self, writer, fobj, offset, count)" in text
    assert "tested: aiohttp 3.10 to 3.14" in text
    assert module.FileResponse._sendfile is web.FileResponse._sendfile


# --- uvicorn: the protocols' app, the cycle's bound send, its attributes ------


def test_uvicorn_hooks_present() -> None:
    """uvicorn has every touch of both protocols; the subclasses override ``__init__`` alone."""
    import h11
    from uvicorn.protocols.http import h11_impl, httptools_impl

    from zerocopy._asgi import uvicorn_h11, uvicorn_impl
    from zerocopy.uvicorn import H11Protocol, HttpToolsProtocol

    assert _compat.uvicorn_httptools_missing_hooks(httptools_impl) == []
    assert _compat.uvicorn_h11_missing_hooks(h11_impl, h11) == []
    assert (HttpToolsProtocol, H11Protocol) == (
        uvicorn_impl.HttpToolsProtocol,
        uvicorn_h11.H11Protocol,
    )
    for cls in (HttpToolsProtocol, H11Protocol):
        assert set(vars(cls)) - {"__module__", "__doc__", "__qualname__"} <= {
            "__init__",
            "__firstlineno__",
            "__static_attributes__",
        }
    assert served_scope()["extensions"].keys() >= {
        "http.response.pathsend",
        "http.response.zerocopysend",
    }


@pytest.mark.parametrize("name", ["httptools_impl", "h11_impl"])
def test_uvicorn_send_is_the_cycles_own(name: str) -> None:
    """Stock uvicorn hands the app its cycle's bound ``send``, with the attributes we use."""
    module = importlib.import_module(f"uvicorn.protocols.http.{name}")
    protocol = {"httptools_impl": "HttpToolsProtocol", "h11_impl": "H11Protocol"}[name]
    sends: list[Any] = []
    served_scope(getattr(module, protocol), sends)
    [send] = sends
    cycle = _compat.uvicorn_cycle(send, module.RequestResponseCycle)
    assert cycle is not None
    assert send == cycle.send
    attributes = {
        "httptools_impl": _compat._HTTPTOOLS_CYCLE_ATTRIBUTES,
        "h11_impl": _compat._H11_CYCLE_ATTRIBUTES,
    }[name]
    assert all(hasattr(cycle, attr) for attr in attributes)
    assert cycle.response_complete
    assert _compat.uvicorn_cycle(print, module.RequestResponseCycle) is None


def test_uvicorn_wrap_app_wraps_what_the_cycles_run() -> None:
    """``uvicorn_wrap_app``: the wrapped app is what uvicorn's protocol runs for a request."""
    from uvicorn.protocols.http import httptools_impl

    wrapped: list[Any] = []

    def wrap(app: Any) -> Any:
        async def outer(scope: Any, receive: Any, send: Any) -> None:
            wrapped.append(scope["path"])
            await app(scope, receive, send)

        return outer

    class Protocol(httptools_impl.HttpToolsProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            _compat.uvicorn_wrap_app(self, wrap)

    served_scope(Protocol)
    assert wrapped == ["/"]


def test_uvicorn_missing_hooks_are_each_named() -> None:
    """A cycle that stops setting an attribute, a module or class gone: each is named."""
    import h11
    from uvicorn.protocols.http import h11_impl, httptools_impl

    class Cycle(httptools_impl.RequestResponseCycle):
        def __init__(self) -> None:
            self.transport = None  # and nothing else of what zerocopy's writer uses

    fake = type("Module", (), {"HttpToolsProtocol": httptools_impl.HttpToolsProtocol})
    fake.RequestResponseCycle = Cycle  # type: ignore[attr-defined]
    missing = _compat.uvicorn_httptools_missing_hooks(fake)
    assert "RequestResponseCycle().transport" not in missing
    assert "RequestResponseCycle().disconnected" in missing
    assert "RequestResponseCycle().expected_content_length" in missing
    assert not [m for m in missing if not m.startswith("RequestResponseCycle()")]
    assert _compat.uvicorn_httptools_missing_hooks(None) == [
        "the module uvicorn.protocols.http.httptools_impl"
    ]
    assert _compat.uvicorn_h11_missing_hooks(h11_impl, object()) == [
        "h11.Connection.send_with_data_passthrough"
    ]
    bare = type("Module", (), {"RequestResponseCycle": h11_impl.RequestResponseCycle})
    assert _compat.uvicorn_h11_missing_hooks(bare, h11) == ["H11Protocol"]

    class Sends(h11_impl.RequestResponseCycle):
        async def run_asgi(self, app: Any) -> None:  # hands the app something else
            await app(self.scope, self.receive, print)

    class NoApp(h11_impl.H11Protocol):
        def __init__(self) -> None:
            pass

    changed = type("Module", (), {"H11Protocol": NoApp, "RequestResponseCycle": Sends})
    assert _compat.uvicorn_h11_missing_hooks(changed, h11) == [
        "H11Protocol.__init__ setting self.app",
        "RequestResponseCycle.run_asgi(self, app) passing self.send",
    ]


def test_uvicorn_without_hook_serves_as_uvicorn(monkeypatch: pytest.MonkeyPatch) -> None:
    """``on_headers_complete`` reshaped: a warning naming it; HttpToolsProtocol is uvicorn's own."""
    from uvicorn.protocols.http import httptools_impl

    import zerocopy
    from zerocopy._asgi import uvicorn_h11

    complete = httptools_impl.HttpToolsProtocol.on_headers_complete

    def reshaped(self: Any) -> None:  # uvicorn still works; whether it runs self.app is unknown
        complete(self)

    monkeypatch.setattr(httptools_impl.HttpToolsProtocol, "on_headers_complete", reshaped)
    with pytest.warns(zerocopy.IntegrationFallbackWarning) as caught:
        module = reimport(monkeypatch, *UVICORN_MODULES)
    [warning] = caught
    assert "zerocopy.uvicorn.HttpToolsProtocol: zero-copy is off" in str(warning.message)
    assert "HttpToolsProtocol.on_headers_complete(self) reading self.app" in str(warning.message)
    assert module.HttpToolsProtocol is httptools_impl.HttpToolsProtocol
    assert module.H11Protocol is uvicorn_h11.H11Protocol  # its hooks are there: still ours
    scope = served_scope()
    assert "http.response.pathsend" not in scope.get("extensions", {})


def test_uvicorn_without_h11_hook_keeps_httptools(monkeypatch: pytest.MonkeyPatch) -> None:
    """h11's ``handle_events`` reshaped: H11Protocol is uvicorn's; HttpToolsProtocol stays ours."""
    from uvicorn.protocols.http import h11_impl

    import zerocopy

    handle = h11_impl.H11Protocol.handle_events

    def reshaped(self: Any) -> None:  # no longer reads self.app itself
        handle(self)

    monkeypatch.setattr(h11_impl.H11Protocol, "handle_events", reshaped)
    with pytest.warns(zerocopy.IntegrationFallbackWarning, match="reading self.app"):
        module = reimport(monkeypatch, *UVICORN_MODULES)
    assert module.H11Protocol is h11_impl.H11Protocol
    assert module.HttpToolsProtocol.__module__ == "zerocopy._asgi.uvicorn_impl"


def test_uvicorn_send_not_a_cycles_runs_without_extensions() -> None:
    """A uvicorn whose app gets some other ``send``: the request runs as stock, with a warning."""
    from uvicorn.protocols.http import httptools_impl

    import zerocopy
    from zerocopy._asgi.uvicorn_app import FileBodies
    from zerocopy._asgi.uvicorn_impl import write_file_body

    seen: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append((scope.get("extensions"), send))

    async def other_send(message: Any) -> None:
        raise AssertionError("not called")

    wrapped = FileBodies(app, httptools_impl.RequestResponseCycle, write_file_body)
    with pytest.warns(zerocopy.IntegrationFallbackWarning, match="runs without the file-body"):
        run_on("asyncio", wrapped({"type": "http"}, None, other_send))  # type: ignore[arg-type]
    assert seen == [(None, other_send)]


class _Transport:
    """Just enough of an asyncio transport for one uvicorn request."""

    def __init__(self) -> None:
        self.out: list[bytes] = []
        self.closed = False

    def get_extra_info(self, key: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 80), "peername": ("127.0.0.1", 1234)}.get(key, default)

    def write(self, data: bytes) -> None:
        self.out.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def served_scope(protocol_class: Any = None, sends: list[Any] | None = None) -> dict[str, Any]:
    """Serve one GET with *protocol_class* over a fake transport; its scope.

    The default class is zerocopy.uvicorn's HttpToolsProtocol; the ``send``
    the app got goes to *sends*.
    """
    import uvicorn
    from uvicorn.server import ServerState

    from zerocopy.uvicorn import HttpToolsProtocol

    protocol_class = protocol_class or HttpToolsProtocol
    scopes: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        scopes.append(scope)
        if sends is not None:
            sends.append(send)
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"0")]}
        )
        await send({"type": "http.response.body", "body": b""})

    async def main() -> bytes:
        config = uvicorn.Config(app, http=protocol_class, log_config=None, lifespan="off")
        config.load()
        protocol = protocol_class(config=config, server_state=ServerState(), app_state={})
        transport = _Transport()
        protocol.connection_made(transport)  # type: ignore[arg-type]
        protocol.data_received(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        for _ in range(100):
            if transport.out:
                break
            await asyncio.sleep(0.001)
        protocol.connection_lost(None)
        return b"".join(transport.out)

    head = run_on("asyncio", main())
    assert head.startswith(b"HTTP/1.1 200 ")
    assert len(scopes) == 1
    return scopes[0]


# --- the guard ---------------------------------------------------------------

#: (module path under src/zerocopy, private name): why a getattr-style string of
#: that name is not another library's private attribute.  Ideally empty.
ALLOWED: dict[tuple[str, str], str] = {}

_ATTR_CALLS = {"getattr", "setattr", "hasattr", "delattr"}
_NOQA_SLF = re.compile(r"#\s*noqa\b[^#\n]*\bSLF001\b")


def _private_string_touches(path: Path) -> list[tuple[int, str, str]]:
    """The ``getattr(x, "_name")``-style calls in *path*: (line, function, name)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and len(node.args) >= 2):
            continue
        func = node.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
        if name not in _ATTR_CALLS:
            continue
        arg = node.args[1]
        if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
            continue
        attr = arg.value
        if attr.startswith("_") and not (attr.startswith("__") and attr.endswith("__")):
            found.append((node.lineno, name, attr))
    return found


def _modules() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if p.name != "_compat.py" or p.parent != SRC)


def test_guard_finds_what_it_looks_for(tmp_path: Path) -> None:
    """The guard's own check: the forms it must catch are caught, dunders and names are not."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        "getattr(a, '_x')\nsetattr(a, '_y', 1)\nhasattr(a, '_z', )\nbuiltins.delattr(a, '_w')\n"
        "getattr(a, '__len__')\ngetattr(a, 'name')\ngetattr(a, name)\n",
        encoding="utf-8",
    )
    assert [t[2] for t in _private_string_touches(probe)] == ["_x", "_y", "_z", "_w"]
    assert _NOQA_SLF.search("x = a._b  # noqa: SLF001 - why")
    assert _NOQA_SLF.search("x = a._b  # noqa: E501, SLF001")


def test_no_private_touch_outside_compat() -> None:
    """Outside _compat: no getattr/setattr/hasattr/delattr of a "_name" string, no SLF001 noqa."""
    modules = _modules()
    assert SRC / "_streams.py" in modules
    assert SRC / "_compat.py" not in modules
    problems = []
    for path in modules:
        rel = path.relative_to(SRC).as_posix()
        for line, func, attr in _private_string_touches(path):
            if (rel, attr) not in ALLOWED:
                problems.append(f"{rel}:{line}: {func}(..., {attr!r})")
        for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if _NOQA_SLF.search(text):
                problems.append(f"{rel}:{number}: noqa SLF001")
    assert not problems, "private attributes of other libraries belong in _compat:\n" + "\n".join(
        problems
    )


def test_slf001_stays_selected_and_ignored_only_in_compat() -> None:
    """ruff keeps SLF in its selection; src ignores SLF001 in _compat.py alone."""
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    lint = config["tool"]["ruff"]["lint"]
    assert "SLF" in lint["select"] or "SLF001" in lint["select"]
    ignoring = {k for k, v in lint["per-file-ignores"].items() if "SLF001" in v or "SLF" in v}
    assert ignoring == {"tests/**", "src/zerocopy/_compat.py"}
