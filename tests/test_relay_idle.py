"""Idle relays hold no pipes: a direction takes one only while bytes are in flight.

A proxy's connections are mostly idle keep-alives.  Each relay direction
takes a pipe from the pool when bytes arrive and gives it back once the
source is empty and the pipe drained, so 1,000 idle relays in one process use
no descriptors beyond their sockets (and the pool's few idle pipes, bounded
by ``maxsize``).  Relays whose destination is full keep their pipe, with the
bytes in it; once the destination drains, the count comes back down.  Every
byte and every count is checked against what was sent.
"""

from __future__ import annotations

import asyncio
import os
import resource
import socket
import threading
import time
from collections.abc import Iterator
from types import ModuleType

import pytest

from netkit import Runner, payload

# `name as name`: fixtures, re-exported so that linters count them as used.
from netkit import empty_pool as empty_pool
from netkit import run as run
from zerocopy import aio, relay
from zerocopy._pipes import default_pool

IDLE = 1000  # asyncio relays in one process
THREADED = 50  # threaded relays: a thread each
BLOCKED = 20  # relays whose destination is not read for a while


@pytest.fixture(autouse=True)
def nofile() -> Iterator[None]:
    """RLIMIT_NOFILE raised to its hard limit (1,000 relays need ~4,000 sockets)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 4 * IDLE + 1024
    if hard != resource.RLIM_INFINITY and hard < want:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {want}: cannot hold {IDLE} relays")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        default_pool().clear()


def pipe_fds() -> set[int]:
    """The process's open fds that are pipe ends."""
    found = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{name}").startswith("pipe:"):
                found.add(int(name))
        except OSError:
            continue  # the listdir's own fd, closed by now
    return found


def pipes_beyond(before: set[int]) -> int:
    """Pipe fds opened since *before*, less the pool's idle pipes (bounded by maxsize)."""
    pool = default_pool()
    pooled = {fd for p in list(pool._idle) for fd in (p.r, p.w)}
    assert len(pool) <= pool.maxsize
    return len(pipe_fds() - before - pooled)


def settle(before: set[int], want: int = 0, seconds: float = 10.0) -> int:
    """Wait for threads to finish their steps: pipes beyond *before*, once it is *want*."""
    deadline = time.monotonic() + seconds
    while (held := pipes_beyond(before)) != want and time.monotonic() < deadline:
        time.sleep(0.01)
    return held


async def asettle(before: set[int], want: int = 0, seconds: float = 10.0) -> int:
    """:func:`settle` on an event loop: the relays' tasks (or their hub) step meanwhile."""
    deadline = time.monotonic() + seconds
    while (held := pipes_beyond(before)) != want and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.01)  # a count to watch: no event to wait for
    return held


class Pairs:
    """*n* relays' worth of sockets: client <-> (a relay b) <-> server, all socketpairs."""

    def __init__(self, n: int, blocking: bool) -> None:
        self.clients: list[socket.socket] = []
        self.a: list[socket.socket] = []
        self.b: list[socket.socket] = []
        self.servers: list[socket.socket] = []
        for _ in range(n):
            c, a = socket.socketpair()
            b, s = socket.socketpair()
            a.setblocking(blocking)
            b.setblocking(blocking)
            self.clients.append(c)
            self.a.append(a)
            self.b.append(b)
            self.servers.append(s)

    def close(self) -> None:
        for group in (self.clients, self.a, self.b, self.servers):
            for sock in group:
                sock.close()


def exchange(pairs: Pairs, i: int, up: bytes, down: bytes) -> None:
    """Send *up* client->server and *down* back, and check both arrive whole (blocking)."""
    c, s = pairs.clients[i], pairs.servers[i]
    c.sendall(up)
    assert recv_exactly(s, len(up)) == up, f"relay {i}: client->server differs"
    s.sendall(down)
    assert recv_exactly(c, len(down)) == down, f"relay {i}: server->client differs"


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        assert chunk, f"end of stream after {len(buf)} of {n} bytes"
        buf += chunk
    return bytes(buf)


class TestAsyncioIdle:
    def test_a_thousand_idle_relays_hold_no_pipes(self, backend: ModuleType, run: Runner) -> None:
        """1,000 idle relays: no pipe fds beyond the pool's; full destinations hold one each."""
        pairs = Pairs(IDLE, blocking=False)
        for sock in pairs.clients + pairs.servers:
            sock.settimeout(30)
        up = payload(3 << 20, 1)  # more than a socket buffer and a 1 MiB pipe hold
        small = payload(5000, 2)

        async def main() -> list[tuple[int, int]]:
            loop = asyncio.get_running_loop()
            before = pipe_fds()  # here: a loop may have pipes of its own (uvloop has)
            tasks = [
                asyncio.create_task(aio.relay(a, b, timeout=60))
                for a, b in zip(pairs.a, pairs.b, strict=True)
            ]
            for _ in range(3):
                await asyncio.sleep(0)  # every relay has stepped and is waiting
            # On a relay hub, a direction gives its pipe back once idle for a tick.
            assert await asettle(before) == 0, "idle relays hold pipes"

            # A few bytes both ways on every relay: pipes come and go.
            await loop.run_in_executor(
                None, lambda: [exchange(pairs, i, small, small[::-1]) for i in range(IDLE)]
            )
            assert await asettle(before) == 0, "relays kept pipes after their bytes went"

            # Relays whose server reads nothing: each keeps its pipe, bytes in it.
            def push(i: int) -> None:
                pairs.clients[i].sendall(up)

            pushers = [threading.Thread(target=push, args=(i,)) for i in range(BLOCKED)]
            for t in pushers:
                t.start()
            held = 0
            for _ in range(1000):  # up to 20 s, for a loaded machine
                await asyncio.sleep(0.02)
                held = pipes_beyond(before)
                if held == 2 * BLOCKED:
                    break
            assert held == 2 * BLOCKED, f"{held // 2} pipes held by {BLOCKED} blocked relays"
            got = await loop.run_in_executor(
                None, lambda: [recv_exactly(pairs.servers[i], len(up)) for i in range(BLOCKED)]
            )
            for t in pushers:
                t.join()
            assert all(g == up for g in got)
            assert await asettle(before) == 0, "the count did not come back down"

            for c, s in zip(pairs.clients, pairs.servers, strict=True):
                c.shutdown(socket.SHUT_WR)
                s.shutdown(socket.SHUT_WR)
            return await asyncio.gather(*tasks)

        try:
            results = run(main())
        finally:
            pairs.close()
        want = [(len(small) + (len(up) if i < BLOCKED else 0), len(small)) for i in range(IDLE)]
        assert results == want


class TestThreadedIdle:
    def test_idle_threaded_relays_hold_no_pipes(self, backend: ModuleType) -> None:
        """50 idle threaded relays hold no pipes; after traffic the count comes back down."""
        before = pipe_fds()
        pairs = Pairs(THREADED, blocking=True)
        for sock in pairs.clients + pairs.servers:
            sock.settimeout(30)
        results: dict[int, tuple[int, int] | BaseException] = {}

        def one(i: int) -> None:
            try:
                results[i] = relay(pairs.a[i], pairs.b[i], timeout=60)
            except BaseException as exc:  # reported by the assert below
                results[i] = exc

        threads = [threading.Thread(target=one, args=(i,)) for i in range(THREADED)]
        try:
            for t in threads:
                t.start()
            small = payload(70000, 3)
            # Traffic first: with the relays up, every direction has stepped.
            for i in range(THREADED):
                exchange(pairs, i, small, small[:1000])
            # A relay thread gives its pipe back just after the bytes reach the
            # peer (its next splice finds the source empty): allow it that moment.
            assert settle(before) == 0, "threaded relays kept pipes after their bytes"
            for c, s in zip(pairs.clients, pairs.servers, strict=True):
                c.shutdown(socket.SHUT_WR)
                s.shutdown(socket.SHUT_WR)
            for t in threads:
                t.join(30)
            assert not any(t.is_alive() for t in threads)
        finally:
            pairs.close()
        assert results == {i: (len(small), 1000) for i in range(THREADED)}
