"""The low-level calls: sendfile, splice, tee, vmsplice, copy_file_range.

Every test that takes ``backend`` runs once per backend.  References are the
payload itself (slices of it), file contents read back, and fd positions read
with ``lseek(fd, 0, SEEK_CUR)``; no kernel call is mocked.
"""

from __future__ import annotations

import array
import contextlib
import errno
import fcntl
import gc
import mmap
import os
import platform
import random
import signal
import socket
import struct
import sys
import termios
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import zerocopy
from conftest import only_backend
from zerocopy import _backend

pytestmark = pytest.mark.usefixtures("no_leaks")

SIZE = 50_000  # below the default pipe capacity (64 KiB), not page aligned


@pytest.fixture
def cffi_backend() -> Iterator[ModuleType]:
    """The cffi backend, made current."""
    yield from only_backend("cffi")


@pytest.fixture
def os_backend() -> Iterator[ModuleType]:
    """The os backend, made current."""
    yield from only_backend("os")


# --- helpers ---------------------------------------------------------------


def _payload(n: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(n)


def _pos(fd: int) -> int:
    return os.lseek(fd, 0, os.SEEK_CUR)


def _close(*fds: int) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def _read_exactly(fd: int, n: int) -> bytes:
    chunks = []
    while n:
        chunk = os.read(fd, n)
        assert chunk, f"EOF with {n} bytes still expected"
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _queued(fd: int) -> int:
    raw = fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0")
    return int.from_bytes(raw, sys.byteorder, signed=True)


def _fill_pipe(w: int) -> int:
    """Write into pipe *w* until it is full; return the bytes written."""
    flags = fcntl.fcntl(w, fcntl.F_GETFL)
    fcntl.fcntl(w, fcntl.F_SETFL, flags | os.O_NONBLOCK)
    total = 0
    try:
        for size in (65536, 4096, 1):
            while True:
                try:
                    total += os.write(w, b"f" * size)
                except BlockingIOError:
                    break
    finally:
        fcntl.fcntl(w, fcntl.F_SETFL, flags)
    return total


@pytest.fixture
def src(tmp_path: Path) -> tuple[Path, bytes]:
    """A regular file holding SIZE random bytes, and those bytes."""
    data = _payload(SIZE)
    path = tmp_path / "src.bin"
    path.write_bytes(data)
    return path, data


@pytest.fixture
def src_fd(src: tuple[Path, bytes]) -> Iterator[int]:
    """The source file, opened read-only."""
    fd = os.open(src[0], os.O_RDONLY | os.O_CLOEXEC)
    yield fd
    _close(fd)


@pytest.fixture
def dst(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """An empty destination file and a read-write fd on it."""
    path = tmp_path / "dst.bin"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    yield path, fd
    _close(fd)


@pytest.fixture
def appending(tmp_path: Path) -> Iterator[int]:
    """A destination file opened with O_APPEND, already holding 3 bytes."""
    path = tmp_path / "append.bin"
    path.write_bytes(b"old")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
    yield fd
    _close(fd)


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    """A pipe: (read end, write end)."""
    r, w = os.pipe2(os.O_CLOEXEC)
    yield r, w
    _close(r, w)


@pytest.fixture
def pipe2() -> Iterator[tuple[int, int]]:
    """A second pipe: (read end, write end)."""
    r, w = os.pipe2(os.O_CLOEXEC)
    yield r, w
    _close(r, w)


@pytest.fixture
def sockpair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A connected AF_UNIX stream socket pair."""
    a, b = socket.socketpair()
    with a, b:
        yield a, b


@pytest.fixture
def tcp() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A connected loopback TCP pair: (client, server side)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    with client, server:
        yield client, server


def _closed_fd() -> int:
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    return r


# --- sendfile --------------------------------------------------------------


class TestSendfile:
    def test_file_to_file_with_position(
        self, backend: ModuleType, src: tuple[Path, bytes], src_fd: int, dst: Any
    ) -> None:
        """offset=None reads from the position and advances it; bytes arrive exactly."""
        path, fd = dst
        os.lseek(src_fd, 1000, os.SEEK_SET)
        assert zerocopy.sendfile(fd, src_fd, None, 20_000) == 20_000
        assert _pos(src_fd) == 21_000
        assert _pos(fd) == 20_000
        assert path.read_bytes() == src[1][1000:21_000]

    def test_offset_leaves_position_alone(
        self, backend: ModuleType, src: tuple[Path, bytes], src_fd: int, dst: Any
    ) -> None:
        """With an int offset reading starts there and the source position stays put."""
        path, fd = dst
        os.lseek(src_fd, 123, os.SEEK_SET)
        assert zerocopy.sendfile(fd, src_fd, 4096, 10_000) == 10_000
        assert _pos(src_fd) == 123
        assert zerocopy.sendfile(fd, src_fd, 0, 5) == 5
        assert _pos(src_fd) == 123
        assert path.read_bytes() == src[1][4096:14_096] + src[1][:5]

    def test_short_at_eof(
        self, backend: ModuleType, src: tuple[Path, bytes], src_fd: int, dst: Any
    ) -> None:
        """A count past the end returns what remains, then 0."""
        path, fd = dst
        os.lseek(src_fd, SIZE - 100, os.SEEK_SET)
        assert zerocopy.sendfile(fd, src_fd, None, 1000) == 100
        assert zerocopy.sendfile(fd, src_fd, None, 1000) == 0
        assert _pos(src_fd) == SIZE
        assert zerocopy.sendfile(fd, src_fd, SIZE - 7, 1000) == 7
        assert zerocopy.sendfile(fd, src_fd, SIZE + 10, 1000) == 0
        assert path.read_bytes() == src[1][-100:] + src[1][-7:]

    def test_count_zero(self, backend: ModuleType, src_fd: int, dst: Any) -> None:
        """count=0 moves nothing and returns 0."""
        path, fd = dst
        assert zerocopy.sendfile(fd, src_fd, None, 0) == 0
        assert _pos(src_fd) == 0
        assert path.read_bytes() == b""

    def test_huge_count_is_clamped(
        self, backend: ModuleType, src: tuple[Path, bytes], src_fd: int, dst: Any
    ) -> None:
        """A count beyond every ABI limit is accepted and clamped, not an error."""
        path, fd = dst
        total = 0
        while n := zerocopy.sendfile(fd, src_fd, None, 2**70):
            total += n
        assert total == SIZE
        assert path.read_bytes() == src[1]

    def test_file_object_to_socket_object(
        self,
        backend: ModuleType,
        src: tuple[Path, bytes],
        sockpair: tuple[socket.socket, socket.socket],
    ) -> None:
        """A file object and a socket object are accepted where fds are."""
        a, b = sockpair
        with open(src[0], "rb") as f:
            assert zerocopy.sendfile(a, f, 10, 30_000) == 30_000
            assert f.tell() == 0
            assert os.lseek(f.fileno(), 0, os.SEEK_CUR) == 0
        assert _read_exactly(b.fileno(), 30_000) == src[1][10:30_010]

    def test_loopback_tcp_large(self, backend: ModuleType, tmp_path: Path, tcp: Any) -> None:
        """A 4 MiB file goes out over loopback TCP intact, in however many calls."""
        client, server = tcp
        data = _payload(4 << 20, seed=7)
        path = tmp_path / "big.bin"
        path.write_bytes(data)
        received = bytearray()

        def reader() -> None:
            while chunk := server.recv(1 << 20):
                received.extend(chunk)

        thread = threading.Thread(target=reader)
        thread.start()
        try:
            with open(path, "rb") as f:
                sent = 0
                while n := zerocopy.sendfile(client, f, None, len(data) - sent):
                    sent += n
                assert _pos(f.fileno()) == len(data)
        finally:
            client.shutdown(socket.SHUT_WR)
            thread.join(30)
        assert sent == len(data)
        assert bytes(received) == data

    @settings(
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(
        size=st.integers(0, 20_000),
        offset=st.one_of(st.none(), st.integers(0, 25_000)),
        start=st.integers(0, 25_000),
        count=st.integers(0, 30_000),
    )
    def test_matches_slicing(
        self,
        backend: ModuleType,
        tmp_path: Path,
        size: int,
        offset: int | None,
        start: int,
        count: int,
    ) -> None:
        """For any size, position, offset and count: bytes, return value and position agree."""
        data = _payload(size, seed=size)
        path = tmp_path / "h.bin"
        path.write_bytes(data)
        out = tmp_path / "h.out"
        with open(path, "rb") as f, open(out, "wb") as g:
            os.lseek(f.fileno(), start, os.SEEK_SET)
            n = zerocopy.sendfile(g, f, offset, count)
            begin = start if offset is None else offset
            expected = data[begin : begin + count]
            assert n == len(expected)
            assert _pos(f.fileno()) == (start + n if offset is None else start)
        assert out.read_bytes() == expected


# --- splice ----------------------------------------------------------------


class TestSplice:
    def test_file_to_pipe_with_position(
        self, backend: ModuleType, src: tuple[Path, bytes], src_fd: int, pipe: Any
    ) -> None:
        """From a file with no offset: the file position advances by the bytes moved."""
        r, w = pipe
        os.lseek(src_fd, 500, os.SEEK_SET)
        assert zerocopy.splice(src_fd, w, 30_000) == 30_000
        assert _pos(src_fd) == 30_500
        assert _read_exactly(r, 30_000) == src[1][500:30_500]

    def test_file_to_pipe_at_offset(
        self, backend: ModuleType, src: tuple[Path, bytes], src_fd: int, pipe: Any
    ) -> None:
        """From a file at an offset: data from there, file position unchanged."""
        r, w = pipe
        os.lseek(src_fd, 77, os.SEEK_SET)
        assert zerocopy.splice(src_fd, w, 12_345, offset_src=9_000) == 12_345
        assert _pos(src_fd) == 77
        assert _read_exactly(r, 12_345) == src[1][9_000:21_345]

    def test_pipe_to_file_with_position(self, backend: ModuleType, pipe: Any, dst: Any) -> None:
        """Into a file with no offset: written at the position, which advances."""
        r, w = pipe
        path, fd = dst
        os.write(fd, b"0123456789")
        os.lseek(fd, 4, os.SEEK_SET)
        os.write(w, b"abc")
        assert zerocopy.splice(r, fd, 3) == 3
        assert _pos(fd) == 7
        assert path.read_bytes() == b"0123abc789"

    def test_pipe_to_file_at_offset(self, backend: ModuleType, pipe: Any, dst: Any) -> None:
        """Into a file at an offset: written there, the file position unchanged."""
        r, w = pipe
        path, fd = dst
        os.write(fd, b"0123456789")
        data = _payload(20_000, seed=3)
        os.write(w, data)
        assert zerocopy.splice(r, fd, 20_000, offset_dst=5) == 20_000
        assert _pos(fd) == 10
        assert path.read_bytes() == b"01234" + data

    def test_file_objects(
        self, backend: ModuleType, src: tuple[Path, bytes], pipe: Any, tmp_path: Path
    ) -> None:
        """Objects with fileno() work on both ends (file -> pipe -> file)."""
        r, w = pipe
        out = tmp_path / "out.bin"
        with open(src[0], "rb") as f, os.fdopen(os.dup(w), "wb", buffering=0) as pw:
            assert zerocopy.splice(f, pw, 1000, offset_src=2000) == 1000
        with os.fdopen(os.dup(r), "rb", buffering=0) as pr, open(out, "wb") as g:
            assert zerocopy.splice(pr, g, 1000) == 1000
        assert out.read_bytes() == src[1][2000:3000]

    def test_socket_to_pipe_to_socket(
        self, backend: ModuleType, sockpair: Any, tcp: Any, pipe: Any
    ) -> None:
        """Socket objects splice into a pipe and out of it again, bytes intact."""
        a, b = sockpair
        client, server = tcp
        r, w = pipe
        data = _payload(40_000, seed=5)
        a.sendall(data)
        moved = 0
        while moved < len(data):
            moved += zerocopy.splice(b, w, len(data) - moved)
        assert moved == len(data)
        sent = 0
        while sent < len(data):
            sent += zerocopy.splice(r, client, len(data) - sent)
        got = bytearray()
        while len(got) < len(data):
            got += server.recv(len(data) - len(got))
        assert bytes(got) == data

    def test_short_at_eof(
        self, backend: ModuleType, src: tuple[Path, bytes], src_fd: int, pipe: Any
    ) -> None:
        """Past the end of a file: what remains, then 0; a drained pipe with no writer: 0."""
        r, w = pipe
        os.lseek(src_fd, SIZE - 10, os.SEEK_SET)
        assert zerocopy.splice(src_fd, w, 1000) == 10
        assert zerocopy.splice(src_fd, w, 1000) == 0
        assert zerocopy.splice(src_fd, w, 1000, offset_src=SIZE + 1) == 0
        assert _pos(src_fd) == SIZE
        assert _read_exactly(r, 10) == src[1][-10:]
        os.close(w)
        with open(os.devnull, "wb") as null:
            assert zerocopy.splice(r, null, 1000) == 0

    def test_less_queued_than_asked(self, backend: ModuleType, pipe: Any, dst: Any) -> None:
        """From a pipe holding fewer bytes than asked: returns what is there."""
        r, w = pipe
        path, fd = dst
        os.write(w, b"xyz")
        assert zerocopy.splice(r, fd, 10_000) == 3
        assert path.read_bytes() == b"xyz"

    def test_count_zero(self, backend: ModuleType, src_fd: int, pipe: Any) -> None:
        """count=0 moves nothing and returns 0."""
        r, w = pipe
        assert zerocopy.splice(src_fd, w, 0) == 0
        assert _pos(src_fd) == 0
        assert _queued(r) == 0

    def test_accepted_flags(
        self, backend: ModuleType, src: tuple[Path, bytes], src_fd: int, pipe: Any
    ) -> None:
        """SPLICE_F_MOVE and SPLICE_F_MORE are accepted and change no bytes."""
        r, w = pipe
        flags = zerocopy.SPLICE_F_MOVE | zerocopy.SPLICE_F_MORE
        assert zerocopy.splice(src_fd, w, 100, flags=flags) == 100
        assert _read_exactly(r, 100) == src[1][:100]

    def test_nonblock_on_empty_pipe(self, backend: ModuleType, pipe: Any, dst: Any) -> None:
        """SPLICE_F_NONBLOCK from an empty pipe raises BlockingIOError naming splice."""
        r, _ = pipe
        with pytest.raises(BlockingIOError) as info:
            zerocopy.splice(r, dst[1], 10, flags=zerocopy.SPLICE_F_NONBLOCK)
        assert info.value.errno == errno.EAGAIN
        assert info.value.strerror.startswith("splice: ")


# --- tee -------------------------------------------------------------------


class TestTee:
    def test_duplicates_and_keeps(self, cffi_backend: ModuleType, pipe: Any, pipe2: Any) -> None:
        """tee copies the bytes into the second pipe and leaves them in the first."""
        r1, w1 = pipe
        r2, w2 = pipe2
        data = _payload(30_000, seed=11)
        os.write(w1, data)
        assert zerocopy.tee(r1, w2, len(data)) == len(data)
        assert _read_exactly(r2, len(data)) == data
        assert _read_exactly(r1, len(data)) == data

    def test_partial_and_file_objects(
        self, cffi_backend: ModuleType, pipe: Any, pipe2: Any
    ) -> None:
        """tee takes fileno() objects, duplicates only count bytes, and clamps to what is queued."""
        r1, w1 = pipe
        r2, w2 = pipe2
        os.write(w1, b"hello world")
        with (
            os.fdopen(os.dup(r1), "rb", buffering=0) as a,
            os.fdopen(os.dup(w2), "wb", buffering=0) as b,
        ):
            assert zerocopy.tee(a, b, 5) == 5
            assert zerocopy.tee(a, b, 1000) == 11
        assert os.read(r2, 100) == b"hellohello world"
        assert os.read(r1, 100) == b"hello world"

    def test_count_zero(self, cffi_backend: ModuleType, pipe: Any, pipe2: Any) -> None:
        """count=0 duplicates nothing and returns 0."""
        os.write(pipe[1], b"abc")
        assert zerocopy.tee(pipe[0], pipe2[1], 0) == 0
        assert _queued(pipe2[0]) == 0
        assert _queued(pipe[0]) == 3

    def test_nonblock_on_empty_pipe(self, cffi_backend: ModuleType, pipe: Any, pipe2: Any) -> None:
        """SPLICE_F_NONBLOCK on an empty source pipe raises BlockingIOError."""
        with pytest.raises(BlockingIOError) as info:
            zerocopy.tee(pipe[0], pipe2[1], 10, zerocopy.SPLICE_F_NONBLOCK)
        assert info.value.strerror.startswith("tee: ")

    def test_not_a_pipe(self, cffi_backend: ModuleType, src_fd: int, pipe: Any, dst: Any) -> None:
        """tee between a file and a pipe fails with EINVAL naming tee."""
        with pytest.raises(OSError, match="tee: ") as info:
            zerocopy.tee(pipe[0], dst[1], 10)
        assert info.value.errno == errno.EINVAL
        assert info.value.strerror.startswith("tee: ")
        with pytest.raises(OSError, match="tee: ") as info:
            zerocopy.tee(src_fd, pipe[1], 10)
        assert info.value.errno == errno.EINVAL

    def test_closed_fd(self, cffi_backend: ModuleType, pipe: Any) -> None:
        """A closed fd fails with EBADF naming tee."""
        with pytest.raises(OSError, match="tee: ") as info:
            zerocopy.tee(_closed_fd(), pipe[1], 10)
        assert info.value.errno == errno.EBADF
        assert info.value.strerror.startswith("tee: ")

    def test_unsupported_on_os(self, os_backend: ModuleType, pipe: Any, pipe2: Any) -> None:
        """On os, tee raises UnsupportedOperation: an OSError (ENOSYS) and NotImplementedError."""
        os.write(pipe[1], b"data")
        with pytest.raises(zerocopy.UnsupportedOperation) as info:
            zerocopy.tee(pipe[0], pipe2[1], 4)
        exc = info.value
        assert isinstance(exc, OSError)
        assert isinstance(exc, NotImplementedError)
        assert exc.errno == errno.ENOSYS
        assert exc.strerror.startswith("tee: ")
        assert _queued(pipe[0]) == 4
        assert _queued(pipe2[0]) == 0

    def test_os_still_validates(self, os_backend: ModuleType, pipe: Any) -> None:
        """On os, argument errors still come first (TypeError, not UnsupportedOperation)."""
        with pytest.raises(TypeError):
            zerocopy.tee("0", pipe[1], 1)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="count"):
            zerocopy.tee(pipe[0], pipe[1], -1)


# --- vmsplice --------------------------------------------------------------


def _buffer(kind: str, data: bytes) -> Any:
    if kind == "bytes":
        return bytes(bytearray(data))  # a new object, not an interned constant
    if kind == "bytearray":
        return bytearray(data)
    if kind == "memoryview":
        return memoryview(bytearray(data))
    if kind == "mmap":
        m = mmap.mmap(-1, len(data))
        m.write(data)
        return m
    if kind == "array":
        return array.array("B", data)
    raise AssertionError(kind)


class _Blocked(Exception):
    pass


@contextlib.contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    """Raise _Blocked in the main thread if the block takes longer than *seconds*."""

    def alarm(signum: int, frame: Any) -> None:
        raise _Blocked(f"still blocked after {seconds} s")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


KINDS = ["bytes", "bytearray", "memoryview", "mmap", "array"]


def _vmsplice_temporary(w: int, kind: str, data: bytes) -> int:
    # The only reference to the buffer is in this frame: after return it is
    # garbage unless zerocopy keeps it.
    return zerocopy.vmsplice(w, [_buffer(kind, data)])


class TestVmsplice:
    def test_every_buffer_kind(self, backend: ModuleType, pipe: Any) -> None:
        """bytes, bytearray, memoryview, mmap and array arrive in order, byte-exact."""
        r, w = pipe
        parts = [_payload(1000 + i, seed=i) for i in range(len(KINDS))]
        buffers = [_buffer(kind, part) for kind, part in zip(KINDS, parts, strict=True)]
        expected = b"".join(parts)
        assert zerocopy.vmsplice(w, buffers) == len(expected)
        assert _read_exactly(r, len(expected)) == expected

    def test_file_object_and_generator(self, backend: ModuleType, pipe: Any) -> None:
        """A pipe file object and any iterable of buffers are accepted."""
        r, w = pipe
        with os.fdopen(os.dup(w), "wb", buffering=0) as pw:
            assert zerocopy.vmsplice(pw, (b for b in [b"ab", b"cd"])) == 4
        assert os.read(r, 10) == b"abcd"

    def test_empty(self, backend: ModuleType, pipe: Any) -> None:
        """No buffers, or only empty ones, add nothing and return 0."""
        r, w = pipe
        assert zerocopy.vmsplice(w, []) == 0
        assert zerocopy.vmsplice(w, [b"", bytearray()]) == 0
        assert _queued(r) == 0

    @pytest.mark.parametrize("kind", KINDS)
    def test_temporary_buffer_survives(self, backend: ModuleType, pipe: Any, kind: str) -> None:
        """A buffer dropped right after vmsplice still reads back intact (it is pinned)."""
        r, w = pipe
        data = _payload(3000, seed=42)
        assert _vmsplice_temporary(w, kind, data) == len(data)
        gc.collect()
        # Reuse the freed memory, if any was freed, with other bytes.
        churn = [bytearray(b"\xff" * len(data)) for _ in range(64)]
        assert _read_exactly(r, len(data)) == data
        del churn

    def test_pinned_bytearray_cannot_resize(self, backend: ModuleType, pipe: Any) -> None:
        """cffi: resizing is refused while the bytes sit in the pipe and allowed once consumed.

        On the os backend vmsplice copies, so nothing refers to the buffer.
        """
        r, w = pipe
        buf = bytearray(b"p" * 8000)
        assert zerocopy.vmsplice(w, [buf]) == 8000
        if backend.NAME == "os":
            buf.extend(b"!")
            assert _read_exactly(r, 8000) == b"p" * 8000
            return
        with pytest.raises(BufferError):
            buf.extend(b"!")
        with pytest.raises(BufferError):
            del buf[:10]
        # Half read: a later vmsplice must still keep it.
        assert _read_exactly(r, 4000) == b"p" * 4000
        assert zerocopy.vmsplice(w, []) == 0
        with pytest.raises(BufferError):
            buf.extend(b"!")
        # All read: the next vmsplice on this pipe lets it go.
        assert _read_exactly(r, 4000) == b"p" * 4000
        assert zerocopy.vmsplice(w, [b"next"]) == 4
        buf.extend(b"!")
        assert len(buf) == 8001
        assert os.read(r, 10) == b"next"
        assert zerocopy.vmsplice(w, []) == 0

    def test_pinned_mmap_cannot_close(self, cffi_backend: ModuleType, pipe: Any) -> None:
        """cffi: an mmap whose pages sit in the pipe cannot be closed until consumed."""
        r, w = pipe
        m = mmap.mmap(-1, 4096)
        m.write(b"m" * 4096)
        assert zerocopy.vmsplice(w, [m]) == 4096
        with pytest.raises(BufferError):
            m.close()
        assert _read_exactly(r, 4096) == b"m" * 4096
        zerocopy.vmsplice(w, [])
        m.close()

    def test_gift_refused(self, backend: ModuleType, pipe: Any) -> None:
        """SPLICE_F_GIFT, alone or with other flags, is a ValueError and nothing is written."""
        r, w = pipe
        for flags in (zerocopy.SPLICE_F_GIFT, zerocopy.SPLICE_F_GIFT | zerocopy.SPLICE_F_MORE):
            with pytest.raises(ValueError, match="GIFT"):
                zerocopy.vmsplice(w, [b"x"], flags)
        assert _queued(r) == 0

    def test_read_end_is_ebadf(self, backend: ModuleType, pipe: Any) -> None:
        """The read end of a pipe fails with EBADF naming vmsplice, and its bytes are untouched."""
        r, w = pipe
        os.write(w, b"keep")
        target = bytearray(4)
        with pytest.raises(OSError, match="vmsplice: ") as info:
            zerocopy.vmsplice(r, [target])
        assert info.value.errno == errno.EBADF
        assert info.value.strerror.startswith("vmsplice: ")
        assert target == bytearray(4)
        assert os.read(r, 10) == b"keep"

    @pytest.mark.parametrize("mode", [os.O_WRONLY, os.O_RDWR, os.O_RDONLY])
    def test_regular_file_is_ebadf(self, backend: ModuleType, tmp_path: Path, mode: int) -> None:
        """A regular file (any access mode) fails with EBADF and stays empty."""
        path = tmp_path / "f"
        fd = os.open(path, mode | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            with pytest.raises(OSError, match="vmsplice: ") as info:
                zerocopy.vmsplice(fd, [b"data"])
        finally:
            os.close(fd)
        assert info.value.errno == errno.EBADF
        assert info.value.strerror.startswith("vmsplice: ")
        assert path.read_bytes() == b""

    def test_socket_is_ebadf(self, backend: ModuleType, sockpair: Any) -> None:
        """A socket is not a pipe: EBADF, and the peer receives nothing."""
        a, b = sockpair
        with pytest.raises(OSError, match="vmsplice: ") as info:
            zerocopy.vmsplice(a, [b"data"])
        assert info.value.errno == errno.EBADF
        b.setblocking(False)
        with pytest.raises(BlockingIOError):
            b.recv(10)

    def test_nonblock_on_full_pipe(self, backend: ModuleType, pipe: Any) -> None:
        """SPLICE_F_NONBLOCK into a full pipe raises BlockingIOError and adds nothing."""
        r, w = pipe
        filled = _fill_pipe(w)
        with pytest.raises(BlockingIOError) as info:
            zerocopy.vmsplice(w, [b"x" * 100], zerocopy.SPLICE_F_NONBLOCK)
        assert info.value.errno == errno.EAGAIN
        assert info.value.strerror.startswith("vmsplice: ")
        assert _queued(r) == filled

    def test_nonblock_when_slots_are_full(
        self, backend: ModuleType, request: pytest.FixtureRequest, src_fd: int, pipe: Any
    ) -> None:
        """SPLICE_F_NONBLOCK never blocks, even when spliced pages leave byte room but no slots."""
        r, w = pipe
        slots = fcntl.fcntl(w, fcntl.F_GETPIPE_SZ) // mmap.PAGESIZE
        for i in range(slots - 1):
            assert zerocopy.splice(src_fd, w, 1, offset_src=i) == 1
        with _deadline(0.5):
            moved = zerocopy.vmsplice(w, [b"a" * 65536], zerocopy.SPLICE_F_NONBLOCK)
        assert 0 < moved <= mmap.PAGESIZE
        assert _queued(r) == slots - 1 + moved

    def test_more_than_fits_returns_short(
        self, backend: ModuleType, request: pytest.FixtureRequest, pipe: Any
    ) -> None:
        """More than the pipe holds and no reader: vmsplice adds what fits and returns."""
        r, w = pipe
        data = _payload(200_000, seed=9)
        with _deadline(0.5):
            moved = zerocopy.vmsplice(w, [data])
        assert 0 < moved <= fcntl.fcntl(w, fcntl.F_GETPIPE_SZ)
        assert _read_exactly(r, moved) == data[:moved]

    def test_broken_pipe(self, backend: ModuleType, pipe: Any) -> None:
        """With the read end closed, vmsplice raises BrokenPipeError naming vmsplice."""
        r, w = pipe
        os.close(r)
        with pytest.raises(BrokenPipeError, match="vmsplice: "):
            zerocopy.vmsplice(w, [b"lost"])

    def test_non_contiguous_buffer_refused(self, backend: ModuleType, pipe: Any) -> None:
        """A non-contiguous view is refused before anything reaches the pipe."""
        r, w = pipe
        with pytest.raises(ValueError, match="contiguous"):
            zerocopy.vmsplice(w, [b"ok", memoryview(b"abcdef")[::2]])
        assert _queued(r) == 0

    @pytest.mark.parametrize(
        "buffers",
        [b"single", bytearray(b"single"), memoryview(b"single"), "text", 5, None, ["text"], [5]],
        ids=["bytes", "bytearray", "memoryview", "str", "int", "None", "[str]", "[int]"],
    )
    def test_bad_buffers(self, backend: ModuleType, pipe: Any, buffers: Any) -> None:
        """Anything but a sequence of bytes-like objects is a TypeError; nothing is written."""
        r, w = pipe
        with pytest.raises(TypeError):
            zerocopy.vmsplice(w, buffers)
        assert _queued(r) == 0


# --- copy_file_range -------------------------------------------------------


class TestCopyFileRange:
    def test_with_positions(
        self, backend: ModuleType, src: tuple[Path, bytes], src_fd: int, dst: Any
    ) -> None:
        """No offsets: both positions are used and advanced."""
        path, fd = dst
        os.lseek(src_fd, 100, os.SEEK_SET)
        os.write(fd, b"head")
        assert zerocopy.copy_file_range(src_fd, fd, 20_000) == 20_000
        assert _pos(src_fd) == 20_100
        assert _pos(fd) == 20_004
        assert path.read_bytes() == b"head" + src[1][100:20_100]

    def test_with_offsets(
        self, backend: ModuleType, src: tuple[Path, bytes], src_fd: int, dst: Any
    ) -> None:
        """Both offsets given: data from/to there, neither position moves."""
        path, fd = dst
        os.lseek(src_fd, 9, os.SEEK_SET)
        os.write(fd, b"0123456789")
        os.lseek(fd, 3, os.SEEK_SET)
        n = zerocopy.copy_file_range(src_fd, fd, 1000, offset_src=500, offset_dst=6)
        assert n == 1000
        assert _pos(src_fd) == 9
        assert _pos(fd) == 3
        assert path.read_bytes() == b"012345" + src[1][500:1500]

    def test_mixed_offsets(
        self, backend: ModuleType, src: tuple[Path, bytes], src_fd: int, dst: Any
    ) -> None:
        """One offset given, one not: only the end without an offset moves."""
        path, fd = dst
        assert zerocopy.copy_file_range(src_fd, fd, 10, offset_src=40) == 10
        assert (_pos(src_fd), _pos(fd)) == (0, 10)
        assert zerocopy.copy_file_range(src_fd, fd, 10, offset_dst=100) == 10
        assert (_pos(src_fd), _pos(fd)) == (10, 10)
        assert path.read_bytes() == src[1][40:50] + b"\0" * 90 + src[1][:10]

    def test_file_objects(
        self, backend: ModuleType, src: tuple[Path, bytes], tmp_path: Path
    ) -> None:
        """File objects are accepted on both ends."""
        out = tmp_path / "o"
        with open(src[0], "rb") as f, open(out, "wb") as g:
            total = 0
            while n := zerocopy.copy_file_range(f, g, SIZE):
                total += n
        assert total == SIZE
        assert out.read_bytes() == src[1]

    def test_short_at_eof(
        self, backend: ModuleType, src: tuple[Path, bytes], src_fd: int, dst: Any
    ) -> None:
        """Past the end: what remains, then 0, by position and by offset."""
        path, fd = dst
        os.lseek(src_fd, SIZE - 50, os.SEEK_SET)
        assert zerocopy.copy_file_range(src_fd, fd, 1000) == 50
        assert zerocopy.copy_file_range(src_fd, fd, 1000) == 0
        assert zerocopy.copy_file_range(src_fd, fd, 1000, offset_src=SIZE) == 0
        assert _pos(src_fd) == SIZE
        assert path.read_bytes() == src[1][-50:]

    def test_count_zero(self, backend: ModuleType, src_fd: int, dst: Any) -> None:
        """count=0 copies nothing and returns 0."""
        assert zerocopy.copy_file_range(src_fd, dst[1], 0) == 0
        assert (_pos(src_fd), _pos(dst[1])) == (0, 0)
        assert dst[0].read_bytes() == b""

    def test_append_destination_is_ebadf(
        self, backend: ModuleType, src_fd: int, appending: int, tmp_path: Path
    ) -> None:
        """An O_APPEND destination fails with EBADF naming copy_file_range."""
        with pytest.raises(OSError, match="copy_file_range: ") as info:
            zerocopy.copy_file_range(src_fd, appending, 10)
        assert info.value.errno == errno.EBADF
        assert info.value.strerror.startswith("copy_file_range: ")
        assert (tmp_path / "append.bin").read_bytes() == b"old"

    def test_pipe_is_einval(self, backend: ModuleType, src_fd: int, pipe: Any) -> None:
        """A pipe is not a regular file: EINVAL."""
        with pytest.raises(OSError, match="copy_file_range: ") as info:
            zerocopy.copy_file_range(src_fd, pipe[1], 10)
        assert info.value.errno == errno.EINVAL

    def test_overlapping_same_file_is_einval(
        self, backend: ModuleType, src: tuple[Path, bytes]
    ) -> None:
        """Overlapping ranges of one file fail with EINVAL and leave it unchanged."""
        fd = os.open(src[0], os.O_RDWR | os.O_CLOEXEC)
        try:
            with pytest.raises(OSError, match="copy_file_range: ") as info:
                zerocopy.copy_file_range(fd, fd, 1000, offset_src=0, offset_dst=500)
        finally:
            os.close(fd)
        assert info.value.errno == errno.EINVAL
        assert src[0].read_bytes() == src[1]


# --- errors the kernel reports ----------------------------------------------


class TestKernelErrors:
    def test_sendfile_to_append_is_einval(
        self, backend: ModuleType, src_fd: int, appending: int, tmp_path: Path
    ) -> None:
        """sendfile into an O_APPEND file fails with EINVAL naming sendfile."""
        with pytest.raises(OSError, match="sendfile: ") as info:
            zerocopy.sendfile(appending, src_fd, None, 10)
        assert info.value.errno == errno.EINVAL
        assert info.value.strerror.startswith("sendfile: ")
        assert _pos(src_fd) == 0
        assert (tmp_path / "append.bin").read_bytes() == b"old"

    def test_splice_to_append_is_einval(
        self, backend: ModuleType, pipe: Any, appending: int
    ) -> None:
        """splice into an O_APPEND file fails with EINVAL; the pipe keeps its bytes."""
        r, w = pipe
        os.write(w, b"data")
        with pytest.raises(OSError, match="splice: ") as info:
            zerocopy.splice(r, appending, 4)
        assert info.value.errno == errno.EINVAL
        assert info.value.strerror.startswith("splice: ")
        assert _queued(r) == 4

    def test_splice_two_files_is_einval(self, backend: ModuleType, src_fd: int, dst: Any) -> None:
        """splice between two regular files (no pipe) fails with EINVAL."""
        with pytest.raises(OSError, match="splice: ") as info:
            zerocopy.splice(src_fd, dst[1], 10)
        assert info.value.errno == errno.EINVAL
        assert info.value.strerror.startswith("splice: ")

    def test_splice_offset_on_pipe_is_espipe(
        self, backend: ModuleType, pipe: Any, dst: Any
    ) -> None:
        """An offset for a pipe end fails with ESPIPE."""
        r, w = pipe
        os.write(w, b"data")
        with pytest.raises(OSError, match="splice: ") as info:
            zerocopy.splice(r, dst[1], 4, offset_src=0)
        assert info.value.errno == errno.ESPIPE

    def test_splice_broken_pipe(self, backend: ModuleType, src_fd: int, pipe: Any) -> None:
        """Into a pipe whose reader is closed: BrokenPipeError (EPIPE) naming splice."""
        r, w = pipe
        os.close(r)
        with pytest.raises(BrokenPipeError) as info:
            zerocopy.splice(src_fd, w, 10)
        assert info.value.errno == errno.EPIPE
        assert info.value.strerror.startswith("splice: ")

    def test_sendfile_to_closed_peer(self, backend: ModuleType, src_fd: int, sockpair: Any) -> None:
        """sendfile to a socket whose peer is gone raises BrokenPipeError."""
        a, b = sockpair
        b.close()
        with pytest.raises(BrokenPipeError, match="sendfile: "):
            zerocopy.sendfile(a, src_fd, 0, 10)

    def test_sendfile_from_directory(self, backend: ModuleType, tmp_path: Path, dst: Any) -> None:
        """Reading a directory gives the matching subclass (IsADirectoryError) or EINVAL."""
        fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            with pytest.raises(OSError, match="sendfile: ") as info:
                zerocopy.sendfile(dst[1], fd, 0, 10)
        finally:
            os.close(fd)
        assert info.value.errno in (errno.EISDIR, errno.EINVAL)
        assert type(info.value) is (
            IsADirectoryError if info.value.errno == errno.EISDIR else OSError
        )

    CALLS: ClassVar[dict[str, Callable[[int, int], Any]]] = {
        "sendfile": lambda a, b: zerocopy.sendfile(a, b, None, 1),
        "splice": lambda a, b: zerocopy.splice(a, b, 1),
        "copy_file_range": lambda a, b: zerocopy.copy_file_range(a, b, 1),
        "vmsplice": lambda a, b: zerocopy.vmsplice(a, [b"x"]),
    }

    @pytest.mark.parametrize("call", list(CALLS))
    def test_closed_fd_is_ebadf(self, backend: ModuleType, call: str) -> None:
        """A closed int fd gives OSError EBADF whose message starts with the syscall name."""
        bad = _closed_fd()
        with pytest.raises(OSError, match=f"{call}: ") as info:
            self.CALLS[call](bad, bad)
        assert type(info.value) is OSError
        assert info.value.errno == errno.EBADF
        assert info.value.strerror == f"{call}: {os.strerror(errno.EBADF)}"
        assert str(info.value).startswith(f"[Errno {errno.EBADF}] {call}: ")

    def test_closed_file_object(
        self, backend: ModuleType, src: tuple[Path, bytes], pipe: Any
    ) -> None:
        """A closed file object raises its own ValueError from fileno()."""
        f = open(src[0], "rb")  # noqa: SIM115 - closed on purpose before use
        f.close()
        with pytest.raises(ValueError, match="closed file"):
            zerocopy.splice(f, pipe[1], 10)

    def test_closed_socket_object(self, backend: ModuleType, src_fd: int) -> None:
        """A closed socket (fileno() == -1) is a ValueError."""
        s = socket.socket()
        s.close()
        with pytest.raises(ValueError, match="non-negative"):
            zerocopy.sendfile(s, src_fd, 0, 10)


# --- argument checking -------------------------------------------------------


class _FakeFile:
    def __init__(self, value: Any) -> None:
        self.value = value

    def fileno(self) -> Any:
        return self.value


def _calls(a: Any, b: Any) -> dict[str, Callable[..., Any]]:
    """Each call with fd arguments a and b, and an overridable count/offset/flags."""
    return {
        "sendfile": lambda count=1, offset=None: zerocopy.sendfile(b, a, offset, count),
        "splice": lambda count=1, offset=None, flags=0: zerocopy.splice(
            a, b, count, offset, None, flags
        ),
        "splice_dst": lambda count=1, offset=None: zerocopy.splice(a, b, count, None, offset),
        "tee": lambda count=1, flags=0: zerocopy.tee(a, b, count, flags),
        "copy_file_range": lambda count=1, offset=None: zerocopy.copy_file_range(
            a, b, count, offset
        ),
        "copy_file_range_dst": lambda count=1, offset=None: zerocopy.copy_file_range(
            a, b, count, None, offset
        ),
        "vmsplice": lambda flags=0: zerocopy.vmsplice(b, [b"x"], flags),
    }


FD_CALLS = ["sendfile", "splice", "tee", "copy_file_range", "vmsplice"]
COUNT_CALLS = ["sendfile", "splice", "tee", "copy_file_range"]
OFFSET_CALLS = ["sendfile", "splice", "splice_dst", "copy_file_range", "copy_file_range_dst"]
FLAG_CALLS = ["splice", "tee", "vmsplice"]


class TestBadArguments:
    """Validation happens before any backend call, so every backend answers alike."""

    @pytest.fixture
    def fds(self, src_fd: int, pipe: Any) -> tuple[int, int, int]:
        """A readable file with data, a pipe holding data, and the pipe's write end."""
        os.write(pipe[1], b"queued")
        return src_fd, pipe[0], pipe[1]

    def _untouched(self, fds: tuple[int, int, int]) -> None:
        assert _pos(fds[0]) == 0
        assert _queued(fds[1]) == 6

    @pytest.mark.parametrize("call", FD_CALLS)
    @pytest.mark.parametrize(
        "bad",
        ["3", 3.0, None, True, False, b"3", object(), _FakeFile("3"), _FakeFile(True)],
        ids=[
            "str",
            "float",
            "None",
            "True",
            "False",
            "bytes",
            "object",
            "fileno-str",
            "fileno-bool",
        ],
    )
    @pytest.mark.parametrize("which", ["first", "second"])
    def test_fd_wrong_type(
        self, backend: ModuleType, fds: Any, call: str, bad: Any, which: str
    ) -> None:
        """An fd that is not an int (bools included) nor has an int fileno() is a TypeError."""
        if call == "vmsplice" and which == "first":
            args = (fds[0], bad)  # vmsplice has one fd: the "b" slot
        else:
            args = (bad, fds[2]) if which == "first" else (fds[1], bad)
        with pytest.raises(TypeError):
            _calls(*args)[call]()
        self._untouched(fds)

    @pytest.mark.parametrize("call", FD_CALLS)
    @pytest.mark.parametrize("bad", [-1, -100, 2**31, 2**64, _FakeFile(-1)])
    def test_fd_bad_value(self, backend: ModuleType, fds: Any, call: str, bad: Any) -> None:
        """A negative or impossibly large fd is a ValueError."""
        with pytest.raises(ValueError, match="file descriptor"):
            _calls(fds[1], bad)[call]()
        if call != "vmsplice":  # vmsplice has one fd: the "b" slot
            with pytest.raises(ValueError, match="file descriptor"):
                _calls(bad, fds[2])[call]()
        self._untouched(fds)

    @pytest.mark.parametrize("call", COUNT_CALLS)
    @pytest.mark.parametrize("bad", ["1", 1.0, None, True, b"1"], ids=repr)
    def test_count_wrong_type(self, backend: ModuleType, fds: Any, call: str, bad: Any) -> None:
        """A count that is not an int is a TypeError."""
        with pytest.raises(TypeError, match="count"):
            _calls(fds[1], fds[2])[call](count=bad)
        self._untouched(fds)

    @pytest.mark.parametrize("call", COUNT_CALLS)
    def test_count_negative(self, backend: ModuleType, fds: Any, call: str) -> None:
        """A negative count is a ValueError."""
        with pytest.raises(ValueError, match="count"):
            _calls(fds[1], fds[2])[call](count=-1)
        self._untouched(fds)

    @pytest.mark.parametrize("call", OFFSET_CALLS)
    @pytest.mark.parametrize("bad", ["0", 0.0, True, b"0", [0]], ids=repr)
    def test_offset_wrong_type(self, backend: ModuleType, fds: Any, call: str, bad: Any) -> None:
        """An offset that is neither None nor an int is a TypeError."""
        with pytest.raises(TypeError, match="offset"):
            _calls(fds[0], fds[2])[call](offset=bad)
        self._untouched(fds)

    @pytest.mark.parametrize("call", OFFSET_CALLS)
    @pytest.mark.parametrize("bad", [-1, -(2**63), 2**63, 2**64])
    def test_offset_out_of_range(self, backend: ModuleType, fds: Any, call: str, bad: int) -> None:
        """A negative offset, or one of 2**63 and more, is a ValueError."""
        with pytest.raises(ValueError, match="offset"):
            _calls(fds[0], fds[2])[call](offset=bad)
        self._untouched(fds)

    @pytest.mark.parametrize("call", FLAG_CALLS)
    @pytest.mark.parametrize("bad", [0x10, 0x100, -1, 2**40])
    def test_unknown_flags(self, backend: ModuleType, fds: Any, call: str, bad: int) -> None:
        """Flag bits outside SPLICE_F_MOVE|NONBLOCK|MORE are a ValueError."""
        # vmsplice names SPLICE_F_GIFT when that bit is among them (-1).
        with pytest.raises(ValueError, match=r"flags|GIFT"):
            _calls(fds[1], fds[2])[call](flags=bad)
        self._untouched(fds)

    @pytest.mark.parametrize("call", FLAG_CALLS)
    @pytest.mark.parametrize("bad", ["0", 0.0, None, True], ids=repr)
    def test_flags_wrong_type(self, backend: ModuleType, fds: Any, call: str, bad: Any) -> None:
        """Flags that are not an int are a TypeError."""
        with pytest.raises(TypeError, match="flags"):
            _calls(fds[1], fds[2])[call](flags=bad)
        self._untouched(fds)

    def test_index_types_accepted(
        self, backend: ModuleType, src: tuple[Path, bytes], src_fd: int, pipe: Any
    ) -> None:
        """Integer-like counts and offsets (operator.index) are accepted."""

        class Index:
            def __init__(self, n: int) -> None:
                self.n = n

            def __index__(self) -> int:
                return self.n

        r, w = pipe
        assert zerocopy.splice(src_fd, w, Index(5), offset_src=Index(10)) == 5  # type: ignore[arg-type]
        assert os.read(r, 10) == src[1][10:15]


# --- EINTR -------------------------------------------------------------------

# splice(2)'s number, to see the main thread sitting in it through /proc.
_SPLICE_NR = {"x86_64": 275, "aarch64": 76, "riscv64": 76, "ppc64le": 283, "s390x": 306}.get(
    platform.machine()
)


class _Interrupted(Exception):
    pass


def _in_splice(tid: int, stop: threading.Event, timeout: float = 10.0) -> bool:
    """Wait until thread *tid* is blocked in splice(2); False on timeout or *stop*."""
    if _SPLICE_NR is None:  # unknown arch: fall back to giving it time
        return not stop.wait(0.3)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not stop.is_set():
        with open(f"/proc/self/task/{tid}/syscall") as f:
            if f.read().split()[0] == str(_SPLICE_NR):
                return True
        time.sleep(0.002)
    return False


class _Signaller(threading.Thread):
    """Interrupts the main thread's splice with SIGALRM, then delivers the data.

    With ``wait_for_retry`` it waits for the handler to have run and the main
    thread to be back in splice before delivering; otherwise it delivers only
    if the main thread has not finished within a few seconds (so a failure
    does not hang).  It never signals or delivers once ``finished`` is set:
    the fds may be closed and the handler gone by then.
    """

    def __init__(self, deliver: Callable[[], None], hits: list[float], wait_for_retry: bool):
        super().__init__(daemon=True)
        self.deliver = deliver
        self.hits = hits
        self.wait_for_retry = wait_for_retry
        self.ident_main = threading.get_ident()
        self.native_main = threading.get_native_id()
        self.finished = threading.Event()
        self.problems: list[str] = []

    def run(self) -> None:
        if not _in_splice(self.native_main, self.finished):
            self.problems.append("main thread never blocked in splice")
            return
        signal.pthread_kill(self.ident_main, signal.SIGALRM)
        if self.wait_for_retry:
            deadline = time.monotonic() + 10
            while not self.hits and time.monotonic() < deadline and not self.finished.is_set():
                time.sleep(0.002)
            if not self.hits:
                self.problems.append("signal handler never ran")
            if not _in_splice(self.native_main, self.finished):
                self.problems.append("main thread did not go back into splice")
                return
            self.deliver()
        elif not self.finished.wait(5):
            self.problems.append("splice did not return after the handler raised")
            self.deliver()

    def __enter__(self) -> _Signaller:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.finished.set()
        self.join(15)
        assert not self.is_alive()


@pytest.fixture
def sigalrm() -> Iterator[Callable[[Callable[[int, Any], None]], None]]:
    """Install a SIGALRM handler for the test; the old one comes back after."""
    old = signal.getsignal(signal.SIGALRM)

    def install(handler: Callable[[int, Any], None]) -> None:
        signal.signal(signal.SIGALRM, handler)

    yield install
    signal.signal(signal.SIGALRM, old)


class TestEINTR:
    """A signal during a blocking splice: retried, or the handler's exception propagates."""

    DATA = b"arrived after the signal"

    def _source(self, kind: str, pipe: Any, sockpair: Any) -> tuple[int, Callable[[], None]]:
        if kind == "pipe":
            return pipe[0], lambda: os.write(pipe[1], self.DATA)  # type: ignore[return-value]
        return sockpair[1].fileno(), lambda: sockpair[0].sendall(self.DATA)

    @pytest.mark.parametrize("kind", ["pipe", "socket"])
    def test_retried_after_quiet_handler(
        self,
        backend: ModuleType,
        sigalrm: Any,
        kind: str,
        pipe: Any,
        pipe2: Any,
        sockpair: Any,
        dst: Any,
    ) -> None:
        """A handler that returns: the splice keeps waiting and completes when data comes."""
        hits: list[float] = []
        sigalrm(lambda signum, frame: hits.append(time.monotonic()))
        source, deliver = self._source(kind, pipe, sockpair)
        # pipe -> file, or socket -> pipe: one end must be a pipe.
        target = dst[1] if kind == "pipe" else pipe2[1]
        with _Signaller(deliver, hits, wait_for_retry=True) as helper:
            n = zerocopy.splice(source, target, 1000)
        assert helper.problems == []
        assert len(hits) == 1
        assert n == len(self.DATA)
        if kind == "pipe":
            assert dst[0].read_bytes() == self.DATA
        else:
            assert os.read(pipe2[0], 1000) == self.DATA

    @pytest.mark.parametrize("kind", ["pipe", "socket"])
    def test_handler_exception_propagates(
        self,
        backend: ModuleType,
        sigalrm: Any,
        kind: str,
        pipe: Any,
        pipe2: Any,
        sockpair: Any,
        dst: Any,
    ) -> None:
        """A handler that raises: its exception comes out of zerocopy.splice."""

        def handler(signum: int, frame: Any) -> None:
            raise _Interrupted

        sigalrm(handler)
        source, deliver = self._source(kind, pipe, sockpair)
        target = dst[1] if kind == "pipe" else pipe2[1]
        with _Signaller(deliver, [], wait_for_retry=False) as helper, pytest.raises(_Interrupted):
            zerocopy.splice(source, target, 1000)
        assert helper.problems == []
        assert dst[0].read_bytes() == b""


# --- constants -----------------------------------------------------------------


@pytest.fixture
def compiled() -> ModuleType:
    """The compiled cffi module (whatever the current backend)."""
    try:
        _backend.load("cffi")
    except ImportError as exc:
        if os.environ.get("ZEROCOPY_REQUIRE_EXTENSION", "") not in ("", "0"):
            pytest.fail(f"the compiled module is required but does not load: {exc}")
        pytest.skip(f"the compiled module does not load here: {exc}")
    from zerocopy import _zerocopy_cffi

    return _zerocopy_cffi  # type: ignore[no-any-return]


NAMES = [
    "SPLICE_F_MOVE",
    "SPLICE_F_NONBLOCK",
    "SPLICE_F_MORE",
    "SPLICE_F_GIFT",
    "MSG_ZEROCOPY",
    "SO_ZEROCOPY",
]


class TestConstants:
    @pytest.mark.parametrize("name", NAMES)
    def test_match_compiled(self, compiled: ModuleType, name: str) -> None:
        """Each public constant equals the C compiler's value."""
        assert getattr(zerocopy, name) == getattr(compiled.lib, name)

    def test_private_constants_match_compiled(self, compiled: ModuleType) -> None:
        """The error-queue constants equal the compiled ones too."""
        from zerocopy import _constants

        assert _constants.SO_EE_ORIGIN_ZEROCOPY == compiled.lib.SO_EE_ORIGIN_ZEROCOPY
        assert _constants.SO_EE_CODE_ZEROCOPY_COPIED == compiled.lib.SO_EE_CODE_ZEROCOPY_COPIED

    @pytest.mark.parametrize("name", ["SPLICE_F_MOVE", "SPLICE_F_NONBLOCK", "SPLICE_F_MORE"])
    def test_match_os_module(self, name: str) -> None:
        """The splice flags equal the os module's."""
        assert getattr(zerocopy, name) == getattr(os, name)

    def test_abi_version(self, compiled: ModuleType) -> None:
        """The compiled module's ABI version is the one the Python side expects."""
        from zerocopy import _cffi

        assert compiled.lib.zc_abi_version() == _cffi._ABI_VERSION
        assert compiled.lib.ZC_ABI_VERSION == _cffi._ABI_VERSION

    def test_public_surface(self) -> None:
        """__all__ is sorted (isort-style, as ruff's RUF022) and every name in it resolves."""

        def isort_key(name: str) -> tuple[int, str]:
            # CONSTANTS, then Classes, then everything else; each alphabetical.
            return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)

        assert zerocopy.__all__ == sorted(zerocopy.__all__, key=isort_key)
        assert len(set(zerocopy.__all__)) == len(zerocopy.__all__)
        for name in zerocopy.__all__:
            assert getattr(zerocopy, name) is not None
        assert {"BACKEND", "FEATURES"} <= set(dir(zerocopy))


# --- the C error-queue parser ------------------------------------------------------

_SOL_IP, _IP_RECVERR, _SOL_IPV6, _IPV6_RECVERR = 0, 11, 41, 25
_ALIGN = struct.calcsize("N")  # cmsg alignment: sizeof(size_t)
_HDR = struct.calcsize("@Nii")


def _cmsg(level: int, kind: int, payload: bytes) -> bytes:
    """One control message, padded as CMSG_SPACE pads it."""
    raw = struct.pack("@Nii", _HDR + len(payload), level, kind) + payload
    return raw + b"\0" * (-len(raw) % _ALIGN)


def _ee(err: int, origin: int, code: int, info: int, data: int) -> bytes:
    """struct sock_extended_err, then a 16-byte offender address."""
    return struct.pack("=IBBBBII", err, origin, 0, code, 0, info, data) + b"\0" * 16


records = st.tuples(
    st.integers(0, 2**31 - 1),
    st.integers(0, 255),
    st.integers(0, 255),
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**32 - 1),
)


class TestCompletionParser:
    """zc_parse_completions on exact-size buffers, so ASan sees any read past the end."""

    def _parse(self, compiled: ModuleType, control: bytes, length: int, room: int = 16) -> list:
        ffi, lib = compiled.ffi, compiled.lib
        buf = ffi.new("char[]", max(len(control), 1))
        ffi.memmove(buf, control, len(control))
        out = ffi.new("struct zc_completion[]", room)
        n = lib.zc_parse_completions(buf, length, out, room)
        assert 0 <= n <= room
        return [(c.first, c.last, c.code, c.origin, c.err) for c in out[0:n]]

    @settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(
        st.lists(st.tuples(st.sampled_from(["ip", "ipv6", "other"]), records), max_size=6),
        st.integers(1, 16),
    )
    def test_records_round_trip(self, compiled: ModuleType, msgs: list, room: int) -> None:
        """Each IP/IPv6 RECVERR message becomes one record, others are skipped, at most room."""
        control = b""
        expected = []
        for kind, (err, origin, code, info, data) in msgs:
            level, typ = {
                "ip": (_SOL_IP, _IP_RECVERR),
                "ipv6": (_SOL_IPV6, _IPV6_RECVERR),
                "other": (socket.SOL_SOCKET, 1),
            }[kind]
            control += _cmsg(level, typ, _ee(err, origin, code, info, data))
            if kind != "other":
                expected.append((info, data, code, origin, err))
        assert self._parse(compiled, control, len(control), room) == expected[:room]

    @settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.lists(records, min_size=1, max_size=3), st.data())
    def test_truncated_control(self, compiled: ModuleType, recs: list, data: Any) -> None:
        """Cut anywhere, the control data yields only the records that fit, whole."""
        control = b"".join(_cmsg(_SOL_IP, _IP_RECVERR, _ee(*r)) for r in recs)
        cut = data.draw(st.integers(0, len(control)))
        got = self._parse(compiled, control[:cut], cut)
        whole = [(i, d, c, o, e) for (e, o, c, i, d) in recs]
        assert got == whole[: len(got)]
        size = len(_cmsg(_SOL_IP, _IP_RECVERR, _ee(*recs[0])))
        assert len(got) >= min(cut // size, len(recs))

    @settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.binary(max_size=200))
    def test_garbage(self, compiled: ModuleType, control: bytes) -> None:
        """Arbitrary bytes never make the parser read outside the buffer."""
        self._parse(compiled, control, len(control))

    @settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(
        st.integers(0, 64).map(lambda k: 2**64 - 1 - k) | st.integers(2**63, 2**64 - 1),
        st.sampled_from(
            [(_SOL_IP, _IP_RECVERR), (_SOL_IPV6, _IPV6_RECVERR), (socket.SOL_SOCKET, 1), (1, 1)]
        ),
        st.lists(records, max_size=2),
        records,
    )
    def test_huge_cmsg_len_ends_the_walk(
        self,
        compiled: ModuleType,
        cmsg_len: int,
        level_type: tuple[int, int],
        before: list,
        rec: tuple[int, int, int, int, int],
    ) -> None:
        """A cmsg_len near SIZE_MAX (matching level or not) ends the walk instead of looping."""
        level, kind = level_type
        control = b"".join(_cmsg(_SOL_IP, _IP_RECVERR, _ee(*r)) for r in before)
        control += struct.pack("@Nii", cmsg_len, level, kind) + _ee(*rec)
        expected = [(i, d, c, o, e) for (e, o, c, i, d) in before]
        if level_type in ((_SOL_IP, _IP_RECVERR), (_SOL_IPV6, _IPV6_RECVERR)):
            err, origin, code, info, data = rec
            expected.append((info, data, code, origin, err))  # cut short, but whole
        # The C call releases the GIL: a parser that loops for ever would
        # hold its thread, not the test, which fails instead of hanging.
        result: list[list] = []
        worker = threading.Thread(
            target=lambda: result.append(self._parse(compiled, control, len(control))),
            daemon=True,
        )
        worker.start()
        worker.join(5)
        assert not worker.is_alive(), f"zc_parse_completions did not return (cmsg_len {cmsg_len})"
        assert result == [expected]

    def test_empty_and_null(self, compiled: ModuleType) -> None:
        """No control data, a NULL buffer or no room give 0 records."""
        ffi, lib = compiled.ffi, compiled.lib
        out = ffi.new("struct zc_completion[]", 1)
        assert lib.zc_parse_completions(ffi.NULL, 100, out, 1) == 0
        assert lib.zc_parse_completions(ffi.new("char[]", 64), 64, ffi.NULL, 1) == 0
        assert lib.zc_parse_completions(ffi.new("char[]", 64), 64, out, 0) == 0
        assert self._parse(compiled, b"", 0) == []
