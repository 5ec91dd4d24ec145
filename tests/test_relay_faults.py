"""Fault injection for relay, on every backend.

Each test drives a real relay into a fault: a peer that resets mid-relay, a
signal every millisecond (with a handler that returns, and one that raises,
or an exception just as a delivering call returns), sockets already
non-blocking, a socket replaced by /dev/null or shut down by another thread,
a stalled receiver, and an exhausted fd limit (in a subprocess; the same run
checks that copies fall back and send_file still works there).

After each, the promises checked are: the error is the documented one,
``bytes_transferred`` equals what reached the destination, the destination
holds exactly the bytes before that point, no fd is leaked (the default pipe
pool's idle pipes aside) and no thread is left behind.  The machinery the
capabilities share (peers, signal scenarios, subprocess harnesses) is in
``tests/faultkit``.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import zerocopy
from conftest import tcp_pair
from faultkit import KiB, MiB
from faultkit.children import NOFILE_CHILD
from faultkit.peers import (
    SEEDS,
    Feeder,
    Peer,
    close_with_reset,
    later,
    random_bytes,
    stop_point,
)
from faultkit.signals import (
    check_count_and_position_are_exact,
    check_handler_that_raises,
    check_handler_that_returns,
)
from timekit import Usage, assert_waited, busy, scaled

pytestmark = pytest.mark.usefixtures("no_leaks")

# --- peers that go away -------------------------------------------------------------


class TestPeerGone:
    @pytest.mark.parametrize("seed", SEEDS)
    @pytest.mark.parametrize("side", ["client", "server"])
    def test_relay_peer_reset(self, backend: ModuleType, side: str, seed: int) -> None:
        """A peer resetting mid-relay: relay raises, and the intact direction's count is exact."""
        up = random_bytes(8 * MiB, seed)  # client -> server
        down = random_bytes(8 * MiB, seed + 100)  # server -> client
        c, a = tcp_pair()  # client peer C, relay's socket a
        b, s = tcp_pair()  # relay's socket b, server peer S
        gone, intact = (c, s) if side == "client" else (s, c)
        gone_part = (up if gone is c else down)[: 256 * KiB]
        stop = stop_point(seed)

        def gone_peer() -> None:
            # One thread, one socket: send a little, read a random amount, reset.
            with contextlib.suppress(OSError):
                gone.sendall(gone_part)
                left = stop
                while left > 0 and (chunk := gone.recv(min(left, 64 * KiB))):
                    left -= len(chunk)
            close_with_reset(gone)

        gone_thread = threading.Thread(target=gone_peer, daemon=True)
        intact_reader = Peer(intact)
        intact_writer = Feeder(intact, down if intact is s else up, end="shutdown")
        for t in (gone_thread, intact_reader, intact_writer):
            t.start()
        try:
            with pytest.raises((ConnectionResetError, BrokenPipeError)) as info:
                zerocopy.relay(a, b, timeout=20)
            exc = info.value
            assert a.gettimeout() is None  # restored
            assert b.gettimeout() is None
            # Whatever the relay delivered towards the intact peer gets there.
            towards_intact = b if intact is s else a
            with contextlib.suppress(OSError):
                towards_intact.shutdown(socket.SHUT_WR)
            got_intact = intact_reader.finish()
        finally:
            for sock in (a, b):
                sock.close()  # ends the intact writer, which nobody reads any more
            for t in (gone_thread, intact_reader, intact_writer):
                t.join(30)
            intact.close()
        if intact is s:
            assert got_intact == up[: exc.a_to_b]  # type: ignore[attr-defined]
        else:
            assert got_intact == down[: exc.b_to_a]  # type: ignore[attr-defined]
        assert exc.bytes_transferred == (exc.a_to_b, exc.b_to_a)  # type: ignore[attr-defined]


# --- a signal every millisecond -----------------------------------------------------


class TestSignals:
    @pytest.mark.parametrize("api", ["relay"])
    def test_handler_that_returns(self, backend: ModuleType, tmp_path: Path, api: str) -> None:
        """With SIGALRM every millisecond and a quiet handler, the transfer is byte-exact."""
        check_handler_that_returns(tmp_path, api)

    @pytest.mark.parametrize("api", ["relay"])
    def test_handler_that_raises(self, backend: ModuleType, tmp_path: Path, api: str) -> None:
        """A handler's exception ends the transfer, with bytes_transferred == bytes delivered."""
        check_handler_that_raises(tmp_path, api)


class TestRaiseRightAfterACall:
    """The signal race made certain: an exception just as a delivering call returns."""

    @pytest.mark.parametrize("nth", [1, 3])
    @pytest.mark.parametrize("api", ["relay"])
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


# --- non-blocking fds where blocking ones were expected ---------------------------


class TestNonBlocking:
    def test_relay_takes_nonblocking_sockets_and_restores_them(self, backend: ModuleType) -> None:
        """relay works on sockets already non-blocking and leaves them non-blocking."""
        data = random_bytes(2 * MiB)
        c, a = socket.socketpair()
        b, s = socket.socketpair()
        a.setblocking(False)
        b.settimeout(5.0)
        feeder = Feeder(c, data, end="shutdown")
        peer = Peer(s)
        s.shutdown(socket.SHUT_WR)
        feeder.start()
        peer.start()
        try:
            assert zerocopy.relay(a, b, timeout=20) == (len(data), 0)
            assert a.gettimeout() == 0.0
            assert b.gettimeout() == 5.0
            b.shutdown(socket.SHUT_WR)
            assert peer.finish() == data
        finally:
            for sock in (a, b, c, s):
                sock.close()
            feeder.finish()


# --- an fd replaced or shut down by another thread -------------------------------


class TestFdGoneMidTransfer:
    @pytest.mark.parametrize("which", ["a", "b"])
    def test_relay_socket_replaced_by_dev_null(self, backend: ModuleType, which: str) -> None:
        """/dev/null dup2'd over a relay socket mid-stream: an OSError at once, no hang."""
        c, a = socket.socketpair()
        b, s = socket.socketpair()
        feeder = Feeder(c, random_bytes(64 * MiB), chunk=64 * KiB, pace=0.001, end=None)
        drain = Peer(s)
        feeder.start()
        drain.start()
        victim = a if which == "a" else b

        def replace() -> None:
            null = os.open(os.devnull, os.O_RDWR)
            os.dup2(null, victim.fileno())
            os.close(null)

        killer = later(0.05, replace)
        started = time.monotonic()
        try:
            with pytest.raises(OSError, match="Invalid argument") as info:
                zerocopy.relay(a, b, timeout=scaled(20))
            took = time.monotonic() - started
            moved = info.value.bytes_transferred  # type: ignore[attr-defined]
            del info
        finally:
            killer.join()
            for sock in (a, b, c, s):
                sock.close()  # ends the feeder and the drain
            feeder.finish()
            drain.finish()
        assert took < scaled(5)
        assert moved[0] > 0  # it was relaying when the fd went

    @pytest.mark.parametrize("which", ["a", "b"])
    def test_relay_socket_shut_down_by_another_thread(
        self, backend: ModuleType, which: str
    ) -> None:
        """Shutting a relay socket down from another thread ends the relay: no hang."""
        c, a = socket.socketpair()
        b, s = socket.socketpair()
        # Neither peer sends, so the relay sits in poll; each peer answers an
        # end of stream with its own, as servers and clients do.
        peers = [
            Peer(c, then=lambda: c.shutdown(socket.SHUT_WR)),
            Peer(s, then=lambda: s.shutdown(socket.SHUT_WR)),
        ]
        for p in peers:
            p.start()
        victim = a if which == "a" else b
        killer = later(0.05, lambda: victim.shutdown(socket.SHUT_RDWR))
        try:
            started = time.monotonic()
            try:
                # A TimeoutError would pass the count check below, so the
                # bound must stay under the timeout: both are scaled.
                result: Any = zerocopy.relay(a, b, timeout=scaled(20))
            except OSError as exc:
                result = exc
            assert time.monotonic() - started < scaled(5)
            killer.join()
            if isinstance(result, tuple):
                assert result == (0, 0)
            else:
                assert result.bytes_transferred == (0, 0)  # type: ignore[attr-defined]
        finally:
            for sock in (a, b):
                sock.close()
            for p in peers:
                p.finish()
            c.close()
            s.close()


# --- full pipes and stalled peers -------------------------------------------------
class TestFullPipes:
    def test_relay_with_a_stalled_receiver(self, backend: ModuleType) -> None:
        """A receiver that stops reading for 300 ms: the relay waits without spinning, exact."""
        data = random_bytes(16 * MiB)
        c, a = tcp_pair()
        b, s = tcp_pair()
        gate = threading.Event()
        feeder = Feeder(c, data, end="shutdown")
        peer = Peer(s, gate=gate)
        s.shutdown(socket.SHUT_WR)
        feeder.start()
        peer.start()
        spun: list[Usage] = []

        def open_later() -> None:
            # Stalled for 0.3 s, busy meanwhile: what a spinning relay would get.
            spun.append(busy(0.3))
            gate.set()

        opener = threading.Thread(target=open_later, daemon=True)
        opener.start()
        try:
            cpu = time.thread_time()
            assert zerocopy.relay(a, b, timeout=20) == (len(data), 0)
            cpu = time.thread_time() - cpu
            # relay passed the half-close on already; once both FINs are
            # acknowledged the connection is closed and shutdown() says ENOTCONN.
            with contextlib.suppress(OSError):
                b.shutdown(socket.SHUT_WR)
            assert peer.finish() == data
        finally:
            for sock in (a, b, c, s):
                sock.close()
            feeder.finish()
            opener.join()
        # 16 MiB through splice costs a few hundredths of a second of CPU.
        assert_waited(cpu, spun[0], work=0.05, what="the relay")


# --- the fd limit, in a subprocess ----------------------------------------------------


class TestFdLimit:
    def test_exhausted_fds_fail_cleanly(self, backend: ModuleType, tmp_path: Path) -> None:
        """RLIMIT_NOFILE used up: copies fall back, pool and relay raise EMFILE, nothing leaks."""
        env = dict(os.environ, ZEROCOPY_BACKEND=backend.NAME)
        proc = subprocess.run(
            [sys.executable, "-c", NOFILE_CHILD, str(tmp_path)],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        out = json.loads(proc.stdout)
        assert out["copy"] == [MiB, "readinto"]  # the pipe pool failed; the copy fell back
        assert out["copy_exact"]
        assert out["acquire"] == errno.EMFILE
        # No fd, or one: the relay hub (its epoll set and wake-up eventfd: two)
        # cannot be made, so the relay runs its own rounds, and a pipe takes
        # two: EMFILE before moving a byte.
        for free in (0, 1):
            assert out[f"relay{free}"] == ["OSError", errno.EMFILE, [0, 0]], out
        # Two: the hub is made with them, and no pipe is left: EMFILE again,
        # before a byte moves.  The 1,000 bytes sent meanwhile wait in the socket.
        assert out["relay2"] == ["OSError", errno.EMFILE, [0, 0]], out
        # Four: with the hub kept, two make one pipe.  A direction holds it
        # only while bytes are in flight, so one pipe serves both: the 1,000
        # bytes go over, and the relay ends on its idle timeout.
        assert out["relay4"] == ["TimeoutError", errno.ETIMEDOUT, [0, 1000]], out
        # Six: the bytes went over already; only the end of stream is left.
        assert out["relay6"] == ["TimeoutError", errno.ETIMEDOUT, [0, 0]], out
        for free in (0, 1, 2, 4, 6):
            assert out[f"relay{free}_leak"] == []
            assert out[f"relay{free}_blocking"] == [None, None]
        assert out["copyfile"] == errno.EMFILE
        assert out["copyfile_leak"] == []
        assert out["send_file"] == out["recv"] == MiB
