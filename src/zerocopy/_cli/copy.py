"""``python -m zerocopy copy SRC DST``: copy a file through the kernel, like ``cp``.

The bytes move with :func:`zerocopy.copyfileobj`.  On a terminal a progress
bar is drawn on stderr; otherwise one summary line is printed there at the
end (the method comes from :func:`zerocopy.last_method`).  stdout stays free
for the data when DST is ``-``.

Errors are one line, ``zerocopy copy: ...``, and exit status 1.  A reader of
stdout that goes away (``| head -c 10``) ends the copy quietly with status
141, as ``cat`` killed by SIGPIPE.  Ctrl-C says how many bytes were copied,
of how many, and what is left on disk: the partial destination is kept, as
``cp`` keeps it (it may have been the user's file before the copy truncated
it, and a partial copy of a slow source can be worth keeping); the status is
130.
"""

from __future__ import annotations

import argparse
import errno
import os
import stat
import sys
import time
from typing import IO, Any

from .._bench.units import human
from .._copy import copyfileobj, last_method
from . import EXIT_INTERRUPTED, UserError, error

__all__ = ["Progress", "add_parser", "run"]

#: Bytes per copyfileobj call.  One call may move up to 1-2 GiB before its
#: progress callback fires (copy_file_range, sendfile); slices keep the bar
#: moving on slow disks, at a cost of microseconds per slice.
SLICE = 64 << 20
#: Least time between two redraws of the bar (at most 10 a second).
REFRESH = 0.1


class CopyError(UserError):
    """A failure worth one line on stderr and exit status 1."""


class _Count:
    """Bytes copied so far, kept up to date by the progress callback (read on Ctrl-C)."""

    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = 0


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds + 0.5), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """A one-line progress bar redrawn in place with ``\\r`` on a terminal stream."""

    def __init__(self, stream: IO[str], total: int | None) -> None:
        self.stream = stream
        self.total = total
        self.start = time.monotonic()
        self._last = -REFRESH
        self._width = 0
        try:
            columns = os.get_terminal_size(stream.fileno()).columns
        except (OSError, ValueError):
            columns = 0
        # A fixed bar, so it does not jump as the figures after it change width;
        # a pty nobody sized says 0 columns: assume 80.
        self._bar = max(10, min(40, (columns or 80) - 58))

    def _line(self, done: int, now: float, final: bool) -> str:
        elapsed = now - self.start
        rate = done / elapsed if elapsed > 0 else 0.0
        speed = f"{human(rate)}/s" if elapsed > 0 and done else "--/s"
        if not self.total:  # a pipe, or an empty file
            return f"{human(done)}  {speed}  {_clock(elapsed)}"
        frac = min(1.0, done / self.total)
        if final:
            when = f"in {elapsed:.1f} s" if elapsed < 60 else "in " + _clock(elapsed)
        elif rate > 0:
            when = "ETA " + _clock((self.total - min(done, self.total)) / rate)
        else:
            when = "ETA --:--"
        fill = int(frac * self._bar)
        return (
            f"[{'#' * fill}{'.' * (self._bar - fill)}] {frac:4.0%}  "
            f"{human(done)} / {human(self.total)}  {speed}  {when}"
        )

    def update(self, done: int, final: bool = False) -> None:
        """Redraw with *done* bytes copied, unless the last redraw was under REFRESH ago."""
        now = time.monotonic()
        if not final and now - self._last < REFRESH:
            return
        self._last = now
        line = self._line(done, now, final)
        pad = " " * max(0, self._width - len(line))  # wipe a longer previous line
        self._width = len(line)
        self.stream.write(f"\r{line}{pad}")
        self.stream.flush()

    def finish(self, done: int) -> None:
        """Draw the final state and end the line."""
        self.update(done, final=True)
        self.stream.write("\n")
        self.stream.flush()


def _target(src: str, dst: str) -> str:
    """Where to write: *dst*, or *dst*/basename(*src*) when *dst* is a directory."""
    if dst != "-" and os.path.isdir(dst):
        if src == "-":
            raise CopyError(f"cannot copy standard input into directory {dst!r}: name a file")
        return os.path.join(dst, os.path.basename(os.path.normpath(src)))
    return dst


def _describe(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _open_source(src: str) -> tuple[IO[bytes], os.stat_result]:
    if src == "-":
        f: IO[bytes] = sys.stdin.buffer
    else:
        try:
            f = open(src, "rb")  # noqa: SIM115 - closed by run()
        except OSError as exc:
            raise CopyError(f"cannot open {src!r}: {_describe(exc)}") from None
    st = os.fstat(f.fileno())
    if stat.S_ISDIR(st.st_mode):
        raise CopyError(f"cannot copy {src!r}: Is a directory")
    return f, st


def _open_target(src: str, dst: str, st: os.stat_result) -> IO[bytes]:
    if dst == "-":
        return sys.stdout.buffer
    try:
        dst_st = os.stat(dst)
    except OSError:
        pass
    else:
        if src != "-" and (dst_st.st_dev, dst_st.st_ino) == (st.st_dev, st.st_ino):
            raise CopyError(f"{src!r} and {dst!r} are the same file")
    # A new file gets the source's permission bits, less the umask, as with cp.
    mode = stat.S_IMODE(st.st_mode) if stat.S_ISREG(st.st_mode) else 0o666
    try:
        return open(dst, "wb", opener=lambda path, flags: os.open(path, flags, mode))
    except OSError as exc:
        raise CopyError(f"cannot create {dst!r}: {_describe(exc)}") from None


def _copy(fsrc: IO[bytes], fdst: IO[bytes], bar: Progress | None, count: _Count) -> tuple[int, str]:
    """Copy to end of input in slices; return (bytes, method that moved the bulk).

    *count* follows the bytes copied as they go, for the message after Ctrl-C.
    """
    done = 0
    method = "none"

    def progress(n: int) -> None:
        count.done = done + n
        if bar is not None:
            bar.update(done + n)

    while True:
        n = copyfileobj(fsrc, fdst, count=SLICE, progress=progress)
        done += n
        count.done = done
        if n:
            method = last_method() or method
        if n < SLICE:
            break
    fdst.flush()
    return done, method


def _copy_or_fail(
    fsrc: IO[bytes], fdst: IO[bytes], bar: Progress | None, count: _Count, src: str, dst: str
) -> tuple[int, str]:
    """:func:`_copy`, its OSError made a :class:`CopyError`, or BrokenPipeError on stdout."""
    try:
        return _copy(fsrc, fdst, bar, count)
    except OSError as exc:
        if dst == "-" and exc.errno == errno.EPIPE:
            # The reader went away (| head): main() exits quietly with 141.
            raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE)) from None
        raise CopyError(f"error copying {src!r} to {dst!r}: {_describe(exc)}") from None


def _close(f: IO[bytes] | None, name: str) -> None:
    if f is None or f is sys.stdin.buffer or f is sys.stdout.buffer:
        return  # the interpreter's own streams: _copy flushed stdout already
    try:
        f.close()  # a buffered writer's last flush can fail here (ENOSPC, EIO)
    except OSError as exc:
        raise CopyError(f"cannot close {name!r}: {_describe(exc)}") from None


def _amount(done: int, total: int | None) -> str:
    text = f"{human(done)} ({done} bytes)"
    return text if total is None else f"{text} of {human(total)} ({total} bytes)"


def _interrupted(done: int, total: int | None, dst: str, created: bool) -> str:
    """The line for Ctrl-C: how far the copy got, and what is left on disk."""
    text = f"interrupted after {_amount(done, total)}"
    if dst == "-" or not created:
        return text + ("" if dst == "-" else f"; nothing written to {dst!r}")
    try:
        size = os.stat(dst).st_size
    except OSError:
        return text
    return f"{text}; partial copy left in {dst!r} ({size} bytes): remove it or copy again"


def run(args: argparse.Namespace) -> int:
    """Copy ``args.src`` to ``args.dst``; 0, or raise :class:`CopyError`; 130 after Ctrl-C."""
    src, dst, quiet = args.src, args.dst, args.quiet
    fsrc: IO[bytes] | None = None
    fdst: IO[bytes] | None = None
    bar = None
    count = _Count()
    total: int | None = None
    opened = False  # the destination has been opened (created or truncated)
    try:
        dst = _target(src, dst)
        fsrc, st = _open_source(src)
        fdst = _open_target(src, dst, st)
        opened = True
        total = max(0, st.st_size - fsrc.tell()) if stat.S_ISREG(st.st_mode) else None
        if not quiet and sys.stderr.isatty():
            bar = Progress(sys.stderr, total)
            bar.update(0)
        start = time.monotonic()
        done, method = _copy_or_fail(fsrc, fdst, bar, count, src, dst)
        written, fdst = fdst, None
        _close(written, dst)
        seconds = time.monotonic() - start
        if bar is not None:
            bar.finish(done)
            bar = None
        if not quiet:
            rate = f"{human(done / seconds)}/s" if seconds > 0 else "-"
            print(
                f"copied {human(done)} ({done} bytes) in {seconds:.2f} s, {rate}, "
                f"by {method}: {src} -> {dst}",
                file=sys.stderr,
            )
        return 0
    except (CopyError, BrokenPipeError):
        if bar is not None:
            sys.stderr.write("\n")  # keep the message off the bar's line
        raise  # main() prints the error with the prefix; a closed pipe, nothing
    except KeyboardInterrupt:
        if bar is not None:
            sys.stderr.write("\n")
        leftover, fdst = fdst, None
        try:
            _close(leftover, dst)  # flush what was copied, so its size is on disk
        except CopyError:
            pass
        error("copy", _interrupted(count.done, total, dst, opened))
        return EXIT_INTERRUPTED
    finally:
        for leftover in (fdst, fsrc):
            try:
                _close(leftover, "")
            except CopyError:
                pass  # already failing: the first error is the one to report


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "copy",
        help="copy a file through the kernel, with a progress bar",
        description="Copy SRC to DST with zerocopy.copyfileobj (copy_file_range, sendfile, "
        "splice where they work).  DST may be a directory.  '-' means stdin or stdout.  "
        "A progress bar on a terminal, else one summary line, both on stderr.  "
        "Ctrl-C stops the copy with status 130, saying how far it got; the partial "
        "DST is left in place, as cp leaves it.  When stdout's reader goes away "
        "(| head), the copy stops quietly with status 141, as cat does.",
    )
    parser.add_argument("src", metavar="SRC", help="file to copy, or - for standard input")
    parser.add_argument("dst", metavar="DST", help="file or directory, or - for standard output")
    parser.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="print nothing but errors (default: a progress bar on a terminal, "
        "else a summary line)",
    )
    parser.set_defaults(func=run)
