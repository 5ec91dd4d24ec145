"""The fairness rule of every transfer that runs on an event loop.

One ``sendfile`` or ``splice`` call keeps going until its count is done
when the receiver is fast (74 MiB per call was measured on loopback), and
the loop does not turn meanwhile: every other client of that loop waits.
nginx bounds each call for the same reason (``sendfile_max_chunk``, 2 MiB).
The rule, applied by every async path (``send_file``, ``relay``, the
MSG_ZEROCOPY sender; asyncio, uvloop and anyio alike):

* each kernel call asks for no more than what is left of the transfer's
  slice (:attr:`Turn.left`): :data:`SLICE` bytes (1 MiB), or
  :data:`RELAY_SLICE` (4 MiB) for a relay's step of both directions;
* a transfer that spent its slice without waiting for its socket is *busy*.
  The busy transfers of a loop take turns: one of them moves per turn of the
  loop, the others wait in line (parked on an event of the loop, which
  costs nothing while they wait), and the next in line gets the turn when
  the one before spent its slice, waits for its socket or ends.  Alone, a
  busy transfer lets the loop turn once (a checkpoint) and goes on;
* a transfer whose socket was full gives its turn up while it waits
  (:meth:`Turn.wait`), and when its socket has room it moves at once only
  if no other transfer holds the turn, or if it is interactive (it moved
  less than :data:`LIGHT`, 64 KiB, before it waited); otherwise it gets in
  line too.

So one turn of the loop carries one slice of bulk work, however many bodies
are busy or come back from waiting at once.
A first version split one slice per turn among the busy transfers (1/n
each): the same bytes per turn, but n calls and n task switches for them;
taking turns made one call of each turn, and beside 32 downloads moved 1.5x
the bytes at half the server's CPU per GiB, and the 4 KiB request's p50 went
from 3 ms to 1 ms (docs/benchmarks.md, "Servers under load").  A second
version let transfers back from waiting move at once, beside the one whose
turn it was: with 32 downloads whose sockets drain together, one turn could
carry dozens of slices, and the 4 KiB request's p99 was 4.4-6.2 ms; getting
in line brought it to 2.5-3.6 ms at the same or better throughput
(docs/benchmarks.md, "Back from waiting, in line").
Nothing else ready, a lone transfer moves a whole slice per call and the
checkpoint costs one turn of the loop: throughput stays the kernel's.

A turn of an asyncio loop costs about 20,000 instructions of Python, and the
send's own calls about as many again: with 1 MiB slices, one download alone
cost uvicorn+zerocopy 1.15-1.17x nginx's server+client CPU per GiB, and
1.10-1.11x with slices that grow to 4 MiB (docs/benchmarks.md, "One
download alone: the slice grows").  So a lone transfer's slice *grows*:
when two checkpoints in a row find the loop idle (no other transfer on the
loop at all, and the turn back within :data:`IDLE_TURN`), its slice doubles,
up to :data:`GROW` times its size; the first sign of other work (a turn that
took longer, another transfer begun) puts it back to one slice at once.  Not
grown beside other transfers even while they wait for their sockets: with 4
downloads, a grown call of the one not waiting put the 4 KiB request's p99
at 4.8 ms in one run of two (1.8 ms without growing).  Two in a row, because
the stretches between a transfer's runs cover every other task's runs once,
but trio runs each batch in random order: a task that runs in every batch
can fall outside one stretch, never outside two in a row.  Whatever arrives while a grown
call runs waits for that one call (4 MiB: about 1.5 ms on loopback here),
then the slice is back to 1 MiB.

Blocking forms (a thread of their own) are not bound by the rule.  An event
loop runs in one thread, so "the transfers of this loop" are those of this
thread.

``ZEROCOPY_LOOP_SLICE`` (bytes; ``K``/``M`` suffixes allowed) sets the
slice for the process, read once at import; see docs/server.md, "Under
load", for how the default was measured.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from ._constants import MAX_RW_COUNT

if TYPE_CHECKING:
    from ._loop import Loop

__all__ = ["GROW", "RELAY_SLICE", "SLICE", "Turn", "parse_slice"]

T = TypeVar("T")

log = logging.getLogger("zerocopy")

#: The default slice: measured with benchmarks/bench_serve.py against 256 KiB
#: and 512 KiB (docs/benchmarks.md, "Servers under load").
DEFAULT_SLICE = 1024 * 1024
#: A transfer that moved less than this before waiting for its socket is
#: interactive: back from the wait, it moves at once instead of getting in
#: line behind the bulk ones (see :meth:`Turn.wait`).
LIGHT = 64 * 1024
#: Smaller slices cost a turn of the loop per few microseconds of copying.
_MIN_SLICE = 16 * 1024
#: A lone transfer's slice grows up to this many times its size (see above):
#: growing to 4 MiB, one download measured 1.105x nginx's server+client CPU
#: per GiB against 1.163x for 1 MiB turns, in the same run.
GROW = 4
#: A checkpoint back within this many seconds found its loop idle.  One bare
#: turn of an asyncio loop takes 5-15 us here; under uvicorn, beside the
#: client and the kernel's receive work on 2 cores, 10-30 us, and 2.5% of
#: them took longer than 100 us (11% longer than 50 us).  A request served in
#: a turn takes 100 us or more.  A loaded machine (a preempted turn) errs on
#: the side of one slice.
IDLE_TURN = 100e-6
_UNITS = {"": 1, "K": 1024, "M": 1024 * 1024}


def parse_slice(text: str) -> int:
    """Bytes from ``"524288"``, ``"512K"`` or ``"2M"``; ValueError otherwise or below 16 KiB."""
    raw = text.strip().upper().removesuffix("B").removesuffix("I")
    unit = raw[-1:] if raw[-1:] in ("K", "M") else ""
    digits = raw[: len(raw) - len(unit)]
    if not digits.isdigit():
        raise ValueError(f"not a size: {text!r}")
    value = min(int(digits) * _UNITS[unit], MAX_RW_COUNT)
    if value < _MIN_SLICE:
        raise ValueError(f"a slice below {_MIN_SLICE} bytes costs more than it saves: {text!r}")
    return value


def _from_environment() -> int:
    text = os.environ.get("ZEROCOPY_LOOP_SLICE")
    if not text:
        return DEFAULT_SLICE
    try:
        return parse_slice(text)
    except ValueError as exc:
        # A bad setting must not stop a server from starting.
        log.warning("ZEROCOPY_LOOP_SLICE ignored (%s); using %d bytes", exc, DEFAULT_SLICE)
        return DEFAULT_SLICE


#: Most bytes one transfer moves in one turn of its event loop.
SLICE = _from_environment()
#: A relay's slice, for both its directions together.  A relay's step costs
#: more Python than a send's (two directions, their keys watched and
#: unwatched); with 1 MiB, 32 busy relays moved 0.84-0.86x the bytes of the
#: old 4 MiB steps, with 4 MiB 0.96-1.03x, and the interactive connection's
#: p99 beside them was 15 ms (HAProxy's: 135-149 ms in the same runs;
#: bench_relay --latency --bulk 32 --before, docs/benchmarks.md).
RELAY_SLICE = 4 * SLICE


class _Loop(threading.local):
    """The busy transfers of the event loop that runs in this thread."""

    def __init__(self) -> None:
        #: The busy transfer whose turn it is (it may move a slice now), if any.
        self.holder: Turn | None = None
        #: Busy transfers parked until their turn, oldest first.
        self.ring: deque[Turn] = deque()
        #: Transfers of this loop not closed yet, busy or not.
        self.live = 0


_here = _Loop()


class Turn:
    """What one transfer may move before it lets other work of its loop run.

    ``left`` is what the next kernel call may ask for.  After each call,
    ``spend(n)``; when it says the slice is spent, ``await pause()``.
    Wait for a socket through ``await wait(...)``; when the transfer ends,
    however it ends, ``close()``.
    """

    __slots__ = ("base", "counted", "idle", "left", "loop", "size", "wake")

    def __init__(self, loop: Loop, size: int | None = None) -> None:
        self.loop = loop
        #: The bytes of one turn: SLICE, or a kind of transfer's own.
        self.base = SLICE if size is None else size
        #: The bytes of this transfer's turns now: ``base``, or up to GROW
        #: times that while it is alone on an idle loop.
        self.size = self.base
        self.left = self.size
        #: Checkpoints in a row that found the loop idle.
        self.idle = 0
        #: Counted in this thread's ``live`` until closed.
        self.counted = loop.shares_thread is not False
        if self.counted:
            _here.live += 1
        #: Set while parked: the call that gives this transfer its turn.
        self.wake: Callable[[], object] | None = None

    def spend(self, n: int) -> bool:
        """Count *n* bytes moved; True when the slice is spent (``pause()`` next)."""
        self.left -= n
        return self.left <= 0

    async def pause(self) -> None:
        """The slice is spent: let the loop turn, and the other busy transfers go first.

        Alone, this is one checkpoint of the loop, and the slice doubles (up
        to GROW times its size) if the loop was idle meanwhile.  Among busy
        transfers, this one parks behind them and the next in line gets the
        turn: one busy transfer moves per turn of the loop, one slice each.
        """
        if self.loop.shares_thread is False:
            self.left = self.size
            return  # a thread of its own (BlockingLoop): nobody to let go first
        here = _here
        if here.holder is None:
            here.holder = self
        if here.holder is self and not here.ring:
            # The thread's clock: uvloop's own counts milliseconds.
            start = time.monotonic()
            await self.loop.checkpoint()
            if here.ring or here.live > 1 or time.monotonic() - start > IDLE_TURN:
                self._shrink()  # others had work: one slice again
            else:
                self.idle += 1
                if self.idle > 1:
                    self.size = min(2 * self.size, GROW * self.base)
                self.left = self.size
            return
        self._shrink()
        if here.holder is self:
            self._pass()
        await self._park()

    def _shrink(self) -> None:
        """Others have work on this loop: back to one slice, no idle turns counted."""
        self.idle = 0
        self.left = self.size = self.base

    def _pass(self) -> None:
        here = _here
        nxt = here.ring.popleft() if here.ring else None
        here.holder = nxt
        if nxt is not None:
            wake, nxt.wake = nxt.wake, None
            assert wake is not None
            wake()

    async def wait(self, waiting: Awaitable[T]) -> T:
        """Await *waiting* (a socket's readiness) with the turn given up; then get in line.

        The turn goes on to the next in line while this transfer waits.  Back
        from the wait, it moves at once if no other transfer holds the turn,
        or if it moved less than :data:`LIGHT` bytes before it waited (an
        interactive connection: a request, an echo); otherwise it parks
        behind the busy ones.
        """
        light = self.size - self.left < LIGHT
        self.left = self.size
        here = _here
        if here.holder is self:
            self._pass()
        result = await waiting
        if self.loop.shares_thread is False:
            return result
        if here.holder is None:
            # Alone still: a grown slice stays grown, but what ran during the
            # wait is not known, so growing further takes two idle turns again.
            here.holder = self
            self.idle = 0
            return result
        self._shrink()  # others are busy: one slice
        if light:
            return result  # interactive: it moved little before it waited, it moves little now
        await self._park()
        return result

    async def _park(self) -> None:
        """Wait in line until :meth:`_pass` gives this transfer the turn."""
        waited, self.wake = self.loop.event()
        _here.ring.append(self)
        try:
            await waited
        except BaseException:
            # Cancelled: parked still, or given the turn it will not take.
            self.close()
            raise

    def close(self) -> None:
        """The transfer ended: it is no longer in line, nor counted (twice is harmless)."""
        here = _here
        if self.counted:
            self.counted = False
            here.live -= 1
        if self.wake is not None:
            self.wake = None
            try:
                here.ring.remove(self)
            except ValueError:
                pass
        if here.holder is self:
            self._pass()
