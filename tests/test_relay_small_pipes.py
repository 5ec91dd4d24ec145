"""Urgent data behind a small pipe: a relay never blocks on a pipe only it drains.

At a TCP urgent mark a relay direction reads the bytes past it (splice stops
there for good).  Those bytes used to be written into the direction's pooled
pipe with a blocking write, whose only reader is the same thread or event
loop: with more bytes behind the mark than the pipe holds, the write never
returned, and the relay (its idle timeout, the whole event loop) froze.
Pipes are small in two ordinary ways, both covered here: a pool asked for
small pipes (``PipePool(pipe_size=...)``), and an unprivileged process past
``fs.pipe-user-pages-soft``, whose new pipes get 2 pages (a child process
that drops to an unprivileged uid and fills the budget first).

Each case sends a round (data, one ``MSG_OOB`` byte, 32 KiB) before the
relay starts, so the mark is met with all of it queued, then more rounds
while it runs; every form (blocking, ``aio`` on asyncio and uvloop,
``anyio`` on asyncio, uvloop and trio) must deliver the stream as ``recv``
would (the urgent byte skipped), count it exactly, and end.  A hang is
turned into a failure by SIGALRM (the frozen write is in the main thread).
"""

from __future__ import annotations

import asyncio
import dataclasses
import fcntl
import hashlib
import json
import os
import resource
import socket
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

import anyio
import pytest

import conftest
import zerocopy
import zerocopy.aio as zc_aio
import zerocopy.anyio as zc_anyio
from anyiokit import uvloop_warmed as uvloop_warmed
from netkit import empty_pool as empty_pool
from netkit import payload
from zerocopy import _pipes
from zerocopy._pipes import Pipe, PipePool

URGENT = b"\xff"  # never in the payloads: text() replaces it
DATA = 10_000  # bytes before each urgent byte
TAIL = 32 * 1024  # bytes behind each urgent byte: more than any pipe made here holds
ROUNDS = 3
SMALL = 4096  # the pool's pipe size: one page
RELAY_TIMEOUT = 5.0  # the relay's idle timeout, as a proxy would pass it
GUARD = 20.0  # SIGALRM after this: a frozen relay fails the case
UNPRIVILEGED_UID = 47213  # no account needed; its own per-user pipe budget
FORMS = ["blocking", "aio-asyncio", "aio-uvloop", "anyio-asyncio", "anyio-uvloop", "anyio-trio"]
_F_GETPIPE_SZ = getattr(fcntl, "F_GETPIPE_SZ", 1032)


def text(size: int, seed: int) -> bytes:
    """*size* payload bytes with no URGENT byte in them."""
    return payload(size, seed).replace(URGENT, b"\x00")


def plain(data: bytes | bytearray) -> bytes:
    """The stream as recv reads it without SO_OOBINLINE: urgent bytes dropped."""
    return bytes(data).replace(URGENT, b"")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class RecordingPool(PipePool):
    """A pipe pool that notes the capacity of every pipe it makes."""

    def __init__(self, pipe_size: int = 1 << 20) -> None:
        super().__init__(maxsize=8, pipe_size=pipe_size)
        self.sizes: list[int] = []

    def _new(self) -> Pipe:
        pipe = super()._new()
        self.sizes.append(pipe.size)
        return pipe


@dataclasses.dataclass
class Outcome:
    """What one relay did, in a form a child process can print as JSON."""

    counts: list[int]
    sent: str  # SHA-256 of the stream sent, urgent bytes dropped
    got: str  # SHA-256 of the stream received, urgent bytes dropped
    sent_plain: int
    got_plain: int
    got_total: int  # every byte received (an urgent byte may come in line)
    urgent_sent: int
    urgent_got: int
    pipe_sizes: list[int]
    error: str = ""

    def problems(self) -> list[str]:
        """Each way this outcome falls short of the contract (empty: none)."""
        found = []
        if self.error:
            found.append(f"raised {self.error}")
        if not self.pipe_sizes or max(self.pipe_sizes) >= TAIL:
            found.append(f"pipes not small enough to prove anything: {self.pipe_sizes}")
        if (self.got_plain, self.got) != (self.sent_plain, self.sent):
            found.append(f"received {self.got_plain} plain bytes, sent {self.sent_plain}, or other")
        if self.urgent_got > self.urgent_sent:
            found.append(f"{self.urgent_got} urgent bytes received, {self.urgent_sent} sent")
        if self.counts != [self.got_total, 0]:
            found.append(f"counts {self.counts}, received ({self.got_total}, 0)")
        return found


class Peers:
    """client C -> a (relay) b -> server S over loopback TCP; S sends nothing."""

    def __init__(self) -> None:
        self.C, self.a = conftest.tcp_pair()
        self.b, self.S = conftest.tcp_pair()
        for s in (self.C, self.S):
            s.settimeout(GUARD)
        self.sent = bytearray()
        self.urgent = 0
        self.got = bytearray()
        self.errors: list[BaseException] = []
        self.threads = [
            threading.Thread(target=self._guarded, args=(self._read,)),
            threading.Thread(target=self._guarded, args=(self._drive,)),
        ]

    def send_round(self, i: int) -> None:
        data, tail = text(DATA, 2 * i), text(TAIL, 2 * i + 1)
        self.C.sendall(data)
        assert self.C.send(URGENT, socket.MSG_OOB) == 1
        self.C.sendall(tail)
        self.sent += data + URGENT + tail
        self.urgent += 1

    def start(self) -> None:
        """Queue the first round in a, end b's input, start the reader and the driver."""
        self.send_round(0)
        deadline = time.monotonic() + GUARD
        # All of it acknowledged: in a's receive queue (whose FIONREAD stops at the mark).
        while _unacked(self.C):
            assert time.monotonic() < deadline, "the first round never arrived"
            time.sleep(0.001)
        self.S.shutdown(socket.SHUT_WR)
        for t in self.threads:
            t.start()

    def _guarded(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except BaseException as exc:
            self.errors.append(exc)

    def _read(self) -> None:
        while chunk := self.S.recv(1 << 20):
            self.got += chunk

    def _drive(self) -> None:
        # Each further round once the last has arrived: the relay meets each mark.
        for i in range(1, ROUNDS):
            self._wait_delivered()
            self.send_round(i)
        self._wait_delivered()
        self.C.shutdown(socket.SHUT_WR)

    def _wait_delivered(self) -> None:
        deadline = time.monotonic() + GUARD
        want = len(plain(self.sent))
        while len(plain(self.got)) < want:
            if time.monotonic() > deadline or self.errors:
                raise TimeoutError(f"{len(plain(self.got))} of {want} bytes arrived")
            time.sleep(0.002)

    def finish(self, counts: tuple[int, int] | None, error: str, sizes: list[int]) -> Outcome:
        """Stop the peers (woken if stuck), close everything, and say what happened."""
        if error:
            for s in (self.C, self.S):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        for t in self.threads:
            if t.ident is not None:
                t.join(GUARD)
        for s in (self.C, self.a, self.b, self.S):
            s.close()
        if not error and self.errors:
            error = f"peer: {self.errors[0]!r}"
        got = bytes(self.got)
        return Outcome(
            counts=list(counts) if counts is not None else [],
            sent=sha(plain(self.sent)),
            got=sha(plain(got)),
            sent_plain=len(plain(self.sent)),
            got_plain=len(plain(got)),
            got_total=len(got),
            urgent_sent=self.urgent,
            urgent_got=got.count(URGENT),
            pipe_sizes=sizes,
            error=error,
        )


def _unacked(sock: socket.socket) -> int:
    """Bytes *sock* sent that its peer has not acknowledged yet (SIOCOUTQ)."""
    raw = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
    return int.from_bytes(raw, "little", signed=True)


def relay_in(form: str, a: Any, b: Any, timeout: Any = RELAY_TIMEOUT) -> tuple[int, int]:
    """``relay(a, b, timeout=timeout)`` in *form*, in this thread (async: on a fresh loop)."""
    if form == "blocking":
        return zerocopy.relay(a, b, timeout=timeout)
    for s in (a, b):
        s.setblocking(False)
    family, _, kind = form.partition("-")
    if family == "aio":
        factory = None
        if kind == "uvloop":
            import uvloop

            factory = uvloop.new_event_loop
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(zc_aio.relay(a, b, timeout=timeout))
    backend = "trio" if kind == "trio" else "asyncio"
    options = {"use_uvloop": True} if kind == "uvloop" else {}

    async def main() -> tuple[int, int]:
        return await zc_anyio.relay(a, b, timeout=timeout)

    result: tuple[int, int] = anyio.run(main, backend=backend, backend_options=options)
    return result


def run_case(form: str, pool: RecordingPool) -> Outcome:
    """One relay of ROUNDS urgent rounds in *form*, its pipes from *pool*."""
    saved = _pipes._default
    _pipes._default = pool  # what every Direction takes its pipes from
    peers = Peers()
    counts = None
    error = ""
    try:
        peers.start()
        with conftest.hang_guard(GUARD):
            counts = relay_in(form, peers.a, peers.b)
    except BaseException as exc:
        error = repr(exc)
    finally:
        _pipes._default = saved
        pool.clear()
    return peers.finish(counts, error, pool.sizes)


@pytest.fixture
def uvloop_ready(uvloop_warmed: None) -> None:
    """uvloop's process-wide fds exist before no_leaks counts (asyncio.Runner's too)."""
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as r:
        r.run(asyncio.sleep(0))


@pytest.mark.parametrize("form", FORMS)
def test_small_pool_pipes(
    backend: ModuleType, uvloop_ready: None, no_leaks: None, form: str
) -> None:
    """Pool pipes of one page, 32 KiB behind each urgent byte: every byte, exact counts, no hang."""
    outcome = run_case(form, RecordingPool(pipe_size=SMALL))
    assert outcome.problems() == []
    assert max(outcome.pipe_sizes) == SMALL


# --- an unprivileged process past its per-user pipe budget ------------------------


def unprivileged_child() -> None:
    """In a child (as root): drop to an unprivileged uid, fill its pipe budget, run every form.

    Prints one JSON line: ``{"skip": reason}`` or ``{form: Outcome fields}``.
    """
    # Every form once as root first: once the uid is dropped, the
    # interpreter's own files (under /root here) may be out of reach, so
    # whatever the forms import lazily must be imported by then.
    for form in FORMS:
        run_case(form, RecordingPool())
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 8192
    if hard != resource.RLIM_INFINITY and hard < want:
        print(json.dumps({"skip": f"RLIMIT_NOFILE hard limit {hard} < {want}"}))
        return
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))  # before dropping: root may raise it
    os.setgroups([])
    os.setgid(UNPRIVILEGED_UID)
    os.setuid(UNPRIVILEGED_UID)
    fillers: list[int] = []
    for _ in range(3000):
        r, w = os.pipe()
        fillers += [r, w]
        if fcntl.fcntl(w, _F_GETPIPE_SZ) < 64 * 1024:
            break
    else:
        soft = open("/proc/sys/fs/pipe-user-pages-soft").read().strip()  # noqa: SIM115
        print(json.dumps({"skip": f"3000 pipes and new ones are still 64 KiB (soft {soft})"}))
        return
    results = {}
    for form in FORMS:
        results[form] = dataclasses.asdict(run_case(form, RecordingPool()))
    print(json.dumps(results))


def test_unprivileged_past_the_pipe_budget(backend: ModuleType) -> None:
    """An unprivileged process whose new pipes get 2 pages: every form delivers, counts, ends."""
    if os.geteuid() != 0:
        pytest.skip("needs root to start a child that drops to an unprivileged uid")
    tests = os.path.dirname(os.path.abspath(__file__))
    code = (
        f"import sys; sys.path.insert(0, {tests!r}); "
        "import test_relay_small_pipes as t; t.unprivileged_child()"
    )
    env = dict(os.environ, ZEROCOPY_BACKEND=backend.NAME, PYTHONDONTWRITEBYTECODE="1")
    try:
        done = subprocess.run(
            [sys.executable, "-c", code],
            env=env,
            cwd=tests,
            capture_output=True,
            text=True,
            timeout=len(FORMS) * GUARD * 2,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the unprivileged child hung: {exc.stderr!r}")
    assert done.returncode == 0, done.stderr[-3000:]
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    if "skip" in report:
        pytest.skip(f"cannot fill an unprivileged user's pipe budget here: {report['skip']}")
    problems = {}
    for form in FORMS:
        outcome = Outcome(**report[form])
        if max(outcome.pipe_sizes, default=0) > 8192:
            problems[form] = [f"pipes were not shrunk by the budget: {outcome.pipe_sizes}"]
        elif found := outcome.problems():
            problems[form] = found
    assert problems == {}
