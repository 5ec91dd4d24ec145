"""zerocopy.aio.send_file on the asyncio loop (and uvloop); and aio's public surface."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import os
import socket
import ssl
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import zerocopy
from netkit import MiB, Runner, make_file, payload, recv_all, registered, reset, tcp_pair, unix_pair

# `name as name`: fixtures, re-exported so that linters count them as used (the
# autouse empty_pool applies to the modules that import it).
from netkit import empty_pool as empty_pool
from netkit import no_fd_leak as no_fd_leak
from netkit import run as run
from netkit import sockets as sockets
from zerocopy import aio


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


def test_public_surface() -> None:
    """aio exports its four coroutines and the async zero-copy sender, sorted."""
    names = ["AsyncZeroCopySender", "copyfile", "copyfileobj", "relay", "send_file"]
    assert aio.__all__ == sorted(aio.__all__) == names
    assert all(asyncio.iscoroutinefunction(getattr(aio, name)) for name in names[1:])
