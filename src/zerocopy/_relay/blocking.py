"""The threaded relay: both directions of two blocking sockets, waiting with poll()."""

from __future__ import annotations

import errno
import select
import socket
import time

from .._errors import oserror
from .._fd import check_timeout, poll_ms
from .direction import Direction, annotate
from .sides import check_distinct

__all__ = ["relay"]


def relay(a: socket.socket, b: socket.socket, *, timeout: float | None = None) -> tuple[int, int]:
    """Copy both directions between connected stream sockets *a* and *b* until both end.

    Bytes go through the kernel with ``splice`` via pooled pipes, one per
    direction while it has bytes in flight (an idle relay holds none).  An end
    of stream from one side becomes ``shutdown(SHUT_WR)`` on the other, and
    the other direction carries on.  Returns ``(a_to_b, b_to_a)``.

    *timeout* is an idle timeout in seconds: if neither direction moves for
    that long, :class:`TimeoutError` is raised (``inf``, like None, never
    expires; a negative or NaN timeout is a :class:`ValueError`, one that is
    not a number a :class:`TypeError`).  *a* and *b* must be two sockets:
    one socket twice, under one fd or two, is a :class:`ValueError`.  A reset or
    error on either side stops both directions and raises it
    (``ConnectionResetError``, ``BrokenPipeError``...).  Every exception out
    of ``relay`` carries the bytes delivered so far as ``a_to_b`` and
    ``b_to_a`` (and the pair as ``bytes_transferred``).  The sockets are left
    open, their blocking mode restored; the caller closes them.
    """
    for name, sock in (("a", a), ("b", b)):
        if not isinstance(sock, socket.socket):
            raise TypeError(f"{name} must be a socket.socket, not {type(sock).__name__}")
        if type(sock) is not socket.socket:
            # ssl.SSLSocket: splice would move ciphertext between the peers.
            raise TypeError(f"{name} must be a plain socket.socket, not {type(sock).__name__}")
        if sock.type != socket.SOCK_STREAM:
            raise ValueError(f"{name} must be a SOCK_STREAM socket")
    check_timeout(timeout, negative=False)
    check_distinct(a, b)
    saved = (a.gettimeout(), b.gettimeout())
    ab: Direction | None = None
    ba: Direction | None = None
    try:
        ab = Direction(a, b)
        ba = Direction(b, a)
        try:
            a.setblocking(False)
            b.setblocking(False)
            _relay_loop(ab, ba, timeout)
        finally:
            ab.close()
            ba.close()
            a.settimeout(saved[0])
            b.settimeout(saved[1])
    except BaseException as exc:
        # Also what the clean-up raised (a signal handler, say): counts on all.
        annotate(exc, ab, ba)
        raise
    return ab.moved, ba.moved


def _relay_loop(ab: Direction, ba: Direction, timeout: float | None) -> None:
    watch = _Watch(ab, ba)
    last_progress = time.monotonic()
    while not (ab.done and ba.done):
        progressed, wants = _step_both(ab, ba)
        if progressed:
            last_progress = time.monotonic()
            continue
        if ab.done and ba.done:
            return
        if timeout is None:
            ms = None
        else:
            left = timeout - (time.monotonic() - last_progress)
            if left <= 0:
                raise TimeoutError(errno.ETIMEDOUT, "relay: idle timeout")
            ms = poll_ms(left)  # None for inf; a long wait is cut short and re-checked
        watch.wait(wants, ms)


def _step_both(ab: Direction, ba: Direction) -> tuple[bool, dict[int, int]]:
    """Step each live direction; whether any moved, and the poll events each fd is wanted for."""
    wants: dict[int, int] = {}
    progressed = False
    for d in (ab, ba):
        if d.done:
            continue
        progressed |= d.step()
        if d.waiting is not None:
            fd, events = d.waiting
            wants[fd] = wants.get(fd, 0) | events
    return progressed, wants


class _Watch:
    """The relay's poll set: registrations change only when what is wanted changes."""

    __slots__ = ("ab", "ba", "hung_up", "poller", "registered")

    def __init__(self, ab: Direction, ba: Direction) -> None:
        self.ab = ab
        self.ba = ba
        self.poller = select.poll()
        self.registered: dict[int, int] = {}
        self.hung_up: set[int] = set()

    def wait(self, wants: dict[int, int], ms: int | None) -> None:
        """Wait up to *ms* for what the directions want; raise an idle side's error."""
        # A side nobody waits on (its direction ended) is still watched for
        # errors, with no events asked: a reset there must end the relay now,
        # not after the idle timeout.  A hang-up alone is reported on every
        # poll, so a side that shows one is not watched again.
        for fd in (self.ab.src_fd, self.ba.src_fd):
            if fd not in wants and fd not in self.hung_up:
                wants[fd] = 0
        for fd in list(self.registered):
            if fd not in wants:
                self.poller.unregister(fd)
                del self.registered[fd]
        for fd, events in wants.items():
            if self.registered.get(fd) != events:
                self.poller.register(fd, events)  # register() also modifies
                self.registered[fd] = events
        for fd, revents in self.poller.poll(ms):
            if not wants.get(fd):
                self._idle_side(fd, revents)

    def _idle_side(self, fd: int, revents: int) -> None:
        # A direction that waits on an fd sees its errors at its next step;
        # an fd only watched for errors is dealt with here.
        if revents & select.POLLERR:
            sock = self.ab.src if fd == self.ab.src_fd else self.ba.src
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                raise oserror(err, "relay")
        if revents & (select.POLLHUP | select.POLLERR | select.POLLNVAL):
            self.hung_up.add(fd)
