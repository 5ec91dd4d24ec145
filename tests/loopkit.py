"""Every form of the transfers, as one fixture; and a fourth event loop, written for the tests.

:class:`TrioLoop` is trio used directly (no anyio): the one class a new
event loop needs (see docs/architecture.md, "Adding an event loop"), and
:data:`trio_forms` its public forms, each a few lines over the loop-free
cores (``_send_file.asyncloop.send``, ``_relay.asyncloop.relay_sockets``,
``AsyncZeroCopySender._loop``).  The ``form`` fixture runs a test on the
blocking forms, on asyncio, uvloop, anyio (asyncio and trio backends) and
on this adapter.
"""

from __future__ import annotations

import asyncio
import select
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
import pytest
import trio
import trio.lowlevel

import zerocopy
import zerocopy.aio
import zerocopy.anyio
from zerocopy._loop import Key, Loop
from zerocopy._msg_zerocopy.aio import AsyncZeroCopySender
from zerocopy._relay.asyncloop import relay_sockets
from zerocopy._relay.sides import check_distinct
from zerocopy._send_file.asyncloop import send
from zerocopy._send_file.common import check_params

T = TypeVar("T")

# --- a fourth event loop: trio, directly ------------------------------------------


class TrioWaiter:
    """A few ``(fd, event)`` keys through a private epoll set, waited for with trio."""

    def __init__(self) -> None:
        self.epoll = select.epoll()
        self.wanted: set[Key] = set()
        self.fired: set[Key] = set()

    def watch(self, wanted: set[Key]) -> None:
        masks: dict[int, int] = {}
        for fd, event in wanted:
            bit = {select.POLLIN: select.EPOLLIN, select.POLLOUT: select.EPOLLOUT}.get(event, 0)
            masks[fd] = masks.get(fd, 0) | bit
        old = {fd for fd, _ in self.wanted}
        for fd in old - masks.keys():
            self.epoll.unregister(fd)
        for fd, mask in masks.items():
            (self.epoll.modify if fd in old else self.epoll.register)(fd, mask)
        self.wanted = set(wanted)

    async def wait(self, timeout: float | None = None) -> None:
        with trio.move_on_after(float("inf") if timeout is None else timeout):
            await trio.lowlevel.wait_readable(self.epoll.fileno())
        trouble = select.EPOLLERR | select.EPOLLHUP
        for fd, events in self.epoll.poll(0):
            for event, bit in (
                (select.POLLIN, select.EPOLLIN),
                (select.POLLOUT, select.EPOLLOUT),
                (0, 0),
            ):
                if events & (bit | trouble) and (fd, event) in self.wanted:
                    self.fired.add((fd, event))

    def close(self) -> None:
        self.epoll.close()


class TrioLoop:
    """trio, as :class:`zerocopy._loop.Loop`: the whole of a new event loop's adapter."""

    shares_thread = True

    def now(self) -> float:
        return trio.current_time()

    async def checkpoint(self) -> None:
        await trio.lowlevel.checkpoint()

    async def sleep(self, seconds: float) -> None:
        await trio.sleep(seconds)

    def waiter(self) -> TrioWaiter:
        return TrioWaiter()

    async def in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        return await trio.to_thread.run_sync(fn, *args)

    def event(self) -> tuple[Awaitable[object], Callable[[], object]]:
        ev = trio.Event()
        return ev.wait(), ev.set


# Its public forms: what a zerocopy.trio module would re-export.


async def trio_send_file(
    sock: socket.socket, file: Any, offset: int = 0, count: int | None = None
) -> int:
    check_params(sock, file, offset, count)
    return await send(sock, TrioLoop(), file, offset, count)


async def trio_relay(
    a: socket.socket, b: socket.socket, *, timeout: float | None = None
) -> tuple[int, int]:
    check_distinct(a, b)
    return await relay_sockets(TrioLoop(), a, b, timeout)


class TrioZeroCopySender(AsyncZeroCopySender):
    def _loop(self) -> Loop:
        return TrioLoop()


# --- the forms ------------------------------------------------------------------


@dataclass(frozen=True)
class Form:
    """One way to run the transfers: its calls, and how to run a coroutine function."""

    name: str
    #: Sockets the form works on are blocking (the blocking forms) or not.
    blocking: bool
    send_file: Callable[..., Any]
    relay: Callable[..., Any]
    sender: type
    #: Run ``fn()`` to completion (an async function for the async forms).
    run: Callable[[Callable[[], Any]], Any]
    #: How a cancellation shows, inside the cancelled call.
    cancelled: type[BaseException] | tuple[type[BaseException], ...]
    #: A context manager that cancels what runs in it after *s* seconds (async forms).
    cancel_after: Callable[[float], Any] | None = None


def _run_asyncio(fn: Callable[[], Any], factory: Any = None) -> Any:
    with asyncio.Runner(loop_factory=factory) as r:
        return r.run(asyncio.wait_for(fn(), 60))


def _run_anyio(backend: str) -> Callable[[Callable[[], Any]], Any]:
    def run(fn: Callable[[], Any]) -> Any:
        async def capped() -> Any:
            with anyio.fail_after(60):
                return await fn()

        return anyio.run(capped, backend=backend)

    return run


def _run_trio(fn: Callable[[], Any]) -> Any:
    async def capped() -> Any:
        with trio.fail_after(60):
            return await fn()

    return trio.run(capped)


def _uvloop_factory() -> Any:
    try:
        import uvloop
    except ImportError:
        pytest.skip("uvloop is not installed (pip install uvloop to test with it)")
    return uvloop.new_event_loop


def _make(name: str) -> Form:
    aio = zerocopy.aio
    anyio_ = zerocopy.anyio
    if name == "blocking":
        return Form(
            name,
            True,
            zerocopy.send_file,
            zerocopy.relay,
            zerocopy.ZeroCopySender,
            lambda fn: fn(),
            (),
        )
    if name in ("asyncio", "uvloop"):
        factory = _uvloop_factory() if name == "uvloop" else None
        return Form(
            name,
            False,
            aio.send_file,
            aio.relay,
            aio.AsyncZeroCopySender,
            lambda fn: _run_asyncio(fn, factory),
            asyncio.CancelledError,
            anyio.move_on_after,  # anyio's scopes work on any asyncio loop
        )
    if name.startswith("anyio-"):
        backend = name.removeprefix("anyio-")
        return Form(
            name,
            False,
            anyio_.send_file,
            anyio_.relay,
            anyio_.AsyncZeroCopySender,
            _run_anyio(backend),
            asyncio.CancelledError if backend == "asyncio" else trio.Cancelled,
            anyio.move_on_after,
        )
    assert name == "trio (test adapter)"
    return Form(
        name,
        False,
        trio_send_file,
        trio_relay,
        TrioZeroCopySender,
        _run_trio,
        trio.Cancelled,
        trio.move_on_after,
    )


FORMS = ["blocking", "asyncio", "uvloop", "anyio-asyncio", "anyio-trio", "trio (test adapter)"]


@pytest.fixture(params=FORMS)
def form(request: pytest.FixtureRequest) -> Form:
    """Each form of the transfers in turn (see :data:`FORMS`)."""
    return _make(request.param)
