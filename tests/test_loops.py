"""zerocopy.loops: event loops whose sendfile and sock_sendfile go through zerocopy.

The reference is CPython's own selector loop (``asyncio.SelectorEventLoop``),
called with the same arguments on the same files: return values, the bytes
the peer receives, the file position afterwards and the exceptions must be
its, except where :mod:`zerocopy._send_file.loopmethods` says they differ
(exact counts and positions on cancellation, pipes with no count).  Every
test runs on both backends and on both of zerocopy's loops (asyncio's and
uvloop's).  Evidence that the kernel carried the bytes: the backend's
``sendfile`` is wrapped to count what it moved.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import aiohttp
import pytest
from aiohttp import web

import conftest
import zerocopy
import zerocopy.loops
from netkit import MiB, make_file, payload, record_sendfile, recv_all, reset

# `name as name`: fixtures, re-exported so that linters count them as used (the
# autouse empty_pool applies to the modules that import it).
from netkit import empty_pool as empty_pool
from netkit import no_fd_leak as no_fd_leak
from netkit import sockets as sockets

Factory = Callable[[], asyncio.AbstractEventLoop]
SIZE = 3 * MiB + 12_345  # more than one fairness slice (1 MiB)
STOCK: Factory = asyncio.SelectorEventLoop


@pytest.fixture(params=["asyncio", "uvloop"])
def zloop(request: pytest.FixtureRequest) -> Factory:
    """zerocopy's loop factory of the kind under test."""
    if request.param == "uvloop":
        pytest.importorskip("uvloop")
        # uvloop opens a few process-wide fds on first use: before any fd census.
        with asyncio.Runner(loop_factory=zerocopy.loops.new_uvloop) as r:
            r.run(asyncio.sleep(0))
        return zerocopy.loops.new_uvloop
    return zerocopy.loops.new_event_loop


@pytest.fixture
def moved(backend: ModuleType, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The byte counts of every sendfile call the current backend made during the test."""
    return record_sendfile(backend, monkeypatch)


def run_on(factory: Factory, coro: Coroutine[Any, Any, Any]) -> Any:
    """Run *coro* on a fresh loop made by *factory* (60 s cap)."""
    with asyncio.Runner(loop_factory=factory) as r:
        return r.run(asyncio.wait_for(coro, 60))


def pair() -> tuple[socket.socket, socket.socket]:
    """A non-blocking loopback TCP pair: (receiver, sender)."""
    r, s = conftest.tcp_pair()
    r.setblocking(False)
    s.setblocking(False)
    return r, s


Outcome = tuple[object, bytes, int]


async def _sock_case(f: Any, offset: int, count: int | None, fallback: bool) -> Outcome:
    loop = asyncio.get_running_loop()
    r, s = pair()
    with r, s:
        if f.seekable():
            f.seek(1234)  # not where sending starts
        receiver = asyncio.ensure_future(recv_all(r))
        result: object
        try:
            result = await loop.sock_sendfile(s, f, offset, count, fallback=fallback)
        except Exception as exc:
            result = type(exc)
        s.shutdown(socket.SHUT_WR)
        got = await receiver
        return result, got, f.tell() if f.seekable() else -1


def sock_case(
    factory: Factory,
    opener: Callable[[], Any],
    offset: Any,
    count: Any,
    fallback: bool = True,
) -> Outcome:
    """loop.sock_sendfile on a fresh pair: (result or exception type, bytes received, tell())."""
    with opener() as f:
        outcome: Outcome = run_on(factory, _sock_case(f, offset, count, fallback))
        return outcome


class TestSockSendfile:
    """loop.sock_sendfile: CPython's results on the same inputs, by sendfile(2)."""

    @pytest.mark.parametrize(
        ("offset", "count"),
        [
            (0, None),
            (100, None),
            (0, 1000),
            (5000, 70_000),
            (SIZE - 1, None),
            (10, 10 * SIZE),  # beyond the end of the file
            (SIZE, None),  # at the end
            (SIZE + 5, 5),  # past it
        ],
    )
    def test_same_as_asyncio(
        self,
        backend: ModuleType,
        zloop: Factory,
        moved: list[int],
        tmp_path: Path,
        offset: int,
        count: int | None,
    ) -> None:
        """Result, bytes received and file position equal CPython's; the bytes went by sendfile."""
        path = make_file(tmp_path, payload(SIZE, 1))

        def opener() -> Any:
            return open(path, "rb")

        ours = sock_case(zloop, opener, offset, count)
        ours_moved = sum(moved)  # the stock loop calls os.sendfile, not the backend
        stock = sock_case(STOCK, opener, offset, count)
        assert ours == stock
        assert ours_moved == len(ours[1])

    @pytest.mark.parametrize(
        ("offset", "count", "error"),
        [
            (0, 0, ValueError),
            (0, -1, ValueError),
            (-1, None, ValueError),
            (0, "1", TypeError),
            (0.5, None, TypeError),
        ],
    )
    def test_bad_arguments(
        self,
        backend: ModuleType,
        zloop: Factory,
        tmp_path: Path,
        offset: Any,
        count: Any,
        error: type,
    ) -> None:
        """Bad offsets and counts raise what CPython raises, and nothing is sent."""
        path = make_file(tmp_path, payload(1000))

        def opener() -> Any:
            return open(path, "rb")

        ours = sock_case(zloop, opener, offset, count)
        assert ours == sock_case(STOCK, opener, offset, count) == (error, b"", 1234)

    def test_text_file(self, backend: ModuleType, zloop: Factory, tmp_path: Path) -> None:
        """A text-mode file is a ValueError, as on CPython."""
        path = make_file(tmp_path, b"text")

        def opener() -> Any:
            return open(path, encoding="ascii")

        ours = sock_case(zloop, opener, 0, None)
        assert ours == sock_case(STOCK, opener, 0, None) == (ValueError, b"", 1234)

    def test_datagram_socket(self, backend: ModuleType, zloop: Factory, tmp_path: Path) -> None:
        """A non-stream socket is CPython's ValueError."""
        path = make_file(tmp_path, b"x" * 100)

        async def main(f: Any) -> None:
            loop = asyncio.get_running_loop()
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                udp.setblocking(False)
                with pytest.raises(ValueError, match="SOCK_STREAM"):
                    await loop.sock_sendfile(udp, f)

        for factory in (zloop, STOCK):
            with open(path, "rb") as f:
                run_on(factory, main(f))

    @pytest.mark.parametrize("fallback", [True, False])
    @pytest.mark.parametrize(("offset", "count"), [(0, None), (7, 50_000)])
    def test_bytesio(
        self, backend: ModuleType, zloop: Factory, fallback: bool, offset: int, count: int | None
    ) -> None:
        """No fd: read and send with fallback, SendfileNotAvailableError without, as CPython."""
        data = payload(300_000, 2)

        def opener() -> Any:
            return io.BytesIO(data)

        ours = sock_case(zloop, opener, offset, count, fallback)
        assert ours == sock_case(STOCK, opener, offset, count, fallback)
        if not fallback:
            assert ours == (asyncio.SendfileNotAvailableError, b"", 1234)

    @pytest.mark.parametrize("fallback", [True, False])
    def test_pipe_with_count(self, backend: ModuleType, zloop: Factory, fallback: bool) -> None:
        """A pipe with a count: read and sent with fallback, refused without, as on CPython."""
        data = payload(50_000, 3)

        def opener() -> Any:
            rfd, wfd = os.pipe()
            os.write(wfd, data)  # fits a pipe's 64 KiB
            os.close(wfd)
            return open(rfd, "rb", buffering=0)

        ours = sock_case(zloop, opener, 0, 30_000, fallback)
        stock = sock_case(STOCK, opener, 0, 30_000, fallback)
        # The same bytes; CPython's fallback then raises OSError (ESPIPE): it
        # seeks the pipe to put its position at offset + sent.
        assert ours[1] == stock[1]
        assert stock[0] in (OSError, asyncio.SendfileNotAvailableError)
        expected = (30_000, data[:30_000]) if fallback else (asyncio.SendfileNotAvailableError, b"")
        assert ours[:2] == expected

    def test_pipe_to_end(self, backend: ModuleType, zloop: Factory) -> None:
        """A pipe with no count is read to its end (CPython's sends nothing: its st_size is 0)."""
        data = payload(50_000, 4)

        def opener() -> Any:
            rfd, wfd = os.pipe()
            os.write(wfd, data)
            os.close(wfd)
            return open(rfd, "rb", buffering=0)

        assert sock_case(zloop, opener, 0, None)[:2] == (len(data), data)
        assert sock_case(zloop, opener, 0, None, fallback=False)[0] is (
            asyncio.SendfileNotAvailableError
        )


class TestPartWay:
    """Cancellation and a peer gone: the exact count, and the position at offset + count."""

    def test_cancelled(self, backend: ModuleType, zloop: Factory, tmp_path: Path) -> None:
        """CancelledError carries the bytes sent; the position is offset + that count.

        CPython's selector loop leaves the position where it was and counts nothing.
        """
        data = payload(16 * MiB, 5)
        path = make_file(tmp_path, data)

        async def main(f: Any) -> tuple[int, bytes, int]:
            loop = asyncio.get_running_loop()
            r, s = pair()
            with r, s:
                f.seek(7)
                task = asyncio.ensure_future(loop.sock_sendfile(s, f, 1000))
                got = bytearray()
                while len(got) < 300_000:
                    got += await loop.sock_recv(r, 65536)
                task.cancel()
                with pytest.raises(asyncio.CancelledError) as caught:
                    await task
                s.shutdown(socket.SHUT_WR)
                got += await recv_all(r)
                return zerocopy.bytes_transferred(caught.value), bytes(got), f.tell()

        with open(path, "rb") as f:
            count, got, tell = run_on(zloop, main(f))
        assert 300_000 <= count == len(got) < len(data) - 1000
        assert got == data[1000 : 1000 + count]
        assert tell == 1000 + count

    def test_peer_resets(self, backend: ModuleType, zloop: Factory, tmp_path: Path) -> None:
        """A peer that resets part-way: CPython's error, bytes_transferred and tell() say where."""
        data = payload(16 * MiB, 6)
        path = make_file(tmp_path, data)

        async def main(f: Any) -> tuple[BaseException, int, int]:
            loop = asyncio.get_running_loop()
            r, s = pair()
            with s:
                task = asyncio.ensure_future(loop.sock_sendfile(s, f, 10))
                got = 0
                while got < 300_000:
                    got += len(await loop.sock_recv(r, 65536))
                reset(r)
                with pytest.raises(ConnectionError) as caught:
                    await task
                return caught.value, got, f.tell()

        with open(path, "rb") as f:
            exc, got, tell = run_on(zloop, main(f))
        with open(path, "rb") as f:
            stock_exc, _, stock_tell = run_on(STOCK, main(f))
        assert type(exc) is type(stock_exc)
        count = zerocopy.bytes_transferred(exc)
        assert count is not None
        assert got <= count < len(data)
        assert tell == 10 + count
        assert stock_tell > 10  # CPython too moves the position to where sending stopped


# --- loop.sendfile(transport, ...) ----------------------------------------------------


@contextlib.asynccontextmanager
async def connected() -> AsyncIterator[tuple[asyncio.Transport, socket.socket]]:
    """A client transport (plain asyncio.Protocol) and the peer's non-blocking socket."""
    loop = asyncio.get_running_loop()
    r, s = pair()
    transport, _ = await loop.create_connection(asyncio.Protocol, sock=s)
    try:
        yield transport, r
    finally:
        transport.close()
        await asyncio.sleep(0)
        r.close()


async def _transport_case(
    f: Any, offset: int, count: int | None, head: bytes, fallback: bool
) -> tuple[object, bytes, int, bool]:
    loop = asyncio.get_running_loop()
    async with connected() as (transport, r):
        f.seek(99)
        receiver = asyncio.ensure_future(recv_all(r))
        transport.write(head)  # buffered: it must go out first
        result: object
        try:
            result = await loop.sendfile(transport, f, offset, count, fallback=fallback)
        except Exception as exc:
            result = type(exc)
        reading = transport.is_reading()
        transport.write(b"tail")  # usable again
        transport.write_eof()
        return result, await receiver, f.tell(), reading


def transport_case(
    factory: Factory, path: Path, offset: int, count: int | None, head: bytes, fallback: bool = True
) -> tuple[object, bytes, int, bool]:
    """Write *head*, then loop.sendfile: (result or exception type, received, tell(), reading)."""
    with open(path, "rb") as f:
        outcome: tuple[object, bytes, int, bool] = run_on(
            factory, _transport_case(f, offset, count, head, fallback)
        )
        return outcome


class TestTransportSendfile:
    """loop.sendfile(transport): CPython's results, on uvloop too, by sendfile(2)."""

    @pytest.mark.parametrize(
        ("offset", "count"), [(0, None), (5, 1000), (SIZE - 10, None), (3, 10 * SIZE), (SIZE, None)]
    )
    def test_same_as_asyncio(
        self,
        backend: ModuleType,
        zloop: Factory,
        moved: list[int],
        tmp_path: Path,
        offset: int,
        count: int | None,
    ) -> None:
        """The transport's buffer first, then the file, then later writes; position as CPython's."""
        path = make_file(tmp_path, payload(SIZE, 7))
        head = payload(4 * MiB, 8)  # more than the socket takes at once: the transport buffers
        ours = transport_case(zloop, path, offset, count, head)
        sent_by_kernel = sum(moved)
        stock = transport_case(STOCK, path, offset, count, head)
        assert ours == stock
        result, got, _, reading = ours
        assert reading
        assert got[: len(head)] == head
        assert got.endswith(b"tail")
        assert sent_by_kernel == result == len(got) - len(head) - 4

    def test_count_zero(self, backend: ModuleType, zloop: Factory, tmp_path: Path) -> None:
        """count=0 is CPython's ValueError."""
        path = make_file(tmp_path, b"abc")
        ours = transport_case(zloop, path, 0, 0, b"h")
        assert ours == transport_case(STOCK, path, 0, 0, b"h") == (ValueError, b"htail", 99, True)

    def test_closed_transport(self, backend: ModuleType, zloop: Factory, tmp_path: Path) -> None:
        """A closed transport is CPython's RuntimeError."""
        path = make_file(tmp_path, b"abc")

        async def main(f: Any) -> None:
            loop = asyncio.get_running_loop()
            async with connected() as (transport, _):
                transport.close()
                with pytest.raises(RuntimeError, match="closing"):
                    await loop.sendfile(transport, f)

        for factory in (zloop, STOCK):
            with open(path, "rb") as f:
                run_on(factory, main(f))

    @pytest.mark.parametrize("fallback", [True, False])
    def test_bytesio(self, backend: ModuleType, zloop: Factory, fallback: bool) -> None:
        """No fd: written in chunks with fallback, SendfileNotAvailableError without."""
        data = payload(300_000, 9)

        async def main() -> tuple[object, bytes]:
            loop = asyncio.get_running_loop()
            async with connected() as (transport, r):
                receiver = asyncio.ensure_future(recv_all(r))
                result: object
                try:
                    result = await loop.sendfile(transport, io.BytesIO(data), 5, fallback=fallback)
                except Exception as exc:
                    result = type(exc)
                transport.write_eof()
                return result, await receiver

        ours = run_on(zloop, main())
        assert ours == run_on(STOCK, main())
        assert ours == (
            (len(data) - 5, data[5:]) if fallback else (asyncio.SendfileNotAvailableError, b"")
        )

    def test_cancelled(self, backend: ModuleType, zloop: Factory, tmp_path: Path) -> None:
        """Cancelled: the count on the exception, position offset + count, the transport usable."""
        data = payload(16 * MiB, 10)
        path = make_file(tmp_path, data)

        async def main(f: Any) -> tuple[int, bytes, int, bool]:
            loop = asyncio.get_running_loop()
            async with connected() as (transport, r):
                task = asyncio.ensure_future(loop.sendfile(transport, f, 3))
                got = bytearray()
                while len(got) < 300_000:
                    got += await loop.sock_recv(r, 65536)
                task.cancel()
                with pytest.raises(asyncio.CancelledError) as caught:
                    await task
                transport.write(b"after")
                transport.write_eof()
                got += await recv_all(r)
                count = zerocopy.bytes_transferred(caught.value)
                return count, bytes(got), f.tell(), transport.is_reading()

        with open(path, "rb") as f:
            count, got, tell, reading = run_on(zloop, main(f))
        assert got == data[3 : 3 + count] + b"after"
        assert tell == 3 + count
        assert reading

    def test_no_leaks(
        self, backend: ModuleType, zloop: Factory, tmp_path: Path, no_fd_leak: None
    ) -> None:
        """Nothing is left behind: the duplicate socket closed, no callbacks, no threads."""
        path = make_file(tmp_path, payload(SIZE, 11))
        for _ in range(3):
            result = transport_case(zloop, path, 0, None, b"h")
            assert result[0] == SIZE


# --- aiohttp, unchanged, on zerocopy's loops ---------------------------------------------


@contextlib.asynccontextmanager
async def aiohttp_server(root: Path) -> AsyncIterator[str]:
    """Stock aiohttp: ``/file/NAME`` by web.FileResponse, ``/static/`` by add_static."""

    async def handle(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(root / request.match_info["name"])

    app = web.Application()
    app.router.add_get("/file/{name}", handle)
    app.router.add_static("/static/", root)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def fetch_all(base: str, paths: list[tuple[str, dict[str, str]]]) -> list[tuple[int, bytes]]:
    async with aiohttp.ClientSession() as session:
        out = []
        for path, headers in paths:
            async with session.get(base + path, headers=headers) as resp:
                out.append((resp.status, await resp.read()))
        return out


class TestAiohttp:
    """Stock web.FileResponse and add_static send by sendfile on zerocopy's loops."""

    REQUESTS: ClassVar[list[tuple[str, dict[str, str]]]] = [
        ("/file/big.bin", {}),
        ("/static/big.bin", {}),
        ("/file/big.bin", {"Range": "bytes=1000-2000000"}),
        ("/static/small.bin", {}),
    ]

    def test_bodies_by_sendfile(
        self, backend: ModuleType, zloop: Factory, moved: list[int], tmp_path: Path
    ) -> None:
        """Bodies byte-identical to the files; every body byte moved by the backend's sendfile."""
        big, small = payload(5 * MiB + 7, 12), payload(100_003, 13)
        make_file(tmp_path, big, "big.bin")
        make_file(tmp_path, small, "small.bin")

        async def main() -> list[tuple[int, bytes]]:
            async with aiohttp_server(tmp_path) as base:
                return await fetch_all(base, self.REQUESTS)

        answers = run_on(zloop, main())
        assert answers == [(200, big), (200, big), (206, big[1000:2000001]), (200, small)]
        assert sum(moved) == sum(len(body) for _, body in answers)

    def test_stock_uvloop_copies(
        self, backend: ModuleType, moved: list[int], tmp_path: Path
    ) -> None:
        """The contrast: on stock uvloop the same server makes no sendfile call at all."""
        uvloop = pytest.importorskip("uvloop")
        make_file(tmp_path, payload(MiB, 14), "big.bin")

        async def main() -> list[tuple[int, bytes]]:
            async with aiohttp_server(tmp_path) as base:
                return await fetch_all(base, [("/file/big.bin", {})])

        assert run_on(uvloop.new_event_loop, main())[0][0] == 200
        assert moved == []

    def test_tls_written_in_chunks(
        self, backend: ModuleType, zloop: Factory, moved: list[int], tmp_path: Path
    ) -> None:
        """Over TLS the loop writes chunks to the TLS transport: no plaintext sendfile."""
        import ssl

        cert_dir = tmp_path / "tls"
        cert_dir.mkdir()
        cert, key = cert_dir / "cert.pem", cert_dir / "key.pem"
        try:
            subprocess.run(
                ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                 "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                check=True, capture_output=True, timeout=60,
            )  # fmt: skip
        except FileNotFoundError:
            pytest.skip("the openssl command is not installed")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        data = payload(3 * MiB + 5, 15)
        make_file(tmp_path, data, "big.bin")

        async def main() -> tuple[int, bytes]:
            app = web.Application()
            app.router.add_static("/static/", tmp_path)
            runner = web.AppRunner(app)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
            await site.start()
            try:
                url = f"https://127.0.0.1:{runner.addresses[0][1]}/static/big.bin"
                connector = aiohttp.TCPConnector(ssl=False)
                async with (
                    aiohttp.ClientSession(connector=connector) as session,
                    session.get(url, headers={"Range": "bytes=2-"}) as resp,
                ):
                    return resp.status, await resp.read()
            finally:
                await runner.cleanup()

        assert run_on(zloop, main()) == (206, data[2:])
        assert moved == []


# --- fairness -------------------------------------------------------------------------------


class TestFairness:
    @pytest.mark.parametrize("pause", [0.0, 0.0005], ids=["fast-reader", "slow-reader"])
    def test_small_requests_beside_a_long_body(
        self, backend: ModuleType, zloop: Factory, tmp_path: Path, pause: float
    ) -> None:
        """While 64 MiB bodies go out, a small request's latency stays near its baseline.

        Baseline: the same small requests to the same server just before; the
        allowance beyond it, a quarter of the time one body takes.  The
        reader, another process, reads as fast as it can or sleeps after each
        256 KiB (the server's socket stays full).  (On loopback here a socket's
        send buffer bounds each sendfile call to a few MiB, well under a
        millisecond, with or without the slice: this bounds the result, it
        does not single out the slice.)
        """
        size = 64 * MiB
        make_file(tmp_path, payload(size, 16), "big.bin")
        make_file(tmp_path, b"small", "small.bin")
        # The reader is another process: a thread would share the GIL with the server.
        reader_code = (
            "import socket, sys, time\n"
            "port, pause = int(sys.argv[1]), float(sys.argv[2])\n"
            "while True:\n"
            "    got, t0 = 0, time.perf_counter()\n"
            "    with socket.create_connection(('127.0.0.1', port)) as sock:\n"
            "        sock.sendall(b'GET /file/big.bin HTTP/1.1\\r\\nHost: x\\r\\n"
            "Connection: close\\r\\n\\r\\n')\n"
            "        while chunk := sock.recv(256 * 1024):\n"
            "            got += len(chunk)\n"
            "            if pause:\n"
            "                time.sleep(pause)\n"
            "    print(got, time.perf_counter() - t0, flush=True)\n"
        )

        async def small(session: aiohttp.ClientSession, base: str) -> float:
            t0 = time.perf_counter()
            async with session.get(base + "/file/small.bin") as resp:
                assert await resp.read() == b"small"
            return time.perf_counter() - t0

        async def main() -> tuple[list[float], list[float], bytes]:
            async with aiohttp_server(tmp_path) as base, aiohttp.ClientSession() as session:
                baseline = [await small(session, base) for _ in range(40)]
                port = base.rsplit(":", 1)[1]
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-c", reader_code, port, str(pause),
                    stdout=asyncio.subprocess.PIPE,
                )  # fmt: skip
                try:
                    assert proc.stdout is not None
                    first = await proc.stdout.readline()  # a whole body, the next under way
                    during = [await small(session, base) for _ in range(40)]
                finally:
                    proc.kill()
                    await proc.wait()
                return baseline, during, first

        baseline, during, first = run_on(zloop, main())
        got, seconds = first.split()
        assert int(got) > size  # headers and the whole body
        body_time = float(seconds)
        base_p50 = statistics.median(baseline)
        # Had the body held the loop, a small request would wait half a body on
        # average; taking turns, a few slices (1 MiB each) at most.  The bound
        # leaves room for a busy machine (the reader takes a core of two).
        bound = base_p50 + max(0.004, body_time / 4)
        assert statistics.median(during) < bound, (body_time, baseline, during)


# --- entry points ------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get_when_up(url: str, proc: subprocess.Popen[str]) -> bytes:
    import urllib.request

    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                return bytes(resp.read())
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.fixture
def served_app(tmp_path: Path) -> Path:
    """An app directory: an aiohttp app and an ASGI app, each reporting its loop's class."""
    (tmp_path / "big.bin").write_bytes(payload(2 * MiB, 17))
    (tmp_path / "apps.py").write_text(
        "import asyncio, os, sys\n"
        "from pathlib import Path\n"
        "HERE = Path(__file__).parent\n"
        "async def asgi(scope, receive, send):\n"
        "    if scope['type'] != 'http':\n"
        "        return\n"
        "    name = type(asyncio.get_running_loop()).__name__.encode()\n"
        "    await send({'type': 'http.response.start', 'status': 200, 'headers': []})\n"
        "    await send({'type': 'http.response.body', 'body': name})\n"
        "def aiohttp_main(port):\n"
        "    from aiohttp import web\n"
        "    import zerocopy, zerocopy.loops\n"
        "    async def loop_name(request):\n"
        "        return web.Response(text=type(asyncio.get_running_loop()).__name__)\n"
        "    app = web.Application()\n"
        "    app.router.add_get('/loop', loop_name)\n"
        "    app.router.add_static('/static/', HERE)\n"
        "    web.run_app(app, host='127.0.0.1', port=port, loop=zerocopy.loops.new_uvloop(),\n"
        "                print=None, handle_signals=True)\n"
        "if __name__ == '__main__':\n"
        "    aiohttp_main(int(sys.argv[1]))\n",
        encoding="utf-8",
    )
    return tmp_path


def _env() -> dict[str, str]:
    src = str(Path(zerocopy.__file__).resolve().parent.parent)
    return {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}


class TestEntryPoints:
    """The ways in: asyncio.Runner, aiohttp's run_app(loop=...), uvicorn --loop."""

    def test_runner(self) -> None:
        """asyncio.Runner(loop_factory=...) runs on zerocopy's loop, each kind."""
        pytest.importorskip("uvloop")
        for factory, name in [
            (zerocopy.loops.new_event_loop, "_SelectorEventLoop"),
            (zerocopy.loops.new_uvloop, "UVLoop"),
        ]:

            async def main() -> str:
                return type(asyncio.get_running_loop()).__name__

            assert run_on(factory, main()) == name

    def test_aiohttp_run_app(self, served_app: Path) -> None:
        """web.run_app(app, loop=zerocopy.loops.new_uvloop()) serves static files on it."""
        pytest.importorskip("uvloop")
        port = _free_port()
        proc = subprocess.Popen(
            [sys.executable, str(served_app / "apps.py"), str(port)],
            env=_env(),
            text=True,
            stderr=subprocess.PIPE,
        )
        try:
            assert _get_when_up(f"http://127.0.0.1:{port}/loop", proc) == b"UVLoop"
            body = _get_when_up(f"http://127.0.0.1:{port}/static/big.bin", proc)
            assert body == (served_app / "big.bin").read_bytes()
        finally:
            proc.terminate()
            proc.communicate(timeout=30)

    def test_uvicorn_loop_option(self, served_app: Path) -> None:
        """uvicorn --loop zerocopy.loops:new_uvloop runs the app on zerocopy's uvloop loop."""
        pytest.importorskip("uvicorn")
        pytest.importorskip("uvloop")
        port = _free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "apps:asgi", "--app-dir", str(served_app),
             "--port", str(port), "--loop", "zerocopy.loops:new_uvloop", "--log-level", "warning"],
            env=_env(),
            text=True,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        try:
            assert _get_when_up(f"http://127.0.0.1:{port}/", proc) == b"UVLoop"
        finally:
            proc.terminate()
            proc.communicate(timeout=30)

    def test_uvloop_missing(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without uvloop, new_uvloop is an ImportError naming the extra."""
        monkeypatch.setitem(sys.modules, "uvloop", None)
        monkeypatch.setattr(zerocopy.loops, "_uvloop_class", None)
        with pytest.raises(ImportError, match=r"pip install -e '\.\[uvloop\]'"):
            zerocopy.loops.new_uvloop()


def test_public_surface() -> None:
    """zerocopy.loops exports the mixin and the two factories, sorted."""
    assert zerocopy.loops.__all__ == ["SendfileMixin", "new_event_loop", "new_uvloop"]
    for name in zerocopy.loops.__all__:
        assert getattr(zerocopy.loops, name).__doc__
