"""The fairness rule of every transfer that runs on an event loop.

One ``sendfile`` or ``splice`` call keeps going until its count is done
when the receiver is fast (74 MiB per call was measured on loopback), and
the loop does not turn meanwhile: every other client of that loop waits.
nginx bounds each call for the same reason (``sendfile_max_chunk``, 2 MiB).
The rule, applied by every async path (``send_file``, ``relay``, the
MSG_ZEROCOPY sender; asyncio, uvloop and anyio alike):

* a task moves at most :data:`SLICE` bytes between two waits: each kernel
  call asks for no more than what is left of the slice (:attr:`Turn.left`),
  and a task whose slice is spent lets the other ready tasks run (the
  loop's checkpoint) before it goes on.

A task that meets a full socket waits anyway, which is a turn given up, so
the count starts again.  Nothing else is ready, the checkpoint costs one
turn of the loop: throughput stays the kernel's.  Blocking forms (a thread
of their own) are not bound by it.

``ZEROCOPY_LOOP_SLICE`` (bytes; ``K``/``M`` suffixes allowed) sets the
slice for the process, read once at import; see docs/server.md, "Under
load", for how the default was measured.
"""

from __future__ import annotations

import logging
import os

from ._constants import MAX_RW_COUNT

__all__ = ["SLICE", "Turn", "parse_slice"]

log = logging.getLogger("zerocopy")

#: The default slice.  Measured with benchmarks/bench_serve.py (docs/benchmarks.md).
DEFAULT_SLICE = 512 * 1024
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


#: Most bytes one kernel call moves on an event loop, and most bytes a task
#: moves before it lets other tasks run.
SLICE = _from_environment()


class Turn:
    """The bytes one task may still move before it lets other tasks run."""

    __slots__ = ("left", "size")

    def __init__(self) -> None:
        self.size = SLICE  # read at the transfer's start, so a test can change it
        #: What the next call may ask for: the rest of this turn's slice.
        self.left = self.size

    def spend(self, n: int) -> bool:
        """Count *n* bytes moved; True when the task should let others run now."""
        self.left -= n
        if self.left > 0:
            return False
        self.left = self.size
        return True

    def waited(self) -> None:
        """The task waited for its socket: it gave its turn up, the count starts again."""
        self.left = self.size
