"""Fds and memory checked flat around many operations (the leak tests).

After a warm-up (which fills caches, the pipe pool and the allocator's
arenas) the process's fd count and resident set size (``/proc/self/statm``)
are taken, the operation runs again, the garbage collector runs, and both
are taken again.  The fds must be exactly the same; RSS may move by a small
tolerance (allocator noise), far below what one leaked object per operation
would add; past it, a second batch must stay within it (a leak grows twice,
an allocator step once).  Under AddressSanitizer (``scripts/sanitize``) freed memory sits
in ASan's quarantine, so RSS grows by design: there, fds are checked and RSS
is not.
"""

from __future__ import annotations

import gc
import resource
from collections.abc import Callable

from conftest import open_fds
from faultkit import KiB, MiB

PAGE = resource.getpagesize()
#: RSS growth allowed over a run: allocator noise, not a leak.  One leaked
#: 64-byte object per operation would exceed it within 20,000 operations.
TOLERANCE = 1 * MiB


def _sanitized() -> bool:
    """True when AddressSanitizer's runtime is loaded in this process."""
    with open("/proc/self/maps") as f:
        return "libasan" in f.read()


SANITIZED = _sanitized()


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


class Flat:
    """Checks fds and RSS around a batch of operations."""

    @staticmethod
    def check(name: str, op: Callable[[int], None], n: int, warmup: int | None = None) -> None:
        warmup = warmup if warmup is not None else max(200, n // 10)
        for i in range(warmup):
            op(i)
        gc.collect()
        fds, rss = open_fds(), rss_bytes()
        for i in range(n):
            op(i)
        gc.collect()
        grown = rss_bytes() - rss
        leaked = open_fds() - fds
        assert not leaked, f"{name}: fds left open: {sorted(leaked)}"
        if SANITIZED:
            return  # ASan's quarantine holds freed memory: RSS says nothing here
        if grown > TOLERANCE:
            # One step of the allocator (a new arena, a grown heap: seen at
            # 4 MiB once in ~15 runs of the sender's 3,000 sends) happens
            # once; a leak grows again.  A second batch, measured on its own,
            # tells them apart.
            rss = rss_bytes()
            for i in range(n):
                op(i)
            gc.collect()
            again = rss_bytes() - rss
            assert again <= TOLERANCE, (
                f"{name}: RSS grew by {grown / KiB:.0f} KiB over {n} operations, "
                f"then by {again / KiB:.0f} KiB over {n} more"
            )
