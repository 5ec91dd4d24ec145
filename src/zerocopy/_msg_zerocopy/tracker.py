"""MSG_ZEROCOPY bookkeeping, no I/O: sequence numbers and what each send holds.

The kernel numbers zero-copy sends per socket (32-bit, wrapping) and reports
their release as inclusive ranges; :class:`CompletionTracker` maps numbers to
what a send holds.  Two senders on one socket share one tracker
(:func:`state_of`), or their numbering would disagree with the kernel's.
"""

from __future__ import annotations

import socket
import threading
import weakref
from typing import Any

__all__ = ["CompletionTracker", "SocketState", "state_of"]

_MASK = 0xFFFFFFFF


class CompletionTracker:
    """Sequence numbers of outstanding zero-copy sends and what each holds.

    Pure bookkeeping, no I/O: :meth:`add` gives the next sequence number to a
    held object, :meth:`complete` releases an inclusive, possibly wrapping
    range and returns the objects released.
    """

    def __init__(self, first_seq: int = 0) -> None:
        self.next_seq = first_seq & _MASK
        self._held: dict[int, Any] = {}

    def __len__(self) -> int:
        return len(self._held)

    def add(self, obj: Any) -> int:
        """Record *obj* under the next sequence number and return that number."""
        seq = self.next_seq
        self._held[seq] = obj
        self.next_seq = (seq + 1) & _MASK
        return seq

    def complete(self, first: int, last: int) -> list[Any]:
        """Release sends ``first..last`` (inclusive, modulo 2**32); return their objects.

        Numbers that are not outstanding (already released, or never issued)
        are ignored, so duplicated or overlapping notifications do no harm.
        """
        span = ((last - first) & _MASK) + 1
        released = []
        if span <= 2 * len(self._held):
            for i in range(span):
                obj = self._held.pop((first + i) & _MASK, None)
                if obj is not None:
                    released.append(obj)
        else:
            for seq in [s for s in self._held if ((s - first) & _MASK) < span]:
                released.append(self._held.pop(seq))
        return released


class SocketState:
    """Per-socket bookkeeping: the kernel numbers sends per socket, not per sender."""

    __slots__ = ("lock", "tracker")

    def __init__(self) -> None:
        self.tracker = CompletionTracker()
        self.lock = threading.RLock()


_states: weakref.WeakKeyDictionary[socket.socket, SocketState] = weakref.WeakKeyDictionary()
_states_lock = threading.Lock()


def state_of(sock: socket.socket) -> SocketState:
    # A second sender on the same socket must continue the kernel's numbering
    # (and may read the first one's completions), so both share this.
    with _states_lock:
        state = _states.get(sock)
        if state is None:
            state = _states[sock] = SocketState()
        return state
