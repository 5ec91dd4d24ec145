"""Writes into a destination object that count what it accepted, also when one fails part-way.

A :class:`io.BufferedWriter` given more than its buffer holds writes
straight to its raw file, one raw ``write`` after another, and when a later
one fails (``ENOSPC``, ``EFBIG`` under ``RLIMIT_FSIZE``) it raises, and the
bytes the earlier ones put in the file are counted nowhere: its ``tell()``
has moved past them, the caller's count has not.  :func:`write_direct` makes
those raw writes itself and logs each result, and leaves the rest to the
object, so the system calls, the bytes and the object's state are those of
``fdst.write(data)``, and the count is exact.  :func:`direct_size` says when
a write goes that way: only then is there anything to count.

A raw :class:`io.FileIO` accepts what one ``write(2)`` took: shutil's loop
ignores a short write, and so does copyfileobj, but the count says what the
file got (:func:`put`).
"""

from __future__ import annotations

from collections.abc import Callable
from io import BufferedWriter, BytesIO, FileIO
from itertools import starmap
from typing import Any

__all__ = ["SIZEOF", "direct_size", "put", "write_direct"]

#: A BufferedWriter's __sizeof__ is its struct plus its buffer (CPython's
#: buffered_sizeof): the buffer size without a system call.
SIZEOF = BufferedWriter(BytesIO(), 1).__sizeof__() - 1


def direct_size(fdst: Any, n: int) -> int:
    """The buffer size of BufferedWriter *fdst* if *n* bytes bypass it, else 0."""
    size: int = fdst.__sizeof__() - SIZEOF
    return size if n > size > 0 else 0  # 0 when closed (no buffer): its own write raises


def write_direct(
    fdst: Any, data: Any, size: int, log: list[Any], exact: bool = True, start: int | None = 0
) -> int:
    """``fdst.write(data)`` for more than its buffer (*size*) holds, each raw write logged in *log*.

    What the object does itself: flush, raw writes while more than a buffer
    is left, the rest into the buffer.  Returns ``len(data)`` as its write
    does; after an exception the positive entries of *log* are the bytes it
    accepted.  *exact* logs each raw write from C, before a signal handler
    can run (as :class:`~zerocopy._tally.Tally` does); without it, a handler
    raising right after a raw write can leave that write out.  *start*: the
    caller flushed and made the first raw write, which took that many bytes
    (logged already), or None (it would have blocked).
    """
    if start == 0:
        fdst.flush()
    view = memoryview(data)
    if start:
        view = view[_checked(start, len(view)) :]
    raw_write = fdst.raw.write
    while start is not None and len(view) > size:
        if exact:
            log.extend(starmap(raw_write, ((view,),)))
            start = log[-1]
        else:
            start = raw_write(view)
            log.append(start)
        if start is not None:
            view = view[_checked(start, len(view)) :]
    if start is None:
        # Non-blocking and full: the object's write makes that attempt again
        # and raises BlockingIOError with its count (of what is left here).
        try:
            log.append(fdst.write(view))
        except BlockingIOError as exc:
            log.append(exc.characters_written)
            exc.characters_written += len(data) - len(view)
            raise
    elif view:
        log.append(fdst.write(view))  # into the empty buffer: no system call
    return len(data)


def _checked(n: Any, most: int) -> int:
    # A raw class of a user's can return anything: refuse what BufferedWriter refuses.
    if not 0 <= n <= most:
        raise OSError(
            f"raw write() returned invalid length {n} (should have been between 0 and {most})"
        )
    return int(n)


def put(fdst: Any) -> Callable[[Any, list[Any]], int]:
    """``write(data, log) -> accepted``: shutil's ``fdst.write(data)``, counted in *log*."""
    kind = type(fdst)
    write = fdst.write
    if kind is BufferedWriter:

        def buffered(data: Any, log: list[Any]) -> int:
            if size := direct_size(fdst, len(data)):
                return write_direct(fdst, data, size, log)
            log.extend(starmap(write, ((data,),)))
            return len(data)

        return buffered
    if kind is FileIO:

        def raw(data: Any, log: list[Any]) -> int:
            log.extend(starmap(write, ((data,),)))
            return log[-1] or 0  # a short write is lost, as in shutil's loop; None: nothing

        return raw

    def other(data: Any, log: list[Any]) -> int:
        write(data)  # text, user classes: what they return means nothing here
        n = len(data)
        log.append(n)
        return n

    return other
