"""The fairness rule: no async transfer moves more than one slice between two turns of its loop.

A heartbeat task on the same loop notes, at each of its turns, how many
bytes the transfer's kernel calls had moved; between two heartbeats the
transfer may have moved at most one slice (``zerocopy._fair.SLICE``), and no
single call may ask for more.  Counted, not timed: the receiver is a thread
draining as fast as it can, which is when an unbounded call would run on.

The heartbeat *works* at each turn (it spins past ``_fair.IDLE_TURN``), as a
server's other clients do.  A heartbeat that does nothing leaves the loop
idle, and then a lone transfer's slice may grow, to at most
``_fair.GROW`` slices (:class:`TestGrowth`).
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import zerocopy.anyio
from anyiokit import Run, as_stream
from anyiokit import arun as arun
from anyiokit import uvloop_warmed as uvloop_warmed
from netkit import MiB, Runner, make_file, payload, record_sendfile, tcp_pair

# `name as name`: fixtures, re-exported so that linters count them as used.
from netkit import empty_pool as empty_pool
from netkit import run as run
from netkit import sockets as sockets
from zerocopy import _fair, aio
from zerocopy._aiowait import AsyncioLoop
from zerocopy._anyiowait import AnyioLoop
from zerocopy._loop import Loop
from zerocopy._relay import hub

SLICE = 128 * 1024
SIZE = 24 * MiB


@pytest.fixture(autouse=True)
def small_slice(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A slice well below what one call would move to a fast receiver.

    Afterwards this thread's line is emptied, so that a test that failed
    half-way does not leave the next ones waiting for a turn.
    """
    monkeypatch.setattr(_fair, "SLICE", SLICE)
    monkeypatch.setattr(_fair, "RELAY_SLICE", 4 * SLICE)
    yield
    _fair._here.holder = None
    _fair._here.ring.clear()
    _fair._here.live = 0


class Drain(threading.Thread):
    """Read a blocking socket to its end as fast as possible; keep the digest and count."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(daemon=True)
        sock.setblocking(True)
        sock.settimeout(30)
        self.sock = sock
        self.sha = hashlib.sha256()
        self.count = 0

    def run(self) -> None:
        buf = bytearray(4 * MiB)
        view = memoryview(buf)
        while n := self.sock.recv_into(buf):
            self.sha.update(view[:n])
            self.count += n


def work() -> None:
    """What another client's turn costs the loop: longer than an idle turn.

    A sleep, not a spin: the loop's thread is held as long, but the GIL is
    free for the draining thread.
    """
    time.sleep(2 * _fair.IDLE_TURN)


def biggest_gap(ticks: list[int]) -> int:
    """The most bytes moved between two consecutive heartbeats."""
    return max((b - a for a, b in itertools.pairwise(ticks)), default=0)


async def beside_aio_heartbeat(
    counts: list[int], transfer: Awaitable[Any], *, idle: bool = False
) -> tuple[Any, list[int]]:
    """Await *transfer* beside an asyncio task that notes ``sum(counts)`` at each of its turns.

    The heartbeat works at each turn, unless *idle*.
    """
    ticks: list[int] = []
    done = False

    async def heartbeat() -> None:
        while not done:
            ticks.append(sum(counts))
            if not idle:
                work()
            await asyncio.sleep(0)

    beat = asyncio.ensure_future(heartbeat())
    try:
        result = await transfer
    finally:
        done = True
        await beat
    ticks.append(sum(counts))
    return result, ticks


async def beside_anyio_heartbeat(
    counts: list[int], transfer: Callable[[], Awaitable[Any]], idle: bool = False
) -> tuple[Any, list[int]]:
    """The same under anyio (asyncio, uvloop or trio), the heartbeat in a task group."""
    ticks: list[int] = []
    done = False

    async def heartbeat() -> None:
        while not done:
            ticks.append(sum(counts))
            if not idle:
                work()
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as tg:
        tg.start_soon(heartbeat)
        try:
            result = await transfer()
        finally:
            done = True
    ticks.append(sum(counts))
    return result, ticks


def check(
    drain: Drain,
    data: bytes,
    counts: list[int],
    ticks: list[int],
    turns: int = 1,
    slice_: int = SLICE,
) -> None:
    """The bytes arrived whole; no call and no stretch between heartbeats passed *turns* slices."""
    drain.join(30)
    assert drain.count == len(data)
    assert drain.sha.hexdigest() == hashlib.sha256(data).hexdigest()
    assert max(counts) <= slice_
    assert biggest_gap(ticks) <= turns * slice_


#: trio runs each batch of runnable tasks in random order: a transfer can run
#: last in one batch and first in the next, two slices between two
#: heartbeats, yet one slice per turn of the loop.
def trio_turns(arun: Run) -> int:
    """How many slices may pass between two heartbeats on *arun*'s backend."""
    return 2 if arun.backend == "trio" else 1  # type: ignore[attr-defined]


class SentFile:
    """A file of SIZE bytes to send, and a connected pair whose receiving end is drained."""

    def __init__(self, tmp_path: Path, sockets: list[socket.socket], seed: int) -> None:
        self.data = payload(SIZE, seed)
        self.path = make_file(tmp_path, self.data)
        recv, self.send = tcp_pair(sockets)
        self.drain = Drain(recv)
        self.drain.start()


def aio_send_file_beside(
    backend: ModuleType,
    run: Runner,
    tmp_path: Path,
    sockets: list[socket.socket],
    monkeypatch: pytest.MonkeyPatch,
    seed: int,
    idle: bool = False,
) -> tuple[SentFile, list[int], list[int]]:
    """aio.send_file of a SentFile beside a heartbeat: the file, each call's count, the ticks."""
    counts = record_sendfile(backend, monkeypatch)
    sent_file = SentFile(tmp_path, sockets, seed)
    with open(sent_file.path, "rb") as f:
        sending = aio.send_file(sent_file.send, f)
        sent, ticks = run(beside_aio_heartbeat(counts, sending, idle=idle))
    sent_file.send.shutdown(socket.SHUT_WR)
    assert sent == SIZE
    return sent_file, counts, ticks


def anyio_send_file_beside(
    backend: ModuleType,
    arun: Run,
    tmp_path: Path,
    sockets: list[socket.socket],
    monkeypatch: pytest.MonkeyPatch,
    seed: int,
    idle: bool = False,
) -> tuple[SentFile, list[int], list[int]]:
    """zerocopy.anyio.send_file over a SocketStream, the same way."""
    counts = record_sendfile(backend, monkeypatch)
    sent_file = SentFile(tmp_path, sockets, seed)
    send = sent_file.send
    sockets.remove(send)  # the stream owns it now

    async def main() -> int:
        stream = await as_stream(send)
        async with stream:
            sent: int = await zerocopy.anyio.send_file(stream, f)
            await stream.send_eof()
        return sent

    with open(sent_file.path, "rb") as f:
        sent, ticks = arun(beside_anyio_heartbeat, counts, main, idle)
    assert sent == SIZE
    return sent_file, counts, ticks


class TestSendFile:
    """send_file on asyncio, uvloop and anyio (asyncio, uvloop, trio) keeps to the slice."""

    def test_aio(
        self,
        backend: ModuleType,
        run: Runner,
        tmp_path: Path,
        sockets: list[socket.socket],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """aio.send_file: every call asks for at most a slice, and the loop turns after each."""
        sent_file, counts, ticks = aio_send_file_beside(
            backend, run, tmp_path, sockets, monkeypatch, 3
        )
        check(sent_file.drain, sent_file.data, counts, ticks)

    def test_anyio(
        self,
        backend: ModuleType,
        arun: Run,
        tmp_path: Path,
        sockets: list[socket.socket],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """zerocopy.anyio.send_file over a SocketStream: at most a slice between two checkpoints."""
        sent_file, counts, ticks = anyio_send_file_beside(
            backend, arun, tmp_path, sockets, monkeypatch, 4
        )
        check(sent_file.drain, sent_file.data, counts, ticks, trio_turns(arun))


def record_sends(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the bytes each MSG_ZEROCOPY-or-plain send of the async sender put on the wire."""
    from zerocopy._msg_zerocopy import aio as sender_aio

    counts: list[int] = []
    real: Callable[..., Any] = sender_aio.AsyncZeroCopySender._send

    async def counting(self: Any, view: memoryview, *args: Any) -> int:
        n: int = await real(self, view, *args)
        counts.append(n)
        return n

    monkeypatch.setattr(sender_aio.AsyncZeroCopySender, "_send", counting)
    return counts


def sendall_beside(
    run: Runner,
    sockets: list[socket.socket],
    monkeypatch: pytest.MonkeyPatch,
    seed: int,
    idle: bool = False,
) -> tuple[Drain, bytes, list[int], list[int]]:
    """AsyncZeroCopySender.sendall beside a heartbeat: drain, data, counts and ticks."""
    data = payload(SIZE, seed)
    recv, send = tcp_pair(sockets)
    counts = record_sends(monkeypatch)
    drain = Drain(recv)
    drain.start()

    async def main() -> None:
        async with aio.AsyncZeroCopySender(send) as sender:
            await sender.sendall(data)

    _, ticks = run(beside_aio_heartbeat(counts, main(), idle=idle))
    send.shutdown(socket.SHUT_WR)
    return drain, data, counts, ticks


class TestSender:
    """AsyncZeroCopySender.sendall keeps to the slice."""

    def test_sendall(
        self,
        backend: ModuleType,
        run: Runner,
        sockets: list[socket.socket],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """Each send is at most a slice, and the loop turns after every slice sent."""
        drain, data, counts, ticks = sendall_beside(run, sockets, monkeypatch, 5)
        check(drain, data, counts, ticks)


class TestSetting:
    """ZEROCOPY_LOOP_SLICE: sizes with units; a bad value never stops an import."""

    @pytest.mark.parametrize(
        ("text", "value"),
        [("65536", 65536), ("512K", 512 * 1024), ("2M", 2 * MiB), (" 1MiB ", MiB), ("64kb", 65536)],
    )
    def test_parse(self, text: str, value: int) -> None:
        """Plain numbers and K/M (KiB, MiB) suffixes parse to bytes."""
        assert _fair.parse_slice(text) == value

    @pytest.mark.parametrize("text", ["", "x", "-1", "1G", "1.5M", "1K"])
    def test_refused(self, text: str) -> None:
        """Non-sizes and slices under 16 KiB are a ValueError."""
        with pytest.raises(ValueError, match=r"size|slice"):
            _fair.parse_slice(text)

    def test_bad_environment_warns_and_uses_default(
        self, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A bad ZEROCOPY_LOOP_SLICE logs a warning and falls back to the default slice."""
        monkeypatch.setenv("ZEROCOPY_LOOP_SLICE", "lots")
        with caplog.at_level(logging.WARNING, logger="zerocopy"):
            assert _fair._from_environment() == _fair.DEFAULT_SLICE
        assert "ZEROCOPY_LOOP_SLICE ignored" in caplog.text


def record_relay_steps(backend: ModuleType, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Wrap *backend*'s ``relay_step``; the list gets the bytes each call delivered."""
    counts: list[int] = []
    real = backend.relay_step

    def counting(*args: Any) -> int:
        state = args[-1]
        before = int(state.delivered)
        try:
            return int(real(*args))
        finally:
            counts.append(int(state.delivered) - before)

    monkeypatch.setattr(backend, "relay_step", counting)
    return counts


class Feed(threading.Thread):
    """Send *data* from a blocking socket, then end the stream."""

    def __init__(self, sock: socket.socket, data: bytes) -> None:
        super().__init__(daemon=True)
        sock.setblocking(True)
        sock.settimeout(30)
        self.sock = sock
        self.data = data

    def run(self) -> None:
        self.sock.sendall(self.data)
        self.sock.shutdown(socket.SHUT_WR)


class EchoEnd(Drain):
    """Drain, then end the other direction too, so that the relay can finish."""

    def run(self) -> None:
        super().run()
        self.sock.shutdown(socket.SHUT_WR)


class Relayed:
    """A bulk stream fed into side *a* of a relay and drained from side *b*."""

    def __init__(self, sockets: list[socket.socket], seed: int) -> None:
        self.data = payload(SIZE, seed)
        client, self.a = tcp_pair(sockets)
        self.b, server = tcp_pair(sockets)
        self.feed, self.drain = Feed(client, self.data), EchoEnd(server)
        self.feed.start()
        self.drain.start()

    def check(
        self, result: tuple[int, int], counts: list[int], ticks: list[int], turns: int
    ) -> None:
        """Counts and bytes exact, and no more than *turns* slices between two heartbeats."""
        self.feed.join(30)
        assert result == (SIZE, 0)
        check(self.drain, self.data, counts, ticks, turns, 4 * SLICE)  # a relay's slice


class TestRelay:
    """aio.relay and zerocopy.anyio.relay keep to the slice, both directions together.

    That is the rule of a relay that steps on its loop: off Linux, or where
    no relay hub can be had (``hub.ENGINE = "rounds"`` here).  On the hub the
    loop steps nothing at all: :meth:`test_aio_on_the_hub`.
    """

    @pytest.fixture(autouse=True)
    def own_rounds(self, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
        if request.function.__name__ != "test_aio_on_the_hub":
            monkeypatch.setattr(hub, "ENGINE", "rounds")

    def test_aio_on_the_hub(
        self,
        backend: ModuleType,
        run: Runner,
        sockets: list[socket.socket],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """On the hub, no relay step runs in the loop's thread: bytes exact, the loop free."""
        threads: set[int] = set()
        real = backend.relay_step

        def noting(*args: Any) -> int:
            threads.add(threading.get_ident())
            return int(real(*args))

        monkeypatch.setattr(backend, "relay_step", noting)
        r = Relayed(sockets, 8)

        async def main() -> tuple[tuple[int, int], int]:
            ticks = 0
            task = asyncio.ensure_future(aio.relay(r.a, r.b))
            while not task.done():
                ticks += 1
                await asyncio.sleep(0.001)
            return task.result(), ticks

        result, ticks = run(main())
        self.feed_and_drain_exact(r, result)
        assert threading.get_ident() not in threads
        assert ticks > 1  # the loop turned while the hub relayed

    @staticmethod
    def feed_and_drain_exact(r: Relayed, result: tuple[int, int]) -> None:
        r.feed.join(30)
        r.drain.join(30)
        assert result == (SIZE, 0)
        assert r.drain.count == len(r.data)
        assert r.drain.sha.hexdigest() == hashlib.sha256(r.data).hexdigest()

    def test_aio(
        self,
        backend: ModuleType,
        run: Runner,
        sockets: list[socket.socket],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """Every relay_step delivers at most a slice, and the loop turns after each slice."""
        counts = record_relay_steps(backend, monkeypatch)
        r = Relayed(sockets, 6)
        result, ticks = run(beside_aio_heartbeat(counts, aio.relay(r.a, r.b)))
        r.check(result, counts, ticks, 1)

    def test_anyio(
        self,
        backend: ModuleType,
        arun: Run,
        sockets: list[socket.socket],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """zerocopy.anyio.relay: at most a slice between two checkpoints (two on trio)."""
        counts = record_relay_steps(backend, monkeypatch)
        r = Relayed(sockets, 7)
        result, ticks = arun(beside_anyio_heartbeat, counts, lambda: zerocopy.anyio.relay(r.a, r.b))
        r.check(result, counts, ticks, trio_turns(arun))


def _turn() -> _fair.Turn:
    """A turn on the running asyncio loop."""
    return _fair.Turn(AsyncioLoop())


def _free() -> bool:
    """Nobody of this thread's loop holds the turn or waits in line."""
    return _fair._here.holder is None and not _fair._here.ring


async def _take_turns(names: str, slices: int, loop: Loop) -> list[str]:
    """Busy transfers *names* each move *slices* slices; a heartbeat marks each turn with "|"."""
    order: list[str] = []
    done = 0

    async def busy(name: str) -> None:
        nonlocal done
        turn = _fair.Turn(loop)
        try:
            for _ in range(slices):
                assert turn.left == SLICE
                order.append(name)
                assert turn.spend(turn.left)
                await turn.pause()
        finally:
            turn.close()
            done += 1

    async def heartbeat() -> None:
        while done < len(names):
            order.append("|")
            await loop.checkpoint()

    async with anyio.create_task_group() as tg:
        tg.start_soon(heartbeat)
        for name in names:
            tg.start_soon(busy, name)
    return order


def _check_turns(order: list[str], names: str, slices: int, *, shuffled: bool) -> None:
    """One busy transfer moves per turn of the loop, in line, after a first turn for all.

    *shuffled*: trio runs each batch of ready tasks in a random order, so the
    heartbeat's mark may fall on either side of the one transfer that moved
    beside it: two may then sit between two marks, never more.
    """
    names_only = [x for x in order if x != "|"]
    assert sorted(names_only[: len(names)]) == sorted(names)
    # In line: the order they parked in (trio's first batch runs in any order).
    line = "".join(names_only[len(names) : 2 * len(names)])
    assert sorted(line) == sorted(names)
    assert "".join(names_only[len(names) :]) == line * (slices - 1)
    turns = "".join(order).split("|")
    # The turn in which the last fresh transfer first moved; after it, one
    # busy transfer per turn (two between marks on trio, see above).
    seen: set[str] = set()
    start = 0
    for i, t in enumerate(turns):
        seen.update(t)
        if len(seen) == len(names):
            start = i
            break
    if not shuffled:
        assert sorted(turns[start]) == sorted(names)
    limit = 2 if shuffled else 1
    assert all(len(t) <= limit for t in turns[start + 1 :]), turns


class TestRing:
    """Busy transfers of one loop (one thread) take turns: one moves per turn of the loop."""

    @pytest.mark.parametrize("kind", ["asyncio", "trio"])
    def test_busy_transfers_take_turns(self, kind: str) -> None:
        """Four busy transfers: after the first turn, one slice per turn, round robin."""

        async def main() -> list[str]:
            order = await _take_turns("abcd", 4, AnyioLoop() if kind == "trio" else AsyncioLoop())
            assert _free()
            return order

        _check_turns(anyio.run(main, backend=kind), "abcd", 4, shuffled=kind == "trio")

    def test_lone_transfer_keeps_its_turn(
        self, run: Runner, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Alone, a spent slice costs one checkpoint and the transfer goes on."""
        monkeypatch.setattr(_fair, "IDLE_TURN", -1.0)  # never idle: the slice stays

        async def main() -> None:
            turn = _turn()
            for _ in range(3):
                assert turn.spend(turn.left)
                await asyncio.wait_for(turn.pause(), 5)
                assert turn.left == SLICE
                assert _fair._here.holder is turn
                assert not _fair._here.ring
            turn.close()
            assert _free()

        run(main())

    def test_waiting_passes_the_turn(self, run: Runner) -> None:
        """A holder that waits for its socket gives the turn to the next in line."""

        async def main() -> None:
            a, b = _turn(), _turn()
            a.spend(SLICE)
            await a.pause()  # a holds the turn
            b.spend(SLICE)
            parked = asyncio.ensure_future(b.pause())
            await asyncio.sleep(0)
            assert not parked.done()
            assert list(_fair._here.ring) == [b]
            socket_ready = asyncio.get_running_loop().create_future()
            waiting = asyncio.ensure_future(a.wait(socket_ready))
            await asyncio.wait_for(parked, 5)
            assert _fair._here.holder is b
            assert not _fair._here.ring
            assert a.left == SLICE
            socket_ready.set_result("ready")
            b.close()
            assert await asyncio.wait_for(waiting, 5) == "ready"
            assert _fair._here.holder is a
            a.close()
            assert _free()

        run(main())

    def test_back_from_waiting_gets_in_line(self, run: Runner) -> None:
        """Its socket ready while another transfer holds the turn, a transfer parks behind it."""

        async def main() -> None:
            a, b, c = _turn(), _turn(), _turn()
            socket_ready = asyncio.get_running_loop().create_future()
            a.spend(_fair.LIGHT)  # bulk: it moved LIGHT bytes or more before it waited
            waiting = asyncio.ensure_future(a.wait(socket_ready))
            await asyncio.sleep(0)
            assert _free()  # nobody held the turn: nobody to pass it to
            b.spend(SLICE)
            await b.pause()  # b holds the turn
            c.spend(SLICE)
            c_parked = asyncio.ensure_future(c.pause())
            await asyncio.sleep(0)
            socket_ready.set_result(7)
            for _ in range(3):
                await asyncio.sleep(0)
            assert not waiting.done()  # in line behind c, not moving beside b
            assert list(_fair._here.ring) == [c, a]
            b.spend(SLICE)
            b_parked = asyncio.ensure_future(b.pause())  # b's slice spent: c, then a
            await asyncio.wait_for(c_parked, 5)
            assert _fair._here.holder is c
            assert not waiting.done()
            c.close()
            assert await asyncio.wait_for(waiting, 5) == 7
            assert _fair._here.holder is a
            a.close()
            await asyncio.wait_for(b_parked, 5)
            b.close()
            assert _free()

        run(main())

    def test_interactive_back_from_waiting_moves_at_once(self, run: Runner) -> None:
        """One that moved less than LIGHT before it waited does not queue behind bulk transfers."""

        async def main() -> None:
            a, b = _turn(), _turn()
            b.spend(SLICE)
            await b.pause()  # b holds the turn
            a.spend(_fair.LIGHT - 1)
            ready = asyncio.get_running_loop().create_future()
            ready.set_result("echo")
            assert await asyncio.wait_for(a.wait(ready), 5) == "echo"
            assert _fair._here.holder is b  # a moved beside it, b keeps the turn
            assert not _fair._here.ring
            a.close()
            b.close()
            assert _free()

        run(main())

    def test_lone_transfer_back_from_waiting_moves_at_once(self, run: Runner) -> None:
        """Nobody holding the turn, a transfer back from waiting takes it without a checkpoint."""

        async def main() -> None:
            a = _turn()
            ready = asyncio.get_running_loop().create_future()
            ready.set_result(None)
            await a.wait(ready)
            assert _fair._here.holder is a
            assert not _fair._here.ring
            a.close()
            assert _free()

        run(main())

    @pytest.mark.parametrize("woken", [False, True], ids=["parked", "woken"])
    def test_cancelled_in_line(self, run: Runner, woken: bool) -> None:
        """Cancelled while parked, or after being given the turn: the line goes on without it."""

        async def main() -> None:
            a, b, c = _turn(), _turn(), _turn()
            a.spend(SLICE)
            await a.pause()
            parked = []
            for t in (b, c):
                t.spend(SLICE)
                parked.append(asyncio.ensure_future(t.pause()))
            await asyncio.sleep(0)
            assert list(_fair._here.ring) == [b, c]
            never = asyncio.get_running_loop().create_future()
            if woken:
                a_waits = asyncio.ensure_future(a.wait(never))
                await asyncio.sleep(0)  # b is given the turn: cancelled before it runs
                assert _fair._here.holder is b
            parked[0].cancel()
            with pytest.raises(asyncio.CancelledError):
                await parked[0]
            if not woken:
                a_waits = asyncio.ensure_future(a.wait(never))
            await asyncio.wait_for(parked[1], 5)  # c gets the turn either way
            assert _fair._here.holder is c
            assert not _fair._here.ring
            a_waits.cancel()
            with pytest.raises(asyncio.CancelledError):
                await a_waits
            for t in (a, b, c):
                t.close()
            assert _free()

        run(main())

    def test_cancelled_back_in_line(self, run: Runner) -> None:
        """Cancelled while parked after its wait: out of the line, the turn goes on."""

        async def main() -> None:
            a, b = _turn(), _turn()
            b.spend(SLICE)
            await b.pause()  # b holds the turn
            ready = asyncio.get_running_loop().create_future()
            ready.set_result(None)
            a.spend(SLICE)
            waiting = asyncio.ensure_future(a.wait(ready))
            await asyncio.sleep(0)
            assert list(_fair._here.ring) == [a]
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            assert not _fair._here.ring
            assert _fair._here.holder is b
            b.close()
            assert _free()

        run(main())

    def test_per_thread(self, run: Runner) -> None:
        """A holder in another thread (another loop) does not make this one wait."""

        async def hold() -> None:
            other = _turn()
            other.spend(SLICE)
            await other.pause()  # holds this thread's turn, never releases it

        async def lone() -> None:
            turn = _turn()
            turn.spend(SLICE)
            await asyncio.wait_for(turn.pause(), 5)
            turn.close()

        t = threading.Thread(target=lambda: asyncio.run(hold()))
        t.start()
        t.join()
        run(lone())

    def test_concurrent_sends(
        self,
        backend: ModuleType,
        run: Runner,
        tmp_path: Path,
        sockets: list[socket.socket],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """Four aio.send_file at once: bodies byte-exact, no call past the slice, none left.

        Not even one busy while the others wait for their sockets: a slice
        grows only for the one transfer of its loop (TestGrowth), here the
        last one still sending.
        """
        data = payload(8 * MiB, 8)
        path = make_file(tmp_path, data)
        counts = record_sendfile(backend, monkeypatch)
        lives: list[int] = []  # the loop's transfers at each call
        counted = backend.sendfile

        def noting(*args: Any, **kwargs: Any) -> int:
            n = int(counted(*args, **kwargs))  # EAGAIN: in neither list
            lives.append(_fair._here.live)
            return n

        monkeypatch.setattr(backend, "sendfile", noting)
        pairs = [tcp_pair(sockets) for _ in range(4)]
        drains = [Drain(recv) for recv, _ in pairs]
        for d in drains:
            d.start()

        async def main(files: list[Any]) -> list[int]:
            return await asyncio.gather(
                *(aio.send_file(send, f) for (_, send), f in zip(pairs, files, strict=True))
            )

        files = [open(path, "rb") for _ in pairs]  # noqa: SIM115 - closed below
        try:
            assert run(main(files)) == [len(data)] * 4
        finally:
            for f in files:
                f.close()
        for (_, send), d in zip(pairs, drains, strict=True):
            send.shutdown(socket.SHUT_WR)
            d.join(30)
            assert d.count == len(data)
            assert d.sha.hexdigest() == hashlib.sha256(data).hexdigest()
        beside_others = [n for n, live in zip(counts, lives, strict=True) if live > 1]
        assert len(beside_others) > len(counts) // 2
        assert max(beside_others) <= SLICE
        assert max(counts) <= _fair.GROW * SLICE
        assert _free()  # every transfer left the line
        assert _fair._here.live == 0


class TestGrowth:
    """Alone on an idle loop, a transfer's slice doubles per idle turn, up to GROW slices.

    Idle: no other transfer on the loop, and two checkpoints in a row back
    within ``_fair.IDLE_TURN``.  The first sign of other work puts it back to
    one slice.
    """

    @staticmethod
    def lefts(turn: _fair.Turn, pauses: int) -> Awaitable[list[int]]:
        async def go() -> list[int]:
            seen = []
            for _ in range(pauses):
                assert turn.spend(turn.left)
                await turn.pause()
                seen.append(turn.left)
            return seen

        return go()

    def test_grows_on_an_idle_loop(self, run: Runner, monkeypatch: pytest.MonkeyPatch) -> None:
        """Idle turns: one slice, then two, then GROW (4), and no further."""
        monkeypatch.setattr(_fair, "IDLE_TURN", 10.0)

        async def main() -> list[int]:
            turn = _turn()
            try:
                return await self.lefts(turn, 5)
            finally:
                turn.close()

        assert _fair.GROW == 4
        assert run(main()) == [SLICE, 2 * SLICE, 4 * SLICE, 4 * SLICE, 4 * SLICE]

    def test_a_busy_turn_shrinks_it(self, run: Runner, monkeypatch: pytest.MonkeyPatch) -> None:
        """One turn longer than IDLE_TURN: one slice, and growing again takes two idle turns."""

        async def main() -> list[int]:
            turn = _turn()
            try:
                monkeypatch.setattr(_fair, "IDLE_TURN", 10.0)
                seen = await self.lefts(turn, 3)
                monkeypatch.setattr(_fair, "IDLE_TURN", -1.0)
                seen += await self.lefts(turn, 1)
                monkeypatch.setattr(_fair, "IDLE_TURN", 10.0)
                return seen + await self.lefts(turn, 3)
            finally:
                turn.close()

        assert run(main()) == [SLICE, 2 * SLICE, 4 * SLICE, SLICE, SLICE, 2 * SLICE, 4 * SLICE]

    def test_real_turns_of_a_busy_loop_shrink_it(self, run: Runner) -> None:
        """With the default IDLE_TURN: another task's work in the turn puts it back."""

        async def main() -> tuple[int, int]:
            turn = _turn()
            try:
                for _ in range(50):  # idle turns: 5 us each here, IDLE_TURN is 50 us
                    assert turn.spend(turn.left)
                    await turn.pause()
                grown = turn.left
                other = asyncio.get_running_loop().call_soon(work)
                assert turn.spend(turn.left)
                await turn.pause()
                other.cancel()
                return grown, turn.left
            finally:
                turn.close()

        assert run(main()) == (4 * SLICE, SLICE)

    @pytest.mark.parametrize("where", ["during", "before"])
    def test_another_busy_transfer_shrinks_it(
        self, run: Runner, monkeypatch: pytest.MonkeyPatch, where: str
    ) -> None:
        """Another transfer in line, come during the checkpoint or before the pause: one slice."""
        monkeypatch.setattr(_fair, "IDLE_TURN", 10.0)

        async def main() -> None:
            a = _turn()
            assert await self.lefts(a, 3) == [SLICE, 2 * SLICE, 4 * SLICE]
            b = _turn()
            a.spend(a.left)
            b.spend(b.left)
            if where == "during":  # b parks while a's checkpoint lets the loop turn
                a_pauses = asyncio.ensure_future(a.pause())
                b_pauses = asyncio.ensure_future(b.pause())
                await asyncio.wait_for(a_pauses, 5)
                assert _fair._here.holder is a
                assert list(_fair._here.ring) == [b]
                assert a.left == SLICE
                a.close()
                await asyncio.wait_for(b_pauses, 5)
            else:  # b is in line before a pauses: a passes the turn and parks
                b_pauses = asyncio.ensure_future(b.pause())
                await asyncio.sleep(0)
                assert list(_fair._here.ring) == [b]
                a_pauses = asyncio.ensure_future(a.pause())
                await asyncio.wait_for(b_pauses, 5)
                assert list(_fair._here.ring) == [a]
                assert a.left == SLICE
                b.close()
                await asyncio.wait_for(a_pauses, 5)
                assert a.left == SLICE
            for t in (a, b):
                t.close()
            assert _free()

        run(main())

    def test_not_beside_another_transfer(
        self, run: Runner, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Another transfer of the loop, even one not busy (waiting for its socket): one slice.

        Closed (twice, harmlessly), it no longer counts and growth resumes.
        """
        monkeypatch.setattr(_fair, "IDLE_TURN", 10.0)

        async def main() -> list[int]:
            a = _turn()
            seen = await self.lefts(a, 3)
            other = _turn()
            assert _fair._here.live == 2
            seen += await self.lefts(a, 3)
            other.close()
            other.close()
            assert _fair._here.live == 1
            seen += await self.lefts(a, 3)
            a.close()
            assert _fair._here.live == 0
            return seen

        grown = [SLICE, 2 * SLICE, 4 * SLICE]
        assert run(main()) == [*grown, SLICE, SLICE, SLICE, *grown]

    def test_waiting(self, run: Runner, monkeypatch: pytest.MonkeyPatch) -> None:
        """Back from a wait alone: still grown, growing further takes two idle turns;
        back with another transfer holding the turn: one slice."""
        monkeypatch.setattr(_fair, "IDLE_TURN", 10.0)

        async def main() -> None:
            a = _turn()
            loop = asyncio.get_running_loop()
            ready = loop.create_future()
            ready.set_result(None)
            assert await self.lefts(a, 2) == [SLICE, 2 * SLICE]
            await a.wait(ready)
            assert a.left == 2 * SLICE
            assert await self.lefts(a, 3) == [2 * SLICE, 4 * SLICE, 4 * SLICE]
            b = _turn()
            later = loop.create_future()
            a.spend(_fair.LIGHT)  # not interactive: back from the wait, it gets in line
            a_waits = asyncio.ensure_future(a.wait(later))
            await asyncio.sleep(0)
            b.spend(b.left)
            await b.pause()  # b takes the free turn
            assert _fair._here.holder is b
            later.set_result(None)
            await asyncio.sleep(0)
            assert list(_fair._here.ring) == [a]  # in line, one slice
            assert a.left == SLICE
            b.close()
            await asyncio.wait_for(a_waits, 5)
            a.close()
            assert _free()

        run(main())


class TestGrowthOfTransfers:
    """Real transfers beside a heartbeat that does nothing: calls grow, to GROW slices at most."""

    @pytest.fixture(autouse=True)
    def always_idle(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(_fair, "IDLE_TURN", 10.0)
        monkeypatch.setattr(hub, "ENGINE", "rounds")

    @staticmethod
    def check_grown(counts: list[int], ticks: list[int], slice_: int, turns: int) -> None:
        assert slice_ < max(counts) <= _fair.GROW * slice_
        assert biggest_gap(ticks) <= turns * _fair.GROW * slice_

    def test_aio_send_file(
        self,
        backend: ModuleType,
        run: Runner,
        tmp_path: Path,
        sockets: list[socket.socket],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        sent_file, counts, ticks = aio_send_file_beside(
            backend, run, tmp_path, sockets, monkeypatch, 9, idle=True
        )
        check(sent_file.drain, sent_file.data, counts, ticks, 1, _fair.GROW * SLICE)
        self.check_grown(counts, ticks, SLICE, 1)

    def test_anyio_send_file(
        self,
        backend: ModuleType,
        arun: Run,
        tmp_path: Path,
        sockets: list[socket.socket],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        sent_file, counts, ticks = anyio_send_file_beside(
            backend, arun, tmp_path, sockets, monkeypatch, 10, idle=True
        )
        turns = trio_turns(arun)
        check(sent_file.drain, sent_file.data, counts, ticks, turns, _fair.GROW * SLICE)
        self.check_grown(counts, ticks, SLICE, turns)

    def test_sender(
        self,
        backend: ModuleType,
        run: Runner,
        sockets: list[socket.socket],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        drain, data, counts, ticks = sendall_beside(run, sockets, monkeypatch, 11, idle=True)
        check(drain, data, counts, ticks, 1, _fair.GROW * SLICE)
        self.check_grown(counts, ticks, SLICE, 1)

    def test_aio_relay(
        self,
        backend: ModuleType,
        run: Runner,
        sockets: list[socket.socket],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        counts = record_relay_steps(backend, monkeypatch)
        r = Relayed(sockets, 12)
        result, ticks = run(beside_aio_heartbeat(counts, aio.relay(r.a, r.b), idle=True))
        r.feed.join(30)
        assert result == (SIZE, 0)
        check(r.drain, r.data, counts, ticks, 1, _fair.GROW * 4 * SLICE)
        self.check_grown(counts, ticks, 4 * SLICE, 1)
