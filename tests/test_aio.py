"""zerocopy.aio: send_file, relay, copyfile and copyfileobj on the asyncio loop (and uvloop)."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import os
import shutil
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import zerocopy
from zerocopy import aio
from zerocopy._pipes import default_pool

MiB = 1024 * 1024
Runner = Callable[[Coroutine[Any, Any, Any]], Any]

# One random blob, sliced for every payload: cheap, and no two tests share bytes
# at the same offsets by accident.
_BLOB = os.urandom(9 * MiB)


def payload(size: int, seed: int = 0) -> bytes:
    """*size* random-looking bytes, different for each *seed*."""
    start = (seed * 7919) % MiB
    if start + size <= len(_BLOB):
        return _BLOB[start : start + size]
    reps = (start + size) // len(_BLOB) + 1
    return (_BLOB * reps)[start : start + size]


# --- fixtures ---------------------------------------------------------------


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Runner:
    """Run a coroutine to completion on a fresh loop of the kind under test (60 s cap)."""
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if request.param == "uvloop":
        try:
            import uvloop
        except ImportError:
            pytest.skip("uvloop is not installed (pip install uvloop to test with it)")
        factory = uvloop.new_event_loop

    def runner(coro: Coroutine[Any, Any, Any]) -> Any:
        with asyncio.Runner(loop_factory=factory) as r:
            return r.run(asyncio.wait_for(coro, 60))

    return runner


@pytest.fixture(autouse=True)
def _empty_pool() -> None:
    """Start every test with an empty pipe pool, so fd counts compare like with like."""
    default_pool().clear()


@pytest.fixture
def no_fd_leak(no_leaks: None) -> Iterator[None]:
    """Fail on leaked fds; idle pooled pipes must be empty and are closed before the count."""
    yield
    pool = default_pool()
    assert all(pipe.queued() == 0 for pipe in pool._idle)
    pool.clear()


@pytest.fixture
def sockets() -> Iterator[list[socket.socket]]:
    """A list whose sockets are all closed after the test."""
    held: list[socket.socket] = []
    yield held
    for sock in held:
        sock.close()


# --- helpers ----------------------------------------------------------------


def tcp_pair(
    held: list[socket.socket], *, rcvbuf: int = 0, sndbuf: int = 0
) -> tuple[socket.socket, socket.socket]:
    """A connected non-blocking loopback TCP pair (first end's receive buffer, second's send)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        first = socket.socket()
        held.append(first)
        if rcvbuf:
            first.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        first.connect(listener.getsockname())
        second, _ = listener.accept()
        held.append(second)
    if sndbuf:
        second.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    first.setblocking(False)
    second.setblocking(False)
    return first, second


def unix_pair(held: list[socket.socket]) -> tuple[socket.socket, socket.socket]:
    """A non-blocking AF_UNIX stream socketpair."""
    first, second = socket.socketpair()
    held += [first, second]
    first.setblocking(False)
    second.setblocking(False)
    return first, second


def pair(kind: str, held: list[socket.socket]) -> tuple[socket.socket, socket.socket]:
    """A connected pair of the given kind ("tcp" or "unix")."""
    return tcp_pair(held) if kind == "tcp" else unix_pair(held)


async def recv_all(sock: socket.socket) -> bytes:
    """Read *sock* until end of stream."""
    loop = asyncio.get_running_loop()
    chunks = []
    while data := await loop.sock_recv(sock, MiB):
        chunks.append(data)
    return b"".join(chunks)


async def recv_digest(sock: socket.socket) -> tuple[int, str]:
    """Read *sock* until end of stream; return the count and SHA-256 of the bytes."""
    loop = asyncio.get_running_loop()
    h = hashlib.sha256()
    n = 0
    buf = bytearray(MiB)
    while k := await loop.sock_recv_into(sock, buf):
        h.update(memoryview(buf)[:k])
        n += k
    return n, h.hexdigest()


async def send_and_shut(sock: socket.socket, data: bytes) -> None:
    """Send *data*, then end the stream (SHUT_WR)."""
    await asyncio.get_running_loop().sock_sendall(sock, data)
    sock.shutdown(socket.SHUT_WR)


def reset(sock: socket.socket) -> None:
    """Close *sock* with SO_LINGER 0: the peer gets a RST."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def registered(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> tuple[bool, bool]:
    """Whether a reader and a writer callback were left on *sock* (removes them).

    uvloop's remove_reader/remove_writer return None whatever they found, so
    there this can only say False.
    """
    fd = sock.fileno()
    return loop.remove_reader(fd) is True, loop.remove_writer(fd) is True


def make_file(tmp_path: Path, data: bytes, name: str = "src.bin") -> Path:
    """Write *data* to a file under *tmp_path*."""
    path = tmp_path / name
    path.write_bytes(data)
    return path


# --- send_file --------------------------------------------------------------


class TestSendFile:
    """aio.send_file: socket.sendfile's contract on a non-blocking socket."""

    @pytest.mark.parametrize("size", [0, 1, 64 * 1024 + 17, 8 * MiB])
    def test_sizes_byte_exact(
        self,
        backend: ModuleType,
        run: Runner,
        tmp_path: Path,
        sockets: list[socket.socket],
        size: int,
    ) -> None:
        """Every size arrives byte-exact; the result is the size; the position ends at EOF."""
        data = payload(size, size)
        recv, send = tcp_pair(sockets)
        with open(make_file(tmp_path, data), "rb") as f:

            async def main() -> tuple[int, bytes]:
                receiver = asyncio.ensure_future(recv_all(recv))
                n = await aio.send_file(send, f)
                send.shutdown(socket.SHUT_WR)
                return n, await receiver

            n, got = run(main())
            assert n == size
            assert got == data
            if size:
                assert f.tell() == size

    def test_64_mib(
        self, backend: ModuleType, run: Runner, tmp_path: Path, sockets: list[socket.socket]
    ) -> None:
        """64 MiB goes through intact (checked by SHA-256)."""
        data = payload(64 * MiB, 3)
        recv, send = tcp_pair(sockets)
        with open(make_file(tmp_path, data), "rb") as f:

            async def main() -> tuple[int, tuple[int, str]]:
                receiver = asyncio.ensure_future(recv_digest(recv))
                n = await aio.send_file(send, f)
                send.shutdown(socket.SHUT_WR)
                return n, await receiver

            n, (got, digest) = run(main())
        assert n == got == len(data)
        assert digest == hashlib.sha256(data).hexdigest()

    @pytest.mark.parametrize(
        ("offset", "count"),
        [
            (0, None),
            (100, None),
            (0, 1000),
            (5000, 70000),
            (200_000 - 1, None),
            (10, 10 * 200_000),
            (200_000, None),
            (300_000, 5),
        ],
    )
    def test_offset_and_count(
        self,
        backend: ModuleType,
        run: Runner,
        tmp_path: Path,
        sockets: list[socket.socket],
        offset: int,
        count: int | None,
    ) -> None:
        """Sending starts at offset, stops at count or EOF; the position ends at offset + sent."""
        data = payload(200_000, 5)
        expected = data[offset:] if count is None else data[offset : offset + count]
        recv, send = tcp_pair(sockets)
        with open(make_file(tmp_path, data), "rb") as f:
            f.seek(12345)  # the position is not where sending starts

            async def main() -> tuple[int, bytes]:
                receiver = asyncio.ensure_future(recv_all(recv))
                n = await aio.send_file(send, f, offset, count)
                send.shutdown(socket.SHUT_WR)
                return n, await receiver

            n, got = run(main())
            assert got == expected
            assert n == len(expected)
            if n:
                assert f.tell() == offset + n

    def test_buffered_reader_after_read_ahead(
        self, backend: ModuleType, run: Runner, tmp_path: Path, sockets: list[socket.socket]
    ) -> None:
        """A BufferedReader that has read ahead sends from offset, and reads on from the end."""
        data = payload(300_000, 6)
        recv, send = tcp_pair(sockets)
        with open(make_file(tmp_path, data), "rb") as f:
            assert f.read(10) == data[:10]

            async def main() -> tuple[int, bytes]:
                receiver = asyncio.ensure_future(recv_all(recv))
                n = await aio.send_file(send, f, 1000)
                send.shutdown(socket.SHUT_WR)
                return n, await receiver

            n, got = run(main())
            assert (n, got) == (len(data) - 1000, data[1000:])
            assert f.read() == b""

    def test_bytesio(self, backend: ModuleType, run: Runner, sockets: list[socket.socket]) -> None:
        """An object without a file behind it is read and sent; the position follows."""
        data = payload(500_000, 7)
        src = io.BytesIO(data)
        recv, send = unix_pair(sockets)

        async def main() -> tuple[int, bytes]:
            receiver = asyncio.ensure_future(recv_all(recv))
            n = await aio.send_file(send, src, 3, 400_000)
            send.shutdown(socket.SHUT_WR)
            return n, await receiver

        assert run(main()) == (400_000, data[3:400_003])
        assert src.tell() == 400_003

    def test_pipe_source(
        self, backend: ModuleType, run: Runner, sockets: list[socket.socket]
    ) -> None:
        """A pipe is read in a worker thread and sent whole; no seek on an unseekable file."""
        data = payload(3 * MiB, 8)
        r, w = os.pipe()

        def write() -> None:
            os.write(w, data)
            os.close(w)

        writer = threading.Thread(target=write)
        recv, send = tcp_pair(sockets)
        with open(r, "rb") as f:

            async def main() -> tuple[int, bytes]:
                receiver = asyncio.ensure_future(recv_all(recv))
                writer.start()
                n = await aio.send_file(send, f)
                send.shutdown(socket.SHUT_WR)
                return n, await receiver

            assert run(main()) == (len(data), data)
        writer.join()

    def test_pipe_source_with_offset(
        self, backend: ModuleType, run: Runner, sockets: list[socket.socket]
    ) -> None:
        """An offset into a stream that cannot seek is a ValueError, as for zerocopy.send_file."""
        _, send = unix_pair(sockets)
        r, w = os.pipe()
        os.close(w)
        with open(r, "rb") as f, pytest.raises(ValueError, match="cannot seek"):
            run(aio.send_file(send, f, 10))

    def test_gzip_sends_decompressed(
        self, backend: ModuleType, run: Runner, tmp_path: Path, sockets: list[socket.socket]
    ) -> None:
        """A GzipFile sends what it reads (decompressed), not the bytes of its fd."""
        data = payload(300_000, 12)
        path = tmp_path / "src.gz"
        with gzip.open(path, "wb") as g:
            g.write(data)
        recv, send = unix_pair(sockets)
        with gzip.open(path, "rb") as g:

            async def main() -> tuple[int, bytes]:
                receiver = asyncio.ensure_future(recv_all(recv))
                n = await aio.send_file(send, g, 5)
                send.shutdown(socket.SHUT_WR)
                return n, await receiver

            assert run(main()) == (len(data) - 5, data[5:])
            assert g.tell() == len(data)

    def test_procfs_file(
        self, backend: ModuleType, run: Runner, sockets: list[socket.socket]
    ) -> None:
        """A procfs file (size 0 in stat) sends its real content."""
        with open("/proc/version", "rb") as f:
            expected = f.read()
        recv, send = unix_pair(sockets)
        with open("/proc/version", "rb") as f:

            async def main() -> tuple[int, bytes]:
                receiver = asyncio.ensure_future(recv_all(recv))
                n = await aio.send_file(send, f)
                send.shutdown(socket.SHUT_WR)
                return n, await receiver

            assert run(main()) == (len(expected), expected)

    def test_file_shrinks_mid_send(
        self, backend: ModuleType, run: Runner, tmp_path: Path, sockets: list[socket.socket]
    ) -> None:
        """A file truncated during the send ends cleanly with the bytes that remained."""
        data = payload(32 * MiB, 9)
        path = make_file(tmp_path, data)
        recv, send = tcp_pair(sockets, rcvbuf=64 * 1024, sndbuf=64 * 1024)
        with open(path, "rb") as f:

            async def main() -> tuple[int, bytes]:
                task = asyncio.ensure_future(aio.send_file(send, f))
                await asyncio.sleep(0.05)  # the sender blocks on full buffers
                os.truncate(path, 4 * MiB)
                receiver = asyncio.ensure_future(recv_all(recv))
                n = await task
                send.shutdown(socket.SHUT_WR)
                return n, await receiver

            n, got = run(main())
            assert n == 4 * MiB
            assert got == data[: 4 * MiB]
            assert f.tell() == 4 * MiB

    def test_cancel(
        self,
        backend: ModuleType,
        run: Runner,
        no_fd_leak: None,
        tmp_path: Path,
        sockets: list[socket.socket],
    ) -> None:
        """Cancelling reports the bytes sent, leaves the position there, and no callback or fd."""
        data = payload(8 * MiB, 10)
        recv, send = tcp_pair(sockets, rcvbuf=64 * 1024, sndbuf=64 * 1024)
        with open(make_file(tmp_path, data), "rb") as f:

            async def main() -> tuple[int, tuple[bool, bool], bytes]:
                task = asyncio.ensure_future(aio.send_file(send, f))
                await asyncio.sleep(0.05)
                task.cancel()
                with pytest.raises(asyncio.CancelledError) as info:
                    await task
                left = registered(asyncio.get_running_loop(), send)
                send.close()
                return info.value.bytes_transferred, left, await recv_all(recv)

            sent, left, got = run(main())
            assert 0 < sent < len(data)
            assert left == (False, False)
            assert got == data[:sent]
            assert f.tell() == sent

    def test_reset_carries_bytes(
        self, backend: ModuleType, run: Runner, tmp_path: Path, sockets: list[socket.socket]
    ) -> None:
        """A peer reset mid-send raises the OSError subclass with bytes_transferred."""
        data = payload(16 * MiB, 11)
        recv, send = tcp_pair(sockets, rcvbuf=64 * 1024, sndbuf=64 * 1024)
        with open(make_file(tmp_path, data), "rb") as f:

            async def main() -> None:
                task = asyncio.ensure_future(aio.send_file(send, f))
                got = await asyncio.get_running_loop().sock_recv(recv, 1000)
                assert got
                await asyncio.sleep(0.02)
                sockets.remove(recv)
                reset(recv)
                await task

            with pytest.raises((ConnectionResetError, BrokenPipeError)) as info:
                run(main())
            sent = info.value.bytes_transferred
            assert 0 < sent < len(data)
            assert f.tell() == sent

    def test_blocking_socket_rejected(
        self, backend: ModuleType, run: Runner, tmp_path: Path, sockets: list[socket.socket]
    ) -> None:
        """A blocking socket, or one with a timeout, raises ValueError."""
        _, send = unix_pair(sockets)
        with open(make_file(tmp_path, b"x"), "rb") as f:
            for timeout in (None, 5.0):
                send.settimeout(timeout)
                with pytest.raises(ValueError, match="non-blocking"):
                    run(aio.send_file(send, f))

    def test_ssl_socket_rejected(
        self, backend: ModuleType, run: Runner, tmp_path: Path, sockets: list[socket.socket]
    ) -> None:
        """An SSLSocket raises TypeError: sendfile would put plaintext on the wire."""
        _, send = unix_pair(sockets)
        ctx = ssl.create_default_context()
        tls = ctx.wrap_socket(send, server_hostname="x", do_handshake_on_connect=False)
        sockets.append(tls)
        tls.setblocking(False)
        with open(make_file(tmp_path, b"x"), "rb") as f, pytest.raises(TypeError, match="SSL"):
            run(aio.send_file(tls, f))

    @pytest.mark.parametrize(
        ("args", "error"),
        [
            ((object(), None), TypeError),
            ((None, "text"), ValueError),
            ((None, None, -1), ValueError),
            ((None, None, 1.5), TypeError),
            ((None, None, 0, 0), ValueError),
            ((None, None, 0, "5"), TypeError),
            ((None, None, True), TypeError),
        ],
    )
    def test_argument_errors_match_sync(
        self,
        backend: ModuleType,
        run: Runner,
        tmp_path: Path,
        sockets: list[socket.socket],
        args: tuple[Any, ...],
        error: type[Exception],
    ) -> None:
        """Bad arguments raise what zerocopy.send_file raises for them."""
        _, send = unix_pair(sockets)
        path = make_file(tmp_path, b"abc")
        with open(path, "rb") as fb, open(path) as ft:
            sock = send if args[0] is None else args[0]
            file = ft if args[1] == "text" else fb
            rest = args[2:]
            send.setblocking(True)
            with pytest.raises(error) as sync_info:
                zerocopy.send_file(sock, file, *rest)
            send.setblocking(False)
            with pytest.raises(error) as async_info:
                run(aio.send_file(sock, file, *rest))
        assert str(async_info.value) == str(sync_info.value)

    def test_datagram_socket_rejected(
        self, backend: ModuleType, run: Runner, tmp_path: Path
    ) -> None:
        """A datagram socket raises ValueError."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.setblocking(False)
            with (
                open(make_file(tmp_path, b"x"), "rb") as f,
                pytest.raises(ValueError, match="SOCK_STREAM"),
            ):
                run(aio.send_file(udp, f))


# --- relay ------------------------------------------------------------------


class Relayed:
    """client <-> (a  relay  b) <-> server, all non-blocking."""

    def __init__(self, kind: str, held: list[socket.socket]) -> None:
        self.client, self.a = pair(kind, held)
        self.b, self.server = pair(kind, held)


class TestRelay:
    """aio.relay: both directions, half-closes, resets, timeouts, cancellation, scale."""

    @pytest.mark.parametrize("kind", ["tcp", "unix"])
    def test_both_directions(
        self,
        backend: ModuleType,
        run: Runner,
        no_fd_leak: None,
        sockets: list[socket.socket],
        kind: str,
    ) -> None:
        """Both directions at once arrive byte-exact; counts are returned."""
        up, down = payload(3 * MiB + 5, 20), payload(2 * MiB + 11, 21)
        r = Relayed(kind, sockets)

        async def main() -> tuple[Any, ...]:
            return tuple(
                await asyncio.gather(
                    aio.relay(r.a, r.b),
                    send_and_shut(r.client, up),
                    send_and_shut(r.server, down),
                    recv_all(r.server),
                    recv_all(r.client),
                )
            )

        counts, _, _, at_server, at_client = run(main())
        assert counts == (len(up), len(down))
        assert at_server == up
        assert at_client == down

    def test_client_half_closes_first(
        self, backend: ModuleType, run: Runner, sockets: list[socket.socket]
    ) -> None:
        """The client ends its stream; the server reads it all, then answers in full."""
        request, response = payload(100_000, 22), payload(5 * MiB, 23)
        r = Relayed("tcp", sockets)

        async def server() -> bytes:
            got = await recv_all(r.server)
            await send_and_shut(r.server, response)
            return got

        async def client() -> bytes:
            await send_and_shut(r.client, request)
            return await recv_all(r.client)

        async def main() -> tuple[Any, ...]:
            return tuple(await asyncio.gather(aio.relay(r.a, r.b), server(), client()))

        counts, at_server, at_client = run(main())
        assert counts == (len(request), len(response))
        assert at_server == request
        assert at_client == response

    def test_server_half_closes_first(
        self, backend: ModuleType, run: Runner, sockets: list[socket.socket]
    ) -> None:
        """The server ends its stream first; the client keeps sending and all of it arrives."""
        greeting, upload = payload(1000, 24), payload(5 * MiB + 3, 25)
        r = Relayed("tcp", sockets)

        async def client() -> bytes:
            got = await recv_all(r.client)  # EOF first: the server is done talking
            await send_and_shut(r.client, upload)
            return got

        async def main() -> tuple[Any, ...]:
            return tuple(
                await asyncio.gather(
                    aio.relay(r.a, r.b),
                    send_and_shut(r.server, greeting),
                    recv_all(r.server),
                    client(),
                )
            )

        counts, _, at_server, at_client = run(main())
        assert counts == (len(upload), len(greeting))
        assert at_client == greeting
        assert at_server == upload

    def test_empty_both_ways(
        self, backend: ModuleType, run: Runner, sockets: list[socket.socket]
    ) -> None:
        """Two ends that close at once relay (0, 0), and the sockets stay open and non-blocking."""
        r = Relayed("unix", sockets)
        r.client.shutdown(socket.SHUT_WR)
        r.server.shutdown(socket.SHUT_WR)
        assert run(aio.relay(r.a, r.b)) == (0, 0)
        for sock in (r.a, r.b):
            assert sock.fileno() >= 0
            assert sock.gettimeout() == 0.0

    def test_reset_from_server(
        self, backend: ModuleType, run: Runner, no_fd_leak: None, sockets: list[socket.socket]
    ) -> None:
        """A server reset mid-download raises ConnectionResetError; b_to_a is what arrived."""
        r = Relayed("tcp", sockets)
        halfway = asyncio.Event()
        sent: list[bytes] = []

        async def client() -> bytes:
            loop = asyncio.get_running_loop()
            got = bytearray()
            while chunk := await loop.sock_recv(r.client, MiB):
                got += chunk
                if len(got) >= MiB:
                    halfway.set()
            return bytes(got)

        async def server() -> None:
            # Send without end until the client has 1 MiB, then reset: the
            # bytes still queued at the server are lost.
            loop = asyncio.get_running_loop()
            while not halfway.is_set():
                sent.append(payload(64 * 1024, len(sent)))
                await loop.sock_sendall(r.server, sent[-1])
            sockets.remove(r.server)
            reset(r.server)

        async def main() -> tuple[Any, bytes]:
            receiver = asyncio.ensure_future(client())
            results = await asyncio.gather(aio.relay(r.a, r.b), server(), return_exceptions=True)
            r.a.shutdown(socket.SHUT_WR)  # let the client see the end
            return results[0], await receiver

        exc, got = run(main())
        assert isinstance(exc, ConnectionResetError)
        assert exc.b_to_a == len(got)
        data = b"".join(sent)
        assert MiB <= len(got) <= len(data)
        assert got == data[: len(got)]
        assert exc.a_to_b == 0
        assert exc.bytes_transferred == (0, len(got))

    def test_reset_mid_upload(
        self, backend: ModuleType, run: Runner, no_fd_leak: None, sockets: list[socket.socket]
    ) -> None:
        """A server that resets mid-upload raises a reset error; a_to_b covers what it read."""
        data = payload(16 * MiB, 27)
        r = Relayed("tcp", sockets)

        async def server() -> int:
            loop = asyncio.get_running_loop()
            n = 0
            while n < 100_000:
                n += len(await loop.sock_recv(r.server, 65536))
            sockets.remove(r.server)
            reset(r.server)
            return n

        async def client() -> None:
            try:
                await send_and_shut(r.client, data)
            except OSError:
                pass  # the relay stops reading; the test closes a

        async def main() -> tuple[Any, int]:
            sender = asyncio.ensure_future(client())
            results = await asyncio.gather(aio.relay(r.a, r.b), server(), return_exceptions=True)
            sockets.remove(r.a)
            r.a.close()
            await sender
            return results[0], results[1]

        exc, read = run(main())
        assert isinstance(exc, (ConnectionResetError, BrokenPipeError))
        assert read <= exc.a_to_b < len(data)
        assert exc.b_to_a == 0

    def test_reset_after_half_close_is_noticed(
        self, backend: ModuleType, run: Runner, no_fd_leak: None, sockets: list[socket.socket]
    ) -> None:
        """A client that half-closed, then resets, stops the relay (no idle timeout wait)."""
        r = Relayed("tcp", sockets)

        async def main() -> tuple[Any, float]:
            task = asyncio.ensure_future(aio.relay(r.a, r.b, timeout=3))
            await send_and_shut(r.client, b"request")
            assert await recv_all(r.server) == b"request"
            t0 = time.monotonic()
            # The server stays silent: only the reset, on the side whose
            # direction has ended, can end the relay before its timeout.
            sockets.remove(r.client)
            reset(r.client)
            results = await asyncio.gather(task, return_exceptions=True)
            return results[0], time.monotonic() - t0

        exc, elapsed = run(main())
        assert isinstance(exc, (ConnectionResetError, BrokenPipeError)), repr(exc)
        assert elapsed < 2
        assert getattr(exc, "bytes_transferred", None) == (7, 0)  # (a_to_b, b_to_a)

    def test_idle_timeout(
        self, backend: ModuleType, run: Runner, sockets: list[socket.socket]
    ) -> None:
        """Nothing moving for timeout seconds raises TimeoutError with the counts so far."""
        r = Relayed("tcp", sockets)

        async def main() -> tuple[Any, bytes, float]:
            loop = asyncio.get_running_loop()
            await loop.sock_sendall(r.client, b"hello")
            t0 = time.monotonic()
            results = await asyncio.gather(
                aio.relay(r.a, r.b, timeout=0.3),
                loop.sock_recv(r.server, 100),
                return_exceptions=True,
            )
            return results[0], results[1], time.monotonic() - t0

        exc, got, elapsed = run(main())
        assert isinstance(exc, TimeoutError)
        assert (exc.a_to_b, exc.b_to_a) == (5, 0)
        assert got == b"hello"
        assert 0.25 <= elapsed < 3

    def test_timeout_is_idle_time(
        self, backend: ModuleType, run: Runner, sockets: list[socket.socket]
    ) -> None:
        """Traffic more often than the timeout keeps the relay alive past the timeout."""
        r = Relayed("unix", sockets)

        async def client() -> None:
            loop = asyncio.get_running_loop()
            for _ in range(6):
                await loop.sock_sendall(r.client, b"tick")
                await asyncio.sleep(0.1)
            r.client.shutdown(socket.SHUT_WR)
            r.server.shutdown(socket.SHUT_WR)

        async def main() -> tuple[Any, ...]:
            return tuple(
                await asyncio.gather(
                    aio.relay(r.a, r.b, timeout=0.35), client(), recv_all(r.server)
                )
            )

        counts, _, got = run(main())
        assert counts == (24, 0)
        assert got == b"tick" * 6

    def test_cancel(
        self, backend: ModuleType, run: Runner, no_fd_leak: None, sockets: list[socket.socket]
    ) -> None:
        """Cancelling reports the counts on CancelledError and leaves no callbacks or fds."""
        data = payload(100_000, 28)
        r = Relayed("tcp", sockets)

        async def main() -> tuple[Any, list[tuple[bool, bool]]]:
            loop = asyncio.get_running_loop()
            task = asyncio.ensure_future(aio.relay(r.a, r.b))
            await loop.sock_sendall(r.client, data)
            got = b""
            while len(got) < len(data):
                got += await loop.sock_recv(r.server, MiB)
            assert got == data
            task.cancel()
            with pytest.raises(asyncio.CancelledError) as info:
                await task
            return info.value, [registered(loop, s) for s in (r.a, r.b)]

        exc, left = run(main())
        assert (exc.a_to_b, exc.b_to_a) == (len(data), 0)
        assert exc.bytes_transferred == (len(data), 0)
        assert left == [(False, False), (False, False)]

    def test_cancel_with_bytes_in_flight(
        self, backend: ModuleType, run: Runner, no_fd_leak: None, sockets: list[socket.socket]
    ) -> None:
        """Cancelling while the pipe holds bytes closes that pipe instead of pooling it."""
        r = Relayed("tcp", sockets)

        async def main() -> Any:
            loop = asyncio.get_running_loop()
            task = asyncio.ensure_future(aio.relay(r.a, r.b))
            sender = asyncio.ensure_future(loop.sock_sendall(r.client, payload(32 * MiB, 29)))
            await asyncio.sleep(0.1)  # the server never reads: buffers and pipe fill
            task.cancel()
            sender.cancel()
            with pytest.raises(asyncio.CancelledError) as info:
                await task
            return info.value

        exc = run(main())
        assert 0 < exc.a_to_b < 32 * MiB

    def test_argument_errors(
        self, backend: ModuleType, run: Runner, sockets: list[socket.socket]
    ) -> None:
        """Non-sockets, datagram or blocking sockets and negative timeouts are refused."""
        a, b = unix_pair(sockets)
        with pytest.raises(TypeError):
            run(aio.relay(a, object()))  # type: ignore[arg-type]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.setblocking(False)
            with pytest.raises(ValueError, match="SOCK_STREAM"):
                run(aio.relay(udp, b))
        with pytest.raises(ValueError, match="timeout"):
            run(aio.relay(a, b, timeout=-1))
        b.settimeout(2.0)
        with pytest.raises(ValueError, match="non-blocking"):
            run(aio.relay(a, b))
        b.setblocking(True)
        with pytest.raises(ValueError, match="non-blocking"):
            run(aio.relay(a, b))

    def test_hundred_concurrent(
        self, backend: ModuleType, run: Runner, no_fd_leak: None, sockets: list[socket.socket]
    ) -> None:
        """100 relays in one loop, 256 KiB-ish each way, all byte-exact."""
        pairs = [Relayed("tcp", sockets) for _ in range(100)]

        async def one(i: int, r: Relayed) -> None:
            up, down = payload(256 * 1024 + i, 100 + i), payload(256 * 1024 - i, 300 + i)
            counts, _, _, at_server, at_client = await asyncio.gather(
                aio.relay(r.a, r.b),
                send_and_shut(r.client, up),
                send_and_shut(r.server, down),
                recv_all(r.server),
                recv_all(r.client),
            )
            assert counts == (len(up), len(down))
            assert at_server == up
            assert at_client == down

        async def main() -> None:
            await asyncio.gather(*(one(i, r) for i, r in enumerate(pairs)))

        run(main())


# --- copyfile and copyfileobj ------------------------------------------------


class TestCopy:
    """aio.copyfile and aio.copyfileobj: the blocking copies, off the loop."""

    def test_copyfile_byte_exact(self, backend: ModuleType, run: Runner, tmp_path: Path) -> None:
        """The copy is byte-exact and the result is dst."""
        data = payload(3 * MiB + 5, 40)
        src = make_file(tmp_path, data)
        dst = tmp_path / "dst.bin"
        assert run(aio.copyfile(src, dst)) == dst
        assert dst.read_bytes() == data

    @pytest.mark.parametrize("case", ["missing", "same", "dst_dir", "dst_parent_missing"])
    def test_copyfile_errors_match(
        self, backend: ModuleType, run: Runner, tmp_path: Path, case: str
    ) -> None:
        """Failures raise the same exception, errno and message as zerocopy.copyfile."""
        src = make_file(tmp_path, b"data")
        dst = tmp_path / "dst.bin"
        if case == "missing":
            src = tmp_path / "nope"
        elif case == "same":
            dst = src
        elif case == "dst_dir":
            dst = tmp_path / "dir"
            dst.mkdir()
        else:
            dst = tmp_path / "no" / "dst.bin"
        with pytest.raises(OSError) as sync_info:  # noqa: PT011 - compared below
            zerocopy.copyfile(src, dst)
        with pytest.raises(type(sync_info.value)) as async_info:
            run(aio.copyfile(src, dst))
        assert type(async_info.value) is type(sync_info.value)
        assert async_info.value.errno == sync_info.value.errno
        assert str(async_info.value) == str(sync_info.value)
        if case == "missing":
            assert isinstance(async_info.value, FileNotFoundError)
        if case == "same":
            assert isinstance(async_info.value, shutil.SameFileError)

    def test_copyfile_symlink(self, backend: ModuleType, run: Runner, tmp_path: Path) -> None:
        """follow_symlinks=False copies the link itself."""
        target = make_file(tmp_path, b"target")
        link = tmp_path / "link"
        link.symlink_to(target)
        dst = tmp_path / "copy"
        run(aio.copyfile(link, dst, follow_symlinks=False))
        assert dst.is_symlink()
        assert os.readlink(dst) == str(target)

    def test_copyfileobj_matches_sync(
        self, backend: ModuleType, run: Runner, tmp_path: Path
    ) -> None:
        """Same bytes, return value and positions as zerocopy.copyfileobj, progress in a thread."""
        data = payload(2 * MiB + 3, 41)
        src = make_file(tmp_path, data)
        seen: list[tuple[int, bool]] = []
        main_thread = threading.get_ident()

        def progress(total: int) -> None:
            seen.append((total, threading.get_ident() == main_thread))

        outcomes = []
        for copy in ("sync", "async"):
            dst = tmp_path / f"{copy}.bin"
            with open(src, "rb") as fsrc, open(dst, "wb") as fdst:
                fsrc.read(7)
                if copy == "sync":
                    n = zerocopy.copyfileobj(fsrc, fdst, count=MiB + 1)
                else:
                    n = run(aio.copyfileobj(fsrc, fdst, count=MiB + 1, progress=progress))
                outcomes.append((n, fsrc.tell(), fdst.tell(), dst.read_bytes()))
        assert outcomes[0] == outcomes[1]
        assert outcomes[1][0] == MiB + 1
        assert outcomes[1][3] == data[7 : 7 + MiB + 1]
        assert seen
        assert seen[-1][0] == MiB + 1
        assert not any(in_main for _, in_main in seen)

    def test_copyfileobj_cancel_stops_worker(self, backend: ModuleType, run: Runner) -> None:
        """Cancelling stops the copy at a chunk, waits for the worker, reports the bytes."""

        class Slow(io.RawIOBase):
            def readable(self) -> bool:
                return True

            def readinto(self, b: Any) -> int:
                time.sleep(0.005)
                b[:] = b"z" * len(b)
                return len(b)

        dst = io.BytesIO()

        async def main() -> tuple[Any, int]:
            task = asyncio.ensure_future(aio.copyfileobj(Slow(), dst, 4096))
            await asyncio.sleep(0.1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError) as info:
                await task
            size = len(dst.getvalue())
            await asyncio.sleep(0.05)
            assert len(dst.getvalue()) == size  # the worker is done with dst
            return info.value, size

        exc, size = run(main())
        assert size > 0
        assert exc.bytes_transferred == size

    def test_copyfileobj_errors_pass_through(self, backend: ModuleType, run: Runner) -> None:
        """Errors from the copy come out unchanged."""
        with pytest.raises(TypeError, match="progress"):
            run(aio.copyfileobj(io.BytesIO(), io.BytesIO(), progress=5))  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="count"):
            run(aio.copyfileobj(io.BytesIO(b"x"), io.BytesIO(), count=-1))


def test_public_surface() -> None:
    """aio exports its four coroutines and the async zero-copy sender, sorted."""
    names = ["AsyncZeroCopySender", "copyfile", "copyfileobj", "relay", "send_file"]
    assert aio.__all__ == sorted(aio.__all__) == names
    assert all(asyncio.iscoroutinefunction(getattr(aio, name)) for name in names[1:])
