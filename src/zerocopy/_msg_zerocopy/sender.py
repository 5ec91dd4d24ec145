"""ZeroCopySender: MSG_ZEROCOPY sends over a blocking socket, with completion tracking.

With ``SO_ZEROCOPY`` set, ``send(..., MSG_ZEROCOPY)`` lets the kernel take the
caller's pages instead of copying them.  Each such send that moves bytes gets
the next 32-bit sequence number (per socket, wrapping); when the kernel has
released the pages it queues a notification on the socket's error queue
covering an inclusive range ``[first, last]`` of those numbers, ranges
coalesced and not necessarily in order.  Until then the buffer must neither
change nor go away, so :class:`ZeroCopySender` holds a ``memoryview`` export of
it (which also stops a ``bytearray`` from being resized).

On loopback and towards any local receiver the kernel copies anyway and says
so (``SO_EE_CODE_ZEROCOPY_COPIED``); by default the sender then stops asking
for zero-copy on that socket, so the bookkeeping costs nothing afterwards.
"""

from __future__ import annotations

import errno
import logging
import socket
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from .. import _backend
from .._args import check_timeout, poll_ms
from .._constants import (
    MSG_ZEROCOPY,
    SO_EE_CODE_ZEROCOPY_COPIED,
    SO_EE_ORIGIN_ZEROCOPY,
)
from .._errors import oserror, set_transferred
from .._tally import Tally
from .bufpool import pool_slot
from .release import Countdown, chain_calls, release_held
from .sockopts import check_arguments, enable_zerocopy
from .tracker import state_of
from .waits import wait_event, wait_writable

__all__ = ["CountedSender", "SenderStats", "ZeroCopySender"]

log = logging.getLogger("zerocopy")

# Windows has no MSG_DONTWAIT, and no MSG_ZEROCOPY: its sends are plain ones.
_MSG_DONTWAIT = getattr(socket, "MSG_DONTWAIT", 0)


@dataclass
class SenderStats:
    """Counters of a :class:`ZeroCopySender`."""

    zerocopy_sends: int = 0  #: sends made with MSG_ZEROCOPY that moved bytes
    completions: int = 0  #: zero-copy sends the kernel reported released
    copied: int = 0  #: of those, the ones the kernel reported it copied anyway
    plain_sends: int = 0  #: sends made without MSG_ZEROCOPY
    enobufs_retries: int = 0  #: ENOBUFS met (optmem or locked-memory limit)


class ZeroCopySender:
    """Send over a TCP socket with MSG_ZEROCOPY, tracking when buffers are free again.

    Buffers of at least *threshold* bytes go out with ``MSG_ZEROCOPY``;
    smaller ones with a plain (copying) send, which is cheaper below about
    10 KiB.  Each zero-copy send holds a reference to its buffer until the
    kernel reports it released: do not change the buffer's contents before
    then (:attr:`pending`, :meth:`poll`, :meth:`flush`).

    If ``SO_ZEROCOPY`` cannot be enabled (old kernel, not TCP, os backend) the
    sender raises :class:`OSError` when *fallback* is false, else sends
    plainly.  With *stop_on_copied* (the default) the first completion the
    kernel flags as copied (always the case towards a local receiver) turns
    zero-copy off for this socket, since it can only cost more from then on.

    Used as a context manager, leaving the block waits for all completions.
    """

    def __init__(
        self,
        sock: socket.socket,
        *,
        threshold: int = 10 * 1024,
        fallback: bool = True,
        stop_on_copied: bool = True,
    ) -> None:
        check_arguments(sock, threshold)
        self.sock = sock
        self.threshold = threshold
        self.stop_on_copied = stop_on_copied
        self.stats = SenderStats()
        state = state_of(sock)
        self._tracker = state.tracker
        self._lock = state.lock
        self._fd = sock.fileno()
        self._sock_send = sock.send  # bound once: sendall's fast path is mostly call overhead
        #: Why zero-copy is off, or None while it is on.
        self.disabled_reason: str | None = enable_zerocopy(sock, fallback)
        self.zerocopy = self.disabled_reason is None

    # -- state ---------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Zero-copy sends whose completion has not arrived yet."""
        return len(self._tracker)

    def _handle(self, records: list[tuple[int, int, int, int, int]]) -> int:
        released = 0
        for first, last, code, origin, err in records:
            if origin != SO_EE_ORIGIN_ZEROCOPY:
                # Timestamps and the like share the queue: not ours to report.
                log.debug("ZeroCopySender: skipped error-queue message origin=%d", origin)
                continue
            if err != 0:
                raise oserror(err, "MSG_ZEROCOPY completion")
            held = self._tracker.complete(first, last)
            n = len(held)
            self.stats.completions += n
            if code == SO_EE_CODE_ZEROCOPY_COPIED:
                self.stats.copied += n
                if self.stop_on_copied and self.zerocopy:
                    self.zerocopy = False
                    self.disabled_reason = "the kernel copied (local receiver?)"
                    log.info("ZeroCopySender: kernel copies on this path; plain sends from now on")
            release_held(held)
            released += n
        return released

    def poll(self) -> int:
        """Read every completion queued now, without blocking; return sends released."""
        if not len(self._tracker):
            return 0
        return self._drain()

    def _drain(self) -> int:
        # Reads the error queue until it is empty, other messages (timestamps)
        # included: a queue left non-empty keeps POLLERR up and waits spinning.
        backend = _backend.current()
        released = 0
        with self._lock:
            while True:
                try:
                    records = backend.recv_completions(self._fd, 16)
                except BlockingIOError:
                    break
                released += self._handle(records)
        return released

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every zero-copy send has completed; TimeoutError after *timeout* s.

        None or ``inf`` waits as long as it takes; NaN is a :class:`ValueError`.
        """
        check_timeout(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        backoff = [0.001]
        while True:
            self.poll()
            if not self.pending:
                return
            left = 1.0  # wait in slices of at most 1 s, deadline or not
            if deadline is not None:
                left = min(left, deadline - time.monotonic())
                if left <= 0:
                    raise TimeoutError(
                        errno.ETIMEDOUT, f"flush: {self.pending} sends still in flight"
                    )
            wait_event(self._fd, 0, poll_ms(left), backoff, self._drain)  # POLLERR always comes

    # -- sending -------------------------------------------------------------

    def _send_zerocopy(self, view: memoryview, on_release: Any, tally: Tally) -> int | None:
        # The send and the sequence number it earns happen under one lock, so
        # concurrent senders cannot disagree with the kernel about numbers.
        # On an exception *on_release* is called here, unless the send went
        # out: then it is held until its completion like any other.
        backend = _backend.current()
        tracker = self._tracker
        retried = False
        seq, mark = tracker.next_seq, len(tally.log)
        try:
            while True:
                with self._lock:
                    seq, mark = tracker.next_seq, len(tally.log)
                    try:
                        n = int(backend.send(self._fd, view, MSG_ZEROCOPY | _MSG_DONTWAIT, tally))
                    except BlockingIOError:
                        n = -1
                    except OSError as exc:
                        if exc.errno != errno.ENOBUFS:
                            raise
                        # optmem or RLIMIT_MEMLOCK exhausted: free what completed,
                        # retry once, then copy; never wait for a wake-up here.
                        self.stats.enobufs_retries += 1
                        self.poll()
                        if retried:
                            return None
                        retried = True
                        continue
                    if n > 0:
                        tracker.add((view[:n].toreadonly(), on_release))
                        self.stats.zerocopy_sends += 1
                        return n
                    if n == 0:
                        return 0
                wait_writable(self.sock, self._fd, self._drain)
        except BaseException:
            with self._lock:
                self._settle(view, on_release, tally.total(since=mark), seq)
            raise

    def _settle(self, view: memoryview, on_release: Any, sent: int, seq: int) -> None:
        # A failed attempt (*sent* 0) releases at once.  But a signal handler
        # can raise after send() returned and before the send was tracked:
        # the kernel numbered it all the same, so track it under its number,
        # or every later completion would free the wrong buffer.
        if not sent:
            if on_release is not None:
                on_release()
        elif self._tracker.next_seq == seq:
            self._tracker.add((view[:sent].toreadonly(), on_release))
            self.stats.zerocopy_sends += 1
        # else: tracked already; its completion calls on_release.

    def send(self, data: Any, *, on_release: Any = None) -> int:
        """Send once (like :meth:`socket.socket.send`); return the bytes sent.

        *on_release*, if given, is called when the kernel has released this
        send's pages: at its completion for a zero-copy send, at once for a
        plain one or a failed one.
        """
        return self._send(memoryview(data).cast("B"), on_release, None)

    def _send(self, view: memoryview, on_release: Any, tally: Tally | None) -> int:
        # *tally*: sendall's log of what went out.  A single send needs one
        # only for a zero-copy attempt (to track a send an exception cut off).
        if self.zerocopy and len(view) >= self.threshold:
            # Read what completed first: releases buffers promptly, and a
            # "copied" completion turns zero-copy off before this send.
            try:
                self.poll()
            except BaseException:
                if on_release is not None:
                    on_release()  # nothing of this send is in flight
                raise
        if self.zerocopy and len(view) >= self.threshold:
            slot = pool_slot(view)
            if slot is not None:
                # A pool buffer goes back only after this send's completion.
                pool, index = slot
                pool.hold(index, self)
                on_release = chain_calls(on_release, pool.unhold, index)
            if tally is None:
                tally = Tally()
            zc_sent = self._send_zerocopy(view, on_release, tally)
            if zc_sent:
                return zc_sent
            # ENOBUFS twice (None) or nothing sent (0): the plain path below.
        try:
            if tally is None:
                sent: int = self.sock.send(view)
            else:
                sent = tally.call(self.sock.send, (view,))
            self.stats.plain_sends += 1
        finally:
            if on_release is not None:
                on_release()
        return sent

    def sendall(self, data: Any, *, on_release: Any = None) -> None:
        """Send all of *data*; *on_release* is called once every part is released.

        A failure part-way raises with ``bytes_transferred``: the bytes the
        kernel accepted before it.
        """
        # The common case first, with as little Python as possible around the
        # send: bytes or a bytearray that goes out plainly (below the
        # threshold, or zero-copy off, as it is once the kernel reported a
        # copy), nothing to call back.  On a blocking socket one send()
        # carries it all; its result is logged from C (list.extend driving
        # map, as Tally.call does) before a signal handler can run, so a
        # failure still says exactly how many bytes moved, which
        # socket.sendall cannot.  A short send (timeout, signal, non-blocking
        # socket) leaves the rest to _send_logged.
        kind = type(data)
        if (kind is bytes or kind is bytearray) and on_release is None:
            size = len(data)
            if size and (size < self.threshold or not self.zerocopy):
                log: list[int] = []
                try:
                    log.extend(map(self._sock_send, (data,)))  # logged before any handler runs
                    if log[0] != size:
                        _send_logged(self._sock_send, memoryview(data)[log[0] :], log)
                except BaseException as exc:
                    set_transferred(exc, sum(log))
                    raise
                self.stats.plain_sends += 1
                return
        view = memoryview(data).cast("B")
        if not self.zerocopy or len(view) < self.threshold:
            # Nothing to track: plain sends, counted as above.
            log = []
            try:
                try:
                    _send_logged(self._sock_send, view, log)
                    self.stats.plain_sends += 1
                finally:
                    if on_release is not None:
                        on_release()
            except BaseException as exc:  # the clean-up's (a handler's, say) too
                set_transferred(exc, sum(log))
                raise
            return
        tally = Tally()  # what the kernel accepted, exact whatever raises
        parts = Countdown(on_release)
        try:
            try:
                while view:
                    tally.fold()
                    parts.more()
                    n = self._send(view, parts.done, tally)
                    view = view[n:]
            finally:
                parts.seal()
        except BaseException as exc:  # the clean-up's (a handler's, say) too
            set_transferred(exc, tally.total())
            raise

    def __enter__(self) -> ZeroCopySender:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.flush()


def _send_logged(send: Any, view: memoryview, log: list[int]) -> None:
    """Send all of *view* with *send* (``socket.send``), logging each result before any handler.

    ``sum(log)`` is then exact whatever raises.  A blocking send returns
    short only at a timeout or signal, so the log stays short.
    """
    while view:
        log.extend(map(send, (view,)))
        view = view[log[-1] :]


class CountedSender(ZeroCopySender):
    """A :class:`ZeroCopySender` whose single send also logs into a Tally (the asyncio sender's)."""

    def send_once(self, view: memoryview, on_release: Any, tally: Tally | None) -> int:
        """One send of *view*, zero-copy or plain by the sender's rules.

        *tally* logs what went out; *on_release* is called as :meth:`send` calls it.
        """
        return self._send(view, on_release, tally)
