"""zerocopy.aio.send_file on asyncio streams and transports (asyncio's loop and uvloop)."""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import ModuleType
from typing import Any, BinaryIO

import pytest

from netkit import MiB, make_file, payload, record_sendfile, recv_all, reset

# `name as name`: fixtures, re-exported so that linters count them as used.
from netkit import empty_pool as empty_pool
from netkit import no_fd_leak as no_fd_leak
from netkit import run as run
from zerocopy import aio

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[Any]]


@pytest.fixture
def counted(backend: ModuleType, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The byte counts of every sendfile call the current backend makes."""
    return record_sendfile(backend, monkeypatch)


async def serve_once(handler: Handler, client: Callable[[socket.socket], Awaitable[Any]]) -> Any:
    """Run *handler* on one accepted connection while *client* talks to it; return both results."""
    results: list[Any] = []
    done = asyncio.Event()

    async def wrapped(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            results.append(await handler(reader, writer))
        except BaseException as exc:  # handed to the test below
            results.append(exc)
        finally:
            done.set()

    server = await asyncio.start_server(wrapped, "127.0.0.1", 0)
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setblocking(False)
    try:
        await loop.sock_connect(sock, server.sockets[0].getsockname())
        got = await client(sock)
        await asyncio.wait_for(done.wait(), 30)
    finally:
        sock.close()
        server.close()
        await server.wait_closed()
    return results[0], got


def opened(path: Path) -> BinaryIO:
    """*path* opened for reading (a plain function: ruff's ASYNC230 flags open() in coroutines)."""
    return open(path, "rb")  # a small local file: opening it does not stall the loop


class TestStreamWriter:
    """A StreamWriter or transport for a socket: bytes, order, counts, the stream after."""

    @pytest.mark.parametrize(
        ("size", "offset", "count"),
        [(0, 0, None), (1, 0, None), (3 * MiB + 7, 5, None), (2 * MiB, MiB - 3, 4097)],
    )
    @pytest.mark.parametrize("form", ["writer", "transport"])
    def test_bytes_between_writes(
        self,
        backend: ModuleType,
        run: Any,
        tmp_path: Path,
        counted: list[int],
        size: int,
        offset: int,
        count: int | None,
        form: str,
        no_fd_leak: None,
    ) -> None:
        """Writes before and after come out in order around the file's bytes, sent by sendfile."""
        data = payload(size)
        path = make_file(tmp_path, data)
        want = data[offset:] if count is None else data[offset : offset + count]

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> int:
            writer.write(b"head\n")
            with opened(path) as f:
                n = await aio.send_file(
                    writer if form == "writer" else writer.transport, f, offset, count
                )
                assert f.tell() == offset + n
            writer.write(b"tail\n")
            await writer.drain()
            writer.close()
            await writer.wait_closed()
            return n

        n, got = run(serve_once(handler, recv_all))
        assert n == len(want)
        assert got == b"head\n" + want + b"tail\n"
        assert sum(counted) == len(want)  # every file byte went by sendfile

    def test_pending_write_buffer_goes_first(
        self, backend: ModuleType, run: Any, tmp_path: Path, no_fd_leak: None
    ) -> None:
        """Megabytes the transport still buffers (a slow reader) reach the peer before the file."""
        first = payload(16 * MiB, seed=1)
        data = payload(3 * MiB, seed=2)
        path = make_file(tmp_path, data)

        async def handler(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter
        ) -> tuple[int, int]:
            writer.write(first)
            buffered = writer.transport.get_write_buffer_size()
            with opened(path) as f:
                n = await aio.send_file(writer, f)
            writer.close()
            await writer.wait_closed()
            return buffered, n

        async def slow(sock: socket.socket) -> bytes:
            await asyncio.sleep(0.2)  # let the transport's buffer fill up first
            return await recv_all(sock)

        (buffered, n), got = run(serve_once(handler, slow))
        assert buffered > 0  # the case under test did happen
        assert n == len(data)
        assert got == first + data

    def test_reading_paused_then_resumed(
        self, backend: ModuleType, run: Any, tmp_path: Path, no_fd_leak: None
    ) -> None:
        """Bytes the peer sends meanwhile are read afterwards, none lost; reading is on again."""
        data = payload(8 * MiB)
        path = make_file(tmp_path, data)

        async def handler(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter
        ) -> tuple[bool, bool, bytes]:
            request = await reader.readline()
            with opened(path) as f:
                await aio.send_file(writer, f)
            reading = writer.transport.is_reading()
            rest = await reader.readexactly(len(b"more\n" * 1000))
            writer.write(request + rest[:5])
            writer.close()
            await writer.wait_closed()
            return reading, rest == b"more\n" * 1000, request

        async def client(sock: socket.socket) -> bytes:
            loop = asyncio.get_running_loop()
            await loop.sock_sendall(sock, b"GET\n")
            await asyncio.sleep(0.01)
            await loop.sock_sendall(sock, b"more\n" * 1000)  # while the file is in flight
            return await recv_all(sock)

        (reading, rest_ok, request), got = run(serve_once(handler, client))
        assert request == b"GET\n"
        assert reading
        assert rest_ok
        assert got == data + b"GET\nmore\n"

    def test_not_reading_stays_paused(
        self, backend: ModuleType, run: Any, tmp_path: Path, no_fd_leak: None
    ) -> None:
        """A transport whose reading was paused before is left paused."""
        path = make_file(tmp_path, payload(MiB))

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
            writer.transport.pause_reading()
            with opened(path) as f:
                await aio.send_file(writer, f)
            reading = writer.transport.is_reading()
            writer.close()
            await writer.wait_closed()
            return reading

        reading, got = run(serve_once(handler, recv_all))
        assert reading is False
        assert len(got) == MiB

    def test_non_regular_file(self, backend: ModuleType, run: Any, no_fd_leak: None) -> None:
        """A BytesIO goes out by send over the transport's socket, same bytes and count."""
        import io

        data = payload(MiB + 11)

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> int:
            n = await aio.send_file(writer, io.BytesIO(data), 10)
            writer.close()
            await writer.wait_closed()
            return n

        n, got = run(serve_once(handler, recv_all))
        assert n == len(data) - 10
        assert got == data[10:]


class TestFailures:
    """Resets and cancellation: exact counts, the transport as it was or closed by its owner."""

    def test_peer_reset(
        self, backend: ModuleType, run: Any, tmp_path: Path, no_fd_leak: None
    ) -> None:
        """A peer that resets mid-file: an OSError whose bytes_transferred is what sendfile sent."""
        path = make_file(tmp_path, payload(64 * MiB))

        async def handler(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter
        ) -> BaseException | int:
            try:
                with opened(path) as f:
                    return await aio.send_file(writer, f)
            except OSError as exc:
                return exc
            finally:
                writer.close()

        async def client(sock: socket.socket) -> int:
            loop = asyncio.get_running_loop()
            got = await loop.sock_recv(sock, 65536)
            reset(sock)
            return len(got)

        exc, got = run(serve_once(handler, client))
        assert isinstance(exc, (ConnectionResetError, BrokenPipeError)), exc
        assert got <= exc.bytes_transferred < 64 * MiB

    def test_cancelled(
        self, backend: ModuleType, run: Any, tmp_path: Path, no_fd_leak: None
    ) -> None:
        """Cancelled while the peer does not read: the exact count, and reading resumed."""
        data = payload(64 * MiB)
        path = make_file(tmp_path, data)

        async def handler(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter
        ) -> tuple[int, bool]:
            with opened(path) as f:
                task = asyncio.ensure_future(aio.send_file(writer, f))
                await asyncio.sleep(0.2)
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError as exc:
                    sent = exc.bytes_transferred  # type: ignore[attr-defined]
            reading = writer.transport.is_reading()
            writer.close()
            return sent, reading

        async def client(sock: socket.socket) -> bytes:
            await asyncio.sleep(0.4)  # not reading while the handler cancels
            return await recv_all(sock)

        (sent, reading), got = run(serve_once(handler, client))
        assert 0 < sent < len(data)
        assert reading
        assert got == data[:sent]


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate and key for 127.0.0.1, made with openssl."""
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


class TestRefused:
    """Inputs refused before any byte moves: TLS, datagram, closing, and wrong types."""

    def test_tls_transport(
        self,
        backend: ModuleType,
        run: Any,
        tmp_path: Path,
        tls_files: tuple[Path, Path],
        no_fd_leak: None,
    ) -> None:
        """A TLS stream is a TypeError (the kernel would send plaintext); the stream still works."""
        cert, key = tls_files
        path = make_file(tmp_path, payload(1000))

        async def main() -> tuple[str, bytes]:
            server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            server_ctx.load_cert_chain(cert, key)
            client_ctx = ssl.create_default_context(cafile=str(cert))
            client_ctx.check_hostname = False
            message = ""

            async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                nonlocal message
                with opened(path) as f:
                    for target in (writer, writer.transport):
                        with pytest.raises(TypeError, match="TLS") as info:
                            await aio.send_file(target, f)
                        message = str(info.value)
                writer.write(b"still fine")
                await writer.drain()
                writer.close()

            server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=server_ctx)
            r, w = await asyncio.open_connection(*server.sockets[0].getsockname(), ssl=client_ctx)
            got = await r.read()
            w.close()
            server.close()
            await server.wait_closed()
            return message, got

        message, got = run(main())
        assert "TLS" in message
        assert got == b"still fine"

    def test_datagram_transport(
        self, backend: ModuleType, run: Any, tmp_path: Path, no_fd_leak: None
    ) -> None:
        """A datagram transport is a TypeError."""
        path = make_file(tmp_path, b"x")

        async def main() -> None:
            loop = asyncio.get_running_loop()
            transport, _ = await loop.create_datagram_endpoint(
                asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
            )
            try:
                with opened(path) as f, pytest.raises(TypeError, match="datagram"):
                    await aio.send_file(transport, f)  # type: ignore[arg-type]
            finally:
                transport.close()
                await asyncio.sleep(0)

        run(main())

    def test_closing_writer(
        self, backend: ModuleType, run: Any, tmp_path: Path, counted: list[int], no_fd_leak: None
    ) -> None:
        """A closed writer is a ValueError and nothing is sent."""
        path = make_file(tmp_path, payload(100))

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> str:
            writer.close()
            with opened(path) as f, pytest.raises(ValueError, match="closing") as info:
                await aio.send_file(writer, f)
            return str(info.value)

        _, got = run(serve_once(handler, recv_all))
        assert got == b""
        assert counted == []

    @pytest.mark.parametrize(
        ("offset", "count", "error"),
        [(-1, None, ValueError), ("0", None, TypeError), (0, 0, ValueError), (0, 1.5, TypeError)],
    )
    def test_bad_arguments(
        self,
        backend: ModuleType,
        run: Any,
        tmp_path: Path,
        offset: Any,
        count: Any,
        error: type[Exception],
        no_fd_leak: None,
    ) -> None:
        """Bad offsets and counts are refused as for a socket; reading left on, nothing sent."""
        path = make_file(tmp_path, payload(100))

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
            with opened(path) as f, pytest.raises(error):
                await aio.send_file(writer, f, offset, count)
            reading = writer.transport.is_reading()
            writer.close()
            return reading

        reading, got = run(serve_once(handler, recv_all))
        assert reading
        assert got == b""

    @pytest.mark.parametrize("target", [42, "sock", object()])
    def test_not_a_stream(self, backend: ModuleType, run: Any, tmp_path: Path, target: Any) -> None:
        """Neither a socket nor a stream: TypeError."""
        path = make_file(tmp_path, b"x")

        async def main() -> None:
            with opened(path) as f, pytest.raises(TypeError):
                await aio.send_file(target, f)

        run(main())
