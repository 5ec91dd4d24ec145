"""AsyncZeroCopySender: MSG_ZEROCOPY sends and completion waits on the running loop.

A thin asyncio layer over :class:`~zerocopy.ZeroCopySender`, which keeps all
the bookkeeping (sequence numbers, held buffers, the copied flag, ENOBUFS);
this module only decides when to call it and how to wait:

- a send that meets a full socket (:class:`BlockingIOError`) waits for
  writability through ``loop.add_writer`` and tries again;
- :meth:`AsyncZeroCopySender.flush` drains the error queue with ``poll()``
  and, while sends are outstanding, waits for the socket to report an error
  (epoll hands ``EPOLLERR`` to readers, and a queued completion is one) or for
  a short timer, whichever comes first.  Readable peer data wakes a reader
  too; when a wake-up drains nothing the reader is dropped for the rest of the
  flush and the timer alone paces it, so a chatty peer cannot make it spin.

Readiness is watched on a private ``dup()`` of the socket's fd: asyncio allows
one reader and one writer per fd, and registering on the socket's own fd
would silently replace a ``loop.sock_recv`` or a transport waiting on it.

uvloop (libuv) treats ``POLLERR`` as fatal for a watcher: it runs the
callbacks once and drops the watcher.  The waits here re-register each time
and have timers, so they cope; another reader of the same socket does not.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import ssl
from types import TracebackType
from typing import Any

from ._fd import check_timeout
from ._relay import _STEP_BUDGET
from ._tally import Tally
from ._zc import SenderStats, ZeroCopySender, _Countdown

__all__ = ["AsyncZeroCopySender"]

#: Longest wait between two looks at the error queue while the reader is on
#: (a safety net: the reader normally wakes first) and while it is off.
_TICK_WITH_READER = 0.05
_TICK_TIMER_ONLY = 0.02

# States of one send's on_release relay (see _Relay).
_IDLE, _CALLED, _LIVE, _FIRED = range(4)


class _Relay:
    """Passes the sync sender's *on_release* call on to the caller's, exactly once.

    :meth:`ZeroCopySender.send` calls *on_release* also when it fails, and a
    send that meets a full socket fails with :class:`BlockingIOError` and is
    retried here: that call must not reach the caller, the one from the
    attempt that succeeds (at its completion, or at once for a plain send) must.
    """

    __slots__ = ("state", "target")

    def __init__(self, target: Any) -> None:
        self.target = target
        self.state = _IDLE

    def __call__(self) -> None:
        if self.state == _LIVE:
            self._fire()
        elif self.state == _IDLE:
            self.state = _CALLED

    def _fire(self) -> None:
        self.state = _FIRED
        self.target()

    def retry(self) -> None:
        """The attempt raised BlockingIOError: forget its release call."""
        self.state = _IDLE

    def sent(self) -> None:
        """The attempt moved bytes: release now if it already was, else at completion."""
        if self.state == _CALLED:
            self._fire()
        else:
            self.state = _LIVE

    def failed(self) -> None:
        """The send ended with an exception: nothing of it is in flight."""
        if self.state in (_IDLE, _CALLED):
            self._fire()


class _Readiness:
    """Waits for a private duplicate of a socket's fd to become readable or writable.

    The duplicate is made on the first wait and closed by :meth:`close`.
    """

    __slots__ = ("dup", "fd", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int) -> None:
        self.loop = loop
        self.fd = fd
        self.dup = -1

    async def wait(self, *, writable: bool, timeout: float | None) -> bool:
        """True if the fd became ready, False if *timeout* seconds passed first."""
        if self.dup < 0:
            self.dup = os.dup(self.fd)  # non-inheritable, as every fd Python makes
        fd = self.dup
        fut: asyncio.Future[bool] = self.loop.create_future()

        def wake(ready: bool) -> None:
            if not fut.done():
                fut.set_result(ready)

        if writable:
            self.loop.add_writer(fd, wake, True)
        else:
            self.loop.add_reader(fd, wake, True)
        timer = None if timeout is None else self.loop.call_later(timeout, wake, False)
        try:
            return await fut
        finally:
            if timer is not None:
                timer.cancel()
            if writable:
                self.loop.remove_writer(fd)
            else:
                self.loop.remove_reader(fd)

    def close(self) -> None:
        if self.dup >= 0:
            fd, self.dup = self.dup, -1
            os.close(fd)


class AsyncZeroCopySender:
    """Awaitable MSG_ZEROCOPY sends over a *non-blocking* TCP socket.

    The arguments are :class:`~zerocopy.ZeroCopySender`'s, and so is the
    contract: a buffer sent with zero-copy must neither change nor go away
    until its completion arrived (:attr:`pending`, :meth:`poll`,
    :meth:`flush`); the sender holds a reference until then.  *sock* must be
    non-blocking (:class:`ValueError` otherwise, as the loop's ``sock_*``
    methods) and not an :class:`ssl.SSLSocket` (:class:`TypeError`).

    Completions that are already queued are read before each send, so a
    long run of sends does not pile up held buffers and, by default, the
    first completion the kernel flags as copied turns zero-copy off early.

    ``async with`` waits for every completion on the way out.
    """

    def __init__(
        self,
        sock: socket.socket,
        *,
        threshold: int = 10 * 1024,
        fallback: bool = True,
        stop_on_copied: bool = True,
    ) -> None:
        if not isinstance(sock, socket.socket):
            raise TypeError(f"sock must be a socket.socket, not {type(sock).__name__}")
        if isinstance(sock, ssl.SSLSocket):
            # Sends go to the fd, under the TLS layer: the peer would get
            # plaintext (the loop's sock_* methods refuse SSL sockets too).
            raise TypeError("sock must not be an ssl.SSLSocket")
        if sock.gettimeout() != 0.0:
            raise ValueError("sock must be non-blocking (sock.setblocking(False))")
        #: The synchronous sender doing the sends and the bookkeeping.
        self.sender = ZeroCopySender(
            sock, threshold=threshold, fallback=fallback, stop_on_copied=stop_on_copied
        )

    # -- the sync sender's state ---------------------------------------------

    @property
    def sock(self) -> socket.socket:
        """The socket sent on."""
        return self.sender.sock

    @property
    def threshold(self) -> int:
        """Sends of at least this many bytes use MSG_ZEROCOPY (while it is on)."""
        return self.sender.threshold

    @property
    def zerocopy(self) -> bool:
        """Whether sends at or above the threshold still ask for zero-copy."""
        return self.sender.zerocopy

    @property
    def disabled_reason(self) -> str | None:
        """Why zero-copy is off, or None while it is on."""
        return self.sender.disabled_reason

    @property
    def pending(self) -> int:
        """Zero-copy sends whose completion has not arrived yet."""
        return self.sender.pending

    @property
    def stats(self) -> SenderStats:
        """The counters of the underlying :class:`~zerocopy.ZeroCopySender`."""
        return self.sender.stats

    def poll(self) -> int:
        """Read every completion queued now, without blocking; return sends released."""
        return self.sender.poll()

    # -- sending -------------------------------------------------------------

    def _readiness(self) -> _Readiness:
        return _Readiness(asyncio.get_running_loop(), self.sender.sock.fileno())

    async def send(self, data: Any, *, on_release: Any = None) -> int:
        """Send once, waiting for room while the socket is full; return the bytes sent.

        *on_release* is called exactly once, when the kernel has released
        this send's pages (at once for a plain send, or if the send fails).
        """
        view = memoryview(data).cast("B")
        ready = self._readiness()
        try:
            return await self._send(view, on_release, ready, Tally())
        finally:
            ready.close()

    async def _send(
        self, view: memoryview, on_release: Any, ready: _Readiness, tally: Tally
    ) -> int:
        relay = None if on_release is None else _Relay(on_release)
        woken = False
        mark = len(tally.log)
        try:
            while True:
                if self.sender.pending:
                    # Cheap (one recvmsg) and keeps held buffers and the copied
                    # flag current between sends, rather than only at flush().
                    # It also clears the EPOLLERR a queued completion raises,
                    # which would wake the writer below at once.
                    self.sender.poll()
                mark = len(tally.log)
                try:
                    n = self.sender._send(view, relay, tally)
                except BlockingIOError:
                    # Nothing went out (ZeroCopySender raises only before any
                    # byte moved): wait for room, then try again.
                    if relay is not None:
                        relay.retry()
                    if woken:
                        # Woken, still no room: EPOLLERR from an error-queue
                        # message that is not a completion (a timestamp, say)
                        # wakes writers too and stays up.  Back off, not spin.
                        await asyncio.sleep(_TICK_TIMER_ONLY)
                    woken = await ready.wait(writable=True, timeout=None)
                    continue
                if relay is not None:
                    relay.sent()
                return n
        except BaseException:
            if relay is not None:
                if tally.total(since=mark):
                    # It went out before the exception (a signal handler's,
                    # say): released already, or held until its completion.
                    relay.sent()
                else:
                    relay.failed()
            raise

    async def sendall(self, data: Any, *, on_release: Any = None) -> None:
        """Send all of *data*, waiting for room as needed.

        *on_release* is called once every part that went out is released.
        Any exception, :class:`asyncio.CancelledError` included, carries
        ``bytes_transferred``: the bytes that went out before it.
        """
        view = memoryview(data).cast("B")
        parts = _Countdown(on_release)
        ready = self._readiness()
        tally = Tally()  # what the kernel accepted, exact whatever raises
        sent = since_yield = 0
        try:
            while sent < len(view):
                tally.fold()
                parts.more()
                n = await self._send(view[sent:], parts.done, ready, tally)
                sent += n
                since_yield += n
                if since_yield >= _STEP_BUDGET:  # a fast peer must not starve the loop
                    since_yield = 0
                    await asyncio.sleep(0)
        except BaseException as exc:
            exc.bytes_transferred = tally.total()  # type: ignore[attr-defined]
            raise
        finally:
            ready.close()
            parts.seal()

    async def flush(self, timeout: float | None = None) -> None:
        """Wait until every zero-copy send has completed; TimeoutError after *timeout* s.

        Completions are read as soon as epoll reports the socket's error
        queue non-empty, and at least every few tens of milliseconds.  None
        or ``inf`` waits as long as it takes; NaN is a :class:`ValueError`.
        """
        check_timeout(timeout)
        if not self.sender.pending:
            return
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        ready = self._readiness()
        use_reader = True
        try:
            while True:
                self.sender.poll()
                if not self.sender.pending:
                    return
                tick = _TICK_WITH_READER if use_reader else _TICK_TIMER_ONLY
                if deadline is not None:
                    left = deadline - loop.time()
                    if left <= 0:
                        raise TimeoutError(
                            errno.ETIMEDOUT, f"flush: {self.sender.pending} sends still in flight"
                        )
                    tick = min(tick, left)
                if not use_reader:
                    await asyncio.sleep(tick)
                elif await ready.wait(writable=False, timeout=tick) and not self.sender.poll():
                    # Readable for another reason (peer data, end of stream, a
                    # socket error): level-triggered, the reader would fire at
                    # once on every round.  Let the timer pace the rest.
                    use_reader = False
                    ready.close()
        finally:
            ready.close()

    async def __aenter__(self) -> AsyncZeroCopySender:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.flush()

    def __repr__(self) -> str:
        return f"<AsyncZeroCopySender pending={self.pending} zerocopy={self.zerocopy}>"
