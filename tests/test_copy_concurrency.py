"""Concurrency of the copies: many threads copying at once, and the GIL released.

Sixteen threads run copyfileobj (every fd-kind pair) and copyfile at the same
time, on both backends, sharing the process-wide pipe pool; one test mixes
in every other operation too (send_file, relay, ZeroCopySender).  A
copyfileobj waiting on a socket sleeps in splice without holding the GIL.
Every byte is checked.  The operations, and the probe that a blocked call
lets other threads run, are in ``tests/faultkit/threads.py``.
"""

from __future__ import annotations

import shutil
import socket
import threading
from pathlib import Path
from types import ModuleType

import pytest

import zerocopy
from faultkit import KiB, MiB
from faultkit.peers import random_bytes
from faultkit.threads import OPERATIONS, GilProbe, assert_progressed, run_threads

pytestmark = pytest.mark.usefixtures("no_leaks")


class TestSixteenThreads:
    def test_mixed_operations(self, backend: ModuleType, tmp_path: Path) -> None:
        """16 threads, 4 rounds each, every operation kind at once: all byte-exact."""
        names = sorted(OPERATIONS)

        def work(i: int) -> None:
            for round_ in range(4):
                name = names[(i + round_) % len(names)]
                OPERATIONS[name](tmp_path, 1000 * i + round_)

        run_threads(work)

    @pytest.mark.parametrize(
        "name", ["copyfile", "file->file", "file->socket", "pipe->file", "socket->file"]
    )
    def test_one_operation_sixteen_times(
        self, backend: ModuleType, tmp_path: Path, name: str
    ) -> None:
        """16 threads doing the same operation at the same moment: all byte-exact."""
        run_threads(lambda i: OPERATIONS[name](tmp_path, 7 + i))

    def test_patch_shutil_from_many_threads(self, backend: ModuleType, tmp_path: Path) -> None:
        """Nested patch_shutil blocks in 16 threads leave shutil as it was, copies exact."""
        original = (shutil.copyfileobj, shutil.copyfile)

        def work(i: int) -> None:
            data = random_bytes(100 * KiB + i, i)
            (tmp_path / f"s{i}").write_bytes(data)
            for _ in range(5):
                with zerocopy.patch_shutil():
                    shutil.copyfile(tmp_path / f"s{i}", tmp_path / f"d{i}")
                assert (tmp_path / f"d{i}").read_bytes() == data

        run_threads(work)
        assert (shutil.copyfileobj, shutil.copyfile) == original

    def test_last_method_is_per_thread(self, backend: ModuleType, tmp_path: Path) -> None:
        """last_method() reports each thread's own copy, not another thread's."""
        big = tmp_path / "big"
        big.write_bytes(random_bytes(2 * MiB, 1))
        results: dict[int, tuple[str | None, str]] = {}

        def work(i: int) -> None:
            for _ in range(10):
                if i % 2:
                    with open(big, "rb") as f, open(tmp_path / f"d{i}", "wb") as g:
                        zerocopy.copyfileobj(f, g)
                    expect = "copy_file_range"
                else:
                    import io

                    zerocopy.copyfileobj(io.BytesIO(b"x" * 100), io.BytesIO())
                    expect = "read"
                results[i] = (zerocopy.last_method(), expect)

        run_threads(work)
        for got, expect in results.values():
            assert got == expect


# --- the GIL is released while a call blocks -----------------------------------------------


class TestGilReleased:
    def test_copyfileobj_waiting_on_a_socket(self, backend: ModuleType, tmp_path: Path) -> None:
        """copyfileobj(socket -> file) waiting for data sleeps in splice, GIL released."""
        a, b = socket.socketpair()
        with a, b, a.makefile("rb") as src, open(tmp_path / "dst", "wb") as dst:
            # Something to read first, so the copy is past shutil's loop's two
            # chunks and peek(), and in its splice loop.
            first = random_bytes(2 * 64 * KiB + 5)
            b.sendall(first)
            started = threading.Event()

            def copy() -> int:
                started.set()
                return zerocopy.copyfileobj(src, dst)

            probe = GilProbe(
                copy, "splice", lambda: b.shutdown(socket.SHUT_WR), ("shutdown", b.fileno())
            )
            baseline, during, moved = probe.run()
            assert moved == len(first)
        assert (tmp_path / "dst").read_bytes() == first
        assert_progressed(baseline, during)
