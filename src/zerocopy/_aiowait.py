"""asyncio's implementation of the loop protocol (uvloop included).

:class:`AsyncioLoop` is what the asyncio forms of send_file, relay and the
zero-copy sender run on (see :mod:`zerocopy._loop`): the loop's
``add_reader``/``add_writer`` callbacks tell a transfer when a non-blocking
call is worth trying again.
"""

from __future__ import annotations

import asyncio
import select
import ssl
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from ._loop import Key

__all__ = ["AsyncioLoop", "Key", "Waiter", "check_nonblocking_socket"]

T = TypeVar("T")


def check_nonblocking_socket(sock: Any, name: str) -> None:
    """Refuse a TLS socket (TypeError) or a blocking one (ValueError), as the loop's sock_* do."""
    if isinstance(sock, ssl.SSLSocket):
        # The kernel would put plaintext on a TLS connection; asyncio's sock_*
        # methods refuse SSL sockets with TypeError too.
        raise TypeError(f"{name} must not be an ssl.SSLSocket")
    if sock.gettimeout() != 0.0:
        raise ValueError(f"{name} must be non-blocking (sock.setblocking(False))")


class Waiter:
    """Readiness of a few ``(fd, event)`` pairs, through the loop's reader and writer callbacks.

    Registrations persist across waits and change only when what is wanted
    changes (each change is an ``epoll_ctl``).  asyncio allows one reader and
    one writer per fd; keys are ``(fd, event)`` pairs in a set, so a second
    reader on one fd cannot happen.

    An ``(fd, 0)`` key asks for errors and hang-ups only.  The loop has no
    such registration (a socket at end of stream is readable for good, and a
    reader on it would fire on every turn), so those fds go into a private
    epoll set with no events asked, which reports only errors and hang-ups,
    and the loop watches that set's own fd, readable while it has one.
    """

    __slots__ = ("errors", "fired", "future", "loop", "registered")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.registered: set[Key] = set()
        self.fired: set[Key] = set()
        self.future: asyncio.Future[None] | None = None
        self.errors: select.epoll | None = None  # the fds of (fd, 0) keys, made on first need

    def _wake(self, key: Key | None) -> None:
        if key is not None:
            self.fired.add(key)
        fut = self.future
        if fut is not None and not fut.done():
            fut.set_result(None)

    def _wake_errors(self) -> None:
        assert self.errors is not None
        for fd, _ in self.errors.poll(0):
            self.fired.add((fd, 0))
        self._wake(None)

    def _error_keys(self) -> bool:
        return any(event == 0 for _, event in self.registered)

    def watch(self, wanted: set[Key]) -> None:
        """Register exactly the keys in *wanted*."""
        for key in self.registered - wanted:
            self._remove(key)
        for key in wanted - self.registered:
            fd, event = key
            if event == select.POLLIN:
                self.loop.add_reader(fd, self._wake, key)
            elif event == select.POLLOUT:
                self.loop.add_writer(fd, self._wake, key)
            else:
                if self.errors is None:
                    self.errors = select.epoll()
                if not self._error_keys():
                    self.loop.add_reader(self.errors.fileno(), self._wake_errors)
                self.errors.register(fd, 0)  # EPOLLERR and EPOLLHUP come anyway
            self.registered.add(key)

    def _remove(self, key: Key) -> None:
        self.registered.discard(key)
        fd, event = key
        if event == select.POLLIN:
            self.loop.remove_reader(fd)
        elif event == select.POLLOUT:
            self.loop.remove_writer(fd)
        else:
            assert self.errors is not None
            self.errors.unregister(fd)
            if not self._error_keys():
                self.loop.remove_reader(self.errors.fileno())

    async def wait(self, timeout: float | None = None) -> None:
        """Return when a watched key fires (or after *timeout* seconds)."""
        self.future = fut = self.loop.create_future()
        timer = None if timeout is None else self.loop.call_later(timeout, self._wake, None)
        try:
            await fut
        finally:
            self.future = None
            if timer is not None:
                timer.cancel()

    def close(self) -> None:
        """Remove every callback this waiter added; close its epoll set."""
        for key in list(self.registered):
            self._remove(key)
        if self.errors is not None:
            self.errors.close()
            self.errors = None


class AsyncioLoop:
    """The running asyncio loop (or uvloop), as :class:`zerocopy._loop.Loop`."""

    __slots__ = ("loop",)
    shares_thread = True

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.loop = asyncio.get_running_loop() if loop is None else loop

    def now(self) -> float:
        return self.loop.time()

    async def checkpoint(self) -> None:
        await asyncio.sleep(0)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def waiter(self) -> Waiter:
        return Waiter(self.loop)

    async def in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(fn, *args)

    def event(self) -> tuple[Awaitable[object], Callable[[], object]]:
        fut = self.loop.create_future()

        def wake() -> None:
            if not fut.done():  # cancelled meanwhile, or woken twice
                fut.set_result(None)

        return fut, wake
