"""Waiting under anyio (on its asyncio and trio backends), and the sockets behind anyio streams.

Used by the anyio forms of send_file and relay; imported only by
:mod:`zerocopy.anyio`, so ``import zerocopy`` never imports anyio.

Readiness comes from ``anyio.wait_readable`` / ``anyio.wait_writable``
(anyio 4.7 and later; the ``wait_socket_*`` forms before them are
deprecated).  A relay waits for up to three ``(fd, event)`` keys at once;
rather than a task per key, the keys go into a private epoll set and the
task waits once, for that set's fd to become readable (Linux reports an
epoll fd readable while it has events ready), on either backend.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.metadata
import os
import select
import socket
import warnings
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import anyio.abc
import anyio.lowlevel
import anyio.to_thread

from . import _compat, _integrations
from ._aiostream import BorrowedSocket
from ._aiowait import check_nonblocking_socket
from ._compat import anyio_take_read_ahead, anyio_transport
from ._integrations import IntegrationFallbackWarning, UntestedVersionWarning
from ._loop import Key

__all__ = [
    "STREAM_HOOKS",
    "SUPPORTED",
    "AnyioLoop",
    "EpollWaiter",
    "StreamSocket",
    "by_stream",
    "check_version",
]

#: The anyio releases this module was tested with (what the ``anyio`` extra
#: asks for): 4.7 brought ``wait_readable`` and ``wait_writable``.  Tested:
#: 4.16.0, and 4.7.0 for raw sockets and connect_tcp/listener streams.
SUPPORTED = "anyio>=4.7,<5"
_TESTED = "anyio 4.7 to 4.16"


def _version() -> str:
    try:
        return importlib.metadata.version("anyio")
    except importlib.metadata.PackageNotFoundError:  # a vendored copy: judge by its API
        return "4.7" if hasattr(anyio, "wait_readable") else "0"


def check_version() -> bool:
    """Check the installed anyio at import; whether its asyncio TCP streams get zero-copy.

    As the framework integrations (:mod:`zerocopy._integrations`): an anyio
    outside 4.7 to 4.x whose hooks are all there runs, with one
    :class:`zerocopy.UntestedVersionWarning`; one without the private
    attributes of its asyncio TCP stream (:func:`zerocopy._compat.anyio_missing_hooks`)
    warns :class:`zerocopy.IntegrationFallbackWarning` and returns False:
    files then go to such streams through the stream's own ``send`` and
    :func:`zerocopy.anyio.relay` refuses them, while raw sockets, trio's and
    UNIX streams keep zero-copy.  Only an anyio without the public
    ``wait_readable``/``wait_writable`` raises ImportError: nothing here can
    wait without them.
    """
    version = _version()
    absent = [
        n for n in ("wait_readable", "wait_writable") if not callable(getattr(anyio, n, None))
    ]
    if absent:
        raise ImportError(
            f"zerocopy.anyio needs anyio.{' and anyio.'.join(absent)} ({SUPPORTED}),"
            f" which anyio {version} lacks"
        )
    try:
        backend = importlib.import_module("anyio._backends._asyncio")
    except ImportError:
        backend = None
    missing = _compat.anyio_missing_hooks(backend)
    if missing:
        warnings.warn(
            f"zerocopy.anyio: zero-copy is off for anyio's asyncio TCP streams (send_file"
            f" sends through the stream's own send(), relay refuses them): anyio {version}"
            f" lacks {', '.join(missing)} (tested: {_TESTED}); raw sockets, trio and UNIX"
            " streams keep zero-copy",
            IntegrationFallbackWarning,
            stacklevel=2,
        )
    elif not (4, 7) <= (_integrations.major_minor(version) or (0, 0)) < (5, 0):
        warnings.warn(
            f"zerocopy.anyio is untested with anyio {version} (tested: {_TESTED});"
            " the hooks it needs are all there, so it runs with zero-copy",
            UntestedVersionWarning,
            stacklevel=2,
        )
    return not missing


#: Whether anyio's asyncio TCP streams get zero-copy (see :func:`check_version`).
STREAM_HOOKS = check_version()

T = TypeVar("T")
_IN = select.EPOLLIN
_OUT = select.EPOLLOUT
_TROUBLE = select.EPOLLERR | select.EPOLLHUP


def by_stream(obj: object) -> bool:
    """Whether files go to *obj* through its own ``send()``: see :func:`check_version`."""
    return not STREAM_HOOKS and _compat.anyio_is_asyncio_tcp(obj)


class StreamSocket:
    """The ``socket.socket`` a transfer works on, for a raw socket or an anyio SocketStream.

    A raw socket is used as it is.  A stream's socket belongs to the stream:
    the transfer works on a duplicate of its fd, closed by :meth:`close`, so
    that our waits never meet the stream's own (anyio allows one waiter per
    fd and direction, asyncio one reader and one writer).  Both refer to one
    socket: a shutdown of the duplicate is a shutdown of the stream's socket.

    anyio's asyncio TCP stream sits on an asyncio transport (asyncio's or
    uvloop's), which is lent the way :mod:`zerocopy.aio` lends one (see
    ``_aiostream.BorrowedSocket``): its reading paused until :meth:`close`,
    and what it buffers for writing sent first (:meth:`drain`).  The
    transport is the stream's private ``_transport``
    (:func:`zerocopy._compat.anyio_transport`).  trio's streams and anyio's UNIX streams read and
    write their socket directly, only when asked: nothing to pause or drain.
    """

    __slots__ = ("borrowed", "owned", "sock", "stream")

    def __init__(self, obj: Any, name: str) -> None:
        self.stream: anyio.abc.SocketStream | None = None
        self.borrowed: BorrowedSocket | None = None
        self.owned = False
        if isinstance(obj, socket.socket):
            if obj.type != socket.SOCK_STREAM:
                raise ValueError(f"{name} must be a SOCK_STREAM socket")
            check_nonblocking_socket(obj, name)
            self.sock = obj
            return
        if not isinstance(obj, anyio.abc.SocketStream):
            # A TLSStream is a ByteStream over a SocketStream, not one: the
            # kernel would put plaintext on the TLS connection.
            raise TypeError(
                f"{name} must be a socket.socket or an anyio SocketStream, not {type(obj).__name__}"
            )
        if by_stream(obj):
            raise TypeError(
                f"{name}: this anyio's asyncio SocketStream lacks what zerocopy needs to pause"
                " its reading (see the IntegrationFallbackWarning at import); relay it with"
                " its own receive() and send()"
            )
        self.stream = obj
        transport = anyio_transport(obj)
        if transport is not None:
            # Checked (TLS, datagram: TypeError; closing: ValueError), then lent.
            self.borrowed = BorrowedSocket.check(transport, name)
            self.sock = self.borrowed.lend()
            return
        try:
            raw = obj.extra(anyio.abc.SocketAttribute.raw_socket, None)
            fd = -1 if raw is None else raw.fileno()
        except (AttributeError, OSError, anyio.ClosedResourceError):
            fd = -1  # anyio's attribute table can trip over a closed socket
        if fd < 0:
            raise ValueError(f"{name} is closed")
        dup = socket.socket(fileno=os.dup(fd))  # non-inheritable, as every fd Python makes
        if dup.type != socket.SOCK_STREAM:
            dup.close()
            raise ValueError(f"{name} must be a SOCK_STREAM socket")
        # The stream's socket is non-blocking already (the flag is the open
        # file's): this tells the socket object, for its timeout.
        dup.setblocking(False)
        self.sock = dup
        self.owned = True

    def take_read_ahead(self) -> bytes:
        """Take what the stream read from its socket but has not handed out (relay only).

        Only anyio's asyncio TCP stream holds any: ``receive(max_bytes)``
        keeps the rest of a larger chunk in its protocol's private
        ``read_queue`` (:func:`zerocopy._compat.anyio_take_read_ahead`), and
        a stream made by ``SocketStream.from_socket`` reads on its own until
        its reading is paused.  Those bytes come before any still in the
        socket.  Call after the constructor paused the reading.
        """
        return anyio_take_read_ahead(self.stream)

    async def drain(self) -> None:
        """Wait until what the stream's transport buffers has gone out.

        anyio's ``send()`` waits for that buffer to empty, but a *cancelled*
        ``send()`` leaves its bytes there, and bytes sent on the socket
        directly would overtake them.
        """
        if self.borrowed is not None:
            await self.borrowed.drain(asyncio.get_running_loop())

    def close(self) -> None:
        """Close the duplicate; resume the transport's reading if it was on."""
        if self.borrowed is not None:
            self.borrowed.give_back()
            self.borrowed = None
        elif self.owned:
            self.owned = False
            self.sock.close()


class EpollWaiter:
    """Readiness of a few ``(fd, event)`` keys, waited for with anyio.

    One key is waited for directly (``anyio.wait_readable`` or
    ``wait_writable``).  Several (a relay's) go into a private epoll set,
    made on first need, and the task waits once, for that set's fd;
    registrations there change only when what is wanted changes (each change
    is an ``epoll_ctl``).  :attr:`fired` holds the keys that fired.
    """

    __slots__ = ("epoll", "fired", "registered", "wanted")

    def __init__(self) -> None:
        self.epoll: select.epoll | None = None
        self.registered: dict[int, int] = {}  # fd -> epoll event mask
        self.wanted: set[Key] = set()
        self.fired: set[Key] = set()

    def watch(self, wanted: set[Key]) -> None:
        """Watch exactly the keys in *wanted*."""
        self.wanted = set(wanted)

    async def wait(self, timeout: float | None = None) -> None:
        """Return when a watched key fires (or after *timeout* seconds)."""
        if len(self.wanted) == 1 and not self.registered and next(iter(self.wanted))[1]:
            ((fd, event),) = self.wanted
            wait = anyio.wait_readable if event == select.POLLIN else anyio.wait_writable
            with anyio.move_on_after(timeout) as scope:
                await wait(fd)
            if not scope.cancelled_caught:
                self.fired.add((fd, event))
            return
        epoll = self._sync()
        with anyio.move_on_after(timeout):
            await anyio.wait_readable(epoll.fileno())
        for fd, events in epoll.poll(0):
            # An error or hang-up is news for both events: the next step sees it.
            if events & (_IN | _TROUBLE) and (fd, select.POLLIN) in self.wanted:
                self.fired.add((fd, select.POLLIN))
            if events & (_OUT | _TROUBLE) and (fd, select.POLLOUT) in self.wanted:
                self.fired.add((fd, select.POLLOUT))
            if events & _TROUBLE and (fd, 0) in self.wanted:
                self.fired.add((fd, 0))

    def _sync(self) -> select.epoll:
        """The epoll set, registered with exactly what is wanted."""
        if self.epoll is None:
            self.epoll = select.epoll()
        masks: dict[int, int] = {}
        for fd, event in self.wanted:
            bit = _IN if event == select.POLLIN else _OUT if event == select.POLLOUT else 0
            masks[fd] = masks.get(fd, 0) | bit  # 0 alone: errors and hang-ups only
        for fd in [fd for fd in self.registered if fd not in masks]:
            self.epoll.unregister(fd)
            del self.registered[fd]
        for fd, mask in masks.items():
            old = self.registered.get(fd)
            if old is None:
                self.epoll.register(fd, mask)
            elif old != mask:
                self.epoll.modify(fd, mask)
            self.registered[fd] = mask
        return self.epoll

    def close(self) -> None:
        """Close the epoll set, if one was made (no wait is pending on it by then)."""
        self.registered.clear()
        if self.epoll is not None:
            self.epoll.close()
            self.epoll = None


class AnyioLoop:
    """anyio's running backend (asyncio or trio), as :class:`zerocopy._loop.Loop`."""

    __slots__ = ()
    shares_thread = True

    def now(self) -> float:
        return anyio.current_time()

    async def checkpoint(self) -> None:
        await anyio.lowlevel.checkpoint()

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)

    def waiter(self) -> EpollWaiter:
        return EpollWaiter()

    async def in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        return await anyio.to_thread.run_sync(fn, *args)

    def event(self) -> tuple[Awaitable[object], Callable[[], object]]:
        ev = anyio.Event()
        return ev.wait(), ev.set
