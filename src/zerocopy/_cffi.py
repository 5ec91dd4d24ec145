"""The cffi backend: zerocopy's compiled shims, one system call each.

Importing this module raises :class:`ImportError` when the compiled module is
missing or was built from other sources (ABI version mismatch), so that
:mod:`zerocopy._backend` can fall back or report why.
"""

from __future__ import annotations

import errno
import os
import select
import sys
from collections.abc import Callable, Sequence
from typing import Any

from ._errors import oserror
from ._extension import unavailable
from ._tally import Tally

if not sys.platform.startswith("linux"):
    # The C shims include Linux headers: setup.py builds them on Linux only,
    # and a module found elsewhere (a simulated platform in the tests) is
    # refused as a real one would be missing.
    raise ImportError(f"zerocopy's compiled module is for Linux only, not {sys.platform}")

try:
    from ._zerocopy_cffi import ffi, lib
except ImportError as exc:  # pragma: no cover - exercised by the no-compiler test
    raise ImportError(unavailable(exc)) from exc

__all__ = [
    "NAME",
    "HubCore",
    "copy_file_range",
    "copy_file_range_at_positions",
    "parse_completions",
    "probe",
    "recv_completions",
    "relay_state",
    "relay_step",
    "send",
    "sendfile",
    "splice",
    "tee",
    "vmsplice",
]

NAME = "cffi"

#: Must equal ZC_ABI_VERSION in csrc/zerocopy.c; see the note in zerocopy.h.
_ABI_VERSION = 5

if lib.zc_abi_version() != _ABI_VERSION:
    raise ImportError(
        f"zerocopy's compiled module is stale (ABI {lib.zc_abi_version()}, "
        f"this code needs {_ABI_VERSION}); rebuild it with 'pip install -e .'"
    )

_NULL = ffi.NULL

#: A completion record as the parser reports it:
#: (first, last, code, origin, errno).
Completion = tuple[int, int, int, int, int]


def _retry(call: str, fn: Callable[..., int], *args: Any, tally: Tally | None = None) -> int:
    # PEP 475 for our own calls: retry on EINTR.  The loop's backward jump is
    # where CPython runs pending signal handlers, so a handler that raises ends
    # the call with its exception, as the os module's calls do.  A tally
    # records a result before any handler can run (see _tally).
    while True:
        result = fn(*args) if tally is None else tally.call(fn, args)
        if result >= 0:
            return int(result)
        err = ffi.errno
        if err != errno.EINTR:
            raise oserror(err, call)


def _offset_ptr(offset: int | None) -> Any:
    return _NULL if offset is None else ffi.new("int64_t *", offset)


def sendfile(
    out_fd: int, in_fd: int, offset: int | None, count: int, tally: Tally | None = None
) -> int:
    return _retry(
        "sendfile", lib.zc_sendfile, out_fd, in_fd, _offset_ptr(offset), count, tally=tally
    )


def splice(
    src: int,
    dst: int,
    count: int,
    offset_src: int | None,
    offset_dst: int | None,
    flags: int,
    tally: Tally | None = None,
) -> int:
    return _retry(
        "splice",
        lib.zc_splice,
        src,
        _offset_ptr(offset_src),
        dst,
        _offset_ptr(offset_dst),
        count,
        flags,
        tally=tally,
    )


def tee(src: int, dst: int, count: int, flags: int) -> int:
    return _retry("tee", lib.zc_tee, src, dst, count, flags)


def vmsplice(fd: int, buffers: Sequence[Any], flags: int) -> int:
    # Keep the cdata views alive for the duration of the call; after it the
    # pipe holds references to the pages, which is the caller's contract.
    views = [ffi.from_buffer(buf) for buf in buffers]
    try:
        iov = ffi.new("struct iovec[]", len(views))
        for slot, view in zip(iov, views, strict=True):
            slot.iov_base = view
            slot.iov_len = len(view)
        return _retry("vmsplice", lib.zc_vmsplice, fd, iov, len(views), flags)
    finally:
        # Release the buffer exports now: left to the garbage collector, a
        # cdata caught in an exception's reference cycle crashed CPython.
        for view in views:
            ffi.release(view)


def copy_file_range(
    src: int,
    dst: int,
    count: int,
    offset_src: int | None = None,
    offset_dst: int | None = None,
    tally: Tally | None = None,
) -> int:
    return _retry(
        "copy_file_range",
        lib.zc_copy_file_range,
        src,
        _offset_ptr(offset_src),
        dst,
        _offset_ptr(offset_dst),
        count,
        0,
        tally=tally,
    )


#: copy_file_range at both files' own positions, no count kept (copyfile's
#: fresh files: the destination's size is the count).  The os module's call
#: where it has one: about 1,100 user-space instructions a call, against
#: 2,900 through the shim (docs/benchmarks.md, "Small copies, counted").
copy_file_range_at_positions = getattr(os, "copy_file_range", copy_file_range)


def send(fd: int, buf: Any, flags: int, tally: Tally | None = None) -> int:
    """One send(2) of *buf* with *flags* (e.g. MSG_ZEROCOPY), retried on EINTR."""
    with ffi.from_buffer(buf) as view:  # released at once (see vmsplice)
        return _retry("send", lib.zc_send, fd, view, len(view), flags, tally=tally)


def relay_state() -> Any:
    """A zeroed ``struct zc_relay_state``: ``in_pipe``, ``delivered``, ``err``."""
    return ffi.new("struct zc_relay_state *")


def relay_step(
    src: int, pipe_r: int, pipe_w: int, dst: int, pipe_size: int, budget: int, state: Any
) -> int:
    """One relay direction's step in one C call; returns a ``STEP_*`` status.

    src -> pipe -> dst with non-blocking splices until something would block,
    src ends, a splice fails (``state.err``; EINTR too, for the caller to run
    its signal handlers) or *budget* bytes reached dst.  ``state.delivered``
    and ``state.in_pipe`` are exact however it ends; nothing is raised.  A
    *pipe_size* of 0 or a *budget* below 1 is ``STEP_ERROR`` with
    ``state.err`` EINVAL, before any splice.  No state at all (None) has no
    ``err`` to read: :class:`OSError` EINVAL, the one case that raises.
    """
    if state is None:
        # The C pump refuses it with errno, having no err to set; kept off
        # the path every step takes.
        lib.zc_relay_step(src, pipe_r, pipe_w, dst, pipe_size, budget, _NULL)
        raise oserror(ffi.errno, "relay_step")
    return int(lib.zc_relay_step(src, pipe_r, pipe_w, dst, pipe_size, budget, state))


class HubCore:
    """A relay hub's epoll set and direction slots, stepped by ``zc_hub_run`` (csrc/zerocopy.c).

    Slots are ``struct zc_hub_dir``: ``src``, ``dst``, ``pipe_r``, ``pipe_w``,
    ``pipe_size``, ``state`` (a :func:`relay_state`, kept alive by its
    owner), ``want``, ``flags``, ``ready``, ``status``.  Only the thread that
    calls :meth:`run` touches them, between calls.  A free slot's ``state``
    is :attr:`NULL`.
    """

    NULL = _NULL

    def __init__(self, capacity: int = 64) -> None:
        self._epoll = select.epoll()
        self.capacity = 0
        self.slots: Any = None
        self._out: Any = None
        self.grow(capacity)

    def grow(self, capacity: int) -> None:
        """Room for at least *capacity* slots; those in use keep their values."""
        if capacity <= self.capacity:
            return
        slots = ffi.new("struct zc_hub_dir[]", capacity)
        if self.capacity:
            ffi.memmove(slots, self.slots, ffi.sizeof("struct zc_hub_dir") * self.capacity)
        self.slots, self.capacity = slots, capacity
        self._out = ffi.new("struct zc_hub_report[]", capacity + 1)

    def fileno(self) -> int:
        return self._epoll.fileno()

    def register(
        self, fd: int, events: int, src_of: int, dst_of: int, *, modify: bool = False
    ) -> None:
        """Watch *fd* for *events*, tagged with the slots it is the source and destination of."""
        op = lib.EPOLL_CTL_MOD if modify else lib.EPOLL_CTL_ADD
        if lib.zc_hub_ctl(self._epoll.fileno(), op, fd, events, src_of, dst_of) < 0:
            raise oserror(ffi.errno, "epoll_ctl")

    def unregister(self, fd: int) -> None:
        if lib.zc_hub_ctl(self._epoll.fileno(), lib.EPOLL_CTL_DEL, fd, 0, -1, -1) < 0:
            raise oserror(ffi.errno, "epoll_ctl")

    def run(
        self, used: int, budget: int, timeout_ms: int, max_rounds: int
    ) -> list[tuple[int, int]]:
        """One ``zc_hub_run`` over slots ``0..used-1``: ``(slot, HUB_*)`` needing a decision."""
        out = self._out
        n = lib.zc_hub_run(
            self._epoll.fileno(), self.slots, used, budget, timeout_ms, max_rounds, out, used + 1
        )
        if n < 0:
            raise oserror(ffi.errno, "zc_hub_run")
        return [(r.index, r.reason) for r in out[0:n]]

    def close(self) -> None:
        self._epoll.close()


def _records(out: Any, n: int) -> list[Completion]:
    return [(c.first, c.last, c.code, c.origin, c.err) for c in out[0:n]]


def recv_completions(fd: int, max_records: int = 16) -> list[Completion]:
    """Read one message from *fd*'s error queue without blocking.

    Raises :class:`BlockingIOError` when the queue is empty.
    """
    out = ffi.new("struct zc_completion[]", max_records)
    n = _retry("recvmsg", lib.zc_recv_completions, fd, out, max_records)
    return _records(out, n)


def parse_completions(control: bytes, max_records: int = 16) -> list[Completion]:
    """Parse raw ``recvmsg`` control data with the same parser the sender uses."""
    out = ffi.new("struct zc_completion[]", max_records)
    buf = ffi.from_buffer(control)
    return _records(out, lib.zc_parse_completions(buf, len(buf), out, max_records))


def _exists(fn: Callable[..., int], *args: Any) -> bool:
    # Called with fd -1 a present syscall fails with EBADF (or EINVAL); a
    # missing one, or one a seccomp filter forbids, with ENOSYS or EPERM.
    if fn(*args) >= 0:
        return True
    return ffi.errno not in (errno.ENOSYS, errno.EPERM)


def probe() -> set[str]:
    """Return the features whose syscalls this process may make (no msg_zerocopy)."""
    found = set()
    if _exists(lib.zc_sendfile, -1, -1, _NULL, 0):
        found.add("sendfile")
    if _exists(lib.zc_splice, -1, _NULL, -1, _NULL, 0, 0):
        found.add("splice")
    if _exists(lib.zc_tee, -1, -1, 0, 0):
        found.add("tee")
    if _exists(lib.zc_vmsplice, -1, _NULL, 0, 0):
        found.add("vmsplice")
    if _exists(lib.zc_copy_file_range, -1, _NULL, -1, _NULL, 0, 0):
        found.add("copy_file_range")
    return found
