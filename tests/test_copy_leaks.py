"""Leaks of copyfileobj: many thousand copies, failures included, stay flat.

Each test runs one kind of operation many times on both backends and checks
that the process's fds stay exactly the same and its resident set size flat
(:class:`faultkit.flat.Flat`).  Over all the ``tests/test_*_leaks.py`` files
the operations per backend add up to more than 100,000.
"""

from __future__ import annotations

import gc
import io
import os
import socket
import threading
import time
from pathlib import Path
from types import ModuleType

import pytest

import zerocopy
from faultkit import KiB, MiB
from faultkit.flat import Flat, rss_bytes


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
            before = rss_bytes()
            with open(tmp_path / "src", "rb") as f, open(tmp_path / "dst", "wb") as g:
                assert zerocopy.copyfileobj(f, g, 256 * MiB) == 3
            gc.collect()
            grown.append(rss_bytes() - before)
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
