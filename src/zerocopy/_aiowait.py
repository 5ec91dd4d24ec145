"""asyncio's implementation of the loop protocol (uvloop included), and the relay's error watch.

:class:`AsyncioLoop` is what the asyncio forms of send_file, relay and the
zero-copy sender run on (see :mod:`zerocopy._loop`): the loop's
``add_reader``/``add_writer`` callbacks tell a transfer when a non-blocking
call is worth trying again.
"""

from __future__ import annotations

import asyncio
import select
import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from ._errors import oserror
from ._loop import Key

__all__ = ["AsyncioLoop", "ErrorWatch", "Key", "Waiter", "check_nonblocking_socket"]

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
    """

    __slots__ = ("fired", "future", "loop", "registered")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.registered: set[Key] = set()
        self.fired: set[Key] = set()
        self.future: asyncio.Future[None] | None = None

    def _wake(self, key: Key | None) -> None:
        if key is not None:
            self.fired.add(key)
        fut = self.future
        if fut is not None and not fut.done():
            fut.set_result(None)

    def watch(self, wanted: set[Key]) -> None:
        """Register exactly the keys in *wanted*."""
        for key in self.registered - wanted:
            self._remove(key)
        for key in wanted - self.registered:
            fd, event = key
            if event == select.POLLIN:
                self.loop.add_reader(fd, self._wake, key)
            else:
                self.loop.add_writer(fd, self._wake, key)
            self.registered.add(key)

    def _remove(self, key: Key) -> None:
        self.registered.discard(key)
        fd, event = key
        if event == select.POLLIN:
            self.loop.remove_reader(fd)
        else:
            self.loop.remove_writer(fd)

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
        """Remove every callback this waiter added."""
        for key in list(self.registered):
            self._remove(key)


class ErrorWatch:
    """Errors on the socket of a relay direction that has ended, without reading it.

    That socket is at end of stream, hence readable for good: a reader on it
    would fire on every round.  So it goes alone into a private epoll set
    with no events asked, which reports only errors and hang-ups, and the
    loop watches that set's own fd, readable while it has one to report.
    """

    __slots__ = ("epoll", "hung_up", "sock")

    def __init__(self) -> None:
        self.epoll: select.epoll | None = None
        self.sock: socket.socket | None = None  # the one watched now
        self.hung_up: set[int] = set()

    @property
    def key(self) -> Key | None:
        """The waiter key of the epoll set while a socket is watched, else None."""
        if self.epoll is None or self.sock is None:
            return None
        return (self.epoll.fileno(), select.POLLIN)

    def watch(self, sock: socket.socket | None) -> None:
        """Watch *sock* (None: nothing), unless it already showed a hang-up."""
        if sock is not None and sock.fileno() in self.hung_up:
            sock = None
        if sock is self.sock:
            return
        if self.epoll is None:
            self.epoll = select.epoll()
        if self.sock is not None:
            self.epoll.unregister(self.sock.fileno())
        if sock is not None:
            self.epoll.register(sock.fileno(), 0)  # EPOLLERR and EPOLLHUP come anyway
        self.sock = sock

    def check(self) -> None:
        """Raise the watched socket's pending error; stop watching a mere hang-up."""
        if self.epoll is None or self.sock is None or not self.epoll.poll(0):
            return
        err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            raise oserror(err, "relay")
        # A hang-up alone (or an error a step already took) is reported on
        # every poll: watching on would wake the loop for ever.
        self.hung_up.add(self.sock.fileno())
        self.watch(None)

    def close(self) -> None:
        """Close the epoll set (after the loop stopped watching its fd)."""
        self.sock = None
        if self.epoll is not None:
            self.epoll.close()
            self.epoll = None


class AsyncioLoop:
    """The running asyncio loop (or uvloop), as :class:`zerocopy._loop.Loop`."""

    __slots__ = ("loop",)

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
