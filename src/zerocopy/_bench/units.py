"""Byte sizes: the one parser and the one formatter every benchmark uses.

Sizes are binary (``K`` is 1024).  Zero is refused: every size here is the
number of bytes a measured run moves, and a run that moves nothing has no
throughput (GiB/s would divide by zero) and no CPU per GiB.  A script that
needs "no size given" uses ``None`` as its default instead.
"""

from __future__ import annotations

import argparse
import re

__all__ = ["GiB", "KiB", "MiB", "human", "parse_size", "size_arg"]

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30

_UNITS = {"": 1, "K": KiB, "M": MiB, "G": GiB}
_SIZE = re.compile(r"\s*(\d+)\s*([KMG]?)(?:I?B)?\s*", re.IGNORECASE)


def parse_size(text: str) -> int:
    """Parse ``4096``, ``4K``, ``512k``, ``64M``, ``64MiB``, ``1G``, ``1GB`` into bytes.

    Raise :class:`ValueError` for anything else, and for zero (see the
    module's docstring).
    """
    match = _SIZE.fullmatch(text)
    if not match:
        raise ValueError(f"not a size: {text!r} (e.g. 4096, 64M, 1G)")
    size = int(match[1]) * _UNITS[match[2].upper()]
    if size == 0:
        raise ValueError(f"size must be > 0, got {text!r}: a run must move bytes")
    return size


def size_arg(text: str) -> int:
    """:func:`parse_size` for ``argparse``'s ``type=``, keeping the reason in the error."""
    try:
        return parse_size(text)
    except ValueError as exc:
        # argparse reports a ValueError as a bare "invalid value"; this keeps ours.
        raise argparse.ArgumentTypeError(str(exc)) from None


def human(n: float) -> str:
    """Bytes for people: 512 -> '512 B', 1536 -> '1.5 KiB', 64 MiB -> '64 MiB'."""
    for unit in ("B", "KiB", "MiB"):
        if abs(n) < 1024:
            return _short(n, unit)
        n /= 1024
    return _short(n, "GiB")


def _short(value: float, unit: str) -> str:
    if unit == "B":
        return f"{value:.0f} B"
    # One decimal at most, and none when it is zero: '64 MiB', not '64.0 MiB'.
    text = f"{value:.1f}".removesuffix(".0")
    return f"{text} {unit}"
