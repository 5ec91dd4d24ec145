"""Arguments checked: objects turned into fds, counts, offsets, flags and timeouts.

Every public call validates what it was given here, so that a wrong type is
a TypeError and a bad value a ValueError naming the argument, the same in
every form.  ``poll_ms`` turns a checked timeout into what poll(2) takes.
What the fd behind a file object carries is :mod:`zerocopy._streams`.
"""

from __future__ import annotations

import math
import numbers
import operator
from typing import Any, Protocol

__all__ = [
    "FileDescriptorLike",
    "check_count",
    "check_flags",
    "check_offset",
    "check_timeout",
    "fileno",
    "poll_ms",
]

_INT64_MAX = 2**63 - 1
_UINT_MAX = 2**32 - 1
#: poll(2) takes its timeout as a C int of milliseconds (about 24.8 days).
_POLL_MAX_MS = 2**31 - 1


class _HasFileno(Protocol):
    def fileno(self) -> int: ...


#: What every low-level call accepts as a file: an ``int`` fd or an object with
#: a ``fileno()`` method (files, sockets, pipes opened with ``open(fd)``).
FileDescriptorLike = int | _HasFileno


def fileno(obj: Any, name: str = "fd") -> int:
    """Return the file descriptor behind *obj*.

    Raises :class:`TypeError` for anything that is neither an int nor has a
    ``fileno()`` method (``bool`` included: ``True`` as fd 1 is a bug), and
    :class:`ValueError` for a negative descriptor.  ``fileno()`` itself may
    raise, e.g. :class:`ValueError` on a closed file or
    :class:`io.UnsupportedOperation` on a ``BytesIO``; that propagates.
    """
    if type(obj) is int and 0 <= obj <= _UINT_MAX // 2:
        return obj  # the common case, first and cheap: copies call this per chunk
    if isinstance(obj, bool):
        raise TypeError(f"{name} must be an int file descriptor or have fileno(), not bool")
    if isinstance(obj, int):
        fd = obj
    else:
        method = getattr(obj, "fileno", None)
        if method is None or not callable(method):
            raise TypeError(
                f"{name} must be an int file descriptor or have fileno(), not {type(obj).__name__}"
            )
        fd = method()
        if isinstance(fd, bool) or not isinstance(fd, int):
            raise TypeError(f"{name}.fileno() returned {type(fd).__name__}, not int")
    if fd < 0:
        raise ValueError(f"{name} must be a non-negative file descriptor, not {fd}")
    if fd > _UINT_MAX // 2:
        raise ValueError(f"{name} {fd} is not a valid file descriptor")
    return int(fd)


def _integer(value: Any, name: str) -> int:
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int, not bool")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, not {type(value).__name__}") from None


def check_count(value: Any, name: str = "count") -> int:
    """Validate a byte count: a non-negative int (larger counts are clamped by callers)."""
    if type(value) is int and value >= 0:
        return value
    count = _integer(value, name)
    if count < 0:
        raise ValueError(f"{name} must be >= 0, not {count}")
    return count


def check_offset(value: Any, name: str) -> int | None:
    """Validate an optional file offset: ``None`` or an int in ``[0, 2**63)``."""
    if value is None:
        return None
    if type(value) is int and 0 <= value <= _INT64_MAX:
        return value
    offset = _integer(value, name)
    if offset < 0:
        raise ValueError(f"{name} must be >= 0 or None, not {offset}")
    if offset > _INT64_MAX:
        raise ValueError(f"{name} must be < 2**63, not {offset}")
    return offset


def check_flags(value: Any, allowed: int, name: str = "flags") -> int:
    """Validate a flags word: an int made only of the bits in *allowed*."""
    flags = _integer(value, name)
    if flags < 0 or flags & ~allowed:
        raise ValueError(f"{name} has unknown bits: {flags:#x} (allowed: {allowed:#x})")
    return flags


def check_timeout(value: Any, name: str = "timeout", *, negative: bool = True) -> Any:
    """Validate an optional timeout in seconds and return it.

    Anything but None or a real number (``bool`` included: ``True`` as one
    second is a bug) is a :class:`TypeError` that names the argument, before
    a comparison or a deadline's arithmetic fails somewhere less clear.  NaN
    is refused (:class:`ValueError`): it compares false with everything, so a
    deadline made of it never passes and a wait on it never ends.  With
    *negative* false, a negative timeout is refused too; otherwise it means
    "already expired", as it did before.  ``inf`` is accepted: no time limit.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number of seconds or None, not {type(value).__name__}")
    if math.isnan(value):
        raise ValueError(f"{name} must be a number of seconds or None, not nan")
    if not negative and value < 0:
        raise ValueError(f"{name} must be >= 0 or None, not {value}")
    return value


def poll_ms(seconds: float | None) -> int | None:
    """Turn a wait of *seconds* into ``select.poll().poll()``'s milliseconds.

    None and ``inf`` wait for ever (None).  A finite wait is rounded up, so it
    never ends just before its deadline (and a positive one is never 0, a
    busy loop), and is clamped to the C int poll(2) takes: a longer wait ends
    early, and callers re-check their deadline after every wait.
    """
    if seconds is None or seconds == math.inf:
        return None
    if seconds <= 0:
        return 0
    ms = seconds * 1000  # compared as a float first: ceil() of 1e308 * 1000 would overflow
    return _POLL_MAX_MS if ms >= _POLL_MAX_MS else math.ceil(ms)
