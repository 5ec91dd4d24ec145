"""The fairness rule of every transfer that runs on an event loop.

One ``sendfile`` or ``splice`` call keeps going until its count is done
when the receiver is fast (74 MiB per call was measured on loopback), and
the loop does not turn meanwhile: every other client of that loop waits.
nginx bounds each call for the same reason (``sendfile_max_chunk``, 2 MiB).
The rule, applied by every async path (``send_file``, ``relay``, the
MSG_ZEROCOPY sender; asyncio, uvloop and anyio alike):

* one turn of the loop moves at most :data:`SLICE` bytes (1 MiB) in all:
  the transfers that are *busy* (that spent a whole share without waiting
  for their socket) split it, each moving at most its share, and never less
  than :data:`FLOOR` (64 KiB), between two of its turns;
* each kernel call asks for no more than what is left of the task's share
  (:attr:`Turn.left`), and a task whose share is spent lets the other ready
  tasks run (the loop's checkpoint) before it goes on.

Bounding each task alone is not enough: 32 busy bodies of 256 KiB each make
an 8 MiB turn, and a small request waits a few turns (measured: 4 KiB
request p99 of 11 ms beside 32 downloads with a fixed 256 KiB slice, 6 ms
with the shared one).  A task that meets a full socket waits anyway, which
is a turn given up: it is no longer busy, and its share starts again.
Nothing else ready, the checkpoint costs one turn of the loop and a lone
transfer moves a whole slice per call: throughput stays the kernel's.
Blocking forms (a thread of their own) are not bound by it.  An event loop
runs in one thread, so "the transfers of this loop" are those of this
thread.

``ZEROCOPY_LOOP_SLICE`` (bytes; ``K``/``M`` suffixes allowed) sets the
slice for the process, read once at import; see docs/server.md, "Under
load", for how the default was measured.
"""

from __future__ import annotations

import logging
import os
import threading

from ._constants import MAX_RW_COUNT

__all__ = ["FLOOR", "RELAY_FLOOR", "SLICE", "Turn", "parse_slice"]

log = logging.getLogger("zerocopy")

#: The default slice: measured with benchmarks/bench_serve.py against 256 KiB
#: and 512 KiB (docs/benchmarks.md, "Servers under load").
DEFAULT_SLICE = 1024 * 1024
#: Smaller slices cost a turn of the loop per few microseconds of copying.
_MIN_SLICE = 16 * 1024
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


#: Most bytes one turn of an event loop moves in all, its transfers together.
SLICE = _from_environment()
#: The least a busy transfer may move in one turn, however many share it:
#: below that, a turn's own cost (a task switch, a system call) outweighs
#: the copying it bounds.
FLOOR = 64 * 1024
#: A relay's floor: one turn of a relay steps both directions and may
#: register and unregister their keys, about 17 µs more per step than a
#: send.  With 64 KiB shares, 32 busy relays moved 0.56x the bytes at 3.4x
#: the CPU of the old 4 MiB steps; with 1 MiB, 0.87-0.90x at 1.2-1.3x, and
#: the interactive connection's p99 beside them fell from 94-166 ms to
#: 50-66 ms (bench_relay --latency --bulk 32 --before, docs/benchmarks.md).
RELAY_FLOOR = 1024 * 1024


class _Loop(threading.local):
    """The transfers of the event loop that runs in this thread."""

    #: Transfers that spent a whole slice without waiting: those that contend
    #: for the loop's turns right now.
    busy = 0


_here = _Loop()


def _share(floor: int) -> int:
    # A turn of the loop moves at most SLICE bytes in all: each busy transfer
    # gets its part of it, never less than *floor* (below that, the loop's own
    # cost per turn would outweigh the copying it bounds).
    busy = _here.busy
    return SLICE if busy <= 1 else max(min(floor, SLICE), SLICE // busy)


class Turn:
    """The bytes one task may still move before it lets other tasks run.

    ``close()`` when the transfer ends, however it ends.
    """

    __slots__ = ("busy", "floor", "left", "size")

    def __init__(self, floor: int | None = None) -> None:
        self.busy = False
        #: The least share this transfer takes (FLOOR unless its kind of
        #: transfer pays more per turn: see RELAY_FLOOR).
        self.floor = FLOOR if floor is None else floor
        self.size = _share(self.floor)
        #: What the next call may ask for: the rest of this turn's share.
        self.left = self.size

    def spend(self, n: int) -> bool:
        """Count *n* bytes moved; True when the task should let others run now."""
        self.left -= n
        if self.left > 0:
            return False
        if not self.busy:
            self.busy = True
            _here.busy += 1
        self.size = self.left = _share(self.floor)
        return True

    def waited(self) -> None:
        """The task waited for its socket: it gave its turn up, and contends no more."""
        self.close()
        self.size = self.left = _share(self.floor)

    def close(self) -> None:
        """The transfer ended (or waited): it contends no more."""
        if self.busy:
            self.busy = False
            _here.busy -= 1
