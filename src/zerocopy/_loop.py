"""What a transfer needs of an event loop: the one protocol every async form runs on.

The async transfers (``send_file``, ``relay``, the MSG_ZEROCOPY sender) are
written once, against :class:`Loop`; an event loop is one small class that
implements it:

- ``_aiowait.AsyncioLoop``: asyncio's loops, uvloop included (the loop's
  ``add_reader``/``add_writer`` callbacks, futures, ``asyncio.to_thread``);
- ``_anyiowait.AnyioLoop``: anyio on asyncio or trio (a private epoll set
  waited for with ``anyio.wait_readable``, ``anyio.Event``, anyio's worker
  threads).

:class:`BlockingLoop` runs the same code in the caller's thread, waiting with
``poll()``: :func:`run_blocking` drives a transfer written for a loop to its
end without an event loop (the threaded relay is the async relay's rounds).

A fourth event loop is one more class of six methods and a module of public
forms that pass it in (see docs/architecture.md, "Adding an event loop";
``tests/loopkit.py`` holds one that runs the send, relay and sender suites).
"""

from __future__ import annotations

import math
import select
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol, TypeVar

from ._args import poll_ms
from ._constants import POLLIN, POLLOUT

__all__ = ["BlockingLoop", "Key", "KeyWaiter", "Loop", "run_blocking", "wait_key"]

#: ``(fd, select.POLLIN)``, ``(fd, select.POLLOUT)``, or ``(fd, 0)``: errors only.
Key = tuple[int, int]

T = TypeVar("T")


class KeyWaiter(Protocol):
    """Readiness of a few ``(fd, event)`` keys, one transfer's, until :meth:`close`.

    *event* is ``select.POLLIN``, ``select.POLLOUT``, or 0 for errors and
    hang-ups only (a relay's side whose direction ended, readable for good).
    Registrations persist across waits and change only when :meth:`watch`
    asks for another set.  An error or hang-up on an fd fires every key
    watched on it (the next call reports it).
    """

    #: The keys that fired since the caller last cleared this set.
    fired: set[Key]

    def watch(self, wanted: set[Key]) -> None:
        """Watch exactly the keys in *wanted*."""

    async def wait(self, timeout: float | None = None) -> None:
        """Return when a watched key fires, or after *timeout* seconds."""

    def close(self) -> None:
        """Drop every registration (no wait is pending by then)."""


class Loop(Protocol):
    """The event loop a transfer runs on."""

    #: Whether other tasks share the transfer's thread (False: BlockingLoop,
    #: where the fairness rule has nobody to let go first).
    shares_thread: bool

    def now(self) -> float:
        """The loop's monotonic clock, in seconds."""

    async def checkpoint(self) -> None:
        """Let the other ready tasks run once (and a cancellation in)."""

    async def sleep(self, seconds: float) -> None:
        """Sleep on the loop."""

    def waiter(self) -> KeyWaiter:
        """A new waiter for fd readiness; the caller closes it."""

    async def in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` in a worker thread; return its result."""

    def event(self) -> tuple[Awaitable[object], Callable[[], object]]:
        """Something to await, and the call (safe to repeat) that ends the wait."""


async def wait_key(waiter: KeyWaiter, key: Key, timeout: float | None = None) -> bool:
    """Wait for one key (it stays watched); True if it fired, False on *timeout*."""
    waiter.watch({key})
    waiter.fired.clear()
    await waiter.wait(timeout)
    return key in waiter.fired


# --- no event loop: the caller's thread, waiting with poll() ------------------


class PollWaiter:
    """:class:`KeyWaiter` over ``select.poll()``: the wait blocks the thread."""

    __slots__ = ("fired", "poller", "registered", "wanted")

    def __init__(self) -> None:
        self.poller = select.poll()
        self.registered: dict[int, int] = {}  # fd -> poll events
        self.wanted: set[Key] = set()
        self.fired: set[Key] = set()

    def watch(self, wanted: set[Key]) -> None:
        masks: dict[int, int] = {}
        for fd, event in wanted:
            masks[fd] = masks.get(fd, 0) | event
        for fd in [fd for fd in self.registered if fd not in masks]:
            self.poller.unregister(fd)
            del self.registered[fd]
        for fd, mask in masks.items():
            if self.registered.get(fd) != mask:
                self.poller.register(fd, mask)  # register() also modifies
                self.registered[fd] = mask
        self.wanted = set(wanted)

    async def wait(self, timeout: float | None = None) -> None:
        trouble = select.POLLERR | select.POLLHUP | select.POLLNVAL
        for fd, revents in self.poller.poll(poll_ms(timeout)):
            # An error or hang-up is news for every key of the fd: the next step sees it.
            for event in (select.POLLIN, select.POLLOUT, 0):
                if revents & (event | trouble) and (fd, event) in self.wanted:
                    self.fired.add((fd, event))

    def close(self) -> None:
        self.registered.clear()


class SelectWaiter:
    """:class:`KeyWaiter` over ``select.select()``, where there is no ``poll()`` (Windows).

    An errors-only key ``(fd, 0)`` watches the fd's exceptional condition,
    which is all select() says of errors; a reset there shows when the
    other keys' next step fails.
    """

    __slots__ = ("fired", "wanted")

    def __init__(self) -> None:
        self.wanted: set[Key] = set()
        self.fired: set[Key] = set()

    def watch(self, wanted: set[Key]) -> None:
        self.wanted = set(wanted)

    async def wait(self, timeout: float | None = None) -> None:
        readers = [fd for fd, event in self.wanted if event == POLLIN]
        writers = [fd for fd, event in self.wanted if event == POLLOUT]
        errors = [fd for fd, _ in self.wanted]
        wait = None if timeout is None or timeout == math.inf else max(timeout, 0.0)
        r, w, x = select.select(readers, writers, errors, wait)
        for fd in x:
            self.fired.update(key for key in self.wanted if key[0] == fd)
        self.fired.update((fd, POLLIN) for fd in r)
        self.fired.update((fd, POLLOUT) for fd in w)

    def close(self) -> None:
        self.wanted.clear()


class BlockingLoop:
    """No event loop: the caller's thread, as :class:`Loop` (see :func:`run_blocking`).

    Nothing else runs on it, so a checkpoint and a busy transfer's turn in
    line (the fairness rule) cost nothing and return at once.
    """

    __slots__ = ()
    shares_thread = False

    def now(self) -> float:
        return time.monotonic()

    async def checkpoint(self) -> None:
        pass

    async def sleep(self, seconds: float) -> None:
        # Driven by run_blocking in the caller's thread: blocking is the point.
        time.sleep(seconds)  # noqa: ASYNC251

    def waiter(self) -> PollWaiter | SelectWaiter:
        # Windows has no poll(): select() there, for the few fds of one transfer.
        return PollWaiter() if hasattr(select, "poll") else SelectWaiter()

    async def in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        return fn(*args)

    def event(self) -> tuple[Awaitable[object], Callable[[], object]]:
        raise RuntimeError("a blocking transfer never waits in line")  # see _fair.Turn.pause


def run_blocking(coro: Coroutine[Any, Any, T]) -> T:
    """Run a transfer written for a :class:`Loop`, on :class:`BlockingLoop`, to its end."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coro.close()
    raise RuntimeError("a transfer on BlockingLoop waited for an event loop")
