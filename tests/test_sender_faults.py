"""Fault injection for ZeroCopySender (blocking and asyncio), on every backend.

Each test drives real sends into a fault: a receiver that resets at a random
point, a signal every millisecond (with a handler that returns, and one that
raises, or an exception just as a send returns), a full non-blocking socket,
and a socket shut down by another thread.

After each, the promises checked are: the error is the documented one,
``bytes_transferred`` equals what reached the destination, the destination
holds exactly the bytes before that point, no fd is leaked (the default pipe
pool's idle pipes aside) and no thread is left behind.  The machinery the
capabilities share (peers, signal scenarios, subprocess harnesses) is in
``tests/faultkit``.
"""

from __future__ import annotations

import contextlib
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from types import CodeType, ModuleType
from typing import Any

import pytest

import zerocopy
from conftest import tcp_pair
from faultkit import KiB, MiB
from faultkit.peers import (
    PEER_SIZE,
    SEEDS,
    Peer,
    assert_prefix,
    check_socket_shut_down_by_another_thread,
    close_with_reset,
    random_bytes,
    stop_point,
)
from faultkit.signals import (
    Stop,
    check_count_and_position_are_exact,
    check_handler_that_raises,
    check_handler_that_returns,
)

pytestmark = pytest.mark.usefixtures("no_leaks")

# --- peers that go away -------------------------------------------------------------


class TestPeerGone:
    @pytest.mark.parametrize("seed", SEEDS)
    def test_zerocopy_sender_peer_reset(self, backend: ModuleType, seed: int) -> None:
        """ZeroCopySender.sendall to a peer that resets raises with bytes_transferred."""
        data = random_bytes(PEER_SIZE, seed)
        sender, receiver = tcp_pair()
        peer = Peer(receiver, stop_after=stop_point(seed), then=lambda: close_with_reset(receiver))
        peer.start()
        with sender:
            zc = zerocopy.ZeroCopySender(sender, threshold=0, stop_on_copied=False)
            with pytest.raises((ConnectionResetError, BrokenPipeError)) as info:
                zc.sendall(data)
            got = peer.finish()
            zc.flush(timeout=10)  # completions still come after the reset
            assert zc.pending == 0
        # The design's promise for every transfer that fails part-way.
        sent = getattr(info.value, "bytes_transferred", None)
        del info  # see the GC note in faultkit/peers.py
        assert_prefix(got, data, "receiver")
        assert sent is not None, "ZeroCopySender.sendall raised without bytes_transferred"
        assert len(got) <= sent < len(data)


# --- a signal every millisecond -----------------------------------------------------


class TestSignals:
    @pytest.mark.parametrize("api", ["ZeroCopySender.sendall", "ZeroCopySender.sendall:plain"])
    def test_handler_that_returns(self, backend: ModuleType, tmp_path: Path, api: str) -> None:
        """With SIGALRM every millisecond and a quiet handler, the transfer is byte-exact."""
        check_handler_that_returns(tmp_path, api)

    @pytest.mark.parametrize("api", ["ZeroCopySender.sendall", "ZeroCopySender.sendall:plain"])
    def test_handler_that_raises(self, backend: ModuleType, tmp_path: Path, api: str) -> None:
        """A handler's exception ends the transfer, with bytes_transferred == bytes delivered."""
        check_handler_that_raises(tmp_path, api)


class TestRaiseRightAfterACall:
    """The signal race made certain: an exception just as a delivering call returns."""

    @pytest.mark.parametrize("nth", [1, 3])
    @pytest.mark.parametrize(
        "api",
        [
            # The os backend makes no MSG_ZEROCOPY sends: its sender copies.
            pytest.param(api, marks=pytest.mark.only_backend("cffi"))
            for api in ["ZeroCopySender.sendall", "AsyncZeroCopySender.sendall"]
        ],
    )
    def test_count_and_position_are_exact(
        self,
        backend: ModuleType,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        api: str,
        nth: int,
    ) -> None:
        """Stop raised as the nth delivering call returns: its bytes are counted, none repeated."""
        check_count_and_position_are_exact(backend, tmp_path, monkeypatch, api, nth)

    @pytest.mark.only_backend("cffi")
    def test_zero_copy_send_stays_tracked(
        self, backend: ModuleType, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A zero-copy send accepted just before an exception is held until its completion."""
        with socket.create_server(("127.0.0.1", 0)) as listener:
            a = socket.create_connection(listener.getsockname())
            b, _ = listener.accept()
        with a, b:
            zc = zerocopy.ZeroCopySender(a, threshold=0, stop_on_copied=False)
            real = backend.send

            def send_then_raise(*args: Any) -> int:
                raise Stop(real(*args))

            monkeypatch.setattr(backend, "send", send_then_raise)
            released: list[str] = []
            with pytest.raises(Stop):
                zc.send(bytearray(b"x" * 64 * KiB), on_release=lambda: released.append("first"))
            monkeypatch.undo()
            # The kernel numbered that send: releasing its buffer now would be
            # early, and not tracking it would shift every later number.
            assert released == []
            assert zc.pending == 1
            zc.send(bytearray(b"y" * 64 * KiB), on_release=lambda: released.append("second"))
            got = bytearray()
            while len(got) < 128 * KiB:  # a local receiver's read completes the sends
                got += b.recv(1 << 20)
            assert bytes(got) == b"x" * 64 * KiB + b"y" * 64 * KiB
            zc.flush(timeout=10)
            assert sorted(released) == ["first", "second"]
            assert zc.pending == 0
            assert zc.stats.zerocopy_sends == 2


class TestRaiseAtEveryBoundaryOfAPlainSendall:
    """sendall's plain path calls socket.send itself: no backend call to fault there.

    A signal handler runs where the interpreter checks for pending calls:
    as a function starts, as a C function called from Python returns, and
    at a loop's jump back.  A profile function sees the first two ("call",
    "c_return"; and "return", a point more); raising Stop from it at the
    kth one, from sendall's start to its return, stands for a handler
    raising there.  Each run raises at the next point, until a run
    finishes before reaching it, so every point of the path is tried.
    """

    @pytest.mark.parametrize("timeout", [None, 10.0], ids=["blocking", "timeout"])
    def test_count_is_exact_wherever_it_stops(
        self, backend: ModuleType, timeout: float | None
    ) -> None:
        """An exception at any point of a plain sendall: bytes_transferred == bytes delivered."""
        # With a timeout the socket is non-blocking underneath: sends come
        # back short and the rest goes out in a loop, whose points are tried too.
        data = random_bytes(MiB, 5)
        for k in range(1, 400):
            sender, receiver = tcp_pair()
            sender.settimeout(timeout)
            sender.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32 * KiB)  # short sends
            peer = Peer(receiver, pause=0.0005)
            peer.start()
            zc = zerocopy.ZeroCopySender(sender, threshold=len(data) + 1)
            count: Any = "finished"
            with receiver, sender:
                try:
                    with raising_at_point(k, zerocopy.ZeroCopySender.sendall.__code__):
                        zc.sendall(data)
                except Stop as exc:
                    count = getattr(exc, "bytes_transferred", None)
                    del exc  # see the GC note in faultkit/peers.py
                sender.shutdown(socket.SHUT_WR)
                got = peer.finish()
            assert_prefix(got, data, "receiver")
            if count == "finished":
                assert got == data
                # Blocking: one send; with a timeout, dozens of short ones.
                assert k > (3 if timeout is None else 10), f"finished at point {k}: too few"
                return
            if count is None:  # raised as sendall began: nothing may have moved
                assert got == b"", f"point {k}: no bytes_transferred, {len(got)} delivered"
                continue
            assert count == len(got), f"point {k}: counted {count}, {len(got)} delivered"
        pytest.fail("sendall never finished: more points than tried")


@contextlib.contextmanager
def raising_at_point(k: int, code: CodeType) -> Iterator[None]:
    """Raise Stop at the kth point where a signal handler could run within a call of *code*."""
    seen = 0
    armed = False

    def profile(frame: Any, event: str, arg: Any) -> None:
        nonlocal seen, armed
        if frame.f_code is code and event in ("call", "return"):
            # From its start to its return: an exception after that is the caller's.
            armed = event == "call"
        if armed and event in ("call", "return", "c_return"):
            seen += 1
            if seen == k:
                sys.setprofile(None)
                raise Stop(k)

    sys.setprofile(profile)
    try:
        yield
    finally:
        sys.setprofile(None)


# --- non-blocking fds where blocking ones were expected ---------------------------


class TestNonBlocking:
    def test_zerocopy_sender_on_a_full_nonblocking_socket(self, backend: ModuleType) -> None:
        """ZeroCopySender.send on a full non-blocking socket: BlockingIOError, nothing held."""
        a, b = tcp_pair()
        with a, b:
            a.setblocking(False)
            zc = zerocopy.ZeroCopySender(a, threshold=0, stop_on_copied=False)
            chunk = bytes(256 * KiB)
            released = []

            def fill() -> None:
                for _ in range(10_000):
                    zc.send(chunk)

            with pytest.raises(BlockingIOError):
                fill()
            with pytest.raises(BlockingIOError):
                zc.send(chunk, on_release=lambda: released.append(1))
            assert released == [1]  # a send that failed released its buffer at once
            b.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                while b.recv(1 << 20):
                    pass
            zc.flush(timeout=10)
            assert zc.pending == 0


# --- an fd replaced or shut down by another thread -------------------------------


class TestFdGoneMidTransfer:
    @pytest.mark.parametrize("kind", ["tcp", "unix"])
    @pytest.mark.parametrize("api", ["ZeroCopySender"])
    def test_socket_shut_down_by_another_thread(
        self, backend: ModuleType, tmp_path: Path, kind: str, api: str
    ) -> None:
        """shutdown() from another thread ends a blocked send: BrokenPipeError, exact counts."""
        check_socket_shut_down_by_another_thread(tmp_path, kind, api)
