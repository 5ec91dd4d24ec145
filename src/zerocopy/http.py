"""An :mod:`http.server` request handler whose file bodies go out with ``sendfile(2)``.

:class:`ZeroCopyHTTPRequestHandler` is :class:`http.server.SimpleHTTPRequestHandler`
with two methods overridden: ``send_head`` (which adds single byte ranges and
``Accept-Ranges``) and ``copyfile`` (which sends the file with
:func:`zerocopy.send_file` instead of reading it through Python).  Paths,
redirects, directory listings, 404s, ``If-Modified-Since`` and the headers of
a full response are the stdlib's.
"""

from __future__ import annotations

import datetime
import email.utils
import http.server
import os
import urllib.parse
from http import HTTPStatus
from typing import Any

from ._regular import NotRegularFileError, open_regular
from ._send_file import send_file

__all__ = ["ZeroCopyHTTPRequestHandler"]

#: :func:`_parse_range` says: answer 416 Range Not Satisfiable.
_UNSATISFIABLE = (-1, -1)

# int() refuses more digits than this (sys.int_max_str_digits' default),
# which made such a header malformed, so ignored.  Kept as a fixed number:
# the answer must not depend on a process-wide setting.
_MAX_DIGITS = 4300
# Positions of up to this many significant digits are converted exactly;
# longer ones are past every file (off_t tops out at 2**63 - 1, 19 digits).
_POSITION_DIGITS = 19
_BEYOND = 10**_POSITION_DIGITS  # more than any position converted exactly


def _digits(part: bytes) -> bytes | None:
    """*part* (whitespace stripped) as a run of ASCII digits, b"" if absent; None if malformed."""
    if not part:
        return part
    if len(part) > _MAX_DIGITS or not part.isdigit():  # bytes.isdigit: ASCII only
        return None
    return part.lstrip(b"0") or b"0"


def _position(significant: bytes) -> int:
    """The value of *significant* digits, saturated at _BEYOND: no long int() on hostile input."""
    return int(significant) if len(significant) <= _POSITION_DIGITS else _BEYOND


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """``(offset, count)`` of a single byte range of a *size*-byte file, None, or _UNSATISFIABLE.

    *header* is one byte-range-spec (RFC 9110, 14.1.2) after the unit:
    ``bytes=a-b``, ``bytes=a-`` or ``bytes=-n``, the unit in any case,
    whitespace allowed around each part.  Anything else (several ranges, another
    unit, stray characters) is None: the header is ignored and the full body
    is the answer.  A range starting at or past the end, or a zero-byte
    suffix, is _UNSATISFIABLE (416).  An end past the file is clamped.

    A few passes of C-speed bytes methods (partition, strip, isdigit), each linear
    in the header, no regular expression: hostile headers of any shape cost
    what their length costs (a backtracking pattern took seconds for 2 KB).
    Numbers are compared as digit strings and converted only up to 19 digits,
    so nothing is ever bigger than *size* in the result.
    """
    if not header.isascii():  # O(1) for str; the old pattern matched ASCII only
        return None
    unit, equals, spec = header.encode("ascii").partition(b"=")
    # bytes.strip() strips ASCII whitespace, " \t\n\r\v\f": what the old
    # pattern's \s matched in ASCII mode (RFC 9110's optional whitespace is
    # SP and HTAB; the rest was accepted before and still is).
    if not equals or unit.strip().lower() != b"bytes":
        return None
    first_part, dash, last_part = spec.partition(b"-")
    if not dash:
        return None
    first = _digits(first_part.strip())
    last = _digits(last_part.strip())
    if first is None or last is None or not (first or last):
        return None
    if not first:  # bytes=-n: the last n bytes
        if last == b"0":
            return _UNSATISFIABLE  # a suffix of zero bytes
        if size == 0:
            return None  # no bytes to give; the (empty) full body is the answer
        n = _position(last)
        return max(0, size - n), min(n, size)
    if last and (len(last), last) < (len(first), first):  # numeric order of digit strings
        return None  # invalid, so the header is ignored (RFC 9110, 14.1.1)
    start = _position(first)
    if start >= size:
        return _UNSATISFIABLE
    end = size - 1 if not last else min(_position(last), size - 1)
    return start, end - start + 1


class ZeroCopyHTTPRequestHandler(http.server.SimpleHTTPRequestHandler):
    """:class:`~http.server.SimpleHTTPRequestHandler` that sends files with ``sendfile``.

    Differences from the stdlib handler, all of them for files (directory listings,
    redirects and errors are the stdlib's):

    * the body goes from the file to ``self.connection`` with
      :func:`zerocopy.send_file` (``sendfile(2)``), after the headers were
      flushed; directory listings and other bodies are copied as the stdlib does;
    * a GET with a single ``Range: bytes=a-b`` / ``bytes=a-`` / ``bytes=-n``
      gets ``206 Partial Content`` with ``Content-Range``; a range that starts
      at or past the end gets ``416`` with ``Content-Range: bytes */SIZE``;
      an end past the file is clamped;
    * a malformed ``Range``, a unit other than ``bytes``, several ranges in
      one header, a ``Range`` on a HEAD request, and an ``If-Range`` that does
      not match the file's ``Last-Modified`` are ignored: the answer is the
      full ``200`` response;
    * file responses (200 and 206) carry ``Accept-Ranges: bytes``;
    * a path naming a FIFO, socket or device gets the stdlib's answer for a
      file it cannot open (404), at once: it is never opened in a way that
      waits (the stdlib's handler blocks on a FIFO until a writer comes);
    * the body is exactly ``Content-Length`` bytes even if the file grows
      meanwhile; if it shrinks, the response is cut short and the connection
      closed, so the client sees the truncation;
    * a client that goes away during the body (reset, broken pipe) is
      logged with ``log_error`` instead of ending in a traceback.

    ``If-Modified-Since`` works as in the stdlib (``304 Not Modified``), which
    ignores it when the request also has ``If-None-Match``; it is checked
    before ``Range``.  A socket timeout (:attr:`timeout`) applies to each wait
    for the client to take more bytes; when one expires the stdlib's
    ``handle_one_request`` logs it and closes the connection.
    """

    #: ``(offset, count)`` of the body that :meth:`copyfile` sends with
    #: sendfile, set by :meth:`send_head` for a file; None otherwise.
    _zc_body: tuple[int, int] | None = None

    def send_head(self) -> Any:
        """Send the status and headers; return the open file (or listing) to copy, or None.

        Files (whatever path the stdlib would open) are handled here, with
        ranges; everything else (the redirect of a directory without its
        slash, listings, 404) is the stdlib's
        :meth:`~http.server.SimpleHTTPRequestHandler.send_head`.
        """
        self._zc_body = None
        path = self._zc_file_path()
        if path is None:
            return super().send_head()
        try:
            # Not open(): a FIFO would hold this thread until a writer came.
            f, fs = open_regular(path)  # returned open, closed by do_GET/do_HEAD
        except (OSError, NotRegularFileError):
            # The stdlib's answer when its open() fails; a FIFO, socket or
            # device gets it too, at once.
            self.send_error(HTTPStatus.NOT_FOUND, "File not found")
            return None
        try:
            if self._zc_not_modified(fs.st_mtime):
                self.send_response(HTTPStatus.NOT_MODIFIED)
                self.end_headers()
                f.close()
                return None
            size = fs.st_size
            last_modified = self.date_time_string(fs.st_mtime)
            span = self._zc_span(size, last_modified)
            if span == _UNSATISFIABLE:
                self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                f.close()
                return None
            if span is None:
                self.send_response(HTTPStatus.OK)
                span = (0, size)
            else:
                self.send_response(HTTPStatus.PARTIAL_CONTENT)
                first, count = span
                self.send_header("Content-Range", f"bytes {first}-{first + count - 1}/{size}")
            self.send_header("Content-type", self.guess_type(path))
            self.send_header("Content-Length", str(span[1]))
            self.send_header("Last-Modified", last_modified)
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            self._zc_body = span
            return f
        except BaseException:
            f.close()
            raise

    def copyfile(self, source: Any, outputfile: Any) -> None:
        """Copy *source* to *outputfile*: with ``sendfile`` for the file :meth:`send_head` opened.

        The headers are flushed first (a buffered ``wfile`` may hold them);
        exactly the announced ``Content-Length`` bytes are sent from the
        range's offset.  A client that resets or closes the connection
        meanwhile is logged with :meth:`log_error`, not raised.  Other sources
        go through the stdlib's copy.
        """
        body, self._zc_body = self._zc_body, None
        if body is None or outputfile is not self.wfile:
            super().copyfile(source, outputfile)
            return
        offset, count = body
        outputfile.flush()
        if count == 0:
            return
        try:
            sent = send_file(self.connection, source, offset, count)
        except (BrokenPipeError, ConnectionResetError) as exc:
            # A client that stops a download (a video player seeking to
            # another range, a cancelled transfer) is routine, not a server
            # error worth a traceback.
            self.close_connection = True
            sent = getattr(exc, "bytes_transferred", 0)
            self.log_error("client went away after %d of %d bytes: %s", sent, count, exc)
            return
        if sent < count:
            # The file shrank after its length went out: the body is short,
            # and only closing the connection tells the client so.
            self.close_connection = True
            self.log_error("file shrank while sending: sent %d of %d bytes", sent, count)

    # --- helpers -------------------------------------------------------------

    def _zc_file_path(self) -> str | None:
        """The file the stdlib's send_head would open, or None where it does not open one."""
        path = self.translate_path(self.path)
        if os.path.isdir(path):
            if not urllib.parse.urlsplit(self.path).path.endswith("/"):
                return None  # the stdlib redirects to the path with a slash
            for index in ("index.html", "index.htm"):
                candidate = os.path.join(path, index)
                if os.path.isfile(candidate):
                    return candidate
            return None  # the stdlib lists the directory
        if path.endswith("/"):
            return None  # the stdlib answers 404 (bpo-17324)
        return path

    def _zc_not_modified(self, mtime: float) -> bool:
        """The stdlib's If-Modified-Since test (ignored when If-None-Match is present)."""
        if "If-Modified-Since" not in self.headers or "If-None-Match" in self.headers:
            return False
        try:
            ims = email.utils.parsedate_to_datetime(self.headers["If-Modified-Since"])
        except (TypeError, IndexError, OverflowError, ValueError):
            return False
        if ims.tzinfo is None:
            # obsolete format with no timezone, cf. RFC 7231, 7.1.1.1
            ims = ims.replace(tzinfo=datetime.UTC)
        if ims.tzinfo is not datetime.UTC:
            return False
        last_modified = datetime.datetime.fromtimestamp(mtime, datetime.UTC)
        return last_modified.replace(microsecond=0) <= ims

    def _zc_span(self, size: int, last_modified: str) -> tuple[int, int] | None:
        """``(offset, count)`` of the requested range, None for the full body, or _UNSATISFIABLE."""
        header = self.headers.get("Range")
        if header is None or self.command != "GET":
            return None  # RFC 9110, 14.2: range handling is defined for GET only
        if_range = self.headers.get("If-Range")
        if if_range is not None and if_range.strip() != last_modified:
            return None  # an entity tag (we send none) or another date: the full body
        return _parse_range(header, size)
