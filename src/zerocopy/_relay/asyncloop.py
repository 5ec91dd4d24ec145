"""The async relay's rounds, whatever event loop waits for them.

The asyncio relay (:mod:`.aio`) and the anyio one (:mod:`.anyio_`) differ
only in how they wait for a few ``(fd, event)`` keys at once, read the clock
and let other tasks run.  Each passes a :class:`KeyWaiter` and a
:class:`Clock` of its own to :func:`relay_rounds`, which holds the rest: which
direction steps when, the idle timeout, and the error watch on a side whose
direction has ended.
"""

from __future__ import annotations

import errno
from typing import Protocol

from .. import _fair
from .._aiowait import ErrorWatch, Key
from .._fair import Turn
from .direction import Direction

__all__ = ["Clock", "KeyWaiter", "relay_rounds"]


class KeyWaiter(Protocol):
    """Readiness of a few ``(fd, select.POLLIN or POLLOUT)`` keys (see ``_aiowait.Waiter``)."""

    #: The keys that fired since the caller last cleared this set.
    fired: set[Key]

    def watch(self, wanted: set[Key]) -> None:
        """Watch exactly the keys in *wanted*."""

    async def wait(self, timeout: float | None = None) -> None:
        """Return when a watched key fires, or after *timeout* seconds."""


class Clock(Protocol):
    """The event loop's clock and its way to let other tasks run."""

    def now(self) -> float:
        """The loop's monotonic time in seconds."""

    async def checkpoint(self) -> None:
        """Let other tasks run (and a cancellation in)."""


async def relay_rounds(
    waiter: KeyWaiter,
    errors: ErrorWatch,
    ab: Direction,
    ba: Direction,
    timeout: float | None,
    clock: Clock,
) -> None:
    """Step both directions until both are done; :class:`TimeoutError` after *timeout* idle."""
    # The fairness rule, for both directions together: see zerocopy._fair.
    turn = Turn(_fair.RELAY_SLICE)
    try:
        await _rounds(waiter, errors, ab, ba, timeout, clock, turn)
    finally:
        turn.close()


async def _rounds(
    waiter: KeyWaiter,
    errors: ErrorWatch,
    ab: Direction,
    ba: Direction,
    timeout: float | None,
    clock: Clock,
    turn: Turn,
) -> None:
    last_progress = clock.now()
    while True:
        if errors.key in waiter.fired:
            errors.check()
        progressed = spent = False
        for d in (ab, ba):
            # Step a direction only when what it waits for fired (or it waits on
            # nothing: first round, or its step budget ran out).
            if not d.done and (d.waiting is None or d.waiting in waiter.fired):
                if spent:
                    d.waiting = None  # the slice is gone: its step comes after the checkpoint
                    continue
                before = d.moved
                progressed |= d.step(turn.left)
                spent = turn.spend(d.moved - before)
        waiter.fired.clear()
        if ab.done and ba.done:
            return
        if progressed:
            last_progress = clock.now()
        live = [d for d in (ab, ba) if not d.done]
        wanted = {d.waiting for d in live if d.waiting is not None}
        # As in the threaded relay, a side whose direction ended is still
        # watched for errors: a reset there must end the relay now, not after
        # the idle timeout (or never, without one).
        errors.watch(ab.src if ab.done else ba.src if ba.done else None)
        if errors.key is not None:
            wanted.add(errors.key)
        waiter.watch(wanted)
        if any(d.waiting is None for d in live):
            await turn.pause(clock.checkpoint)  # out of budget, not blocked: others first
            continue
        left = None
        if timeout is not None:
            left = timeout - (clock.now() - last_progress)
            if left <= 0:
                raise TimeoutError(errno.ETIMEDOUT, "relay: idle timeout")
        turn.waited()
        await waiter.wait(left)
