"""zerocopy.uvicorn: uvicorn's protocols with pathsend and zerocopysend, by sendfile.

Each test runs a real uvicorn server on 127.0.0.1 in a thread (on asyncio's
loop and on uvloop, on every backend) and talks to it with
:mod:`http.client`, raw sockets or ``curl``.  The reference for every body
is the file's bytes; the evidence that sendfile carried a body is the byte
count of the current backend's ``sendfile``, wrapped for the test (capability
code looks it up at call time).  Stock uvicorn (``http="httptools"``) is the
reference for headers and moves nothing by sendfile.  Each server is stopped
and its threads joined before ``no_fd_leak`` counts descriptors.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import importlib
import logging
import os
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from netkit import empty_pool, no_fd_leak, record_sendfile  # noqa: F401 (fixtures)
from zerocopy import _backend
from zerocopy.uvicorn import H11Protocol, HttpToolsProtocol

pytestmark = pytest.mark.usefixtures("no_fd_leak")

KiB = 1024
MiB = 1024 * KiB
SIZES = {"empty.bin": 0, "one.bin": 1, "odd.bin": 3 * MiB + 17, "big.bin": 6 * MiB}
TIMEOUT = 20.0
ZC = "zerocopy"  # the protocols under test, in the `protocol` parameters
ZC_H11 = "zerocopy-h11"
STOCK = "httptools"  # uvicorn's own
PROTOCOLS = {ZC: HttpToolsProtocol, ZC_H11: H11Protocol}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- files, apps, loops ------------------------------------------------------------


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, bytes]]:
    """A served directory with files of every size, and their bytes."""
    root = tmp_path_factory.mktemp("www")
    data = {name: os.urandom(size) for name, size in SIZES.items()}
    for name, body in data.items():
        (root / name).write_bytes(body)
    return root, data


def starlette_app(root: Path) -> Starlette:
    """Unchanged Starlette code: FileResponse on /file/NAME, StaticFiles under /static."""

    async def file(request: Request) -> FileResponse:
        return FileResponse(root / request.path_params["name"])

    return Starlette(
        routes=[
            Route("/file/{name}", file),
            Mount("/static", app=StaticFiles(directory=root)),
        ]
    )


@pytest.fixture(scope="module", autouse=True)
def _warm_loops(tree: tuple[Path, dict[str, bytes]]) -> None:
    """Serve one request on each kind of loop before any fd census.

    uvloop keeps a pipe open for the rest of the process from its first
    loop in a thread: not a leak of the code under test.
    """
    for kind in ("asyncio", "uvloop"):
        with serving(starlette_app(tree[0]), kind) as (host, port):
            conn = http.client.HTTPConnection(host, port, timeout=TIMEOUT)
            get(conn, "/file/one.bin")
            conn.close()


@pytest.fixture(params=[ZC, ZC_H11])
def zc(request: pytest.FixtureRequest) -> str:
    """Which of zerocopy's protocols serves: the httptools one or the h11 one."""
    return str(request.param)


@pytest.fixture(params=["asyncio", "uvloop"])
def loop(request: pytest.FixtureRequest) -> str:
    """The event loop uvicorn runs on."""
    return str(request.param)


@pytest.fixture
def sent_by_sendfile(backend: ModuleType, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A list that receives the byte count of every sendfile call on the current backend."""
    assert _backend.current() is backend
    return record_sendfile(backend, monkeypatch)


# --- the server ---------------------------------------------------------------------


@contextlib.contextmanager
def serving(
    app: Any, loop: str, protocol: str = ZC, log_level: str = "warning", **config: Any
) -> Iterator[tuple[str, int]]:
    """Run uvicorn with *app* in a thread; yield its (host, port); stop it and join its threads."""
    http = PROTOCOLS.get(protocol, protocol)
    listener = socket.create_server(("127.0.0.1", 0))
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            http=http,
            loop=loop,
            log_config=None,
            log_level=log_level,
            lifespan="off",
            **{"timeout_graceful_shutdown": 5, **config},
        )
    )
    before = set(threading.enumerate())
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]})
    thread.start()
    try:
        deadline = time.monotonic() + TIMEOUT
        while not server.started:
            assert thread.is_alive(), "uvicorn did not start"
            assert time.monotonic() < deadline, "uvicorn did not start in time"
            time.sleep(0.005)
        yield listener.getsockname()
    finally:
        server.should_exit = True
        thread.join(TIMEOUT)
        assert not thread.is_alive(), "uvicorn did not stop"
        # anyio's worker threads (Starlette's os.stat) end when their loop does.
        for other in set(threading.enumerate()) - before:
            other.join(TIMEOUT)
        listener.close()


def get(
    conn: http.client.HTTPConnection, path: str, method: str = "GET", **headers: str
) -> tuple[http.client.HTTPResponse, bytes]:
    conn.request(method, path, headers=headers)
    resp = conn.getresponse()
    return resp, resp.read()


def exchange(host: str, port: int, request: bytes) -> bytes:
    """Send *request* on a new connection; return all the server sends until it closes."""
    with socket.create_connection((host, port), timeout=TIMEOUT) as sock:
        sock.sendall(request)
        raw = b""
        while chunk := sock.recv(MiB):
            raw += chunk
    return raw


def no_warnings(caplog: pytest.LogCaptureFixture) -> None:
    bad = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert not bad, [r.getMessage() for r in bad]


# --- Starlette: FileResponse and StaticFiles ------------------------------------------


class TestStarlette:
    @pytest.mark.parametrize("protocol", [ZC, ZC_H11, STOCK])
    def test_file_response_bodies(
        self,
        tree: tuple[Path, dict[str, bytes]],
        loop: str,
        protocol: str,
        sent_by_sendfile: list[int],
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """FileResponse bodies (0, 1, odd, several MiB) arrive intact; only ours use sendfile."""
        root, data = tree
        with serving(starlette_app(root), loop, protocol) as (host, port):
            conn = http.client.HTTPConnection(host, port, timeout=TIMEOUT)
            for name, body in data.items():
                resp, got = get(conn, f"/file/{name}")
                assert resp.status == 200
                assert resp.getheader("content-length") == str(len(body))
                assert sha(got) == sha(body), name
            conn.close()
        expected = sum(SIZES.values()) if protocol in PROTOCOLS else 0
        assert sum(sent_by_sendfile) == expected
        no_warnings(caplog)

    def test_static_files(
        self,
        tree: tuple[Path, dict[str, bytes]],
        loop: str,
        sent_by_sendfile: list[int],
    ) -> None:
        """StaticFiles bodies go out by sendfile; a missing file is still StaticFiles' 404."""
        root, data = tree
        with serving(starlette_app(root), loop) as (host, port):
            conn = http.client.HTTPConnection(host, port, timeout=TIMEOUT)
            resp, got = get(conn, "/static/big.bin")
            assert resp.status == 200
            assert sha(got) == sha(data["big.bin"])
            resp, got = get(conn, "/static/missing.bin")
            assert (resp.status, got) == (404, b"Not Found")
            conn.close()
        assert sum(sent_by_sendfile) == SIZES["big.bin"]

    def test_head_keeps_length_sends_no_body(
        self, tree: tuple[Path, dict[str, bytes]], loop: str, sent_by_sendfile: list[int]
    ) -> None:
        """HEAD: Content-Length of the file, no body bytes (the next response parses)."""
        root, data = tree
        with serving(starlette_app(root), loop) as (host, port):
            conn = http.client.HTTPConnection(host, port, timeout=TIMEOUT)
            resp, got = get(conn, "/file/odd.bin", method="HEAD")
            assert (resp.status, got) == (200, b"")
            assert resp.getheader("content-length") == str(SIZES["odd.bin"])
            # Any stray body byte would be read as the next status line.
            resp, got = get(conn, "/file/one.bin")
            assert (resp.status, got) == (200, data["one.bin"])
            conn.close()
        assert sum(sent_by_sendfile) == 1

    def test_keep_alive_and_ranges(
        self, tree: tuple[Path, dict[str, bytes]], loop: str, sent_by_sendfile: list[int]
    ) -> None:
        """Several requests, ranges among them, share one connection; every body is exact."""
        root, data = tree
        big = data["big.bin"]
        with serving(starlette_app(root), loop) as (host, port):
            conn = http.client.HTTPConnection(host, port, timeout=TIMEOUT)
            conn.connect()
            first = conn.sock
            for _ in range(2):
                resp, got = get(conn, "/file/big.bin")
                assert sha(got) == sha(big)
                # Starlette sends ranges as body messages, not pathsend.
                resp, got = get(conn, "/file/big.bin", Range="bytes=100-200000")
                assert resp.status == 206
                assert resp.getheader("content-range") == f"bytes 100-200000/{len(big)}"
                assert got == big[100:200001]
                resp, got = get(conn, "/static/empty.bin")
                assert (resp.status, got) == (200, b"")
                assert conn.sock is first, "the connection was not kept alive"
            conn.close()
        assert sum(sent_by_sendfile) == 2 * len(big)

    def test_pipelined_requests(
        self, tree: tuple[Path, dict[str, bytes]], loop: str, zc: str, sent_by_sendfile: list[int]
    ) -> None:
        """Pipelined requests (sent at once) get their responses in order, each body exact."""
        root, data = tree
        names = ["odd.bin", "one.bin", "empty.bin", "big.bin"]
        requests = [f"GET /file/{n} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for n in names]
        requests[-1] = requests[-1].replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")
        with serving(starlette_app(root), loop, zc) as (host, port):
            raw = exchange(host, port, b"".join(requests))
        for name in names:
            head, _, raw = raw.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200"), name
            assert f"content-length: {SIZES[name]}".encode() in head
            body, raw = raw[: SIZES[name]], raw[SIZES[name] :]
            assert sha(body) == sha(data[name]), name
        assert raw == b""
        assert sum(sent_by_sendfile) == sum(SIZES[n] for n in names)

    def test_connection_close(
        self, tree: tuple[Path, dict[str, bytes]], loop: str, sent_by_sendfile: list[int]
    ) -> None:
        """A request with Connection: close gets the whole body, then the server closes."""
        root, data = tree
        request = b"GET /file/odd.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        with serving(starlette_app(root), loop) as (host, port):
            raw = exchange(host, port, request)
        head, _, body = raw.partition(b"\r\n\r\n")
        assert b"connection: close" in head.lower()
        assert sha(body) == sha(data["odd.bin"])
        assert sum(sent_by_sendfile) == SIZES["odd.bin"]

    def test_access_log(
        self,
        tree: tuple[Path, dict[str, bytes]],
        loop: str,
        sent_by_sendfile: list[int],
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """Each pathsend response is in uvicorn's access log, as with stock uvicorn."""
        root, _ = tree
        caplog.set_level(logging.INFO, logger="uvicorn.access")
        with serving(starlette_app(root), loop, log_level="info") as (host, port):
            conn = http.client.HTTPConnection(host, port, timeout=TIMEOUT)
            get(conn, "/file/one.bin")
            get(conn, "/static/odd.bin")
            conn.close()
        lines = [r.getMessage() for r in caplog.records if r.name == "uvicorn.access"]
        assert any('"GET /file/one.bin HTTP/1.1" 200' in line for line in lines), lines
        assert any('"GET /static/odd.bin HTTP/1.1" 200' in line for line in lines), lines
        assert sum(sent_by_sendfile) == 1 + SIZES["odd.bin"]


def test_fastapi_file_response_and_static_files(
    tree: tuple[Path, dict[str, bytes]], loop: str, sent_by_sendfile: list[int]
) -> None:
    """FastAPI's FileResponse and StaticFiles (Starlette's) go out by sendfile, bodies exact."""
    from fastapi import FastAPI
    from fastapi.responses import FileResponse as FastAPIFileResponse
    from fastapi.staticfiles import StaticFiles as FastAPIStaticFiles

    root, data = tree
    app = FastAPI()

    @app.get("/file/{name}")
    async def file(name: str) -> FastAPIFileResponse:
        return FastAPIFileResponse(root / name)

    app.mount("/static", FastAPIStaticFiles(directory=root))
    with serving(app, loop) as (host, port):
        conn = http.client.HTTPConnection(host, port, timeout=TIMEOUT)
        for path in ("/file/odd.bin", "/static/big.bin"):
            resp, got = get(conn, path)
            assert resp.status == 200
            assert sha(got) == sha(data[path.rsplit("/", 1)[1]]), path
        conn.close()
    assert sum(sent_by_sendfile) == SIZES["odd.bin"] + SIZES["big.bin"]


def reset(sock: socket.socket) -> None:
    """Close with SO_LINGER 0: the server gets a RST."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def test_client_goes_away_mid_body(
    tree: tuple[Path, dict[str, bytes]],
    loop: str,
    zc: str,
    sent_by_sendfile: list[int],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A client reset mid-body: no warning or traceback logged, no fd leaked, next client served."""
    root, data = tree
    caplog.set_level(logging.DEBUG, logger="zerocopy.uvicorn")
    with serving(starlette_app(root), loop, zc) as (host, port):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * KiB)
        sock.settimeout(TIMEOUT)
        sock.connect((host, port))
        sock.sendall(b"GET /file/big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(4 * KiB).startswith(b"HTTP/1.1 200")
        # Wait until the server is in the middle of the body, then reset.
        deadline = time.monotonic() + TIMEOUT
        while not sent_by_sendfile and time.monotonic() < deadline:
            time.sleep(0.005)
        reset(sock)
        conn = http.client.HTTPConnection(host, port, timeout=TIMEOUT)
        for _ in range(2):
            _, got = get(conn, "/file/odd.bin")
            assert sha(got) == sha(data["odd.bin"])
        conn.close()
    assert 0 < sum(sent_by_sendfile) < SIZES["big.bin"] + 2 * SIZES["odd.bin"]
    went_away = [r for r in caplog.records if r.name == "zerocopy.uvicorn"]
    assert [r.getMessage().startswith("client went away") for r in went_away] == [True]
    no_warnings(caplog)


def test_shutdown_during_a_stalled_body(
    tree: tuple[Path, dict[str, bytes]],
    loop: str,
    sent_by_sendfile: list[int],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Shutdown while the client reads nothing: the send is cancelled, the connection closed."""
    root, _ = tree
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * KiB)
        sock.settimeout(TIMEOUT)
        started = time.monotonic()
        with serving(starlette_app(root), loop, timeout_graceful_shutdown=0.3) as (host, port):
            sock.connect((host, port))
            sock.sendall(b"GET /file/big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
            deadline = time.monotonic() + TIMEOUT
            while not sent_by_sendfile and time.monotonic() < deadline:
                time.sleep(0.005)
            assert sent_by_sendfile, "the body never started"
        assert time.monotonic() - started < TIMEOUT / 2
        received = 0
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(MiB):
                received += len(chunk)
    assert received < SIZES["big.bin"], "the whole body went out: nothing was cancelled"
    # uvicorn logs the cancelled application as it does for any application.
    assert "CancelledError" in caplog.text


# --- the zerocopysend message, from a raw ASGI application ------------------------------


def zerocopy_app(path: Path, length: bool, positions: list[int]) -> Callable[..., Any]:
    """An ASGI app: bytes, zerocopysend (fd, offset, count), zerocopysend (file, position), bytes.

    The body is ``b"head" + data[10:10+5000] + data[777:] + b"tail"``.  With
    *length*, the response says Content-Length; without, uvicorn chunks it.
    The fd's and the file's positions after their sends go to *positions*.
    """

    size = path.stat().st_size

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert "http.response.zerocopysend" in scope["extensions"]
        headers = [(b"content-length", str(8 + 5000 + size - 777).encode())] if length else []
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"head", "more_body": True})
        fd = os.open(path, os.O_RDONLY)
        try:
            msg = {"type": "http.response.zerocopysend", "file": fd, "offset": 10, "count": 5000}
            await send({**msg, "more_body": True})
            positions.append(os.lseek(fd, 0, os.SEEK_CUR))
        finally:
            os.close(fd)
        with os.fdopen(os.open(path, os.O_RDONLY), "rb") as f:
            f.seek(777)
            await send({"type": "http.response.zerocopysend", "file": f, "more_body": True})
            positions.append(f.tell())
        await send({"type": "http.response.body", "body": b"tail", "more_body": False})

    return app


@pytest.mark.parametrize("length", [True, False], ids=["content-length", "chunked"])
def test_zerocopysend_offsets_counts_more_body(
    tree: tuple[Path, dict[str, bytes]],
    loop: str,
    zc: str,
    length: bool,
    sent_by_sendfile: list[int],
) -> None:
    """zerocopysend with offset/count or at the file position is exact; positions end past it."""
    root, data = tree
    odd = data["odd.bin"]
    positions: list[int] = []
    with serving(zerocopy_app(root / "odd.bin", length, positions), loop, zc) as (host, port):
        conn = http.client.HTTPConnection(host, port, timeout=TIMEOUT)
        for _ in range(2):  # and the connection is usable again after it
            resp, got = get(conn, "/")
            assert resp.getheader("transfer-encoding") == (None if length else "chunked")
            assert sha(got) == sha(b"head" + odd[10:5010] + odd[777:] + b"tail")
        conn.close()
    assert sum(sent_by_sendfile) == 2 * (5000 + len(odd) - 777)
    assert positions == [5010, len(odd)] * 2


def scenario_app(path: Path) -> Callable[..., Any]:
    """An ASGI app whose response for ``/NAME`` is the scenario NAME (see ``SCENARIOS``)."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        name = scope["path"].strip("/")
        if name == "extensions":
            body = ",".join(sorted(scope.get("extensions", {}))).encode()
            headers = [(b"content-length", str(len(body)).encode())]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        length, message = SCENARIOS[name]
        start = {"type": "http.response.start", "status": 200}
        if name != "before-start":
            headers = [(b"content-length", str(length).encode())]
            await send({**start, "headers": headers})
        if name.startswith("path-"):
            await send({"type": "http.response.pathsend", **message})
            return
        if name == "pipe":
            r, w = os.pipe()
            try:
                await send({"type": "http.response.zerocopysend", "file": r, **message})
            finally:
                os.close(r)
                os.close(w)
            return
        with os.fdopen(os.open(path, os.O_RDONLY), "rb") as f:
            await send({"type": "http.response.zerocopysend", "file": f, **message})

    return app


# name -> (Content-Length, the zerocopysend message's other keys), for odd.bin.
SCENARIOS: dict[str, tuple[int, dict[str, Any]]] = {
    "exact": (1000, {"offset": 5, "count": 1000}),
    "longer": (999, {"offset": 5, "count": 1000}),
    "shorter": (1001, {"offset": 5, "count": 1000}),
    "past-end": (1000, {"offset": SIZES["odd.bin"] - 300, "count": 1000}),
    "bad-offset": (1000, {"offset": "5", "count": 1000}),
    "negative-count": (1000, {"offset": 0, "count": -1}),
    "before-start": (0, {"count": 10}),
    "pipe": (10, {"count": 10}),
    "path-missing": (10, {"path": "/nonexistent/zerocopy-test.bin"}),
    "path-relative": (10, {"path": "odd.bin"}),
}


#: Scenarios that must fail before any byte of a file moves -> what uvicorn logs.
BAD = {
    "longer": "RuntimeError: Response content longer than Content-Length",
    "bad-offset": "TypeError: http.response.zerocopysend 'offset' must be an int",
    "negative-count": "ValueError: http.response.zerocopysend 'count' must be >= 0",
    "before-start": "RuntimeError: Expected ASGI message 'http.response.start'",
    "pipe": "ValueError: http.response.zerocopysend 'file' is not a regular file",
    "path-missing": "FileNotFoundError: [Errno 2] No such file or directory",
    "path-relative": "ValueError: http.response.pathsend 'path' must be absolute",
}


class TestZeroCopySendErrors:
    def test_head_sends_no_body(
        self, tree: tuple[Path, dict[str, bytes]], loop: str, zc: str, sent_by_sendfile: list[int]
    ) -> None:
        """HEAD with zerocopysend: Content-Length kept, no body; the next GET on it is exact."""
        root, data = tree
        with serving(scenario_app(root / "odd.bin"), loop, zc) as (host, port):
            conn = http.client.HTTPConnection(host, port, timeout=TIMEOUT)
            resp, got = get(conn, "/exact", method="HEAD")
            assert (resp.status, resp.getheader("content-length"), got) == (200, "1000", b"")
            resp, got = get(conn, "/exact")
            assert got == data["odd.bin"][5:1005]
            conn.close()
        assert sum(sent_by_sendfile) == 1000

    def test_bad_message_moves_nothing(
        self,
        tree: tuple[Path, dict[str, bytes]],
        loop: str,
        zc: str,
        sent_by_sendfile: list[int],
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """Each bad or misplaced file-body message raises its error before a file byte moves."""
        root, _ = tree
        with serving(scenario_app(root / "odd.bin"), loop, zc) as (host, port):
            for name in BAD:
                raw = exchange(host, port, f"GET /{name} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                head, _, body = raw.partition(b"\r\n\r\n")
                if name == "before-start":  # uvicorn's own 500, as for any such error
                    assert head[:12] == b"HTTP/1.1 500"
                    assert b"Internal Server Error" in body  # h11 frames it in a chunk
                else:  # the headers went out, then the connection was closed
                    assert (head[:12], body) == (b"HTTP/1.1 200", b""), name
        assert sent_by_sendfile == []
        logged = [r for r in caplog.records if r.getMessage() == "Exception in ASGI application\n"]
        assert len(logged) == len(BAD)
        for error in BAD.values():
            assert caplog.text.count(error) == 1, error

    def test_file_shorter_than_count_closes(
        self,
        tree: tuple[Path, dict[str, bytes]],
        loop: str,
        zc: str,
        sent_by_sendfile: list[int],
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """A count past the end of the file: the bytes it has go out, then the connection closes."""
        root, data = tree
        with serving(scenario_app(root / "odd.bin"), loop, zc) as (host, port):
            conn = http.client.HTTPConnection(host, port, timeout=TIMEOUT)
            conn.request("GET", "/past-end")
            resp = conn.getresponse()
            with pytest.raises(http.client.IncompleteRead) as info:
                resp.read()
            assert info.value.partial == data["odd.bin"][-300:]
            conn.close()
        assert sum(sent_by_sendfile) == 300
        assert "Response content shorter than promised: the file gave 300 of 1000" in caplog.text


def wire_app(path: Path, length: bool) -> Callable[..., Any]:
    """An ASGI app: ``/NAME`` is file NAME under *path*, by pathsend where offered, else as bytes.

    With *length* it says Content-Length, without it uvicorn chunks the body.
    The same response with stock uvicorn (bytes) and with zerocopy's protocols
    (pathsend) must be the same bytes on the wire.
    """

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        file = path / scope["path"].strip("/")
        size = file.stat().st_size
        headers = [(b"content-length", str(size).encode())] if length else []
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        if "http.response.pathsend" in scope.get("extensions", {}):
            await send({"type": "http.response.pathsend", "path": str(file)})
        else:
            await send({"type": "http.response.body", "body": file.read_bytes()})

    return app


def without_date(raw: bytes) -> bytes:
    """*raw* responses with their Date headers (which change by the second) cut out."""
    return b"".join(
        line for line in raw.splitlines(keepends=True) if not line.lower().startswith(b"date: ")
    )


@pytest.mark.parametrize("length", [True, False], ids=["content-length", "chunked"])
@pytest.mark.parametrize(("protocol", "stock"), [(ZC, "httptools"), (ZC_H11, "h11")])
def test_wire_bytes_are_stock_uvicorns(
    tree: tuple[Path, dict[str, bytes]],
    loop: str,
    protocol: str,
    stock: str,
    length: bool,
    sent_by_sendfile: list[int],
) -> None:
    """Pipelined GET, HEAD, empty and Connection: close: byte for byte what stock uvicorn sends."""
    root, _ = tree
    request = (
        b"GET /odd.bin HTTP/1.1\r\nHost: x\r\n\r\n"
        b"HEAD /odd.bin HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /empty.bin HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /one.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    raw = {}
    for served_by in (protocol, stock):
        with serving(wire_app(root, length), loop, served_by) as (host, port):
            raw[served_by] = without_date(exchange(host, port, request))
    assert raw[protocol].count(b"HTTP/1.1 200 OK") == 4
    assert raw[protocol] == raw[stock]
    assert sum(sent_by_sendfile) == SIZES["odd.bin"] + SIZES["one.bin"]


def test_file_body_shorter_than_content_length(
    tree: tuple[Path, dict[str, bytes]],
    loop: str,
    zc: str,
    sent_by_sendfile: list[int],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A file body short of Content-Length: it goes out, then uvicorn's error and a close."""
    root, data = tree
    with serving(scenario_app(root / "odd.bin"), loop, zc) as (host, port):
        conn = http.client.HTTPConnection(host, port, timeout=TIMEOUT)
        conn.request("GET", "/shorter")
        resp = conn.getresponse()
        with pytest.raises(http.client.IncompleteRead) as info:
            resp.read()
        assert info.value.partial == data["odd.bin"][5:1005]
        conn.close()
    assert sum(sent_by_sendfile) == 1000
    error = {
        ZC: "RuntimeError: Response content shorter than Content-Length",
        ZC_H11: "h11._util.LocalProtocolError: Too little data for declared Content-Length",
    }[zc]
    assert caplog.text.count(error) == 1


def fifo_app(fifo: Path, data: bytes) -> Callable[..., Any]:
    """An ASGI app: ``/fifo`` is a pathsend of FIFO *fifo*; anything else is *data*, as bytes."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        length = 10 if scope["path"] == "/fifo" else len(data)
        headers = [(b"content-length", str(length).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        if scope["path"] == "/fifo":
            await send({"type": "http.response.pathsend", "path": str(fifo)})
        else:
            await send({"type": "http.response.body", "body": data})

    return app


def release_fifo(path: Path) -> None:
    """Let an open() waiting on FIFO *path* return: open it for writing, then close it."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:  # ENXIO: no reader is waiting, nothing to release
        return
    os.close(fd)


#: How many plain requests' time an answer may take: generous, for a shared machine.
K = 50


def test_pathsend_of_a_fifo_does_not_block_the_loop(
    tree: tuple[Path, dict[str, bytes]],
    tmp_path: Path,
    loop: str,
    zc: str,
    sent_by_sendfile: list[int],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A pathsend of a FIFO fails at once with its ValueError; a concurrent request is served."""
    data = tree[1]["odd.bin"][:5000]
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with serving(fifo_app(fifo, data), loop, zc) as (host, port):
        try:
            conn = http.client.HTTPConnection(host, port, timeout=TIMEOUT)
            get(conn, "/plain")  # warm
            took = []
            for _ in range(9):
                start = time.perf_counter()
                assert get(conn, "/plain")[1] == data
                took.append(time.perf_counter() - start)
            conn.close()
            baseline = sorted(took)[len(took) // 2]
            guard = 10 * K * baseline  # turns a blocked loop into a failure, not a hang
            with socket.create_connection((host, port), timeout=guard) as fifo_client:
                fifo_client.sendall(b"GET /fifo HTTP/1.1\r\nHost: x\r\n\r\n")
                # Meanwhile, another client: the loop must not be waiting on the FIFO.
                other = http.client.HTTPConnection(host, port, timeout=guard)
                start = time.perf_counter()
                try:
                    assert get(other, "/plain")[1] == data
                except TimeoutError:
                    pytest.fail(f"a plain request got no answer in {10 * K} plain requests' time")
                finally:
                    other.close()
                assert time.perf_counter() - start <= K * baseline, (took, baseline)
                # The FIFO's response ends as any non-regular file's: headers, then the close.
                raw = b""
                try:
                    while chunk := fifo_client.recv(MiB):
                        raw += chunk
                except TimeoutError:
                    pytest.fail(f"the FIFO's request got no end in {10 * K} plain requests' time")
            head, _, body = raw.partition(b"\r\n\r\n")
            assert (head[:12], body) == (b"HTTP/1.1 200", b"")
        finally:
            release_fifo(fifo)  # a loop blocked in open() (the bug) returns, and stops
    assert f"ValueError: {fifo} is not a regular file" in caplog.text
    assert sent_by_sendfile == []


@pytest.mark.parametrize("protocol", [ZC, ZC_H11, STOCK])
def test_extensions_offered(tree: tuple[Path, dict[str, bytes]], loop: str, protocol: str) -> None:
    """Our protocol's HTTP scopes offer pathsend and zerocopysend; stock uvicorn's offer neither."""
    root, _ = tree
    with serving(scenario_app(root / "odd.bin"), loop, protocol) as (host, port):
        conn = http.client.HTTPConnection(host, port, timeout=TIMEOUT)
        _, got = get(conn, "/extensions")
        conn.close()
    offered = b"http.response.pathsend,http.response.zerocopysend"
    expected = offered if protocol in PROTOCOLS else b""
    assert got == expected


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key, made with openssl."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed: the TLS test needs it to make a certificate")
    where = tmp_path_factory.mktemp("tls")
    cert, key = where / "cert.pem", where / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=TIMEOUT,
    )  # fmt: skip
    return cert, key


def test_tls_offers_nothing_and_serves_by_copy(
    tree: tuple[Path, dict[str, bytes]],
    loop: str,
    zc: str,
    certificate: tuple[Path, Path],
    sent_by_sendfile: list[int],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Over TLS no extension is offered: Starlette streams exact bodies; a zerocopysend fails."""
    root, data = tree
    files, scenarios = starlette_app(root), scenario_app(root / "odd.bin")

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        inner = scenarios if scope.get("path") in ("/extensions", "/exact") else files
        await inner(scope, receive, send)

    cert, key = certificate
    context = ssl.create_default_context(cafile=str(cert))
    with serving(app, loop, zc, ssl_certfile=str(cert), ssl_keyfile=str(key)) as (host, port):
        conn = http.client.HTTPSConnection(host, port, timeout=TIMEOUT, context=context)
        assert get(conn, "/extensions")[1] == b""
        _, got = get(conn, "/file/odd.bin")
        assert sha(got) == sha(data["odd.bin"])
        conn.request("GET", "/exact")
        with pytest.raises(http.client.IncompleteRead) as info:
            conn.getresponse().read()
        assert info.value.partial == b""
        conn.close()
    assert sent_by_sendfile == []
    expected = "Expected ASGI message 'http.response.body', but got 'http.response.zerocopysend'"
    assert caplog.text.count(expected) == 1


# --- the command line, curl, imports, versions -------------------------------------------

APP_MODULE = """
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

app = Starlette(routes=[Mount("/", StaticFiles(directory={root!r}))])
"""


def test_command_line_with_curl(
    tree: tuple[Path, dict[str, bytes]], loop: str, backend: ModuleType, tmp_path: Path
) -> None:
    """``uvicorn --http zerocopy.uvicorn:HttpToolsProtocol app:app`` serves curl exact bodies."""
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed: this test needs it as the client")
    root, data = tree
    (tmp_path / "app.py").write_text(APP_MODULE.format(root=str(root)))
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    env = {**os.environ, _backend.ENV_VAR: backend.NAME}
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--http", "zerocopy.uvicorn:HttpToolsProtocol",
         "--loop", loop, "--fd", str(listener.fileno()), "--app-dir", str(tmp_path),
         "--log-level", "warning", "app:app"],
        pass_fds=[listener.fileno()], env=env, stderr=subprocess.PIPE,
    )  # fmt: skip
    listener.close()
    try:
        names = ["big.bin", "odd.bin", "empty.bin"]
        args = [a for n in names for a in (f"http://127.0.0.1:{port}/{n}", "-o", str(tmp_path / n))]
        # curl retries while the server starts; one invocation reuses one connection.
        done = subprocess.run(
            [curl, "-sS", "--fail", "--fail-early", "--retry", "20", "--retry-connrefused",
             "--retry-delay", "0", "--max-time", str(TIMEOUT), *args],
            capture_output=True, timeout=TIMEOUT * 2,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        for name in names:
            assert sha((tmp_path / name).read_bytes()) == sha(data[name]), name
    finally:
        server.terminate()
        _, stderr = server.communicate(timeout=TIMEOUT)
    assert b"Traceback" not in stderr, stderr.decode()


def test_config_resolves_the_import_string() -> None:
    """uvicorn's Config turns ``--http zerocopy.uvicorn:NAME`` into our classes."""
    for name, cls in [("HttpToolsProtocol", HttpToolsProtocol), ("H11Protocol", H11Protocol)]:
        config = uvicorn.Config(scenario_app(Path("/")), http=f"zerocopy.uvicorn:{name}")
        config.load()
        assert config.http_protocol_class is cls


def test_import_zerocopy_imports_no_framework() -> None:
    """``import zerocopy`` (and zerocopy.aio) loads neither uvicorn, httptools nor starlette."""
    code = (
        "import sys, zerocopy, zerocopy.aio\n"
        "print(sorted(m for m in sys.modules\n"
        "             if m.split('.')[0] in {'uvicorn', 'httptools', 'starlette'}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=TIMEOUT)
    assert (done.returncode, done.stdout, done.stderr) == (0, b"[]\n", b"")


@pytest.mark.parametrize("version", ["0.44.9", "0.56.0", "1.0.0", "dev"])
def test_untested_uvicorn_version_runs_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, version: str
) -> None:
    """On an untested uvicorn whose hooks are there, the import warns once and keeps our classes."""
    import zerocopy

    monkeypatch.setattr(uvicorn, "__version__", version)
    for name in ("zerocopy.uvicorn", "zerocopy._asgi.uvicorn_select"):
        monkeypatch.delitem(sys.modules, name)
    with pytest.warns(zerocopy.UntestedVersionWarning) as caught:
        module = importlib.import_module("zerocopy.uvicorn")
    [warning] = caught
    assert str(warning.message) == (
        f"zerocopy.uvicorn is untested with uvicorn {version} (tested: uvicorn 0.45 to 0.55);"
        " the hooks it needs are all there, so HttpToolsProtocol and H11Protocol run with zero-copy"
    )
    assert (module.HttpToolsProtocol, module.H11Protocol) == (HttpToolsProtocol, H11Protocol)


@pytest.mark.parametrize("version", ["0.45.0", "0.50.2", "0.55.0", "0.55.12", "0.55.1rc1"])
def test_tested_uvicorn_versions(version: str) -> None:
    """Releases of the tested series count as tested; their neighbours do not."""
    from zerocopy._asgi.uvicorn_select import tested

    assert tested(version)
    assert not tested("0.44." + version.split(".", 2)[2])
    assert not tested("0.56.0")


# --- zerocopy.starlette.FileResponse: Starlette's, with the stat on the loop ------------


def both_responses_app(root: Path, **attrs: Any) -> Starlette:
    """Starlette's FileResponse on /stock/NAME and zerocopy.starlette's on /zc/NAME."""
    from zerocopy.starlette import FileResponse as ZCFileResponse

    async def stock(request: Request) -> FileResponse:
        return FileResponse(root / request.path_params["name"])

    async def zc(request: Request) -> ZCFileResponse:
        response = ZCFileResponse(root / request.path_params["name"])
        for name, value in attrs.items():
            setattr(response, name, value)
        return response

    return Starlette(routes=[Route("/stock/{name}", stock), Route("/zc/{name}", zc)])


@pytest.fixture
def thread_stats(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A list that receives the path of every os.stat run through anyio.to_thread (any caller)."""
    import anyio.to_thread

    calls: list[str] = []
    real = anyio.to_thread.run_sync

    async def counting(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if func is os.stat:
            calls.append(os.fspath(args[0]))
        return await real(func, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counting)
    return calls


def asgi_call(response: Any, method: str = "GET", **headers: str) -> list[dict[str, Any]]:
    """Run *response* as an ASGI app (pathsend offered) on anyio; return the messages it sent."""
    import anyio

    scope = {
        "type": "http",
        "method": method,
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "extensions": {"http.response.pathsend": {}},
        "asgi": {"spec_version": "2.4"},
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    before = set(threading.enumerate())
    try:
        anyio.run(response, scope, receive, send)
    finally:
        # anyio's worker threads (os.stat in a thread) end with their loop,
        # a moment after it: joined here, before no_fd_leak counts threads.
        for worker in set(threading.enumerate()) - before:
            worker.join(TIMEOUT)
    return sent


class TestZerocopyStarletteFileResponse:
    def test_same_responses_as_starlettes(
        self, tree: tuple[Path, dict[str, bytes]], loop: str, sent_by_sendfile: list[int]
    ) -> None:
        """Status, headers and bodies equal Starlette's: GET, HEAD, ranges, If-Range."""
        root, data = tree
        names = ["odd.bin", "empty.bin", "odd.bin", "big.bin", "big.bin"]
        with serving(both_responses_app(root), loop) as (host, port):
            conn = http.client.HTTPConnection(host, port, timeout=TIMEOUT)
            for name in names:
                etag = str(get(conn, f"/stock/{name}", "HEAD")[0].getheader("etag"))
                for method, extra in [
                    ("GET", {}),
                    ("HEAD", {}),
                    ("GET", {"Range": "bytes=5-70000"}),
                    ("GET", {"Range": "bytes=0-1,9-12"}),
                    ("GET", {"Range": "bytes=1-2", "If-Range": etag}),
                    ("GET", {"Range": "bytes=1-2", "If-Range": '"other"'}),
                ]:
                    seen = []
                    for route in ("stock", "zc"):
                        resp, body = get(conn, f"/{route}/{name}", method, **extra)
                        headers = dict((k.lower(), v) for k, v in resp.getheaders())
                        del headers["date"]
                        kind = headers["content-type"]
                        if kind.startswith("multipart/byteranges"):
                            # A random boundary per response: compare with it replaced.
                            boundary = kind.split("boundary=")[1]
                            body = body.replace(boundary.encode(), b"B")
                            headers["content-type"] = kind.replace(boundary, "B")
                        seen.append((resp.status, headers, sha(body)))
                    assert seen[0] == seen[1], (name, method, extra)
            conn.close()
        # Whole-file GETs go by sendfile (If-Range with another tag is one), on both routes alike.
        assert sum(sent_by_sendfile) == 2 * sum(2 * len(data[n]) for n in names)

    def test_stat_in_a_thread_first_then_on_the_loop(
        self,
        tree: tuple[Path, dict[str, bytes]],
        loop: str,
        thread_stats: list[str],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """The first request of a local path stats in a thread; the next ones on the loop."""
        import zerocopy.starlette as zs
        from zerocopy import _localfs

        monkeypatch.setattr(zs, "_LOCAL", _localfs.LocalFiles())
        root, data = tree
        path = str(root / "odd.bin")
        with serving(both_responses_app(root), loop) as (host, port):
            conn = http.client.HTTPConnection(host, port, timeout=TIMEOUT)
            for _ in range(3):
                _, got = get(conn, "/zc/odd.bin")
                assert sha(got) == sha(data["odd.bin"])
            assert thread_stats == [path]
            for _ in range(2):
                _, got = get(conn, "/stock/odd.bin")
                assert sha(got) == sha(data["odd.bin"])
            conn.close()
        # Starlette's own class stats in the thread every time.
        assert thread_stats == [path] * 3

    @pytest.mark.parametrize(
        ("attrs", "fs", "threads"),
        [
            ({}, "nfs", 3),  # never known local: every stat in the thread
            ({}, None, 3),  # a device in no mount: likewise
            ({"open_on_loop": True}, "nfs", 0),
            ({"open_on_loop": False}, "ext4", 3),  # Starlette's way
        ],
    )
    def test_where_it_stats(
        self,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        thread_stats: list[str],
        attrs: dict[str, Any],
        fs: str | None,
        threads: int,
    ) -> None:
        """Non-local filesystems keep the thread; open_on_loop overrides both ways."""
        import zerocopy.starlette as zs
        from zerocopy import _localfs

        monkeypatch.setattr(zs, "_LOCAL", _localfs.LocalFiles())
        monkeypatch.setattr(_localfs, "fs_type", lambda dev: fs)
        body = os.urandom(1000)
        (tmp_path / "f").write_bytes(body)
        reference = asgi_call(FileResponse(tmp_path / "f"))
        del thread_stats[:]
        for _ in range(3):
            response = zs.FileResponse(tmp_path / "f")
            for name, value in attrs.items():
                setattr(response, name, value)
            sent = asgi_call(response)
            assert sent == reference
        assert thread_stats == [str(tmp_path / "f")] * threads

    @pytest.mark.parametrize("known_local", [False, True])
    def test_errors_are_starlettes(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, known_local: bool
    ) -> None:
        """A missing path and a directory raise Starlette's RuntimeError, in a thread or not."""
        import zerocopy.starlette as zs

        monkeypatch.setattr(zs.FileResponse, "open_on_loop", True if known_local else None)
        for path in (tmp_path / "missing", tmp_path):
            with pytest.raises(RuntimeError) as stock:
                asgi_call(FileResponse(path))
            with pytest.raises(RuntimeError) as ours:
                asgi_call(zs.FileResponse(path))
            assert str(ours.value) == str(stock.value)
            assert ours.value.__cause__ is None
        # Other errors of stat propagate as they are, as from Starlette's thread.
        for path, error in [(tmp_path / ("x" * 5000), OSError), (tmp_path / "a\0b", ValueError)]:
            with pytest.raises(error) as stock_error:
                asgi_call(FileResponse(path))
            with pytest.raises(error) as our_error:
                asgi_call(zs.FileResponse(path))
            assert type(our_error.value) is type(stock_error.value)
            assert str(our_error.value) == str(stock_error.value)

    def test_given_stat_result_is_kept(self, tmp_path: Path, thread_stats: list[str]) -> None:
        """With stat_result given, no stat at all (Starlette's rule), and the same messages."""
        import zerocopy.starlette as zs

        (tmp_path / "f").write_bytes(b"abc")
        st = os.stat(tmp_path / "f")
        reference = asgi_call(FileResponse(tmp_path / "f", stat_result=st))
        assert asgi_call(zs.FileResponse(tmp_path / "f", stat_result=st)) == reference
        assert thread_stats == []

    def test_missing_api_falls_back_with_a_warning(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A Starlette without the public API used warns at import and stats as Starlette's own."""
        import starlette.responses

        import zerocopy

        class Old:
            def __init__(self, path: str) -> None:
                pass

        monkeypatch.setattr(starlette.responses, "FileResponse", Old)
        monkeypatch.delitem(sys.modules, "zerocopy.starlette")
        with pytest.warns(zerocopy.IntegrationFallbackWarning) as caught:
            module = importlib.import_module("zerocopy.starlette")
        [warning] = caught
        assert "FileResponse.set_stat_headers, FileResponse(stat_result=)" in str(warning.message)
        assert module._ON == {"FileResponse": False}

    @pytest.mark.parametrize("version", ["1.9.0", "1.11.0", "2.0.0"])
    def test_untested_starlette_runs_with_a_warning(
        self, monkeypatch: pytest.MonkeyPatch, version: str
    ) -> None:
        """On an untested Starlette with the API there: one warning, and the class is on."""
        import starlette

        import zerocopy

        monkeypatch.setattr(starlette, "__version__", version)
        monkeypatch.delitem(sys.modules, "zerocopy.starlette")
        with pytest.warns(zerocopy.UntestedVersionWarning) as caught:
            module = importlib.import_module("zerocopy.starlette")
        [warning] = caught
        assert str(warning.message) == (
            f"zerocopy.starlette is untested with starlette {version} (tested: Starlette 1.10);"
            " the hooks it needs are all there, so FileResponse runs with zero-copy"
        )
        assert module._ON == {"FileResponse": True}


# --- where a pathsend file is opened ---------------------------------------------------


def record_where_opened(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A list that gets "loop" or "thread" for each pathsend open and close, in order."""
    import asyncio

    from zerocopy._asgi import body as asgi_body

    seen: list[str] = []

    def where(what: str) -> None:
        try:
            asyncio.get_running_loop()
            seen.append(f"{what} on the loop")
        except RuntimeError:
            seen.append(f"{what} in a thread")

    real_open, real_close = asgi_body.open_regular, asgi_body.FileBody.close

    def opening(path: str) -> Any:
        where("open")
        return real_open(path)

    def closing(self: Any) -> None:
        where("close")
        real_close(self)

    monkeypatch.setattr(asgi_body, "open_regular", opening)
    monkeypatch.setattr(asgi_body.FileBody, "close", closing)
    return seen


@pytest.mark.parametrize(
    ("fs", "after_first"),
    [
        ("ext4", "on the loop"),
        ("tmpfs", "on the loop"),
        ("nfs", "in a thread"),
        (None, "in a thread"),
    ],
)
def test_pathsend_opens_on_the_loop_only_when_known_local(
    tree: tuple[Path, dict[str, bytes]],
    loop: str,
    monkeypatch: pytest.MonkeyPatch,
    sent_by_sendfile: list[int],
    fs: str | None,
    after_first: str,
) -> None:
    """A path's first open (and close) runs in a thread; later ones on the loop if it is local."""
    from zerocopy import _localfs
    from zerocopy._asgi import body as asgi_body

    monkeypatch.setattr(asgi_body, "LOCAL", _localfs.LocalFiles())
    monkeypatch.setattr(_localfs, "fs_type", lambda dev: fs)
    seen = record_where_opened(monkeypatch)
    root, data = tree
    with serving(starlette_app(root), loop) as (host, port):
        conn = http.client.HTTPConnection(host, port, timeout=TIMEOUT)
        for _ in range(3):
            resp, got = get(conn, "/file/odd.bin")
            assert resp.status == 200
            assert sha(got) == sha(data["odd.bin"])
        conn.close()
    first_close = "on the loop" if fs in _localfs.LOCAL_TYPES else "in a thread"
    assert seen == [
        "open in a thread",
        f"close {first_close}",
        *[f"{what} {after_first}" for what in ("open", "close")] * 2,
    ]
    assert sum(sent_by_sendfile) == 3 * SIZES["odd.bin"]


def test_cancelled_while_the_thread_opens_closes_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A task cancelled during the executor's open leaves no descriptor behind."""
    import asyncio

    from zerocopy import _localfs
    from zerocopy._asgi import body as asgi_body

    monkeypatch.setattr(asgi_body, "LOCAL", _localfs.LocalFiles())
    (tmp_path / "f").write_bytes(b"abc")
    entered, release = threading.Event(), threading.Event()
    files: list[Any] = []
    real_open = asgi_body.open_regular

    def slow_open(path: str) -> Any:
        entered.set()
        release.wait(TIMEOUT)
        opened = real_open(path)
        files.append(opened[0])
        return opened

    monkeypatch.setattr(asgi_body, "open_regular", slow_open)
    message = {"type": "http.response.pathsend", "path": str(tmp_path / "f")}

    async def main() -> None:
        async def body_user() -> None:
            async with asgi_body.opened(message):
                raise AssertionError("the body was handed out")

        task = asyncio.create_task(body_user())
        await asyncio.get_running_loop().run_in_executor(None, entered.wait, TIMEOUT)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        release.set()
        deadline = time.monotonic() + TIMEOUT
        while not (files and files[0].closed):
            assert time.monotonic() < deadline, "the file opened for a cancelled task stayed open"
            await asyncio.sleep(0.005)

    asyncio.run(main())
    assert files[0].closed
