"""File descriptors: turning arguments into fds, and validating numbers."""

from __future__ import annotations

import operator
from typing import Any, Protocol

__all__ = ["FileDescriptorLike", "check_count", "check_flags", "check_offset", "fileno"]

_INT64_MAX = 2**63 - 1
_UINT_MAX = 2**32 - 1


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
    if isinstance(obj, bool):
        raise TypeError(f"{name} must be an int file descriptor or have fileno(), not bool")
    if isinstance(obj, int):
        fd = obj
    else:
        method = getattr(obj, "fileno", None)
        if method is None or not callable(method):
            raise TypeError(
                f"{name} must be an int file descriptor or have fileno(), "
                f"not {type(obj).__name__}"
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
    count = _integer(value, name)
    if count < 0:
        raise ValueError(f"{name} must be >= 0, not {count}")
    return count


def check_offset(value: Any, name: str) -> int | None:
    """Validate an optional file offset: ``None`` or an int in ``[0, 2**63)``."""
    if value is None:
        return None
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
