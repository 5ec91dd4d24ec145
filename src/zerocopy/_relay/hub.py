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

import contextlib
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
    EPOLLPRI,
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
    READY_URG,
    STEP_DST_ZERO,
    STEP_ERROR,
    WANT_DST,
    WANT_NONE,
    WANT_RUN,
    WANT_SRC,
)
from .._errors import oserror, relay_counts, set_relay_counts
from .._loop import BlockingLoop, Loop, wait_key
from .._pipes import PipePool
from .direction import Direction, annotate

__all__ = [
    "BUDGET",
    "ENGINE",
    "IDLE_TICK",
    "MAX_HUBS",
    "Hub",
    "HubRelay",
    "available",
    "chosen_hub",
    "close_default_hubs",
    "default_hub",
    "relay_on_hub",
    "relay_via_hub",
    "waker",
]

log = logging.getLogger("zerocopy")

#: Most bytes one direction moves per round of the pump (the fairness rule):
#: a relay's slice, as :data:`zerocopy._fair.RELAY_SLICE`.  Measured against
#: 1 and 2 MiB at 32 connections beside one HAProxy thread: 0.96-1.00x its
#: throughput at 1.18-1.24x its CPU, against 0.89-0.92x at 1.18-1.28x
#: (docs/benchmarks.md, "One hub against one HAProxy thread, round budget").
BUDGET = 4 * 1024 * 1024
#: A direction that moved nothing for this long with its pipe empty gives the pipe back.
IDLE_TICK = 0.05
#: How often each relay's descriptors are checked to still name its sockets.
FD_CHECK = 0.5
#: Rounds of the pump per C call when nothing needs a decision.
MAX_ROUNDS = 4096
#: Each socket's registration: both ways, hang-ups, urgent data, edge-triggered.
_EVENTS = EPOLLIN | EPOLLOUT | EPOLLPRI | EPOLLRDHUP | EPOLLET


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
        "heads",
        "ids",
        "last_moved",
        "last_progress",
        "slots",
        "timeout",
    )

    def __init__(
        self,
        a: socket.socket,
        b: socket.socket,
        timeout: float | None,
        done: Done,
        heads: tuple[bytes, bytes] = (b"", b""),
    ) -> None:
        self.a, self.b, self.timeout, self.done = a, b, timeout, done
        self.heads = heads
        self.ids: tuple[tuple[int, int], ...] = ()
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

    A hub keeps the backend current when it was made: its pump and every
    relay state belong to that backend, whatever ``_backend.use()`` says later.
    """

    def __init__(self, pool: PipePool | None = None, *, budget: int | None = None) -> None:
        self.pool = pool
        self.budget = BUDGET if budget is None else budget
        self.backend = _backend.current()
        self._lock = threading.Lock()
        self._incoming: list[HubRelay] = []
        self._cancels: list[HubRelay] = []
        self._thread: threading.Thread | None = None
        self._wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        try:
            # Made here, not in the thread: a hub that cannot run (no epoll,
            # no descriptor left) says so to whoever makes it.
            self._core: Any = self.backend.HubCore()
        except BaseException:
            os.close(self._wake_fd)
            raise
        self._closed = False
        self._stopped = False  # the wake-up eventfd is closed
        #: Relays started and not yet ended (how busy the hub is).
        self.load = 0

    # -- the caller's side (any thread) --------------------------------------------------

    def start(
        self,
        a: socket.socket,
        b: socket.socket,
        timeout: float | None,
        done: Done,
        heads: tuple[bytes, bytes] = (b"", b""),
    ) -> HubRelay:
        """Relay *a* and *b* on the hub; *done* is called once when the relay ends.

        *heads* are bytes each side's stream read before the relay began,
        delivered first (and counted).
        """
        relay = HubRelay(a, b, timeout, done, heads)
        with self._lock:
            if self._closed:
                raise RuntimeError("the relay hub is closed")
            self._incoming.append(relay)
            self.load += 1
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
                os.close(self._wake_fd)
                self._core.close()
        if thread is None:
            return
        self._wake()
        if thread is not threading.current_thread():
            thread.join()

    def forget_after_fork(self) -> None:
        """In a forked child: close what the parent's hub held; this copy never runs."""
        with self._lock:
            self._closed = True
            if self._stopped:
                return
            self._stopped = True
            with contextlib.suppress(OSError):
                os.close(self._wake_fd)
        with contextlib.suppress(OSError):
            self._core.close()

    def _wake(self) -> None:
        with self._lock:
            if self._stopped:
                return  # its descriptors are closed (their numbers may be reused)
            try:
                os.eventfd_write(self._wake_fd, 1)
            except BlockingIOError:
                pass  # a wake-up is pending already

    # -- the hub's thread -----------------------------------------------------------------

    def _run(self) -> None:
        self._relays: list[HubRelay | None] = []  # by slot: the relay each slot belongs to
        self._free: list[int] = []
        self._used = 0
        self._live: set[HubRelay] = set()
        self._idle_seen: dict[int, int] = {}  # slot -> delivered when last seen idle with a pipe
        last_tick = self._fds_checked = time.monotonic()
        self._core.register(self._wake_fd, EPOLLIN, -1, -1)
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
                os.close(self._wake_fd)

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
        """Every IDLE_TICK: idle pipes back to the pool, idle timeouts; every FD_CHECK, fds."""
        self._reclaim()
        for r in list(self._live):
            if self._timed_out(r, now):
                self._end(r, TimeoutError(errno.ETIMEDOUT, "relay: idle timeout"))
        if now - self._fds_checked >= FD_CHECK:
            self._fds_checked = now
            self._check_fds()

    def _check_fds(self) -> None:
        """End the relays whose descriptors were closed or now name another file.

        ``dup2`` over a relayed socket's fd (or closing it) takes the socket
        out of the epoll set without a word: nothing would wake its
        directions again.  The threaded and asyncio relays meet the new file
        at their next wait; here each direction is stepped once more, so the
        relay ends with the kernel's own error for that file, as theirs do.
        """
        for r in list(self._live):
            try:
                if _identities(r.a, r.b) == r.ids:
                    continue
                for d in (r.ab, r.ba):
                    if d is not None and not d.done:
                        d.step(self.budget)
                raise OSError(errno.EBADF, "relay: a socket's descriptor names another file now")
            except BaseException as exc:  # noqa: BLE001 - it goes to the relay's caller
                self._end(r, exc)

    def _drain_wake(self) -> None:
        try:
            os.eventfd_read(self._wake_fd)
        except BlockingIOError:
            pass

    def _holding(self) -> bool:
        """Whether a direction holds a pipe (to give back once idle, perhaps within the wait)."""
        core = self._core
        return any(s.state != core.NULL and s.pipe_r >= 0 for s in core.slots[0 : self._used])

    def _timeout_ms(self, now: float, pipes_held: bool) -> int:
        wait = IDLE_TICK if pipes_held else FD_CHECK if self._live else None
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
        r.ab = Direction(r.a, r.b, self.pool, head=r.heads[0], backend=self.backend)
        r.ba = Direction(r.b, r.a, self.pool, head=r.heads[1], backend=self.backend)
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
            s.flags = self._flags(d)
            s.want, s.ready, s.status = WANT_RUN, 0, 0
        r.slots = (slots[0], slots[1])
        r.ids = _identities(r.a, r.b)
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
        s.flags = Hub._flags(d)
        if d.done:
            s.want = WANT_NONE
        elif d.waiting is None:
            s.want = WANT_RUN
        elif d.waiting[1] == POLLIN:
            s.want = WANT_SRC
            if s.ready & READY_URG:
                # Urgent data showed, and a step that read bytes stopped with
                # EAGAIN, perhaps at the mark (no edge comes again once every
                # byte is here): one more step, which reads nothing there and
                # so looks for the mark.  Once: the hint is used up.
                s.ready = (s.ready & ~READY_URG) | READY_SRC
            else:
                s.ready &= ~READY_SRC
        else:
            s.want = WANT_DST
            s.ready &= ~READY_DST

    @staticmethod
    def _flags(d: Direction) -> int:
        """Whether the pump may step *d*: not while a head waits to go out, nor without splice."""
        return HUB_STEP if (not d.buffered and d.head is None) else 0

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
        with self._lock:
            self.load -= 1
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


def _identities(*socks: socket.socket) -> tuple[tuple[int, int], ...]:
    """What each socket's fd names: (device, inode); OSError (EBADF) once it is closed."""
    out = []
    for sock in socks:
        st = os.fstat(sock.fileno())
        out.append((st.st_dev, st.st_ino))
    return tuple(out)


_defaults: dict[str, list[Hub]] = {}
_default_lock = threading.Lock()

#: Most default hubs per backend: one per CPU, as HAProxy runs a thread per
#: core, up to this many.
MAX_HUBS = 4

#: Where relays run when no hub is named: "hub" (the backend's default hubs,
#: where one can run) or "rounds" (each relay waits in its own thread or task).
ENGINE = "hub"


def default_hub() -> Hub:
    """The least busy of the process's hubs for the current backend; a new one if all are busy.

    A backend gets up to one hub per CPU (at most :data:`MAX_HUBS`), each a
    thread, made when every hub it has carries relays: one relay runs on
    one hub, many spread over the CPUs as a thread per core would.
    """
    backend = _backend.current()
    with _default_lock:
        hubs = _defaults.setdefault(backend.NAME, [])
        idlest = min(hubs, key=lambda h: h.load, default=None)
        if idlest is None or (idlest.load and len(hubs) < _hub_count()):
            idlest = Hub()
            hubs.append(idlest)
        return idlest


def _hub_count() -> int:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(cpus or 1, MAX_HUBS))


def chosen_hub() -> Hub | None:
    """The hub a relay runs on when none is named; None: the relay runs its own rounds.

    That is the way off Linux (no epoll), with ``ENGINE = "rounds"``, and
    when the descriptors run out: a hub needs two (its epoll set and wake-up
    eventfd), while the rounds need none until bytes flow.  The next relay
    tries again.
    """
    if ENGINE != "hub" or not available():
        return None
    try:
        return default_hub()
    except OSError as exc:
        log.debug("zerocopy: no relay hub (%s); this relay runs its own rounds", exc)
        return None


def waker() -> int | None:
    """An eventfd for an event loop to hear a hub relay's end on; None if none can be had."""
    try:
        return os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
    except OSError as exc:
        log.debug("zerocopy: no eventfd for a hub relay (%s); it runs its own rounds", exc)
        return None


def close_default_hubs() -> None:
    """Close every default hub (their relays end with ConnectionAbortedError); tests use it.

    The next relay starts a new one.
    """
    with _default_lock:
        hubs = [hub for each in _defaults.values() for hub in each]
        _defaults.clear()
    for hub in hubs:
        hub.close()


def _forget_hubs_after_fork() -> None:
    # A child has the hubs' objects but not their threads: relays started
    # there would wait forever.  It starts hubs of its own instead; the
    # parent's descriptors are closed here, in the child only.
    global _default_lock
    _default_lock = threading.Lock()
    for hubs in _defaults.values():
        for hub in hubs:
            hub.forget_after_fork()
    _defaults.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_hubs_after_fork)


class _Ending:
    """How the caller of :func:`relay_via_hub` hears a hub relay's end.

    The hub calls :meth:`done` in its thread; the caller awaits :meth:`wait`:
    on an event loop, an eventfd it watches through its ``Loop``; on
    :class:`~zerocopy._loop.BlockingLoop`, a plain wait (the thread has
    nothing else to do, and a signal handler's exception interrupts it).
    """

    def __init__(self, loop: Loop, efd: int | None) -> None:
        self.box: list[tuple[tuple[int, int] | None, BaseException | None]] = []
        self.finished = threading.Event()
        if efd is None and loop.shares_thread:
            efd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self.efd = efd
        try:
            self.waiter = None if efd is None else loop.waiter()
        except BaseException:  # anyio's waiter makes an epoll set: EMFILE
            if efd is not None:
                os.close(efd)
            raise

    def done(self, counts: tuple[int, int] | None, exc: BaseException | None) -> None:
        # In this order: the waiter wakes only with the result in the box, and
        # closes the eventfd only once `finished` says this call is past it.
        self.box.append((counts, exc))
        if self.efd is not None:
            os.eventfd_write(self.efd, 1)
        self.finished.set()

    async def wait(self) -> None:
        if self.waiter is not None and self.efd is not None:
            while not self.box:
                await wait_key(self.waiter, (self.efd, POLLIN))
        # The result may be in the box before the eventfd is written: wait
        # (microseconds) until done() is past it.
        self.finished.wait()

    def settle(self, exc: BaseException) -> None:
        """After a cancel: wait for the relay's end and put its final counts on *exc*."""
        while not self.finished.wait(1.0):
            pass
        counts, error = self.box[0]
        if error is None:  # it had ended just before: its counts are final
            assert counts is not None
            set_relay_counts(exc, *counts)
        elif error is not exc and (moved := relay_counts(error)) is not None:
            set_relay_counts(exc, *moved)  # it had failed just before: its counts

    def result(self) -> tuple[int, int]:
        counts, error = self.box[0]
        if error is not None:
            raise error
        assert counts is not None
        return counts

    def close(self) -> None:
        if self.waiter is not None:
            self.waiter.close()
        if self.efd is not None:
            os.close(self.efd)


async def relay_via_hub(
    loop: Loop,
    hub: Hub,
    a: socket.socket,
    b: socket.socket,
    timeout: float | None,
    heads: tuple[bytes, bytes] = (b"", b""),
    *,
    efd: int | None = None,
) -> tuple[int, int]:
    """Relay non-blocking sockets *a* and *b* on *hub*, waiting for its end on *loop*.

    On an event loop (``loop.shares_thread``) the loop hears from the hub
    once, when the relay ends, through *efd*, an eventfd it watches like any
    socket (made here if not given; this call closes it).  On
    :class:`~zerocopy._loop.BlockingLoop` the caller's thread has nothing
    else to do and simply waits.  An exception raised while it waits (a
    cancellation, a signal handler's) ends the relay on the hub first, so
    the counts on it are final; every exception carries ``a_to_b``,
    ``b_to_a`` and ``bytes_transferred``.
    """
    try:
        ending = _Ending(loop, efd)
        try:
            handle = hub.start(a, b, timeout, ending.done, heads)
        except BaseException:
            ending.close()
            raise
    except BaseException as exc:
        annotate(exc, None, None)  # nothing moved
        raise
    try:
        try:
            await ending.wait()
        except BaseException as exc:
            hub.cancel(handle, exc)
            ending.settle(exc)
            raise
    finally:
        ending.close()
    return ending.result()


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
    from .blocking import run_on_sockets  # blocking -> asyncloop -> here: not at import

    return run_on_sockets(a, b, timeout, lambda: relay_via_hub(BlockingLoop(), hub, a, b, timeout))
