"""The one sendfile loop: send_file (blocking and async), copyfileobj's kernel path, copyfile.

A :class:`Sendfile` owns the loop around ``_backend.current().sendfile``; a
driver iterates it.  Each item is what one call moved (> 0), or
:data:`WRITABLE`: the destination is full, wait until it takes more, then
iterate on.  Each call asks for at most ``most`` bytes, read before the call
(an async driver sets it to what is left of its turn), through ``tally``:
the exact count however the driver's loop ends (see :mod:`zerocopy._tally`).

Decided here once, for every form (the forms used to differ):

* **A first call that moves 0 bytes gives up** (:class:`GiveUp`: read and
  send instead), whatever ``st_size`` says.  procfs and sysfs files report
  size 0 and hold bytes only ``read()`` sees, and a size is stale by the
  time sendfile runs, so read() has the last word; it costs one read where
  the file is really empty, and finds nothing there either, so the result
  is socket.sendfile's (which returns 0 here unread, procfs files included).
* **Where that fallback sends nothing, the position is put back**
  (``_send_file.common.settle_position``): socket.sendfile leaves a regular
  file's position alone when it sent nothing, and the fallback is ours.
"""

from __future__ import annotations

from collections.abc import Iterator

from .. import _backend
from .._errors import GiveUp, give_up_or_raise
from .._tally import Tally

__all__ = ["CHUNK", "WRITABLE", "Sendfile"]

#: Most one sendfile or copy_file_range call asks for: 1 GiB, as
#: socket.sendfile (larger counts overflowed there, bpo-38319).
CHUNK = 1 << 30
#: What :class:`Sendfile` yields when the destination would block.
WRITABLE = 0


class Sendfile:
    """sendfile from *fd* at *offset* (None: its position) to *out*, at most *count* bytes.

    ``sent`` is the running count; ``most`` what one call asks for at most.
    With ``waits`` False (a blocking destination), EAGAIN is an error like
    any other, not :data:`WRITABLE`.
    """

    __slots__ = ("count", "fd", "most", "offset", "out", "sent", "tally", "waits")

    def __init__(self, out: int, fd: int, offset: int | None, count: int | None, tally: Tally):
        self.out, self.fd, self.offset, self.count = out, fd, offset, count
        self.tally, self.most, self.waits, self.sent = tally, CHUNK, True, 0

    def __iter__(self) -> Iterator[int]:
        sendfile = _backend.current().sendfile
        tally = self.tally
        while True:
            want = self.most if self.count is None else min(self.most, self.count - self.sent)
            if want <= 0:
                return
            at = None if self.offset is None else self.offset + self.sent
            try:
                n = sendfile(self.out, self.fd, at, want, tally)
            except BlockingIOError:
                if not self.waits:
                    raise
                yield WRITABLE
                continue
            except OSError as exc:
                give_up_or_raise(exc, self.sent)
            if n == 0:
                if self.sent == 0:
                    raise GiveUp("sendfile moved nothing")  # the first decision above
                return  # end of file: it may have shrunk since we began
            self.sent += n
            tally.fold()
            yield n
