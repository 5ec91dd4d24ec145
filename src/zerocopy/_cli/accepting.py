"""When a shipped server may accept: the connection cap, and the pause when descriptors run out.

Both servers of ``python -m zerocopy`` (``serve`` and ``proxy``) admit
connections through one :class:`AcceptGate`:

* **The cap.**  At most ``max_connections`` connections are open at once.
  At the cap the listener is not accepted from: new clients wait in the
  kernel's listen backlog, and the oldest is taken as soon as a connection
  closes.  Nothing is accepted only to be dropped.  The default comes from
  the descriptor limit, as HAProxy derives its ``maxconn`` from ``ulimit -n``
  (:func:`default_max_connections`).
* **The pause.**  ``accept()`` failing with EMFILE, ENFILE, ENOBUFS or ENOMEM
  (the process's or the system's descriptors, or kernel memory, ran out) is
  no reason to exit or to cut the live connections.  The gate stops
  accepting, logs once for the whole episode, and tries again after a short
  back-off (0.1 s, doubling up to 2 s) or as soon as a connection closes.
  The clients that wait meanwhile stay in the backlog.
* **The reserve.**  While it accepts, the gate holds a few spare descriptors
  (``/dev/null``, opened close-on-exec).  Running out releases them, so a
  live connection can still open the file it serves or the pipe it splices
  through; resuming takes them back first, so the gate resumes only when
  that headroom is there again.  After each accept one more descriptor is
  opened and closed at once: failing that means the accept took the last
  one, and the gate pauses then, before a live connection meets EMFILE.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import resource
import threading
import time

__all__ = [
    "PAUSE_ERRNOS",
    "AcceptGate",
    "FdReserve",
    "add_max_connections",
    "default_max_connections",
    "fd_limit",
]

#: accept() errors that mean "out of descriptors or kernel memory for now":
#: pause and try again, never exit.
PAUSE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})

#: Descriptors kept aside from connections: stdio, the listener, the poll
#: set, the gate's reserve, the pipe pool's idle pipes (up to 8, two each)
#: and what the interpreter opens along the way.
OVERHEAD_FDS = 32

#: A limit reported as unlimited, or larger than this, is taken as this:
#: a thread per connection runs out of memory long before.
_LIMIT_CEILING = 1 << 20

_FIRST_BACKOFF = 0.1
_LAST_BACKOFF = 2.0


def fd_limit() -> int:
    """The process's soft descriptor limit (``ulimit -n``), capped at 2**20."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft > _LIMIT_CEILING:
        return _LIMIT_CEILING
    return int(soft)


def default_max_connections(fds_per_connection: float) -> int:
    """``(ulimit -n - 32) / fds_per_connection``, at least 1: the cap when none is given.

    32 descriptors are kept for the process itself (:data:`OVERHEAD_FDS`).
    HAProxy computes its default ``maxconn`` the same way, from the limit
    minus its own descriptors, over 2 sockets plus half a pipe descriptor per
    connection.
    """
    return max(1, int((fd_limit() - OVERHEAD_FDS) / fds_per_connection))


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"not a whole number >= 0: {text!r}")
    return int(text)


def add_max_connections(
    parser: argparse.ArgumentParser, fds_per_connection: float, what: str
) -> None:
    """Add ``--max-connections N`` to *parser*: 0 for no cap, the default from the fd limit.

    *what* says what one connection holds (for the help text).
    """
    default = default_max_connections(fds_per_connection)
    parser.add_argument(
        "--max-connections",
        type=_count,
        default=default,
        metavar="N",
        help="serve at most N connections at once; more wait in the listen backlog. "
        f"0: no cap (accepting still pauses when descriptors run out). Default: "
        f"(ulimit -n - {OVERHEAD_FDS}) / {fds_per_connection:g}, for {what} per "
        f"connection: {default} with this process's limit of {fd_limit()}",
    )


class FdReserve:
    """*size* spare descriptors (``/dev/null``), held to be given up when descriptors run out."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._fds: list[int] = []

    def take(self) -> bool:
        """Open the reserve; False (holding none) if the descriptors are not there.

        Where ``/dev/null`` cannot be opened at all (a bare chroot), the
        reserve shrinks to nothing rather than keep a paused server paused.
        """
        try:
            while len(self._fds) < self.size:
                self._fds.append(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC))
        except OSError as exc:
            self.release()
            if exc.errno in PAUSE_ERRNOS:
                return False
            self.size = 0
        return True

    def release(self) -> None:
        """Close the reserve, so that live connections can use those descriptors."""
        fds, self._fds = self._fds, []
        for fd in fds:
            os.close(fd)


def _last_descriptor_taken() -> bool:
    """Whether not even one more descriptor can be opened right now (False if unsure)."""
    try:
        os.close(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC))
    except OSError as exc:
        return exc.errno in PAUSE_ERRNOS
    return False


class AcceptGate:
    """Admission for one listener: the cap, the pause on EMFILE and friends, the reserve.

    The accepting thread calls :meth:`wait_open` before it waits on the
    listener, :meth:`accept_failed` when ``accept()`` raises, and
    :meth:`opened` for each connection it took; whoever ends a connection
    calls :meth:`closed`.  Any thread may call :meth:`ran_out`
    when its own ``socket()`` or ``open()`` met EMFILE.
    *max_connections* ``None`` means no cap (only the pause then).
    """

    def __init__(
        self, log: logging.Logger, max_connections: int | None, *, reserve: int = 16
    ) -> None:
        if max_connections is not None and max_connections < 1:
            raise ValueError(f"max_connections must be >= 1 or None, not {max_connections}")
        self.log = log
        self.max_connections = max_connections
        self.live = 0
        self._cond = threading.Condition()
        self._reserve = FdReserve(reserve)
        self._reserve.take()
        self._paused = False  # the listener is not to be accepted from now
        self._episode: float | None = None  # when running out began, until an accept works
        self._retry_at = 0.0
        self._backoff = _FIRST_BACKOFF
        self._at_cap = False

    def wait_open(self, timeout: float) -> bool:
        """Wait up to *timeout* seconds until a connection may be accepted; whether one may."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                now = time.monotonic()
                if self._paused:
                    if now >= self._retry_at:
                        self._try_resume(now)
                        continue
                    wake = min(self._retry_at, deadline)
                elif self.max_connections is not None and self.live >= self.max_connections:
                    if not self._at_cap:
                        self._at_cap = True
                        self.log.info(
                            "at the cap of %d connections: new ones wait in the backlog",
                            self.max_connections,
                        )
                    wake = deadline
                else:
                    return True
                if now >= deadline:
                    return False
                self._cond.wait(wake - now)

    def _try_resume(self, now: float) -> None:
        """Take the reserve back and accept again if that works; else back off longer.

        Called with the lock held, once the back-off ran out or a connection
        closed.  The episode ends at the next successful accept, not here: an
        accept that fails again continues it, without a second log line.
        """
        if self._reserve.take() and not _last_descriptor_taken():
            self._paused = False
            return
        self._reserve.release()
        self._backoff = min(2 * self._backoff, _LAST_BACKOFF)
        self._retry_at = now + self._backoff

    def accept_failed(self, exc: OSError) -> bool:
        """``accept()`` raised *exc*: pause if it is a resource shortage (True), else False."""
        if exc.errno not in PAUSE_ERRNOS:
            return False
        self.ran_out(exc)
        return True

    def ran_out(self, exc: OSError) -> None:
        """Descriptors (or memory, threads) ran out: stop accepting for a back-off.

        Gives up the reserve, so that live connections have descriptors to
        work with; logs once per episode.
        """
        with self._cond:
            self._reserve.release()
            now = time.monotonic()
            if self._episode is None:
                self._episode = now
                self._backoff = _FIRST_BACKOFF
                self.log.warning(
                    "not accepting for now: %s; %d connections open, descriptor limit %d; "
                    "new connections wait in the backlog until descriptors are free",
                    exc.strerror or exc,
                    self.live,
                    fd_limit(),
                )
            elif not self._paused:
                # Resumed, and the next accept failed again: the same episode.
                self._backoff = min(2 * self._backoff, _LAST_BACKOFF)
            if not self._paused:
                self._paused = True
                self._retry_at = now + self._backoff
            self._cond.notify_all()

    def opened(self) -> None:
        """A connection was accepted: count it, check the headroom, end a pause episode.

        An accept that took the last descriptor pauses the gate (the same
        episode, if one is on), so the episode ends, with its one log line,
        only once an accept leaves descriptors to spare.
        """
        with self._cond:
            self.live += 1
        if _last_descriptor_taken():
            self.ran_out(OSError(errno.EMFILE, os.strerror(errno.EMFILE)))
            return
        with self._cond:
            if self._episode is not None:
                self.log.warning(
                    "accepting again after %.1f s, %d connections open",
                    time.monotonic() - self._episode,
                    self.live,
                )
                self._episode = None
                self._backoff = _FIRST_BACKOFF

    def closed(self) -> None:
        """A connection ended: a place under the cap, maybe descriptors to resume with."""
        with self._cond:
            self.live -= 1
            if self.max_connections is None or self.live < self.max_connections:
                self._at_cap = False
            if self._paused:
                self._retry_at = 0.0  # try now rather than at the end of the back-off
            self._cond.notify_all()

    def close(self) -> None:
        """Give the reserve back for good (the server is done)."""
        with self._cond:
            self._reserve.release()
