"""TCP urgent data through relay and aio.relay: never lost, never spun on, counts exact.

splice from TCP stops at the urgent mark for good.  A relay direction looks
for the mark only when a step read nothing from its source (or at end of
stream), and then reads past it as ``recv`` would.  These cases put the mark
everywhere a step can meet it: in the middle of a burst, alone, last before
the end of stream, many times over, with and without ``SO_OOBINLINE`` on the
relay's receiving socket.  Each checks the bytes the server got against what
the client sent (the urgent byte dropped as ``recv`` drops it, or kept in
line), the relay's counts against what arrived, and that the process did not
burn CPU through the pauses (a spin on the mark would): the process's CPU,
less a busy loop's that stands in for the last pause, is compared with what
that busy loop got.
"""

from __future__ import annotations

import asyncio
import resource
import socket
import threading
import time
from collections.abc import Iterator
from types import ModuleType

import pytest

from conftest import tcp_pair
from netkit import Runner, payload

# `name as name`: fixtures, re-exported so that linters count them as used.
from netkit import empty_pool as empty_pool
from netkit import run as run
from timekit import Usage, assert_waited, busy
from zerocopy import aio, relay

URGENT = b"\xff"  # never in the payloads below: they are made of other bytes
PAUSE = 0.4  # after the last byte; a spinning relay would burn it all as CPU
#: CPU seconds the whole process may use besides the pause: the bytes, the
#: marks, the threads (under 0.01 s here, loaded or not).
WORK = 0.02

Step = tuple[str, bytes | float]


def text(size: int, seed: int) -> bytes:
    """*size* payload bytes with no URGENT byte in them."""
    return payload(size, seed).replace(URGENT, b"\x00")


SCENARIOS: dict[str, list[Step]] = {
    "burst": [("data", b"hello"), ("oob", URGENT), ("data", b"world")],
    "apart": [
        ("data", b"hello"),
        ("pause", 0.1),
        ("oob", URGENT),
        ("pause", 0.1),
        ("data", b"world"),
    ],
    "last": [("data", text(100_000, 1)), ("oob", URGENT)],
    "alone-then-data": [("oob", URGENT), ("pause", 0.2), ("data", b"world")],
    "first": [("oob", URGENT), ("data", text(300_000, 2))],
    "many": [s for i in range(30) for s in (("data", text(10_000, 10 + i)), ("oob", URGENT))],
}


def play(sock: socket.socket, steps: list[Step]) -> tuple[bytes, int, Usage]:
    """Send *steps* on blocking *sock*, then pause busy (the baseline) and end the stream.

    Returns the whole stream sent, how many urgent bytes, and the busy pause's CPU.
    """
    sent = bytearray()
    urgent = 0
    for kind, what in steps:
        if kind == "pause":
            assert isinstance(what, float)
            time.sleep(what)
            continue
        assert isinstance(what, bytes)
        if kind == "oob":
            assert sock.send(what, socket.MSG_OOB) == 1
            urgent += 1
        else:
            sock.sendall(what)
        sent += what
    spun = busy(PAUSE)
    sock.shutdown(socket.SHUT_WR)
    return bytes(sent), urgent, spun


def read_all(sock: socket.socket, into: bytearray) -> None:
    while chunk := sock.recv(1 << 20):
        into += chunk


class Case:
    """client C -> a (relay) b -> server S over loopback TCP, and the checks."""

    def __init__(self, inline: bool) -> None:
        self.inline = inline
        self.C, self.a = tcp_pair()
        self.b, self.S = tcp_pair()
        if inline:
            self.a.setsockopt(socket.SOL_SOCKET, socket.SO_OOBINLINE, 1)
        for s in (self.C, self.S):
            s.settimeout(30)
        self.got = bytearray()
        self.reader = threading.Thread(target=read_all, args=(self.S, self.got))

    def close(self) -> None:
        for s in (self.C, self.a, self.b, self.S):
            s.close()

    def check(
        self, counts: tuple[int, int], sent: bytes, urgent: int, spun: Usage, cpu: float
    ) -> None:
        """The bytes and counts; *cpu*, the process's CPU, less *spun* is a wait's."""
        got = bytes(self.got)
        if self.inline:
            assert got == sent  # SO_OOBINLINE: the urgent byte stays in line
        else:
            # recv drops the urgent byte; Linux puts an unread one back in line
            # when the next urgent pointer comes, so it may appear, in place.
            assert got.replace(URGENT, b"") == sent.replace(URGENT, b"")
            assert got.count(URGENT) <= urgent
        assert counts == (len(got), 0)
        # Everything but the busy pause, against what the busy pause got.
        assert_waited(cpu - spun.cpu, spun, work=WORK, what="the process (a spin on the mark?)")


def cpu_now() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@pytest.fixture(params=[False, True], ids=["plain", "oobinline"])
def case(request: pytest.FixtureRequest) -> Iterator[Case]:
    c = Case(request.param)
    yield c
    c.close()


@pytest.mark.parametrize("scenario", list(SCENARIOS))
class TestUrgent:
    def test_threaded(self, backend: ModuleType, case: Case, scenario: str) -> None:
        """relay(): the urgent byte as recv would see it, nothing lost, no spin."""
        result: list[tuple[int, int]] = []
        t = threading.Thread(target=lambda: result.append(relay(case.a, case.b, timeout=10)))
        case.reader.start()
        t.start()
        start = cpu_now()
        sent, urgent, spun = play(case.C, SCENARIOS[scenario])
        case.S.shutdown(socket.SHUT_WR)
        t.join(20)
        case.reader.join(20)
        assert result, "the relay did not end"
        case.check(result[0], sent, urgent, spun, cpu_now() - start)

    def test_asyncio(self, backend: ModuleType, run: Runner, case: Case, scenario: str) -> None:
        """aio.relay on asyncio and uvloop: the same."""
        case.a.setblocking(False)
        case.b.setblocking(False)
        out: list[tuple[bytes, int, Usage]] = []

        def client() -> None:
            out.append(play(case.C, SCENARIOS[scenario]))
            case.S.shutdown(socket.SHUT_WR)

        async def main() -> tuple[int, int]:
            task = asyncio.create_task(aio.relay(case.a, case.b, timeout=10))
            await asyncio.sleep(0)
            return await task

        sender = threading.Thread(target=client)
        case.reader.start()
        start = cpu_now()
        sender.start()
        counts = run(main())
        sender.join(20)
        case.reader.join(20)
        case.check(counts, *out[0], cpu_now() - start)
