"""What a transfer needs of an event loop: the one protocol every async form runs on.

The async transfers (``send_file``, ``relay``, the MSG_ZEROCOPY sender) are
written once, against :class:`Loop`; an event loop is one small class that
implements it:

- ``_aiowait.AsyncioLoop``: asyncio's loops, uvloop included (the loop's
  ``add_reader``/``add_writer`` callbacks, futures, ``asyncio.to_thread``);
- ``_anyiowait.AnyioLoop``: anyio on asyncio or trio (a private epoll set
  waited for with ``anyio.wait_readable``, ``anyio.Event``, anyio's worker
  threads).

A fourth event loop is a fifth class of six methods and a module of public
forms that pass it in (see docs/architecture.md, "Adding an event loop";
``tests/loopkit.py`` holds one that runs the send, relay and sender suites).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

__all__ = ["Key", "KeyWaiter", "Loop"]

#: ``(fd, select.POLLIN)`` or ``(fd, select.POLLOUT)``.
Key = tuple[int, int]

T = TypeVar("T")


class KeyWaiter(Protocol):
    """Readiness of a few ``(fd, event)`` keys, one transfer's, until :meth:`close`.

    Registrations persist across waits and change only when :meth:`watch`
    asks for another set.  An error or hang-up on an fd fires the keys of
    both events that are watched on it (the next call reports it).
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
