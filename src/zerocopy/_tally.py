"""Byte counts that a signal handler's exception cannot split from their system call.

CPython runs a Python signal handler between bytecodes of the main thread.  A
handler that raises (``KeyboardInterrupt``, a timeout alarm) right after a
system call returned, but before Python code added the call's result to a
running count, would leave that count short by the whole call: the bytes
reached the destination and ``bytes_transferred`` would not say so.

A :class:`Tally` closes that window.  :meth:`Tally.call` makes the call from C
(``list.extend`` driving ``itertools.starmap``), so the result is in the
tally's log before the next bytecode, and so before any handler, runs.  Code
that catches an exception reads the exact count from :meth:`Tally.total`; the
running counts kept in Python are a fast cache for the normal path.

Only calls of C functions (``os.sendfile``, a cffi shim, ``socket.send``) are
covered: a Python function would run bytecode of its own between the system
call and its return.  Entries below 1 (a cffi shim's -1, a non-blocking
write's ``None``) are ignored by :meth:`Tally.total`.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import starmap
from typing import Any

__all__ = ["Tally"]

# Folding the log into one entry keeps total() cheap; any length works.
_FOLD_AT = 32


class Tally:
    """The results of the calls that delivered bytes, recorded where no handler can intervene."""

    __slots__ = ("log",)

    def __init__(self) -> None:
        self.log: list[Any] = []

    def call(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        """Return ``fn(*args)``, having logged the result before any bytecode runs."""
        log = self.log
        log.extend(starmap(fn, (args,)))
        return log[-1]

    def total(self, since: int = 0) -> int:
        """The bytes the logged calls moved (those from log index *since* on)."""
        return sum(n for n in self.log[since:] if n is not None and n > 0)

    def fold(self) -> None:
        """Keep the log short; never between noting ``len(log)`` and reading ``total(since=)``."""
        log = self.log
        if len(log) > _FOLD_AT:
            # Computed first, stored in one step: a handler raising in
            # between leaves the log as it was, still exact.
            log[:] = (self.total(),)
