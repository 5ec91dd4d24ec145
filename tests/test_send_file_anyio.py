"""zerocopy.anyio.send_file on anyio's asyncio and trio backends, over sockets and SocketStreams."""

from __future__ import annotations

import io
import os
import socket
import ssl
import subprocess
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import anyio.abc
import pytest

import zerocopy
from anyiokit import Counter, Run, aclose, as_stream, end_for, pair, recv_all, recv_digest, sha
from anyiokit import arun as arun
from anyiokit import sendfile_counter as sendfile_counter
from anyiokit import uvloop_warmed as uvloop_warmed
from netkit import MiB, make_file, payload, reset
from netkit import empty_pool as empty_pool
from netkit import no_fd_leak as no_fd_leak
from netkit import sockets as sockets
from zerocopy import anyio as zc_anyio


class TestBytes:
    """Bytes, counts and positions, on both anyio backends, for raw sockets and streams."""

    @pytest.mark.parametrize("size", [0, 1, 64 * 1024 + 17, 4 * MiB])
    @pytest.mark.parametrize(
        ("kind", "family"), [("raw", "tcp"), ("stream", "tcp"), ("stream", "unix")]
    )
    def test_sizes_byte_exact(
        self,
        no_fd_leak: None,
        backend: ModuleType,
        arun: Run,
        tmp_path: Path,
        sockets: list[socket.socket],
        sendfile_counter: Counter,
        size: int,
        kind: str,
        family: str,
    ) -> None:
        """Every size arrives byte-exact (SHA-256), all by sendfile; result: size; position: EOF."""
        data = payload(size, size)
        recv, send = pair(family, sockets)
        with open(make_file(tmp_path, data), "rb") as f:

            async def main() -> tuple[int, tuple[int, str]]:
                end = await end_for(kind, send)
                async with anyio.create_task_group() as tg:
                    got: list[tuple[int, str]] = []

                    async def receive() -> None:
                        got.append(await recv_digest(recv))

                    tg.start_soon(receive)
                    n = await zc_anyio.send_file(end, f)
                    send.shutdown(socket.SHUT_WR)
                await aclose(end)
                return n, got[0]

            n, (count, digest) = arun(main)
            assert n == count == size
            assert digest == sha(data)
            assert f.tell() == size
        assert sendfile_counter.moved == size

    @pytest.mark.parametrize(
        ("offset", "count"),
        [
            (0, None),
            (100, None),
            (0, 1000),
            (5000, 70000),
            (199_999, None),
            (10, 10**6),
            (300_000, 5),
        ],
    )
    def test_offset_and_count(
        self,
        backend: ModuleType,
        arun: Run,
        tmp_path: Path,
        sockets: list[socket.socket],
        offset: int,
        count: int | None,
    ) -> None:
        """Sending starts at offset, stops at count or EOF; the position ends at offset + sent."""
        data = payload(200_000, 5)
        expected = data[offset:] if count is None else data[offset : offset + count]
        recv, send = pair("tcp", sockets)
        with open(make_file(tmp_path, data), "rb") as f:
            f.seek(12345)  # not where sending starts

            async def main() -> tuple[int, bytes]:
                end = await end_for("stream", send)
                n = await zc_anyio.send_file(end, f, offset, count)
                await aclose(end)
                send.shutdown(socket.SHUT_WR)
                return n, await recv_all(recv)

            n, got = arun(main)
            assert (n, got) == (len(expected), expected)
            if n:
                assert f.tell() == offset + n

    def test_stream_usable_around(
        self, backend: ModuleType, arun: Run, tmp_path: Path, sockets: list[socket.socket]
    ) -> None:
        """A stream's own sends before and after keep their order around the file's bytes."""
        data = payload(300_000, 9)
        recv, send = pair("tcp", sockets)
        with open(make_file(tmp_path, data), "rb") as f:

            async def main() -> bytes:
                stream = await as_stream(send.dup())
                got: list[bytes] = []
                async with anyio.create_task_group() as tg:

                    async def receive() -> None:
                        got.append(await recv_all(recv))

                    tg.start_soon(receive)
                    await stream.send(b"head:")
                    await zc_anyio.send_file(stream, f)
                    await stream.send(b":tail")
                    await stream.send_eof()
                await stream.aclose()
                return got[0]

            assert arun(main) == b"head:" + data + b":tail"

    def test_after_cancelled_send(
        self, backend: ModuleType, arun: Run, tmp_path: Path, sockets: list[socket.socket]
    ) -> None:
        """What a cancelled stream.send() left to write still goes before the file's bytes."""
        big, data = payload(8 * MiB, 10), payload(300_000, 11)
        recv, send = pair("tcp", sockets)
        with open(make_file(tmp_path, data), "rb") as f:

            async def main() -> bytes:
                stream = await as_stream(send.dup())
                with anyio.move_on_after(0.1):
                    await stream.send(big)  # nobody reads yet: cancelled part-way
                got: list[bytes] = []
                async with anyio.create_task_group() as tg:

                    async def receive() -> None:
                        got.append(await recv_all(recv))

                    tg.start_soon(receive)
                    assert await zc_anyio.send_file(stream, f) == len(data)
                    await stream.send_eof()
                await stream.aclose()
                return got[0]

            got = arun(main)
        # asyncio's transport still sends all of big; trio's send stopped part-way.
        sent = len(got) - len(data)
        assert 0 < sent <= len(big)
        assert got == big[:sent] + data
        if arun.backend == "asyncio":
            assert sent == len(big)


class TestNotRegular:
    """Objects without a regular file behind them are read and sent, still byte-exact."""

    def test_bytesio(
        self,
        backend: ModuleType,
        arun: Run,
        sockets: list[socket.socket],
        sendfile_counter: Counter,
    ) -> None:
        """A BytesIO goes out by send (no sendfile call), from offset, byte-exact."""
        data = payload(700_000, 2)
        recv, send = pair("tcp", sockets)

        async def main() -> tuple[int, bytes]:
            end = await end_for("stream", send)
            async with anyio.create_task_group() as tg:
                got: list[bytes] = []

                async def receive() -> None:
                    got.append(await recv_all(recv))

                tg.start_soon(receive)
                n = await zc_anyio.send_file(end, io.BytesIO(data), 3)
                await aclose(end)
                send.shutdown(socket.SHUT_WR)
            return n, got[0]

        assert arun(main) == (len(data) - 3, data[3:])
        assert sendfile_counter.calls == 0

    def test_pipe(self, backend: ModuleType, arun: Run, sockets: list[socket.socket]) -> None:
        """A pipe (read in a worker thread) arrives byte-exact up to its end."""
        data = payload(500_000, 4)
        recv, send = pair("unix", sockets)
        r, w = os.pipe()
        writer = threading.Thread(target=lambda: (os.write(w, data), os.close(w)))
        writer.start()
        try:
            with open(r, "rb") as f:

                async def main() -> tuple[int, bytes]:
                    async with anyio.create_task_group() as tg:
                        got: list[bytes] = []

                        async def receive() -> None:
                            got.append(await recv_all(recv))

                        tg.start_soon(receive)
                        n = await zc_anyio.send_file(send, f)
                        send.shutdown(socket.SHUT_WR)
                    return n, got[0]

                assert arun(main) == (len(data), data)
        finally:
            writer.join(10)


class TestFailures:
    """Cancellation and resets carry exact counts; nothing leaks."""

    def test_cancel_exact_count(
        self,
        no_fd_leak: None,
        backend: ModuleType,
        arun: Run,
        tmp_path: Path,
        sockets: list[socket.socket],
    ) -> None:
        """A cancelled send says on the cancellation exactly how many bytes the peer gets."""
        data = payload(8 * MiB, 6)
        recv, send = pair("tcp", sockets)
        with open(make_file(tmp_path, data), "rb") as f:

            async def main() -> tuple[int, int, str]:
                end = await end_for("stream", send)
                seen: list[BaseException] = []
                with anyio.move_on_after(0.2):
                    try:
                        await zc_anyio.send_file(end, f)  # nobody reads: it blocks
                    except BaseException as exc:
                        seen.append(exc)
                        raise
                await aclose(end)
                send.shutdown(socket.SHUT_WR)
                count, digest = await recv_digest(recv)
                assert isinstance(seen[0], anyio.get_cancelled_exc_class())
                return zerocopy.bytes_transferred(seen[0]) or 0, count, digest

            reported, count, digest = arun(main)
            assert f.tell() == count
        assert 0 < reported == count < len(data)
        assert digest == sha(data[:count])

    def test_peer_reset(
        self,
        no_fd_leak: None,
        backend: ModuleType,
        arun: Run,
        tmp_path: Path,
        sockets: list[socket.socket],
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """A peer that resets mid-send raises an OSError with the count; nothing is logged."""
        data = payload(8 * MiB, 7)
        recv, send = pair("tcp", sockets)
        sockets.remove(recv)
        with open(make_file(tmp_path, data), "rb") as f:

            async def main() -> BaseException:
                end = await end_for("stream", send)
                try:
                    async with anyio.create_task_group() as tg:

                        async def cut() -> None:
                            await recv_digest(recv, 100_000)
                            reset(recv)

                        tg.start_soon(cut)
                        with pytest.raises((ConnectionResetError, BrokenPipeError)) as info:
                            await zc_anyio.send_file(end, f)
                finally:
                    await aclose(end)
                return info.value

            exc = arun(main)
        assert isinstance(exc, (ConnectionResetError, BrokenPipeError))
        assert (zerocopy.bytes_transferred(exc) or 0) >= 100_000
        assert not caplog.records


class TestArguments:
    """Bad input: TypeError or ValueError before any byte moves."""

    def test_errors(
        self,
        no_fd_leak: None,
        backend: ModuleType,
        arun: Run,
        tmp_path: Path,
        sockets: list[socket.socket],
    ) -> None:
        """Wrong types, blocking or datagram sockets, closed streams, bad offsets: nothing sent."""
        recv, send = pair("tcp", sockets)
        blocking, _ = pair("unix", sockets)
        blocking.setblocking(True)
        dgram = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        dgram.setblocking(False)
        sockets.append(dgram)
        path = make_file(tmp_path, payload(1000))

        f = open(path, "rb")  # noqa: SIM115 - closed below, after the loop ends
        text = open(path)  # noqa: SIM115 - likewise

        async def main() -> None:
            closed = await as_stream(send.dup())
            await closed.aclose()
            stream = await as_stream(send.dup())
            cases: list[tuple[Any, Any, dict[str, Any], type[Exception]]] = [
                (send.fileno(), f, {}, TypeError),
                ("sock", f, {}, TypeError),
                (blocking, f, {}, ValueError),
                (dgram, f, {}, ValueError),
                (closed, f, {}, ValueError),
                (stream, text, {}, ValueError),
                (stream, f, {"offset": -1}, ValueError),
                (stream, f, {"offset": 1.5}, TypeError),
                (stream, f, {"count": 0}, ValueError),
                (send, f, {"count": "1"}, TypeError),
            ]
            for sock, file, kw, error in cases:
                with pytest.raises(error):
                    await zc_anyio.send_file(sock, file, **kw)
            await stream.aclose()
            with pytest.raises(BlockingIOError):
                recv.recv(1)  # nothing went out

        try:
            arun(main)
        finally:
            f.close()
            text.close()

    def test_tls_socket_refused(
        self, backend: ModuleType, arun: Run, sockets: list[socket.socket]
    ) -> None:
        """An ssl.SSLSocket is a TypeError: the kernel would put plaintext on it."""
        _, send = pair("tcp", sockets)
        ctx = ssl.create_default_context()
        tls = ctx.wrap_socket(send.dup(), do_handshake_on_connect=False, server_hostname="x")
        sockets.append(tls)

        async def main() -> None:
            with pytest.raises(TypeError):
                await zc_anyio.send_file(tls, io.BytesIO(b"x"))

        arun(main)


def test_import_zerocopy_imports_no_anyio() -> None:
    """``import zerocopy`` (and zerocopy.aio) imports neither anyio nor trio."""
    code = "import sys, zerocopy, zerocopy.aio; print(sorted({'anyio', 'trio'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_surface() -> None:
    """zerocopy.anyio exports send_file, relay and the sender, and holds no logic of its own."""
    assert zc_anyio.__all__ == ["AsyncZeroCopySender", "relay", "send_file"]
    assert zc_anyio.send_file.__module__ == "zerocopy._send_file.anyio_"
    assert zc_anyio.relay.__module__ == "zerocopy._relay.anyio_"
    assert zc_anyio.AsyncZeroCopySender.__module__ == "zerocopy._msg_zerocopy.anyio_"


@pytest.mark.parametrize("version", ["4.6.2", "5.0.0", "3.7.1"])
def test_untested_anyio_refused(monkeypatch: pytest.MonkeyPatch, version: str) -> None:
    """An anyio outside 4.7 to 4.x is an ImportError naming the supported range."""
    from zerocopy import _anyiowait

    monkeypatch.setattr(_anyiowait.importlib.metadata, "version", lambda name: version)
    with pytest.raises(ImportError, match=r"anyio>=4\.7,<5.*" + version.replace(".", r"\.")):
        _anyiowait.check_version()


def test_tested_anyio_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    """anyio 4.7.0 and 4.16.0 pass the version check."""
    from zerocopy import _anyiowait

    for version in ("4.7.0", "4.16.0"):
        monkeypatch.setattr(_anyiowait.importlib.metadata, "version", lambda name, v=version: v)
        _anyiowait.check_version()
