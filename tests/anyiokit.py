"""Support for the anyio tests: a runner per anyio backend, socket ends, peers, counters.

Each test runs its coroutine with ``anyio.run`` on a fresh event loop of the
backend under test (asyncio or trio), inside a 30 s ``fail_after``, so that a
loop's own fds are opened and closed within the test (leak checks compare
like with like) and nothing can hang.
"""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Awaitable, Callable
from types import ModuleType
from typing import Any

import anyio
import anyio.abc
import pytest

from netkit import MiB, tcp_pair, unix_pair

Run = Callable[..., Any]


@pytest.fixture(scope="session")
def uvloop_warmed() -> None:
    """Run one uvloop loop, so that the process-wide fds uvloop opens on first use exist.

    Session-scoped, so before any no_leaks fixture takes its census.
    """
    anyio.run(anyio.sleep, 0, backend="asyncio", backend_options={"use_uvloop": True})


@pytest.fixture(params=["asyncio", "uvloop", "trio"])
def arun(request: pytest.FixtureRequest, uvloop_warmed: None) -> Run:
    """Run ``fn(*args)`` to completion on a fresh loop of the anyio backend under test.

    ``uvloop`` is anyio's asyncio backend on a uvloop loop (its transports differ).
    """
    name = request.param
    options = {"use_uvloop": name == "uvloop"} if name != "trio" else {}

    def runner(fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        async def capped() -> Any:
            with anyio.fail_after(30):
                return await fn(*args)

        backend = "trio" if name == "trio" else "asyncio"
        return anyio.run(capped, backend=backend, backend_options=options)

    runner.backend = name  # type: ignore[attr-defined]
    return runner


async def as_stream(sock: socket.socket) -> anyio.abc.SocketStream:
    """Wrap *sock* (which the stream then owns) in an anyio SocketStream of its family."""
    if sock.family == socket.AF_UNIX:
        return await anyio.abc.UNIXSocketStream.from_socket(sock)
    return await anyio.abc.SocketStream.from_socket(sock)


def pair(kind: str, held: list[socket.socket]) -> tuple[socket.socket, socket.socket]:
    """A non-blocking connected pair: ``tcp`` or ``unix`` (sockets closed after the test)."""
    return tcp_pair(held) if kind == "tcp" else unix_pair(held)


async def end_for(kind: str, sock: socket.socket) -> Any:
    """*sock* itself (``raw``) or an anyio stream over a duplicate of it (``stream``).

    The duplicate keeps the test's socket list the owner of *sock*: the stream
    closes only its own fd.
    """
    if kind == "raw":
        return sock
    return await as_stream(sock.dup())


async def aclose(end: Any) -> None:
    """Close an end made by :func:`end_for` (a raw socket stays with the test)."""
    if isinstance(end, anyio.abc.AsyncResource):
        await end.aclose()


async def recv_digest(sock: socket.socket, limit: int | None = None) -> tuple[int, str]:
    """Read *sock* until end of stream (or *limit* bytes); count and SHA-256 of the bytes."""
    h = hashlib.sha256()
    n = 0
    buf = bytearray(MiB)
    while limit is None or n < limit:
        want = len(buf) if limit is None else min(len(buf), limit - n)
        try:
            k = sock.recv_into(buf, want)
        except BlockingIOError:
            await anyio.wait_readable(sock)
            continue
        if not k:
            break
        h.update(memoryview(buf)[:k])
        n += k
    return n, h.hexdigest()


async def recv_all(sock: socket.socket) -> bytes:
    """Read *sock* until end of stream."""
    chunks = []
    while True:
        try:
            data = sock.recv(MiB)
        except BlockingIOError:
            await anyio.wait_readable(sock)
            continue
        if not data:
            return b"".join(chunks)
        chunks.append(data)


async def send_all(sock: socket.socket, data: bytes) -> None:
    """Write all of *data* to non-blocking *sock*."""
    view = memoryview(data)
    while view:
        try:
            view = view[sock.send(view) :]
        except BlockingIOError:
            await anyio.wait_writable(sock)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Counter:
    """Counts the calls of one backend function and the bytes they report moved."""

    def __init__(self) -> None:
        self.calls = 0
        self.moved = 0


@pytest.fixture
def sendfile_counter(backend: ModuleType, monkeypatch: pytest.MonkeyPatch) -> Counter:
    """Wrap the current backend's ``sendfile``: calls and the bytes they sent."""
    counter = Counter()
    real = backend.sendfile

    def counting(*args: Any) -> Any:
        counter.calls += 1
        n = real(*args)
        counter.moved += n
        return n

    monkeypatch.setattr(backend, "sendfile", counting)
    return counter


@pytest.fixture
def splice_counter(backend: ModuleType, monkeypatch: pytest.MonkeyPatch) -> Counter:
    """Wrap the current backend's ``relay_step`` (its splices): calls and bytes delivered.

    The relay runs its own rounds here (``hub.ENGINE = "rounds"``): on a hub
    the C pump calls ``zc_relay_step`` directly, where no Python wrapper can
    count; tests/test_relay_hub.py checks the hub's splices its own way.
    """
    from zerocopy._relay import hub

    monkeypatch.setattr(hub, "ENGINE", "rounds")
    counter = Counter()
    real = backend.relay_step

    def counting(*args: Any) -> Any:
        state = args[-1]
        before = state.delivered
        counter.calls += 1
        try:
            return real(*args)
        finally:
            counter.moved += state.delivered - before

    monkeypatch.setattr(backend, "relay_step", counting)
    return counter
