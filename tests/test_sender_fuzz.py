"""Bad input, fuzzed with hypothesis, on ZeroCopySender and BufferPool, both backends.

Sockets of every kind, bad thresholds, flags, data and flush timeouts for
the sender; bad sizes, counts, timeouts and foreign buffers for the pool.
The only acceptable outcomes are a return value or one of the documented
exceptions: :class:`TypeError`, :class:`ValueError`, :class:`OSError` and
its subclasses (``shutil``'s errors, :class:`io.UnsupportedOperation`),
:class:`NotImplementedError` (:class:`zerocopy.UnsupportedOperation`).

Never a crash, never a hang: every example runs under a SIGALRM watchdog,
every fd that could block is non-blocking, and files live on a small tmpfs
so that no call can fill the disk.  The inputs that found bugs have their
own tests (:class:`TestFoundByFuzzing`) and are left out of the strategies,
so each finding shows in exactly one test, which keeps it fixed.  The
watchdog, the strategies and the zoo of fds are in ``tests/faultkit``.
"""

from __future__ import annotations

import array
import math
import os
import socket
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import zerocopy
from faultkit import KiB, MiB
from faultkit.children import check_buffer_error_in_a_reference_cycle
from faultkit.fuzz import (
    ALLOWED,
    FUZZ,
    LONG,
    NUMBERS,
    SOCK_KINDS,
    Hang,
    a_socket,
    drain_socket,
    fail_hung,
    late_reader,
    outcome,
    watchdog,
)

pytestmark = pytest.mark.usefixtures("no_leaks")


class TestNet:
    DATA = st.one_of(
        st.binary(max_size=64 * KiB),
        st.binary(max_size=4 * KiB).map(bytearray),
        st.binary(min_size=2, max_size=4 * KiB).map(lambda b: memoryview(b)[::2]),
        st.sampled_from(
            [
                "text",
                5,
                None,
                array.array("d", [1.0] * 300),
                memoryview(bytes(64)).cast("B", (8, 8)),
                object(),
            ]
        ),
    )

    @FUZZ
    @given(
        sock=SOCK_KINDS,
        threshold=st.one_of(NUMBERS, st.just(0)),
        stop=st.sampled_from([True, False, None, "x"]),
        fallback=st.sampled_from([True, False]),
        data=st.lists(DATA, max_size=3),
        flush=st.sampled_from([0, 0.05, -1, math.nan, "x", None]),
    )
    def test_zerocopy_sender(
        self,
        backend: ModuleType,
        sock: str,
        threshold: Any,
        stop: Any,
        fallback: bool,
        data: list[Any],
        flush: Any,
    ) -> None:
        """ZeroCopySender construction, send, sendall, poll and flush: documented errors only."""
        with a_socket(sock) as (s, peer):
            zc = outcome(
                zerocopy.ZeroCopySender,
                s,
                threshold=threshold,
                fallback=fallback,
                stop_on_copied=stop,
            )
            if isinstance(zc, BaseException):
                return
            for item in data:
                outcome(zc.send, item)
                outcome(zc.sendall, item)
                outcome(zc.poll)
                if peer is not None:
                    drain_socket(peer)
            if flush is None:
                # Wait for the completions that can come: the socket is still open.
                outcome(zc.flush, 5)
                assert zc.pending == 0
            else:
                outcome(zc.flush, flush)

    @FUZZ
    @given(
        size=st.one_of(st.integers(-10, 1 << 20), st.sampled_from([None, 1.5, "4096", True])),
        count=st.one_of(st.integers(-10, 64), st.sampled_from([None, 2.0, "2", False])),
        blocking=st.sampled_from([True, False, None, "x"]),
        timeout=st.sampled_from([None, 0, 0.01, -1, "x"]),
        # Memoryviews not from the pool; other objects: TestFoundByFuzzing.
        foreign=st.one_of(
            st.builds(lambda: memoryview(bytearray(4096))),
            st.builds(lambda: memoryview(b"x")),
            st.builds(lambda: memoryview(bytearray(10))[2:]),
        ),
    )
    def test_buffer_pool(
        self, backend: ModuleType, size: Any, count: Any, blocking: Any, timeout: Any, foreign: Any
    ) -> None:
        """BufferPool: construction, acquire until exhausted, bad releases: documented errors."""
        pool = outcome(zerocopy.BufferPool, size, count)
        if isinstance(pool, BaseException):
            return
        views = []
        for _ in range(pool.count + 1):
            v = outcome(pool.acquire, blocking=False)
            if isinstance(v, zerocopy.PoolExhausted):
                break
            views.append(v)
        assert len(views) == pool.count
        # Every buffer out: a timed acquire gives up, an untimed blocking one would wait.
        if blocking is False or (timeout is not None and not isinstance(timeout, str)):
            r = outcome(pool.acquire, blocking=blocking, timeout=timeout)
            assert isinstance(r, (zerocopy.PoolExhausted, TimeoutError, *ALLOWED)), r
        result = outcome(pool.release, foreign)
        assert isinstance(result, (TypeError, ValueError)), result
        for v in views:
            assert outcome(pool.release, v) is None
        if views:
            assert isinstance(outcome(pool.release, views[0]), ValueError)  # twice


# --- inputs that found bugs, one test each -----------------------------------------------


class TestFoundByFuzzing:
    def test_zerocopy_sender_on_a_socket_with_a_long_timeout(self, backend: ModuleType) -> None:
        """ZeroCopySender.sendall, 30-day socket timeout, slow reader: no OverflowError."""
        data = os.urandom(16 * MiB)
        with socket.create_server(("127.0.0.1", 0)) as listener:
            a = socket.create_connection(listener.getsockname())
            b, _ = listener.accept()
        a.settimeout(LONG)
        with late_reader(a, b) as got, watchdog(20):
            zc = zerocopy.ZeroCopySender(a, threshold=0, stop_on_copied=False)
            zc.sendall(data)
            zc.flush(timeout=10)
        assert bytes(got) == data

    @pytest.mark.parametrize("call", ["ZeroCopySender.send"])
    def test_buffer_error_in_a_reference_cycle(
        self, request: pytest.FixtureRequest, backend: ModuleType, call: str
    ) -> None:
        """A failed call whose exception ends up in a reference cycle does not crash the GC."""
        check_buffer_error_in_a_reference_cycle(backend, call)

    def test_buffer_pool_too_big(self, backend: ModuleType) -> None:
        """A BufferPool too big to map raises ValueError or OSError (ENOMEM), not OverflowError."""
        with pytest.raises((ValueError, OSError)):
            zerocopy.BufferPool(2**62, 2)  # 2**63 bytes: mmap's length overflows

    def test_buffer_pool_release_of_a_non_buffer(self, backend: ModuleType) -> None:
        """BufferPool.release of something that is no memoryview raises TypeError or ValueError."""
        pool = zerocopy.BufferPool(4096, 1)
        for foreign in (bytearray(10), b"x", None, 5):  # once AttributeError ('obj')
            with pytest.raises((TypeError, ValueError)):
                pool.release(foreign)

    def test_buffer_pool_acquire_nan_timeout(self, backend: ModuleType) -> None:
        """BufferPool.acquire(timeout=nan) on an exhausted pool returns or raises, never hangs."""
        pool = zerocopy.BufferPool(4096, 1)
        view = pool.acquire()
        hung = False
        try:
            with watchdog(3), pytest.raises((ValueError, TimeoutError)):
                pool.acquire(timeout=math.nan)
        except Hang:
            hung = True
        finally:
            pool.release(view)
        if hung:
            fail_hung("BufferPool.acquire(timeout=nan) never returned")
