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


#: Run in a fresh interpreter: PATCH (which fakes another anyio release) runs
#: before zerocopy.anyio is imported; then send_file sends the file given in
#: argv over an anyio asyncio TCP stream and over a raw socket, and relay is
#: tried on two streams.  It prints JSON: each body's hash, the bytes the
#: zerocopy backend moved by sendfile for each, and the relay's outcome.
UPGRADE_SCRIPT = """
import hashlib, json, socket, sys
import anyio, anyio.abc
PATCH

from zerocopy import _backend
import zerocopy.anyio as za

moved = []
backend = _backend.current()
real = backend.sendfile
def counting(*args, **kwargs):
    n = real(*args, **kwargs)
    moved.append(n)
    return n
backend.sendfile = counting

async def pair():
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    for s in (client, server):
        s.setblocking(False)
    return client, server

async def through(make_target):
    client, server = await pair()
    peer = await anyio.abc.SocketStream.from_socket(client)
    target = await make_target(server)
    got = bytearray()
    async def receive():
        try:
            while True:
                got.extend(await peer.receive())
        except anyio.EndOfStream:
            pass
    before = len(moved)
    async with anyio.create_task_group() as tg:
        tg.start_soon(receive)
        with open(sys.argv[1], "rb") as f:
            sent = await za.send_file(target, f, 7, None)
            position = f.tell()
        if isinstance(target, socket.socket):
            target.shutdown(socket.SHUT_WR)
        else:
            await target.send_eof()
    await peer.aclose()
    if isinstance(target, socket.socket):
        target.close()
    else:
        await target.aclose()
    return {"sha": hashlib.sha256(got).hexdigest(), "sent": sent, "position": position,
            "moved": sum(moved[before:])}

async def relay():
    (a, a_peer), (b, b_peer) = await pair(), await pair()
    streams = [await anyio.abc.SocketStream.from_socket(s) for s in (a, b)]
    try:
        await za.relay(*streams, timeout=0.5)
        outcome = "ran"
    except TypeError as exc:
        outcome = "TypeError: " + str(exc)
    except TimeoutError:
        outcome = "ran"
    for s in (*streams,):
        await s.aclose()
    a_peer.close(); b_peer.close()
    return outcome

async def main():
    async def raw(sock):
        return sock
    stream = await through(anyio.abc.SocketStream.from_socket)
    raw_result = await through(raw)
    print(json.dumps({"stream": stream, "raw": raw_result, "relay": await relay()}))

anyio.run(main, backend="asyncio")
"""

#: anyio looks like release 5.0.0 (every hook still there).
FAKE_VERSION = (
    "import importlib.metadata as m\n"
    "real_version = m.version\n"
    "m.version = lambda name: '5.0.0' if name == 'anyio' else real_version(name)\n"
)
#: And its asyncio SocketStream no longer sets _transport itself (a wrapped
#: original still does, so anyio works; zerocopy cannot rely on it).
TRANSPORT_GONE = (
    FAKE_VERSION + "from anyio._backends._asyncio import SocketStream as S\n"
    "init = S.__init__\n"
    "S.__init__ = lambda self, *args: init(self, *args)\n"
)


def run_upgrade(patch: str, path: Path) -> tuple[dict[str, Any], str]:
    """Run UPGRADE_SCRIPT with *patch* in a fresh interpreter; its JSON and its stderr."""
    code = UPGRADE_SCRIPT.replace("PATCH", patch)
    out = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    result: dict[str, Any] = __import__("json").loads(out.stdout)
    return result, out.stderr


@pytest.fixture(scope="module")
def upgrade_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    """A file of several sendfile calls' worth, odd-sized, and its bytes."""
    data = os.urandom(3 * MiB + 17)
    path = tmp_path_factory.mktemp("anyio") / "file.bin"
    path.write_bytes(data)
    return path, data


def test_untested_anyio_runs_with_a_warning(upgrade_file: tuple[Path, bytes]) -> None:
    """anyio 5.0.0 with every hook: one UntestedVersionWarning; streams and sockets by sendfile."""
    path, data = upgrade_file
    result, stderr = run_upgrade(FAKE_VERSION, path)
    expected = {"sha": sha(data[7:]), "sent": len(data) - 7, "position": len(data)}
    for end in ("stream", "raw"):
        assert result[end] == {**expected, "moved": len(data) - 7}, end
    assert result["relay"] == "ran"
    assert stderr.count("UntestedVersionWarning") == 1
    assert "zerocopy.anyio is untested with anyio 5.0.0 (tested: anyio 4.7 to 4.16)" in stderr
    assert "IntegrationFallbackWarning" not in stderr


def test_anyio_without_hook_falls_back(upgrade_file: tuple[Path, bytes]) -> None:
    """``SocketStream._transport`` gone: a warning; streams by send(), raw sockets by sendfile."""
    path, data = upgrade_file
    result, stderr = run_upgrade(TRANSPORT_GONE, path)
    expected = {"sha": sha(data[7:]), "sent": len(data) - 7, "position": len(data)}
    assert result["stream"] == {**expected, "moved": 0}  # the stream's own send()
    assert result["raw"] == {**expected, "moved": len(data) - 7}
    assert result["relay"].startswith("TypeError: a: this anyio's asyncio SocketStream lacks")
    assert "IntegrationFallbackWarning" in stderr
    assert (
        "anyio 5.0.0 lacks SocketStream()._protocol, SocketStream()._transport"
        " (tested: anyio 4.7 to 4.16)"
    ) in stderr
    assert "UntestedVersionWarning" not in stderr
    assert "Traceback" not in stderr


def test_tested_anyio_no_warning(upgrade_file: tuple[Path, bytes]) -> None:
    """The installed (tested) anyio: no warning, streams and sockets by sendfile."""
    path, data = upgrade_file
    result, stderr = run_upgrade("", path)
    assert result["stream"]["moved"] == result["raw"]["moved"] == len(data) - 7
    assert result["stream"]["sha"] == sha(data[7:])
    assert "Warning" not in stderr


def test_anyio_without_wait_readable_is_an_import_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """An anyio without ``wait_readable`` (older than 4.7): ImportError naming what is missing."""
    from zerocopy import _anyiowait

    monkeypatch.setattr(anyio, "wait_readable", None)  # gone, as before anyio 4.7
    monkeypatch.setattr(_anyiowait.importlib.metadata, "version", lambda name: "4.6.2")
    with pytest.raises(ImportError, match=r"needs anyio\.wait_readable .*anyio 4\.6\.2 lacks"):
        _anyiowait.check_version()


def test_anyio_hooks_present() -> None:
    """The installed anyio has every private attribute its asyncio streams' zero-copy needs."""
    import anyio._backends._asyncio as backend

    from zerocopy import _anyiowait, _compat

    assert _compat.anyio_missing_hooks(backend) == []
    assert _anyiowait.STREAM_HOOKS
    assert _compat.anyio_missing_hooks(None) == ["the module anyio._backends._asyncio"]
    bare = type("Module", (), {})
    assert _compat.anyio_missing_hooks(bare) == [
        "SocketStream()._protocol",
        "SocketStream()._transport",
        "StreamProtocol().read_event",
        "StreamProtocol().read_queue",
    ]
