"""The running state of one copy, and what each thread keeps between copies.

Used by both layers of the copy: :mod:`.fileobj` (the object-level loops and
the choice of path) and :mod:`.kernel` (the fd-level kernel methods).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from .._tally import Tally

if TYPE_CHECKING:
    from .writer import TextCount

__all__ = [
    "BUFSIZE",
    "COPY_BUFSIZE",
    "Transfer",
    "last_method",
    "note_method",
    "per_thread",
    "thread_buffer",
]

#: shutil's chunk on Linux; what ``length=0`` means for the read/write loop.
COPY_BUFSIZE = 64 * 1024
#: The reused buffer's size for the readinto loops.
BUFSIZE = 1024 * 1024

#: Largest single kernel call while a progress callback is set, so that a
#: progress bar moves (copy_file_range would otherwise take 1 GiB at a time).
_PROGRESS_CHUNK = 16 * 1024 * 1024

#: What each thread keeps between copies: ``method`` (see :func:`last_method`),
#: ``buf`` (see :func:`thread_buffer`).  copyfileobj's fast path sets
#: ``method`` itself, saving a call.
per_thread = threading.local()


def last_method() -> str | None:
    """Return how the last :func:`copyfileobj` in this thread moved its bytes.

    The path the copy took, even if it found nothing to move: one of
    ``"copy_file_range"``, ``"sendfile"``, ``"splice"``, ``"readinto"`` (a
    reused-buffer loop, also used when a regular file has less than 64 KiB
    left after the first two chunks), ``"read"`` (shutil's own loop: every
    copy whose second read finds the end, one chunk of 64 KiB or less by
    default, and every pair of objects the kernel cannot serve), ``"none"``
    (``count=0``), ``"shutil"`` (:func:`copyfile` handed to
    :func:`shutil.copyfile`, where there is no ``copy_file_range``: macOS,
    Windows), or ``None`` before the first copy in this thread.
    """
    return getattr(per_thread, "method", None)


def note_method(method: str) -> None:
    """Remember *method* as this thread's :func:`last_method`."""
    per_thread.method = method


def thread_buffer(size: int) -> memoryview:
    """This thread's reused buffer, at least *size* bytes (at most :data:`BUFSIZE`)."""
    # One buffer per thread, reused across copies: allocating (and faulting
    # in) a fresh megabyte per call would cost small copies more than they move.
    if size > BUFSIZE:
        # A larger length is only a chunk size: a buffer of it would be
        # zero-filled and then kept for the thread's lifetime (a server's
        # worker: for ever).  shutil's read(length) allocates length bytes
        # up front, though, so an absurd length must fail as it does there
        # (MemoryError, OverflowError): bytes(size) is calloc'd, so its pages
        # are never touched, and it is freed at once.
        bytes(size)
        size = BUFSIZE
    buf = getattr(per_thread, "buf", None)
    if buf is None or len(buf) < size:
        buf = per_thread.buf = memoryview(bytearray(size))
    return buf[:size]


class Transfer:
    """Running state of one copy: bytes delivered, limit, progress callback.

    ``total`` is the running count; ``tally`` logs the calls that delivered
    bytes on the fd paths, and is the exact count after an exception (see
    :mod:`zerocopy._tally`), on top of ``base``: the bytes that moved
    through the objects before the tally began.
    """

    __slots__ = ("base", "limit", "method", "progress", "tally", "text", "total")

    def __init__(self, limit: int | None, progress: Callable[[int], object] | None) -> None:
        self.limit = limit
        self.progress = progress
        self.total = 0
        self.base = 0
        self.method = "none"
        self.tally = Tally()
        #: A text destination's writer (:class:`~.writer.TextCount`), made on first use.
        self.text: TextCount | None = None

    def chunk(self, want: int) -> int:
        """Bytes to ask one kernel call for: smaller when someone watches progress."""
        if self.progress is not None:
            want = min(want, _PROGRESS_CHUNK)
        return self.room(want)

    def room(self, want: int) -> int:
        """How many of *want* bytes the limit still allows."""
        if self.limit is None:
            return want
        return max(0, min(want, self.limit - self.total))

    def settle(self) -> int:
        """Take the count from the tally, where calls went through it; return it."""
        if self.tally.log:
            self.total = self.base + self.tally.total()
        return self.total

    def add(self, n: int) -> None:
        self.total += n
        self.tally.fold()
        if self.progress is not None:
            self.progress(self.total)
