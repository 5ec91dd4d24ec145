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
import importlib.metadata
import os
import select
import socket
import ssl
from collections import deque
from collections.abc import Callable
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import anyio.to_thread

from ._aiowait import Key, check_nonblocking_socket

__all__ = ["SUPPORTED", "AnyioClock", "AnyioWaits", "EpollWaiter", "StreamSocket", "check_version"]

#: The anyio versions this module allows: 4.7 brought wait_readable and
#: wait_writable; StreamSocket.hold_reading and drain use private attributes
#: of anyio 4's asyncio SocketStream (its transport and protocol), so a 5.x
#: must be tested before it is allowed.  Tested: 4.16.0, and 4.7.0 for raw
#: sockets and connect_tcp/listener streams.
SUPPORTED = "anyio>=4.7,<5"


def check_version() -> None:
    """Raise :class:`ImportError` naming :data:`SUPPORTED` for an anyio outside it."""
    try:
        version = importlib.metadata.version("anyio")
    except importlib.metadata.PackageNotFoundError:  # a vendored copy: judge by its API
        version = "4.7" if hasattr(anyio, "wait_readable") else "0"
    parts = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
    if not (4, 7) <= parts < (5,):
        raise ImportError(f"zerocopy.anyio supports {SUPPORTED}, not anyio {version}")


check_version()

_IN = select.EPOLLIN
_OUT = select.EPOLLOUT
_TROUBLE = select.EPOLLERR | select.EPOLLHUP


_TRANSPORT_METHODS = ("is_reading", "pause_reading", "resume_reading", "get_write_buffer_size")


def _transport_of(stream: anyio.abc.SocketStream | None) -> Any:
    """The asyncio transport under anyio's asyncio SocketStream (private), else None.

    Checked by its methods, not its class: uvloop's transports are not
    subclasses of asyncio's.
    """
    transport = getattr(stream, "_transport", None)
    if all(callable(getattr(transport, name, None)) for name in _TRANSPORT_METHODS):
        return transport
    return None


class StreamSocket:
    """The ``socket.socket`` a transfer works on, for a raw socket or an anyio SocketStream.

    A raw socket is used as it is.  A stream's socket belongs to the stream
    (on asyncio its transport, on trio a trio socket): the transfer works on
    a duplicate of its fd, closed by :meth:`close`, so that our waits never
    meet the stream's own (anyio allows one waiter per fd and direction).
    Both refer to one socket: a shutdown of the duplicate is a shutdown of
    the stream's socket.
    """

    __slots__ = ("owned", "paused", "sock", "stream")

    def __init__(self, obj: Any, name: str) -> None:
        self.stream: anyio.abc.SocketStream | None = None
        self.owned = False
        self.paused: Any = None  # the transport whose reading hold_reading paused
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
        try:
            raw = obj.extra(anyio.abc.SocketAttribute.raw_socket, None)
            fd = -1 if raw is None else raw.fileno()
        except (AttributeError, OSError, anyio.ClosedResourceError):
            # A closed stream on uvloop has no socket left, and anyio's
            # attribute table trips over that (getpeername of None).
            fd = -1
        if fd < 0:
            raise ValueError(f"{name} is closed")
        if isinstance(raw, ssl.SSLSocket):
            raise TypeError(f"{name} must not be a TLS stream")
        dup = socket.socket(
            fileno=os.dup(fd)
        )  # the dup is non-inheritable, as every fd Python makes
        if dup.type != socket.SOCK_STREAM:
            dup.close()
            raise ValueError(f"{name} must be a SOCK_STREAM socket")
        # Both backends keep a stream's socket non-blocking already; this only
        # tells the socket object (its timeout), the flag is the file's.
        dup.setblocking(False)
        self.sock = dup
        self.owned = True
        self.stream = obj

    def hold_reading(self) -> bytes:
        """Stop the stream reading its socket; return what it read ahead and did not hand out.

        Only anyio's asyncio SocketStream (TCP) reads on its own: through an
        asyncio transport, whose reading anyio pauses between ``receive()``
        calls (though not on a stream made by ``SocketStream.from_socket``,
        as of anyio 4.16), and whose protocol keeps in a ``read_queue`` the
        rest of a chunk that ``receive(max_bytes)`` split.  Those bytes come
        before any still in the socket.  The transport and protocol are
        private (anyio 4.7 to 4.x, see :data:`SUPPORTED`).  trio's streams and
        anyio's UNIX streams read the socket directly, only when asked: for
        them (and raw sockets) this does nothing and returns ``b""``.
        :meth:`close` resumes the reading paused here.
        """
        transport = _transport_of(self.stream)
        if transport is not None and transport.is_reading():
            transport.pause_reading()
            self.paused = transport
        protocol = getattr(self.stream, "_protocol", None)
        queue = getattr(protocol, "read_queue", None)
        if not isinstance(queue, deque) or not queue:
            return b""
        data = b"".join(queue)
        queue.clear()
        event = getattr(protocol, "read_event", None)
        if isinstance(event, asyncio.Event):
            event.clear()  # as receive() does once the queue is empty
        return data

    async def drain(self) -> None:
        """Wait until the stream's own earlier sends have all reached the socket.

        anyio's asyncio SocketStream writes through a transport whose buffer
        ``send()`` waits to empty, but a *cancelled* ``send()`` leaves its
        bytes there, and the transport writes them later: bytes sent on the
        socket directly would overtake them.  The transport and the protocol's
        ``write_event`` (set when the buffer has emptied) are private (anyio
        4.7 to 4.x, see :data:`SUPPORTED`).  trio's and UNIX streams write the
        socket directly and have nothing buffered.
        """
        transport = _transport_of(self.stream)
        protocol = getattr(self.stream, "_protocol", None)
        if transport is None:
            return
        while transport.get_write_buffer_size() and not transport.is_closing():
            event = getattr(protocol, "write_event", None)
            if isinstance(event, asyncio.Event):
                await event.wait()
            # A set event returns without yielding: never spin without a checkpoint.
            await anyio.lowlevel.checkpoint()

    def close(self) -> None:
        """Close the duplicate, if one was made; resume reading, if it was paused here."""
        if self.owned:
            self.owned = False
            self.sock.close()
        transport, self.paused = self.paused, None
        if transport is not None and not transport.is_closing():
            transport.resume_reading()


class EpollWaiter:
    """Readiness of a few ``(fd, event)`` keys through a private epoll set, waited for with anyio.

    The interface of ``_aiowait.Waiter`` (what the relay's rounds need):
    registrations change only when what is wanted changes (each change is an
    ``epoll_ctl``), and :attr:`fired` holds the keys that fired.
    """

    __slots__ = ("epoll", "fired", "registered", "wanted")

    def __init__(self) -> None:
        self.epoll = select.epoll()
        self.registered: dict[int, int] = {}  # fd -> epoll event mask
        self.wanted: set[Key] = set()
        self.fired: set[Key] = set()

    def watch(self, wanted: set[Key]) -> None:
        """Watch exactly the keys in *wanted*."""
        masks: dict[int, int] = {}
        for fd, event in wanted:
            masks[fd] = masks.get(fd, 0) | (_IN if event == select.POLLIN else _OUT)
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
        self.wanted = set(wanted)

    async def wait(self, timeout: float | None = None) -> None:
        """Return when a watched key fires (or after *timeout* seconds)."""
        with anyio.move_on_after(timeout):
            await anyio.wait_readable(self.epoll.fileno())
        for fd, events in self.epoll.poll(0):
            # An error or hang-up is news for both events: the next step sees it.
            if events & (_IN | _TROUBLE) and (fd, select.POLLIN) in self.wanted:
                self.fired.add((fd, select.POLLIN))
            if events & (_OUT | _TROUBLE) and (fd, select.POLLOUT) in self.wanted:
                self.fired.add((fd, select.POLLOUT))

    def close(self) -> None:
        """Close the epoll set (no wait is pending on it by then)."""
        self.registered.clear()
        self.epoll.close()


class AnyioWaits:
    """The waits of a send under anyio: ``wait_writable`` on the socket's fd."""

    __slots__ = ("fd",)

    def __init__(self, sock: socket.socket) -> None:
        # A raw socket's fd, or StreamSocket's duplicate: no stream's waiter is on it.
        self.fd = sock.fileno()

    async def writable(self) -> None:
        await anyio.wait_writable(self.fd)

    async def checkpoint(self) -> None:
        await anyio.lowlevel.checkpoint()

    async def in_thread(self, fn: Callable[..., memoryview], *args: Any) -> memoryview:
        return await anyio.to_thread.run_sync(fn, *args)

    def close(self) -> None:
        pass  # anyio's waits unregister themselves


class AnyioClock:
    """anyio's clock, and its checkpoint to let other tasks run."""

    __slots__ = ()

    def now(self) -> float:
        return anyio.current_time()

    async def checkpoint(self) -> None:
        await anyio.lowlevel.checkpoint()
