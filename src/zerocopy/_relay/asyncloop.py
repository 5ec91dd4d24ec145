"""The async relay's rounds, on any event loop (see :mod:`zerocopy._loop`), or on a hub.

The asyncio relay (:mod:`.aio`) and the anyio one (:mod:`.anyio_`) differ
only in the :class:`~zerocopy._loop.Loop` they pass to :func:`relay_rounds`,
which holds the rest: which direction steps when, the idle timeout, the
fairness rule, and the error watch on a side whose direction has ended.
The threaded relay runs the same rounds on :class:`~zerocopy._loop.BlockingLoop`.
"""

from __future__ import annotations

import errno
import socket

from .. import _fair
from .._errors import oserror
from .._fair import Turn
from .._loop import Key, KeyWaiter, Loop
from .direction import Direction, annotate
from .hub import chosen_hub, relay_via_hub, waker

__all__ = ["relay_rounds", "relay_sockets"]


async def relay_sockets(
    loop: Loop,
    a: socket.socket,
    b: socket.socket,
    timeout: float | None,
    heads: tuple[bytes, bytes] = (b"", b""),
) -> tuple[int, int]:
    """Relay between non-blocking stream sockets *a* and *b* on *loop*; ``(a_to_b, b_to_a)``.

    *heads* are bytes each side's stream read before the relay began, which
    go out first.  The sides are checked and any stream's buffered output
    drained by the caller; every exception carries both counts.

    Where a relay hub can run (see :func:`.hub.chosen_hub`), the hub's
    thread moves the bytes and *loop* only waits for the end; elsewhere
    *loop* runs the rounds below.
    """
    hub = chosen_hub()
    if hub is not None:
        if not loop.shares_thread:  # a blocking caller: it waits, no descriptor needed
            return await relay_via_hub(loop, hub, a, b, timeout, heads)
        efd = waker()  # an event loop hears the end through it
        if efd is not None:
            return await relay_via_hub(loop, hub, a, b, timeout, heads, efd=efd)
    ab: Direction | None = None
    ba: Direction | None = None
    try:
        ab = Direction(a, b, head=heads[0])
        ba = Direction(b, a, head=heads[1])
        await relay_rounds(loop, ab, ba, timeout)
        return ab.moved, ba.moved
    except BaseException as exc:
        annotate(exc, ab, ba)
        raise
    finally:
        for d in (ab, ba):
            if d is not None:
                d.close()


async def relay_rounds(loop: Loop, ab: Direction, ba: Direction, timeout: float | None) -> None:
    """Step both directions until both are done; :class:`TimeoutError` after *timeout* idle."""
    waiter = loop.waiter()
    # The fairness rule, for both directions together: see zerocopy._fair.
    turn = Turn(loop, _fair.RELAY_SLICE)
    try:
        await _rounds(loop, waiter, ab, ba, timeout, turn)
    finally:
        turn.close()
        waiter.close()


async def _rounds(
    loop: Loop,
    waiter: KeyWaiter,
    ab: Direction,
    ba: Direction,
    timeout: float | None,
    turn: Turn,
) -> None:
    last_progress = loop.now()
    hung_up: set[int] = set()  # ended sides that showed a hang-up: not watched again
    idle: Key | None = None  # the errors-only key of a side whose direction ended
    while True:
        if idle is not None and idle in waiter.fired:
            _check_idle_side(ab.src if ab.done else ba.src, hung_up)
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
            last_progress = loop.now()
        live = [d for d in (ab, ba) if not d.done]
        wanted = {d.waiting for d in live if d.waiting is not None}
        # A side whose direction ended is still watched, for errors only: a
        # reset there must end the relay now, not after the idle timeout (or
        # never, without one).  A hang-up alone is reported on every wait, so
        # a side that showed one is not watched again.
        ended = ab.src if ab.done else ba.src if ba.done else None
        idle = None if ended is None or ended.fileno() in hung_up else (ended.fileno(), 0)
        if idle is not None:
            wanted.add(idle)
        waiter.watch(wanted)
        if any(d.waiting is None for d in live):
            await turn.pause()  # out of budget, not blocked: others first
            continue
        left = None
        if timeout is not None:
            left = timeout - (loop.now() - last_progress)
            if left <= 0:
                raise TimeoutError(errno.ETIMEDOUT, "relay: idle timeout")
        await turn.wait(waiter.wait(left))  # the turn given up meanwhile


def _check_idle_side(sock: socket.socket, hung_up: set[int]) -> None:
    """Raise the pending error of an ended side's socket; else note its hang-up."""
    err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if err:
        raise oserror(err, "relay")
    hung_up.add(sock.fileno())
