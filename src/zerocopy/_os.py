"""The os backend: the same calls over the :mod:`os` module.

Used where the compiled module is missing, or when ``ZEROCOPY_BACKEND=os``.
``sendfile``, ``splice`` and ``copy_file_range`` are the kernel's own calls
through :mod:`os` (which already retries EINTR, PEP 475).  ``vmsplice`` is
emulated with :func:`os.writev`: same bytes, same errors for non-pipes, but
the data is copied rather than mapped.  ``tee`` cannot be reached at all.

Off Linux (macOS, the BSDs, Windows) this is the only backend, and a call
the :mod:`os` module lacks raises :class:`UnsupportedOperation` (ENOSYS, one
of the "cannot start here" errnos), so every capability falls back to what
its stdlib counterpart does.  Each call is chosen at import by what :mod:`os`
offers, not by platform name; ``sendfile`` counts as present only with
Linux's semantics (an offset of None, any destination fd): the BSDs' and
macOS's take sockets only and refuse None (:func:`linux_sendfile`).
"""

from __future__ import annotations

import errno
import os
import select
import socket
import stat
import time
from collections.abc import Sequence
from typing import Any

from ._constants import (
    EPOLLERR,
    EPOLLHUP,
    EPOLLIN,
    EPOLLOUT,
    EPOLLPRI,
    EPOLLRDHUP,
    HUB_EVENT,
    HUB_NEED_PIPE,
    HUB_READY,
    HUB_STEP,
    HUB_STOPPED,
    HUB_WOKEN,
    READY_DST,
    READY_SRC,
    READY_URG,
    SPLICE_F_NONBLOCK,
    STEP_DST_FULL,
    STEP_DST_ZERO,
    STEP_ERROR,
    STEP_SPENT,
    STEP_SRC_EMPTY,
    STEP_SRC_END,
    WANT_DST,
    WANT_NONE,
    WANT_RUN,
    WANT_SRC,
)
from ._errors import UnsupportedOperation, oserror, reraise_as
from ._tally import Tally

__all__ = [
    "NAME",
    "HubCore",
    "copy_file_range",
    "copy_file_range_at_positions",
    "probe",
    "relay_state",
    "relay_step",
    "send",
    "sendfile",
    "splice",
    "tee",
    "vmsplice",
]

NAME = "os"

#: What :mod:`os` offers here (the simulated platforms of the tests hide them).
HAS_SPLICE = hasattr(os, "splice")
HAS_COPY_FILE_RANGE = hasattr(os, "copy_file_range")


def _call(tally: Tally | None, fn: Any, *args: Any) -> int:
    # os's calls retry EINTR themselves (PEP 475); a tally records the result.
    return fn(*args) if tally is None else tally.call(fn, args)  # type: ignore[no-any-return]


def linux_sendfile() -> bool:
    """Whether :func:`os.sendfile` has Linux's semantics (checked once, at import).

    Linux's takes an offset of None and any destination fd; the BSDs' and
    macOS's (sockets only, headers and trailers) refuse None with a
    :class:`TypeError` before any system call.  On Linux the check is one
    ``sendfile(-1, -1, None, 0)`` that fails with EBADF.
    """
    if not hasattr(os, "sendfile"):
        return False
    try:
        os.sendfile(-1, -1, None, 0)
    except TypeError:
        return False
    except OSError:
        return True
    return True  # pragma: no cover - fd -1 is never valid


def _missing(call: str) -> UnsupportedOperation:
    return UnsupportedOperation(call, f"the os module of this platform has no {call}(2)")


#: os.sendfile with Linux's semantics.
HAS_SENDFILE = linux_sendfile()

if HAS_SENDFILE:

    def sendfile(
        out_fd: int, in_fd: int, offset: int | None, count: int, tally: Tally | None = None
    ) -> int:
        try:
            return _call(tally, os.sendfile, out_fd, in_fd, offset, count)
        except OSError as exc:
            raise reraise_as(exc, "sendfile") from None

else:

    def sendfile(
        out_fd: int, in_fd: int, offset: int | None, count: int, tally: Tally | None = None
    ) -> int:
        # None here, or BSD semantics (sockets only): send_file and the copies
        # give up before a byte moved and read and write instead.
        raise _missing("sendfile")


def splice(
    src: int,
    dst: int,
    count: int,
    offset_src: int | None,
    offset_dst: int | None,
    flags: int,
    tally: Tally | None = None,
) -> int:
    if not HAS_SPLICE:
        raise _missing("splice")
    try:
        return _call(tally, os.splice, src, dst, count, offset_src, offset_dst, flags)
    except OSError as exc:
        raise reraise_as(exc, "splice") from None


def tee(src: int, dst: int, count: int, flags: int) -> int:
    raise UnsupportedOperation("tee", "the os backend cannot call tee(2); use the cffi backend")


def copy_file_range(
    src: int,
    dst: int,
    count: int,
    offset_src: int | None = None,
    offset_dst: int | None = None,
    tally: Tally | None = None,
) -> int:
    if not HAS_COPY_FILE_RANGE:
        raise _missing("copy_file_range")
    try:
        return _call(tally, os.copy_file_range, src, dst, count, offset_src, offset_dst)
    except OSError as exc:
        raise reraise_as(exc, "copy_file_range") from None


#: copy_file_range at the files' positions, as the cffi backend's: no frame of
#: ours.  None where :mod:`os` has none: copyfile is then shutil.copyfile,
#: with the platform's own fast path (fcopyfile on macOS).
copy_file_range_at_positions: Any = getattr(os, "copy_file_range", None)


# A pipe that polls writable has at least one free slot, and a write of at
# most one page always fits one slot (pipe(7)): such a write never blocks.
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _writable(fd: int, timeout_ms: int | None) -> bool:
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return bool(poller.poll(timeout_ms))


def vmsplice(fd: int, buffers: Sequence[Any], flags: int) -> int:
    if not (hasattr(os, "writev") and hasattr(select, "poll")):
        raise _missing("vmsplice")
    # vmsplice(2) adds what fits and returns (blocking only while the pipe is
    # completely full, and not at all with SPLICE_F_NONBLOCK).  writev would
    # block until everything is written, so write page by page while the pipe
    # has a free slot.
    try:
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            raise oserror(errno.EBADF, "vmsplice")
        views = [memoryview(buf).cast("B") for buf in buffers]
        total = sum(len(v) for v in views)
        if total == 0:
            return 0
        if not _writable(fd, 0 if flags & SPLICE_F_NONBLOCK else None):
            raise oserror(errno.EAGAIN, "vmsplice")
        moved = 0
        for view in views:
            while view:
                if moved and not _writable(fd, 0):
                    return moved
                n = os.write(fd, view[:_PAGE])
                moved += n
                view = view[n:]
        return moved
    except OSError as exc:
        raise reraise_as(exc, "vmsplice") from None


def send(fd: int, buf: Any, flags: int, tally: Tally | None = None) -> int:
    """One ``send(2)`` through a borrowed :class:`socket.socket`."""
    sock = socket.socket(fileno=fd)
    try:
        return _call(tally, sock.send, buf, flags)
    except OSError as exc:
        raise reraise_as(exc, "send") from None
    finally:
        sock.detach()


class RelayState:
    """What the cffi backend keeps in a ``struct zc_relay_state``.

    ``delivered`` comes from a :class:`~zerocopy._tally.Tally` of the
    delivering splices, so it is exact even if a signal handler raised right
    after a call.
    """

    __slots__ = ("err", "in_pipe", "tally")

    def __init__(self) -> None:
        self.in_pipe = 0
        self.err = 0
        self.tally = Tally()

    @property
    def delivered(self) -> int:
        return self.tally.total()


def relay_state() -> RelayState:
    """A fresh :class:`RelayState`."""
    return RelayState()


def relay_step(
    src: int, pipe_r: int, pipe_w: int, dst: int, pipe_size: int, budget: int, state: RelayState
) -> int:
    """The cffi backend's ``zc_relay_step``, over :func:`os.splice` (see there).

    Refuses what the C pump refuses, the same way: a *pipe_size* of 0 or a
    *budget* below 1 is ``STEP_ERROR`` with ``state.err`` EINVAL, no state
    (None) an :class:`OSError` EINVAL.
    """
    if state is None:
        raise oserror(errno.EINVAL, "relay_step")
    if pipe_size <= 0 or budget <= 0:
        state.err = errno.EINVAL
        return STEP_ERROR
    tally = state.tally
    moved = 0
    try:
        while True:
            # As in C: no splice asks for more than is left of the budget.
            left = budget - moved
            if state.in_pipe > 0:
                want = min(state.in_pipe, left)
                try:
                    n = tally.call(os.splice, (pipe_r, dst, want, None, None, SPLICE_F_NONBLOCK))
                except BlockingIOError:
                    return STEP_DST_FULL
                if n == 0:
                    return STEP_DST_ZERO
                state.in_pipe -= n
                moved += n
                tally.fold()
                if moved >= budget:
                    return STEP_SPENT
                continue
            try:
                n = os.splice(src, pipe_w, min(pipe_size, left), None, None, SPLICE_F_NONBLOCK)
            except BlockingIOError:
                return STEP_SRC_EMPTY
            if n == 0:
                return STEP_SRC_END
            state.in_pipe += n
    except OSError as exc:
        state.err = exc.errno or 0
        return STEP_ERROR


class HubSlot:
    """The os backend's ``struct zc_hub_dir``: one relay direction of a hub."""

    __slots__ = (
        "dst",
        "flags",
        "pipe_r",
        "pipe_size",
        "pipe_w",
        "ready",
        "src",
        "state",
        "status",
        "want",
    )

    def __init__(self) -> None:
        self.src = self.dst = self.pipe_r = self.pipe_w = -1
        self.pipe_size = 0
        self.state: RelayState | None = None
        self.want = WANT_NONE
        self.flags = self.ready = self.status = 0


_READY_REPORTED = 4
_EPOLLERR_HUP = EPOLLERR | EPOLLHUP
_SIOCATMARK = 0x8905


def _at_mark(fd: int) -> bool:
    try:
        import fcntl

        return bool(int.from_bytes(fcntl.ioctl(fd, _SIOCATMARK, b"\0\0\0\0"), "little"))
    except OSError:
        return False  # not TCP: there is no mark


def _report(slots: list[HubSlot], index: int, reason: int, out: list[tuple[int, int]]) -> None:
    """One report per slot per call, as zc_hub_report_one."""
    if index >= 0:
        if slots[index].ready & _READY_REPORTED:
            return
        slots[index].ready |= _READY_REPORTED
    out.append((index, reason))


class HubCore:
    """The cffi backend's ``HubCore`` over :mod:`select` and :func:`relay_step`.

    :meth:`run` is ``zc_hub_run`` (csrc/zerocopy.c) written in Python, round
    for round: the same steps, waits, reports and counts.  A free slot's
    ``state`` is :attr:`NULL` (None).
    """

    NULL = None

    def __init__(self, capacity: int = 64) -> None:
        if not hasattr(select, "epoll"):
            raise UnsupportedOperation("relay hub", "it needs epoll (Linux)")
        self._epoll = select.epoll()
        self._tags: dict[int, tuple[int, int]] = {}
        self.slots: list[HubSlot] = []
        self.capacity = 0
        self.grow(capacity)

    def grow(self, capacity: int) -> None:
        """Room for at least *capacity* slots; those in use keep their values."""
        while len(self.slots) < capacity:
            self.slots.append(HubSlot())
        self.capacity = len(self.slots)

    def fileno(self) -> int:
        return self._epoll.fileno()

    def register(
        self, fd: int, events: int, src_of: int, dst_of: int, *, modify: bool = False
    ) -> None:
        """Watch *fd* for *events*, tagged with the slots it is the source and destination of."""
        if modify:
            self._epoll.modify(fd, events)
        else:
            self._epoll.register(fd, events)
        self._tags[fd] = (src_of, dst_of)

    def unregister(self, fd: int) -> None:
        self._epoll.unregister(fd)
        self._tags.pop(fd, None)

    @staticmethod
    def _due(d: HubSlot) -> bool:
        if d.state is None:
            return False
        return (
            d.want == WANT_RUN
            or (
                (d.want == WANT_SRC and d.ready & READY_SRC)
                or (d.want == WANT_DST and d.ready & READY_DST)
            )
            != 0
        )

    def run(
        self, used: int, budget: int, timeout_ms: int, max_rounds: int
    ) -> list[tuple[int, int]]:
        """``zc_hub_run`` over slots ``0..used-1``: the ``(slot, HUB_*)`` that need a decision."""
        if used < 0 or used > len(self.slots) or budget <= 0 or max_rounds <= 0:
            raise oserror(errno.EINVAL, "hub_run")
        slots = self.slots[:used]
        out: list[tuple[int, int]] = []
        for d in slots:
            d.ready &= ~_READY_REPORTED
        deadline = time.monotonic() + timeout_ms / 1000 if timeout_ms > 0 else 0.0
        for _ in range(max_rounds):
            wait: float | None = 0
            if not any(self._due(d) for d in slots):
                if timeout_ms < 0:
                    wait = None
                elif timeout_ms > 0:
                    wait = max(deadline - time.monotonic(), 0.0)
            events = self._epoll.poll(wait, 64)
            self._note(events, slots, out)
            self._step_due(slots, budget, out)
            if out:
                return out
            if not events and wait != 0:
                return out  # waited the whole timeout: nothing due, nothing came
            if timeout_ms == 0 and not events and not any(self._due(d) for d in slots):
                return out
        return out

    def _note(
        self, events: list[tuple[int, int]], slots: list[HubSlot], out: list[tuple[int, int]]
    ) -> None:
        """A round's readiness into each slot; wake-ups and errors on parked slots reported."""
        used = len(slots)
        for fd, e in events:
            src_of, dst_of = self._tags.get(fd, (-1, -1))
            if src_of < 0 and dst_of < 0:
                _report(slots, -1, HUB_WOKEN, out)
                continue
            for index, bits, mask in (
                (src_of, READY_SRC, EPOLLIN | EPOLLRDHUP | _EPOLLERR_HUP),
                (dst_of, READY_DST, EPOLLOUT | _EPOLLERR_HUP),
            ):
                if not 0 <= index < used:
                    continue
                d = slots[index]
                if e & mask:
                    d.ready |= bits
                if bits == READY_SRC and e & EPOLLPRI:
                    d.ready |= READY_SRC | READY_URG
                if d.state is not None and d.want == WANT_NONE and e & _EPOLLERR_HUP:
                    _report(slots, index, HUB_EVENT, out)

    def _step_due(self, slots: list[HubSlot], budget: int, out: list[tuple[int, int]]) -> None:
        """One step of every due slot, as a round of ``zc_hub_run`` makes them."""
        for i, d in enumerate(slots):
            if not self._due(d):
                continue
            if not d.flags & HUB_STEP or d.pipe_r < 0:
                d.want = WANT_NONE
                _report(slots, i, HUB_NEED_PIPE if d.flags & HUB_STEP else HUB_READY, out)
                continue
            state = d.state
            assert state is not None
            before = state.delivered + state.in_pipe
            status = relay_step(d.src, d.pipe_r, d.pipe_w, d.dst, d.pipe_size, budget, state)
            d.status = status
            if status == STEP_SRC_EMPTY:
                # EAGAIN at the urgent mark is not an empty socket (see zc_hub_run).
                look = state.delivered + state.in_pipe == before or d.ready & READY_URG
                d.ready &= ~(READY_SRC | READY_URG)
                d.want = WANT_SRC
                if look and _at_mark(d.src):
                    d.want = WANT_NONE
                    _report(slots, i, HUB_STOPPED, out)
            elif status == STEP_DST_FULL:
                d.ready &= ~READY_DST
                d.want = WANT_DST
            elif status == STEP_SPENT:
                d.want = WANT_RUN
            else:
                d.want = WANT_NONE
                _report(slots, i, HUB_STOPPED, out)

    def close(self) -> None:
        self._epoll.close()


def _exists(call: Any, *args: Any) -> bool:
    try:
        call(*args)
    except OSError as exc:
        return exc.errno not in (errno.ENOSYS, errno.EPERM)
    return True


def probe() -> set[str]:
    """Return the features this backend can perform in this process."""
    found = set()
    if HAS_SENDFILE and _exists(os.sendfile, -1, -1, None, 0):
        found.add("sendfile")
    if HAS_SPLICE and _exists(os.splice, -1, -1, 0):
        found.add("splice")
    if HAS_COPY_FILE_RANGE and _exists(os.copy_file_range, -1, -1, 0):
        found.add("copy_file_range")
    if hasattr(os, "writev") and hasattr(select, "poll"):
        found.add("vmsplice")
    return found
