"""The low-level call vmsplice: buffer kinds, pinning, and its errors.

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
import signal
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import zerocopy
from conftest import only_backend
from copykit import (
    fill_pipe,
    fionread,
    pipe_fixture,  # noqa: F401 - a fixture, found by pytest as pipe
    random_bytes,
    read_fd_exactly,
    sockpair_fixture,  # noqa: F401 - a fixture, found by pytest as sockpair
    src_fd_fixture,  # noqa: F401 - a fixture, found by pytest as src_fd
    src_fixture,  # noqa: F401 - a fixture, found by pytest as src
)

pytestmark = pytest.mark.usefixtures("no_leaks")


@pytest.fixture
def cffi_backend() -> Iterator[ModuleType]:
    """The cffi backend, made current."""
    yield from only_backend("cffi")


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
        parts = [random_bytes(1000 + i, seed=i) for i in range(len(KINDS))]
        buffers = [_buffer(kind, part) for kind, part in zip(KINDS, parts, strict=True)]
        expected = b"".join(parts)
        assert zerocopy.vmsplice(w, buffers) == len(expected)
        assert read_fd_exactly(r, len(expected)) == expected

    def test_file_object_and_generator(self, backend: ModuleType, pipe: Any) -> None:
        """A pipe file object and any iterable of buffers are accepted."""
        r, w = pipe
        with os.fdopen(os.dup(w), "wb", buffering=0) as pw:
            assert zerocopy.vmsplice(pw, (b for b in [b"ab", b"cd"])) == 4
        assert os.read(r, 10) == b"abcd"

    def test_more_buffers_than_iov_max(self, backend: ModuleType, pipe: Any) -> None:
        """Past IOV_MAX buffers, both backends take at most IOV_MAX a call: short, no EINVAL."""
        r, w = pipe
        limit = os.sysconf("SC_IOV_MAX")
        buffers = [bytes([i % 251]) for i in range(limit + 500)]
        expected = b"".join(buffers)
        got = bytearray()
        while len(got) < len(expected):
            # One-byte buffers: the count says how many buffers went in.
            moved = zerocopy.vmsplice(w, buffers[len(got) :])
            assert 0 < moved <= limit
            got += read_fd_exactly(r, moved)
        assert bytes(got) == expected
        assert fionread(r) == 0

    def test_empty(self, backend: ModuleType, pipe: Any) -> None:
        """No buffers, or only empty ones, add nothing and return 0."""
        r, w = pipe
        assert zerocopy.vmsplice(w, []) == 0
        assert zerocopy.vmsplice(w, [b"", bytearray()]) == 0
        assert fionread(r) == 0

    @pytest.mark.parametrize("kind", KINDS)
    def test_temporary_buffer_survives(self, backend: ModuleType, pipe: Any, kind: str) -> None:
        """A buffer dropped right after vmsplice still reads back intact (it is pinned)."""
        r, w = pipe
        data = random_bytes(3000, seed=42)
        assert _vmsplice_temporary(w, kind, data) == len(data)
        gc.collect()
        # Reuse the freed memory, if any was freed, with other bytes.
        churn = [bytearray(b"\xff" * len(data)) for _ in range(64)]
        assert read_fd_exactly(r, len(data)) == data
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
            assert read_fd_exactly(r, 8000) == b"p" * 8000
            return
        with pytest.raises(BufferError):
            buf.extend(b"!")
        with pytest.raises(BufferError):
            del buf[:10]
        # Half read: a later vmsplice must still keep it.
        assert read_fd_exactly(r, 4000) == b"p" * 4000
        assert zerocopy.vmsplice(w, []) == 0
        with pytest.raises(BufferError):
            buf.extend(b"!")
        # All read: the next vmsplice on this pipe lets it go.
        assert read_fd_exactly(r, 4000) == b"p" * 4000
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
        assert read_fd_exactly(r, 4096) == b"m" * 4096
        zerocopy.vmsplice(w, [])
        m.close()

    def test_gift_refused(self, backend: ModuleType, pipe: Any) -> None:
        """SPLICE_F_GIFT, alone or with other flags, is a ValueError and nothing is written."""
        r, w = pipe
        for flags in (zerocopy.SPLICE_F_GIFT, zerocopy.SPLICE_F_GIFT | zerocopy.SPLICE_F_MORE):
            with pytest.raises(ValueError, match="GIFT"):
                zerocopy.vmsplice(w, [b"x"], flags)
        assert fionread(r) == 0

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
        filled = fill_pipe(w)
        with pytest.raises(BlockingIOError) as info:
            zerocopy.vmsplice(w, [b"x" * 100], zerocopy.SPLICE_F_NONBLOCK)
        assert info.value.errno == errno.EAGAIN
        assert info.value.strerror.startswith("vmsplice: ")
        assert fionread(r) == filled

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
        assert fionread(r) == slots - 1 + moved

    def test_more_than_fits_returns_short(
        self, backend: ModuleType, request: pytest.FixtureRequest, pipe: Any
    ) -> None:
        """More than the pipe holds and no reader: vmsplice adds what fits and returns."""
        r, w = pipe
        data = random_bytes(200_000, seed=9)
        with _deadline(0.5):
            moved = zerocopy.vmsplice(w, [data])
        assert 0 < moved <= fcntl.fcntl(w, fcntl.F_GETPIPE_SZ)
        assert read_fd_exactly(r, moved) == data[:moved]

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
        assert fionread(r) == 0

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
        assert fionread(r) == 0
