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

import errno
import os
import select
import socket
import ssl
from types import TracebackType
from typing import Any

from .._aiowait import AsyncioLoop
from .._args import check_timeout
from .._errors import set_transferred
from .._fair import Turn
from .._loop import KeyWaiter, Loop, wait_key
from .._tally import Tally
from .release import Countdown, OnceAcrossRetries
from .sender import CountedSender, SenderStats

__all__ = ["AsyncZeroCopySender"]

#: Longest wait between two looks at the error queue while the reader is on
#: (a safety net: the reader normally wakes first) and while it is off.
_TICK_WITH_READER = 0.05
_TICK_TIMER_ONLY = 0.02


class DupReadiness:
    """Waits for a private duplicate of a socket's fd to become readable or writable.

    The duplicate is made on the first wait and closed by :meth:`close`.
    Each wait registers anew and unregisters after: uvloop drops a watcher
    that sees ``POLLERR`` (a queued completion is one).
    """

    __slots__ = ("dup", "fd", "loop", "waiter")

    def __init__(self, loop: Loop, fd: int) -> None:
        self.loop = loop
        self.fd = fd
        self.dup = -1
        self.waiter: KeyWaiter | None = None

    async def wait(self, *, writable: bool, timeout: float | None) -> bool:
        """True if the fd became ready, False if *timeout* seconds passed first."""
        if self.waiter is None:
            self.dup = os.dup(self.fd)  # non-inheritable, as every fd Python makes
            self.waiter = self.loop.waiter()
        key = (self.dup, select.POLLOUT if writable else select.POLLIN)
        try:
            return await wait_key(self.waiter, key, timeout)
        finally:
            self.waiter.watch(set())

    def close(self) -> None:
        """Close the duplicate fd, if one was made."""
        if self.waiter is not None:
            self.waiter.close()
            self.waiter = None
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
        self.sender = CountedSender(
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

    def _loop(self) -> Loop:
        """The running event loop (the anyio form returns anyio's)."""
        return AsyncioLoop()

    def _readiness(self, loop: Loop) -> DupReadiness:
        return DupReadiness(loop, self.sender.sock.fileno())

    async def send(self, data: Any, *, on_release: Any = None) -> int:
        """Send once, waiting for room while the socket is full; return the bytes sent.

        *on_release* is called exactly once, when the kernel has released
        this send's pages (at once for a plain send, or if the send fails).
        """
        view = memoryview(data).cast("B")
        loop = self._loop()
        ready = self._readiness(loop)
        try:
            return await self._send(view, on_release, loop, ready, Tally())
        finally:
            ready.close()

    async def _send(
        self,
        view: memoryview,
        on_release: Any,
        loop: Loop,
        ready: DupReadiness,
        tally: Tally,
        turn: Turn | None = None,
    ) -> int:
        relay = None if on_release is None else OnceAcrossRetries(on_release)
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
                    n = self.sender.send_once(view, relay, tally)
                except BlockingIOError:
                    # Nothing went out (ZeroCopySender raises only before any
                    # byte moved): wait for room, then try again.
                    if relay is not None:
                        relay.retry()
                    if woken:
                        # Woken, still no room: EPOLLERR from an error-queue
                        # message that is not a completion (a timestamp, say)
                        # wakes writers too and stays up.  Back off, not spin.
                        await loop.sleep(_TICK_TIMER_ONLY)
                    waiting = ready.wait(writable=True, timeout=None)
                    # The loop's turn goes on while this one waits (zerocopy._fair).
                    woken = await (waiting if turn is None else turn.wait(waiting))
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
        parts = Countdown(on_release)
        loop = self._loop()
        ready = self._readiness(loop)
        tally = Tally()  # what the kernel accepted, exact whatever raises
        turn = Turn(loop)  # the fairness rule: see zerocopy._fair
        sent = 0
        try:
            while sent < len(view):
                tally.fold()
                parts.more()
                n = await self._send(
                    view[sent : sent + turn.left], parts.done, loop, ready, tally, turn
                )
                sent += n
                if turn.spend(n):
                    await turn.pause()
        except BaseException as exc:
            set_transferred(exc, tally.total())
            raise
        finally:
            turn.close()
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
        loop = self._loop()
        deadline = None if timeout is None else loop.now() + timeout
        ready = self._readiness(loop)
        use_reader = True
        try:
            while True:
                self.sender.poll()
                if not self.sender.pending:
                    return
                tick = _TICK_WITH_READER if use_reader else _TICK_TIMER_ONLY
                if deadline is not None:
                    left = deadline - loop.now()
                    if left <= 0:
                        raise TimeoutError(
                            errno.ETIMEDOUT, f"flush: {self.sender.pending} sends still in flight"
                        )
                    tick = min(tick, left)
                if not use_reader:
                    await loop.sleep(tick)
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
