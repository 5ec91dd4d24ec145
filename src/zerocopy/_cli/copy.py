"""``python -m zerocopy copy SRC DST``: copy a file through the kernel, like ``cp``.

The bytes move with :func:`zerocopy.copyfileobj`.  On a terminal a progress
bar is drawn on stderr; otherwise one summary line is printed there at the
end (the method comes from :func:`zerocopy.last_method`).  stdout stays free
for the data when DST is ``-``.
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
import time
from typing import IO, Any

from .._bench.units import human
from .._copy import copyfileobj, last_method

__all__ = ["Progress", "add_parser", "run"]

#: Bytes per copyfileobj call.  One call may move up to 1-2 GiB before its
#: progress callback fires (copy_file_range, sendfile); slices keep the bar
#: moving on slow disks, at a cost of microseconds per slice.
SLICE = 64 << 20
#: Least time between two redraws of the bar (at most 10 a second).
REFRESH = 0.1

_PROG = "zerocopy copy"


class CopyError(Exception):
    """A failure worth one line on stderr and exit status 1."""


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


def _copy(fsrc: IO[bytes], fdst: IO[bytes], bar: Progress | None) -> tuple[int, str]:
    """Copy to end of input in slices; return (bytes, method that moved the bulk)."""
    done = 0
    method = "none"

    def progress(n: int) -> None:
        if bar is not None:
            bar.update(done + n)

    while True:
        n = copyfileobj(fsrc, fdst, count=SLICE, progress=progress)
        done += n
        if n:
            method = last_method() or method
        if n < SLICE:
            break
    fdst.flush()
    return done, method


def _close(f: IO[bytes] | None, name: str) -> None:
    if f is None or f is sys.stdin.buffer:
        return
    try:
        f.close()  # a buffered writer's last flush can fail here (ENOSPC, EIO)
    except OSError as exc:
        raise CopyError(f"cannot close {name!r}: {_describe(exc)}") from None


def run(args: argparse.Namespace) -> int:
    src, dst, quiet = args.src, args.dst, args.quiet
    fsrc = fdst = None
    bar = None
    try:
        dst = _target(src, dst)
        fsrc, st = _open_source(src)
        fdst = _open_target(src, dst, st)
        total = max(0, st.st_size - fsrc.tell()) if stat.S_ISREG(st.st_mode) else None
        if not quiet and sys.stderr.isatty():
            bar = Progress(sys.stderr, total)
            bar.update(0)
        start = time.monotonic()
        try:
            done, method = _copy(fsrc, fdst, bar)
        except OSError as exc:
            raise CopyError(f"error copying {src!r} to {dst!r}: {_describe(exc)}") from None
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
    except CopyError as exc:
        if bar is not None:
            sys.stderr.write("\n")  # keep the message off the bar's line
        print(f"{_PROG}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if bar is not None:
            sys.stderr.write("\n")
        raise
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
        "A progress bar on a terminal, else one summary line, both on stderr.",
    )
    parser.add_argument("src", metavar="SRC", help="file to copy, or - for standard input")
    parser.add_argument("dst", metavar="DST", help="file or directory, or - for standard output")
    parser.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    parser.set_defaults(func=run)
