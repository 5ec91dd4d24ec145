"""zerocopy.aiohttp.FileResponse: aiohttp's FileResponse with the body sent by sendfile.

Each test runs a real :mod:`aiohttp.web` server (AppRunner and TCPSite on
127.0.0.1, port 0) in the test's own event loop, asyncio's and uvloop's (the
``run`` fixture), on every backend, and talks to it with aiohttp's client,
raw sockets or ``curl``.  The reference for every answer is the file's bytes
and stock :class:`aiohttp.web.FileResponse` serving the same tree on the same
loop.  Evidence that the kernel carried the body: the current backend's
``sendfile`` is wrapped to count the bytes it moved.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import importlib
import logging
import os
import random
import shutil
import socket
import ssl
import struct
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

import zerocopy._compat
import zerocopy._localfs
import zerocopy.aiohttp
from netkit import Runner, record_sendfile

# `name as name`: fixtures, re-exported so that linters count them as used (the
# autouse empty_pool applies to the modules that import it).
from netkit import empty_pool as empty_pool
from netkit import no_fd_leak as no_fd_leak
from netkit import run as run
from zerocopy.aiohttp import FileResponse

if TYPE_CHECKING:
    from multidict import CIMultiDict  # aiohttp's, for the type of headers only

MiB = 1 << 20
SIZES = {"empty.bin": 0, "one.bin": 1, "odd.bin": 100_003, "big.bin": 5 * MiB + 7}
TIMEOUT = aiohttp.ClientTimeout(total=30)

Tree = tuple[Path, dict[str, bytes]]


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Tree:
    """A served directory: files of every size and a text file with a .gz sibling."""
    root = tmp_path_factory.mktemp("www")
    data: dict[str, bytes] = {}
    for i, (name, size) in enumerate(SIZES.items()):
        data[name] = random.Random(i).randbytes(size)
    data["page.txt"] = b"plain text, compressible\n" * 4000
    data["page.txt.gz"] = random.Random(9).randbytes(3001)  # aiohttp does not look inside
    for name, body in data.items():
        (root / name).write_bytes(body)
    return root, data


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(autouse=True, params=[False, True], ids=["open-in-thread", "open-on-loop"])
def where_opened(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Every test twice: files opened in a worker thread (aiohttp's way), and on the loop."""
    monkeypatch.setattr(FileResponse, "open_on_loop", request.param)
    return bool(request.param)


# --- counting what the kernel moved -------------------------------------------------


@pytest.fixture
def moved(backend: ModuleType, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The byte counts of every sendfile call the current backend made during the test."""
    return record_sendfile(backend, monkeypatch)


# --- the server ---------------------------------------------------------------------


class Seen:
    """What the server saw: peer ports of the requests, body_length of each response."""

    def __init__(self) -> None:
        self.ports: list[int] = []
        self.body_lengths: list[int] = []


def _access_logger(seen: Seen) -> type[AbstractAccessLogger]:
    class Log(AbstractAccessLogger):
        def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
            seen.body_lengths.append(response.body_length)

    return Log


@contextlib.asynccontextmanager
async def serving(
    root: Path,
    response: Callable[[Path], web.StreamResponse] = FileResponse,
    seen: Seen | None = None,
    tls: ssl.SSLContext | None = None,
    shutdown_timeout: float = 5.0,
) -> AsyncIterator[str]:
    """Serve *root* on 127.0.0.1 (GET and HEAD of /NAME); yield the base URL."""
    seen = seen if seen is not None else Seen()

    async def handle(request: web.Request) -> web.StreamResponse:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        seen.ports.append(peer[1] if peer else -1)
        return response(root / request.match_info["name"])

    app = web.Application()
    app.router.add_get("/{name:.+}", handle)  # and HEAD
    runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log_class=_access_logger(seen),
        shutdown_timeout=shutdown_timeout,  # bounds teardown when a handler is stuck
    )
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls)
    await site.start()
    try:
        host, port = runner.addresses[0][:2]
        yield f"{'https' if tls else 'http'}://{host}:{port}"
    finally:
        await runner.cleanup()


Answer = tuple[int, "CIMultiDict[str]", bytes]


async def fetch(
    session: aiohttp.ClientSession, url: str, method: str = "GET", **headers: str
) -> Answer:
    """Status, headers and body of one request (no decompression)."""
    async with session.request(method, url, headers=headers) as resp:
        body = await resp.read()
        return resp.status, resp.headers.copy(), body


def _session(**kwargs: Any) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(auto_decompress=False, timeout=TIMEOUT, **kwargs)


# Headers that must be equal between stock aiohttp and zerocopy's answers.
COMPARED = ("Content-Length", "Content-Range", "Content-Type", "ETag", "Last-Modified",
            "Accept-Ranges", "Content-Encoding", "Transfer-Encoding")  # fmt: skip


async def both(root: Path, path: str, method: str = "GET", **headers: str) -> tuple[Answer, Answer]:
    """The same request to zerocopy's FileResponse and to aiohttp's: (ours, stock)."""
    answers = []
    for response in (FileResponse, web.FileResponse):
        async with serving(root, response) as base, _session() as session:
            answers.append(await fetch(session, base + path, method, **headers))
    return answers[0], answers[1]


def same(ours: Answer, stock: Answer) -> None:
    assert ours[0] == stock[0]
    assert {h: ours[1].get(h) for h in COMPARED} == {h: stock[1].get(h) for h in COMPARED}
    assert sha(ours[2]) == sha(stock[2])


# --- bodies, and the evidence that sendfile carried them ---------------------------


class TestBodies:
    @pytest.mark.parametrize("name", list(SIZES))
    def test_body_by_sendfile(
        self, tree: Tree, run: Runner, moved: list[int], name: str, no_fd_leak: None
    ) -> None:
        """A GET returns the file's bytes (sha256), and the backend's sendfile moved all of them."""
        root, data = tree

        async def main() -> Answer:
            async with serving(root) as base, _session() as session:
                return await fetch(session, f"{base}/{name}")

        status, headers, body = run(main())
        assert status == 200
        assert int(headers["Content-Length"]) == len(data[name])
        assert sha(body) == sha(data[name])
        assert sum(moved) == len(data[name])

    def test_stock_baseline(self, tree: Tree, run: Runner, monkeypatch: pytest.MonkeyPatch) -> None:
        """Stock aiohttp sends by os.sendfile on asyncio and moves nothing by it on uvloop."""
        root, data = tree
        counts: list[int] = []
        real = os.sendfile

        def counting(*args: Any) -> int:
            n = real(*args)
            counts.append(n)
            return n

        monkeypatch.setattr(os, "sendfile", counting)

        async def main() -> Answer:
            async with serving(root, web.FileResponse) as base, _session() as session:
                return await fetch(session, f"{base}/big.bin")

        _, _, body = run(main())
        assert sha(body) == sha(data["big.bin"])
        expected = 0 if run.kind == "uvloop" else len(data["big.bin"])  # type: ignore[attr-defined]
        assert sum(counts) == expected

    def test_access_log_body_length(self, tree: Tree, run: Runner, moved: list[int]) -> None:
        """body_length (the access log's %b) is what aiohttp's chunked path reports: head + body."""
        root, data = tree
        lengths = []
        for response in (FileResponse, web.FileResponse):
            seen = Seen()

            async def main(response: Any = response, seen: Seen = seen) -> None:
                async with serving(root, response, seen) as base, _session() as session:
                    answer = await fetch(session, f"{base}/odd.bin")
                    assert sha(answer[2]) == sha(data["odd.bin"])

            run(main())
            lengths.append(seen.body_lengths)
        ours, stock = lengths
        assert len(ours) == 1
        assert ours[0] > len(data["odd.bin"])  # the head was counted, and the body too
        if run.kind == "uvloop":  # type: ignore[attr-defined]
            assert ours == stock  # stock's chunked fallback counts head + body
        else:
            assert ours[0] - stock[0] == len(data["odd.bin"])  # stock's sendfile counts the head

    def test_chunk_size_kept(self, tree: Tree, run: Runner, moved: list[int]) -> None:
        """The chunk_size argument is accepted as aiohttp's, and the body still goes by sendfile."""
        root, data = tree

        async def main() -> Answer:
            make = lambda p: FileResponse(p, chunk_size=4096)  # noqa: E731
            async with serving(root, make) as base, _session() as session:
                return await fetch(session, f"{base}/big.bin")

        _, _, body = run(main())
        assert sha(body) == sha(data["big.bin"])
        assert sum(moved) == len(data["big.bin"])


# --- aiohttp's HTTP behaviour, kept ---------------------------------------------------

BIG = SIZES["big.bin"]


class TestRanges:
    @pytest.mark.parametrize(
        ("spec", "span"),
        [
            ("bytes=0-0", (0, 1)),
            ("bytes=10-99", (10, 100)),
            ("bytes=-500", (BIG - 500, BIG)),
            ("bytes=1000-", (1000, BIG)),
            ("bytes=4097-9999999999", (4097, BIG)),
            ("bytes=-99999999", (0, BIG)),
        ],
    )
    def test_range(
        self,
        tree: Tree,
        run: Runner,
        moved: list[int],
        spec: str,
        span: tuple[int, int],
        no_fd_leak: None,
    ) -> None:
        """A single range gets 206, aiohttp's Content-Range, that slice, moved by sendfile."""
        root, data = tree
        ours, stock = run(both(root, "/big.bin", Range=spec))
        start, stop = span
        assert ours[0] == 206
        assert ours[1]["Content-Range"] == f"bytes {start}-{stop - 1}/{BIG}"
        assert sha(ours[2]) == sha(data["big.bin"][start:stop])
        same(ours, stock)
        assert sum(moved) == stop - start

    @pytest.mark.parametrize("spec", [f"bytes={BIG}-", f"bytes={BIG + 10}-{BIG + 20}"])
    def test_unsatisfiable(
        self, tree: Tree, run: Runner, moved: list[int], spec: str, no_fd_leak: None
    ) -> None:
        """A range starting at or past the end gets 416 with bytes */SIZE, no body."""
        root, _ = tree
        ours, stock = run(both(root, "/big.bin", Range=spec))
        assert ours[0] == 416
        assert ours[1]["Content-Range"] == f"bytes */{BIG}"
        same(ours, stock)
        assert moved == []

    def test_if_range(self, tree: Tree, run: Runner, moved: list[int], no_fd_leak: None) -> None:
        """If-Range with the file's date gives 206; with an older date, the whole file (200)."""
        root, data = tree
        mtime = (root / "big.bin").stat().st_mtime
        fresh = _http_date(mtime + 1)
        stale = _http_date(mtime - 3600)
        ours, stock = run(both(root, "/big.bin", Range="bytes=5-9", **{"If-Range": fresh}))
        assert (ours[0], ours[2]) == (206, data["big.bin"][5:10])
        same(ours, stock)
        ours, stock = run(both(root, "/big.bin", Range="bytes=5-9", **{"If-Range": stale}))
        assert ours[0] == 200
        assert sha(ours[2]) == sha(data["big.bin"])
        same(ours, stock)
        assert sum(moved) == 5 + BIG


def _http_date(t: float) -> str:
    import email.utils

    return email.utils.formatdate(t, usegmt=True)


class TestHeadConditional:
    def test_head(self, tree: Tree, run: Runner, moved: list[int], no_fd_leak: None) -> None:
        """HEAD gets the GET's headers, the right Content-Length, no body, no sendfile."""
        root, _ = tree
        ours, stock = run(both(root, "/odd.bin", "HEAD"))
        assert (ours[0], ours[2]) == (200, b"")
        assert int(ours[1]["Content-Length"]) == SIZES["odd.bin"]
        same(ours, stock)
        assert moved == []

    def test_not_modified(
        self, tree: Tree, run: Runner, moved: list[int], no_fd_leak: None
    ) -> None:
        """If-None-Match with the ETag, or If-Modified-Since with the date, gets 304, no body."""
        root, _ = tree

        async def main() -> list[Answer]:
            async with serving(root) as base, _session() as session:
                first = await fetch(session, f"{base}/odd.bin", "HEAD")
                etag, date = first[1]["ETag"], first[1]["Last-Modified"]
                return [
                    await fetch(session, f"{base}/odd.bin", **{"If-None-Match": etag}),
                    await fetch(session, f"{base}/odd.bin", **{"If-Modified-Since": date}),
                    await fetch(session, f"{base}/odd.bin", **{"If-None-Match": '"other"'}),
                ]

        by_etag, by_date, other = run(main())
        assert (by_etag[0], by_etag[2]) == (304, b"")
        assert (by_date[0], by_date[2]) == (304, b"")
        assert other[0] == 200
        assert sha(other[2]) == sha(tree[1]["odd.bin"])
        assert sum(moved) == SIZES["odd.bin"]  # the 200 only

    def test_precompressed(
        self, tree: Tree, run: Runner, moved: list[int], no_fd_leak: None
    ) -> None:
        """Accept-Encoding: gzip gets the .gz sibling, by sendfile, with aiohttp's headers."""
        root, data = tree
        ours, stock = run(both(root, "/page.txt", **{"Accept-Encoding": "gzip"}))
        assert ours[1]["Content-Encoding"] == "gzip"
        assert sha(ours[2]) == sha(data["page.txt.gz"])
        same(ours, stock)
        assert sum(moved) == len(data["page.txt.gz"])

    def test_compression_keeps_chunked_path(
        self, tree: Tree, run: Runner, moved: list[int], no_fd_leak: None
    ) -> None:
        """With enable_compression() the body is aiohttp's compressed copy, not sendfile."""
        root, data = tree

        def compressed(path: Path) -> web.StreamResponse:
            resp = FileResponse(path)
            resp.enable_compression(web.ContentCoding.gzip)
            return resp

        async def main() -> Answer:
            async with serving(root, compressed) as base, _session() as session:
                return await fetch(session, f"{base}/odd.bin", **{"Accept-Encoding": "gzip"})

        import gzip

        status, headers, body = run(main())
        assert (status, headers["Content-Encoding"]) == (200, "gzip")
        assert sha(gzip.decompress(body)) == sha(data["odd.bin"])
        assert moved == []

    def test_missing_is_404(self, tree: Tree, run: Runner, no_fd_leak: None) -> None:
        """A missing file gets aiohttp's 404."""
        ours, stock = run(both(tree[0], "/nope.bin"))
        assert ours[0] == 404
        same(ours, stock)


@pytest.fixture(scope="module")
def tls_context(tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    """A server TLS context with a throw-away self-signed certificate (made by openssl)."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed (it makes the test certificate)")
    where = tmp_path_factory.mktemp("tls")
    cert, key = where / "cert.pem", where / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


class TestFallbacks:
    def test_tls_uses_aiohttp_copy(
        self, tree: Tree, run: Runner, moved: list[int], tls_context: ssl.SSLContext
    ) -> None:
        """Over TLS the body is aiohttp's copy through the TLS transport (no plaintext sendfile)."""
        root, data = tree

        async def main() -> Answer:
            async with (
                serving(root, tls=tls_context) as base,
                _session(connector=aiohttp.TCPConnector(ssl=False)) as session,
            ):
                return await fetch(session, f"{base}/big.bin", Range="bytes=3-")

        status, _, body = run(main())
        assert (status, sha(body)) == (206, sha(data["big.bin"][3:]))
        assert moved == []

    def test_nosendfile_honoured(
        self, tree: Tree, run: Runner, moved: list[int], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """AIOHTTP_NOSENDFILE (aiohttp's switch, read at its import) still means chunked copies."""
        from aiohttp import web_fileresponse

        monkeypatch.setattr(web_fileresponse, "NOSENDFILE", True)
        root, data = tree

        async def main() -> Answer:
            async with serving(root) as base, _session() as session:
                return await fetch(session, f"{base}/odd.bin")

        status, _, body = run(main())
        assert (status, sha(body)) == (200, sha(data["odd.bin"]))
        assert moved == []


# --- connections ------------------------------------------------------------------------


class TestConnections:
    def test_keep_alive(self, tree: Tree, run: Runner, moved: list[int], no_fd_leak: None) -> None:
        """Several requests on one connection each get their right body, all by sendfile."""
        root, data = tree
        seen = Seen()
        asks: list[tuple[str, str, dict[str, str], bytes]] = [
            ("GET", "big.bin", {}, data["big.bin"]),
            ("GET", "odd.bin", {"Range": "bytes=7-70006"}, data["odd.bin"][7:70007]),
            ("HEAD", "big.bin", {}, b""),
            ("GET", "one.bin", {}, data["one.bin"]),
            ("GET", "empty.bin", {}, b""),
            ("GET", "odd.bin", {}, data["odd.bin"]),
            ("GET", "big.bin", {"Range": "bytes=-4096"}, data["big.bin"][-4096:]),
        ]

        async def main() -> list[Answer]:
            connector = aiohttp.TCPConnector(limit=1)
            async with serving(root, seen=seen) as base, _session(connector=connector) as s:
                return [await fetch(s, f"{base}/{name}", m, **h) for m, name, h, _ in asks]

        answers = run(main())
        for (_, _, _, want), (_, _, body) in zip(asks, answers, strict=True):
            assert sha(body) == sha(want)
        assert len(seen.ports) == len(asks)
        assert len(set(seen.ports)) == 1  # one connection
        assert sum(moved) == sum(len(want) for *_, want in asks)

    def test_pipelined(self, tree: Tree, run: Runner, moved: list[int], no_fd_leak: None) -> None:
        """Requests pipelined in one write get their answers in order, each body right."""
        root, data = tree
        asks = [
            ("/big.bin", "", data["big.bin"]),
            ("/odd.bin", "Range: bytes=100-\r\n", data["odd.bin"][100:]),
            ("/one.bin", "", data["one.bin"]),
            ("/big.bin", "Range: bytes=-3\r\n", data["big.bin"][-3:]),
        ]

        async def main() -> list[tuple[bytes, bytes]]:
            async with serving(root) as base:
                host, port = base.removeprefix("http://").split(":")
                reader, writer = await asyncio.open_connection(host, int(port))
                writer.write(
                    b"".join(f"GET {p} HTTP/1.1\r\nHost: x\r\n{h}\r\n".encode() for p, h, _ in asks)
                )
                got = []
                for _ in asks:
                    head = await reader.readuntil(b"\r\n\r\n")
                    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                    got.append((head.split(b"\r\n")[0], await reader.readexactly(length)))
                writer.close()
                await writer.wait_closed()
                return got

        got = run(main())
        assert [status for status, _ in got] == [
            b"HTTP/1.1 200 OK", b"HTTP/1.1 206 Partial Content",
            b"HTTP/1.1 200 OK", b"HTTP/1.1 206 Partial Content",
        ]  # fmt: skip
        assert [sha(body) for _, body in got] == [sha(want) for *_, want in asks]
        assert sum(moved) == sum(len(want) for *_, want in asks)

    @pytest.mark.parametrize("how", ["reset", "close"])
    def test_client_goes_away(
        self,
        tree: Tree,
        run: Runner,
        moved: list[int],
        how: str,
        caplog: pytest.LogCaptureFixture,
        no_fd_leak: None,
    ) -> None:
        """A client gone mid-body logs nothing above DEBUG; the server serves the next one."""
        root, data = tree
        seen = Seen()
        caplog.set_level(logging.DEBUG)

        async def main() -> Answer:
            loop = asyncio.get_running_loop()
            async with serving(root, seen=seen) as base, _session() as session:
                host, port = base.removeprefix("http://").split(":")
                sock = socket.socket()
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                sock.setblocking(False)
                await loop.sock_connect(sock, (host, int(port)))
                await loop.sock_sendall(sock, b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
                assert await loop.sock_recv(sock, 65536)  # the head, at least
                if how == "reset":
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()
                while not seen.body_lengths:  # noqa: ASYNC110 (the access log is the signal)
                    await asyncio.sleep(0.005)
                return await fetch(session, f"{base}/odd.bin")

        status, _, body = run(main())
        assert (status, sha(body)) == (200, sha(data["odd.bin"]))
        assert 0 < sum(moved) - SIZES["odd.bin"] < BIG  # the first body was cut short
        loud = [r for r in caplog.records if r.levelno > logging.DEBUG or r.exc_info]
        assert loud == [], [r.getMessage() for r in loud]

    def test_server_shutdown_mid_body(
        self,
        tree: Tree,
        run: Runner,
        moved: list[int],
        caplog: pytest.LogCaptureFixture,
        no_fd_leak: None,
    ) -> None:
        """A server shut down while a client stalls mid-body ends the transfer, leaking nothing."""
        root, _ = tree
        caplog.set_level(logging.DEBUG)

        async def main() -> bytes:
            loop = asyncio.get_running_loop()
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.setblocking(False)
            try:
                async with serving(root, shutdown_timeout=0.2) as base:
                    host, port = base.removeprefix("http://").split(":")
                    await loop.sock_connect(sock, (host, int(port)))
                    await loop.sock_sendall(sock, b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
                    head = await loop.sock_recv(sock, 4096)
                    while not moved:  # noqa: ASYNC110 (the counter is the signal)
                        await asyncio.sleep(0.005)
                # The server is gone: what the client gets now ends, short.
                got = bytearray(head)
                while data := await loop.sock_recv(sock, MiB):
                    got += data
                return bytes(got)
            finally:
                sock.close()

        got = run(main())
        assert got.startswith(b"HTTP/1.1 200 OK")
        assert len(got) < BIG
        assert sum(moved) < BIG
        loud = [r for r in caplog.records if r.levelno > logging.DEBUG or r.exc_info]
        assert loud == [], [r.getMessage() for r in loud]

    def test_buffered_head_goes_first(
        self, tree: Tree, run: Runner, moved: list[int], no_fd_leak: None
    ) -> None:
        """A subclass that buffers its head (aiohttp's opt-in) still sends it before the body."""
        root, data = tree

        class Buffered(FileResponse):
            _send_headers_immediately = False

        async def main() -> Answer:
            async with serving(root, Buffered) as base, _session() as session:
                return await fetch(session, f"{base}/odd.bin")

        status, headers, body = run(main())
        assert (status, int(headers["Content-Length"])) == (200, SIZES["odd.bin"])
        assert sha(body) == sha(data["odd.bin"])
        assert sum(moved) == SIZES["odd.bin"]

    def test_file_shrinks(
        self,
        tree: Tree,
        tmp_path: Path,
        run: Runner,
        moved: list[int],
        caplog: pytest.LogCaptureFixture,
        no_fd_leak: None,
    ) -> None:
        """A file cut short after the head: short body, a warning, the connection closed."""
        path = tmp_path / "shrinks.bin"
        path.write_bytes(tree[1]["big.bin"])
        keep = MiB + 5

        class Shrinking(FileResponse):
            async def _sendfile(self, request: Any, fobj: Any, offset: int, count: int) -> Any:
                os.truncate(path, keep)
                return await super()._sendfile(request, fobj, offset, count)

        async def main() -> tuple[bytes, bool]:
            async with serving(tmp_path, Shrinking) as base, _session() as session:
                async with session.get(f"{base}/shrinks.bin") as resp:
                    got = bytearray()

                    async def read_all() -> None:
                        async for chunk in resp.content.iter_any():
                            got.extend(chunk)

                    with pytest.raises(aiohttp.ClientPayloadError):
                        await read_all()
                return bytes(got), resp.connection is None

        got, released = run(main())
        assert got == tree[1]["big.bin"][:keep]
        assert released
        assert sum(moved) == keep
        assert any("file shrank" in r.getMessage() for r in caplog.records)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
class TestCurl:
    def test_curl(self, tree: Tree, tmp_path: Path, run: Runner, moved: list[int]) -> None:
        """curl gets two bodies on one connection, and a range, each byte right (sha256)."""
        root, data = tree

        async def curl(*args: str) -> str:
            proc = await asyncio.create_subprocess_exec(
                "curl", "-sS", "--http1.1", "--max-time", "20", *args,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            )  # fmt: skip
            out, err = await proc.communicate()
            assert proc.returncode == 0, err
            return out.decode()

        async def main() -> tuple[str, str]:
            async with serving(root) as base:
                fmt = "%{http_code} %{num_connects}\\n"
                two = await curl(
                    "-w", fmt, "-o", str(tmp_path / "a"), f"{base}/big.bin",
                    "-o", str(tmp_path / "b"), f"{base}/odd.bin",
                )  # fmt: skip
                part = await curl(
                    "-w", fmt, "-r", "100-200099", "-o", str(tmp_path / "c"), f"{base}/big.bin"
                )
                return two, part

        two, part = run(main())
        assert two.split() == ["200", "1", "200", "0"]  # the second reused the connection
        assert part.split() == ["206", "1"]
        assert sha((tmp_path / "a").read_bytes()) == sha(data["big.bin"])
        assert sha((tmp_path / "b").read_bytes()) == sha(data["odd.bin"])
        assert sha((tmp_path / "c").read_bytes()) == sha(data["big.bin"][100:200100])
        assert sum(moved) == BIG + SIZES["odd.bin"] + 200000


# --- the module ---------------------------------------------------------------------------


class TestModule:
    def test_import_zerocopy_does_not_import_aiohttp(self) -> None:
        """import zerocopy (and zerocopy.aio) loads no aiohttp; zerocopy.aiohttp does."""
        code = (
            "import sys, zerocopy, zerocopy.aio, zerocopy.http\n"
            "print('aiohttp' in sys.modules)\n"
            "import zerocopy.aiohttp\n"
            "print('aiohttp' in sys.modules)\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
        )
        assert out.stdout.split() == ["False", "True"]

    @pytest.mark.parametrize("version", ["3.9.5", "2.3.10", "3.15.0", "4.0.0", "garbage"])
    def test_untested_version(self, version: str, monkeypatch: pytest.MonkeyPatch) -> None:
        """An untested aiohttp with the hooks: a warning naming the version, sendfile kept."""
        assert not zerocopy.aiohttp._tested(version)
        monkeypatch.setattr(aiohttp, "__version__", version)
        monkeypatch.delitem(sys.modules, "zerocopy.aiohttp")
        with pytest.warns(zerocopy.UntestedVersionWarning) as caught:
            module = importlib.import_module("zerocopy.aiohttp")
        [warning] = caught
        assert str(warning.message) == (
            f"zerocopy.aiohttp is untested with aiohttp {version} (tested: aiohttp 3.10 to"
            " 3.14); the hooks it needs are all there, so FileResponse runs with zero-copy"
        )
        assert module.FileResponse._sendfile is module._send

    @pytest.mark.parametrize("version", ["3.10.0", "3.12.15", "3.14.5", aiohttp.__version__])
    def test_tested_version(self, version: str) -> None:
        """The tested versions count as tested."""
        assert zerocopy.aiohttp._tested(version)

    def test_drop_in(self) -> None:
        """zerocopy's FileResponse is an aiohttp FileResponse and takes the same arguments."""
        resp = FileResponse("x.bin", chunk_size=1024, status=201, reason="R", headers={"A": "b"})
        assert isinstance(resp, web.FileResponse)
        assert (resp.status, resp.reason, resp.headers["A"]) == (201, "R", "b")


# --- where the file is opened --------------------------------------------------------


class RecordingExecutor(concurrent.futures.ThreadPoolExecutor):
    """The loop's default executor, noting the name of every function it is given."""

    def __init__(self) -> None:
        super().__init__(max_workers=2)
        self.calls: list[str] = []

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        self.calls.append(getattr(fn, "__name__", repr(fn)))
        return super().submit(fn, *args, **kwargs)


#: The executor calls that stat, open or close a file: aiohttp 3.11.18 and
#: later (_make_response, close) and older ones (their own steps).
_OPENING = ("_make_response", "_get_file_path_stat_encoding", "open", "close")
#: What one request's file costs in the executor where aiohttp opens it.
IN_THREAD = (
    ["_make_response", "close"]
    if zerocopy.aiohttp._ON_PREPARE
    else ["_get_file_path_stat_encoding", "open", "close"]
)


class TestWhereOpened:
    """A file's stat, open and close: in a thread until known local, then on the loop."""

    def _twice(self, run: Runner, root: Path, name: str) -> tuple[list[list[str]], list[bytes]]:
        """Two GETs of *name*: the executor's calls during each, and the bodies."""

        async def main() -> tuple[list[list[str]], list[bytes]]:
            executor = RecordingExecutor()
            asyncio.get_running_loop().set_default_executor(executor)
            calls, bodies = [], []
            async with serving(root) as base, _session() as session:
                for _ in range(2):
                    executor.calls.clear()
                    status, _, body = await fetch(session, f"{base}/{name}")
                    assert status == 200
                    await asyncio.sleep(0.05)  # aiohttp's close is not awaited
                    calls.append([c for c in executor.calls if c in _OPENING])
                    bodies.append(body)
            return calls, bodies

        return run(main())

    def test_learned_local(
        self, tmp_path: Path, run: Runner, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Default: the first request opens in a thread, the next (a local file) on the loop."""
        monkeypatch.setattr(FileResponse, "open_on_loop", None)
        data = random.Random(5).randbytes(70_001)
        (tmp_path / "f.bin").write_bytes(data)
        dev = (tmp_path / "f.bin").stat().st_dev
        assert zerocopy._localfs.fs_type(dev) in zerocopy._localfs.LOCAL_TYPES, "tmp is not local"
        calls, bodies = self._twice(run, tmp_path, "f.bin")
        if zerocopy.aiohttp._ON_PREPARE:
            assert calls == [IN_THREAD, []]
        else:  # an aiohttp whose prepare is not the one repeated: aiohttp's way
            assert calls == [IN_THREAD, IN_THREAD]
        assert bodies == [data, data]

    def test_unknown_filesystem_stays_in_thread(
        self, tmp_path: Path, run: Runner, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A file on a filesystem not known local (NFS, say): every request opens in a thread."""
        monkeypatch.setattr(FileResponse, "open_on_loop", None)
        monkeypatch.setattr(zerocopy._localfs, "LOCAL_TYPES", frozenset({"no-such-fs"}))
        (tmp_path / "f.bin").write_bytes(b"x" * 5000)
        calls, bodies = self._twice(run, tmp_path, "f.bin")
        assert calls == [IN_THREAD] * 2
        assert bodies == [b"x" * 5000] * 2

    @pytest.mark.parametrize("setting", [False, True])
    def test_setting(
        self, tmp_path: Path, run: Runner, monkeypatch: pytest.MonkeyPatch, setting: bool
    ) -> None:
        """open_on_loop False: always a thread (aiohttp's way); True: never."""
        monkeypatch.setattr(FileResponse, "open_on_loop", setting)
        (tmp_path / "f.bin").write_bytes(b"y" * 5000)
        calls, bodies = self._twice(run, tmp_path, "f.bin")
        on_loop = setting and zerocopy.aiohttp._ON_PREPARE  # older aiohttp: its own way
        assert calls == ([[]] * 2 if on_loop else [IN_THREAD] * 2)
        assert bodies == [b"y" * 5000] * 2

    def test_older_aiohttp_keeps_its_prepare(self) -> None:
        """A prepare that is not the one repeated (other names in its code): aiohttp's own runs."""

        class Other(web.FileResponse):
            async def prepare(self, request: web.BaseRequest) -> Any:
                return await self.something_else(request)  # type: ignore[attr-defined]

        missing = zerocopy._compat.aiohttp_prepare_missing(Other, aiohttp.web_fileresponse)
        assert missing[0] == "FileResponse.prepare as in aiohttp 3.11.18 to 3.14"
        stock = zerocopy._compat.aiohttp_prepare_missing(web.FileResponse, aiohttp.web_fileresponse)
        # This aiohttp's own: nothing missing from 3.11.18 on (the versions whose
        # prepare is the one repeated), the prepare at least before.
        assert (stock == []) is zerocopy.aiohttp._ON_PREPARE
        if not zerocopy.aiohttp._ON_PREPARE:
            assert "FileResponse.prepare as in aiohttp 3.11.18 to 3.14" in stock
