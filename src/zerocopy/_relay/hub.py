"""A relay hub: many relays in one thread, their steady state in one C call per batch of wake-ups.

The backend's :class:`HubCore` (``zc_hub_run`` on the cffi backend, the same
loop in Python on the os backend) waits on one edge-triggered epoll set and
steps every relay direction that is due, with the GIL released, until a
direction needs a decision.  Everything that needs one comes back here and
runs the same Python a relay's direction always ran
(:meth:`Direction.step`): taking a pipe, the urgent mark, a stream's
read-ahead (its *head*), end of stream and the half-close, errors.  So the
hub decides what the threaded and asyncio relays decide, and the pump only
repeats splices between decisions.

Policy kept here, in Python:

* **pipes**: a direction takes a pipe when it has bytes to move (the pump
  reports ``HUB_NEED_PIPE``) and gives it back once it has moved nothing
  for one :data:`IDLE_TICK` with its pipe empty: an idle relay holds no pipe,
  within a tick;
* **timeouts**: each relay's idle timeout, checked against its counts when
  the pump returns;
* **the fairness rule**: each due direction moves at most :data:`BUDGET`
  bytes per round of the pump, in turn (see :mod:`zerocopy._fair`);
* **errors on an ended side**: a reset on a socket whose direction has ended
  ends the relay, as in the other forms.

A relay ends (its callback is called in the hub's thread) with its counts,
or with the exception that ended it carrying ``a_to_b``, ``b_to_a`` and
``bytes_transferred``; the sockets are left open for the caller.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from .. import _backend
from .._constants import (
    EPOLLET,
    EPOLLIN,
    EPOLLOUT,
    EPOLLRDHUP,
    HUB_EVENT,
    HUB_NEED_PIPE,
    HUB_READY,
    HUB_STEP,
    HUB_STOPPED,
    HUB_WOKEN,
    POLLIN,
    READY_DST,
    READY_SRC,
    STEP_DST_ZERO,
    STEP_ERROR,
    WANT_DST,
    WANT_NONE,
    WANT_RUN,
    WANT_SRC,
)
from .._errors import oserror
from .._pipes import PipePool
from .direction import Direction, annotate

__all__ = ["BUDGET", "IDLE_TICK", "Hub", "HubRelay", "available", "default_hub", "relay_on_hub"]

log = logging.getLogger("zerocopy")

#: Most bytes one direction moves per round of the pump (the fairness rule).
BUDGET = 1024 * 1024
#: A direction that moved nothing for this long with its pipe empty gives the pipe back.
IDLE_TICK = 0.05
#: Rounds of the pump per C call when nothing needs a decision.
MAX_ROUNDS = 4096
#: Each socket's registration: both ways, hang-ups, edge-triggered.
_EVENTS = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET


def available() -> bool:
    """Whether a hub can run here: it waits with epoll (Linux)."""
    return hasattr(select, "epoll")


Done = Callable[[tuple[int, int] | None, BaseException | None], object]


class HubRelay:
    """One relay on a hub: sockets *a* and *b*, both directions, the caller's callback."""

    __slots__ = (
        "a",
        "ab",
        "b",
        "ba",
        "cancelled",
        "done",
        "finished",
        "last_moved",
        "last_progress",
        "slots",
        "timeout",
    )

    def __init__(
        self, a: socket.socket, b: socket.socket, timeout: float | None, done: Done
    ) -> None:
        self.a, self.b, self.timeout, self.done = a, b, timeout, done
        self.ab: Direction | None = None
        self.ba: Direction | None = None
        self.slots = (-1, -1)
        self.last_moved = 0
        self.last_progress = 0.0
        self.cancelled: BaseException | None = None
        self.finished = False

    def counts(self) -> tuple[int, int]:
        return (
            0 if self.ab is None else self.ab.moved,
            0 if self.ba is None else self.ba.moved,
        )


class Hub:
    """Relays stepped by one thread of their own (started on the first relay).

    :meth:`start` hands two connected non-blocking stream sockets to the
    hub; the callback gets ``(counts, None)`` or ``(None, exc)``, in the
    hub's thread.  :meth:`cancel` ends a relay early (its callback gets the
    exception given, with the counts on it).
    """

    def __init__(self, pool: PipePool | None = None, *, budget: int = BUDGET) -> None:
        self.pool = pool
        self.budget = budget
        self._lock = threading.Lock()
        self._incoming: list[HubRelay] = []
        self._cancels: list[HubRelay] = []
        self._thread: threading.Thread | None = None
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._core: Any = None
        self._closed = False
        self._stopped = False  # the wake-up pipe is closed

    # -- the caller's side (any thread) --------------------------------------------------

    def start(
        self, a: socket.socket, b: socket.socket, timeout: float | None, done: Done
    ) -> HubRelay:
        """Relay *a* and *b* on the hub; *done* is called once when the relay ends."""
        relay = HubRelay(a, b, timeout, done)
        with self._lock:
            if self._closed:
                raise RuntimeError("the relay hub is closed")
            self._incoming.append(relay)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="zerocopy-relay-hub", daemon=True
                )
                self._thread.start()
        self._wake()
        return relay

    def cancel(self, relay: HubRelay, exc: BaseException) -> None:
        """End *relay* with *exc* (its counts put on it) unless it ended already."""
        with self._lock:
            self._cancels.append(relay)
            relay.cancelled = exc
        self._wake()

    def close(self) -> None:
        """End every relay still running (with :class:`ConnectionAbortedError`), stop the thread.

        No relay can start after this.  The hub's descriptors are closed
        when its thread ends (at once if it never started).
        """
        with self._lock:
            self._closed = True
            thread = self._thread
            if thread is None and not self._stopped:
                self._stopped = True
                os.close(self._wake_r)
                os.close(self._wake_w)
        if thread is None:
            return
        self._wake()
        if thread is not threading.current_thread():
            thread.join()

    def _wake(self) -> None:
        with self._lock:
            if self._stopped:
                return  # its descriptors are closed (their numbers may be reused)
            try:
                os.write(self._wake_w, b"\0")
            except BlockingIOError:
                pass  # a wake-up is pending already

    # -- the hub's thread -----------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._core = _backend.current().HubCore()
        except BaseException as exc:  # noqa: BLE001 - every waiting relay is told
            with self._lock:
                self._closed = self._stopped = True
                incoming, self._incoming = self._incoming, []
                os.close(self._wake_r)
                os.close(self._wake_w)
            for r in incoming:
                r.finished = True
                r.done(None, annotate(exc, None, None))
            return
        self._relays: list[HubRelay | None] = []  # by slot: the relay each slot belongs to
        self._free: list[int] = []
        self._used = 0
        self._live: set[HubRelay] = set()
        self._idle_seen: dict[int, int] = {}  # slot -> delivered when last seen idle with a pipe
        last_tick = time.monotonic()
        self._core.register(self._wake_r, EPOLLIN, -1, -1)
        try:
            while self._take_requests():
                now = time.monotonic()
                held = bool(self._idle_seen) or self._holding()
                reports = self._core.run(
                    self._used, self.budget, self._timeout_ms(now, held), MAX_ROUNDS
                )
                self._handle(reports)
                now = time.monotonic()
                if now - last_tick >= IDLE_TICK:
                    last_tick = now
                    self._tick(now)
                while self._used and self._relays[self._used - 1] is None:
                    self._used -= 1
        except BaseException as exc:  # pragma: no cover - a bug in the hub itself
            log.exception("zerocopy relay hub failed")
            for r in list(self._live):
                self._end(r, exc)
            raise
        finally:
            self._core.close()
            with self._lock:
                self._stopped = True
                os.close(self._wake_r)
                os.close(self._wake_w)

    def _take_requests(self) -> bool:
        """Add the relays started, end those cancelled; False once the hub is closed."""
        with self._lock:
            incoming, self._incoming = self._incoming, []
            cancels, self._cancels = self._cancels, []
            closing = self._closed
        for r in incoming:
            try:
                self._add(r)
                self._live.add(r)
            except BaseException as exc:  # noqa: BLE001 - it goes to the relay's caller
                self._end(r, exc)
        for r in cancels:
            if not r.finished and r.cancelled is not None:
                self._end(r, r.cancelled)
        if closing:
            for r in list(self._live):
                self._end(r, ConnectionAbortedError(errno.ECONNABORTED, "relay hub closed"))
            return False
        return True

    def _handle(self, reports: list[tuple[int, int]]) -> None:
        """Decide for every direction the pump handed back."""
        for index, reason in reports:
            if reason == HUB_WOKEN:
                self._drain_wake()
                continue
            r = self._relays[index]
            if r is None or r.finished:
                continue
            try:
                self._decide(r, index, reason)
            except BaseException as exc:  # noqa: BLE001 - it goes to the relay's caller
                self._end(r, exc)
                continue
            if r.ab is not None and r.ba is not None and r.ab.done and r.ba.done:
                self._end(r, None)

    def _tick(self, now: float) -> None:
        """Every IDLE_TICK: idle pipes back to the pool, idle timeouts."""
        self._reclaim()
        for r in list(self._live):
            if self._timed_out(r, now):
                self._end(r, TimeoutError(errno.ETIMEDOUT, "relay: idle timeout"))

    def _drain_wake(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass

    def _holding(self) -> bool:
        """Whether a direction waits for its source with a pipe (to give back when idle)."""
        core = self._core
        return any(
            s.state != core.NULL and s.want == WANT_SRC and s.pipe_r >= 0
            for s in core.slots[0 : self._used]
        )

    def _timeout_ms(self, now: float, pipes_held: bool) -> int:
        wait = IDLE_TICK if pipes_held else None
        for r in self._live:
            if r.timeout is not None and r.timeout != float("inf"):
                left = max(r.last_progress + r.timeout - now, 0.0)
                wait = left if wait is None else min(wait, left)
        if wait is None:
            return -1
        # A long timeout is waited out an hour at a time (poll(2) takes an int).
        return max(int(min(wait, 3600.0) * 1000) + 1, 1)

    def _timed_out(self, r: HubRelay, now: float) -> bool:
        moved = sum(r.counts())
        if moved != r.last_moved:
            r.last_moved, r.last_progress = moved, now
            return False
        return r.timeout is not None and now - r.last_progress >= r.timeout

    def _add(self, r: HubRelay) -> None:
        core, relays, free, used = self._core, self._relays, self._free, self._used
        r.ab = Direction(r.a, r.b, self.pool)
        r.ba = Direction(r.b, r.a, self.pool)
        slots = []
        for _ in range(2):
            if free:
                slots.append(free.pop())
            else:
                slots.append(used)
                used += 1
                relays.append(None)
        # A free slot may lie past `used` (shrunk since it was freed): the pump
        # must see every slot in use.
        used = max(used, *(slot + 1 for slot in slots))
        core.grow(used)
        self._used = used
        for slot, d in zip(slots, (r.ab, r.ba), strict=True):
            relays[slot] = r
            s = core.slots[slot]
            s.src, s.dst = d.src_fd, d.dst_fd
            s.pipe_r = s.pipe_w = -1
            s.pipe_size = 0
            s.state = d.state
            s.flags = 0 if d.buffered else HUB_STEP
            s.want, s.ready, s.status = WANT_RUN, 0, 0
        r.slots = (slots[0], slots[1])
        r.last_progress = time.monotonic()
        core.register(r.a.fileno(), _EVENTS, slots[0], slots[1])
        try:
            core.register(r.b.fileno(), _EVENTS, slots[1], slots[0])
        except BaseException:
            core.unregister(r.a.fileno())
            raise

    def _decide(self, r: HubRelay, index: int, reason: int) -> None:
        d = r.ab if index == r.slots[0] else r.ba
        assert d is not None
        s = self._core.slots[index]
        if reason == HUB_STOPPED:
            status = s.status
            if status == STEP_ERROR:
                err = d.state.err
                if err != errno.EINTR:
                    raise oserror(err, "splice")
                s.want = WANT_RUN  # a signal: Python's handlers run in the main thread
                return
            if status == STEP_DST_ZERO:  # a stream socket never takes 0 bytes
                raise OSError(errno.EIO, "splice: destination accepted 0 bytes")
            # End of stream, or the urgent mark: the direction's own step
            # decides (it finds the same condition again).
        elif reason == HUB_EVENT:
            # An error or hang-up on a socket of a parked or ended direction.
            for sock in (r.a, r.b):
                err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    raise oserror(err, "relay")
            if d.done:
                return
        elif reason not in (HUB_NEED_PIPE, HUB_READY):  # pragma: no cover
            raise AssertionError(f"unknown hub report {reason}")
        d.step(self.budget)
        self._sync(s, d)

    @staticmethod
    def _sync(s: Any, d: Direction) -> None:
        """The slot after a step in Python: its pipe, whether C may step it, what it waits for."""
        pipe = d.pipe
        if pipe is None:
            s.pipe_r = s.pipe_w = -1
        else:
            s.pipe_r, s.pipe_w, s.pipe_size = pipe.r, pipe.w, pipe.size
        s.flags = HUB_STEP if (not d.buffered and d.head is None) else 0
        if d.done:
            s.want = WANT_NONE
        elif d.waiting is None:
            s.want = WANT_RUN
        elif d.waiting[1] == POLLIN:
            s.want = WANT_SRC
            s.ready &= ~READY_SRC
        else:
            s.want = WANT_DST
            s.ready &= ~READY_DST

    def _reclaim(self) -> None:
        """Give back the pipes of directions idle with an empty pipe since the last tick."""
        core, relays, idle_seen = self._core, self._relays, self._idle_seen
        for index in range(self._used):
            r = relays[index]
            s = core.slots[index]
            if r is None or s.pipe_r < 0 or s.want != WANT_SRC or s.state.in_pipe:
                idle_seen.pop(index, None)
                continue
            delivered = int(s.state.delivered)
            if idle_seen.get(index) != delivered:
                idle_seen[index] = delivered  # idle since now: give it back next tick
                continue
            d = r.ab if index == r.slots[0] else r.ba
            assert d is not None
            d.close()  # empty: back to the pool
            s.pipe_r = s.pipe_w = -1
            del idle_seen[index]

    def _end(self, r: HubRelay, exc: BaseException | None) -> None:
        """End relay *r*: its slots and fds off the pump, its pipes back, its callback told."""
        if r.finished:
            return
        r.finished = True
        self._live.discard(r)
        core, relays, free = self._core, self._relays, self._free
        if r.slots[0] >= 0:
            for sock in (r.a, r.b):
                try:
                    core.unregister(sock.fileno())
                except (OSError, ValueError, KeyError):
                    pass  # closed under us, or never registered
            for slot in r.slots:
                self._free_slot(core, slot)
                relays[slot] = None
                free.append(slot)
        for d in (r.ab, r.ba):
            if d is not None:
                try:
                    d.close()
                except OSError:  # pragma: no cover - the pool closes what it cannot keep
                    log.debug("relay hub: a pipe failed to close", exc_info=True)
        try:
            if exc is None:
                r.done(r.counts(), None)
            else:
                annotate(exc, r.ab, r.ba)
                r.done(None, exc)
        except Exception:  # a callback's own failure must not stop the hub
            log.exception("zerocopy relay hub: a relay's callback failed")

    @staticmethod
    def _free_slot(core: Any, slot: int) -> None:
        s = core.slots[slot]
        s.state = core.NULL
        s.want, s.flags, s.ready, s.status = WANT_NONE, 0, 0, 0
        s.pipe_r = s.pipe_w = -1
        s.src = s.dst = -1


_default: Hub | None = None
_default_lock = threading.Lock()


def default_hub() -> Hub:
    """The process's hub (one thread), made on first use."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Hub()
        return _default


def relay_on_hub(
    hub: Hub, a: socket.socket, b: socket.socket, timeout: float | None = None
) -> tuple[int, int]:
    """:func:`zerocopy.relay` with the bytes moved by *hub*'s thread; this thread waits.

    The same contract: arguments checked as ``relay`` checks them, the
    sockets left open with their blocking mode restored, every exception
    carrying ``a_to_b``, ``b_to_a`` and ``bytes_transferred``.  An exception
    raised in this thread while it waits (a signal handler's, in the main
    thread) ends the relay on the hub first, so its counts are final.
    """
    from .blocking import check_relay_args

    check_relay_args(a, b, timeout)
    finished = threading.Event()
    box: list[tuple[tuple[int, int] | None, BaseException | None]] = []

    def done(counts: tuple[int, int] | None, exc: BaseException | None) -> None:
        box.append((counts, exc))
        finished.set()

    saved = (a.gettimeout(), b.gettimeout())
    try:
        a.setblocking(False)
        b.setblocking(False)
        handle = hub.start(a, b, timeout, done)
        try:
            finished.wait()
        except BaseException as exc:
            hub.cancel(handle, exc)
            while not finished.wait(1.0):
                pass
            raise
        counts, error = box[0]
        if error is not None:
            raise error
        assert counts is not None
        return counts
    finally:
        a.settimeout(saved[0])
        b.settimeout(saved[1])
