"""Exceptions, and the one helper that turns an errno into the right one."""

from __future__ import annotations

import errno as _errno
import os
from typing import Any

__all__ = ["UnsupportedOperation", "oserror", "reraise_as"]


class UnsupportedOperation(OSError, NotImplementedError):
    """The active backend cannot perform this call at all.

    Raised, for example, by :func:`zerocopy.tee` on the ``os`` backend, which
    has no way to reach ``tee(2)``.  It is an :class:`OSError` with errno
    ``ENOSYS`` (so code that handles "not supported" errnos handles it too) and
    a :class:`NotImplementedError`.
    """

    def __init__(self, call: str, reason: str) -> None:
        super().__init__(_errno.ENOSYS, f"{call}: {reason}")


UnsupportedOperation.__module__ = "zerocopy"


def oserror(
    err: int,
    call: str,
    filename: Any = None,
    filename2: Any = None,
    *,
    bytes_transferred: int | None = None,
) -> OSError:
    """Return the :class:`OSError` subclass for *err*, its message naming *call*.

    ``OSError(errno, strerror)`` picks the subclass (``FileNotFoundError``,
    ``BrokenPipeError``, ...) by itself.  *filename* and *filename2* are kept as
    the caller gave them.  When *bytes_transferred* is given it is set on the
    exception, as transfers that fail part-way promise.
    """
    message = f"{call}: {os.strerror(err)}"
    exc: OSError
    if filename2 is not None:
        exc = OSError(err, message, filename, None, filename2)
    elif filename is not None:
        exc = OSError(err, message, filename)
    else:
        exc = OSError(err, message)
    if bytes_transferred is not None:
        exc.bytes_transferred = bytes_transferred  # type: ignore[attr-defined]
    return exc


def reraise_as(exc: OSError, call: str) -> OSError:
    """Return *exc* re-made by :func:`oserror` so both backends word errors alike."""
    if exc.errno is None:
        return exc
    return oserror(exc.errno, call, exc.filename, exc.filename2)
