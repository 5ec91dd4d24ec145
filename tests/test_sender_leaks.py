"""Leaks of ZeroCopySender and BufferPool: thousands of sends and pools stay flat.

Each test runs one kind of operation many times on both backends and checks
that the process's fds stay exactly the same and its resident set size flat
(:class:`faultkit.flat.Flat`).  Over all the ``tests/test_*_leaks.py`` files
the operations per backend add up to more than 100,000.
"""

from __future__ import annotations

import gc
import os
import socket
import threading
from types import ModuleType

import zerocopy
from faultkit import KiB
from faultkit.flat import Flat


class TestHighLevel:
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
