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

A :class:`io.TextIOWrapper` counts in characters and keeps the encoded bytes
of earlier writes pending until it has a chunk's worth; a failing write to
its binary buffer drops them all, with what part of them that buffer took
unsaid.  :class:`TextCount` has every write reach the buffer at once and
reads the buffer's position around it, so the count is the characters whose
encoded bytes the buffer accepted (see its docstring for the limits).
"""

from __future__ import annotations

import codecs
import sys
from collections.abc import Callable
from io import BufferedRandom, BufferedWriter, BytesIO, FileIO
from itertools import starmap
from typing import Any

from .._compat import BUFFERED_SIZEOF_BASE as SIZEOF
from .._compat import text_writes_through, write_text_now

__all__ = ["SIZEOF", "TextCount", "direct_size", "put", "write_direct"]


def direct_size(fdst: Any, n: int) -> int:
    """The buffer size of BufferedWriter *fdst* if *n* bytes bypass it, else 0.

    ``__sizeof__() - SIZEOF`` is the buffer size on CPython and negative
    elsewhere (:data:`zerocopy._compat.BUFFERED_SIZEOF_BASE`): then 0, the
    object's own write.
    """
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


#: Binary buffers whose tell() is exact after a failed write: the bytes they accepted.
_EXACT_BUFFERS = (BufferedWriter, BufferedRandom, BytesIO)

#: Encoders whose output for a string is not the sum of their outputs for its
#: characters (shift states, escape sequences, labels, pairs that make one code).
_STATEFUL = frozenset({"utf-7", "hz", "idna", "punycode", "big5hkscs"})


def _per_char_codec(encoding: str) -> str | None:
    """The codec that encodes a wrapper's text after its first write, if it is additive, else None.

    A byte-order mark (utf-16, utf-32, utf-8-sig) goes out with the first
    write only: after it the wrapper encodes as the codec without one.
    """
    name = codecs.lookup(encoding).name
    if name in ("utf-16", "utf-32"):
        return f"{name}-{'le' if sys.byteorder == 'little' else 'be'}"
    if name == "utf-8-sig":
        return "utf-8"
    if name in _STATEFUL or name.startswith("iso2022"):
        return None
    return name


class TextCount:
    """``write(text, log) -> len(text)`` into a TextIOWrapper, logging what its buffer accepted.

    The unit is the character, as copyfileobj's count for text always was.
    Every write reaches the wrapper's binary buffer at once (nothing stays
    pending in the wrapper, where a later failure would drop it), and after
    a write fails part-way the buffer's ``tell()`` says how many of its
    encoded bytes the buffer accepted: *log* then gets the characters whose
    bytes are all among them; a character split by the failure is not
    counted.  "\\n" may become "\\r\\n" (``newline``), which no public
    attribute says: the first "\\n" is written alone, and the buffer's move
    tells.  The copy's first write first sends the text the caller left
    pending (and a byte-order mark) on its own: they are not the copy's.

    Exact where the buffer is a BufferedWriter, BufferedRandom or BytesIO
    whose ``tell()`` works (a file, not a pipe or socket) and the encoding
    encodes character by character (not utf-7, iso2022, hz, idna, punycode,
    big5hkscs), on a wrapper with CPython's ``_CHUNK_SIZE``
    (:func:`zerocopy._compat.write_text_now`).  Elsewhere a write that fails
    counts none of its characters, though some of its bytes may have reached
    the buffer.
    """

    __slots__ = ("codec", "fdst", "nl", "pos", "started", "tell")

    def __init__(self, fdst: Any) -> None:
        self.fdst = fdst
        self.started = False
        #: Where the next write's bytes begin in the buffer; None: not exact.
        self.pos: int | None = None
        #: How many bytes one newline became, once one was written.
        self.nl: int | None = None
        self.codec: str | None = None
        self.tell: Callable[[], int] | None = None

    def __call__(self, text: Any, log: list[Any]) -> int:
        """Write *text* as ``fdst.write`` does; log the characters the buffer accepted."""
        if not self.started:
            self._start()
        if self.nl is None and self.pos is not None and type(text) is str:
            i = text.find("\n")
            if i >= 0:
                if i:
                    self._piece(text[:i], log)
                self._piece("\n", log)  # alone: how far the buffer moved is what it became
                if i + 1 < len(text):
                    self._piece(text[i + 1 :], log)
                return len(text)
        self._piece(text, log)
        return len(text)

    def _start(self) -> None:
        fdst = self.fdst
        self.started = True
        write_text_now(fdst, "", [])  # the caller's pending text, and a BOM, go first and alone
        if not text_writes_through(fdst):
            return  # bytes may stay pending in the wrapper: no exact count (see _compat)
        buffer = fdst.buffer
        codec = _per_char_codec(fdst.encoding)
        if codec is None or type(buffer) not in _EXACT_BUFFERS:
            return
        try:
            self.pos = buffer.tell()
        except (OSError, ValueError):
            return  # a pipe, a socket, a terminal: no position to read
        self.tell = buffer.tell
        self.codec = codec

    def _piece(self, text: Any, log: list[Any]) -> None:
        try:
            write_text_now(self.fdst, text, log)
        except BaseException:
            log.append(self._accepted(text))
            raise
        if self.tell is not None:
            pos = self.tell()
            if self.nl is None and text == "\n":
                self.nl = pos - self.pos if self.pos is not None else None
            self.pos = pos

    def _accepted(self, text: Any) -> int:
        """After a write of *text* failed: the characters whose bytes the buffer accepted."""
        if self.tell is None or self.pos is None or type(text) is not str:
            return 0
        try:
            took = self.tell() - self.pos
        except Exception:  # noqa: BLE001 - the write's own exception is the one to report
            return 0
        if took <= 0:
            return 0
        if self.nl is None and text == "\n":
            return 1  # a few bytes: a buffered write of them is all or nothing
        return _chars_within(text, took, self.codec or "utf-8", self.fdst.errors, self.nl)


def _chars_within(text: str, took: int, codec: str, errors: str, nl: int | None) -> int:
    """The longest prefix of *text* (in characters) whose encoding is at most *took* bytes."""
    crlf = nl is not None and nl != len(codecs.encode("\n", codec, errors))

    def size(n: int) -> int:
        part = text[:n]
        if crlf:
            part = part.replace("\n", "\r\n")
        return len(codecs.encode(part, codec, errors))

    if size(len(text)) <= took:
        return len(text)  # all of it (a line-buffered flush failed after)
    lo, hi = 0, len(text)  # size(lo) <= took < size(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if size(mid) <= took:
            lo = mid
        else:
            hi = mid
    return lo
