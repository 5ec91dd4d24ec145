"""The relay hub: many relays in one thread, stepped by one C call per batch of wake-ups.

The hub's own promises, on both backends (``zc_hub_run`` on cffi, its
Python twin on os): many relays at once on one hub, every byte and count
checked against what the peers sent and received; a fuzz of random event
orders (peers writing, reading, half-closing and resetting in random order,
with small socket buffers so that both sides hit EAGAIN); idle relays give
their pipes back; the pump's constants are the compiled ones.  The relay
contracts themselves (half-close, urgent data, timeouts, exact counts on
every exception) are tested by tests/test_relay.py and test_relay_fuzz.py,
which run every case on a hub too (the ``relay_engine`` fixture).
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import threading
import time
import warnings
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import stream_pair
from timekit import scaled
from zerocopy import _constants
from zerocopy._aiowait import AsyncioLoop
from zerocopy._errors import relay_counts, set_relay_counts
from zerocopy._relay.hub import IDLE_TICK, Hub, relay_on_hub, relay_via_hub

pytestmark = pytest.mark.usefixtures("no_leaks")

KiB = 1 << 10


def test_constants_are_the_compiled_ones() -> None:
    """Python's WANT_*, HUB_*, READY_* are csrc/zerocopy.c's values."""
    from zerocopy._zerocopy_cffi import lib

    for name in ("WANT_NONE", "WANT_SRC", "WANT_DST", "WANT_RUN", "HUB_STEP", "READY_SRC",
                 "READY_URG", "READY_DST", "HUB_READY", "HUB_STOPPED", "HUB_EVENT", "HUB_NEED_PIPE",
                 "HUB_WOKEN"):  # fmt: skip
        assert getattr(_constants, name) == getattr(lib, "ZC_" + name), name


class Peer:
    """One end of a relayed connection, run by the test: what it sent and what it received."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sent = bytearray()
        self.received = bytearray()
        self.eof = False


def _small_buffers(sock: socket.socket) -> None:
    for opt in (socket.SO_SNDBUF, socket.SO_RCVBUF):
        sock.setsockopt(socket.SOL_SOCKET, opt, 4 * KiB)


def _run_peers(
    pairs: list[tuple[Peer, Peer]], plan: list[tuple[int, int, int]], rng: random.Random
) -> None:
    """Carry out *plan* (pair, side, bytes to write) with reads in between, then half-close all."""
    for pair, side, n in plan:
        peer = pairs[pair][side]
        data = rng.randbytes(n)
        view = memoryview(data)
        while view:
            try:
                k = peer.sock.send(view)
            except BlockingIOError:
                _read_some(pairs)
                continue
            peer.sent += view[:k]
            view = view[k:]
        if rng.random() < 0.5:
            _read_some(pairs)
    for a, b in pairs:
        for p in (a, b):
            p.sock.shutdown(socket.SHUT_WR)
    deadline = time.monotonic() + scaled(30)
    while not all(p.eof for pair in pairs for p in pair):
        assert time.monotonic() < deadline, "the relays did not pass every byte and half-close on"
        _read_some(pairs, wait=0.01)


def _read_some(pairs: list[tuple[Peer, Peer]], wait: float = 0.0) -> None:
    import select

    socks = {p.sock: p for pair in pairs for p in pair if not p.eof}
    if not socks:
        return
    ready, _, _ = select.select(list(socks), [], [], wait)
    for s in ready:
        p = socks[s]
        try:
            chunk = s.recv(64 * KiB)
        except BlockingIOError:
            continue
        if chunk:
            p.received += chunk
        else:
            p.eof = True


def _relay_pairs(
    hub: Hub, n: int, kind: str, small: bool
) -> tuple[list[tuple[Peer, Peer]], list[threading.Thread], list[object]]:
    pairs: list[tuple[Peer, Peer]] = []
    threads: list[threading.Thread] = []
    results: list[object] = [None] * n
    for i in range(n):
        client, a = stream_pair(kind)
        b, server = stream_pair(kind)
        if small:
            for s in (client, a, b, server):
                _small_buffers(s)
        client.setblocking(False)
        server.setblocking(False)

        def run(i: int = i, a: socket.socket = a, b: socket.socket = b) -> None:
            try:
                results[i] = relay_on_hub(hub, a, b)
            except BaseException as exc:  # checked by the test
                results[i] = exc
            finally:
                a.close()
                b.close()

        t = threading.Thread(target=run)
        t.start()
        threads.append(t)
        pairs.append((Peer(client), Peer(server)))
    return pairs, threads, results


def _check_copied(
    pairs: list[tuple[Peer, Peer]], threads: list[threading.Thread], results: list[object]
) -> None:
    """Every relay ended, each peer received what the other sent, and the counts say so."""
    for t in threads:
        t.join(scaled(30))
    for (client, server), result in zip(pairs, results, strict=True):
        assert bytes(server.received) == bytes(client.sent)
        assert bytes(client.received) == bytes(server.sent)
        assert result == (len(client.sent), len(server.sent))


def _close(pairs: list[tuple[Peer, Peer]]) -> None:
    for a, b in pairs:
        a.sock.close()
        b.sock.close()


@pytest.mark.parametrize("kind", ["tcp", "unix"])
def test_many_relays_one_hub(backend: ModuleType, kind: str) -> None:
    """32 relays on one hub, random traffic both ways: every byte, every count, every half-close."""
    rng = random.Random(32)
    hub = Hub()
    pairs, threads, results = _relay_pairs(hub, 32, kind, small=False)
    try:
        plan = [(rng.randrange(32), rng.randrange(2), rng.choice([1, 100, 70 * KiB, 300 * KiB]))
                for _ in range(200)]  # fmt: skip
        _run_peers(pairs, plan, rng)
        _check_copied(pairs, threads, results)
    finally:
        _close(pairs)
        hub.close()


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    n=st.integers(1, 6),
    seed=st.integers(0, 2**32 - 1),
    steps=st.integers(1, 40),
    kind=st.sampled_from(["tcp", "unix"]),
    budget=st.sampled_from([4 * KiB - 1, 64 * KiB + 3, 1 << 20]),
)
def test_fuzz_event_orders(
    backend: ModuleType, n: int, seed: int, steps: int, kind: str, budget: int
) -> None:
    """Random writers, readers and sizes with 4 KiB socket buffers (EAGAIN on both sides, short
    splices) and random per-round budgets: the bytes and counts are a plain copy's."""
    rng = random.Random(seed)
    hub = Hub(budget=budget)
    pairs, threads, results = _relay_pairs(hub, n, kind, small=True)
    try:
        plan = [(rng.randrange(n), rng.randrange(2), rng.choice([1, 7, 4 * KiB, 20 * KiB + 1]))
                for _ in range(steps)]  # fmt: skip
        _run_peers(pairs, plan, rng)
        _check_copied(pairs, threads, results)
    finally:
        _close(pairs)
        hub.close()


def test_reset_mid_stream_counts(backend: ModuleType) -> None:
    """A peer that resets ends its relay with the error and exact counts; the others go on."""
    hub = Hub()
    pairs, threads, results = _relay_pairs(hub, 3, "tcp", small=False)
    try:
        rng = random.Random(3)
        _run_partial(pairs[1], rng)
        victim = pairs[1][1].sock
        victim.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
        victim.close()  # RST towards the relay's b
        # The client keeps writing until the relay notices.
        client = pairs[1][0]
        deadline = time.monotonic() + scaled(10)
        while results[1] is None and time.monotonic() < deadline:
            try:
                k = client.sock.send(b"x" * 1000)
                client.sent += b"x" * k
            except (BlockingIOError, ConnectionError):
                pass
            time.sleep(0.005)
        threads[1].join(scaled(10))
        exc = results[1]
        assert isinstance(exc, (ConnectionResetError, BrokenPipeError)), exc
        assert exc.b_to_a == len(pairs[1][1].sent)  # type: ignore[attr-defined]
        assert exc.a_to_b <= len(client.sent)  # type: ignore[attr-defined]
        others = [pairs[0], pairs[2]]
        _run_peers(others, [(0, 0, 5000), (1, 1, 7000)], rng)
        for i in (0, 2):
            threads[i].join(scaled(30))
            client, server = pairs[i]
            assert results[i] == (len(client.sent), len(server.sent))
    finally:
        for a, b in pairs:
            a.sock.close()
            if b.sock.fileno() >= 0:
                b.sock.close()
        hub.close()


def _run_partial(pair: tuple[Peer, Peer], rng: random.Random) -> None:
    client, server = pair
    data = rng.randbytes(10_000)
    server.sock.setblocking(True)
    server.sock.sendall(data)
    server.sent += data
    server.sock.setblocking(False)
    deadline = time.monotonic() + scaled(10)
    while len(client.received) < len(data):
        assert time.monotonic() < deadline
        _read_some([pair], wait=0.01)


def test_idle_relay_gives_its_pipes_back(backend: ModuleType) -> None:
    """After traffic, an idle relay's directions hold no pipe within a couple of ticks."""
    hub = Hub()
    pairs, threads, results = _relay_pairs(hub, 1, "tcp", small=False)
    try:
        client, server = pairs[0]
        client.sock.setblocking(True)
        client.sock.sendall(b"y" * 200_000)
        client.sent += b"y" * 200_000
        client.sock.setblocking(False)
        deadline = time.monotonic() + scaled(10)
        while len(server.received) < 200_000:
            assert time.monotonic() < deadline
            _read_some(pairs, wait=0.01)
        relay = _only_relay(hub)
        deadline = time.monotonic() + scaled(5)
        while relay.ab.pipe is not None or relay.ba.pipe is not None:  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "an idle relay kept a pipe"
            time.sleep(IDLE_TICK)
        _run_peers(pairs, [(0, 1, 100)], random.Random(1))  # and it still relays
        threads[0].join(scaled(10))
        assert results[0] == (200_000, 100)
    finally:
        _close(pairs)
        hub.close()


def _only_relay(hub: Hub) -> object:
    """The hub's one live relay (read from its thread's frame-free bookkeeping: the wake-up)."""
    import gc

    from zerocopy._relay.hub import HubRelay

    live = [o for o in gc.get_objects() if isinstance(o, HubRelay) and not o.finished]
    assert len(live) == 1
    return live[0]


def test_close_ends_running_relays(backend: ModuleType) -> None:
    """Closing a hub ends its relays with ConnectionAbortedError and their counts."""
    hub = Hub()
    pairs, threads, results = _relay_pairs(hub, 2, "unix", small=False)
    try:
        _run_partial(pairs[0], random.Random(2))
        time.sleep(0.05)
        hub.close()
        for t in threads:
            t.join(scaled(10))
        for i, (_client, server) in enumerate(pairs):
            exc = results[i]
            assert isinstance(exc, ConnectionAbortedError)
            assert exc.b_to_a == len(server.sent)  # type: ignore[attr-defined]
            assert exc.a_to_b == 0  # type: ignore[attr-defined]
        a, b = socket.socketpair()
        try:
            with pytest.raises(RuntimeError, match="closed"):
                relay_on_hub(hub, a, b)
        finally:
            a.close()
            b.close()
    finally:
        _close(pairs)
        hub.close()


# --- the hub as every relay form's engine -------------------------------------------


def test_the_pump_splices_every_byte(backend: ModuleType) -> None:
    """Without urgent data or a stream's read-ahead, every byte went through relay_step's pipe:
    the directions' splice counts (``state.delivered``) are the whole relay, nothing was sent
    from Python, and the relay ran on the backend the hub was made with."""
    hub = Hub()
    c, a = socket.socketpair()
    b, s = socket.socketpair()
    up, down = random.randbytes(3 << 20), random.randbytes(1 << 20)
    ended = threading.Event()
    box: list[object] = []
    try:
        for sock in (a, b):
            sock.setblocking(False)
        handle = hub.start(a, b, None, lambda counts, exc: (box.append((counts, exc)), ended.set()))
        writers = [
            threading.Thread(target=lambda: (c.sendall(up), c.shutdown(socket.SHUT_WR))),
            threading.Thread(target=lambda: (s.sendall(down), s.shutdown(socket.SHUT_WR))),
        ]
        got: dict[str, bytes] = {}
        readers = [
            threading.Thread(target=lambda: got.__setitem__("s", _read_all(s))),
            threading.Thread(target=lambda: got.__setitem__("c", _read_all(c))),
        ]
        for t in writers + readers:
            t.start()
        assert ended.wait(scaled(30))
        for t in writers + readers:
            t.join(scaled(10))
        assert box == [((len(up), len(down)), None)]
        assert got == {"s": up, "c": down}
        assert handle.ab is not None
        assert handle.ba is not None
        assert handle.ab.backend is backend
        assert handle.ba.backend is backend
        assert int(handle.ab.state.delivered) == len(up)
        assert int(handle.ba.state.delivered) == len(down)
        assert handle.ab.head_sent.total() == handle.ba.head_sent.total() == 0
    finally:
        hub.close()
        for sock in (a, b, c, s):
            sock.close()


def _read_all(sock: socket.socket) -> bytes:
    out = bytearray()
    while chunk := sock.recv(1 << 20):
        out += chunk
    return bytes(out)


class _EndsOnCancel:
    """A stand-in hub whose relay ends (with *counts*, or *error*) just as it is cancelled."""

    def __init__(self, counts: tuple[int, int] | None, error: BaseException | None) -> None:
        self.counts, self.error = counts, error
        self.done: Any = None
        self.cancelled: BaseException | None = None

    def start(self, a: object, b: object, timeout: object, done: Any, heads: object) -> object:
        self.done = done
        return self

    def cancel(self, relay: object, exc: BaseException) -> None:
        self.cancelled = exc
        self.done(self.counts, self.error)  # the end won the race: the cancel comes too late


@pytest.mark.parametrize("how", ["ended", "failed"])
def test_cancel_racing_the_end_keeps_its_counts(how: str) -> None:
    """A cancellation that arrives as the relay ends carries the counts the relay ended with."""
    error = ConnectionResetError(104, "reset")
    if how == "failed":
        set_relay_counts(error, 5, 7)
    hub = _EndsOnCancel((5, 7) if how == "ended" else None, error if how == "failed" else None)

    async def main() -> None:
        a, b = socket.socketpair()
        try:
            task = asyncio.ensure_future(
                relay_via_hub(AsyncioLoop(), hub, a, b, None)  # type: ignore[arg-type]
            )
            await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError) as info:
                await task
            assert hub.cancelled is not None
            assert relay_counts(info.value) == (5, 7)
            assert info.value.bytes_transferred == (5, 7)  # type: ignore[attr-defined]
        finally:
            a.close()
            b.close()

    asyncio.run(main())


def test_default_hub_per_backend_and_relays_on_it(backend: ModuleType) -> None:
    """zerocopy.relay and aio.relay run on the current backend's default hub (one thread)."""
    import zerocopy
    import zerocopy.aio
    from zerocopy._relay import hub as hub_module

    assert hub_module.ENGINE == "hub"
    hub = hub_module.chosen_hub()
    assert hub is not None
    assert hub is hub_module.default_hub()
    assert hub.backend is backend

    c, a = socket.socketpair()
    b, s = socket.socketpair()
    try:
        c.sendall(b"up")
        c.shutdown(socket.SHUT_WR)
        s.shutdown(socket.SHUT_WR)
        assert zerocopy.relay(a, b, timeout=scaled(10)) == (2, 0)
        assert s.recv(10) == b"up"
        threads = [t.name for t in threading.enumerate()]
        assert threads.count("zerocopy-relay-hub") == 1
    finally:
        for sock in (a, b, c, s):
            sock.close()

    c, a = socket.socketpair()
    b, s = socket.socketpair()
    try:
        s.sendall(b"down!")
        c.shutdown(socket.SHUT_WR)
        s.shutdown(socket.SHUT_WR)
        a.setblocking(False)
        b.setblocking(False)
        assert asyncio.run(zerocopy.aio.relay(a, b, timeout=scaled(10))) == (0, 5)
        assert c.recv(10) == b"down!"
    finally:
        for sock in (a, b, c, s):
            sock.close()


def test_a_forked_child_relays_on_a_hub_of_its_own(backend: ModuleType) -> None:
    """After fork the parent's hub thread is gone: the child's relays start a hub of their own."""
    import zerocopy
    from zerocopy._relay import hub as hub_module

    parent_hub = hub_module.default_hub()
    c, a = socket.socketpair()
    b, s = socket.socketpair()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (3.12+)
            pid = os.fork()
        if pid == 0:  # the child: exit status 0 only if the relay worked on a new hub
            code = 1
            try:
                c.sendall(b"child")
                c.shutdown(socket.SHUT_WR)
                s.shutdown(socket.SHUT_WR)
                ok = zerocopy.relay(a, b, timeout=5) == (5, 0) and s.recv(10) == b"child"
                code = 0 if ok and hub_module.default_hub() is not parent_hub else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        for sock in (a, b, c, s):
            sock.close()


@pytest.mark.parametrize("which", ["a", "b"])
def test_idle_relay_whose_fd_is_replaced_ends(backend: ModuleType, which: str) -> None:
    """dup2 over an idle relayed socket's fd (epoll forgets it silently): the relay ends with
    the kernel's error for the new file within the fd check, not at its idle timeout."""
    hub = Hub()
    c, a = socket.socketpair()
    b, s = socket.socketpair()
    try:
        for sock in (a, b):
            sock.setblocking(False)
        result: list[BaseException | tuple[int, int]] = []

        def run() -> None:
            try:
                result.append(relay_on_hub(hub, a, b, timeout=scaled(30)))
            except BaseException as exc:
                result.append(exc)

        t = threading.Thread(target=run)
        t.start()
        time.sleep(0.1)
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, (a if which == "a" else b).fileno())
        os.close(null)
        started = time.monotonic()
        t.join(scaled(10))
        assert not t.is_alive()
        assert time.monotonic() - started < scaled(3)
        (exc,) = result
        assert isinstance(exc, OSError), exc
        assert relay_counts(exc) == (0, 0)
    finally:
        hub.close()
        for sock in (a, b, c, s):
            sock.close()


def test_default_hubs_spread_over_the_cpus(backend: ModuleType) -> None:
    """Relays go to the least busy default hub, up to one hub per CPU (MAX_HUBS at most)."""
    import zerocopy
    from zerocopy._relay import hub as hub_module

    n = hub_module._hub_count()
    assert 1 <= n <= hub_module.MAX_HUBS
    ends = [(socket.socketpair(), socket.socketpair()) for _ in range(2 * n + 1)]
    results: list[object] = []
    threads = [
        threading.Thread(target=lambda a=a, b=b: results.append(zerocopy.relay(a, b)))
        for (_c, a), (b, _s) in ends
    ]
    hubs: list[Hub] = []
    try:
        # One at a time (the choice and the start are not one step: relays
        # started at the same instant may land on the same hub).
        for started, t in enumerate(threads, 1):
            t.start()
            deadline = time.monotonic() + scaled(10)
            while time.monotonic() < deadline:
                hubs = hub_module._defaults.get(backend.NAME, [])
                if sum(h.load for h in hubs) == started:
                    break
                time.sleep(0.001)
        loads = sorted(h.load for h in hubs)
        assert len(hubs) == n
        assert sum(loads) == len(ends)
        assert loads[-1] - loads[0] <= 1, loads
        for (c, _a), (_b, s) in ends:
            c.shutdown(socket.SHUT_WR)
            s.shutdown(socket.SHUT_WR)
        for t in threads:
            t.join(scaled(10))
        assert results == [(0, 0)] * len(ends)
        assert [h.load for h in hubs] == [0] * n
    finally:
        for pair in ends:
            for sock in (*pair[0], *pair[1]):
                sock.close()


def test_no_waiter_closes_the_eventfd(backend: ModuleType) -> None:
    """A loop that cannot make its waiter (anyio's makes an epoll set: EMFILE): the eventfd is
    closed, nothing starts on the hub, and the error carries zero counts."""
    import errno

    class NoWaiter(AsyncioLoop):
        def waiter(self) -> Any:
            raise OSError(errno.EMFILE, "Too many open files")

    hub = Hub()
    a, b = socket.socketpair()
    try:
        before = set(os.listdir("/proc/self/fd"))

        async def main() -> None:
            await relay_via_hub(NoWaiter(), hub, a, b, None)

        with pytest.raises(OSError, match="Too many") as info:
            asyncio.run(main())
        assert relay_counts(info.value) == (0, 0)
        assert hub.load == 0
        leaked = {fd for fd in set(os.listdir("/proc/self/fd")) - before
                  if os.path.exists(f"/proc/self/fd/{fd}")}  # fmt: skip
        assert not any("eventfd" in os.readlink(f"/proc/self/fd/{fd}") for fd in leaked), leaked
    finally:
        hub.close()
        a.close()
        b.close()
