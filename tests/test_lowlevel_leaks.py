"""Leaks of the low-level calls: many thousand calls, failures included, stay flat.

Each test runs one kind of operation many times on both backends and checks
that the process's fds stay exactly the same and its resident set size flat
(:class:`faultkit.flat.Flat`).  Over all the ``tests/test_*_leaks.py`` files
the operations per backend add up to more than 100,000.
"""

from __future__ import annotations

import os
import resource
import tempfile
from collections.abc import Callable, Iterator
from types import ModuleType

import pytest

import zerocopy
from faultkit import KiB
from faultkit.flat import Flat
from zerocopy import _lowlevel


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    r, w = os.pipe()
    yield r, w
    os.close(r)
    os.close(w)


@pytest.fixture
def closed_fd() -> int:
    """An fd number that nothing in the test will open: just under the fd limit."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    fd = min(soft, 1 << 16) - 2
    with pytest.raises(OSError, match="Bad file descriptor"):
        os.fstat(fd)
    return fd


class TestLowLevel:
    def test_splice_between_pipes(self, backend: ModuleType, pipe: tuple[int, int]) -> None:
        """20,000 splices pipe -> pipe (and the reads) leave fds and memory flat."""
        r, w = pipe
        r2, w2 = os.pipe()
        try:

            def op(i: int) -> None:
                os.write(w, b"abcdefgh")
                assert zerocopy.splice(r, w2, 64) == 8
                assert os.read(r2, 64) == b"abcdefgh"

            Flat.check("splice", op, 20_000)
        finally:
            os.close(r2)
            os.close(w2)

    def test_sendfile_file_to_pipe(self, backend: ModuleType, pipe: tuple[int, int]) -> None:
        """10,000 sendfiles file -> pipe with offsets leave fds and memory flat."""
        r, w = pipe
        with tempfile.TemporaryFile() as f:
            f.write(b"0123456789" * 100)
            f.flush()

            def op(i: int) -> None:
                assert zerocopy.sendfile(w, f, i % 500, 100) == 100
                assert len(os.read(r, 200)) == 100

            Flat.check("sendfile", op, 10_000)

    def test_vmsplice_and_read(self, backend: ModuleType, pipe: tuple[int, int]) -> None:
        """10,000 vmsplices, each read back, release every pinned buffer."""
        r, w = pipe

        def op(i: int) -> None:
            data = bytes([i % 256]) * 512
            assert zerocopy.vmsplice(w, [data, bytearray(data)]) == 1024
            assert os.read(r, 2048) == data * 2

        Flat.check("vmsplice", op, 10_000)
        # What the pipe's reader consumed is let go on a later call.
        zerocopy.vmsplice(w, [b"x"])
        os.read(r, 1)
        zerocopy.vmsplice(w, [b"y"])
        held = sum(len(p.held) for p in _lowlevel._pins.values())
        assert held <= 2

    def test_vmsplice_into_many_pipes(self, backend: ModuleType) -> None:
        """5,000 pipes, each vmspliced into and closed unread, leave no pinned buffer behind."""

        def op(i: int) -> None:
            r, w = os.pipe()
            zerocopy.vmsplice(w, [b"z" * 100])
            os.close(r)
            os.close(w)

        Flat.check("vmsplice-many-pipes", op, 5_000)
        r, w = os.pipe()
        zerocopy.vmsplice(w, [b"last"])  # prunes the pins of every closed pipe
        os.read(r, 10)
        os.close(r)
        os.close(w)
        assert len(_lowlevel._pins) <= 1

    def test_tee_or_unsupported(self, backend: ModuleType, pipe: tuple[int, int]) -> None:
        """10,000 tees (UnsupportedOperation on os) leave fds and memory flat."""
        r, w = pipe
        r2, w2 = os.pipe()
        os.write(w, b"tee me")
        try:

            def op(i: int) -> None:
                if backend.NAME == "cffi":
                    assert zerocopy.tee(r, w2, 6) == 6
                    assert os.read(r2, 10) == b"tee me"
                else:
                    with pytest.raises(zerocopy.UnsupportedOperation):
                        zerocopy.tee(r, w2, 6)

            Flat.check("tee", op, 10_000)
        finally:
            os.close(r2)
            os.close(w2)

    def test_copy_file_range(self, backend: ModuleType) -> None:
        """10,000 small copy_file_range calls leave fds and memory flat."""
        with tempfile.TemporaryFile() as src, tempfile.TemporaryFile() as dst:
            src.write(os.urandom(8 * KiB))
            src.flush()

            def op(i: int) -> None:
                assert zerocopy.copy_file_range(src, dst, 4096, i % 4096, 0) == 4096

            Flat.check("copy_file_range", op, 10_000)

    def test_failing_calls(
        self, backend: ModuleType, closed_fd: int, pipe: tuple[int, int]
    ) -> None:
        """20,000 calls failing with EBADF, EINVAL or EAGAIN leave fds and memory flat."""
        r, w = pipe
        os.set_blocking(r, False)
        with tempfile.TemporaryFile() as f:
            calls: list[Callable[[], object]] = [
                lambda: zerocopy.sendfile(closed_fd, f, 0, 10),  # EBADF
                lambda: zerocopy.splice(closed_fd, w, 10),  # EBADF
                lambda: zerocopy.copy_file_range(f, closed_fd, 10),  # EBADF
                lambda: zerocopy.vmsplice(closed_fd, [b"x"]),  # EBADF
                lambda: zerocopy.splice(f, f, 10, 0, 0),  # EINVAL: no pipe
                lambda: zerocopy.splice(r, w, 10),  # EAGAIN: empty
                lambda: zerocopy.tee(closed_fd, w, 10),  # EBADF / UnsupportedOperation
                lambda: zerocopy.sendfile(w, f, -1, 10),  # ValueError, no call made
            ]

            def op(i: int) -> None:
                with pytest.raises((OSError, ValueError)):
                    calls[i % len(calls)]()

            Flat.check("failing calls", op, 20_000)
