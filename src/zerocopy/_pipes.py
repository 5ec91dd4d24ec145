"""The pipe pool: pipes kept for splice between two non-pipe fds.

Every pipe costs two fds and its buffer, so the pool is bounded.  Pipes are
created ``O_CLOEXEC`` (``os.pipe`` does that) and sized up to 1 MiB, within
``/proc/sys/fs/pipe-max-size``: a default 64 KiB pipe makes splice many times
slower.  A pipe that still holds data is closed, never reused: its pages may
belong to a file (Dirty Pipe, CVE-2022-0847) and its bytes to another copy.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from typing import Any

try:
    import fcntl
except ImportError:  # Windows: no fcntl (what needs it has a fallback there)
    fcntl = None  # type: ignore[assignment]
try:
    import termios
except ImportError:  # Windows
    termios = None  # type: ignore[assignment]

__all__ = ["Pipe", "PipePool", "default_pool"]

_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
_F_GETPIPE_SZ = getattr(fcntl, "F_GETPIPE_SZ", 1032)
_WANTED_SIZE = 1 << 20


def _pipe_max_size() -> int:
    try:
        with open("/proc/sys/fs/pipe-max-size", encoding="ascii") as f:
            return int(f.read())
    except (OSError, ValueError):
        return _WANTED_SIZE


class Pipe:
    """One pipe: ``r`` and ``w`` are its fds, ``size`` its capacity in bytes.

    ``holder`` is the object that took it with :meth:`PipePool.take`, until
    it gives it back (None for a pooled pipe or one from :meth:`acquire`).
    """

    __slots__ = ("holder", "r", "size", "w")

    def __init__(self, r: int, w: int, size: int) -> None:
        self.r = r
        self.w = w
        self.size = size
        self.holder: object | None = None

    def queued(self) -> int:
        """Bytes waiting in the pipe (``FIONREAD``)."""
        raw = fcntl.ioctl(self.r, termios.FIONREAD, b"\0\0\0\0")
        return int.from_bytes(raw, "little", signed=True)

    def close(self) -> None:
        for fd in (self.r, self.w):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.r = self.w = -1


class PipePool:
    """A thread-safe, bounded pool of pipes for splice.

    *maxsize* bounds the idle pipes kept (each holds two fds); *pipe_size* is
    the capacity asked for, capped at ``pipe-max-size``; a pipe that came out
    smaller (the per-user pipe budget) is used but not kept.  :meth:`lease` lends
    a pipe for a ``with`` block and takes it back only if it is empty.
    """

    def __init__(self, maxsize: int = 8, pipe_size: int = _WANTED_SIZE) -> None:
        if maxsize < 0:
            raise ValueError(f"maxsize must be >= 0, not {maxsize}")
        if pipe_size <= 0:
            raise ValueError(f"pipe_size must be > 0, not {pipe_size}")
        self.maxsize = maxsize
        self.pipe_size = min(pipe_size, _pipe_max_size())
        self._idle: list[Pipe] = []
        self._lock = threading.Lock()

    def _new(self) -> Pipe:
        r, w = os.pipe()  # O_CLOEXEC: os.pipe uses pipe2(O_CLOEXEC)
        if fcntl is None:
            return Pipe(r, w, 4096)  # Windows: nothing splices from it; never sized
        try:
            size = fcntl.fcntl(w, _F_SETPIPE_SZ, self.pipe_size)
        except OSError:
            # EPERM past the per-user pipe-page budget (pipe-user-pages-soft):
            # the small pipe the kernel gave still works, and is not pooled.
            size = fcntl.fcntl(w, _F_GETPIPE_SZ)
        return Pipe(r, w, size)

    def _keeps(self, pipe: Pipe) -> bool:
        """Whether the pool keeps this empty pipe: a full-sized one, while there is room.

        A pipe made small by the per-user budget is closed rather than kept,
        so that the pipes made once the budget has room again are full-sized.
        Called with the lock held.
        """
        return pipe.size >= self.pipe_size and len(self._idle) < self.maxsize

    def acquire(self) -> Pipe:
        """Return an empty pipe; raises :class:`OSError` (EMFILE...) if none can be made."""
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return self._new()

    def take(self, holder: Any) -> Pipe:
        """Give *holder* an empty pipe, as ``holder.pipe``, and return it.

        For a relay direction, which takes and gives back a pipe at every
        burst.  A signal handler's exception can strike after any call
        returns.  So ``holder.pipe`` is set before the pipe leaves the idle
        list, and the pipe always has an owner that :meth:`release` can find.
        The pipe is also marked as the holder's, so a release after a
        hand-over that was cut short cannot pool a pipe that someone else
        has taken since.  Raises :class:`OSError` (EMFILE...) if no pipe can
        be made.
        """
        with self._lock:
            idle = self._idle
            if idle:
                pipe = idle[-1]
                pipe.holder = holder
                holder.pipe = pipe
                idle.pop()
                return pipe
        pipe = self._new()
        pipe.holder = holder
        holder.pipe = pipe
        return pipe

    def release(self, pipe: Pipe, holder: object | None = None) -> None:
        """Take *pipe* back if it is empty and there is room; close it otherwise.

        *holder* is who took it with :meth:`take` (None after :meth:`acquire`).
        A pipe no longer theirs (given back already, maybe taken by another
        since) is left alone.
        """
        with self._lock:
            if pipe.holder is not holder:
                return
            if any(p is pipe for p in self._idle):
                pipe.holder = None  # pooled by a give_back that was cut short
                return
        try:
            empty = pipe.r >= 0 and pipe.queued() == 0
        except OSError:
            empty = False
        if empty:
            self.give_back(pipe)
        else:
            pipe.close()

    def give_back(self, pipe: Pipe) -> None:
        """Take back *pipe*, which the caller knows is empty, without asking the kernel.

        For a relay direction whose pipe just drained: it keeps no pipe while
        idle.  The pipe is pooled if there is room and closed otherwise.  The
        holder clears its ``pipe`` after this returns; if an exception comes
        in between, its :meth:`release` of the pipe is a no-op.
        """
        with self._lock:
            if self._keeps(pipe):
                self._idle.append(pipe)  # then no holder: a cut here leaves it to release()
                pipe.holder = None
                return
        pipe.close()

    @contextlib.contextmanager
    def lease(self) -> Iterator[Pipe]:
        """Lend a pipe for the ``with`` block; a pipe left with data is closed."""
        pipe = self.acquire()
        try:
            yield pipe
        finally:
            self.release(pipe)

    def clear(self) -> None:
        """Close every idle pipe."""
        with self._lock:
            idle, self._idle = self._idle, []
        for pipe in idle:
            pipe.close()

    def close_after_fork(self) -> None:
        """Close every idle pipe without the lock (a child's: another thread may have held it)."""
        for pipe in list(self._idle):
            pipe.close()

    def __len__(self) -> int:
        with self._lock:
            return len(self._idle)


_default: PipePool | None = None
_default_lock = threading.Lock()


def default_pool() -> PipePool:
    """Return the process-wide pool (created on first use)."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = PipePool()
    return _default


def _after_fork() -> None:
    # A child must not hand out pipes its parent also uses: close its copies.
    # No lock: another thread may have held it at fork time.
    global _default
    pool, _default = _default, None
    if pool is not None:
        pool.close_after_fork()


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork either
    os.register_at_fork(after_in_child=_after_fork)
