"""zerocopy.relay: both directions between two stream sockets, through pooled pipes.

Topology in every test: a client peer ``C`` connected to the relay's socket
``a``, and a server peer ``S`` connected to the relay's socket ``b``; the relay
runs in a thread.  Sockets are real (loopback TCP, AF_UNIX socket pairs, or
one of each), payloads are random, and the peers run in threads (or one
selector thread for the 100-relay test).  Every test that takes ``backend``
runs once per backend, and every test checks that it leaves no fd (the
default pipe pool's idle pipes aside) and no thread behind.
"""

from __future__ import annotations

import os
import random
import select
import selectors
import socket
import struct
import threading
import time
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

import zerocopy
from conftest import stream_pair
from timekit import Spinner, assert_waited, busy, scaled
from zerocopy._pipes import PipePool, default_pool
from zerocopy._relay.direction import Direction

KiB = 1 << 10
MiB = 1 << 20
ODD = 64 * KiB + 17

# --- leak checks --------------------------------------------------------------


# Every test here fails if it leaves fds (pooled idle pipes aside) or threads.
pytestmark = pytest.mark.usefixtures("no_leaks", "relay_engine")


# --- helpers ------------------------------------------------------------------


def _payload(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


def _is_reset(exc: BaseException) -> bool:
    """A reset as the relay reports it (an error, not a bool narrowing for the type checker)."""
    return isinstance(exc, (ConnectionResetError, BrokenPipeError))


def _is_timeout(exc: BaseException) -> bool:
    return isinstance(exc, TimeoutError)


def _reset(sock: socket.socket) -> None:
    """Close *sock* with SO_LINGER 0: a TCP reset."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class Relay(threading.Thread):
    """zerocopy.relay(a, b) in a thread; keeps the result or exception and the thread's CPU."""

    def __init__(self, a: socket.socket, b: socket.socket, **kwargs: Any) -> None:
        super().__init__(daemon=True)
        self.a, self.b, self.kwargs = a, b, kwargs
        self.result: tuple[int, int] | None = None
        self.exc: BaseException | None = None
        self.cpu = 0.0
        self.seconds = 0.0

    def run(self) -> None:
        c0, w0 = time.thread_time(), time.monotonic()
        try:
            self.result = zerocopy.relay(self.a, self.b, **self.kwargs)
        except BaseException as exc:  # inspected by the test
            self.exc = exc
        self.cpu = time.thread_time() - c0
        self.seconds = time.monotonic() - w0

    def outcome(self, timeout: float = 30) -> tuple[int, int]:
        self.join(timeout)
        assert not self.is_alive(), "relay did not return"
        if self.exc is not None:
            raise self.exc
        assert self.result is not None
        return self.result

    def failure(self, timeout: float = 30) -> Any:
        self.join(timeout)
        assert not self.is_alive(), "relay did not return"
        assert self.exc is not None, f"relay returned {self.result}"
        return self.exc


class Reader(threading.Thread):
    """Reads a peer socket to end of stream (or error), keeping the bytes."""

    def __init__(self, sock: socket.socket, gate: threading.Event | None = None) -> None:
        super().__init__(daemon=True)
        self.sock, self.gate = sock, gate
        self.data = bytearray()
        self.error: BaseException | None = None
        self.eof_at: float | None = None

    def run(self) -> None:
        buf = memoryview(bytearray(MiB))
        try:
            if self.gate is not None:
                self.gate.wait(30)
            while n := self.sock.recv_into(buf):
                self.data += buf[:n]
            self.eof_at = time.monotonic()
        except OSError as exc:
            self.error = exc

    def finish(self, timeout: float = 30) -> bytes:
        self.join(timeout)
        assert not self.is_alive(), "peer did not see end of stream"
        assert self.error is None, self.error
        return bytes(self.data)


class Writer(threading.Thread):
    """Sends *data* from a peer socket in chunks (optionally paced), then shuts down or not."""

    def __init__(
        self,
        sock: socket.socket,
        data: bytes,
        *,
        shutdown: bool = True,
        chunk: int = 256 * KiB,
        pace: float = 0.0,
    ) -> None:
        super().__init__(daemon=True)
        self.sock, self.data, self.shutdown, self.chunk, self.pace = (
            sock,
            data,
            shutdown,
            chunk,
            pace,
        )
        self.error: BaseException | None = None
        self.done_at: float | None = None

    def run(self) -> None:
        view = memoryview(self.data)
        try:
            for i in range(0, len(view), self.chunk):
                self.sock.sendall(view[i : i + self.chunk])
                if self.pace:
                    time.sleep(self.pace)
            self.done_at = time.monotonic()
            if self.shutdown:
                self.sock.shutdown(socket.SHUT_WR)
        except OSError as exc:
            self.error = exc

    def finish(self, timeout: float = 30) -> None:
        self.join(timeout)
        assert not self.is_alive(), "peer could not send"
        assert self.error is None, self.error


class Setup:
    """C <-> a [relay] b <-> S, for socket kinds "tcp", "unix" or "mixed" (a TCP, b unix)."""

    def __init__(self, kind: str) -> None:
        self.C, self.a = stream_pair("unix" if kind == "unix" else "tcp")
        self.b, self.S = stream_pair("tcp" if kind == "tcp" else "unix")
        self.socks = [self.C, self.a, self.b, self.S]

    def close(self) -> None:
        for s in self.socks:
            s.close()


@pytest.fixture(params=["tcp", "unix", "mixed"])
def kind(request: pytest.FixtureRequest) -> str:
    """Loopback TCP on both sides, AF_UNIX on both, or TCP on a and AF_UNIX on b."""
    return str(request.param)


@pytest.fixture
def setup(kind: str) -> Iterator[Setup]:
    """The two connections around a relay; every socket closed at the end."""
    s = Setup(kind)
    yield s
    s.close()


def _exchange(
    s: Setup, up: bytes, down: bytes, **relay_kwargs: Any
) -> tuple[tuple[int, int], bytes, bytes, Relay]:
    """Send *up* C->S and *down* S->C concurrently through a relay; return what each got."""
    relay = Relay(s.a, s.b, **relay_kwargs)
    relay.start()
    threads: list[Any] = [Writer(s.C, up), Writer(s.S, down), Reader(s.C), Reader(s.S)]
    for t in threads:
        t.start()
    try:
        counts = relay.outcome(120)
        threads[0].finish()
        threads[1].finish()
        at_c = threads[2].finish()
        at_s = threads[3].finish()
    finally:
        for sock in s.socks:
            if sock.fileno() >= 0 and threads[0].is_alive():
                sock.close()
        for t in threads:
            t.join(10)
    return counts, at_s, at_c, relay


# --- byte-exact ---------------------------------------------------------------


class TestTransfer:
    @pytest.mark.parametrize("size", [0, 1, ODD, 8 * MiB], ids=["0B", "1B", "64K+17", "8M"])
    def test_both_directions_at_once(self, backend: ModuleType, setup: Setup, size: int) -> None:
        """Both directions, sent concurrently, arrive byte-exact; counts are returned."""
        up, down = _payload(size, 1), _payload(size, 2)
        counts, at_s, at_c, _ = _exchange(setup, up, down)
        assert at_s == up
        assert at_c == down
        assert counts == (size, size)

    def test_uneven_directions(self, backend: ModuleType, setup: Setup) -> None:
        """One direction large, the other tiny: both exact, counts in (a_to_b, b_to_a) order."""
        up, down = _payload(3 * MiB + 5, 3), _payload(7, 4)
        counts, at_s, at_c, _ = _exchange(setup, up, down)
        assert (at_s, at_c) == (up, down)
        assert counts == (len(up), len(down))

    def test_small_paced_messages(self, backend: ModuleType, setup: Setup) -> None:
        """Many small, paced writes both ways are delivered in order, nothing duplicated."""
        up, down = _payload(50 * 101, 5), _payload(50 * 37, 6)
        relay = Relay(setup.a, setup.b, timeout=10)
        relay.start()
        ts: list[Any] = [
            Writer(setup.C, up, chunk=101, pace=0.002),
            Writer(setup.S, down, chunk=37, pace=0.003),
            Reader(setup.C),
            Reader(setup.S),
        ]
        for t in ts:
            t.start()
        assert relay.outcome() == (len(up), len(down))
        ts[0].finish()
        ts[1].finish()
        assert ts[2].finish() == down
        assert ts[3].finish() == up

    @pytest.mark.slow
    def test_256_mib(self, backend: ModuleType) -> None:
        """256 MiB C->S over TCP on both sides (with 1 MiB S->C alongside), exact by hash."""
        import hashlib

        s = Setup("tcp")
        block = _payload(MiB, 7)
        want = hashlib.blake2b()
        total = 256 * MiB

        def send() -> None:
            for i in range(total // MiB):
                s.C.sendall(struct.pack("<Q", i) + block[8:])
            s.C.shutdown(socket.SHUT_WR)

        for i in range(total // MiB):
            want.update(struct.pack("<Q", i) + block[8:])
        got = hashlib.blake2b()
        count = 0

        def recv() -> None:
            nonlocal count
            buf = memoryview(bytearray(MiB))
            while n := s.S.recv_into(buf):
                got.update(buf[:n])
                count += n

        down = _payload(MiB, 8)
        relay = Relay(s.a, s.b)
        relay.start()
        sender, receiver = threading.Thread(target=send), threading.Thread(target=recv)
        back: list[Any] = [Writer(s.S, down), Reader(s.C)]
        for t in (sender, receiver, *back):
            t.start()
        try:
            assert relay.outcome(180) == (total, len(down))
            sender.join(30)
            receiver.join(30)
            back[0].finish()
            assert back[1].finish() == down
        finally:
            s.close()
            for t in (sender, receiver, *back):
                t.join(10)
        assert count == total
        assert got.digest() == want.digest()


# --- half-close ---------------------------------------------------------------


class TestHalfClose:
    @pytest.mark.parametrize("first", ["client", "server"])
    def test_eof_passes_on_and_other_direction_carries_on(
        self, backend: ModuleType, setup: Setup, first: str
    ) -> None:
        """One peer shuts down writing; the other sees EOF, keeps sending a while, then closes."""
        quiet, talker = (setup.C, setup.S) if first == "client" else (setup.S, setup.C)
        early, late = _payload(ODD, 9), _payload(2 * MiB + 3, 10)
        relay = Relay(setup.a, setup.b, timeout=20)
        with Spinner() as spinner:  # the baseline: a busy loop beside the relay
            relay.start()
            got_early = Reader(talker)
            got_late = Reader(quiet)
            got_early.start()
            got_late.start()
            quiet.sendall(early)
            quiet.shutdown(socket.SHUT_WR)
            # The talker sees end of stream while it still has everything to send.
            got_early.join(10)
            assert got_early.finish() == early
            # Paced so the relay waits most of the time (0.8 s in all): long
            # enough for a spin to show on a loaded machine too.
            writer = Writer(talker, late, chunk=128 * KiB, pace=0.05, shutdown=False)
            writer.start()
            writer.finish()
            talker.close()
            assert got_late.finish() == late
            counts = relay.outcome()
        expected = (len(early), len(late)) if first == "client" else (len(late), len(early))
        assert counts == expected
        # Waiting on one paced direction costs next to nothing: a spinning
        # relay would have burnt what the busy loop got over its lifetime.
        assert_waited(relay.cpu, spinner.usage, wall=relay.seconds, work=0.03, what="the relay")

    def test_both_shut_down_at_once(self, backend: ModuleType, setup: Setup) -> None:
        """Both peers shut down writing without sending: the relay returns (0, 0)."""
        relay = Relay(setup.a, setup.b, timeout=10)
        relay.start()
        setup.C.shutdown(socket.SHUT_WR)
        setup.S.shutdown(socket.SHUT_WR)
        assert relay.outcome() == (0, 0)
        assert setup.C.recv(10) == b""
        assert setup.S.recv(10) == b""


# --- resets -------------------------------------------------------------------


class TestReset:
    @pytest.mark.parametrize("resetter", ["client", "server"])
    def test_reset_by_sending_peer(self, backend: ModuleType, resetter: str) -> None:
        """A peer resets mid-stream: ConnectionResetError; counts equal what each end received."""
        s = Setup("tcp")
        try:
            x, y = (s.C, s.S) if resetter == "client" else (s.S, s.C)
            to_x = _payload(256 * KiB, 11)
            relay = Relay(s.a, s.b)
            relay.start()
            at_y = Reader(y)
            at_y.start()
            y.sendall(to_x)  # y keeps its connection open, silent after this
            got = bytearray()
            while len(got) < len(to_x):
                got += x.recv(len(to_x) - len(got))
            assert got == to_x
            from_x = _payload(16 * MiB, 12)
            x.sendall(from_x)  # queued in x's kernel, not all through the relay yet
            _reset(x)
            exc = relay.failure()
            assert _is_reset(exc), repr(exc)
            # y's side is closed by the relay's owner; y then reads to EOF.
            (s.b if resetter == "client" else s.a).close()
            received = at_y.finish()
            assert from_x.startswith(received)
            x_to_y, y_to_x = (
                (exc.a_to_b, exc.b_to_a) if resetter == "client" else (exc.b_to_a, exc.a_to_b)
            )
            assert x_to_y == len(received)
            assert y_to_x == len(to_x)
            assert exc.bytes_transferred == (exc.a_to_b, exc.b_to_a)
        finally:
            s.close()

    @pytest.mark.parametrize("resetter", ["client", "server"])
    def test_reset_by_receiving_peer(self, backend: ModuleType, resetter: str) -> None:
        """A peer being sent to resets: the relay raises; the other direction's count is exact."""
        s = Setup("tcp")
        try:
            x, y = (s.C, s.S) if resetter == "client" else (s.S, s.C)
            relay = Relay(s.a, s.b)
            relay.start()
            hello = _payload(1000, 13)
            x.sendall(hello)
            got = bytearray()
            while len(got) < len(hello):
                got += y.recv(4096)
            stream = Writer(y, _payload(32 * MiB, 14))
            stream.start()
            read = 0
            while read < MiB:
                read += len(x.recv(65536))
            _reset(x)
            exc = relay.failure()
            assert _is_reset(exc), repr(exc)
            x_to_y, y_to_x = (
                (exc.a_to_b, exc.b_to_a) if resetter == "client" else (exc.b_to_a, exc.a_to_b)
            )
            assert x_to_y == len(hello)
            assert read <= y_to_x <= 32 * MiB
            s.close()  # unblocks y's writer
            stream.join(10)
            assert not stream.is_alive()
        finally:
            s.close()

    def test_unix_peer_closes_with_unread_data(self, backend: ModuleType) -> None:
        """An AF_UNIX peer closing with unread bytes resets the relay; the other count is exact."""
        s = Setup("unix")
        try:
            relay = Relay(s.a, s.b)
            relay.start()
            at_s = Reader(s.S)
            at_s.start()
            up = _payload(ODD, 15)
            s.C.sendall(up)
            s.S.sendall(b"unread")  # C never reads this
            time.sleep(0.2)
            s.C.close()
            exc = relay.failure()
            assert _is_reset(exc), repr(exc)
            assert exc.a_to_b == len(up)
            s.b.close()
            assert at_s.finish() == up
        finally:
            s.close()

    def test_reset_after_half_close_is_noticed(self, backend: ModuleType) -> None:
        """A peer that half-closed, then resets, stops the relay (no wait for the idle timeout)."""
        s = Setup("tcp")
        try:
            # The bound on how soon must stay below the timeout, or a relay
            # that waited the timeout out would pass: both are scaled.
            relay = Relay(s.a, s.b, timeout=scaled(3))
            relay.start()
            s.C.sendall(b"request")
            s.C.shutdown(socket.SHUT_WR)
            got = b""
            while chunk := s.S.recv(100):
                got += chunk
            assert got == b"request"
            t0 = time.monotonic()
            _reset(s.C)  # the server stays silent: only the reset can end the relay
            exc = relay.failure()
            assert _is_reset(exc), repr(exc)
            assert time.monotonic() - t0 < scaled(2)
            assert (exc.a_to_b, exc.b_to_a) == (7, 0)
        finally:
            s.close()


# --- idle timeout -------------------------------------------------------------


class TestTimeout:
    def test_idle_from_the_start(self, backend: ModuleType, setup: Setup) -> None:
        """Nothing moves: TimeoutError after about the timeout, counts (0, 0)."""
        relay = Relay(setup.a, setup.b, timeout=0.3)
        relay.start()
        exc = relay.failure()
        assert _is_timeout(exc)
        assert (exc.a_to_b, exc.b_to_a, exc.bytes_transferred) == (0, 0, (0, 0))
        assert 0.25 <= relay.seconds < scaled(3)

    def test_idle_after_traffic(self, backend: ModuleType, setup: Setup) -> None:
        """Traffic, then silence: TimeoutError with the counts delivered so far."""
        relay = Relay(setup.a, setup.b, timeout=0.4)
        relay.start()
        setup.C.sendall(b"x" * 1000)
        setup.S.sendall(b"y" * 33)
        got_s, got_c = b"", b""
        while len(got_s) < 1000:
            got_s += setup.S.recv(2000)
        while len(got_c) < 33:
            got_c += setup.C.recv(100)
        exc = relay.failure()
        assert _is_timeout(exc)
        assert (exc.a_to_b, exc.b_to_a) == (1000, 33)
        assert exc.bytes_transferred == (1000, 33)
        # Nothing was lost or duplicated.
        assert (got_s, got_c) == (b"x" * 1000, b"y" * 33)

    def test_idle_after_half_close(self, backend: ModuleType, setup: Setup) -> None:
        """A half-closed relay whose other direction goes quiet times out too."""
        relay = Relay(setup.a, setup.b, timeout=0.3)
        relay.start()
        setup.C.shutdown(socket.SHUT_WR)
        assert setup.S.recv(10) == b""
        exc = relay.failure()
        assert _is_timeout(exc)
        assert exc.bytes_transferred == (0, 0)

    def test_slow_steady_flow_is_not_idle(self, backend: ModuleType, setup: Setup) -> None:
        """A trickle more frequent than the timeout keeps the relay alive past the timeout."""
        up = _payload(12 * 50, 16)
        relay = Relay(setup.a, setup.b, timeout=0.4)
        relay.start()
        ts: list[Any] = [Writer(setup.C, up, chunk=50, pace=0.08), Reader(setup.S), Reader(setup.C)]
        for t in ts:
            t.start()
        ts[0].finish()
        setup.S.shutdown(socket.SHUT_WR)
        assert relay.outcome() == (len(up), 0)
        assert relay.seconds > 0.8
        assert ts[1].finish() == up
        assert ts[2].finish() == b""

    @pytest.mark.parametrize("bad", [-1, -0.5])
    def test_negative_timeout(self, backend: ModuleType, setup: Setup, bad: float) -> None:
        """A negative timeout is a ValueError, and the sockets stay as they were."""
        with pytest.raises(ValueError, match="timeout"):
            zerocopy.relay(setup.a, setup.b, timeout=bad)
        assert setup.a.gettimeout() is None
        assert setup.b.gettimeout() is None


# --- no hot loop --------------------------------------------------------------


class TestNoSpin:
    def test_idle_costs_no_cpu(self, backend: ModuleType, setup: Setup) -> None:
        """Both sides idle for 0.5 s: the relay thread uses almost no CPU."""
        relay = Relay(setup.a, setup.b)
        relay.start()
        spun = busy(0.5)  # the baseline: what a spinning relay would have got
        setup.C.shutdown(socket.SHUT_WR)
        setup.S.shutdown(socket.SHUT_WR)
        assert relay.outcome() == (0, 0)
        assert_waited(relay.cpu, spun, work=0.02, what="the idle relay")

    def test_full_pipe_costs_no_cpu(self, backend: ModuleType, setup: Setup) -> None:
        """A receiver that stops reading (full socket, full pipe) does not make the relay spin."""
        data = _payload(24 * MiB, 17)
        relay = Relay(setup.a, setup.b)
        gate = threading.Event()
        reader = Reader(setup.S, gate=gate)
        writer = Writer(setup.C, data)
        relay.start()
        reader.start()
        writer.start()
        # Every buffer on the way fills up, then nothing can move; meanwhile
        # a busy loop measures what a spinning relay would have got.
        spun = busy(0.7)
        gate.set()
        setup.S.shutdown(socket.SHUT_WR)
        assert relay.outcome() == (len(data), 0)
        writer.finish()
        assert reader.finish() == data
        # 24 MiB through splice takes a few hundredths of a second of CPU; a
        # spinning wait would add most of the 0.7 s stall.
        assert_waited(relay.cpu, spun, work=0.05, what="the stalled relay")

    def test_urgent_data_does_not_stall_or_spin(self, backend: ModuleType) -> None:
        """TCP urgent data (MSG_OOB) does not make the relay stall or spin."""
        s = Setup("tcp")
        try:
            relay = Relay(s.a, s.b, timeout=scaled(10))  # outlasts busy() below
            relay.start()
            reader = Reader(s.S)
            reader.start()
            s.C.sendall(b"hello")
            time.sleep(0.1)
            s.C.send(b"!", socket.MSG_OOB)
            s.C.sendall(b"world")
            spun = busy(0.5)  # what a relay spinning on the mark would have got
            s.C.shutdown(socket.SHUT_WR)
            s.S.shutdown(socket.SHUT_WR)
            relay.join(10)
            got = bytes(reader.data)
            assert relay.exc is None, (repr(relay.exc), got, relay.cpu)
            assert reader.finish() in (b"helloworld", b"hello!world")
            assert_waited(relay.cpu, spun, work=0.03, what="the relay past the mark")
        finally:
            s.close()
            relay.join(5)


# --- socket state -------------------------------------------------------------


class TestSocketState:
    @pytest.mark.parametrize(
        "timeouts",
        [(None, None), (2.5, None), (0.0, 7.0)],
        ids=["blocking", "mixed", "nonblocking"],
    )
    def test_modes_restored_after_return(
        self, backend: ModuleType, setup: Setup, timeouts: tuple[float | None, float | None]
    ) -> None:
        """Blocking mode and timeouts of both sockets are as before, after a normal return."""
        setup.a.settimeout(timeouts[0])
        setup.b.settimeout(timeouts[1])
        counts, at_s, at_c, _ = _exchange(setup, b"ping", b"pong")
        assert counts == (4, 4)
        assert (at_s, at_c) == (b"ping", b"pong")
        assert (setup.a.gettimeout(), setup.b.gettimeout()) == timeouts
        assert setup.a.fileno() >= 0
        assert setup.b.fileno() >= 0  # left open

    def test_modes_restored_after_failure(self, backend: ModuleType, setup: Setup) -> None:
        """Blocking mode and timeouts are restored when the relay raises (idle timeout)."""
        setup.a.settimeout(4.0)
        relay = Relay(setup.a, setup.b, timeout=0.2)
        relay.start()
        assert _is_timeout(relay.failure())
        assert (setup.a.gettimeout(), setup.b.gettimeout()) == (4.0, None)
        # And the sockets still work in that mode.
        setup.C.sendall(b"after")
        assert setup.a.recv(10) == b"after"


class TestArguments:
    def test_not_a_socket(self, backend: ModuleType, setup: Setup) -> None:
        """Something that is not a socket.socket is a TypeError."""
        with pytest.raises(TypeError):
            zerocopy.relay(setup.a, 5)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            zerocopy.relay(None, setup.b)  # type: ignore[arg-type]

    def test_datagram_socket(self, backend: ModuleType, setup: Setup) -> None:
        """A UDP socket is a ValueError."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            with pytest.raises(ValueError, match="SOCK_STREAM"):
                zerocopy.relay(setup.a, udp)
            with pytest.raises(ValueError, match="SOCK_STREAM"):
                zerocopy.relay(udp, setup.b)
        assert setup.a.gettimeout() is None


# --- many at once -------------------------------------------------------------


class _Peers(threading.Thread):
    """Drives many peer sockets from one selector thread: send all, shut down, read to EOF."""

    def __init__(self, peers: list[tuple[socket.socket, bytes]]) -> None:
        super().__init__(daemon=True)
        self.peers = peers
        self.received = [bytearray() for _ in peers]
        self.error: BaseException | None = None

    def run(self) -> None:
        sel = selectors.DefaultSelector()
        out: dict[int, memoryview] = {}
        try:
            for i, (sock, data) in enumerate(self.peers):
                sock.setblocking(False)
                out[i] = memoryview(data)
                sel.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE, i)
            open_reads = len(self.peers)
            deadline = time.monotonic() + 120
            while open_reads and time.monotonic() < deadline:
                for key, events in sel.select(1.0):
                    if events & selectors.EVENT_WRITE and key.data in out:
                        self._send_some(sel, key, out)
                    if events & selectors.EVENT_READ and self._recv_some(sel, key, out):
                        open_reads -= 1
            assert open_reads == 0, f"{open_reads} peers still waiting at the deadline"
        except BaseException as exc:
            self.error = exc
        finally:
            sel.close()

    def _send_some(
        self, sel: selectors.BaseSelector, key: selectors.SelectorKey, out: dict[int, memoryview]
    ) -> None:
        i, sock = key.data, self.peers[key.data][0]
        try:
            n = sock.send(out[i][: 256 * KiB])
        except BlockingIOError:
            n = 0
        out[i] = out[i][n:]
        if not out[i]:
            del out[i]
            sock.shutdown(socket.SHUT_WR)
            if key.events & selectors.EVENT_READ:
                sel.modify(sock, selectors.EVENT_READ, i)
            else:
                sel.unregister(sock)

    def _recv_some(
        self, sel: selectors.BaseSelector, key: selectors.SelectorKey, out: dict[int, memoryview]
    ) -> bool:
        """Read what peer *key* has; True when it reached end of stream."""
        i, sock = key.data, self.peers[key.data][0]
        try:
            chunk = sock.recv(256 * KiB)
        except BlockingIOError:
            return False
        if chunk:
            self.received[i] += chunk
            return False
        if i in out:  # still sending: keep only that
            sel.modify(sock, selectors.EVENT_WRITE, i)
        else:
            sel.unregister(sock)
        return True


class TestConcurrent:
    def test_hundred_relays(self, backend: ModuleType) -> None:
        """100 relays in threads, ~256 KiB each way each, all byte-exact with exact counts."""
        n = 100
        setups = [Setup("tcp" if i % 2 else "unix") for i in range(n)]
        ups = [_payload(256 * KiB + i, 1000 + i) for i in range(n)]
        downs = [_payload(256 * KiB - i, 2000 + i) for i in range(n)]
        relays = [Relay(s.a, s.b, timeout=60) for s in setups]
        peers = _Peers(
            [(s.C, ups[i]) for i, s in enumerate(setups)]
            + [(s.S, downs[i]) for i, s in enumerate(setups)]
        )
        try:
            for r in relays:
                r.start()
            peers.start()
            peers.join(150)
            assert not peers.is_alive()
            assert peers.error is None, peers.error
            for i, r in enumerate(relays):
                assert r.outcome(30) == (len(ups[i]), len(downs[i])), i
                assert peers.received[n + i] == ups[i], f"relay {i}: C->S differs"
                assert peers.received[i] == downs[i], f"relay {i}: S->C differs"
        finally:
            for s in setups:
                s.close()
            for r in relays:
                r.join(10)
            peers.join(10)
        assert len(default_pool()) <= default_pool().maxsize


# --- one direction ------------------------------------------------------------


class _Cut(Exception):
    """Stands for a signal handler's exception striking between two statements."""


def _cut_after(monkeypatch: pytest.MonkeyPatch, pool: PipePool, name: str) -> None:
    """Make *pool*'s method *name* do its work, then raise _Cut, as a handler could."""
    real = getattr(pool, name)

    def then_cut(arg: Any) -> None:
        real(arg)
        raise _Cut

    monkeypatch.setattr(pool, name, then_cut)


class _Holder:
    __slots__ = ("pipe",)

    def __init__(self) -> None:
        self.pipe: Any = None


class TestPipeHandOver:
    """A direction's pipe is never lost nor pooled twice when an exception cuts a hand-over."""

    def _direction(self, pool: PipePool) -> tuple[Direction, list[socket.socket]]:
        src_peer, src = socket.socketpair()
        dst, dst_peer = socket.socketpair()
        for s in (src, dst):
            s.setblocking(False)
        return Direction(src, dst, pool=pool), [src_peer, src, dst, dst_peer]

    def test_cut_after_give_back(
        self, backend: ModuleType, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The pool has the pipe and the direction still points at it: pooled once after close()."""
        pool = PipePool(maxsize=2)
        d, socks = self._direction(pool)
        try:
            _cut_after(monkeypatch, pool, "give_back")
            socks[0].sendall(b"abc")
            with pytest.raises(_Cut):
                d.step()
            assert d.pipe is not None
            assert list(pool._idle) == [d.pipe]
            d.close()
            assert d.pipe is None
            assert len(pool) == 1  # once, not twice
            assert socks[3].recv(10) == b"abc"
        finally:
            pool.clear()
            for s in socks:
                s.close()

    def test_cut_after_give_back_then_taken_by_another(
        self, backend: ModuleType, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Another holder took the pipe since: the cut direction's close() leaves it alone."""
        pool = PipePool(maxsize=2)
        d, socks = self._direction(pool)
        other = _Holder()
        try:
            _cut_after(monkeypatch, pool, "give_back")
            with pytest.raises(_Cut):
                d.step()
            taken = pool.take(other)
            assert taken is d.pipe
            assert os.write(taken.w, b"in use") == 6  # the other holder's bytes
            d.close()
            assert len(pool) == 0  # not pooled while the other holder has it
            assert taken.r >= 0  # nor closed under it
            assert taken.queued() == 6
            pool.release(taken, other)  # bytes left in it: closed
            assert taken.r == -1
        finally:
            pool.clear()
            for s in socks:
                s.close()

    def test_cut_right_after_take(
        self, backend: ModuleType, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """An exception as soon as take() returns: the pipe is held, close() pools it."""
        pool = PipePool(maxsize=2)
        d, socks = self._direction(pool)
        try:
            _cut_after(monkeypatch, pool, "take")
            with pytest.raises(_Cut):
                d.step()
            assert d.pipe is not None
            assert len(pool) == 0
            d.close()
            assert len(pool) == 1
        finally:
            pool.clear()
            for s in socks:
                s.close()


class TestDirection:
    def test_uses_the_pool_it_is_given(self, backend: ModuleType) -> None:
        """Direction(pool=p) takes its pipe from p and gives it back to p, even when p is empty."""
        pool = PipePool(maxsize=2)
        src_peer, src = socket.socketpair()
        dst, dst_peer = socket.socketpair()
        try:
            for s in (src, dst):
                s.setblocking(False)
            d = Direction(src, dst, pool=pool)
            assert d.pool is pool
            src_peer.sendall(b"abc")
            d.step()
            assert dst_peer.recv(10) == b"abc"
            d.close()
            assert len(pool) == 1
        finally:
            pool.clear()
            for s in (src_peer, src, dst, dst_peer):
                s.close()

    def test_waits_on_the_right_fd(self, backend: ModuleType) -> None:
        """An empty source means waiting for POLLIN on it; a full destination, POLLOUT on it."""
        src_peer, src = socket.socketpair()
        dst, dst_peer = socket.socketpair()
        pool = PipePool(maxsize=1)
        try:
            for s in (src, dst):
                s.setblocking(False)
            d = Direction(src, dst, pool=pool)
            assert d.step() is False
            assert d.waiting == (src.fileno(), select.POLLIN)
            dst.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            src_peer.setblocking(False)
            data = _payload(2 * MiB, 18)
            sent = 0
            while True:
                try:
                    sent += src_peer.send(data[sent : sent + 65536])
                except BlockingIOError:
                    break
                d.step()
                if d.waiting == (dst.fileno(), select.POLLOUT):
                    break
            assert d.waiting == (dst.fileno(), select.POLLOUT)
            assert d.in_pipe > 0
            d.close()  # the pipe still holds bytes: closed, not pooled
            assert len(pool) == 0
        finally:
            pool.clear()
            for s in (src_peer, src, dst, dst_peer):
                s.close()
