"""Bad input, fuzzed with hypothesis, on relay and aio.relay, both backends.

Sockets of every kind (timeouts, non-blocking, UDP, listening, closed, no
socket at all, the same socket twice) and bad timeouts.

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

import contextlib
import functools
import math
import socket
import threading
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import zerocopy
import zerocopy.aio
from faultkit.fuzz import (
    FUZZ,
    LONG,
    SOCK_KINDS,
    Hang,
    a_socket,
    arun,
    fail_hung,
    outcome,
    watchdog,
)

pytestmark = pytest.mark.usefixtures("no_leaks", "relay_engine")


class TestNet:
    # Short or invalid only: None would wait for peers that never end, and
    # huge or infinite ones have their own tests (TestFoundByFuzzing).
    TIMEOUTS = st.sampled_from([0, 0.01, 0.03, -1, -0.5, math.nan, "1", b"x", []])

    @FUZZ
    @given(a=SOCK_KINDS, b=SOCK_KINDS, timeout=TIMEOUTS, same=st.booleans())
    def test_relay(self, backend: ModuleType, a: str, b: str, timeout: Any, same: bool) -> None:
        """relay returns counts or raises a documented exception; the sockets keep their mode."""
        with a_socket(a) as (sa, pa), a_socket(b) as (sb, _):
            if pa is not None:
                with contextlib.suppress(OSError):  # the peer of a closed socket
                    pa.sendall(b"to b")
            sb2 = sa if same else sb
            modes = [_mode(x) for x in (sa, sb2)]
            result = outcome(zerocopy.relay, sa, sb2, timeout=timeout)
            assert [_mode(x) for x in (sa, sb2)] == modes
        if isinstance(result, tuple):
            assert all(isinstance(n, int) and n >= 0 for n in result)


def _mode(obj: Any) -> Any:
    with contextlib.suppress(Exception):
        return obj.gettimeout()
    return None


class TestAio:
    @FUZZ
    @given(a=SOCK_KINDS, b=SOCK_KINDS, timeout=TestNet.TIMEOUTS.filter(lambda t: t == t))
    def test_relay(self, backend: ModuleType, a: str, b: str, timeout: Any) -> None:
        """aio.relay returns counts or raises a documented exception."""
        with a_socket(a) as (sa, pa), a_socket(b) as (sb, _):
            if pa is not None:
                with contextlib.suppress(OSError):
                    pa.sendall(b"to b")
            result = outcome(arun, zerocopy.aio.relay, sa, sb, timeout=timeout)
        if isinstance(result, tuple):
            assert all(n >= 0 for n in result)


class TestAnyio:
    @pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
    @FUZZ
    @given(a=SOCK_KINDS, b=SOCK_KINDS, timeout=TestNet.TIMEOUTS, same=st.booleans())
    def test_relay(
        self, backend: ModuleType, anyio_backend: str, a: str, b: str, timeout: Any, same: bool
    ) -> None:
        """zerocopy.anyio.relay returns counts or raises a documented exception."""
        import anyio

        import zerocopy.anyio

        def run(x: Any, y: Any) -> Any:
            return anyio.run(
                functools.partial(zerocopy.anyio.relay, x, y, timeout=timeout),
                backend=anyio_backend,
            )

        with a_socket(a) as (sa, pa), a_socket(b) as (sb, _):
            if pa is not None:
                with contextlib.suppress(OSError):
                    pa.sendall(b"to b")
            result = outcome(run, sa, sa if same else sb)
        if isinstance(result, tuple):
            assert all(isinstance(n, int) and n >= 0 for n in result)


# --- inputs that found bugs, one test each -----------------------------------------------


class TestFoundByFuzzing:
    def test_relay_accepts_a_long_idle_timeout(self, backend: ModuleType) -> None:
        """relay(timeout=30 days) waits like any other timeout instead of raising OverflowError."""
        c, a = socket.socketpair()
        b, s = socket.socketpair()
        timer = threading.Timer(
            0.05, lambda: (c.sendall(b"x"), c.shutdown(socket.SHUT_WR), s.shutdown(socket.SHUT_WR))
        )
        timer.start()
        try:
            with watchdog(10):
                assert zerocopy.relay(a, b, timeout=LONG) == (1, 0)
        finally:
            timer.join()
            for x in (a, b, c, s):
                x.close()

    def test_relay_infinite_timeout(self, backend: ModuleType) -> None:
        """relay(timeout=inf) means no timeout (or is a ValueError), not OverflowError."""
        c, a = socket.socketpair()
        b, s = socket.socketpair()
        timer = threading.Timer(
            0.05, lambda: (c.shutdown(socket.SHUT_WR), s.shutdown(socket.SHUT_WR))
        )
        timer.start()
        try:
            with watchdog(10):
                try:
                    assert zerocopy.relay(a, b, timeout=math.inf) == (0, 0)
                except ValueError:
                    pass
        finally:
            timer.join()
            for x in (a, b, c, s):
                x.close()

    def test_aio_relay_nan_timeout(self, backend: ModuleType) -> None:
        """aio.relay(timeout=nan) is refused (ValueError) as relay does, not waited on forever."""
        c, a = socket.socketpair()
        b, s = socket.socketpair()
        with a, b, c, s:
            a.setblocking(False)
            b.setblocking(False)
            hung = False
            try:
                with watchdog(3), pytest.raises(ValueError, match=r"nan|NaN"):
                    arun(zerocopy.aio.relay, a, b, timeout=math.nan)
            except Hang:
                hung = True
        if hung:
            fail_hung("aio.relay(timeout=nan) waited forever")
