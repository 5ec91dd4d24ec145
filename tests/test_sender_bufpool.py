"""BufferPool: page-aligned buffers that come back only after their zero-copy completions."""

from __future__ import annotations

import asyncio
import ctypes
import hashlib
import itertools
import mmap
import socket
import threading
import time
from types import ModuleType

import pytest

import zerocopy
from netkit import KiB, MiB, msg_zerocopy

# `name as name`: fixtures, re-exported so that linters count them as used.
from netkit import pair as pair
from timekit import Spinner, assert_waited, scaled
from zerocopy.aio import AsyncZeroCopySender


def address(view: memoryview) -> int:
    return ctypes.addressof(ctypes.c_char.from_buffer(view))


class Drain(threading.Thread):
    """Reads a socket to end of stream in a thread, keeping the bytes."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(daemon=True)
        self.sock = sock
        self.data = bytearray()

    def run(self) -> None:
        self.sock.settimeout(60)
        while d := self.sock.recv(MiB):
            self.data += d

    def finish(self) -> bytes:
        self.join(60)
        assert not self.is_alive()
        return bytes(self.data)


class TestConstruction:
    @pytest.mark.parametrize("args", [(0, 1), (-1, 1), (4096, 0), (4096, -3)])
    def test_bad_values(self, args: tuple[int, int]) -> None:
        """Sizes and counts must be positive: ValueError."""
        with pytest.raises(ValueError, match="must be > 0"):
            zerocopy.BufferPool(*args)

    @pytest.mark.parametrize("args", [(1.5, 1), (True, 1), ("4096", 1), (4096, None), (4096, 2.0)])
    def test_bad_types(self, args: tuple[object, object]) -> None:
        """Sizes and counts must be ints (not bool): TypeError."""
        with pytest.raises(TypeError):
            zerocopy.BufferPool(*args)  # type: ignore[arg-type]

    def test_exported(self) -> None:
        """BufferPool and PoolExhausted are public names."""
        assert {"BufferPool", "PoolExhausted"} <= set(zerocopy.__all__)


class TestBuffers:
    @pytest.mark.parametrize("size", [1, 1000, mmap.PAGESIZE, mmap.PAGESIZE + 1, 64 * KiB + 3])
    def test_page_aligned_distinct_writable(self, size: int) -> None:
        """Every buffer starts on a page, has the asked size, is writable and overlaps no other."""
        pool = zerocopy.BufferPool(size, 5)
        views = [pool.acquire() for _ in range(5)]
        starts = sorted(address(v) for v in views)
        assert all(a % mmap.PAGESIZE == 0 for a in starts)
        assert all(b - a >= size for a, b in itertools.pairwise(starts))
        for i, v in enumerate(views):
            assert len(v) == size
            assert not v.readonly
            v[:] = bytes([i]) * size
        for i, v in enumerate(views):
            assert bytes(v) == bytes([i]) * size
        for v in views:
            pool.release(v)
        assert pool.available == 5

    def test_acquire_release_cycle(self) -> None:
        """Acquire takes a buffer out, release puts it back; available counts them."""
        pool = zerocopy.BufferPool(4096, 3)
        assert pool.available == 3
        a, b = pool.acquire(), pool.acquire()
        assert pool.available == 1
        pool.release(a)
        assert pool.available == 2
        pool.release(b)
        assert pool.available == 3

    def test_exhausted_non_blocking(self) -> None:
        """acquire(blocking=False) with every buffer out raises PoolExhausted."""
        pool = zerocopy.BufferPool(4096, 1)
        v = pool.acquire()
        with pytest.raises(zerocopy.PoolExhausted):
            pool.acquire(blocking=False)
        pool.release(v)
        pool.release(pool.acquire(blocking=False))

    def test_timeout(self) -> None:
        """acquire(timeout=0.1) with every buffer out raises TimeoutError after about 0.1 s."""
        pool = zerocopy.BufferPool(4096, 1)
        pool.acquire()
        t0 = time.monotonic()
        with pytest.raises(TimeoutError):
            pool.acquire(timeout=0.1)
        assert 0.09 <= time.monotonic() - t0 < scaled(1.0)

    def test_blocking_acquire_waits_for_release(self) -> None:
        """A blocked acquire returns once another thread releases a buffer."""
        pool = zerocopy.BufferPool(4096, 1)
        v = pool.acquire()
        timer = threading.Timer(0.2, pool.release, (v,))
        timer.start()
        t0 = time.monotonic()
        w = pool.acquire(timeout=5)
        assert 0.15 <= time.monotonic() - t0 < scaled(3)
        assert address(w) == address(v)
        timer.join()

    def test_double_release(self) -> None:
        """Releasing a buffer twice raises ValueError."""
        pool = zerocopy.BufferPool(4096, 2)
        v = pool.acquire()
        pool.release(v)
        with pytest.raises(ValueError, match="twice"):
            pool.release(v)
        assert pool.available == 2

    def test_foreign_views(self) -> None:
        """A view the pool did not hand out raises ValueError."""
        pool = zerocopy.BufferPool(4096, 2)
        other = zerocopy.BufferPool(4096, 2)
        for foreign in (memoryview(bytearray(4096)), other.acquire(), memoryview(b"")):
            with pytest.raises(ValueError, match="not handed out by this pool"):
                pool.release(foreign)
        assert pool.available == 2

    def test_view_released_by_caller_does_not_poison_the_pool(self) -> None:
        """A caller releasing its view (or a `with` on it) leaves the pool usable (BUG today)."""
        pool = zerocopy.BufferPool(4096, 1)
        v = pool.acquire()
        v[:3] = b"abc"
        pool.release(v)
        v.release()  # the caller is done with its view: good hygiene
        w = pool.acquire(blocking=False)
        w[:3] = b"xyz"  # ValueError today: the pool hands out the same, now dead, view
        pool.release(w)
        with pool.acquire() as buf:  # memoryview's own context manager
            buf[0] = 1
            pool.release(buf)
        assert pool.available == 1
        pool.acquire(blocking=False)[0] = 2

    def test_blocked_acquire_does_not_spin(self, pair: tuple[socket.socket, ...]) -> None:
        """A blocked acquire() costs little CPU even if a sender's socket hung up (BUG today)."""
        a, b = pair
        pool = zerocopy.BufferPool(64 * KiB, 1)
        s = zerocopy.ZeroCopySender(a, stop_on_copied=False)
        buf = pool.acquire()
        s.sendall(buf)  # registers the sender with the pool (on the cffi backend)
        b.settimeout(10)
        assert len(b.recv(MiB)) > 0
        s.flush(timeout=10)
        a.shutdown(socket.SHUT_RDWR)  # finished: its socket now polls as POLLHUP
        with Spinner() as spinner, pytest.raises(TimeoutError):  # a busy loop beside it
            pool.acquire(timeout=1.0)  # the caller still holds the only buffer
        assert_waited(spinner.rest, spinner.usage, work=0.02, what="acquire")


class TestInFlight:
    def test_released_buffer_waits_for_completion(
        self, backend: ModuleType, pair: tuple[socket.socket, ...]
    ) -> None:
        """A buffer released while its zero-copy send is in flight returns only at completion."""
        a, b = pair
        drain = Drain(b)
        drain.start()
        pool = zerocopy.BufferPool(64 * KiB, 1)
        s = zerocopy.ZeroCopySender(a, stop_on_copied=False)
        buf = pool.acquire()
        buf[:] = b"\x5a" * len(buf)
        s.sendall(buf)
        pool.release(buf)
        if backend.NAME == "cffi" and msg_zerocopy(backend):
            assert s.pending >= 1
            assert pool.available == 0
            with pytest.raises(zerocopy.PoolExhausted):
                pool.acquire(blocking=False)
            # A blocking acquire reads the sender's completions itself.
            t0 = time.monotonic()
            again = pool.acquire(timeout=scaled(5))
            assert time.monotonic() - t0 < scaled(5)
            assert s.pending == 0
        else:
            assert s.pending == 0
            assert pool.available == 1
            again = pool.acquire(blocking=False)
        assert address(again) == address(buf)
        pool.release(again)
        a.shutdown(socket.SHUT_WR)
        assert drain.finish() == b"\x5a" * 64 * KiB

    def test_flush_returns_buffer(
        self, backend: ModuleType, pair: tuple[socket.socket, ...]
    ) -> None:
        """After flush() every released buffer is back; two sends from one buffer both count."""
        a, b = pair
        drain = Drain(b)
        drain.start()
        pool = zerocopy.BufferPool(128 * KiB, 2)
        s = zerocopy.ZeroCopySender(a, stop_on_copied=False)
        buf = pool.acquire()
        buf[:] = bytes(range(256)) * (len(buf) // 256)
        s.sendall(buf[: 64 * KiB])
        s.sendall(buf[64 * KiB :])  # two sends in flight from one buffer
        pool.release(buf)
        if backend.NAME == "cffi" and msg_zerocopy(backend):
            assert pool.available == 1
        s.flush(timeout=10)
        assert pool.available == 2
        a.shutdown(socket.SHUT_WR)
        assert drain.finish() == bytes(range(256)) * (128 * KiB // 256)

    def test_below_threshold_not_held(
        self, backend: ModuleType, pair: tuple[socket.socket, ...]
    ) -> None:
        """A pool buffer sent plainly (below the threshold) is free as soon as it is released."""
        a, b = pair
        drain = Drain(b)
        drain.start()
        pool = zerocopy.BufferPool(4096, 1)
        s = zerocopy.ZeroCopySender(a)  # threshold 10 KiB > 4 KiB
        buf = pool.acquire()
        s.sendall(buf)
        pool.release(buf)
        assert pool.available == 1
        assert s.pending == 0
        a.shutdown(socket.SHUT_WR)
        assert drain.finish() == bytes(4096)

    def test_reuse_byte_exact(self, backend: ModuleType, pair: tuple[socket.socket, ...]) -> None:
        """Two buffers reused 300 times: the receiver sees every fill exactly, none overwritten."""
        a, b = pair
        drain = Drain(b)
        drain.start()
        size = 48 * KiB
        pool = zerocopy.BufferPool(size, 2)
        expect = hashlib.sha256()
        with zerocopy.ZeroCopySender(a, stop_on_copied=False) as s:
            for i in range(300):
                buf = pool.acquire(timeout=10)
                fill = (i.to_bytes(2, "little") * (size // 2))[:size]
                buf[:] = fill
                expect.update(fill)
                s.sendall(buf)
                pool.release(buf)
        assert pool.available == 2
        a.shutdown(socket.SHUT_WR)
        assert hashlib.sha256(drain.finish()).digest() == expect.digest()
        if backend.NAME == "cffi" and msg_zerocopy(backend):
            assert s.stats.zerocopy_sends >= 300

    def test_async_sender(self, backend: ModuleType) -> None:
        """Pool buffers through the asyncio sender come back after its flush()."""

        async def main() -> tuple[bytes, int]:
            loop = asyncio.get_running_loop()
            ls = socket.create_server(("127.0.0.1", 0))
            a = socket.create_connection(ls.getsockname())
            b, _ = ls.accept()
            ls.close()
            with a, b:
                a.setblocking(False)
                b.setblocking(False)

                async def rx() -> bytes:
                    got = bytearray()
                    while d := await loop.sock_recv(b, MiB):
                        got += d
                    return bytes(got)

                task = asyncio.ensure_future(rx())
                pool = zerocopy.BufferPool(256 * KiB, 2)
                async with AsyncZeroCopySender(a, stop_on_copied=False) as s:
                    for i in range(20):
                        buf = pool.acquire(blocking=False) if pool.available else None
                        if buf is None:
                            await s.flush(10)
                            buf = pool.acquire(blocking=False)
                        buf[:] = bytes([i]) * len(buf)
                        await s.sendall(buf)
                        pool.release(buf)
                a.shutdown(socket.SHUT_WR)
                return await task, pool.available

        got, available = asyncio.run(asyncio.wait_for(main(), 60))
        assert got == b"".join(bytes([i]) * 256 * KiB for i in range(20))
        assert available == 2
