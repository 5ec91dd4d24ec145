"""zerocopy.send_file: socket.socket.sendfile's contract with sendfile(2) underneath.

Real sockets (loopback TCP and AF_UNIX socket pairs), real files, and threads
for the receiving ends.  The reference is :meth:`socket.socket.sendfile` run on
identical input: return value, bytes received, file position afterwards, and
the exceptions it raises.  Every test that takes ``backend`` runs once per
backend; every test checks that it leaves no fd (the default pipe pool's idle
pipes aside) and no thread behind.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import random
import socket
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import zerocopy
from conftest import stream_pair, tcp_pair
from timekit import Spinner, assert_waited, scaled

KiB = 1 << 10
MiB = 1 << 20
ODD = 64 * KiB + 17  # crosses a page and a default pipe, not aligned

# --- leak checks --------------------------------------------------------------


# Every test here fails if it leaves fds (pooled idle pipes aside) or threads.
pytestmark = pytest.mark.usefixtures("no_leaks")


# --- helpers ------------------------------------------------------------------


def _small_buffers(sender: socket.socket, receiver: socket.socket, size: int = 64 * KiB) -> None:
    sender.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)
    receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)


class Receiver(threading.Thread):
    """Reads a socket to end of stream in a thread, keeping the bytes (or a hash).

    ``gate`` (an Event) holds reading back until set; ``pause`` sleeps between
    reads of ``chunk`` bytes, for a slow reader.
    """

    def __init__(
        self,
        sock: socket.socket,
        *,
        keep: bool = True,
        gate: threading.Event | None = None,
        pause: float = 0.0,
        chunk: int = MiB,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        super().__init__(daemon=True)
        self.sock = sock
        self.keep = keep
        self.gate = gate
        self.pause = pause
        self.chunk = chunk
        self.progress = progress
        self.data = bytearray()
        self.hash = hashlib.blake2b()
        self.count = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        buf = memoryview(bytearray(self.chunk))
        try:
            if self.gate is not None:
                self.gate.wait(30)
            while True:
                n = self.sock.recv_into(buf)
                if not n:
                    return
                self.count += n
                if self.keep:
                    self.data += buf[:n]
                else:
                    self.hash.update(buf[:n])
                if self.progress is not None:
                    self.progress(self.count)
                if self.pause:
                    time.sleep(self.pause)
        except BaseException as exc:  # reported by the test
            self.error = exc

    def finish(self, timeout: float = 30) -> None:
        self.join(timeout)
        assert not self.is_alive(), "receiver did not see end of stream"
        assert self.error is None, self.error


def _payload(n: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(n)


@pytest.fixture
def make_file(tmp_path: Path) -> Callable[[bytes], Path]:
    """Write bytes to a new file in tmp_path; return its path."""
    counter = iter(range(1_000_000))

    def make(data: bytes) -> Path:
        path = tmp_path / f"src{next(counter)}.bin"
        path.write_bytes(data)
        return path

    return make


@pytest.fixture(params=["tcp", "unix"])
def kind(request: pytest.FixtureRequest) -> str:
    """The socket kind: loopback TCP or an AF_UNIX socket pair."""
    return str(request.param)


def _run(
    send: Callable[..., int], kind: str, file: Any, *args: Any, **kwargs: Any
) -> tuple[Any, bytes]:
    """Call ``send(sender, file, ...)`` with a receiver running; (result or exception, bytes)."""
    sender, receiver = stream_pair(kind)
    rx = Receiver(receiver)
    rx.start()
    try:
        try:
            result: Any = send(sender, file, *args, **kwargs)
        except Exception as exc:  # compared by the caller
            result = exc
        sender.shutdown(socket.SHUT_WR)
        rx.finish()
    finally:
        sender.close()
        rx.join(5)
        receiver.close()
    return result, bytes(rx.data)


def _socket_sendfile(sock: socket.socket, file: Any, offset: int = 0, count: Any = None) -> int:
    return sock.sendfile(file, offset, count)


def _open(path: Path, how: str) -> Any:
    if how == "raw":
        return open(path, "rb", buffering=0)
    if how == "buffered":
        return open(path, "rb")
    return open(path, "r+b")


# --- byte-exact transfers -----------------------------------------------------


class TestSizes:
    @pytest.mark.parametrize("size", [0, 1, ODD, 8 * MiB], ids=["0B", "1B", "64K+17", "8M"])
    def test_whole_file(
        self, backend: ModuleType, kind: str, make_file: Callable[[bytes], Path], size: int
    ) -> None:
        """The whole file arrives byte-exact, the return is its size, the position its end."""
        data = _payload(size)
        with open(make_file(data), "rb") as f:
            sent, got = _run(zerocopy.send_file, kind, f)
            assert sent == size
            assert got == data
            assert f.tell() == size

    def test_file_object_kinds(
        self, backend: ModuleType, kind: str, make_file: Callable[[bytes], Path]
    ) -> None:
        """FileIO, BufferedReader and BufferedRandom all go out byte-exact."""
        data = _payload(ODD, seed=3)
        path = make_file(data)
        for how in ("raw", "buffered", "random"):
            with _open(path, how) as f:
                f.read(10)  # a buffered reader has read ahead: must not matter
                sent, got = _run(zerocopy.send_file, kind, f, 5, 1000)
                assert (sent, got, f.tell()) == (1000, data[5:1005], 1005), how

    def test_sendfile_is_used(
        self, backend: ModuleType, make_file: Callable[[bytes], Path], monkeypatch: Any
    ) -> None:
        """A regular file goes through sendfile, not read and send."""
        from zerocopy._send_file import blocking as send_file_blocking

        def no_send(*args: Any) -> int:
            raise AssertionError("the send fallback was used for a regular file")

        monkeypatch.setattr(send_file_blocking, "_via_send", no_send)
        data = _payload(ODD)
        with open(make_file(data), "rb") as f:
            sent, got = _run(zerocopy.send_file, "tcp", f)
        assert (sent, got) == (ODD, data)

    def test_socket_with_timeout(
        self, backend: ModuleType, kind: str, make_file: Callable[[bytes], Path]
    ) -> None:
        """A socket with a (generous) timeout sends the whole file too."""
        data = _payload(8 * MiB, seed=4)
        sender, receiver = stream_pair(kind)
        sender.settimeout(10)
        _small_buffers(sender, receiver)
        rx = Receiver(receiver)
        rx.start()
        try:
            with open(make_file(data), "rb") as f:
                assert zerocopy.send_file(sender, f) == len(data)
            sender.shutdown(socket.SHUT_WR)
            rx.finish()
            assert rx.data == data
            assert sender.gettimeout() == 10
        finally:
            sender.close()
            rx.join(5)
            receiver.close()


class TestHuge:
    @pytest.mark.slow
    def test_256_mib_over_tcp(self, backend: ModuleType, tmp_path: Path) -> None:
        """256 MiB of distinct blocks reach a TCP receiver byte-exact (by hash)."""
        size = 256 * MiB
        base = os.urandom(MiB)
        want = hashlib.blake2b()
        path = tmp_path / "big.bin"
        with open(path, "wb") as out:
            for i in range(size // MiB):
                block = struct.pack("<Q", i) + base[8:]
                want.update(block)
                out.write(block)
        sender, receiver = tcp_pair()
        rx = Receiver(receiver, keep=False)
        rx.start()
        try:
            with open(path, "rb") as f:
                assert zerocopy.send_file(sender, f) == size
                assert f.tell() == size
            sender.shutdown(socket.SHUT_WR)
            rx.finish(120)
        finally:
            sender.close()
            rx.join(5)
            receiver.close()
            path.unlink()
        assert rx.count == size
        assert rx.hash.digest() == want.digest()


# --- socket.sendfile's semantics ----------------------------------------------

_CASES = [
    (0, None),
    (0, 1),
    (0, 100),
    (1, None),
    (4095, 4097),
    (4096, None),
    (ODD - 1, None),
    (ODD - 1, 10),
    (ODD, None),
    (ODD, 5),
    (ODD + 10, None),
    (ODD + 10, 3),
    (100, ODD),
    (0, ODD),
    (0, ODD * 3),
    (12345, 1),
]


class TestLikeSocketSendfile:
    @pytest.mark.parametrize(("offset", "count"), _CASES)
    @pytest.mark.parametrize("how", ["raw", "buffered"])
    def test_offset_and_count(
        self,
        backend: ModuleType,
        make_file: Callable[[bytes], Path],
        offset: int,
        count: int | None,
        how: str,
    ) -> None:
        """Return value, bytes received and file position equal socket.sendfile's."""
        data = _payload(ODD, seed=5)
        path = make_file(data)
        results = []
        for fn in (_socket_sendfile, zerocopy.send_file):
            with _open(path, how) as f:
                f.seek(777)  # the starting position must not matter
                sent, got = _run(fn, "tcp", f, offset, count)
                results.append((sent, got, f.tell()))
        assert results[1] == results[0]
        end = len(data) if count is None else min(len(data), offset + count)
        assert results[1][1] == data[offset:end]

    @settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(
        size=st.integers(0, 3 * 4096 + 5),
        offset=st.integers(0, 4 * 4096),
        count=st.one_of(st.none(), st.integers(1, 5 * 4096)),
        how=st.sampled_from(["raw", "buffered", "random"]),
        kind=st.sampled_from(["tcp", "unix"]),
    )
    def test_property(
        self,
        backend: ModuleType,
        make_file: Callable[[bytes], Path],
        size: int,
        offset: int,
        count: int | None,
        how: str,
        kind: str,
    ) -> None:
        """For random sizes, offsets and counts: the same outcome as socket.sendfile."""
        data = _payload(size, seed=size)
        path = make_file(data)
        results = []
        for fn in (_socket_sendfile, zerocopy.send_file):
            with _open(path, how) as f:
                sent, got = _run(fn, kind, f, offset, count)
                results.append((sent, got, f.tell()))
        assert results[1] == results[0]

    def test_bytesio_like_socket_sendfile(self, backend: ModuleType) -> None:
        """A BytesIO with offset and count: same return, bytes and position as socket.sendfile."""
        data = _payload(ODD, seed=6)
        for offset, count in [(0, None), (10, 100), (ODD - 3, None), (5, ODD * 2)]:
            results = []
            for fn in (_socket_sendfile, zerocopy.send_file):
                f = io.BytesIO(data)
                sent, got = _run(fn, "unix", f, offset, count)
                results.append((sent, got, f.tell()))
            assert results[1] == results[0], (offset, count)


def _exc_type(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> type[BaseException] | None:
    try:
        fn(*args, **kwargs)
    except Exception as exc:
        return type(exc)
    return None


class TestErrorsLikeSocketSendfile:
    @pytest.mark.parametrize(
        ("offset", "count", "expected"),
        [
            (0, 0, ValueError),
            (0, -1, ValueError),
            (0, "10", TypeError),
            (0, 1.5, TypeError),
            ("1", None, TypeError),
            (1.5, None, TypeError),
        ],
    )
    def test_bad_offset_or_count(
        self,
        backend: ModuleType,
        make_file: Callable[[bytes], Path],
        offset: Any,
        count: Any,
        expected: type[BaseException],
    ) -> None:
        """Bad offsets and counts raise what socket.sendfile raises, and send nothing."""
        path = make_file(b"some bytes")
        for fn in (_socket_sendfile, zerocopy.send_file):
            with open(path, "rb") as f:
                result, got = _run(fn, "tcp", f, offset, count)
                assert type(result) is expected, (fn, result)
                assert got == b""
                assert f.tell() == 0

    def test_offset_none(self, backend: ModuleType, make_file: Callable[[bytes], Path]) -> None:
        """offset=None is a TypeError before a byte is sent (socket.sendfile sends, then fails)."""
        path = make_file(b"some bytes")
        with open(path, "rb") as f:
            result, got = _run(zerocopy.send_file, "tcp", f, None)
            assert isinstance(result, TypeError)
            assert got == b""
            assert f.tell() == 0

    def test_text_mode_file(self, backend: ModuleType, make_file: Callable[[bytes], Path]) -> None:
        """A text-mode file is a ValueError, as in socket.sendfile."""
        path = make_file(b"text")
        for fn in (_socket_sendfile, zerocopy.send_file):
            with open(path, encoding="ascii") as f:
                result, got = _run(fn, "tcp", f)
                assert isinstance(result, ValueError)
                assert got == b""

    def test_udp_socket(self, backend: ModuleType, make_file: Callable[[bytes], Path]) -> None:
        """A UDP socket is a ValueError, as in socket.sendfile."""
        path = make_file(b"datagram")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, open(path, "rb") as f:
            udp.connect(("127.0.0.1", 9))
            assert _exc_type(udp.sendfile, f) is ValueError
            with pytest.raises(ValueError, match="SOCK_STREAM"):
                zerocopy.send_file(udp, f)

    def test_non_blocking_socket(
        self, backend: ModuleType, make_file: Callable[[bytes], Path]
    ) -> None:
        """A non-blocking socket is a ValueError, as in socket.sendfile."""
        path = make_file(b"x" * 100)
        sender, receiver = tcp_pair()
        with sender, receiver, open(path, "rb") as f:
            sender.setblocking(False)
            assert _exc_type(sender.sendfile, f) is ValueError
            with pytest.raises(ValueError, match="non-blocking"):
                zerocopy.send_file(sender, f)

    def test_not_a_socket(self, backend: ModuleType, make_file: Callable[[bytes], Path]) -> None:
        """Something that is not a socket.socket is a TypeError."""
        path = make_file(b"x")
        with open(path, "rb") as f, pytest.raises(TypeError):
            zerocopy.send_file(12345, f)  # type: ignore[arg-type]

    def test_peer_gone(self, backend: ModuleType, make_file: Callable[[bytes], Path]) -> None:
        """A reset peer raises ConnectionResetError/BrokenPipeError with bytes_transferred."""
        path = make_file(_payload(32 * MiB))
        sender, receiver = tcp_pair()
        _small_buffers(sender, receiver)
        result: dict[str, Any] = {}

        def send() -> None:
            try:
                with open(path, "rb") as f:
                    try:
                        zerocopy.send_file(sender, f, 10)
                    finally:
                        result["pos"] = f.tell()
            except Exception as exc:
                result["exc"] = exc

        t = threading.Thread(target=send)
        t.start()
        got = 0
        while got < 200 * KiB:  # the sender is mid-file when the reset comes
            got += len(receiver.recv(65536))
        receiver.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        receiver.close()
        t.join(20)
        sender.close()
        assert not t.is_alive()
        exc: Any = result["exc"]
        assert type(exc) in (ConnectionResetError, BrokenPipeError), repr(exc)
        assert 0 < exc.bytes_transferred < 32 * MiB - 10
        assert result["pos"] == 10 + exc.bytes_transferred


# --- timeouts -----------------------------------------------------------------


class TestTimeout:
    def test_stalled_receiver(
        self, backend: ModuleType, kind: str, make_file: Callable[[bytes], Path]
    ) -> None:
        """A stalled receiver gives TimeoutError whose bytes_transferred the receiver then gets."""
        data = _payload(32 * MiB, seed=7)
        path = make_file(data)
        sender, receiver = stream_pair(kind)
        _small_buffers(sender, receiver, 256 * KiB)
        sender.settimeout(0.3)
        try:
            with open(path, "rb") as f:
                t0 = time.monotonic()
                with pytest.raises(TimeoutError) as info:
                    zerocopy.send_file(sender, f, 3)
                elapsed = time.monotonic() - t0
                sent = getattr(info.value, "bytes_transferred", None)
                assert isinstance(sent, int)
                assert f.tell() == 3 + sent
            assert 0 < sent < len(data) - 3
            assert elapsed < scaled(10)
            assert sender.gettimeout() == 0.3
            sender.shutdown(socket.SHUT_WR)
            rx = Receiver(receiver)
            rx.start()
            rx.finish()
            assert rx.count == sent
            assert rx.data == data[3 : 3 + sent]
        finally:
            sender.close()
            receiver.close()

    def test_slow_receiver_within_timeout(
        self, backend: ModuleType, kind: str, make_file: Callable[[bytes], Path]
    ) -> None:
        """A receiver slower than the sender but never idle for the timeout: no TimeoutError."""
        data = _payload(2 * MiB, seed=8)
        sender, receiver = stream_pair(kind)
        _small_buffers(sender, receiver)
        sender.settimeout(1.0)
        rx = Receiver(receiver, pause=0.01, chunk=128 * KiB)
        rx.start()
        try:
            with open(make_file(data), "rb") as f:
                assert zerocopy.send_file(sender, f) == len(data)
            sender.shutdown(socket.SHUT_WR)
            rx.finish()
            assert rx.data == data
        finally:
            sender.close()
            rx.join(5)
            receiver.close()


# --- no hot loop --------------------------------------------------------------


class TestNoSpin:
    @pytest.mark.parametrize("timeout", [None, 5.0], ids=["blocking", "timeout"])
    def test_slow_receiver_costs_no_cpu(
        self,
        backend: ModuleType,
        kind: str,
        make_file: Callable[[bytes], Path],
        timeout: float | None,
    ) -> None:
        """While the receiver sleeps, the sending thread waits instead of spinning."""
        data = _payload(3 * MiB, seed=9)
        path = make_file(data)
        sender, receiver = stream_pair(kind)
        _small_buffers(sender, receiver)
        sender.settimeout(timeout)
        rx = Receiver(receiver, pause=0.02, chunk=64 * KiB)
        out: dict[str, Any] = {}

        def send() -> None:
            c0, w0 = time.thread_time(), time.monotonic()
            try:
                with open(path, "rb") as f:
                    out["sent"] = zerocopy.send_file(sender, f)
            except Exception as exc:
                out["exc"] = exc
            out["cpu"] = time.thread_time() - c0
            out["wall"] = time.monotonic() - w0

        t = threading.Thread(target=send)
        with Spinner() as spinner:  # a busy loop beside the sending thread
            t.start()
            rx.start()
            t.join(60)
        try:
            assert not t.is_alive()
            assert "exc" not in out, out.get("exc")
            sender.shutdown(socket.SHUT_WR)
            rx.finish()
        finally:
            sender.close()
            rx.join(5)
            receiver.close()
        assert out["sent"] == len(data)
        assert rx.data == data
        assert out["wall"] > 0.3  # the receiver really was the bottleneck
        # 3 MiB through sendfile costs about a hundredth of a second of CPU at most.
        assert_waited(out["cpu"], spinner.usage, wall=out["wall"], work=0.03, what="send_file")


# --- sources that are not regular files ---------------------------------------


class TestNonFileSources:
    @pytest.mark.parametrize("size", [0, 1, ODD, 8 * MiB], ids=["0B", "1B", "64K+17", "8M"])
    def test_bytesio(self, backend: ModuleType, kind: str, size: int) -> None:
        """A BytesIO goes out byte-exact through send; its position ends after what was sent."""
        data = _payload(size, seed=10)
        f = io.BytesIO(data)
        sent, got = _run(zerocopy.send_file, kind, f)
        assert (sent, got, f.tell()) == (size, data, size)

    def test_bytesio_offset_count(self, backend: ModuleType, kind: str) -> None:
        """BytesIO with offset and count sends that slice and leaves the position after it."""
        data = _payload(ODD, seed=11)
        f = io.BytesIO(data)
        sent, got = _run(zerocopy.send_file, kind, f, 100, 5000)
        assert (sent, got, f.tell()) == (5000, data[100:5100], 5100)

    @pytest.mark.parametrize("size", [1, ODD, 4 * MiB], ids=["1B", "64K+17", "4M"])
    def test_pipe_opened_rb(self, backend: ModuleType, kind: str, size: int) -> None:
        """A pipe opened 'rb' goes out byte-exact through send and returns the count."""
        data = _payload(size, seed=12)
        r, w = os.pipe()

        def feed() -> None:
            with open(w, "wb") as out:
                out.write(data)

        feeder = threading.Thread(target=feed)
        feeder.start()
        try:
            with open(r, "rb") as f:
                sent, got = _run(zerocopy.send_file, kind, f)
        finally:
            feeder.join(30)
        assert got == data
        assert sent == size, sent

    def test_pipe_with_count(self, backend: ModuleType) -> None:
        """A pipe with a count sends exactly count bytes and returns it."""
        data = _payload(5000, seed=13)
        r, w = os.pipe()
        os.write(w, data)
        os.close(w)
        with open(r, "rb") as f:
            sent, got = _run(zerocopy.send_file, "unix", f, 0, 1000)
        assert got == data[:1000]
        assert sent == 1000, sent

    def test_procfs_file_of_size_zero(self, backend: ModuleType, kind: str) -> None:
        """A procfs file (st_size 0) sends its real contents, as read() sees them."""
        with open("/proc/version", "rb") as f:
            want = f.read()
        with open("/proc/version", "rb") as f:
            assert os.fstat(f.fileno()).st_size == 0
            sent, got = _run(zerocopy.send_file, kind, f)
        assert got == want
        assert sent == len(want)

    def test_gzip_file_sends_its_contents(self, backend: ModuleType, tmp_path: Path) -> None:
        """A GzipFile is read and sent (its decompressed bytes), as send_file's docstring says."""
        data = _payload(ODD, seed=14)
        path = tmp_path / "data.gz"
        with gzip.open(path, "wb") as g:
            g.write(data)
        with gzip.open(path, "rb") as f:
            sent, got = _run(zerocopy.send_file, "tcp", f)
        assert not isinstance(sent, Exception), repr(sent)
        assert (sent, got) == (len(data), data)

    def test_text_wrapper_refused(self, backend: ModuleType) -> None:
        """A TextIOWrapper (no mode attribute) is a ValueError before a byte is sent."""
        f = io.TextIOWrapper(io.BytesIO(b"abc"), encoding="ascii")
        result, got = _run(zerocopy.send_file, "unix", f)
        assert isinstance(result, ValueError), repr(result)
        assert got == b""


# --- a file that shrinks ------------------------------------------------------


class TestShrinkingFile:
    @pytest.mark.parametrize("count", [None, 48 * MiB], ids=["to-eof", "count"])
    @pytest.mark.parametrize("new_size", [100 * KiB + 3, 6 * MiB + 5], ids=["behind", "ahead"])
    def test_truncated_during_send(
        self,
        backend: ModuleType,
        kind: str,
        make_file: Callable[[bytes], Path],
        new_size: int,
        count: int | None,
    ) -> None:
        """A file truncated by another thread mid-send ends cleanly: return == bytes received."""
        data = _payload(32 * MiB, seed=15)
        path = make_file(data)
        sender, receiver = stream_pair(kind)
        _small_buffers(sender, receiver)
        started = threading.Event()
        truncated = threading.Event()

        def progress(n: int) -> None:
            if n >= MiB and not started.is_set():
                started.set()
                truncated.wait(10)

        rx = Receiver(receiver, chunk=64 * KiB, progress=progress)
        out: dict[str, Any] = {}

        def send() -> None:
            try:
                with open(path, "rb") as f:
                    out["sent"] = zerocopy.send_file(sender, f, 0, count)
                    out["pos"] = f.tell()
            except Exception as exc:
                out["exc"] = exc

        t = threading.Thread(target=send)
        t.start()
        rx.start()
        try:
            assert started.wait(10)
            os.truncate(path, new_size)
            truncated.set()
            t.join(20)
            assert not t.is_alive(), "send_file hangs on a file that shrank"
            sender.shutdown(socket.SHUT_WR)
            rx.finish()
        finally:
            truncated.set()
            if t.is_alive():
                sender.shutdown(socket.SHUT_RDWR)
            t.join(5)
            sender.close()
            rx.join(5)
            receiver.close()
        assert "exc" not in out, out.get("exc")
        sent = out["sent"]
        assert sent == rx.count
        assert new_size <= sent < len(data)
        assert out["pos"] == sent
        # What lies below the new end never changed; bytes past it that were
        # already in flight may show the truncation (the kernel shares pages).
        assert rx.data[:new_size] == data[:new_size]

    def test_offset_beyond_new_end(
        self, backend: ModuleType, kind: str, make_file: Callable[[bytes], Path]
    ) -> None:
        """An offset past the end of a file that shrank sends nothing and returns 0."""
        path = make_file(_payload(ODD))
        with open(path, "rb") as f:
            os.truncate(path, 10)
            f.seek(3)
            sent, got = _run(zerocopy.send_file, kind, f, 100)
            assert (sent, got, f.tell()) == (0, b"", 3)

    def test_grown_file_with_count(
        self, backend: ModuleType, kind: str, make_file: Callable[[bytes], Path]
    ) -> None:
        """count=None sends to the end of file as it is at send time (after growth)."""
        data = _payload(ODD, seed=16)
        path = make_file(data[:100])
        with open(path, "rb") as f:
            with open(path, "ab") as g:
                g.write(data[100:])
            sent, got = _run(zerocopy.send_file, kind, f)
            assert (sent, got, f.tell()) == (ODD, data, ODD)
