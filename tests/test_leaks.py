"""Leaks: 100,000 operations, failures included, leave fds and memory flat.

Each test runs one kind of operation many times on both backends: after a
warm-up (which fills caches, the pipe pool and the allocator's arenas) the
process's fd count and resident set size (``/proc/self/statm``) are taken,
the operation runs again, the garbage collector runs, and both are taken
again.  The fds must be exactly the same; RSS may move by a small tolerance
(allocator noise), far below what one leaked object per operation would add.
The operations per backend add up to more than 100,000.

Under AddressSanitizer (``scripts/sanitize``) freed memory sits in ASan's
quarantine, so RSS grows by design: there, fds are checked and RSS is not.
"""

from __future__ import annotations

import gc
import io
import os
import resource
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

import zerocopy
from conftest import open_fds
from zerocopy import _lowlevel
from zerocopy._pipes import default_pool

KiB = 1 << 10
MiB = 1 << 20
PAGE = resource.getpagesize()
#: RSS growth allowed over a run: allocator noise, not a leak.  One leaked
#: 64-byte object per operation would exceed it within 20,000 operations.
TOLERANCE = 1 * MiB


def _sanitized() -> bool:
    """True when AddressSanitizer's runtime is loaded in this process."""
    with open("/proc/self/maps") as f:
        return "libasan" in f.read()


SANITIZED = _sanitized()


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


class Flat:
    """Checks fds and RSS around a batch of operations."""

    @staticmethod
    def check(name: str, op: Callable[[int], None], n: int, warmup: int | None = None) -> None:
        warmup = warmup if warmup is not None else max(200, n // 10)
        for i in range(warmup):
            op(i)
        gc.collect()
        fds, rss = open_fds(), _rss()
        for i in range(n):
            op(i)
        gc.collect()
        grown = _rss() - rss
        leaked = open_fds() - fds
        assert not leaked, f"{name}: fds left open: {sorted(leaked)}"
        if SANITIZED:
            return  # ASan's quarantine holds freed memory: RSS says nothing here
        assert grown <= TOLERANCE, f"{name}: RSS grew by {grown / KiB:.0f} KiB over {n} operations"


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


class TestHighLevel:
    def test_copyfileobj_tiny_files(self, backend: ModuleType, tmp_path: Path) -> None:
        """10,000 copyfileobj of tiny files (open, copy, close) leave fds and memory flat."""
        (tmp_path / "src").write_bytes(b"tiny" * 10)

        def op(i: int) -> None:
            with open(tmp_path / "src", "rb") as f, open(tmp_path / "dst", "wb") as g:
                assert zerocopy.copyfileobj(f, g) == 40

        Flat.check("copyfileobj tiny", op, 10_000)

    def test_copyfileobj_kernel_paths(self, backend: ModuleType, tmp_path: Path) -> None:
        """3,000 kernel-path copies (file->file, file->pipe, pipe->file, socket->file) stay flat."""
        data = os.urandom(64 * KiB + 1)
        (tmp_path / "src").write_bytes(data)
        a, b = socket.socketpair()
        r, w = os.pipe()
        import fcntl

        fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, 256 * KiB)
        try:
            with open(tmp_path / "src", "rb") as src, open(tmp_path / "dst", "w+b") as dst:

                def op(i: int) -> None:
                    src.seek(0)
                    dst.seek(0)
                    kind = i % 3
                    if kind == 0:
                        assert zerocopy.copyfileobj(src, dst) == len(data)
                    elif kind == 1:
                        with open(w, "wb", closefd=False) as out:
                            assert zerocopy.copyfileobj(src, out) == len(data)
                        assert len(os.read(r, 1 << 20)) == len(data)
                    else:
                        b.sendall(data[:4096])
                        with a.makefile("rb") as sock_in:
                            assert zerocopy.copyfileobj(sock_in, dst, count=4096) == 4096

                Flat.check("copyfileobj kernel", op, 3_000, warmup=300)
        finally:
            a.close()
            b.close()
            os.close(r)
            os.close(w)

    def test_copyfileobj_failures(self, backend: ModuleType, tmp_path: Path) -> None:
        """5,000 failing copies (closed objects, a read-only destination fd) stay flat."""
        (tmp_path / "src").write_bytes(os.urandom(100 * KiB))
        with open(tmp_path / "src", "rb") as closed:
            pass  # a closed file object is what the test needs
        ro = os.open(tmp_path / "src", os.O_RDONLY)
        try:
            with open(tmp_path / "src", "rb") as src:

                def op(i: int) -> None:
                    src.seek(0)
                    if i % 2:
                        with pytest.raises(ValueError, match="closed file"):
                            zerocopy.copyfileobj(closed, io.BytesIO())
                    else:
                        with (
                            open(ro, "wb", closefd=False) as bad,
                            pytest.raises(OSError, match="Bad file descriptor"),
                        ):
                            zerocopy.copyfileobj(src, bad)  # EBADF: not open for writing

                Flat.check("copyfileobj failures", op, 5_000)
        finally:
            os.close(ro)

    def test_send_file(self, backend: ModuleType, tmp_path: Path) -> None:
        """5,000 send_file calls over one socket pair leave fds and memory flat."""
        (tmp_path / "src").write_bytes(os.urandom(8 * KiB))
        a, b = socket.socketpair()
        try:
            with open(tmp_path / "src", "rb") as f:

                def op(i: int) -> None:
                    assert zerocopy.send_file(a, f, i % 1024, 1024) == 1024
                    assert len(b.recv(1024, socket.MSG_WAITALL)) == 1024

                Flat.check("send_file", op, 5_000)
        finally:
            a.close()
            b.close()

    def test_relay(self, backend: ModuleType) -> None:
        """2,000 relays of short exchanges (fresh sockets each time) leave fds and memory flat."""

        def op(i: int) -> None:
            c, a = socket.socketpair()
            b, s = socket.socketpair()
            with a, b, c, s:
                c.sendall(b"ping")
                c.shutdown(socket.SHUT_WR)
                s.sendall(b"pong!")
                s.shutdown(socket.SHUT_WR)
                assert zerocopy.relay(a, b, timeout=5) == (4, 5)
                assert s.recv(10) == b"ping"
                assert c.recv(10) == b"pong!"

        Flat.check("relay", op, 2_000)

    def test_relay_failures(self, backend: ModuleType) -> None:
        """2,000 relays that fail (a peer gone) leave fds, pooled pipes and memory flat."""

        def op(i: int) -> None:
            c, a = socket.socketpair()
            b, s = socket.socketpair()
            with a, b, c:
                s.close()  # writing towards it fails with EPIPE
                c.sendall(b"x" * 100)
                with pytest.raises(BrokenPipeError):
                    zerocopy.relay(a, b, timeout=5)

        Flat.check("relay failures", op, 2_000)
        assert len(default_pool()) <= default_pool().maxsize

    def test_zerocopy_sender(self, backend: ModuleType) -> None:
        """3,000 ZeroCopySender sends, and 1,000 senders made and dropped, stay flat."""
        with socket.create_server(("127.0.0.1", 0)) as listener:
            a = socket.create_connection(listener.getsockname())
            b, _ = listener.accept()
        data = os.urandom(16 * KiB)
        done = threading.Event()

        def drain() -> None:
            while b.recv(1 << 20):
                pass
            done.set()

        reader = threading.Thread(target=drain)
        reader.start()
        try:
            zc = zerocopy.ZeroCopySender(a, threshold=0, stop_on_copied=False)

            def op(i: int) -> None:
                zc.sendall(data)
                if i % 64 == 0:
                    zc.flush(timeout=10)

            Flat.check("ZeroCopySender.sendall", op, 3_000)
            zc.flush(timeout=10)
            assert zc.pending == 0

            def make(i: int) -> None:
                x, y = socket.socketpair()
                with x, y:
                    zerocopy.ZeroCopySender(x)

            Flat.check("ZeroCopySender()", make, 1_000)
        finally:
            a.shutdown(socket.SHUT_WR)
            reader.join(30)
            a.close()
            b.close()

    def test_buffer_pools(self, backend: ModuleType) -> None:
        """1,000 BufferPools made, used and dropped leave no mapping and no registry entry."""
        from zerocopy._msg_zerocopy import bufpool as _bufpool

        def op(i: int) -> None:
            pool = zerocopy.BufferPool(64 * KiB, 4)
            views = [pool.acquire() for _ in range(4)]
            for v in views:
                v[:4] = b"used"
                pool.release(v)
                v.release()

        Flat.check("BufferPool", op, 1_000)
        gc.collect()
        assert len(_bufpool._pools) <= 1

    def test_a_large_length_is_not_kept(self, backend: ModuleType, tmp_path: Path) -> None:
        """copyfileobj(tiny, dst, length=256 MiB) leaves no 256 MiB buffer behind in the thread."""
        # shutil reads with read(length), which allocates lazily and frees at
        # once; zerocopy's readinto loop once zero-filled a buffer of that
        # size and kept it for the thread's next copy (for a server's worker
        # threads, for ever).  Measured in a fresh thread, while it is still
        # alive.
        (tmp_path / "src").write_bytes(b"abc")
        grown: list[int] = []
        go_on = threading.Event()

        def worker() -> None:
            gc.collect()
            before = _rss()
            with open(tmp_path / "src", "rb") as f, open(tmp_path / "dst", "wb") as g:
                assert zerocopy.copyfileobj(f, g, 256 * MiB) == 3
            gc.collect()
            grown.append(_rss() - before)
            go_on.wait(10)

        t = threading.Thread(target=worker)
        t.start()
        try:
            deadline = time.monotonic() + 30
            while not grown and time.monotonic() < deadline:
                time.sleep(0.01)
        finally:
            go_on.set()
            t.join(30)
        assert grown, "the copy did not finish"
        assert grown[0] < 16 * MiB, f"RSS grew by {grown[0] / MiB:.0f} MiB after copying 3 bytes"
