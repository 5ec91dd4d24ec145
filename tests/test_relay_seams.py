"""The relay's seams: the backend it started with, its two sides, its timeout argument.

- A relay keeps the backend it was started with: ``_backend.use()`` while it
  runs must not hand one backend's relay state to the other's ``relay_step``.
- One socket on both sides (the same object, another object over its fd, a
  ``dup`` of it, a stream over it) is a :class:`ValueError` before anything
  moves: a relay between a socket and itself would echo its peer's bytes.
- A timeout that is not a number (a string, a bool) is a :class:`TypeError`
  naming the argument, not a comparison error or a one-second timeout.

Every form: blocking, ``zerocopy.aio`` (asyncio, uvloop), ``zerocopy.anyio``
(asyncio, uvloop, trio).  Bytes and counts are compared with what was sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import pytest

import conftest
import zerocopy
import zerocopy.aio as zc_aio
import zerocopy.anyio as zc_anyio
from anyiokit import Run, as_stream
from anyiokit import arun as arun
from anyiokit import uvloop_warmed as uvloop_warmed
from netkit import Runner, payload
from netkit import empty_pool as empty_pool
from netkit import run as run
from test_relay_small_pipes import FORMS, relay_in
from zerocopy import _backend

pytestmark = pytest.mark.usefixtures("no_leaks")

WAIT = 10.0  # seconds any peer waits for bytes before the test fails


@pytest.fixture
def uvloop_ready(uvloop_warmed: None) -> None:
    """uvloop's process-wide fds exist before no_leaks counts."""
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as r:
        r.run(asyncio.sleep(0))


@pytest.fixture
def other(backend: ModuleType) -> ModuleType:
    """The backend that is not under test."""
    name = next(n for n in _backend.NAMES if n != backend.NAME)
    try:
        return _backend.load(name)
    except ImportError as exc:
        pytest.skip(f"the {name} backend does not load here, nothing to switch to: {exc}")


@pytest.fixture
def ends() -> Iterator[tuple[socket.socket, socket.socket, socket.socket, socket.socket]]:
    """(C, a, b, S): client C -> a, b -> server S, loopback TCP; C and S wait at most WAIT s."""
    C, a = conftest.tcp_pair()
    b, S = conftest.tcp_pair()
    for s in (C, S):
        s.settimeout(WAIT)
    yield C, a, b, S
    for s in (C, a, b, S):
        s.close()


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            break
        out += chunk
    return bytes(out)


class TestBackendPinned:
    """A relay keeps its backend when the process switches backends mid-relay."""

    @pytest.mark.parametrize("form", FORMS)
    def test_switch_mid_relay(
        self,
        backend: ModuleType,
        other: ModuleType,
        uvloop_ready: None,
        ends: tuple[socket.socket, ...],
        form: str,
    ) -> None:
        """_backend.use(other) between two bursts: both arrive, counts exact, nothing raised."""
        C, a, b, S = ends
        first, second = payload(300_000, 1), payload(200_000, 2)
        got: list[bytes] = []
        errors: list[BaseException] = []

        def peer() -> None:
            try:
                C.sendall(first)
                got.append(recv_exactly(S, len(first)))  # the relay runs, on backend
                with _backend.use(other.NAME):
                    # Every later step, both directions', under the other backend:
                    # the one that delivered `first` has long returned, and the
                    # switch lasts until the relay has.
                    time.sleep(0.1)
                    C.sendall(second)
                    got.append(recv_exactly(S, len(second)))
                    C.shutdown(socket.SHUT_WR)
                    S.shutdown(socket.SHUT_WR)
                    got.append(recv_exactly(S, 1))  # end of stream: b"" expected
                    ended.wait(3 * WAIT)
            except BaseException as exc:
                errors.append(exc)

        ended = threading.Event()
        t = threading.Thread(target=peer)
        t.start()
        try:
            with conftest.hang_guard(3 * WAIT):
                counts = relay_in(form, a, b, timeout=WAIT)
        finally:
            ended.set()
            if t.is_alive():  # the relay failed: wake the peer
                for s in (C, S):
                    with contextlib.suppress(OSError):
                        s.shutdown(socket.SHUT_RDWR)
            t.join(3 * WAIT)
        assert not errors, errors
        assert got == [first, second, b""]
        assert counts == (len(first) + len(second), 0)
        assert _backend.current() is backend


def _blocking_same(a: socket.socket) -> list[tuple[str, Callable[[], Any]]]:
    return [
        ("the same object", lambda: zerocopy.relay(a, a, timeout=1)),
        ("a dup", lambda: _with_dup(a, lambda d: zerocopy.relay(a, d, timeout=1))),
        (
            "another object over its fd",
            lambda: _with_alias(a, lambda o: zerocopy.relay(o, a, timeout=1)),
        ),
    ]


def _with_dup(a: socket.socket, fn: Callable[[socket.socket], Any]) -> Any:
    with a.dup() as d:
        return fn(d)


def _with_alias(a: socket.socket, fn: Callable[[socket.socket], Any]) -> Any:
    alias = socket.socket(fileno=a.fileno())
    try:
        return fn(alias)
    finally:
        alias.detach()  # the fd is a's


class TestSameSocket:
    """One socket on both sides: ValueError before any byte moves."""

    @pytest.mark.parametrize("how", ["the same object", "a dup", "another object over its fd"])
    def test_blocking(self, backend: ModuleType, ends: tuple[socket.socket, ...], how: str) -> None:
        """relay(a, a), relay(a, dup(a)), relay(socket(fileno=a.fileno()), a): ValueError."""
        C, a, _, _ = ends
        C.sendall(b"waiting")
        call = dict(_blocking_same(a))[how]
        with conftest.hang_guard(WAIT), pytest.raises(ValueError, match="same socket"):
            call()
        assert a.gettimeout() is None  # left as it was
        _check_untouched(C, a)

    def test_aio(self, backend: ModuleType, run: Runner, ends: tuple[socket.socket, ...]) -> None:
        """aio.relay: a twice, a and its dup, a and a stream pair over a dup: ValueError."""
        C, a, _, _ = ends
        C.sendall(b"waiting")
        a.setblocking(False)

        async def main() -> None:
            with a.dup() as d:
                for x, y in [(a, a), (a, d), (d, a)]:
                    with pytest.raises(ValueError, match="same socket"):
                        await zc_aio.relay(x, y, timeout=1)
            _check_untouched(C, a)
            # A stream's transport reads at once: made only now, with a empty.
            pair = await asyncio.open_connection(sock=a.dup())
            with pytest.raises(ValueError, match="same socket"):
                await zc_aio.relay(a, pair, timeout=1)
            assert pair[1].is_closing()  # the relay closed the pair's writer, as documented

        with conftest.hang_guard(WAIT):
            run(main())
        _check_untouched(C, a, data=b"")

    def test_anyio(self, backend: ModuleType, arun: Run, ends: tuple[socket.socket, ...]) -> None:
        """anyio.relay: a twice, a and its dup, a SocketStream over a dup and a: ValueError."""
        C, a, _, _ = ends
        C.sendall(b"waiting")
        a.setblocking(False)

        async def main() -> None:
            with a.dup() as d:
                for x, y in [(a, a), (a, d)]:
                    with pytest.raises(ValueError, match="same socket"):
                        await zc_anyio.relay(x, y, timeout=1)
            _check_untouched(C, a)
            # anyio's asyncio streams read at once: made only now, with a empty.
            stream = await as_stream(a.dup())
            try:
                with pytest.raises(ValueError, match="same socket"):
                    await zc_anyio.relay(stream, a, timeout=1)
            finally:
                await stream.aclose()

        with conftest.hang_guard(WAIT):
            arun(main)
        _check_untouched(C, a, data=b"")


def _check_untouched(C: socket.socket, a: socket.socket, data: bytes = b"waiting") -> None:
    """Nothing came back to C, and a still holds *data* (nothing read from it)."""
    C.setblocking(False)
    with pytest.raises(BlockingIOError):
        C.recv(100)
    C.settimeout(WAIT)
    a.setblocking(False)
    if data:
        assert a.recv(100) == data
    else:
        with pytest.raises(BlockingIOError):
            a.recv(100)


class TestTimeoutType:
    """A timeout that is not a number: TypeError naming it, before anything moves."""

    @pytest.mark.parametrize("form", FORMS)
    @pytest.mark.parametrize("bad", ["1", True, b"1", 1j], ids=["str", "bool", "bytes", "complex"])
    def test_type_error(
        self,
        backend: ModuleType,
        uvloop_ready: None,
        ends: tuple[socket.socket, ...],
        form: str,
        bad: Any,
    ) -> None:
        """relay(timeout=bad) in every form: TypeError that names timeout; no byte moved."""
        C, a, b, S = ends
        C.sendall(b"waiting")
        with conftest.hang_guard(WAIT), pytest.raises(TypeError, match="timeout"):
            relay_in(form, a, b, timeout=bad)
        S.setblocking(False)
        with pytest.raises(BlockingIOError):
            S.recv(100)
        a.setblocking(False)
        assert a.recv(100) == b"waiting"
