"""Errors: the exception types, the errnos that mean "not here", and byte counts on exceptions.

Every capability uses these and nothing else to say why a kernel path cannot
start (:class:`GiveUp`, :data:`FALLBACK_ERRNOS`) and how far a transfer got
before it failed (:func:`set_transferred`, read back with the public
:func:`bytes_transferred` and :func:`relay_counts`).
"""

from __future__ import annotations

import errno as _errno
import os
from typing import Any

__all__ = [
    "FALLBACK_ERRNOS",
    "GiveUp",
    "UnsupportedOperation",
    "bytes_transferred",
    "give_up_or_raise",
    "oserror",
    "relay_counts",
    "reraise_as",
    "set_relay_counts",
    "set_transferred",
]

#: Errnos that mean "this method does not work for these fds": try the next
#: one, if nothing has moved yet.  EBADF is what copy_file_range says for an
#: O_APPEND destination; ENODATA and EIO come from odd filesystems (FUSE,
#: network, overlay); EPERM from seccomp filters.  ENOSPC, EFBIG, EPIPE and
#: ECONNRESET are real failures and are not here.
FALLBACK_ERRNOS = frozenset(
    {
        _errno.EINVAL,
        _errno.ENOSYS,
        _errno.EXDEV,
        _errno.EOPNOTSUPP,
        _errno.ENOTSUP,
        _errno.EPERM,
        _errno.EBADF,
        _errno.ENODATA,
        _errno.EIO,
    }
)


class GiveUp(Exception):
    """A kernel method could not start here and moved nothing: try the next one.

    Private to the library, as CPython's ``shutil._GiveupOnFastCopy``: it
    never reaches a caller.
    """


def give_up_or_raise(exc: OSError, moved: int) -> None:
    """Raise :class:`GiveUp` for a "not supported here" error before any byte moved, else *exc*."""
    if moved == 0 and exc.errno in FALLBACK_ERRNOS:
        raise GiveUp(exc.errno) from exc
    raise exc


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


def set_transferred(exc: BaseException, count: int) -> None:
    """Record on *exc* that *count* bytes reached the destination before it."""
    setattr(exc, "bytes_transferred", count)  # noqa: B010 - no such attribute in the type


def set_relay_counts(exc: BaseException, a_to_b: int, b_to_a: int) -> None:
    """Record a relay's two directions on *exc* (and the pair as ``bytes_transferred``)."""
    setattr(exc, "a_to_b", a_to_b)  # noqa: B010 - no such attribute in the type
    setattr(exc, "b_to_a", b_to_a)  # noqa: B010
    setattr(exc, "bytes_transferred", (a_to_b, b_to_a))  # noqa: B010


def bytes_transferred(exc: BaseException) -> int | None:
    """How many bytes a failed transfer delivered before *exc*; None if it says nothing.

    Every exception out of :func:`zerocopy.copyfileobj`, :func:`zerocopy.copyfile`,
    :func:`zerocopy.send_file`, :meth:`zerocopy.ZeroCopySender.sendall` and
    their asyncio forms carries the exact count as an attribute,
    ``exc.bytes_transferred``; this reads it with a type a checker knows.
    For an exception out of a relay it is the sum of both directions (see
    :func:`relay_counts` for each).  None means the call failed before it
    began to move bytes.
    """
    value = getattr(exc, "bytes_transferred", None)
    if isinstance(value, tuple):
        return int(sum(value))
    return value if isinstance(value, int) else None


def relay_counts(exc: BaseException) -> tuple[int, int] | None:
    """``(a_to_b, b_to_a)``: what a relay delivered each way before *exc*; None if not a relay's."""
    a_to_b = getattr(exc, "a_to_b", None)
    b_to_a = getattr(exc, "b_to_a", None)
    if isinstance(a_to_b, int) and isinstance(b_to_a, int):
        return a_to_b, b_to_a
    return None


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
        set_transferred(exc, bytes_transferred)
    return exc


def reraise_as(exc: OSError, call: str) -> OSError:
    """Return *exc* re-made by :func:`oserror` so both backends word errors alike."""
    if exc.errno is None:
        return exc
    return oserror(exc.errno, call, exc.filename, exc.filename2)
