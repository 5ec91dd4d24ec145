"""The one copy_file_range loop: copyfileobj's kernel path and copyfile.

:func:`copy_file_range` owns the loop around the backend's
``copy_file_range``; both forms call it (they used to have a loop each).
It is a function, not an iterator as :class:`~.sendfile.Sendfile` is:
copyfile calls it once per small file, and an object and a generator cost
about 7% of a 4 KiB copyfile's instructions (``benchmarks/count_small.py``),
where the issue allows 3%.  Decided here once, for both forms:

* **Nothing moved, nothing lost.** A first call that moves 0 bytes gives
  up (:class:`GiveUp` without a cause: procfs and sysfs files report size 0
  and copy nothing, so read() must have the last word), and so does a
  "not here" errno before any byte moved (:class:`GiveUp` whose
  ``__cause__`` is the OSError: another filesystem, a device; sendfile may
  still work).  After a byte moved, 0 is the end of the file and every
  error is real.
* **Offsets, or the files' positions.** With offsets, the kernel leaves
  both positions alone; *each* is told every call's count, so the caller's
  offsets and count are exact on any exception (with *tally*, see
  :mod:`zerocopy._tally`).  Without (copyfile's freshly opened files, whose
  destination size is the count), the kernel copies at the positions
  through ``copy_file_range_at_positions``: the os module's call where it
  has one, about a third of the instructions of the shim's counted call
  (docs/benchmarks.md, "Small copies, counted").
"""

from __future__ import annotations

from collections.abc import Callable

from .. import _backend
from .._errors import GiveUp, give_up_or_raise
from .._tally import Tally
from .sendfile import CHUNK

__all__ = ["copy_file_range"]


def copy_file_range(
    dst: int,
    src: int,
    offsets: tuple[int, int] | None = None,
    count: int | None = None,
    most: int = CHUNK,
    tally: Tally | None = None,
    each: Callable[[int], object] | None = None,
) -> int:
    """Copy from *src* to *dst* until the end or *count* bytes; return the bytes copied.

    *offsets*: ``(source, destination)`` offsets to start at, or None for
    the files' positions.  Each call asks for at most *most* bytes;
    *each* (if given) is called with each call's count.
    """
    backend = _backend.current()
    moved = 0
    if offsets is None:
        cfr_at = backend.copy_file_range_at_positions
    else:
        cfr = backend.copy_file_range
        s_off, d_off = offsets
    while True:
        want = most if count is None else min(most, count - moved)
        if want <= 0:
            return moved
        try:
            if offsets is None:
                n: int = cfr_at(src, dst, want)
            else:
                n = cfr(src, dst, want, s_off + moved, d_off + moved, tally)
        except OSError as exc:
            give_up_or_raise(exc, moved)
        if n == 0:
            if moved == 0:
                raise GiveUp("copy_file_range moved nothing")  # procfs, sysfs
            return moved  # end of file
        moved += n
        if each is not None:
            each(n)
