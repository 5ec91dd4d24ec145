"""Support for the socket tests: asyncio loop runners, socket pairs, payloads, sender helpers.

Fixtures here are imported by name into each module that uses them (an
imported autouse fixture, such as ``empty_pool``, applies to that module
only).  Blocking TCP pairs come from conftest's ``tcp_pair``.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import select
import socket
import struct
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import conftest
import zerocopy
from zerocopy._pipes import default_pool

KiB = 1024
MiB = 1024 * KiB
Runner = Callable[[Coroutine[Any, Any, Any]], Any]

# --- payloads -------------------------------------------------------------------

# One random blob, sliced for every payload: cheap, and no two tests share bytes
# at the same offsets by accident.
_BLOB = os.urandom(9 * MiB)


def payload(size: int, seed: int = 0) -> bytes:
    """*size* random-looking bytes, different for each *seed*."""
    start = (seed * 7919) % MiB
    if start + size <= len(_BLOB):
        return _BLOB[start : start + size]
    reps = (start + size) // len(_BLOB) + 1
    return (_BLOB * reps)[start : start + size]


# The sender tests' own blob: 4 MiB + 17 bytes, so a long payload repeats with a
# period that falls on no MiB (or page) boundary.
_SENDER_BLOB = os.urandom(4 * MiB + 17)


def sender_payload(size: int, seed: int = 0) -> bytes:
    """*size* random-looking bytes, different for each *seed*."""
    start = (seed * 7919) % len(_SENDER_BLOB)
    reps = (start + size) // len(_SENDER_BLOB) + 1
    data = _SENDER_BLOB * reps if reps > 1 else _SENDER_BLOB
    return data[start : start + size]


# --- asyncio: loops, pools, leak checks -------------------------------------------


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Runner:
    """Run a coroutine to completion on a fresh loop of the kind under test (60 s cap)."""
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if request.param == "uvloop":
        try:
            import uvloop
        except ImportError:
            pytest.skip("uvloop is not installed (pip install uvloop to test with it)")
        factory = uvloop.new_event_loop
        # uvloop opens a few process-wide fds on first use: open them before
        # any no_leaks fixture takes its census.
        with asyncio.Runner(loop_factory=factory) as r:
            r.run(asyncio.sleep(0))

    def runner(coro: Coroutine[Any, Any, Any]) -> Any:
        with asyncio.Runner(loop_factory=factory) as r:
            return r.run(asyncio.wait_for(coro, 60))

    runner.kind = request.param  # type: ignore[attr-defined]
    return runner


@pytest.fixture(autouse=True)
def empty_pool() -> None:
    """Start every test with an empty pipe pool, so fd counts compare like with like."""
    default_pool().clear()


@pytest.fixture
def no_fd_leak(no_leaks: None) -> Iterator[None]:
    """Fail on leaked fds; idle pooled pipes must be empty and are closed before the count."""
    yield
    pool = default_pool()
    assert all(pipe.queued() == 0 for pipe in pool._idle)
    pool.clear()


# --- asyncio: non-blocking socket pairs -------------------------------------------


@pytest.fixture
def sockets() -> Iterator[list[socket.socket]]:
    """A list whose sockets are all closed after the test."""
    held: list[socket.socket] = []
    yield held
    for sock in held:
        sock.close()


def tcp_pair(
    held: list[socket.socket], *, rcvbuf: int = 0, sndbuf: int = 0
) -> tuple[socket.socket, socket.socket]:
    """A connected non-blocking loopback TCP pair (first end's receive buffer, second's send)."""
    if rcvbuf:
        # SO_RCVBUF must be set before connect(2) to size the window offered to
        # the peer (tcp(7)); conftest's pair is connected by the time we see it.
        with socket.create_server(("127.0.0.1", 0)) as listener:
            first = socket.socket()
            held.append(first)
            first.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            first.connect(listener.getsockname())
            second, _ = listener.accept()
            held.append(second)
    else:
        first, second = conftest.tcp_pair()
        held += [first, second]
    if sndbuf:
        second.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    first.setblocking(False)
    second.setblocking(False)
    return first, second


def unix_pair(held: list[socket.socket]) -> tuple[socket.socket, socket.socket]:
    """A non-blocking AF_UNIX stream socketpair."""
    first, second = socket.socketpair()
    held += [first, second]
    first.setblocking(False)
    second.setblocking(False)
    return first, second


# --- evidence that the kernel path carried the bytes ----------------------------


def record_sendfile(backend: ModuleType, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Wrap *backend*'s ``sendfile`` for the test; the returned list gets each call's count.

    Capability code looks the backend up at call time, so every sendfile the
    code under test makes (a server thread's included) goes through the wrapper.
    """
    counts: list[int] = []
    real = backend.sendfile

    def counting(*args: Any, **kwargs: Any) -> int:
        n: int = real(*args, **kwargs)
        counts.append(n)
        return n

    monkeypatch.setattr(backend, "sendfile", counting)
    return counts


# --- asyncio: peers ---------------------------------------------------------------


async def recv_all(sock: socket.socket) -> bytes:
    """Read *sock* until end of stream."""
    loop = asyncio.get_running_loop()
    chunks = []
    while data := await loop.sock_recv(sock, MiB):
        chunks.append(data)
    return b"".join(chunks)


def reset(sock: socket.socket) -> None:
    """Close *sock* with SO_LINGER 0: the peer gets a RST."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def registered(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> tuple[bool, bool]:
    """Whether a reader and a writer callback were left on *sock* (removes them).

    uvloop's remove_reader/remove_writer return None whatever they found, so
    there this can only say False.
    """
    fd = sock.fileno()
    return loop.remove_reader(fd) is True, loop.remove_writer(fd) is True


def make_file(tmp_path: Path, data: bytes, name: str = "src.bin") -> Path:
    """Write *data* to a file under *tmp_path*."""
    path = tmp_path / name
    path.write_bytes(data)
    return path


# --- the MSG_ZEROCOPY sender --------------------------------------------------------

THRESHOLD = 10 * KiB  # ZeroCopySender's default threshold


def sha(data: bytes | bytearray | memoryview) -> bytes:
    return hashlib.sha256(data).digest()


def wait_pollerr(sock: socket.socket, timeout: float = 5.0) -> bool:
    """Wait (without reading it) until the socket's error queue holds something."""
    poller = select.poll()
    poller.register(sock.fileno(), 0)
    return bool(poller.poll(int(timeout * 1000)))


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A connected loopback TCP pair (sender, receiver); the sender has a 60 s timeout."""
    a, b = conftest.tcp_pair()
    a.settimeout(60)
    with a, b:
        yield a, b


def msg_zerocopy(backend: ModuleType) -> bool:
    return "msg_zerocopy" in zerocopy._backend.features(backend)


@pytest.fixture
def cffi_backend(backend: ModuleType) -> ModuleType:
    """The cffi backend with MSG_ZEROCOPY working, or a skip saying why not."""
    if backend.NAME != "cffi":
        pytest.skip("needs the cffi backend (MSG_ZEROCOPY and the completion parser)")
    if not msg_zerocopy(backend):
        pytest.skip("this kernel refuses SO_ZEROCOPY")
    return backend
