"""The low-level calls sendfile, splice, tee and copy_file_range: what each moves.

Every test that takes ``backend`` runs once per backend.  References are the
payload itself (slices of it), file contents read back, and fd positions read
with ``lseek(fd, 0, SEEK_CUR)``; no kernel call is mocked.
"""

from __future__ import annotations

import errno
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import zerocopy
from conftest import only_backend
from copykit import (
    SIZE,
    appending_fixture,  # noqa: F401 - a fixture, found by pytest as appending
    closed_fd,
    dst_fixture,  # noqa: F401 - a fixture, found by pytest as dst
    fionread,
    pipe2_fixture,  # noqa: F401 - a fixture, found by pytest as pipe2
    pipe_fixture,  # noqa: F401 - a fixture, found by pytest as pipe
    pos,
    random_bytes,
    read_fd_exactly,
    sockpair_fixture,  # noqa: F401 - a fixture, found by pytest as sockpair
    src_fd_fixture,  # noqa: F401 - a fixture, found by pytest as src_fd
    src_fixture,  # noqa: F401 - a fixture, found by pytest as src
    tcp_fixture,  # noqa: F401 - a fixture, found by pytest as tcp
)

pytestmark = pytest.mark.usefixtures("no_leaks")


@pytest.fixture
def cffi_backend() -> Iterator[ModuleType]:
    """The cffi backend, made current."""
    yield from only_backend("cffi")


@pytest.fixture
def os_backend() -> Iterator[ModuleType]:
    """The os backend, made current."""
    yield from only_backend("os")


# --- sendfile --------------------------------------------------------------


class TestSendfile:
    def test_file_to_file_with_position(
        self, backend: ModuleType, src: tuple[Path, bytes], src_fd: int, dst: Any
    ) -> None:
        """offset=None reads from the position and advances it; bytes arrive exactly."""
        path, fd = dst
        os.lseek(src_fd, 1000, os.SEEK_SET)
        assert zerocopy.sendfile(fd, src_fd, None, 20_000) == 20_000
        assert pos(src_fd) == 21_000
        assert pos(fd) == 20_000
        assert path.read_bytes() == src[1][1000:21_000]

    def test_offset_leaves_position_alone(
        self, backend: ModuleType, src: tuple[Path, bytes], src_fd: int, dst: Any
    ) -> None:
        """With an int offset reading starts there and the source position stays put."""
        path, fd = dst
        os.lseek(src_fd, 123, os.SEEK_SET)
        assert zerocopy.sendfile(fd, src_fd, 4096, 10_000) == 10_000
        assert pos(src_fd) == 123
        assert zerocopy.sendfile(fd, src_fd, 0, 5) == 5
        assert pos(src_fd) == 123
        assert path.read_bytes() == src[1][4096:14_096] + src[1][:5]

    def test_short_at_eof(
        self, backend: ModuleType, src: tuple[Path, bytes], src_fd: int, dst: Any
    ) -> None:
        """A count past the end returns what remains, then 0."""
        path, fd = dst
        os.lseek(src_fd, SIZE - 100, os.SEEK_SET)
        assert zerocopy.sendfile(fd, src_fd, None, 1000) == 100
        assert zerocopy.sendfile(fd, src_fd, None, 1000) == 0
        assert pos(src_fd) == SIZE
        assert zerocopy.sendfile(fd, src_fd, SIZE - 7, 1000) == 7
        assert zerocopy.sendfile(fd, src_fd, SIZE + 10, 1000) == 0
        assert path.read_bytes() == src[1][-100:] + src[1][-7:]

    def test_count_zero(self, backend: ModuleType, src_fd: int, dst: Any) -> None:
        """count=0 moves nothing and returns 0."""
        path, fd = dst
        assert zerocopy.sendfile(fd, src_fd, None, 0) == 0
        assert pos(src_fd) == 0
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
        assert read_fd_exactly(b.fileno(), 30_000) == src[1][10:30_010]

    def test_loopback_tcp_large(self, backend: ModuleType, tmp_path: Path, tcp: Any) -> None:
        """A 4 MiB file goes out over loopback TCP intact, in however many calls."""
        client, server = tcp
        data = random_bytes(4 << 20, seed=7)
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
                assert pos(f.fileno()) == len(data)
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
        data = random_bytes(size, seed=size)
        path = tmp_path / "h.bin"
        path.write_bytes(data)
        out = tmp_path / "h.out"
        with open(path, "rb") as f, open(out, "wb") as g:
            os.lseek(f.fileno(), start, os.SEEK_SET)
            n = zerocopy.sendfile(g, f, offset, count)
            begin = start if offset is None else offset
            expected = data[begin : begin + count]
            assert n == len(expected)
            assert pos(f.fileno()) == (start + n if offset is None else start)
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
        assert pos(src_fd) == 30_500
        assert read_fd_exactly(r, 30_000) == src[1][500:30_500]

    def test_file_to_pipe_at_offset(
        self, backend: ModuleType, src: tuple[Path, bytes], src_fd: int, pipe: Any
    ) -> None:
        """From a file at an offset: data from there, file position unchanged."""
        r, w = pipe
        os.lseek(src_fd, 77, os.SEEK_SET)
        assert zerocopy.splice(src_fd, w, 12_345, offset_src=9_000) == 12_345
        assert pos(src_fd) == 77
        assert read_fd_exactly(r, 12_345) == src[1][9_000:21_345]

    def test_pipe_to_file_with_position(self, backend: ModuleType, pipe: Any, dst: Any) -> None:
        """Into a file with no offset: written at the position, which advances."""
        r, w = pipe
        path, fd = dst
        os.write(fd, b"0123456789")
        os.lseek(fd, 4, os.SEEK_SET)
        os.write(w, b"abc")
        assert zerocopy.splice(r, fd, 3) == 3
        assert pos(fd) == 7
        assert path.read_bytes() == b"0123abc789"

    def test_pipe_to_file_at_offset(self, backend: ModuleType, pipe: Any, dst: Any) -> None:
        """Into a file at an offset: written there, the file position unchanged."""
        r, w = pipe
        path, fd = dst
        os.write(fd, b"0123456789")
        data = random_bytes(20_000, seed=3)
        os.write(w, data)
        assert zerocopy.splice(r, fd, 20_000, offset_dst=5) == 20_000
        assert pos(fd) == 10
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
        data = random_bytes(40_000, seed=5)
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
        assert pos(src_fd) == SIZE
        assert read_fd_exactly(r, 10) == src[1][-10:]
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
        assert pos(src_fd) == 0
        assert fionread(r) == 0

    def test_accepted_flags(
        self, backend: ModuleType, src: tuple[Path, bytes], src_fd: int, pipe: Any
    ) -> None:
        """SPLICE_F_MOVE and SPLICE_F_MORE are accepted and change no bytes."""
        r, w = pipe
        flags = zerocopy.SPLICE_F_MOVE | zerocopy.SPLICE_F_MORE
        assert zerocopy.splice(src_fd, w, 100, flags=flags) == 100
        assert read_fd_exactly(r, 100) == src[1][:100]

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
        data = random_bytes(30_000, seed=11)
        os.write(w1, data)
        assert zerocopy.tee(r1, w2, len(data)) == len(data)
        assert read_fd_exactly(r2, len(data)) == data
        assert read_fd_exactly(r1, len(data)) == data

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
        assert fionread(pipe2[0]) == 0
        assert fionread(pipe[0]) == 3

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
            zerocopy.tee(closed_fd(), pipe[1], 10)
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
        assert fionread(pipe[0]) == 4
        assert fionread(pipe2[0]) == 0

    def test_os_still_validates(self, os_backend: ModuleType, pipe: Any) -> None:
        """On os, argument errors still come first (TypeError, not UnsupportedOperation)."""
        with pytest.raises(TypeError):
            zerocopy.tee("0", pipe[1], 1)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="count"):
            zerocopy.tee(pipe[0], pipe[1], -1)


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
        assert pos(src_fd) == 20_100
        assert pos(fd) == 20_004
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
        assert pos(src_fd) == 9
        assert pos(fd) == 3
        assert path.read_bytes() == b"012345" + src[1][500:1500]

    def test_mixed_offsets(
        self, backend: ModuleType, src: tuple[Path, bytes], src_fd: int, dst: Any
    ) -> None:
        """One offset given, one not: only the end without an offset moves."""
        path, fd = dst
        assert zerocopy.copy_file_range(src_fd, fd, 10, offset_src=40) == 10
        assert (pos(src_fd), pos(fd)) == (0, 10)
        assert zerocopy.copy_file_range(src_fd, fd, 10, offset_dst=100) == 10
        assert (pos(src_fd), pos(fd)) == (10, 10)
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
        assert pos(src_fd) == SIZE
        assert path.read_bytes() == src[1][-50:]

    def test_count_zero(self, backend: ModuleType, src_fd: int, dst: Any) -> None:
        """count=0 copies nothing and returns 0."""
        assert zerocopy.copy_file_range(src_fd, dst[1], 0) == 0
        assert (pos(src_fd), pos(dst[1])) == (0, 0)
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
